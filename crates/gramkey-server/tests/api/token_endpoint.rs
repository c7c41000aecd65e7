//! Token endpoint.

use super::*;

#[tokio::test]
async fn token_endpoint_refuses_bad_and_missing_parameters() {
    let t = TestApp::sqlite().await;
    let app = t.app("user_profile", AppMode::Live).await;
    let post = |form: Vec<(&'static str, String)>| {
        let url = t.url("/oauth/access_token");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .form(&form)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let full = |skip: &str| -> Vec<(&'static str, String)> {
        [
            ("client_id", app.client_id.clone()),
            ("client_secret", app.secret.clone()),
            ("grant_type", "authorization_code".to_owned()),
            ("redirect_uri", app.redirect_uri.clone()),
            ("code", "AQnotacode".to_owned()),
        ]
        .into_iter()
        .filter(|(k, _)| *k != skip)
        .collect()
    };
    for (field, message) in [
        ("client_id", "You must provide a client_id"),
        ("client_secret", "You must provide a client_secret"),
        ("grant_type", "You must provide a grant_type"),
        ("redirect_uri", "You must provide a redirect_uri"),
        ("code", "You must provide a code"),
    ] {
        let (s, b) = post(full(field)).await;
        assert_flat_error(s, &b, message);
    }
    let (s, b) = post(full("")).await;
    assert_flat_error(s, &b, "Matching code was not found or was already used");

    let mut f = full("client_secret");
    f.push(("client_secret", "0".repeat(32)));
    let (s, b) = post(f).await;
    assert_flat_error(s, &b, "Error validating client secret.");

    let mut f = full("client_id");
    f.push(("client_id", "4242".into()));
    let (s, b) = post(f).await;
    assert_flat_error(s, &b, "Invalid platform app");

    let mut f = full("grant_type");
    f.push(("grant_type", "password".into()));
    let (s, b) = post(f).await;
    assert_flat_error(s, &b, "Unsupported grant_type: password");

    let mut f = full("redirect_uri");
    f.push(("redirect_uri", "https://evil.example/cb".into()));
    let (s, b) = post(f).await;
    assert_flat_error(s, &b, "Redirect URI does not match registered redirect URI");

    let mut f = full("");
    f.push(("code", "AQagain".into()));
    let (s, b) = post(f).await;
    assert_flat_error(s, &b, "Parameter code was given more than once");

    let r = reqwest::Client::new()
        .post(t.url("/oauth/access_token"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let s = r.status();
    let b: Value = r.json().await.unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        b["error_message"]
            .as_str()
            .unwrap()
            .contains("unsupported Content-Type"),
        "{b}"
    );
}

pub(super) async fn code_replay_revokes(t: TestApp) {
    let (app, c) = setup(&t, "user_profile").await;
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
    let (s, body) = exchange(&t, &app, &code, &[]).await;
    assert_eq!(s, StatusCode::OK);
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me(&t, &token, "id").await.0, StatusCode::OK);
    // A long-lived token exchanged from it, and one refreshed from that.
    let long = get_json(&t, &exchange_path(&app, &token)).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    t.clock.advance(24 * 3600);
    let refreshed = get_json(&t, &refresh_path(&long)).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(me(&t, &refreshed, "id").await.0, StatusCode::OK);
    let (s, b) = exchange(&t, &app, &code, &[]).await;
    assert_flat_error(s, &b, "This authorization code has been used");
    for tok in [&token, &long, &refreshed] {
        let (s, b) = me(&t, tok, "id").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            b["error"]["code"], 190,
            "every token descended from a replayed code is revoked: {b}"
        );
    }
}

