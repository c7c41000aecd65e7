//! Long-lived tokens (issue 3, wire protocol §3).

use super::*;

pub(super) async fn get_json(t: &TestApp, path_and_query: &str) -> (StatusCode, Value) {
    let r = reqwest::get(t.url(path_and_query)).await.unwrap();
    (r.status(), r.json().await.unwrap())
}

pub(super) fn exchange_path(app: &Registered, token: &str) -> String {
    format!(
        "/access_token?grant_type=ig_exchange_token&client_secret={}&access_token={token}",
        app.secret
    )
}

pub(super) fn refresh_path(token: &str) -> String {
    format!("/refresh_access_token?grant_type=ig_refresh_token&access_token={token}")
}

pub(super) fn graph_code(b: &Value) -> (Option<u64>, Option<u64>) {
    (
        b["error"]["code"].as_u64(),
        b["error"]["error_subcode"].as_u64(),
    )
}

pub(super) async fn short_lived(
    t: &TestApp,
    app: &Registered,
    c: &reqwest::Client,
    first: bool,
) -> String {
    let q = authorize_query(app, "user_profile,user_media", &[]);
    let redirect = if first {
        authorize(t, c, &q, "alice", "alice-password", "allow").await
    } else {
        location(
            &c.get(t.url(&format!("/oauth/authorize?{q}")))
                .send()
                .await
                .unwrap(),
        )
    };
    let (s, b) = exchange(t, app, &code_of(&redirect), &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["access_token"].as_str().unwrap().to_owned()
}

pub(super) async fn long_lived_lifecycle(t: TestApp) {
    let (app, c) = setup(&t, "user_profile,user_media").await;
    let short = short_lived(&t, &app, &c, true).await;

    let wrong = Registered {
        secret: "0".repeat(32),
        client_id: app.client_id.clone(),
        redirect_uri: app.redirect_uri.clone(),
    };
    let (s, b) = get_json(&t, &exchange_path(&wrong, &short)).await;
    assert_eq!(
        (s, graph_code(&b)),
        (StatusCode::BAD_REQUEST, (Some(1), None)),
        "{b}"
    );
    let (_, b) = get_json(
        &t,
        &format!(
            "/access_token?grant_type=nope&client_secret={}&access_token={short}",
            app.secret
        ),
    )
    .await;
    assert_eq!(graph_code(&b).0, Some(100), "{b}");
    let (_, b) = get_json(
        &t,
        &format!("/access_token?grant_type=ig_exchange_token&access_token={short}"),
    )
    .await;
    assert_eq!(
        b["error"]["message"],
        "(#100) Missing parameter: client_secret"
    );

    let (s, b) = get_json(&t, &format!("/v21.0{}", exchange_path(&app, &short))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["token_type"].as_str(), b["expires_in"].as_i64()),
        (Some("bearer"), Some(5_184_000))
    );
    let long = b["access_token"].as_str().unwrap().to_owned();
    assert!(long.starts_with("IGQV") && long != short);
    assert_eq!(me(&t, &long, "username").await.1["username"], "alice");

    let (_, b) = get_json(&t, &exchange_path(&app, &short)).await;
    assert_eq!(
        graph_code(&b),
        (Some(190), None),
        "a short-lived token is exchanged once: {b}"
    );
    let (_, b) = get_json(&t, &exchange_path(&app, &long)).await;
    assert_eq!(graph_code(&b).0, Some(100), "{b}");

    let (_, b) = get_json(&t, &refresh_path(&long)).await;
    assert_eq!(graph_code(&b).0, Some(100), "not yet 24 hours old: {b}");
    let (_, b) = get_json(&t, &refresh_path(&short)).await;
    assert_eq!(
        graph_code(&b).0,
        Some(100),
        "a short-lived token cannot be refreshed: {b}"
    );

    t.clock.advance(24 * 3600);
    let (s, b) = get_json(&t, &refresh_path(&long)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["expires_in"], 5_184_000, "60 days from the refresh");
    let refreshed = b["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        me(&t, &long, "id").await.0,
        StatusCode::OK,
        "the old token has a grace period"
    );
    t.clock.advance(301);
    let (_, b) = me(&t, &long, "id").await;
    assert_eq!(
        graph_code(&b),
        (Some(190), Some(463)),
        "then it lapses: {b}"
    );
    assert_eq!(me(&t, &refreshed, "id").await.0, StatusCode::OK);
    t.clock.advance(60 * 24 * 3600 - 301 - 1);
    assert_eq!(me(&t, &refreshed, "id").await.0, StatusCode::OK);
    t.clock.advance(1);
    let (_, b) = get_json(&t, &refresh_path(&refreshed)).await;
    assert_eq!(
        graph_code(&b),
        (Some(190), Some(463)),
        "an expired token cannot be refreshed: {b}"
    );

    // An expired short-lived token cannot be exchanged.
    // (Sixty days on, the browser session has expired too: a new one logs in.)
    let late = short_lived(&t, &app, &browser(), true).await;
    t.clock.advance(3600);
    let (_, b) = get_json(&t, &exchange_path(&app, &late)).await;
    assert_eq!(graph_code(&b), (Some(190), Some(463)), "{b}");
}

