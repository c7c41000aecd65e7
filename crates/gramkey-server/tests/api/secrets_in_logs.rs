//! Nothing secret in the logs.

use super::*;

#[tokio::test]
async fn no_secret_code_token_or_password_reaches_the_logs_audit_or_metrics() {
    let t = TestApp::sqlite().await;
    let app = t.app("user_profile,user_media", AppMode::Live).await;
    let password = "a-very-distinctive-password";
    t.user("logcheck", password).await;
    let c = browser();
    let redirect = authorize(
        &t,
        &c,
        &authorize_query(&app, "user_profile", &[]),
        "logcheck",
        password,
        "allow",
    )
    .await;
    let code = code_of(&redirect);
    let (_, body) = exchange(&t, &app, &code, &[]).await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    let r = reqwest::get(t.url(&format!("/me?fields=id&access_token={token}")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    me(&t, &token, "id").await;
    exchange(&t, &app, &code, &[]).await; // a replay is logged; the code must not be
    let wrong = "wrong-secret-wrong-secret-000000";
    reqwest::Client::new()
        .post(t.url("/oauth/access_token"))
        .form(&[
            ("client_id", app.client_id.as_str()),
            ("client_secret", wrong),
            ("grant_type", "authorization_code"),
            ("redirect_uri", &app.redirect_uri),
            ("code", "AQx"),
        ])
        .send()
        .await
        .unwrap();
    c.get(t.url("/admin/apps"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();

    let mut text = String::from_utf8(logs().0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("token issued"),
        "the capture works and sees this flow"
    );
    // The audit log and the metrics (labels included) are held to the same rule.
    let audit = audit_events(&t, "limit=1000").await;
    assert!(audit.len() >= 5, "{audit:?}");
    text.push_str(&serde_json::to_string(&audit).unwrap());
    let metrics = metrics_text(&t).await;
    assert!(metrics.contains("gramkey_tokens_issued_total"));
    text.push_str(&metrics);
    for (what, secret) in [
        ("client secret", app.secret.as_str()),
        ("wrong client secret", wrong),
        ("password", password),
        ("code", code.as_str()),
        ("access token", token.as_str()),
        ("admin key", ADMIN_KEY),
    ] {
        assert!(!text.contains(secret), "the {what} appears in the logs");
    }
}
