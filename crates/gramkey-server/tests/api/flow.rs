//! The whole flow, on both stores.

use super::*;

pub(super) async fn full_flow(t: TestApp) {
    let (app, c) = setup(&t, "user_profile,user_media").await;
    let redirect = authorize(
        &t,
        &c,
        &authorize_query(&app, "user_profile,user_media", &[]),
        "alice",
        "alice-password",
        "allow",
    )
    .await;
    assert!(
        redirect.starts_with("https://app.example/cb?code=AQ"),
        "{redirect}"
    );
    assert_eq!(param(&redirect, "state").as_deref(), Some("st4te"));
    let (status, body) = exchange_multipart(&t, &app, &code_of(&redirect)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("IGQV"));
    assert!(
        body["user_id"].is_u64(),
        "Basic Display sends user_id as a number: {body}"
    );
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "exactly Instagram's fields: {body}"
    );

    let (status, me_body) = me(&t, &token, "id,username").await;
    assert_eq!(status, StatusCode::OK, "{me_body}");
    assert_eq!(me_body["username"], "alice");
    assert_eq!(me_body["id"], body["user_id"].to_string());
    assert_eq!(me_body.as_object().unwrap().len(), 2);

    // The token carries the time it was minted, and one minted before tokens did (144
    // characters, stored under its plain SHA-256) is still accepted after an upgrade.
    use gramkey_domain::token::MintOrder;
    use gramkey_domain::{AccessToken, TokenHash};
    assert!(MintOrder::of(&token).is_some(), "{token}");
    let store = &t.state.ops.store;
    let issued = store
        .token(&TokenHash::of_token(&AccessToken::new(token.clone())))
        .await
        .unwrap()
        .unwrap();
    let before = format!("IGQV{}", "x1".repeat(70));
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(before.as_bytes()).into();
    store
        .create_token(&gramkey_store::NewToken {
            hash: TokenHash(digest),
            kind: issued.kind,
            flavour: issued.flavour,
            app_id: issued.app_id.clone(),
            user_id: issued.user_id,
            scopes: issued.scopes.clone(),
            issued_at: issued.issued_at,
            expires_at: issued.expires_at,
        })
        .await
        .unwrap();
    let (status, old_body) = me(&t, &before, "id,username").await;
    assert_eq!((status, &old_body), (StatusCode::OK, &me_body));

    // The same with the token as a query parameter and a version prefix.
    let r = reqwest::get(t.url(&format!(
        "/v21.0/me?fields=username,media_count&access_token={token}"
    )))
    .await
    .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!({"username": "alice", "media_count": 0})
    );

    // A second authorization skips consent (already granted) and keeps the app-scoped id.
    let r = c
        .get(t.url(&format!(
            "/oauth/authorize?{}",
            authorize_query(&app, "user_profile", &[])
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let (status, body2) = exchange(&t, &app, &code_of(&location(&r)), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body2}");
    assert_eq!(body2["user_id"], body["user_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_on_sqlite() {
    full_flow(TestApp::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_on_postgres() {
    let Some(t) = TestApp::postgres("full_flow_on_postgres").await else {
        return;
    };
    full_flow(t).await;
}

#[tokio::test]
async fn the_sdk_authorize_url_with_pkce_works() {
    let t = TestApp::sqlite().await;
    let (app, c) = setup(&t, "user_profile,user_media").await;
    let hosts = gramkey_client::Hosts::gramkey(&t.base).unwrap();
    let req =
        gramkey_client::AuthorizeRequest::new(&app.client_id, &app.redirect_uri, &["user_profile"]);
    let url = req.url(&hosts);
    let redirect = authorize(
        &t,
        &c,
        url.query().unwrap(),
        "alice",
        "alice-password",
        "allow",
    )
    .await;
    assert_eq!(param(&redirect, "state").as_deref(), Some(req.state()));
    let (s, b) = exchange(
        &t,
        &app,
        &code_of(&redirect),
        &[("code_verifier", req.verifier())],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}
