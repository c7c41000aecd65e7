//! The device authorization grant, RFC 8628 (issue 20): codes, the `/device` page, polling.

use super::*;
use gramkey_server::test_support::enter_device_code;
use serde_json::json;

async fn device_app(t: &TestApp, mode: AppMode, device_flow: bool) -> Registered {
    let (app, secret) = t
        .state
        .ops
        .create_app(
            &gramkey_server::origin::Origin::LOCAL,
            NewAppInput {
                name: "TV app".into(),
                redirect_uris: vec!["https://app.example/cb".into()],
                scopes: "user_profile,user_media".into(),
                mode,
                refresh_tokens: false,
                signed_requests: false,
                device_flow,
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

async fn post_form(t: &TestApp, path: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(t.url(path))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    if status == StatusCode::OK {
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
    (status, r.json().await.unwrap())
}

async fn codes(t: &TestApp, app: &Registered, scope: &str) -> (StatusCode, Value) {
    post_form(
        t,
        "/oauth/device/code",
        &[
            ("client_id", &app.client_id),
            ("client_secret", &app.secret),
            ("scope", scope),
        ],
    )
    .await
}

async fn poll(t: &TestApp, app: &Registered, device_code: &str) -> (StatusCode, Value) {
    post_form(
        t,
        "/oauth/access_token",
        &[
            ("client_id", &app.client_id),
            ("client_secret", &app.secret),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
        ],
    )
    .await
}

fn error_of(b: &Value) -> &str {
    b["error"].as_str().unwrap_or_default()
}

pub(super) async fn device_flow(t: TestApp) {
    let app = device_app(&t, AppMode::Live, true).await;
    t.user("alice", "alice-password").await;

    // The metadata advertises the endpoint and the grant.
    let meta: Value = reqwest::get(t.url("/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["device_authorization_endpoint"],
        t.url("/oauth/device/code")
    );
    assert!(
        meta["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("urn:ietf:params:oauth:grant-type:device_code"))
    );

    // RFC 8628 §3.2's answer.
    let (s, b) = codes(&t, &app, "user_profile,user_media").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let device_code = b["device_code"].as_str().unwrap().to_owned();
    let user_code = b["user_code"].as_str().unwrap().to_owned();
    assert_eq!(user_code.len(), 9, "XXXX-XXXX: {user_code}");
    assert_eq!(b["verification_uri"], t.url("/device"));
    let complete = b["verification_uri_complete"].as_str().unwrap().to_owned();
    assert_eq!(param(&complete, "user_code").as_deref(), Some(&*user_code));
    assert_eq!(
        (b["expires_in"].as_i64(), b["interval"].as_i64()),
        (Some(600), Some(5))
    );

    // Waiting; too soon; then waiting again once the longer interval has passed.
    let (s, b) = poll(&t, &app, &device_code).await;
    assert_eq!(
        (s, error_of(&b)),
        (StatusCode::BAD_REQUEST, "authorization_pending")
    );
    let (s, b) = poll(&t, &app, &device_code).await;
    assert_eq!(
        (s, error_of(&b)),
        (StatusCode::BAD_REQUEST, "slow_down"),
        "{b}"
    );
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("10 seconds")
    );
    t.clock.advance(6);
    assert_eq!(error_of(&poll(&t, &app, &device_code).await.1), "slow_down");
    t.clock.advance(15);
    assert_eq!(
        error_of(&poll(&t, &app, &device_code).await.1),
        "authorization_pending"
    );

    // Another app cannot poll this device code.
    let other = device_app(&t, AppMode::Live, true).await;
    assert_eq!(
        error_of(&poll(&t, &other, &device_code).await.1),
        "invalid_grant"
    );

    // The person enters the code, signs in on the way, and allows.
    let (status, page) = enter_device_code(&complete, "alice", "alice-password", true).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Device connected"), "{page}");

    // The next poll, however soon, gets the token, once.
    let (s, b) = poll(&t, &app, &device_code).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["token_type"], "bearer");
    assert_eq!(b["expires_in"], 3600);
    assert_eq!(b["scope"], "user_profile user_media");
    let token = b["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me(&t, &token, "username").await.1["username"], "alice");
    assert_eq!(
        error_of(&poll(&t, &app, &device_code).await.1),
        "invalid_grant"
    );

    // The code cannot be entered again.
    let (status, _) = enter_device_code_again(&t, &user_code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Cancelled.
    let (_, b) = codes(&t, &app, "user_profile").await;
    let denied = b["device_code"].as_str().unwrap().to_owned();
    let uri = b["verification_uri_complete"].as_str().unwrap().to_owned();
    let (status, page) = enter_device_code(&uri, "alice", "alice-password", false).await;
    assert_eq!(status, 200);
    assert!(page.contains("Device not connected"), "{page}");
    assert_eq!(error_of(&poll(&t, &app, &denied).await.1), "access_denied");

    // Expired, ten minutes on.
    let (_, b) = codes(&t, &app, "user_profile").await;
    let late = b["device_code"].as_str().unwrap().to_owned();
    t.clock.advance(600);
    assert_eq!(error_of(&poll(&t, &app, &late).await.1), "expired_token");

    // Bad requests.
    assert_eq!(
        error_of(&codes(&t, &app, "user_media").await.1),
        "invalid_scope"
    );
    assert_eq!(
        error_of(&codes(&t, &app, "instagram_business_basic").await.1),
        "invalid_scope"
    );
    let (s, b) = post_form(
        &t,
        "/oauth/device/code",
        &[
            ("client_id", &app.client_id),
            ("client_secret", "wrong"),
            ("scope", "user_profile"),
        ],
    )
    .await;
    assert_eq!(
        (s, error_of(&b)),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let (s, b) = poll(&t, &app, "not-a-device-code-at-all").await;
    assert_eq!(
        (s, error_of(&b)),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    let (s, b) = post_form(
        &t,
        "/oauth/access_token",
        &[
            ("client_id", &app.client_id),
            ("client_secret", &app.secret),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "no device_code: {b}");

    // An app that has not turned the flow on.
    let plain = device_app(&t, AppMode::Live, false).await;
    let (s, b) = codes(&t, &plain, "user_profile").await;
    assert_eq!(
        (s, error_of(&b)),
        (StatusCode::BAD_REQUEST, "unauthorized_client"),
        "{b}"
    );
    assert_eq!(
        error_of(&poll(&t, &plain, &device_code).await.1),
        "unsupported_grant_type"
    );

    // A development-mode app's code, entered by someone without a role.
    let dev = device_app(&t, AppMode::Development, true).await;
    let (_, b) = codes(&t, &dev, "user_profile").await;
    let dev_code = b["user_code"].as_str().unwrap().to_owned();
    let c = signed_in_browser(&t, "alice", "alice-password").await;
    let (status, page) = post_code(&t, &c, &dev_code).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("development mode"));

    // Guessing: a person gets five wrong codes in fifteen minutes, then waits. (The used code
    // entered again above was one; a quarter of an hour on, it no longer counts.)
    t.clock.advance(15 * 60);
    let (_, b) = codes(&t, &dev, "user_profile").await;
    let dev_code = b["user_code"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        let (status, page) = post_code(&t, &c, "BCDF-GHJK").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(page.contains("not valid"), "{page}");
    }
    let (status, page) = post_code(&t, &c, &dev_code).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "even a right code: {page}"
    );
}

/// A browser signed in on the site.
async fn signed_in_browser(t: &TestApp, user: &str, password: &str) -> reqwest::Client {
    let c = browser();
    super::site::sign_in(t, &c, user, password).await;
    c
}

/// Types `code` on `/device`; the status and page.
async fn post_code(t: &TestApp, c: &reqwest::Client, code: &str) -> (StatusCode, String) {
    let page = c
        .get(t.url("/device"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut form = gramkey_server::test_support::hidden_inputs(&page);
    form.push(("user_code".into(), code.into()));
    let r = c.post(t.url("/device")).form(&form).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn enter_device_code_again(t: &TestApp, user_code: &str) -> (StatusCode, String) {
    let c = signed_in_browser(t, "alice", "alice-password").await;
    post_code(t, &c, user_code).await
}

#[tokio::test]
async fn the_device_flow_on_sqlite() {
    device_flow(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn the_device_flow_on_postgres() {
    let Some(t) = TestApp::postgres("the_device_flow_on_postgres").await else {
        return;
    };
    device_flow(t).await;
}
