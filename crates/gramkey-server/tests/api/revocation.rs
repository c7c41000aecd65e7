//! Revocation, introspection, metadata (issue 3).

use super::*;

pub(super) async fn post_form(
    t: &TestApp,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String) {
    let r = reqwest::Client::new()
        .post(t.url(path))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

pub(super) async fn revocation(t: TestApp) {
    let (app, c) = setup(&t, "user_profile,user_media").await;
    let token = short_lived(&t, &app, &c, true).await;
    let creds = [
        ("client_id", app.client_id.as_str()),
        ("client_secret", app.secret.as_str()),
    ];
    let with = |extra: (&'static str, &str)| {
        let mut v: Vec<(&str, String)> = creds.iter().map(|(k, v)| (*k, v.to_string())).collect();
        v.push((extra.0, extra.1.to_owned()));
        v
    };

    // Introspection: active, with RFC 7662 fields.
    let form = with(("token", &token));
    let f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s, body) = post_form(&t, "/oauth/introspect", &f).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["active"].as_bool(), v["scope"].as_str()),
        (Some(true), Some("user_profile user_media")),
        "{v}"
    );
    assert_eq!(v["username"], "alice");
    assert_eq!(
        v["exp"].as_i64().unwrap() - v["iat"].as_i64().unwrap(),
        3600
    );

    // HTTP Basic works too; a wrong secret is invalid_client with 401.
    let r = reqwest::Client::new()
        .post(t.url("/oauth/introspect"))
        .basic_auth(&app.client_id, Some(&app.secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["active"], true);
    let (s, body) = post_form(
        &t,
        "/oauth/introspect",
        &[
            ("client_id", &app.client_id),
            ("client_secret", &"0".repeat(32)),
            ("token", &token),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "invalid_client"
    );

    // Another client sees the token as inactive and cannot revoke it.
    let other = t.app("user_profile", AppMode::Live).await;
    let (_, body) = post_form(
        &t,
        "/oauth/introspect",
        &[
            ("client_id", &other.client_id),
            ("client_secret", &other.secret),
            ("token", &token),
        ],
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        serde_json::json!({"active": false})
    );
    let (s, body) = post_form(
        &t,
        "/oauth/revoke",
        &[
            ("client_id", &other.client_id),
            ("client_secret", &other.secret),
            ("token", &token),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "unauthorized_client"
    );
    assert_eq!(me(&t, &token, "id").await.0, StatusCode::OK);

    // RFC 7009: revoke; an unknown token is not an error.
    let (s, _) = post_form(&t, "/oauth/revoke", &f).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = post_form(
        &t,
        "/oauth/revoke",
        &[
            ("client_id", &app.client_id),
            ("client_secret", &app.secret),
            ("token", "IGQVunknownunknownunknown"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, b) = me(&t, &token, "id").await;
    assert_eq!(graph_code(&b), (Some(190), None), "revoked at once: {b}");
    let (_, body) = post_form(&t, "/oauth/introspect", &f).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["active"],
        false
    );
    let (s, body) = post_form(&t, "/oauth/revoke", &creds).await;
    assert_eq!(
        (
            s,
            serde_json::from_str::<Value>(&body).unwrap()["error"].as_str()
        ),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    // The user removes the app (190/458), a password change (190/460), revoke-tokens (190).
    let t2 = short_lived(&t, &app, &c, false).await;
    let r = reqwest::Client::new()
        .delete(t.url("/me/permissions"))
        .bearer_auth(&t2)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        serde_json::json!({"success": true})
    );
    assert_eq!(
        graph_code(&me(&t, &t2, "id").await.1),
        (Some(190), Some(458))
    );
    let fresh = browser();
    let t3 = short_lived(&t, &app, &fresh, true).await;
    // A code issued before the change but not yet redeemed must not mint a token after it.
    let q = authorize_query(&app, "user_profile", &[]);
    let r = fresh
        .get(t.url(&format!("/oauth/authorize?{q}")))
        .send()
        .await
        .unwrap();
    let pending = code_of(&location(&r));
    t.state
        .ops
        .change_password(
            &gramkey_server::origin::Origin::LOCAL,
            "alice",
            Password::new("alice-new-password"),
        )
        .await
        .unwrap();
    let (s, b) = exchange(&t, &app, &pending, &[]).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "an open code is burned by the password change: {b}"
    );
    assert_eq!(
        graph_code(&me(&t, &t3, "id").await.1),
        (Some(190), Some(460))
    );
    let relogin = browser();
    let q = authorize_query(&app, "user_profile", &[]);
    let code = code_of(&authorize(&t, &relogin, &q, "alice", "alice-new-password", "allow").await);
    let t4 = exchange(&t, &app, &code, &[]).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(me(&t, &t4, "id").await.0, StatusCode::OK);
    assert!(
        t.state
            .ops
            .revoke_app_tokens(&gramkey_server::origin::Origin::LOCAL, &app.client_id)
            .await
            .unwrap()
            >= 1
    );
    assert_eq!(graph_code(&me(&t, &t4, "id").await.1), (Some(190), None));
}

#[tokio::test]
async fn revocation_and_introspection_on_sqlite() {
    revocation(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn revocation_and_introspection_on_postgres() {
    let Some(t) = TestApp::postgres("revocation_and_introspection_on_postgres").await else {
        return;
    };
    revocation(t).await;
}

pub(super) async fn secret_rotation(t: TestApp) {
    let app = t.app("user_profile", AppMode::Live).await;
    let cc = |secret: &str| {
        format!(
            "/oauth/access_token?client_id={}&client_secret={secret}&grant_type=client_credentials",
            app.client_id
        )
    };
    let t = &t;
    let app_token = |secret: &str| {
        let path = cc(secret);
        async move {
            let (s, b) = get_json(t, &path).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            b["access_token"].as_str().unwrap().to_owned()
        }
    };
    let debug = |token: String| async move {
        get_json(
            t,
            &format!("/debug_token?input_token={token}&access_token={token}"),
        )
        .await
    };
    let first_token = app_token(&app.secret).await;
    let admin = reqwest::Client::new();
    let rotate = |q: &'static str| {
        admin
            .post(t.url(&format!("/admin/apps/{}/rotate-secret{q}", app.client_id)))
            .bearer_auth(ADMIN_KEY)
            .send()
    };
    let r: Value = rotate("?grace_seconds=3600")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second = r["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(get_json(t, &cc(&second)).await.0, StatusCode::OK);
    assert_eq!(
        get_json(t, &cc(&app.secret)).await.0,
        StatusCode::OK,
        "the old secret works during the grace"
    );
    assert_eq!(
        debug(first_token.clone()).await.0,
        StatusCode::OK,
        "app tokens work while their secret does"
    );
    let minted_in_grace = app_token(&app.secret).await;
    t.clock.advance(3600);
    let (s, b) = get_json(t, &cc(&app.secret)).await;
    assert_flat_error(s, &b, "Error validating client secret.");
    assert_eq!(get_json(t, &cc(&second)).await.0, StatusCode::OK);
    let (s, b) = debug(first_token).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "app tokens end with their secret: {b}"
    );
    assert_eq!(b["error"]["code"], 190);
    assert_eq!(
        debug(minted_in_grace).await.1["error"]["code"],
        190,
        "a token asked for with the old secret ends with it too"
    );
    let second_token = app_token(&second).await;

    let r: Value = rotate("").await.unwrap().json().await.unwrap();
    let third = r["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(get_json(t, &cc(&third)).await.0, StatusCode::OK);
    assert_eq!(
        get_json(t, &cc(&second)).await.0,
        StatusCode::BAD_REQUEST,
        "no grace: the old secret stops at once"
    );
    assert_eq!(debug(second_token).await.1["error"]["code"], 190);
    assert_eq!(
        rotate("?grace_seconds=0").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        rotate("?grace_seconds=abc").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn secret_rotation_with_grace_on_sqlite() {
    secret_rotation(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn secret_rotation_with_grace_on_postgres() {
    let Some(t) = TestApp::postgres("secret_rotation_with_grace_on_postgres").await else {
        return;
    };
    secret_rotation(t).await;
}

/// A generic OAuth client library, unmodified: the Rust `oauth2` crate runs the
/// authorization-code flow with PKCE (HTTP Basic client auth, its default) and gets an RFC 6749
/// token response; its errors parse as RFC errors too.
#[tokio::test]
async fn the_oauth2_crate_works_unmodified() {
    use oauth2::{
        AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
        RedirectUrl, Scope, TokenResponse, TokenUrl, basic::BasicClient,
    };
    let t = TestApp::sqlite().await;
    let (app, c) = setup(&t, "user_profile,user_media").await;
    let client = BasicClient::new(ClientId::new(app.client_id.clone()))
        .set_client_secret(ClientSecret::new(app.secret.clone()))
        .set_auth_uri(AuthUrl::new(t.url("/oauth/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(t.url("/oauth/access_token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(app.redirect_uri.clone()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("user_profile".into()))
        .add_scope(Scope::new("user_media".into()))
        .set_pkce_challenge(challenge)
        .url();
    let redirect = authorize(
        &t,
        &c,
        url.query().unwrap(),
        "alice",
        "alice-password",
        "allow",
    )
    .await;
    assert_eq!(
        param(&redirect, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    let http = oauth2::reqwest::ClientBuilder::new()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let code = code_of(&redirect);
    let token = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    assert!(token.access_token().secret().starts_with("IGQV"));
    assert_eq!(
        token.expires_in(),
        Some(std::time::Duration::from_secs(3600))
    );
    assert_eq!(token.scopes().map(|s| s.len()), Some(2));
    assert_eq!(
        me(&t, token.access_token().secret(), "username").await.1["username"],
        "alice"
    );

    // A replay is an RFC invalid_grant for this client.
    let err = client
        .exchange_code(AuthorizationCode::new(code))
        .request_async(&http)
        .await
        .unwrap_err();
    match err {
        oauth2::RequestTokenError::ServerResponse(r) => {
            assert_eq!(
                *r.error(),
                oauth2::basic::BasicErrorResponseType::InvalidGrant
            )
        }
        other => panic!("expected an RFC error response, got {other:?}"),
    }
}
