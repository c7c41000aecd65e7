//! Authorization endpoint refusals.

use super::*;

#[tokio::test]
async fn redirect_uri_mismatch_is_a_page_never_a_redirect() {
    let t = TestApp::sqlite().await;
    let mut app = t.app("user_profile", AppMode::Live).await;
    app.redirect_uri = "https://evil.example/cb".into();
    let r = browser()
        .get(t.url(&format!(
            "/oauth/authorize?{}",
            authorize_query(&app, "user_profile", &[])
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Redirect URI does not match registered redirect URI")
    );
}

#[tokio::test]
async fn unknown_or_missing_client_is_a_page() {
    let t = TestApp::sqlite().await;
    for q in [
        "client_id=999999&redirect_uri=https://app.example/cb&scope=user_profile&response_type=code",
        "client_id=abc",
        "",
    ] {
        let r = browser()
            .get(t.url(&format!("/oauth/authorize?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
        assert!(r.headers().get("location").is_none(), "{q}");
    }
    let r = browser()
        .get(t.url("/oauth/authorize?client_id=999999"))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Invalid platform app"));
}

#[tokio::test]
async fn other_authorize_errors_redirect_with_error_reason_and_state() {
    let t = TestApp::sqlite().await;
    let app = t.app("user_profile,user_media", AppMode::Live).await;
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        ("user_profile,nope", &[], "invalid_scope"),
        ("instagram_business_basic", &[], "invalid_scope"),
        (
            "user_profile",
            &[
                ("code_challenge", "short"),
                ("code_challenge_method", "S256"),
            ],
            "invalid_request",
        ),
        (
            "user_profile",
            &[
                (
                    "code_challenge",
                    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                ),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
    ];
    for (scope, extra, error) in cases {
        let r = browser()
            .get(t.url(&format!(
                "/oauth/authorize?{}",
                authorize_query(&app, scope, extra)
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{scope} {extra:?}");
        let loc = location(&r);
        assert!(loc.starts_with("https://app.example/cb?"), "{loc}");
        assert_eq!(param(&loc, "error").as_deref(), Some(error), "{loc}");
        assert!(
            param(&loc, "error_reason").is_some() && param(&loc, "error_description").is_some(),
            "{loc}"
        );
        assert_eq!(param(&loc, "state").as_deref(), Some("st4te"));
    }
    // Missing response_type, and a response_type we do not support.
    let q = authorize_query(&app, "user_profile", &[])
        .replace("response_type=code", "response_type=token");
    let r = browser()
        .get(t.url(&format!("/oauth/authorize?{q}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        param(&location(&r), "error").as_deref(),
        Some("unsupported_response_type")
    );
    let q = authorize_query(&app, "user_profile", &[]).replace("&response_type=code", "");
    let r = browser()
        .get(t.url(&format!("/oauth/authorize?{q}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        param(&location(&r), "error").as_deref(),
        Some("invalid_request")
    );
    // A repeated parameter is a page: which redirect_uri would we trust?
    let q = format!(
        "{}&client_id={}",
        authorize_query(&app, "user_profile", &[]),
        app.client_id
    );
    let r = browser()
        .get(t.url(&format!("/oauth/authorize?{q}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn denial_redirects_with_user_denied() {
    let t = TestApp::sqlite().await;
    let (app, c) = setup(&t, "user_profile").await;
    let loc = authorize(
        &t,
        &c,
        &authorize_query(&app, "user_profile", &[]),
        "alice",
        "alice-password",
        "deny",
    )
    .await;
    // RFC 9207: the issuer is named on errors too.
    let iss = url::form_urlencoded::byte_serialize(t.base.as_bytes()).collect::<String>();
    assert_eq!(
        loc,
        format!(
            "https://app.example/cb?error=access_denied&error_reason=user_denied&error_description=The+user+denied+your+request&state=st4te&iss={iss}"
        )
    );
}

#[tokio::test]
async fn development_mode_refuses_users_without_a_role() {
    let t = TestApp::sqlite().await;
    let app = t.app("user_profile", AppMode::Development).await;
    t.user("stranger", "stranger-password").await;
    t.user("tester", "tester-password").await;
    t.role(&app, "tester", Role::Tester).await;
    let q = authorize_query(&app, "user_profile", &[]);
    let loc = authorize(&t, &browser(), &q, "stranger", "stranger-password", "allow").await;
    assert_eq!(param(&loc, "error").as_deref(), Some("access_denied"));
    assert_eq!(
        param(&loc, "error_reason").as_deref(),
        Some("insufficient_developer_role")
    );
    let loc = authorize(&t, &browser(), &q, "tester", "tester-password", "allow").await;
    assert!(param(&loc, "code").is_some(), "{loc}");
}

#[tokio::test]
async fn wrong_password_and_csrf() {
    let t = TestApp::sqlite().await;
    let (app, c) = setup(&t, "user_profile").await;
    let q = authorize_query(&app, "user_profile", &[]);
    let html = c
        .get(t.url(&format!("/oauth/authorize?{q}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let form = hidden_inputs(&html);
    assert!(form.iter().any(|(k, v)| k == "csrf" && v.len() >= 32));

    let mut wrong = form.clone();
    wrong.extend([
        ("username".into(), "alice".into()),
        ("password".into(), "not-her-password".into()),
    ]);
    let r = c
        .post(t.url("/oauth/authorize/login"))
        .form(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("The username or password is incorrect.")
    );

    let mut no_csrf: Vec<(String, String)> =
        form.iter().filter(|(k, _)| k != "csrf").cloned().collect();
    no_csrf.extend([
        ("username".into(), "alice".into()),
        ("password".into(), "alice-password".into()),
    ]);
    let r = c
        .post(t.url("/oauth/authorize/login"))
        .form(&no_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let mut bad_csrf = no_csrf.clone();
    bad_csrf.push(("csrf".into(), "x".repeat(32)));
    let r = c
        .post(t.url("/oauth/authorize/login"))
        .form(&bad_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // A client without the session cookie at all.
    let r = browser()
        .post(t.url("/oauth/authorize/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The consent form checks its token too.
    let loc_login = {
        let mut ok = form.clone();
        ok.extend([
            ("username".into(), "alice".into()),
            ("password".into(), "alice-password".into()),
        ]);
        let r = c
            .post(t.url("/oauth/authorize/login"))
            .form(&ok)
            .send()
            .await
            .unwrap();
        location(&r)
    };
    let html = c
        .get(t.url(&loc_login))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let consent: Vec<(String, String)> = hidden_inputs(&html)
        .into_iter()
        .filter(|(k, _)| k != "csrf")
        .chain([("decision".to_owned(), "allow".to_owned())])
        .collect();
    let r = c
        .post(t.url("/oauth/authorize/consent"))
        .form(&consent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn session_cookie_is_httponly_and_samesite() {
    let t = TestApp::sqlite().await;
    let app = t.app("user_profile", AppMode::Live).await;
    let r = browser()
        .get(t.url(&format!(
            "/oauth/authorize?{}",
            authorize_query(&app, "user_profile", &[])
        )))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("gk_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
}

#[tokio::test]
async fn force_authentication_asks_for_the_password_again() {
    let t = TestApp::sqlite().await;
    let (app, c) = setup(&t, "user_profile").await;
    authorize(
        &t,
        &c,
        &authorize_query(&app, "user_profile", &[]),
        "alice",
        "alice-password",
        "allow",
    )
    .await;
    let r = c
        .get(t.url(&format!(
            "/oauth/authorize?{}",
            authorize_query(&app, "user_profile", &[])
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FOUND,
        "signed in and granted: straight back"
    );
    let loc = authorize(
        &t,
        &c,
        &authorize_query(&app, "user_profile", &[("force_authentication", "1")]),
        "alice",
        "alice-password",
        "allow",
    )
    .await;
    assert!(param(&loc, "code").is_some());
}

#[tokio::test]
async fn a_password_change_ends_browser_sessions() {
    let t = TestApp::sqlite().await;
    let (app, c) = setup(&t, "user_profile").await;
    let q = authorize_query(&app, "user_profile", &[]);
    authorize(&t, &c, &q, "alice", "alice-password", "allow").await;
    let again = || async {
        c.get(t.url(&format!("/oauth/authorize?{q}")))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(again().await.status(), StatusCode::FOUND, "signed in");
    t.state
        .ops
        .change_password(
            &gramkey_server::origin::Origin::LOCAL,
            "alice",
            Password::new("a-new-password"),
        )
        .await
        .unwrap();
    let r = again().await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text().await.unwrap().contains("Log in"),
        "the old session no longer signs alice in"
    );
    let loc = authorize(&t, &c, &q, "alice", "a-new-password", "allow").await;
    assert!(param(&loc, "code").is_some());
}

#[tokio::test]
async fn app_names_are_escaped_on_pages() {
    let t = TestApp::sqlite().await;
    let (app, c) = setup(&t, "user_profile").await;
    let html = c
        .get(t.url(&format!(
            "/oauth/authorize?{}",
            authorize_query(&app, "user_profile", &[])
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Test &lt;b&gt;App&lt;/b&gt;"), "{html}");
    assert!(!html.contains("<b>App</b>"));
}
