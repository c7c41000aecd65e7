//! Wire shapes pinned as snapshots (insta), one file each under `tests/api/snapshots/`, for a
//! reviewer to read beside `instagram-wire-protocol.md`. What differs from run to run (tokens,
//! ids, trace ids) is redacted; everything else, times included, is exact: the test's clock is
//! fixed. A changed shape fails the test and shows the difference; `cargo insta review` (or
//! `INSTA_UPDATE=always`) accepts it.

use insta::assert_json_snapshot;
use serde_json::json;

use super::long_lived::{exchange_path, get_json};
use super::*;

/// The response's status and body, as one value.
fn answer(status: StatusCode, body: Value) -> Value {
    json!({ "status": status.as_u16(), "body": body })
}

#[tokio::test]
async fn wire_shapes() {
    let t = TestApp::sqlite().await;
    let (app, c) = setup(&t, "user_profile,user_media").await;

    // Basic Display: the code exchange, the long-lived exchange, /me, and a Graph error.
    let q = authorize_query(&app, "user_profile,user_media", &[]);
    let redirect = authorize(&t, &c, &q, "alice", "alice-password", "allow").await;
    let (s, b) = exchange(&t, &app, &code_of(&redirect), &[]).await;
    let short = b["access_token"].as_str().unwrap().to_owned();
    assert_json_snapshot!("code_exchange", answer(s, b), {
        ".body.access_token" => "[token]",
        ".body.user_id" => "[scoped user id]",
    });
    let (s, b) = get_json(&t, &exchange_path(&app, &short)).await;
    let long = b["access_token"].as_str().unwrap().to_owned();
    assert_json_snapshot!("long_lived_exchange", answer(s, b), {
        ".body.access_token" => "[token]",
    });
    let (s, b) = me(&t, &long, "id,username,account_type,media_count").await;
    assert_json_snapshot!("me", answer(s, b), { ".body.id" => "[scoped user id]" });
    let (s, b) = me(&t, "IGQVJ-not-a-token", "id").await;
    assert_json_snapshot!("graph_invalid_token", answer(s, b), {
        ".body.error.fbtrace_id" => "[trace id]",
    });

    // The token endpoint's flat error, and RFC 6749's for an HTTP Basic client.
    let wrong = Registered {
        secret: "0".repeat(32),
        client_id: app.client_id.clone(),
        redirect_uri: app.redirect_uri.clone(),
    };
    let (s, b) = exchange(&t, &wrong, "AQ-no-such-code", &[]).await;
    assert_json_snapshot!("token_endpoint_bad_secret", answer(s, b));
    let r = reqwest::Client::new()
        .post(t.url("/oauth/access_token"))
        .basic_auth(&app.client_id, Some(&app.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "AQ-no-such-code"),
            ("redirect_uri", app.redirect_uri.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let s = r.status();
    assert_json_snapshot!("rfc_invalid_grant", answer(s, r.json().await.unwrap()));

    // debug_token, as the app sees its user's token.
    let app_token = format!("{}|{}", app.client_id, app.secret);
    let (s, b) = get_json(
        &t,
        &format!("/debug_token?input_token={long}&access_token={app_token}"),
    )
    .await;
    assert_json_snapshot!("debug_token", answer(s, b), {
        ".body.data.app_id" => "[app id]",
        ".body.data.user_id" => "[scoped user id]",
    });

    // Legacy v1: the envelope, and its error.
    let legacy = t.app("basic", AppMode::Live).await;
    let q = authorize_query(&legacy, "basic", &[]);
    let redirect = authorize(&t, &browser(), &q, "alice", "alice-password", "allow").await;
    let (_, b) = exchange(&t, &legacy, &code_of(&redirect), &[]).await;
    assert_json_snapshot!("legacy_code_exchange", b, {
        ".access_token" => "[token]",
        ".user.id" => "[scoped user id]",
    });
    let token = b["access_token"].as_str().unwrap();
    let (s, b) = get_json(&t, &format!("/v1/users/self?access_token={token}")).await;
    assert_json_snapshot!("legacy_users_self", answer(s, b), {
        ".body.data.id" => "[scoped user id]",
    });
    let (s, b) = get_json(&t, "/v1/users/self?access_token=1.2.3").await;
    assert_json_snapshot!("legacy_invalid_token", answer(s, b));
}