#[tokio::test]
async fn code_replay_revokes_tokens_on_sqlite() {
    code_replay_revokes(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn code_replay_revokes_tokens_on_postgres() {
    let Some(t) = TestApp::postgres("code_replay_revokes_tokens_on_postgres").await else {
        return;
    };
    code_replay_revokes(t).await;
}

#[tokio::test]
async fn codes_and_tokens_expire() {
    let t = TestApp::sqlite().await;
    let (app, c) = setup(&t, "user_profile").await;
    let q = authorize_query(&app, "user_profile", &[]);
    let code = code_of(&authorize(&t, &c, &q, "alice", "alice-password", "allow").await);
    t.clock.advance(3600);
    let (s, b) = exchange(&t, &app, &code, &[]).await;
    assert_flat_error(s, &b, "Matching code was not found or was already used");

    let r = c
        .get(t.url(&format!("/oauth/authorize?{q}")))
        .send()
        .await
        .unwrap();
    let (s, body) = exchange(&t, &app, &code_of(&location(&r)), &[]).await;
    assert_eq!(s, StatusCode::OK);
    let token = body["access_token"].as_str().unwrap().to_owned();
    t.clock.advance(3599);
    assert_eq!(me(&t, &token, "id").await.0, StatusCode::OK);
    t.clock.advance(1);
    let (s, b) = me(&t, &token, "id").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        (
            b["error"]["code"].as_u64(),
            b["error"]["error_subcode"].as_u64()
        ),
        (Some(190), Some(463)),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Error validating access token: Session has expired on")
    );
}

#[tokio::test]
async fn pkce_is_enforced() {
    let t = TestApp::sqlite().await;
    let (app, c) = setup(&t, "user_profile").await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = gramkey_domain::code::s256_challenge(verifier);
    let q = authorize_query(
        &app,
        "user_profile",
        &[
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let first = code_of(&authorize(&t, &c, &q, "alice", "alice-password", "allow").await);
    let (s, b) = exchange(&t, &app, &first, &[]).await;
    assert_flat_error(
        s,
        &b,
        "Missing code_verifier: the authorization request used PKCE",
    );

    let next = || async {
        code_of(&location(
            &c.get(t.url(&format!("/oauth/authorize?{q}")))
                .send()
                .await
                .unwrap(),
        ))
    };
    let second = next().await;
    let wrong = "x".repeat(43);
    let (s, b) = exchange(&t, &app, &second, &[("code_verifier", &wrong)]).await;
    assert_flat_error(
        s,
        &b,
        "Invalid code_verifier: it does not match the code_challenge of the authorization request",
    );
    let (s, b) = exchange(&t, &app, &second, &[("code_verifier", verifier)]).await;
    assert_flat_error(s, &b, "This authorization code has been used");

    let third = next().await;
    let (s, b) = exchange(&t, &app, &third, &[("code_verifier", verifier)]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn response_shapes_follow_the_flavour() {
    let t = TestApp::sqlite().await;
    let (app, c) = setup(
        &t,
        "instagram_business_basic,instagram_business_manage_comments,basic",
    )
    .await;
    let q = authorize_query(
        &app,
        "instagram_business_basic,instagram_business_manage_comments",
        &[],
    );
    let code = code_of(&authorize(&t, &c, &q, "alice", "alice-password", "allow").await);
    let (s, b) = exchange(&t, &app, &code, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["access_token"].as_str().unwrap().starts_with("IGAA"));
    assert_eq!(
        b["permissions"],
        serde_json::json!([
            "instagram_business_basic",
            "instagram_business_manage_comments"
        ])
    );

    let q = authorize_query(&app, "basic", &[]);
    let loc = authorize(&t, &browser(), &q, "alice", "alice-password", "allow").await;
    let (s, b) = exchange(&t, &app, &code_of(&loc), &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["user"]["username"], "alice");
    let token = b["access_token"].as_str().unwrap();
    assert!(
        token.starts_with(&format!("{}.", b["user"]["id"].as_str().unwrap())),
        "legacy token format: {token}"
    );
}

#[tokio::test]
async fn me_refuses_bad_tokens_and_fields() {
    let t = TestApp::sqlite().await;
    let (app, c) = setup(&t, "user_profile,user_media").await;
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
    let token = exchange(&t, &app, &code, &[]).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let (s, b) = me(&t, "IGQVnotarealtokenatall", "id").await;
    assert_eq!(
        (s, b["error"]["code"].as_u64()),
        (StatusCode::BAD_REQUEST, Some(190))
    );
    assert_eq!(
        b["error"]["message"],
        "Invalid OAuth access token - Cannot parse access token"
    );
    assert_eq!(me(&t, "<>", "id").await.1["error"]["code"], 190);
    let r = reqwest::get(t.url("/me")).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], 2500);

    let (_, b) = me(&t, &token, "id,password").await;
    assert_eq!(b["error"]["code"], 100);
    assert_eq!(
        b["error"]["message"],
        "(#100) Tried accessing nonexisting field (password) on node type (User)"
    );
    let (_, b) = me(&t, &token, "id%7Bx%7D").await;
    assert_eq!(b["error"]["code"], 100);
    let (_, b) = me(&t, &token, "media_count").await;
    assert_eq!(
        b["error"]["code"], 10,
        "user_profile alone does not cover media_count: {b}"
    );
    let (s, b) = me(&t, &token, "id").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["id"]
    );

    // The same token in the header and the query is one token (compliance shims send both);
    // two different ones are refused.
    let r = reqwest::Client::new()
        .get(t.url(&format!("/me?fields=id&access_token={token}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the same token in two places");
    let r = reqwest::Client::new()
        .get(t.url(&format!("/me?access_token={token}")))
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        100,
        "two different tokens"
    );
    for bad in ["/v21/me", "/x1.0/me", "/me1.0/me"] {
        let r = reqwest::get(t.url(&format!("{bad}?access_token={token}")))
            .await
            .unwrap();
        let b: Value = r.json().await.unwrap();
        assert_eq!(
            b["error"]["message"],
            format!("Unknown path components: {bad}"),
            "{b}"
        );
    }
    let r = reqwest::get(t.url("/nope/deeper")).await.unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["message"],
        "(#803) Some of the aliases you requested do not exist: nope"
    );
}
