//! The sandbox's test tools (issue 19): a test clock per app, fault injection with answers a
//! client cannot tell from the real ones, and the call log. Development-mode apps only.

use super::limits::{get_full, header};
use super::long_lived::{exchange_path, get_json, graph_code, refresh_path};
use super::resource::{call, get, media_row, user_token};
use super::*;
use reqwest::Method;

const SCOPES: &str = "user_profile,user_media";

/// The app's own app token.
fn app_token(app: &Registered) -> String {
    format!("{}|{}", app.client_id, app.secret)
}

async fn tool(
    t: &TestApp,
    app: &Registered,
    method: Method,
    edge: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let path = format!("/v22.0/{}/{edge}", app.client_id);
    call(t, method, &path, &app_token(app), form).await
}

async fn advance(t: &TestApp, app: &Registered, secs: i64) -> Value {
    let (s, b) = tool(
        t,
        app,
        Method::POST,
        "test_clock",
        &[("advance", &secs.to_string())],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

async fn add_fault(t: &TestApp, app: &Registered, form: &[(&str, &str)]) -> Value {
    let (s, b) = tool(t, app, Method::POST, "test_faults", form).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

/// Two development-mode apps with a tester each, and a live app.
async fn apps(t: &TestApp) -> (Registered, Registered, Registered) {
    let dev = t.app(SCOPES, AppMode::Development).await;
    let other = t.app(SCOPES, AppMode::Development).await;
    let live = t.app(SCOPES, AppMode::Live).await;
    t.user("alice", "alice-password").await;
    for app in [&dev, &other] {
        t.role(app, "alice", Role::Tester).await;
    }
    (dev, other, live)
}

async fn long_lived(t: &TestApp, app: &Registered) -> String {
    let short = user_token(t, app, SCOPES, "alice").await;
    let (s, b) = get_json(t, &exchange_path(app, &short)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["access_token"].as_str().unwrap().to_owned()
}

async fn test_clock(t: TestApp) {
    let (dev, other, live) = apps(&t).await;
    let (s, b) = tool(&t, &dev, Method::GET, "test_clock", &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["offset_seconds"].as_i64(), b["now"].as_i64()),
        (Some(0), Some(START))
    );
    let long = long_lived(&t, &dev).await;
    let others = long_lived(&t, &other).await;
    let (_, b) = get_json(&t, &refresh_path(&long)).await;
    assert_eq!(graph_code(&b).0, Some(100), "not yet 24 hours old: {b}");

    // 25 hours later, for this app only.
    let b = advance(&t, &dev, 25 * 3600).await;
    assert_eq!(b["offset_seconds"], 90_000);
    assert_eq!(b["now"], START + 90_000);
    assert_eq!(b["real_now"], START);
    let (s, b) = get_json(&t, &refresh_path(&long)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let refreshed = b["access_token"].as_str().unwrap().to_owned();
    let (_, b) = get_json(&t, &refresh_path(&others)).await;
    assert_eq!(
        graph_code(&b).0,
        Some(100),
        "another app keeps real time: {b}"
    );
    // debug_token reads the app's clock.
    let (s, b) = get(
        &t,
        &format!("/debug_token?input_token={refreshed}"),
        &app_token(&dev),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["issued_at"], START + 90_000, "{b}");
    assert_eq!(b["data"]["is_valid"], true, "{b}");

    // A code lives ten minutes of the app's time.
    let redirect = authorize(
        &t,
        &browser(),
        &authorize_query(&dev, SCOPES, &[]),
        "alice",
        "alice-password",
        "allow",
    )
    .await;
    advance(&t, &dev, 3600).await;
    let (s, b) = exchange(&t, &dev, &code_of(&redirect), &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(
        b["error_message"], "Matching code was not found or was already used",
        "an expired code reads as an unknown one: {b}"
    );

    // 61 days later the refreshed token has expired: 190/463.
    advance(&t, &dev, 61 * 86_400).await;
    let (s, b) = me(&t, &refreshed, "id").await;
    assert_eq!(
        (s, graph_code(&b)),
        (StatusCode::BAD_REQUEST, (Some(190), Some(463))),
        "{b}"
    );
    assert_eq!(
        me(&t, &others, "id").await.0,
        StatusCode::OK,
        "the other app's token lives on"
    );
    let (_, log) = tool(&t, &dev, Method::GET, "test_log", &[]).await;
    let last = log["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (
            last["route"].as_str(),
            last["status"].as_u64(),
            last["error_code"].as_u64()
        ),
        (Some("/me"), Some(400), Some(190)),
        "a refused token of the app is in its log: {log}"
    );
    let ahead = 90_000 + 3600 + 61 * 86_400;
    assert_eq!(
        last["app_time"].as_i64().unwrap() - last["time"].as_i64().unwrap(),
        ahead
    );

    // The janitor sees the app's rows by the app's time (real time would purge nothing yet):
    // the short-lived token and the refreshed one's parent ended over 30 days ago for the app;
    // 31 days more, and the refreshed token too. The other app's are untouched.
    let janitor = async || {
        t.state
            .ops
            .purge_expired(gramkey_domain::retention::Retention::default(), false)
            .await
            .unwrap()
            .tokens
    };
    assert_eq!(janitor().await, 2);
    advance(&t, &dev, 31 * 86_400).await;
    assert_eq!(janitor().await, 1);
    assert_eq!(me(&t, &others, "id").await.0, StatusCode::OK);

    // Forward only; a live app gets no clock.
    let (s, b) = tool(&t, &dev, Method::POST, "test_clock", &[("advance", "-5")]).await;
    assert_eq!(
        (s, b["error"]["code"].as_u64()),
        (StatusCode::BAD_REQUEST, Some(100)),
        "{b}"
    );
    assert!(
        b["error"]["message"].as_str().unwrap().contains("forward"),
        "{b}"
    );
    let (s, b) = tool(&t, &dev, Method::POST, "test_clock", &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    for (method, edge) in [
        (Method::GET, "test_clock"),
        (Method::POST, "test_clock"),
        (Method::DELETE, "test_clock"),
        (Method::GET, "test_faults"),
        (Method::POST, "test_faults"),
        (Method::DELETE, "test_faults"),
        (Method::GET, "test_log"),
    ] {
        let (s, b) = tool(
            &t,
            &live,
            method,
            edge,
            &[("advance", "60"), ("fault", "server_error")],
        )
        .await;
        assert_eq!(
            (s, b["error"]["code"].as_u64()),
            (StatusCode::BAD_REQUEST, Some(100)),
            "{edge}: {b}"
        );
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("development mode"),
            "{b}"
        );
    }
    // Another app's tools are not this token's.
    let path = format!("/{}/test_clock", other.client_id);
    let (s, _) = call(&t, Method::GET, &path, &app_token(&dev), &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Reset: real time again; a fresh token works.
    let (s, b) = tool(&t, &dev, Method::DELETE, "test_clock", &[]).await;
    assert_eq!(
        (s, b["offset_seconds"].as_i64()),
        (StatusCode::OK, Some(0)),
        "{b}"
    );
    let fresh = user_token(&t, &dev, SCOPES, "alice").await;
    assert_eq!(me(&t, &fresh, "id").await.0, StatusCode::OK);
}

/// A rate window rolls over when the app's clock passes the hour, and a reset forgets what
/// was counted ahead of real time.
async fn rate_windows(t: TestApp) {
    let (dev, other, _) = apps(&t).await;
    let token = long_lived(&t, &dev).await;
    let others = long_lived(&t, &other).await;
    let spend = |token: String| {
        let t = &t;
        async move {
            loop {
                let (s, b) = me(t, &token, "id").await;
                if s == StatusCode::TOO_MANY_REQUESTS {
                    return b;
                }
                assert_eq!(s, StatusCode::OK, "{b}");
            }
        }
    };
    assert_eq!(spend(token.clone()).await["error"]["code"], 17);
    assert_eq!(spend(others.clone()).await["error"]["code"], 17);
    advance(&t, &dev, 3600).await;
    assert_eq!(
        me(&t, &token, "id").await.0,
        StatusCode::OK,
        "the window rolled over"
    );
    assert_eq!(
        me(&t, &others, "id").await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "not the other app's"
    );
    spend(token.clone()).await;
    let (s, _) = tool(&t, &dev, Method::DELETE, "test_clock", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        me(&t, &token, "id").await.0,
        StatusCode::OK,
        "windows ahead of real time are forgotten"
    );
}

/// Strips what differs between two answers to the same condition: Graph's random trace id.
fn without_trace(mut b: Value) -> Value {
    if let Some(e) = b.get_mut("error").and_then(Value::as_object_mut) {
        e.remove("fbtrace_id");
    }
    b
}

async fn faults(t: TestApp) {
    let (dev, _, _) = apps(&t).await;
    // Long-lived: the app's clock moves by hours below, so its rate windows start afresh.
    let token = long_lived(&t, &dev).await;

    // The real condition first: a user's budget spent.
    let real = loop {
        let (s, h, b) = get_full(&t, "/me?fields=id", &token, &[]).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            break (h, b);
        }
    };
    advance(&t, &dev, 3600).await;
    let (s, _, _) = get_full(&t, "/me?fields=id", &token, &[]).await;
    assert_eq!(s, StatusCode::OK);

    let rule = add_fault(
        &t,
        &dev,
        &[
            ("fault", "user_rate_limit"),
            ("path", "/me"),
            ("count", "2"),
            ("retry_after", "30"),
        ],
    )
    .await;
    assert_eq!(rule["remaining"], 2);
    assert_eq!(rule["retry_after"], 30);
    for _ in 0..2 {
        let (s, h, b) = get_full(&t, "/v22.0/me?fields=id", &token, &[]).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            without_trace(b),
            without_trace(real.1.clone()),
            "the same body"
        );
        for name in [
            "content-type",
            "x-app-usage",
            "retry-after",
            "access-control-allow-origin",
        ] {
            assert!(h.contains_key(name) && real.0.contains_key(name), "{name}");
        }
        assert_eq!(header(&h, "retry-after"), "30");
        let usage: Value = serde_json::from_str(&header(&h, "x-app-usage")).unwrap();
        assert_eq!(usage["call_count"], 100, "{usage}");
    }
    let (s, _, _) = get_full(&t, "/me?fields=id", &token, &[]).await;
    assert_eq!(s, StatusCode::OK, "two calls, then the rule is spent");
    let (_, b) = tool(&t, &dev, Method::GET, "test_faults", &[]).await;
    assert_eq!(
        b["data"],
        serde_json::json!([]),
        "a spent rule is no longer listed"
    );

    // Token faults, in the Graph and the legacy flavour, as the real conditions answer.
    advance(&t, &dev, 3600).await;
    for (fault, sub) in [
        ("expired_token", 463),
        ("password_changed", 460),
        ("deauthorized", 458),
    ] {
        add_fault(&t, &dev, &[("fault", fault), ("count", "1")]).await;
        let (s, b) = me(&t, &token, "id").await;
        assert_eq!(
            (s, graph_code(&b)),
            (StatusCode::BAD_REQUEST, (Some(190), Some(sub))),
            "{fault}: {b}"
        );
    }
    for (fault, status, code) in [
        ("permission", 400, 10),
        ("server_error", 500, 2),
        ("unavailable", 503, 2),
        ("app_rate_limit", 429, 4),
    ] {
        advance(&t, &dev, 3600).await;
        add_fault(
            &t,
            &dev,
            &[("fault", fault), ("path", "/me/*"), ("count", "1")],
        )
        .await;
        let (s, b) = get(&t, "/me/media?fields=id", &token).await;
        assert_eq!(
            (s.as_u16(), b["error"]["code"].as_u64()),
            (status, Some(code)),
            "{fault}: {b}"
        );
        assert_eq!(
            me(&t, &token, "id").await.0,
            StatusCode::OK,
            "/me/* spares /me"
        );
    }
    // Legacy v1: an injected expiry reads as a real one.
    let legacy_app = t.app("basic", AppMode::Development).await;
    t.role(&legacy_app, "alice", Role::Tester).await;
    let legacy = user_token(&t, &legacy_app, "basic", "alice").await;
    add_fault(
        &t,
        &legacy_app,
        &[
            ("fault", "expired_token"),
            ("path", "/v1/users/self"),
            ("count", "1"),
        ],
    )
    .await;
    let (s, _, injected) = get_full(&t, "/v1/users/self", &legacy, &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{injected}");
    advance(&t, &legacy_app, 3600).await;
    let (_, _, expired) = get_full(&t, "/v1/users/self", &legacy, &[]).await;
    assert_eq!(
        injected["meta"]["error_type"], expired["meta"]["error_type"],
        "{injected} {expired}"
    );
    assert_eq!(injected["meta"]["code"], expired["meta"]["code"]);

    // Methods, latency and a hold.
    advance(&t, &dev, 3600).await;
    add_fault(
        &t,
        &dev,
        &[
            ("fault", "server_error"),
            ("method", "POST"),
            ("path", "/me/media"),
        ],
    )
    .await;
    assert_eq!(
        get(&t, "/me/media", &token).await.0,
        StatusCode::OK,
        "a GET does not match"
    );
    add_fault(
        &t,
        &dev,
        &[
            ("fault", "latency"),
            ("ms", "300"),
            ("path", "/me"),
            ("count", "1"),
        ],
    )
    .await;
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    assert_eq!(me(&t, &token, "id").await.0, StatusCode::OK);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    add_fault(
        &t,
        &dev,
        &[
            ("fault", "timeout"),
            ("ms", "200"),
            ("path", "/me"),
            ("count", "1"),
        ],
    )
    .await;
    // Request ids of this run's own: the store kinds' runs share one log.
    let port = t.base.rsplit(':').next().unwrap().to_owned();
    let timeout_id = format!("injected-timeout-{port}");
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let answer = async {
        let r = reqwest::Client::new()
            .get(t.url("/me?fields=id"))
            .bearer_auth(&token)
            .header("x-request-id", &timeout_id)
            .send()
            .await?;
        r.bytes().await
    }
    .await;
    assert!(answer.is_err(), "no answer: {answer:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    assert!(
        failure_logged(&timeout_id, "aborted=true"),
        "the injected timeout is logged as a failure"
    );
    assert_eq!(
        me(&t, &token, "id").await.0,
        StatusCode::OK,
        "the connection after it is fine"
    );

    // Rules are listed while active and cleared at once; bad ones are refused with a reason.
    advance(&t, &dev, 3600).await;
    add_fault(
        &t,
        &dev,
        &[
            ("fault", "server_error"),
            ("probability", "1"),
            ("path", "/me"),
        ],
    )
    .await;
    let id = format!("injected-fault-{port}");
    let failed = reqwest::Client::new()
        .get(t.url("/me?fields=id"))
        .bearer_auth(&token)
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        failure_logged(&id, "status=500"),
        "a server error is logged as one"
    );
    let (_, b) = tool(&t, &dev, Method::GET, "test_faults", &[]).await;
    let listed: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["fault"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["server_error", "server_error"], "{b}");
    let (s, b) = tool(&t, &dev, Method::DELETE, "test_faults", &[]).await;
    assert_eq!(
        (s, b["success"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{b}"
    );
    assert_eq!(me(&t, &token, "id").await.0, StatusCode::OK);
    let (s, b) = tool(&t, &dev, Method::POST, "test_faults", &[("fault", "boom")]).await;
    assert_eq!(
        (s, b["error"]["code"].as_u64()),
        (StatusCode::BAD_REQUEST, Some(100))
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("app_rate_limit"),
        "{b}"
    );

    // The call log: route templates, statuses, codes, the fault, the token's row; no secrets.
    let (s, b) = tool(&t, &dev, Method::GET, "test_log", &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let calls = b["data"].as_array().unwrap();
    assert!(calls.len() >= 10, "{b}");
    let limited = calls
        .iter()
        .find(|c| c["fault"] == "user_rate_limit")
        .unwrap();
    assert_eq!(limited["route"], "/me");
    assert_eq!(
        (limited["status"].as_u64(), limited["error_code"].as_u64()),
        (Some(429), Some(17))
    );
    assert!(limited["token_id"].as_i64().is_some() && limited["node"].as_str().is_some());
    let held = calls.iter().find(|c| c["fault"] == "timeout").unwrap();
    assert_eq!(held["status"], 0, "no answer was sent");
    assert!(
        calls
            .iter()
            .any(|c| c["route"] == "/me/{edge}" || c["route"] == "/me/media")
    );
    let text = b.to_string();
    assert!(
        !text.contains(&token) && !text.contains("fields=id"),
        "{text}"
    );
    let last = b["next_since"].as_u64().unwrap();
    let path = format!("/{}/test_log?since={last}", dev.client_id);
    let (_, b) = call(&t, Method::GET, &path, &app_token(&dev), &[]).await;
    assert_eq!(
        b["data"],
        serde_json::json!([]),
        "nothing after the last one"
    );
}

/// The SDK against injected faults: it backs off a rate limit and retries; an expired token
/// needs the user again.
async fn the_sdk_under_faults(t: TestApp) {
    use gramkey_client::{Client, Hosts, RetryPolicy};
    let (dev, _, _) = apps(&t).await;
    let token =
        gramkey_client::model::AccessToken::new(user_token(&t, &dev, SCOPES, "alice").await);
    let client = Client::new(Hosts::gramkey(&t.base).unwrap()).with_retry(RetryPolicy {
        max_retries: 3,
        base: std::time::Duration::from_millis(10),
        cap: std::time::Duration::from_millis(50),
        max_wait: std::time::Duration::from_secs(5),
    });
    add_fault(
        &t,
        &dev,
        &[
            ("fault", "app_rate_limit"),
            ("retry_after", "1"),
            ("count", "1"),
        ],
    )
    .await;
    add_fault(&t, &dev, &[("fault", "server_error"), ("count", "1")]).await;
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let me = client.me(&token, &["id", "username"]).await.unwrap();
    assert_eq!(me.username.as_deref(), Some("alice"));
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After was honoured"
    );
    add_fault(&t, &dev, &[("fault", "password_changed"), ("count", "1")]).await;
    let e = client.me(&token, &["id"]).await.unwrap_err();
    assert!(e.needs_reauthorization(), "{e}");
    let (_, b) = tool(&t, &dev, Method::GET, "test_log", &[]).await;
    let faults: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["fault"].as_str())
        .collect();
    assert_eq!(
        faults,
        ["app_rate_limit", "server_error", "password_changed"],
        "{b}"
    );
}

/// A fixture exported from one sandbox and imported into another (twice) gives the same users,
/// apps, roles, media and comments, with the same ids; people sign in with their passwords; a
/// reset empties the sandbox.
async fn fixtures(t: TestApp, other: TestApp) {
    use gramkey_server::fixtures::Fixture;
    use gramkey_server::origin::Origin;
    let ops = &t.state.ops;
    let (dev, _, _) = apps(&t).await;
    t.user("bob", "bob-password").await;
    let (alice, bob) = (
        super::webhooks::user(&t, "alice").await,
        super::webhooks::user(&t, "bob").await,
    );
    let album = media_row(
        "17900000000000100".into(),
        alice.id,
        START - 600,
        "CAROUSEL_ALBUM",
        None,
        0,
    );
    let child = media_row(
        "17900000000000101".into(),
        alice.id,
        START - 600,
        "IMAGE",
        Some("17900000000000100"),
        1,
    );
    let video = media_row(
        "17900000000000102".into(),
        bob.id,
        START - 60,
        "VIDEO",
        None,
        0,
    );
    for m in [&album, &child, &video] {
        ops.store.add_media(m).await.unwrap();
    }
    let first = ops
        .add_comment(&bob, (&album.id, alice.id), None, "nice @alice".into())
        .await
        .unwrap()
        .unwrap();
    ops.add_comment(
        &alice,
        (&album.id, alice.id),
        Some(&first),
        "thanks!".into(),
    )
    .await
    .unwrap()
    .unwrap();

    let exported = ops.export_fixture().await.unwrap();
    let text = serde_json::to_string_pretty(&exported).unwrap();
    assert!(!text.contains("alice-password"), "no password in clear");
    let fixture: Fixture = serde_json::from_str(&text).unwrap();
    assert_eq!((fixture.users.len(), fixture.apps.len()), (2, 3));
    assert_eq!((fixture.media.len(), fixture.comments.len()), (3, 2));

    let into = &other.state.ops;
    let done = into.import_fixture(&Origin::LOCAL, &fixture).await.unwrap();
    assert_eq!((done.apps_created.len(), done.users_created.len()), (3, 2));
    assert_eq!((done.media_added, done.comments_added), (3, 2));
    let again = into.import_fixture(&Origin::LOCAL, &fixture).await.unwrap();
    assert_eq!((again.apps_kept.len(), again.users_kept.len()), (3, 2));
    assert_eq!((again.media_added, again.comments_added), (0, 0));
    let re_exported = into.export_fixture().await.unwrap();
    assert_eq!(
        re_exported, fixture,
        "the same ids, settings, roles, media and comments"
    );

    // The same master key: the same secrets. A tester signs in with the same password and
    // reads the same media through the API.
    let secret = done
        .apps_created
        .iter()
        .find(|(id, _)| id.as_str() == dev.client_id)
        .map(|(_, s)| s.expose().to_owned());
    assert_eq!(secret.as_deref(), Some(dev.secret.as_str()));
    let token = user_token(&other, &dev, SCOPES, "alice").await;
    let (s, b) = get(&other, "/me/media?fields=id,media_type", &token).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"][0]["id"], "17900000000000100", "{b}");
    let path = "/17900000000000100/children?fields=id";
    assert_eq!(
        get(&other, path, &token).await.1["data"][0]["id"],
        "17900000000000101"
    );

    // A fixture with a mistake is refused with where it is.
    let mut broken = fixture.clone();
    broken.comments[0].author = "nobody".into();
    broken.comments[0].id = "17800000000000999".into();
    let e = into
        .import_fixture(&Origin::LOCAL, &broken)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nobody"), "{e}");
    let bad: Result<Fixture, _> = serde_json::from_str(r#"{"gramkey_fixture": 1, "userz": []}"#);
    assert!(bad.unwrap_err().to_string().contains("userz"));

    let (apps_gone, users_gone) = into.reset_sandbox(&Origin::LOCAL).await.unwrap();
    assert_eq!((apps_gone, users_gone), (3, 2));
    let empty = into.export_fixture().await.unwrap();
    assert!(empty.apps.is_empty() && empty.users.is_empty() && empty.media.is_empty());
    let (s, _) = get(&other, "/me?fields=id", &token).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "the reset took the tokens too");
}

/// `gramkey sandbox trigger`: another user comments on, or mentions, an app's user through
/// the real path, and the subscribed app receives the real webhook.
async fn triggers(t: TestApp) {
    use gramkey_server::sandbox::{Trigger, trigger};
    const IG: &str = "instagram_business_basic,instagram_business_manage_comments";
    let hook = super::webhooks::Hook::start().await;
    for name in ["alice", "bob"] {
        t.user(name, &format!("{name}-password")).await;
    }
    let app = t.app(IG, AppMode::Live).await;
    hook.secrets.lock().unwrap().push(app.secret.clone());
    let ops = &t.state.ops;
    let e = trigger(ops, &app.client_id, Trigger::Comment, "alice", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("has not authorized"), "{e}");
    let token = user_token(&t, &app, IG, "alice").await;
    let e = trigger(ops, &app.client_id, Trigger::Comment, "alice", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("alice has no posts"), "{e}");
    let (alice, bob) = (
        super::webhooks::user(&t, "alice").await,
        super::webhooks::user(&t, "bob").await,
    );
    for (id, who) in [
        ("17900000000000200", alice.id),
        ("17900000000000201", bob.id),
    ] {
        ops.store
            .add_media(&media_row(id.into(), who, START - 60, "IMAGE", None, 0))
            .await
            .unwrap();
    }
    let (s, b) =
        super::webhooks::subscribe(&t, &app, &hook, "comments,mentions", &hook.verify_token).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = call(
        &t,
        Method::POST,
        "/me/subscribed_apps",
        &token,
        &[("subscribed_fields", "comments,mentions")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let done = trigger(ops, &app.client_id, Trigger::Comment, "alice", None)
        .await
        .unwrap();
    assert_eq!(
        (done.author.as_str(), done.media.as_str()),
        ("bob", "17900000000000200")
    );
    let done = trigger(ops, &app.client_id, Trigger::Mention, "alice", Some("bob"))
        .await
        .unwrap();
    assert_eq!(done.media.as_str(), "17900000000000201");
    let deliver = super::webhooks::deliverer(&t);
    assert_eq!(deliver.deliver_due().await.unwrap(), 2);
    let got = hook.take();
    let mut fields: Vec<&str> = got
        .iter()
        .map(|n| n["entry"][0]["changes"][0]["field"].as_str().unwrap())
        .collect();
    // Delivered by one pass, in whichever order the pass sent them.
    fields.sort_unstable();
    assert_eq!(fields, ["comments", "mentions"], "{got:?}");
}

fn limited(c: &mut ServerConfig) {
    c.limits.user_calls = 4;
}

async fn on_postgres(name: &str, tune: fn(&mut ServerConfig)) -> Option<TestApp> {
    let url = postgres_url(name)?;
    let store = fresh_postgres(&url).await.unwrap();
    Some(TestApp::start_with(store, None, tune).await)
}

#[tokio::test]
async fn a_test_clock_moves_one_apps_time_on_sqlite() {
    test_clock(TestApp::sqlite_with(limited).await).await;
    rate_windows(TestApp::sqlite_with(limited).await).await;
}

#[tokio::test]
async fn a_test_clock_moves_one_apps_time_on_postgres() {
    let Some(t) = on_postgres("test_clock", limited).await else {
        return;
    };
    test_clock(t).await;
    rate_windows(on_postgres("rate_windows", limited).await.unwrap()).await;
}

#[tokio::test]
async fn fixtures_and_triggers_on_sqlite() {
    fixtures(TestApp::sqlite().await, TestApp::sqlite().await).await;
    triggers(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn fixtures_and_triggers_on_postgres() {
    let (Some(from), Some(into), Some(t)) = (
        on_postgres("fixture_from", |_| {}).await,
        on_postgres("fixture_into", |_| {}).await,
        on_postgres("triggers", |_| {}).await,
    ) else {
        return;
    };
    fixtures(from, into).await;
    triggers(t).await;
}

#[tokio::test]
async fn faults_are_injected_as_the_real_answers_on_sqlite() {
    faults(TestApp::sqlite_with(limited).await).await;
    the_sdk_under_faults(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn faults_are_injected_as_the_real_answers_on_postgres() {
    let Some(t) = on_postgres("faults", limited).await else {
        return;
    };
    faults(t).await;
    the_sdk_under_faults(on_postgres("sdk_faults", |_| {}).await.unwrap()).await;
}

/// Whether the log has an error line "response failed" with `detail`, in the span of the
/// request whose id is `id`.
fn failure_logged(id: &str, detail: &str) -> bool {
    let logged = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    logged.lines().any(|l| {
        l.contains("ERROR") && l.contains(id) && l.contains("response failed") && l.contains(detail)
    })
}
