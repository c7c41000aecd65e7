//! RFC 6749 refresh tokens (issue 3).

use super::*;

pub(super) async fn refresh_app(t: &TestApp) -> Registered {
    let (app, secret) = t
        .state
        .ops
        .create_app(
            &gramkey_server::origin::Origin::LOCAL,
            NewAppInput {
                name: "Refreshing".into(),
                redirect_uris: vec!["https://app.example/cb".into()],
                scopes: "user_profile,user_media".into(),
                mode: AppMode::Live,
                refresh_tokens: true,
                signed_requests: false,
                device_flow: false,
                deauthorize_url: None,
                data_deletion_url: None,
            },
        )
        .await
        .unwrap();
    Registered {
        client_id: app.id.to_string(),
        secret: secret.expose().to_owned(),
        redirect_uri: "https://app.example/cb".into(),
    }
}

pub(super) async fn use_refresh(t: &TestApp, app: &Registered, rt: &str) -> (StatusCode, Value) {
    let form = [
        ("client_id", app.client_id.as_str()),
        ("client_secret", app.secret.as_str()),
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
    ];
    let r = reqwest::Client::new()
        .post(t.url("/oauth/access_token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

pub(super) async fn refresh_tokens(t: TestApp) {
    let app = refresh_app(&t).await;
    t.user("alice", "alice-password").await;
    let c = browser();
    let code = code_of(
        &authorize(
            &t,
            &c,
            &authorize_query(&app, "user_profile", &[]),
            "alice",
            "alice-password",
            "allow",
        )
        .await,
    );
    let (s, b) = exchange(&t, &app, &code, &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let rt1 = b["refresh_token"].as_str().unwrap().to_owned();
    assert!(rt1.starts_with("IGRT"));

    let (s, b) = use_refresh(&t, &app, &rt1).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["token_type"].as_str(), b["expires_in"].as_i64()),
        (Some("bearer"), Some(3600))
    );
    let (at2, rt2) = (
        b["access_token"].as_str().unwrap().to_owned(),
        b["refresh_token"].as_str().unwrap().to_owned(),
    );
    assert_ne!(rt2, rt1, "rotated on every use");
    assert_eq!(me(&t, &at2, "username").await.1["username"], "alice");

    // A parallel refresh within the grace window also succeeds.
    t.clock.advance(5);
    let (s, b) = use_refresh(&t, &app, &rt1).await;
    assert_eq!(s, StatusCode::OK, "within the grace: {b}");
    let at3 = b["access_token"].as_str().unwrap().to_owned();

    // After it, reuse revokes the whole grant.
    t.clock.advance(6);
    let (s, b) = use_refresh(&t, &app, &rt1).await;
    assert_flat_error(
        s,
        &b,
        "This refresh token has already been used; every token of this grant has been revoked",
    );
    for tok in [&at2, &at3] {
        assert_eq!(me(&t, tok, "id").await.1["error"]["code"], 190);
    }
    let (s, b) = use_refresh(&t, &app, &rt2).await;
    assert_flat_error(s, &b, "Invalid refresh token");

    // Another app's refresh token, garbage, and an app that did not opt in.
    let other = refresh_app(&t).await;
    let code = code_of(
        &authorize(
            &t,
            &browser(),
            &authorize_query(&other, "user_profile", &[]),
            "alice",
            "alice-password",
            "allow",
        )
        .await,
    );
    let other_rt = exchange(&t, &other, &code, &[]).await.1["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_flat_error(
        use_refresh(&t, &app, &other_rt).await.0,
        &use_refresh(&t, &app, &other_rt).await.1,
        "Invalid refresh token",
    );
    let (s, b) = use_refresh(&t, &app, "<garbage>").await;
    assert_flat_error(s, &b, "Invalid refresh token");
    let plain = t.app("user_profile", AppMode::Live).await;
    let (s, b) = use_refresh(&t, &plain, &other_rt).await;
    assert_flat_error(s, &b, "Unsupported grant_type: refresh_token");
}

#[tokio::test]
async fn refresh_tokens_rotate_on_sqlite() {
    refresh_tokens(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn refresh_tokens_rotate_on_postgres() {
    let Some(t) = TestApp::postgres("refresh_tokens_rotate_on_postgres").await else {
        return;
    };
    refresh_tokens(t).await;
}

/// Reuse detection lives in the database: a server started afresh on the same SQLite file
/// still knows a rotated refresh token was used.
#[tokio::test]
async fn refresh_token_reuse_is_detected_after_a_restart() {
    let first = TestApp::sqlite().await;
    let app = refresh_app(&first).await;
    first.user("alice", "alice-password").await;
    let code = code_of(
        &authorize(
            &first,
            &browser(),
            &authorize_query(&app, "user_profile", &[]),
            "alice",
            "alice-password",
            "allow",
        )
        .await,
    );
    let rt1 = exchange(&first, &app, &code, &[]).await.1["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = use_refresh(&first, &app, &rt1).await.1;
    let at2 = b["access_token"].as_str().unwrap().to_owned();

    let path = first._dir.as_ref().unwrap().path().join("gramkey.db");
    let reopened = gramkey_store::sqlite::SqliteStore::open(&path)
        .unwrap()
        .cached(super::CACHE);
    let second = TestApp::start(Arc::new(reopened), None).await;
    second.clock.advance(60);
    let (s, b) = use_refresh(&second, &app, &rt1).await;
    assert_flat_error(
        s,
        &b,
        "This refresh token has already been used; every token of this grant has been revoked",
    );
    assert_eq!(me(&second, &at2, "id").await.1["error"]["code"], 190);
}

#[tokio::test]
async fn authorization_server_metadata() {
    let t = TestApp::sqlite().await;
    let (s, v) = get_json(&t, "/.well-known/oauth-authorization-server").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["issuer"], t.base.as_str());
    assert_eq!(v["token_endpoint"], t.url("/oauth/access_token").as_str());
    assert_eq!(
        v["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
}