#[tokio::test]
async fn long_lived_exchange_and_refresh_on_sqlite() {
    long_lived_lifecycle(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn long_lived_exchange_and_refresh_on_postgres() {
    let Some(t) = TestApp::postgres("long_lived_exchange_and_refresh_on_postgres").await else {
        return;
    };
    long_lived_lifecycle(t).await;
}

pub(super) async fn concurrent_lifecycle(t: TestApp) {
    let (app, c) = setup(&t, "user_profile,user_media").await;
    let short = short_lived(&t, &app, &c, true).await;
    // Eight exchanges of one short-lived token at once: exactly one wins.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = t.url(&exchange_path(&app, &short));
            tokio::spawn(async move {
                reqwest::get(url)
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut longs = Vec::new();
    for task in tasks {
        let b = task.await.unwrap();
        if let Some(tok) = b["access_token"].as_str() {
            longs.push(tok.to_owned());
        } else {
            assert_eq!(graph_code(&b), (Some(190), None), "{b}");
        }
    }
    assert_eq!(longs.len(), 1, "exactly one exchange wins");

    // The same refresh fired twice at once: both are answered, and exactly one of the two
    // tokens works: a token has at most one valid successor (issue 15).
    t.clock.advance(24 * 3600);
    let path = refresh_path(&longs[0]);
    let (a, b) = tokio::join!(get_json(&t, &path), get_json(&t, &path));
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK), "{a:?} {b:?}");
    let mut working = 0;
    for r in [&a.1, &b.1] {
        if me(&t, r["access_token"].as_str().unwrap(), "id").await.0 == StatusCode::OK {
            working += 1;
        }
    }
    assert_eq!(working, 1, "{a:?} {b:?}");

    // Refreshing the same token again and again (a client that lost the answers) leaves one
    // valid successor, not one per call; the refreshed token itself lapses after its grace.
    let mut last = String::new();
    let mut issued = Vec::new();
    for _ in 0..20 {
        let (s, b) = get_json(&t, &path).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        last = b["access_token"].as_str().unwrap().to_owned();
        issued.push(last.clone());
    }
    for token in issued.iter().chain(
        [
            a.1["access_token"].as_str().unwrap().to_owned(),
            b.1["access_token"].as_str().unwrap().to_owned(),
        ]
        .iter(),
    ) {
        let status = me(&t, token, "id").await.0;
        let want = if *token == last {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(status, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_exchange_and_refresh_on_sqlite() {
    concurrent_lifecycle(TestApp::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_exchange_and_refresh_on_postgres() {
    let Some(t) = TestApp::postgres("concurrent_exchange_and_refresh_on_postgres").await else {
        return;
    };
    concurrent_lifecycle(t).await;
}

pub(super) async fn app_tokens(t: TestApp) {
    let (app, c) = setup(&t, "user_profile,user_media").await;
    let cc = format!(
        "client_id={}&client_secret={}&grant_type=client_credentials",
        app.client_id, app.secret
    );
    let (s, b) = get_json(&t, &format!("/oauth/access_token?{cc}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b.as_object().unwrap().len(), 2, "{b}");
    assert_eq!(b["token_type"], "bearer");
    let app_token = b["access_token"].as_str().unwrap().to_owned();
    assert!(app_token.starts_with(&format!("{}|", app.client_id)));
    let r = reqwest::Client::new()
        .post(t.url("/oauth/access_token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(cc.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let (s, b) = get_json(
        &t,
        &format!(
            "/oauth/access_token?client_id={}&client_secret={}&grant_type=client_credentials",
            app.client_id,
            "0".repeat(32)
        ),
    )
    .await;
    assert_flat_error(s, &b, "Error validating client secret.");
    let (s, b) = get_json(&t, &format!("/oauth/access_token?client_id={}&client_secret={}&grant_type=authorization_code&code=AQx&redirect_uri=x", app.client_id, app.secret)).await;
    assert_flat_error(
        s,
        &b,
        "Invalid parameter: the authorization_code grant must be sent with POST",
    );

    // An app token cannot read user data.
    assert_eq!(me(&t, &app_token, "id").await.1["error"]["code"], 2500);

    // debug_token, with an issued app token and with the APP_ID|APP_SECRET form.
    let user_token = short_lived(&t, &app, &c, true).await;
    let raw_credentials = format!("{}|{}", app.client_id, app.secret);
    for caller in [app_token.as_str(), raw_credentials.as_str()] {
        let (s, b) = get_json(
            &t,
            &format!("/v21.0/debug_token?input_token={user_token}&access_token={caller}"),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let d = &b["data"];
        assert_eq!(d["app_id"], app.client_id.as_str());
        assert_eq!(
            (d["type"].as_str(), d["is_valid"].as_bool()),
            (Some("USER"), Some(true)),
            "{b}"
        );
        assert_eq!(d["application"], "Test <b>App</b>");
        assert_eq!(
            d["scopes"],
            serde_json::json!(["instagram_graph_user_profile", "instagram_graph_user_media"])
        );
        assert_eq!(
            d["expires_at"].as_i64().unwrap() - d["issued_at"].as_i64().unwrap(),
            3600
        );
        assert!(d["user_id"].as_str().unwrap().starts_with("1784"));
    }
    let (_, b) = get_json(
        &t,
        &format!("/debug_token?input_token={app_token}&access_token={app_token}"),
    )
    .await;
    assert_eq!(
        (b["data"]["type"].as_str(), b["data"]["expires_at"].as_i64()),
        (Some("APP"), Some(0)),
        "{b}"
    );
    let (_, b) = get_json(
        &t,
        &format!("/debug_token?input_token=IGQVnotatokenatallatall&access_token={app_token}"),
    )
    .await;
    assert_eq!(b["data"]["is_valid"], false, "{b}");
    let (_, b) = get_json(
        &t,
        &format!("/debug_token?input_token={user_token}&access_token={user_token}"),
    )
    .await;
    assert_eq!(b["error"]["code"], 100, "a user token cannot debug: {b}");
    let (_, b) = get_json(&t, &format!("/debug_token?access_token={app_token}")).await;
    assert_eq!(
        b["error"]["message"],
        "(#100) Missing parameter: input_token"
    );
    let (_, b) = get_json(
        &t,
        &format!(
            "/debug_token?input_token={user_token}&access_token={}|{}",
            app.client_id,
            "0".repeat(32)
        ),
    )
    .await;
    assert_eq!(
        b["error"]["code"], 190,
        "a wrong secret is no app token: {b}"
    );

    // Another app's token is invalid to this app.
    let other = t.app("user_profile", AppMode::Live).await;
    let (_, b) = get_json(
        &t,
        &format!(
            "/debug_token?input_token={user_token}&access_token={}|{}",
            other.client_id, other.secret
        ),
    )
    .await;
    assert_eq!(b["data"]["is_valid"], false, "{b}");

    t.clock.advance(3600);
    let (_, b) = get_json(
        &t,
        &format!("/debug_token?input_token={user_token}&access_token={app_token}"),
    )
    .await;
    assert_eq!(
        (
            b["data"]["is_valid"].as_bool(),
            b["data"]["error"]["subcode"].as_u64()
        ),
        (Some(false), Some(463)),
        "{b}"
    );
}

#[tokio::test]
async fn app_tokens_and_debug_token_on_sqlite() {
    app_tokens(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn app_tokens_and_debug_token_on_postgres() {
    let Some(t) = TestApp::postgres("app_tokens_and_debug_token_on_postgres").await else {
        return;
    };
    app_tokens(t).await;
}
