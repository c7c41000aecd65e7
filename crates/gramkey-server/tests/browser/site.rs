//! The site's pages over plain HTTP, for what a browser run does not show: every form refused
//! without its CSRF token, sign-in required, bad input kept and explained, who may see what,
//! the Active / Expired / Removed sorting, password changes and the console's own sign-in.

use gramkey_domain::{AppMode, ClientSecret, Role};
use gramkey_server::ops::NewAppInput;
use gramkey_server::test_support::hidden_inputs;
use reqwest::StatusCode;

use super::{TestApp, browser, code_of, exchange, graph_code, location, logs, me};

/// Signs `c` in on the site's own login page.
pub(super) async fn sign_in(t: &TestApp, c: &reqwest::Client, user: &str, password: &str) {
    let page = c
        .get(t.url("/accounts/login/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut form = hidden_inputs(&page);
    form.push(("username".into(), user.into()));
    form.push(("password".into(), password.into()));
    let r = c
        .post(t.url("/accounts/login/"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{user} signs in");
}

/// The CSRF token of the page at `path`.
async fn csrf(t: &TestApp, c: &reqwest::Client, path: &str) -> String {
    let html = c
        .get(t.url(path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    hidden_inputs(&html)
        .into_iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v)
        .expect("a form with a CSRF token")
}

async fn post(
    t: &TestApp,
    c: &reqwest::Client,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let r = c.post(t.url(path)).form(form).send().await.unwrap();
    let status = r.status();
    let loc = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, loc, r.text().await.unwrap())
}

async fn get(t: &TestApp, c: &reqwest::Client, path: &str) -> (StatusCode, String) {
    let r = c.get(t.url(path)).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// An app `owner` registered on the dashboard: its id and secret.
async fn dashboard_app(t: &TestApp, c: &reqwest::Client, name: &str) -> (String, String) {
    let token = csrf(t, c, "/developers/apps/").await;
    let r = c
        .post(t.url("/developers/apps/"))
        .form(&[
            ("csrf", token.as_str()),
            ("name", name),
            (
                "redirect_uris",
                "https://app.example/cb\nhttp://127.0.0.1/cb",
            ),
            ("scopes", "user_profile"),
            ("scopes", "user_media"),
            ("mode", "live"),
            ("deauthorize_url", "https://app.example/deauth"),
            ("data_deletion_url", "https://app.example/delete"),
        ])
        .send()
        .await
        .unwrap();
    // The secret is shown once, on the app's page the form redirects to.
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = get(t, c, &location(&r)).await.1;
    let between = |start: &str| {
        let from = html.find(start).unwrap() + start.len();
        html[from..from + html[from..].find('<').unwrap()].to_owned()
    };
    (
        between("<code id=\"client-id\">"),
        between("<code id=\"client-secret\">"),
    )
}

#[tokio::test]
async fn pages_need_a_sign_in_and_forms_their_csrf_token() {
    let t = TestApp::sqlite().await;
    t.user("dana", "dana-password").await;
    let anonymous = browser();
    for path in [
        "/accounts/manage_access/",
        "/accounts/invitations/",
        "/accounts/password/change/",
        "/developers/apps/",
        "/developers/apps/1234567890/?x=1",
    ] {
        let r = anonymous.get(t.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        let expected = format!(
            "/accounts/login/?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("next", path)
                .finish()
        );
        assert_eq!(location(&r), expected, "{path} comes back after sign-in");
    }
    let r = anonymous.get(t.url("/console/audit")).send().await.unwrap();
    assert_eq!(location(&r), "/console/login");
    // Unknown pages and form addresses opened directly are pages, not Graph JSON.
    for (path, status, says) in [
        ("/accounts/nope/", StatusCode::NOT_FOUND, "Page not found"),
        (
            "/developers/apps/1/nope",
            StatusCode::NOT_FOUND,
            "Page not found",
        ),
        (
            "/accounts/logout/",
            StatusCode::METHOD_NOT_ALLOWED,
            "This address is for a form",
        ),
    ] {
        let r = anonymous.get(t.url(path)).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(r.text().await.unwrap().contains(says), "{path}");
    }
    for (typed, page) in [
        ("/developers/apps", "/developers/apps/"),
        (
            "/accounts/manage_access?tab=removed",
            "/accounts/manage_access/?tab=removed",
        ),
        ("/console", "/console/audit"),
    ] {
        let r = anonymous.get(t.url(typed)).send().await.unwrap();
        assert!(r.status().is_redirection(), "{typed}");
        assert_eq!(location(&r), page);
    }

    // The site's own forms post only here; the authorize flow's cannot say so (consent ends in
    // a redirect to the app).
    let r = anonymous
        .get(t.url("/accounts/login/"))
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.ends_with("; form-action 'self'"),
        "{csp}"
    );

    // A wrong password: the form again, with the reason, and a 401.
    let c = browser();
    let token = csrf(&t, &c, "/accounts/login/").await;
    let (s, _, html) = post(
        &t,
        &c,
        "/accounts/login/",
        &[
            ("csrf", &token),
            ("username", "dana"),
            ("password", "nope-nope"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(html.contains("The username or password is incorrect."));
    assert!(
        html.contains("value=\"dana\""),
        "the username typed is kept"
    );

    // After sign-in, `next` is followed only to a path on this site.
    let token = csrf(&t, &c, "/accounts/login/").await;
    let (s, loc, _) = post(
        &t,
        &c,
        "/accounts/login/",
        &[
            ("csrf", &token),
            ("username", "dana"),
            ("password", "dana-password"),
            ("next", "https://evil.example/"),
        ],
    )
    .await;
    assert_eq!(
        (s, loc.as_str()),
        (StatusCode::SEE_OTHER, "/accounts/manage_access/")
    );

    // Every form refuses a missing or wrong token, and changes nothing.
    let posts: [(&str, &[(&str, &str)]); 10] = [
        (
            "/accounts/login/",
            &[("username", "dana"), ("password", "dana-password")],
        ),
        (
            "/developers/apps/",
            &[
                ("name", "x"),
                ("redirect_uris", "https://a.example/"),
                ("scopes", "user_profile"),
                ("mode", "live"),
            ],
        ),
        ("/developers/apps/1234567890/settings", &[("name", "x")]),
        ("/developers/apps/1234567890/secret", &[("grace", "0")]),
        (
            "/developers/apps/1234567890/invitations",
            &[("username", "dana"), ("role", "tester")],
        ),
        ("/accounts/manage_access/1234567890/remove", &[]),
        ("/accounts/manage_access/1234567890/delete_data", &[]),
        (
            "/accounts/invitations/1234567890",
            &[("decision", "accept")],
        ),
        (
            "/accounts/password/change/",
            &[
                ("current", "dana-password"),
                ("new", "longer-password"),
                ("confirm", "longer-password"),
            ],
        ),
        ("/accounts/logout/", &[]),
    ];
    for (path, fields) in posts {
        for token in [None, Some("wrong-token")] {
            let mut form: Vec<(&str, &str)> = fields.to_vec();
            if let Some(tk) = token {
                form.push(("csrf", tk));
            }
            let (s, _, html) = post(&t, &c, path, &form).await;
            // The dashboard's app routes check the app before the form: an unknown app is
            // "not found" whatever the token.
            assert!(
                s == StatusCode::FORBIDDEN
                    || (s == StatusCode::NOT_FOUND && path.starts_with("/developers/apps/1")),
                "{path} with {token:?}: {s}"
            );
            if s == StatusCode::FORBIDDEN {
                assert!(html.contains("This form has expired"), "{path}");
            }
        }
    }
    let dana = t.state.ops.user("dana").await.unwrap();
    assert!(t.state.ops.store.apps_of(dana.id).await.unwrap().is_empty());
    assert_eq!(
        get(&t, &c, "/accounts/manage_access/").await.0,
        StatusCode::OK,
        "still signed in"
    );

    // Logging out with the token ends the session.
    let token = csrf(&t, &c, "/accounts/manage_access/").await;
    let (s, loc, _) = post(&t, &c, "/accounts/logout/", &[("csrf", &token)]).await;
    assert_eq!(
        (s, loc.as_str()),
        (StatusCode::SEE_OTHER, "/accounts/login/?done=logged-out")
    );
    assert_eq!(
        get(&t, &c, "/accounts/manage_access/").await.0,
        StatusCode::SEE_OTHER
    );
}

/// Legacy v1's "Enforce signed requests": a box on the dashboard's settings form and a field
/// of the admin API; while it is on, v1 calls need a valid `sig` (HTTP 403
/// `OAuthForbiddenException` otherwise), and `sig` is ignored while it is off.
#[tokio::test]
async fn signed_requests_are_set_on_the_dashboard_and_the_admin_api_and_enforced() {
    use hmac::{Hmac, Mac};
    let t = TestApp::sqlite().await;
    t.user("dana", "dana-password").await;
    let dana = browser();
    sign_in(&t, &dana, "dana", "dana-password").await;
    let (id, secret) = dashboard_app(&t, &dana, "A v1 app").await;
    let app_path = format!("/developers/apps/{id}/");
    let token = csrf(&t, &dana, &app_path).await;
    let form = [
        ("csrf", token.as_str()),
        ("name", "A v1 app"),
        ("redirect_uris", "https://app.example/cb"),
        ("scopes", "basic"),
        ("mode", "live"),
        ("signed_requests", "on"),
    ];
    let (s, _, html) = post(&t, &dana, &format!("/developers/apps/{id}/settings"), &form).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{html}");
    assert!(t.state.ops.app(&id).await.unwrap().signed_requests);
    let (_, html) = get(&t, &dana, &app_path).await;
    assert!(
        html.contains(r#"name="signed_requests" value="on" checked"#),
        "{html}"
    );

    let reg = super::Registered {
        client_id: id.clone(),
        secret: secret.clone(),
        redirect_uri: "https://app.example/cb".into(),
    };
    let legacy = super::user_token(&t, &reg, "basic", "dana").await;
    let call = |query: String| {
        let url = t.url(&format!("/v1/users/self.json?{query}"));
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (s, b) = call(format!("access_token={legacy}")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        b["meta"],
        serde_json::json!({"error_type": "OAuthForbiddenException", "code": 403,
            "error_message": "Invalid signed-request: Missing required parameter 'sig'"})
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("/users/self.json|access_token={legacy}").as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let (s, b) = call(format!("access_token={legacy}&sig={sig}")).await;
    assert_eq!(
        (s, b["data"]["username"].as_str()),
        (StatusCode::OK, Some("dana"))
    );
    let (s, b) = call(format!("access_token={legacy}&sig={sig}&count=1")).await;
    assert_eq!(
        (s, b["meta"]["error_message"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("Invalid signed-request: Signature does not match")
        )
    );

    // Off through the admin API: `sig` is ignored again.
    let r = reqwest::Client::new()
        .patch(t.url(&format!("/admin/apps/{id}")))
        .bearer_auth(super::ADMIN_KEY)
        .json(&serde_json::json!({"signed_requests": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["signed_requests"],
        false
    );
    let (s, _) = call(format!("access_token={legacy}&sig=00")).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn the_dashboard_keeps_bad_input_and_shows_apps_only_to_their_team() {
    let t = TestApp::sqlite().await;
    for name in ["dana", "tom", "nina"] {
        t.user(name, &format!("{name}-password")).await;
    }
    let dana = browser();
    sign_in(&t, &dana, "dana", "dana-password").await;

    // A bad redirect URI: 400, the reason, and every field as typed (escaped).
    let token = csrf(&t, &dana, "/developers/apps/").await;
    let (s, _, html) = post(
        &t,
        &dana,
        "/developers/apps/",
        &[
            ("csrf", &token),
            ("name", "Keep <me>"),
            ("redirect_uris", "ftp://nope.example/cb"),
            ("scopes", "user_media"),
            ("mode", "live"),
            ("deauthorize_url", "https://keep.example/d"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(html.contains("invalid redirect URI"), "{html}");
    assert!(html.contains("value=\"Keep &lt;me&gt;\""));
    assert!(html.contains(">ftp://nope.example/cb</textarea>"));
    assert!(html.contains("value=\"https://keep.example/d\""));
    assert!(html.contains("value=\"user_media\" checked"));
    assert!(html.contains("value=\"live\" checked"));
    let (s, _, html) = post(
        &t,
        &dana,
        "/developers/apps/",
        &[
            ("csrf", &token),
            ("name", "No scopes"),
            ("redirect_uris", "https://a.example/cb"),
            ("mode", "live"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(html.contains("at least one scope"), "{html}");
    let (s, loc, _) = post(
        &t,
        &dana,
        "/developers/apps/",
        &[
            ("csrf", &token),
            ("name", "Twice"),
            (
                "redirect_uris",
                "https://a.example/cb\n https://a.example/cb \n\n",
            ),
            ("scopes", "user_profile"),
            ("mode", "live"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let twice = t
        .state
        .ops
        .app(loc.split('/').nth(3).unwrap())
        .await
        .unwrap();
    assert_eq!(twice.redirect_uris.len(), 1, "the same URI twice is one");

    // A good one: created, its secret shown (never logged), its creator its admin.
    let (id, secret) = dashboard_app(&t, &dana, "Dana's app").await;
    // What a person does on a page is audited as theirs.
    let dana_id = t.state.ops.user("dana").await.unwrap().id;
    let created = t
        .state
        .ops
        .store
        .audit(&gramkey_store::AuditQuery {
            app: Some(gramkey_domain::AppId::parse(&id).unwrap()),
            user: None,
            kind: Some(gramkey_domain::audit::AuditKind::AppCreated),
            since: None,
            before_id: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(created[0].event.user_id, Some(dana_id));
    let logged = String::from_utf8(logs().0.lock().unwrap().clone()).unwrap();
    assert!(!logged.contains(&secret), "the client secret was logged");
    let app_path = format!("/developers/apps/{id}/");
    let (s, html) = get(&t, &dana, &app_path).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!html.contains(&secret), "the secret is shown only once");

    // The app's own forms refuse a missing token too (the app exists and dana manages it).
    for path in [
        "settings",
        "secret",
        "invitations",
        "members/remove",
        "delete",
    ] {
        let (s, _, _) = post(
            &t,
            &dana,
            &format!("/developers/apps/{id}/{path}"),
            &[("confirm", "yes"), ("username", "tom"), ("grace", "0")],
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
    }
    assert!(t.state.ops.app(&id).await.is_ok(), "still there");
    // Someone without a role, and a tester, see no such app; a developer does.
    let tom = browser();
    sign_in(&t, &tom, "tom", "tom-password").await;
    assert_eq!(get(&t, &tom, &app_path).await.0, StatusCode::NOT_FOUND);
    t.state
        .ops
        .set_role(
            &gramkey_server::origin::Origin::LOCAL,
            &id,
            "tom",
            Role::Tester,
        )
        .await
        .unwrap();
    assert_eq!(get(&t, &tom, &app_path).await.0, StatusCode::NOT_FOUND);
    let token = csrf(&t, &tom, "/developers/apps/").await;
    let (s, _, _) = post(
        &t,
        &tom,
        &format!("/developers/apps/{id}/secret"),
        &[("csrf", &token), ("grace", "0")],
    )
    .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "a tester cannot rotate the secret"
    );
    t.state
        .ops
        .set_role(
            &gramkey_server::origin::Origin::LOCAL,
            &id,
            "tom",
            Role::Developer,
        )
        .await
        .unwrap();
    assert_eq!(get(&t, &tom, &app_path).await.0, StatusCode::OK);

    // Invitations: an unknown user, someone who already has a role, then a real one.
    let token = csrf(&t, &dana, &app_path).await;
    let invite = format!("/developers/apps/{id}/invitations");
    let (s, _, html) = post(
        &t,
        &dana,
        &invite,
        &[("csrf", &token), ("username", "nobody"), ("role", "tester")],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(html.contains("no user named nobody"), "{html}");
    let (s, _, html) = post(
        &t,
        &dana,
        &invite,
        &[("csrf", &token), ("username", "tom"), ("role", "tester")],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("tom is already a developer of this app"),
        "{html}"
    );
    let (s, _, html) = post(
        &t,
        &dana,
        &invite,
        &[("csrf", &token), ("username", "nina"), ("role", "admin")],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(html.contains("as developers or testers"), "{html}");
    let (s, loc, _) = post(
        &t,
        &dana,
        &invite,
        &[("csrf", &token), ("username", "Nina"), ("role", "tester")],
    )
    .await;
    assert_eq!(
        (s, loc),
        (StatusCode::SEE_OTHER, format!("{app_path}?done=invited"))
    );

    // Nina declines; the dashboard says so.
    let nina = browser();
    sign_in(&t, &nina, "nina", "nina-password").await;
    let token = csrf(&t, &nina, "/accounts/invitations/").await;
    let (s, loc, _) = post(
        &t,
        &nina,
        &format!("/accounts/invitations/{id}"),
        &[("csrf", &token), ("decision", "decline")],
    )
    .await;
    assert_eq!(
        (s, loc.as_str()),
        (
            StatusCode::SEE_OTHER,
            "/accounts/invitations/?done=declined"
        )
    );
    let (s, _, _) = post(
        &t,
        &nina,
        &format!("/accounts/invitations/{id}"),
        &[("csrf", &token), ("decision", "accept")],
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "answered already");
    let (_, html) = get(&t, &dana, &app_path).await;
    assert!(
        html.contains(
            "<td>nina</td><td>tester</td><td><span class=\"state declined\">declined</span>"
        ),
        "{html}"
    );

    // Settings: a bad edit changes nothing and keeps the input; a good one is saved and audited.
    let settings = format!("/developers/apps/{id}/settings");
    let base: Vec<(&str, &str)> = vec![
        ("csrf", &token),
        ("redirect_uris", "https://app.example/cb"),
        ("scopes", "user_profile"),
        ("mode", "development"),
        ("deauthorize_url", ""),
        ("data_deletion_url", ""),
    ];
    let token = csrf(&t, &dana, &app_path).await;
    let mut bad = base.clone();
    bad[0] = ("csrf", &token);
    bad.push(("name", ""));
    let (s, _, html) = post(&t, &dana, &settings, &bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("app names must be 1 to 100 characters"),
        "{html}"
    );
    assert_eq!(t.state.ops.app(&id).await.unwrap().name, "Dana's app");
    let mut good = base.clone();
    good[0] = ("csrf", &token);
    good.push(("name", "Renamed"));
    let (s, loc, _) = post(&t, &dana, &settings, &good).await;
    assert_eq!(
        (s, loc),
        (StatusCode::SEE_OTHER, format!("{app_path}?done=saved"))
    );
    let app = t.state.ops.app(&id).await.unwrap();
    assert_eq!(
        (app.name.as_str(), app.mode),
        ("Renamed", AppMode::Development)
    );
    assert_eq!(app.deauthorize_url, None);
    let (_, html) = get(&t, &dana, &format!("{app_path}?done=saved")).await;
    assert!(html.contains("Your changes were saved."));
    assert!(
        html.contains("name, redirect URIs, scopes user_profile, mode development, callback URLs"),
        "{html}"
    );

    // Rotation with a grace period: a new secret shown once (after a redirect, so a reload
    // cannot rotate again), the old one still good for now.
    let (s, loc, _) = post(
        &t,
        &dana,
        &format!("/developers/apps/{id}/secret"),
        &[("csrf", &token), ("grace", "3600")],
    )
    .await;
    assert_eq!(
        (s, loc.as_str()),
        (StatusCode::SEE_OTHER, app_path.as_str())
    );
    let html = get(&t, &dana, &app_path).await.1;
    assert!(
        !get(&t, &dana, &app_path)
            .await
            .1
            .contains("client-secret\""),
        "shown once"
    );
    let from = html.find("<code id=\"client-secret\">").unwrap() + 25;
    let new_secret = &html[from..from + 32];
    assert_ne!(new_secret, secret);
    assert!(html.contains("The previous secret keeps working until"));
    let app = t.state.ops.app(&id).await.unwrap();
    assert!(
        t.state
            .ops
            .client_secret_valid_until(&app, &ClientSecret::new(secret.as_str()))
            .is_some()
    );
    assert!(
        t.state
            .ops
            .client_secret_valid_until(&app, &ClientSecret::new(new_secret))
            .is_some()
    );
    t.clock.advance(3601);
    assert!(
        t.state
            .ops
            .client_secret_valid_until(&app, &ClientSecret::new(secret.as_str()))
            .is_none()
    );

    // Off the team: a developer loses the app; an admin cannot be removed here.
    let token = csrf(&t, &dana, &app_path).await;
    let remove = format!("/developers/apps/{id}/members/remove");
    let (s, loc, _) = post(&t, &dana, &remove, &[("csrf", &token), ("username", "tom")]).await;
    assert_eq!(
        (s, loc),
        (
            StatusCode::SEE_OTHER,
            format!("{app_path}?done=member-removed")
        )
    );
    assert_eq!(get(&t, &tom, &app_path).await.0, StatusCode::NOT_FOUND);
    let (s, _, html) = post(
        &t,
        &dana,
        &remove,
        &[("csrf", &token), ("username", "dana")],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(html.contains("dana is an admin of this app"), "{html}");
    let (s, _, _) = post(&t, &dana, &remove, &[("csrf", &token), ("username", "tom")]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "nothing left to remove");

    // Deleting: admins only, and only with the box ticked.
    t.state
        .ops
        .set_role(
            &gramkey_server::origin::Origin::LOCAL,
            &id,
            "tom",
            Role::Developer,
        )
        .await
        .unwrap();
    let delete = format!("/developers/apps/{id}/delete");
    let tom_token = csrf(&t, &tom, &app_path).await;
    let (s, _, html) = post(
        &t,
        &tom,
        &delete,
        &[("csrf", &tom_token), ("confirm", "yes")],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(html.contains("admins can delete it."), "{html}");
    assert!(
        !html.contains("delete-heading"),
        "no delete form for a developer"
    );
    let (s, _, _) = post(&t, &dana, &delete, &[("csrf", &token)]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "not confirmed");
    let (s, loc, _) = post(&t, &dana, &delete, &[("csrf", &token), ("confirm", "yes")]).await;
    assert_eq!(
        (s, loc.as_str()),
        (StatusCode::SEE_OTHER, "/developers/apps/?done=deleted")
    );
    assert!(t.state.ops.app(&id).await.is_err());
    let (_, html) = get(&t, &dana, "/developers/apps/?done=deleted").await;
    assert!(html.contains("The app was deleted"), "{html}");
}

#[tokio::test]
async fn apps_and_websites_sorts_active_expired_and_removed() {
    let t = TestApp::sqlite().await;
    t.user("alice", "alice-password").await;
    let mk = |name: &str| NewAppInput {
        name: name.into(),
        redirect_uris: vec!["https://app.example/cb".into()],
        scopes: "user_profile".into(),
        mode: AppMode::Live,
        refresh_tokens: false,
        signed_requests: false,
        device_flow: false,
        deauthorize_url: Some("https://app.example/deauth".into()),
        data_deletion_url: Some("https://app.example/delete".into()),
    };
    let (old, old_secret) = t
        .state
        .ops
        .create_app(&gramkey_server::origin::Origin::LOCAL, mk("Old app"))
        .await
        .unwrap();
    let (new, new_secret) = t
        .state
        .ops
        .create_app(&gramkey_server::origin::Origin::LOCAL, mk("New app"))
        .await
        .unwrap();
    let reg = |app: &gramkey_store::App, secret: &ClientSecret| super::Registered {
        client_id: app.id.to_string(),
        secret: secret.expose().to_owned(),
        redirect_uri: "https://app.example/cb".into(),
    };
    let (old_reg, new_reg) = (reg(&old, &old_secret), reg(&new, &new_secret));
    let c = browser();
    let redirect = super::authorize(
        &t,
        &c,
        &super::authorize_query(&old_reg, "user_profile", &[]),
        "alice",
        "alice-password",
        "allow",
    )
    .await;
    let (s, _) = exchange(&t, &old_reg, &code_of(&redirect), &[]).await;
    assert_eq!(s, StatusCode::OK);
    t.clock.advance(2 * 3600); // the short-lived token has expired
    let r = c
        .get(t.url(&format!(
            "/oauth/authorize?{}",
            super::authorize_query(&new_reg, "user_profile", &[])
        )))
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    let mut form = hidden_inputs(&html);
    form.push(("decision".into(), "allow".into()));
    let r = c
        .post(t.url("/oauth/authorize/consent"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let (s, b) = exchange(&t, &new_reg, &code_of(&location(&r)), &[]).await;
    assert_eq!(s, StatusCode::OK);
    let token = b["access_token"].as_str().unwrap().to_owned();

    let tab = |name: &str| format!("/accounts/manage_access/?tab={name}");
    let (_, active) = get(&t, &c, &tab("active")).await;
    assert!(
        active.contains("New app") && !active.contains("Old app"),
        "{active}"
    );
    assert!(
        active.contains("Active (1)")
            && active.contains("Expired (1)")
            && active.contains("Removed (0)")
    );
    let (_, expired) = get(&t, &c, &tab("expired")).await;
    assert!(
        expired.contains("Old app") && !expired.contains("New app"),
        "{expired}"
    );

    // Remove without asking for deletion: only the deauthorize callback; the token is refused.
    let token_csrf = csrf(&t, &c, &tab("active")).await;
    let (s, loc, _) = post(
        &t,
        &c,
        &format!("/accounts/manage_access/{}/remove", new.id),
        &[("csrf", &token_csrf)],
    )
    .await;
    assert_eq!(
        (s, loc.as_str()),
        (
            StatusCode::SEE_OTHER,
            "/accounts/manage_access/?tab=removed&done=removed"
        )
    );
    assert_eq!(
        graph_code(&me(&t, &token, "id").await.1),
        (Some(190), Some(458))
    );
    let kinds = |app: &gramkey_store::App| {
        let store = t.state.ops.store.clone();
        let id = app.id.clone();
        async move {
            store
                .callbacks(Some(&id), 10)
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.kind.as_str())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(kinds(&new).await, vec!["deauthorize"]);
    let (s, _, _) = post(
        &t,
        &c,
        &format!("/accounts/manage_access/{}/remove", new.id),
        &[("csrf", &token_csrf)],
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "removed already");

    // From the Removed tab, a data-deletion request later on.
    let (_, removed) = get(&t, &c, &tab("removed")).await;
    assert!(removed.contains("New app") && removed.contains("Request deletion of my data"));
    let (s, loc, _) = post(
        &t,
        &c,
        &format!("/accounts/manage_access/{}/delete_data", new.id),
        &[("csrf", &token_csrf)],
    )
    .await;
    assert_eq!(
        (s, loc.as_str()),
        (
            StatusCode::SEE_OTHER,
            "/accounts/manage_access/?tab=removed&done=deletion"
        )
    );
    assert_eq!(kinds(&new).await, vec!["data_deletion", "deauthorize"]);
    let (s, _, html) = post(
        &t,
        &c,
        &format!("/accounts/manage_access/{}/delete_data", new.id),
        &[("csrf", &token_csrf)],
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "once a day");
    assert!(html.contains("less than a day ago"), "{html}");
    assert_eq!(kinds(&new).await.len(), 2, "nothing more queued");
    let (s, _, _) = post(
        &t,
        &c,
        &format!("/accounts/manage_access/{}/delete_data", old.id),
        &[("csrf", &token_csrf)],
    )
    .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "an app still authorized is asked when removed"
    );
    let events = t
        .state
        .ops
        .store
        .audit(&gramkey_store::AuditQuery {
            app: Some(new.id.clone()),
            user: None,
            kind: Some(gramkey_domain::audit::AuditKind::DataDeletionRequested),
            since: None,
            before_id: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn changing_the_password_on_the_settings_page() {
    let t = TestApp::sqlite().await;
    let app = t.app("user_profile", AppMode::Live).await;
    t.user("alice", "alice-password").await;
    let token = super::user_token(&t, &app, "user_profile", "alice").await;
    let here = browser();
    let elsewhere = browser();
    sign_in(&t, &here, "alice", "alice-password").await;
    sign_in(&t, &elsewhere, "alice", "alice-password").await;
    let path = "/accounts/password/change/";
    let csrf_token = csrf(&t, &here, path).await;
    for (current, new, confirm, says) in [
        (
            "alice-password",
            "brand-new-password",
            "brand-new-passw0rd",
            "do not match",
        ),
        (
            "wrong-password",
            "brand-new-password",
            "brand-new-password",
            "current password is incorrect",
        ),
        ("alice-password", "short", "short", "at least 8 characters"),
    ] {
        let (s, _, html) = post(
            &t,
            &here,
            path,
            &[
                ("csrf", &csrf_token),
                ("current", current),
                ("new", new),
                ("confirm", confirm),
            ],
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{says}");
        assert!(html.contains(says), "{says}: {html}");
    }
    assert_eq!(
        me(&t, &token, "id").await.0,
        StatusCode::OK,
        "nothing changed yet"
    );
    let (s, loc, _) = post(
        &t,
        &here,
        path,
        &[
            ("csrf", &csrf_token),
            ("current", "alice-password"),
            ("new", "brand-new-password"),
            ("confirm", "brand-new-password"),
        ],
    )
    .await;
    assert_eq!(
        (s, loc.as_str()),
        (
            StatusCode::SEE_OTHER,
            "/accounts/password/change/?done=password"
        )
    );
    assert_eq!(
        graph_code(&me(&t, &token, "id").await.1),
        (Some(190), Some(460))
    );
    assert_eq!(
        get(&t, &here, "/accounts/manage_access/").await.0,
        StatusCode::OK,
        "this browser stays signed in"
    );
    assert_eq!(
        get(&t, &elsewhere, "/accounts/manage_access/").await.0,
        StatusCode::SEE_OTHER,
        "others are signed out"
    );
    sign_in(&t, &elsewhere, "alice", "brand-new-password").await;
    let logged = String::from_utf8(logs().0.lock().unwrap().clone()).unwrap();
    assert!(
        !logged.contains("brand-new-password"),
        "a password was logged"
    );
}

#[tokio::test]
async fn the_console_takes_the_admin_key_and_pages_the_audit_log() {
    let t = TestApp::sqlite().await;
    let c = browser();
    let token = csrf(&t, &c, "/console/login").await;
    let (s, _, _) = post(&t, &c, "/console/login", &[("key", super::ADMIN_KEY)]).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "the key form needs its CSRF token too"
    );
    let (s, _, html) = post(
        &t,
        &c,
        "/console/login",
        &[("csrf", &token), ("key", "not-the-key")],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(html.contains("That is not the admin key."));
    let (s, loc, _) = post(
        &t,
        &c,
        "/console/login",
        &[("csrf", &token), ("key", super::ADMIN_KEY)],
    )
    .await;
    assert_eq!((s, loc.as_str()), (StatusCode::SEE_OTHER, "/console/audit"));

    // The same cookie on a server with another admin key (same store, same master key, so the
    // cookie itself is valid there): not an admin session.
    let rekeyed = TestApp::start_with(t.state.ops.store.clone(), None, |cfg| {
        cfg.admin_key = Some(gramkey_domain::AdminKey::new(
            "another-admin-key-0123456789",
        ));
    })
    .await;
    let r = c.get(rekeyed.url("/console/audit")).send().await.unwrap();
    assert_eq!(
        location(&r),
        "/console/login",
        "a changed key ends console sessions"
    );
    assert_eq!(get(&t, &c, "/console/audit").await.0, StatusCode::OK);

    // 60 events: a page of 50, then the other 10 behind "Older events".
    t.user("alice", "alice-password").await;
    for _ in 0..59 {
        t.state
            .ops
            .audit(
                &gramkey_server::origin::Origin::LOCAL,
                gramkey_domain::audit::AuditKind::LoginSucceeded,
                gramkey_domain::audit::Outcome::Success,
                gramkey_server::audit::Entry::default(),
            )
            .await;
    }
    let (s, html) = get(&t, &c, "/console/audit?event=login_succeeded").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(html.matches("<code>login_succeeded</code>").count(), 50);
    let from = html
        .find("href=\"/console/audit?event=login_succeeded&amp;before=")
        .expect("an older page")
        + 6;
    let older = html[from..from + html[from..].find('"').unwrap()].replace("&amp;", "&");
    let (_, html) = get(&t, &c, &older).await;
    assert_eq!(html.matches("<code>login_succeeded</code>").count(), 9);
    assert!(!html.contains("Older events"));

    // Bad filters are explained next to the form.
    let (s, html) = get(&t, &c, "/console/audit?since=yesterday").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(html.contains("Since must be a date"));
    let (s, html) = get(&t, &c, "/console/audit?user=nobody").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("no user named nobody"));
    assert_eq!(get(&t, &c, "/console/users").await.0, StatusCode::OK);
    assert_eq!(get(&t, &c, "/console/apps").await.0, StatusCode::OK);

    // A signed-in user who is not an admin is refused.
    let alice = browser();
    sign_in(&t, &alice, "alice", "alice-password").await;
    assert_eq!(
        get(&t, &alice, "/console/audit").await.0,
        StatusCode::FORBIDDEN
    );

    // Right keys cost nothing; wrong ones are counted against the address they come from, and
    // past the address's limit the form refuses that address, the right key too (issue 15:
    // other addresses keep their access; see the admin API's test in hardening).
    let k = browser();
    for _ in 0..6 {
        let token = csrf(&t, &k, "/console/login").await;
        let (s, _, _) = post(
            &t,
            &k,
            "/console/login",
            &[("csrf", &token), ("key", super::ADMIN_KEY)],
        )
        .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
    }
    let k = browser();
    let token = csrf(&t, &k, "/console/login").await;
    // One wrong key was tried above; a right key does not wipe it.
    let limit = t.state.limiter.limits.login_failures_per_ip;
    for i in 1..limit {
        let (s, _, _) = post(
            &t,
            &k,
            "/console/login",
            &[("csrf", &token), ("key", "wrong")],
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "wrong key {}", i + 1);
    }
    let (s, _, html) = post(
        &t,
        &k,
        "/console/login",
        &[("csrf", &token), ("key", super::ADMIN_KEY)],
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        html.contains("Too many failed sign-ins from your network."),
        "{html}"
    );
    let failures = t
        .state
        .ops
        .store
        .audit(&gramkey_store::AuditQuery {
            app: None,
            user: None,
            kind: Some(gramkey_domain::audit::AuditKind::LoginFailed),
            since: None,
            before_id: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert!(
        failures
            .iter()
            .any(|e| e.event.detail.as_deref() == Some("wrong admin key"))
    );
    let logged = String::from_utf8(logs().0.lock().unwrap().clone()).unwrap();
    assert!(
        !logged.contains(super::ADMIN_KEY),
        "the admin key was logged"
    );
}
