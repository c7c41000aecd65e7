//! Rate limits, throttling, the audit log, metrics, alerts and app insights (issue 5).

use super::*;

/// A GET with headers kept: status, headers, JSON body.
pub(super) async fn get_full(
    t: &TestApp,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut r = reqwest::Client::new().get(t.url(path)).bearer_auth(token);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.unwrap())
}

/// Instagram Login calls report `X-Business-Use-Case-Usage` under the caller's Instagram user
/// id, Basic Display calls `X-App-Usage` (wire protocol §15).
#[tokio::test]
async fn usage_headers_follow_the_token_flavour() {
    let t = TestApp::sqlite().await;
    let (app, _) = setup(&t, "instagram_business_basic,user_profile").await;
    let business = user_token(&t, &app, "instagram_business_basic", "alice").await;
    let (s, h, b) = get_full(&t, "/me?fields=user_id", &business, &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(!h.contains_key("x-app-usage"));
    let usage: Value = serde_json::from_str(&header(&h, "x-business-use-case-usage")).unwrap();
    let entry = &usage[b["user_id"].as_str().unwrap()][0];
    assert_eq!(entry["type"], "instagram");
    assert_eq!(entry["estimated_time_to_regain_access"], 0);
    assert!(entry["call_count"].is_u64() && entry["total_time"].is_u64());
    let basic = user_token(&t, &app, "user_profile", "alice").await;
    let (_, h, _) = get_full(&t, "/me", &basic, &[]).await;
    assert!(h.contains_key("x-app-usage"));
    assert!(!h.contains_key("x-business-use-case-usage"));
}

pub(super) fn app_usage(h: &reqwest::header::HeaderMap) -> Value {
    serde_json::from_str(h["x-app-usage"].to_str().unwrap()).unwrap()
}

pub(super) fn header(h: &reqwest::header::HeaderMap, name: &str) -> String {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

pub(super) async fn metrics_text(t: &TestApp) -> String {
    let r = reqwest::Client::new()
        .get(t.url("/metrics"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

pub(super) async fn audit_events(t: &TestApp, query: &str) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(t.url(&format!("/admin/audit?{query}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn app_and_user_budgets_with_exact_headers_and_recovery() {
    let t = TestApp::sqlite_with(|c| {
        c.limits.app_calls_per_user = 10;
        c.limits.user_calls = 12;
    })
    .await;
    let app = t.app("user_profile,user_media", AppMode::Live).await;
    t.user("alice", "alice-password").await;
    t.user("bob", "bob-password").await;
    // Long-lived tokens, so they outlive the hour the test waits.
    let mut long = Vec::new();
    for user in ["alice", "bob"] {
        let short = user_token(&t, &app, "user_profile", user).await;
        let (s, b) = get_json(&t, &exchange_path(&app, &short)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        long.push(b["access_token"].as_str().unwrap().to_owned());
    }
    let (alice, bob) = (long[0].clone(), long[1].clone());
    // Two users authorized the app: its pool is 2 × 10 = 20 calls per rolling hour.
    for i in 1..=12u64 {
        let (s, h, b) = get_full(&t, "/me?fields=id", &alice, &[]).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let usage = app_usage(&h);
        assert_eq!(usage["call_count"], i * 100 / 20, "call {i}: {usage}");
        assert!(usage["total_time"].is_u64() && usage["total_cputime"].is_u64());
    }
    // Alice's own 12 are spent: code 17, and the pool is not charged.
    let (s, h, b) = get_full(&t, "/me?fields=id", &alice, &[]).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(b["error"]["code"], 17, "{b}");
    // user_profile makes these Basic Display tokens, whose non-190 errors are IGApiException.
    assert_eq!(b["error"]["type"], "IGApiException");
    assert_eq!(b["error"]["message"], "(#17) User request limit reached");
    assert_eq!(header(&h, "retry-after"), "3600");
    assert_eq!(app_usage(&h)["call_count"], 60);
    // Bob takes the pool's other 8; the 9th is the app's limit: code 4.
    for _ in 0..8 {
        assert_eq!(get(&t, "/me?fields=id", &bob).await.0, StatusCode::OK);
    }
    t.clock.advance(90);
    let (s, h, b) = get_full(&t, "/v19.0/me?fields=id", &bob, &[]).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(b["error"]["code"], 4, "{b}");
    assert_eq!(
        b["error"]["message"],
        "(#4) Application request limit reached"
    );
    // Every call so far sits in the first minute's bucket, which leaves the window at +3600.
    assert_eq!(header(&h, "retry-after"), (3600 - 90).to_string());
    assert_eq!(app_usage(&h)["call_count"], 100);
    // A second before the window passes: still refused. Then the pool is back.
    t.clock.advance(3600 - 90 - 1);
    let (s, h, _) = get_full(&t, "/me?fields=id", &bob, &[]).await;
    assert_eq!(
        (s, header(&h, "retry-after")),
        (StatusCode::TOO_MANY_REQUESTS, "1".into())
    );
    t.clock.advance(1);
    let (s, h, _) = get_full(&t, "/me?fields=id", &bob, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app_usage(&h)["call_count"], 5);
    assert!(h.get("retry-after").is_none());

    // The refusals were audited (once per budget per minute: these three came in three
    // different minutes), and counted in the metrics.
    let limited = audit_events(&t, "event=rate_limited").await;
    assert_eq!(limited.len(), 3, "{limited:?}");
    assert!(
        limited
            .iter()
            .all(|e| e["outcome"] == "refused" && e["app_id"] == app.client_id.as_str())
    );
    // A request refused before its token is read still counts under its route's shape.
    let (s, _, _) = get_full(&t, "/me?fields=id&fields=id", &bob, &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let metrics = metrics_text(&t).await;
    for line in [
        r#"gramkey_http_requests_total{route="/me",method="GET",status="400"} 1"#,
        r#"gramkey_rate_limited_total{kind="user"} 1"#,
        r#"gramkey_rate_limited_total{kind="app"} 2"#,
        r#"gramkey_http_requests_total{route="/me",method="GET",status="200"} 21"#,
        r#"gramkey_http_requests_total{route="/me",method="GET",status="429"} 3"#,
        r#"gramkey_tokens_issued_total{kind="short_lived"} 2"#,
        r#"gramkey_tokens_issued_total{kind="long_lived"} 2"#,
        r#"gramkey_active_tokens{kind="long_lived"} 2"#,
        "gramkey_callback_outbox_depth 0",
        "gramkey_http_request_duration_seconds_bucket{",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    let refused = reqwest::get(t.url("/metrics")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // App insights, with the app's own app token.
    let r = reqwest::get(t.url(&format!(
        "/oauth/access_token?client_id={}&client_secret={}&grant_type=client_credentials",
        app.client_id, app.secret
    )))
    .await
    .unwrap();
    let app_token = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, b) = get(
        &t,
        &format!("/{}/insights?period=hour", app.client_id),
        &app_token,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let metric = |name: &str| {
        b["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()["values"]
            .as_array()
            .unwrap()
            .clone()
    };
    let calls = metric("calls");
    assert_eq!(calls.len(), 24);
    // The first hour: 12 + 1 + 8 + 1 + 1 calls; the second: the call that came back (an
    // insights call is counted after it has answered).
    let first = calls
        .iter()
        .find(|v| v["end_time"] == "2027-01-15T09:00:00+0000")
        .unwrap();
    assert_eq!(first["value"], 23, "{calls:?}");
    let errors = metric("errors");
    let first_errors = errors
        .iter()
        .find(|v| v["end_time"] == "2027-01-15T09:00:00+0000")
        .unwrap();
    assert_eq!(first_errors["value"], serde_json::json!({"4": 2, "17": 1}));
    assert_eq!(b["summary"]["last_24_hours"]["distinct_users"], 2);
    assert_eq!(b["summary"]["last_24_hours"]["throttled_calls"], 3);
    assert_eq!(b["summary"]["last_24_hours"]["rate_limit_usage"], 100);
    assert_eq!(b["summary"]["last_7_days"]["calls"], 24);
    // Another app's insights are not this token's to read; nor are they for user tokens.
    let (s, b) = get(&t, "/1234567890123456/insights", &app_token).await;
    assert_eq!(
        (s, b["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, 100.into())
    );
    let (s, b) = get(
        &t,
        &format!("/{}/insights?metric=likes", app.client_id),
        &app_token,
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, 100.into())
    );
}

#[tokio::test]
async fn legacy_tokens_have_their_own_hourly_budget() {
    let t = TestApp::sqlite_with(|c| c.limits.legacy_token_development = 3).await;
    let app = t.app("basic,public_content", AppMode::Development).await;
    t.user("carol", "carol-password").await;
    t.role(&app, "carol", Role::Tester).await;
    // Issued a minute into the window's first bucket, so it outlives that bucket by a minute.
    t.clock.advance(59);
    let token = user_token(&t, &app, "basic", "carol").await;
    let mut left = vec![2, 1, 0].into_iter();
    for at in [0, 941, 0] {
        t.clock.advance(at);
        let (s, h, b) = get_full(&t, "/v1/users/self", &token, &[]).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(header(&h, "x-ratelimit-limit"), "3");
        assert_eq!(
            header(&h, "x-ratelimit-remaining"),
            left.next().unwrap().to_string()
        );
        assert!(h.contains_key("x-app-usage"));
    }
    let (s, h, b) = get_full(&t, "/v1/users/self", &token, &[]).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        b["meta"],
        serde_json::json!({"code": 429, "error_type": "OAuthRateLimitException",
            "error_message": "The maximum number of requests per hour has been exceeded."})
    );
    assert_eq!(header(&h, "x-ratelimit-remaining"), "0");
    // The first call's bucket leaves the window at START + 3600.
    assert_eq!(header(&h, "retry-after"), "2600");
    t.clock.advance(2600);
    let (s, h, _) = get_full(&t, "/v1/users/self", &token, &[]).await;
    assert_eq!(
        (s, header(&h, "x-ratelimit-remaining")),
        (StatusCode::OK, "0".into())
    );
}

/// Posts the login form for `app` as `user`; returns the status and page.
pub(super) async fn try_login(
    t: &TestApp,
    c: &reqwest::Client,
    app: &Registered,
    user: &str,
    pw: &str,
) -> (StatusCode, String) {
    let page = c
        .get(t.url(&format!(
            "/oauth/authorize?{}",
            authorize_query(app, "user_profile", &[])
        )))
        .send()
        .await
        .unwrap();
    let mut form = hidden_inputs(&page.text().await.unwrap());
    form.push(("username".into(), user.into()));
    form.push(("password".into(), pw.into()));
    let r = c
        .post(t.url("/oauth/authorize/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    (
        status,
        format!(
            "{}{text}",
            retry
                .map(|r| format!("retry-after {r}\n"))
                .unwrap_or_default()
        ),
    )
}

pub(super) async fn app_token_request(
    t: &TestApp,
    app: &Registered,
    secret: &str,
) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(t.url("/oauth/access_token"))
        .header("user-agent", "throttle-test/1.0")
        .form(&[
            ("client_id", app.client_id.as_str()),
            ("client_secret", secret),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn failed_client_authentications_and_sign_ins_are_throttled_then_recover() {
    let t = TestApp::sqlite_with(|c| {
        c.limits.client_auth_failures_per_ip = 10;
        c.limits.login_failures_per_ip = 8;
    })
    .await;
    let app = t.app("user_profile", AppMode::Live).await;
    for _ in 0..10 {
        let (s, b) = app_token_request(&t, &app, "00000000000000000000000000000000").await;
        assert_flat_error(s, &b, "Error validating client secret.");
    }
    // The 11th attempt is refused even with the right secret, in the rate-limit shape.
    let (s, b) = app_token_request(&t, &app, &app.secret).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert_eq!(b["error_type"], "OAuthRateLimitException");
    assert_eq!(b["code"], 429);
    assert_eq!(
        b["error_message"],
        "Too many failed client authentications. Retry after 900 seconds."
    );
    // RFC clients get RFC 6749's shape for the same refusal.
    let r = reqwest::Client::new()
        .post(t.url("/oauth/revoke"))
        .basic_auth(&app.client_id, Some(&app.secret))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "900");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "temporarily_unavailable"
    );
    // Fifteen minutes after the failures, the client is back.
    t.clock.advance(900);
    let (s, b) = app_token_request(&t, &app, &app.secret).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let failed = audit_events(
        &t,
        &format!("event=client_auth_failed&app={}", app.client_id),
    )
    .await;
    assert_eq!(
        failed.iter().filter(|e| e["outcome"] == "failure").count(),
        10
    );
    // Both refusals came in one minute from one address: audited once.
    assert_eq!(
        failed.iter().filter(|e| e["outcome"] == "refused").count(),
        1
    );
    assert!(failed.iter().all(|e| e["ip"] == "127.0.0.1"));
    assert!(
        failed
            .iter()
            .any(|e| e["user_agent"] == "throttle-test/1.0")
    );

    // Sign-ins: five wrong passwords lock the account; the right one is refused with how long
    // to wait; after the wait it works, and a success clears the count.
    t.user("dora", "dora-password").await;
    let c = browser();
    for _ in 0..5 {
        let (s, page) = try_login(&t, &c, &app, "dora", "not-her-password").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(page.contains("The username or password is incorrect."));
    }
    let (s, page) = try_login(&t, &c, &app, "dora", "dora-password").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.starts_with("retry-after 900"), "{page}");
    assert!(
        page.contains("Too many failed sign-ins for this account. Try again in 15 minutes."),
        "{page}"
    );
    t.clock.advance(600);
    let (_, page) = try_login(&t, &c, &app, "dora", "dora-password").await;
    assert!(page.contains("Try again in 5 minutes."), "{page}");
    t.clock.advance(300);
    let (s, _) = try_login(&t, &c, &app, "dora", "dora-password").await;
    assert_eq!(s, StatusCode::SEE_OTHER, "the lockout ends on its own");
    let logins = audit_events(&t, "event=login_failed").await;
    assert_eq!(
        logins.iter().filter(|e| e["outcome"] == "failure").count(),
        5
    );
    assert_eq!(
        logins.iter().filter(|e| e["outcome"] == "refused").count(),
        2
    );
    assert_eq!(audit_events(&t, "event=login_succeeded").await.len(), 1);

    // An administrator can end a lockout at once.
    for _ in 0..5 {
        try_login(&t, &c, &app, "dora", "wrong").await;
    }
    assert_eq!(
        try_login(&t, &c, &app, "dora", "dora-password").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    let r = reqwest::Client::new()
        .post(t.url("/admin/users/dora/unlock"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        try_login(&t, &c, &app, "dora", "dora-password").await.0,
        StatusCode::SEE_OTHER
    );
    // An address has its own limit (8 here): three more failures on another account reach it,
    // and only the address unlock ends that lockout.
    t.user("eve", "eve-password").await;
    for _ in 0..3 {
        try_login(&t, &c, &app, "eve", "wrong").await;
    }
    let (s, page) = try_login(&t, &c, &app, "eve", "eve-password").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.contains("Too many failed sign-ins from your network."),
        "{page}"
    );
    let r = reqwest::Client::new()
        .post(t.url("/admin/addresses/127.0.0.1/unlock"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        try_login(&t, &c, &app, "eve", "eve-password").await.0,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn every_audited_action_leaves_an_event_with_ids_only() {
    let t = TestApp::sqlite().await;
    let mut app = t.app("user_profile,user_media", AppMode::Live).await;
    t.user("erin", "erin-password").await;
    t.role(&app, "erin", Role::Tester).await;
    let short = user_token(&t, &app, "user_profile", "erin").await;
    let (_, long) = get_json(&t, &exchange_path(&app, &short)).await;
    let long = long["access_token"].as_str().unwrap().to_owned();
    t.clock.advance(2 * 24 * 3600);
    assert_eq!(get_json(&t, &refresh_path(&long)).await.0, StatusCode::OK);
    // A replayed code.
    let redirect = authorize(
        &t,
        &browser(),
        &authorize_query(&app, "user_profile", &[]),
        "erin",
        "erin-password",
        "allow",
    )
    .await;
    let code = code_of(&redirect);
    exchange(&t, &app, &code, &[]).await;
    exchange(&t, &app, &code, &[]).await;
    // RFC 7009 revocation, a rotated secret, changed callbacks.
    let r = reqwest::Client::new()
        .post(t.url("/oauth/revoke"))
        .basic_auth(&app.client_id, Some(&app.secret))
        .form(&[("token", long.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.secret = t
        .state
        .ops
        .rotate_secret(&gramkey_server::origin::Origin::LOCAL, &app.client_id, None)
        .await
        .unwrap()
        .expose()
        .to_owned();
    t.state
        .ops
        .set_app_callbacks(
            &gramkey_server::origin::Origin::LOCAL,
            &app.client_id,
            Some("https://app.example/deauth"),
            None,
        )
        .await
        .unwrap();
    // The user removes the app; then the app is deleted.
    let token = user_token(&t, &app, "user_profile", "erin").await;
    let (s, _) = call(&t, reqwest::Method::DELETE, "/me/permissions", &token, &[]).await;
    assert_eq!(s, StatusCode::OK);
    let erin = t.state.ops.user("erin").await.unwrap().id.0;
    t.state
        .ops
        .delete_app(&gramkey_server::origin::Origin::LOCAL, &app.client_id)
        .await
        .unwrap();

    let all = audit_events(&t, &format!("app={}&limit=1000", app.client_id)).await;
    let of = |event: &str| -> Vec<&Value> { all.iter().filter(|e| e["event"] == event).collect() };
    for (event, at_least) in [
        ("app_created", 1),
        ("app_changed", 2), // the role, the callback URLs
        ("consent_granted", 1),
        ("login_succeeded", 3),
        ("token_issued", 3),
        ("token_exchanged", 1),
        ("token_refreshed", 1),
        ("code_replay", 1),
        ("token_revoked", 3), // the replay, the RFC revocation, the removal
        ("secret_rotated", 1),
        ("consent_removed", 1),
        ("app_deleted", 1),
    ] {
        assert!(of(event).len() >= at_least, "{event}: {:?}", of(event));
    }
    let issued = of("token_issued")[0];
    assert_eq!(issued["user_id"], erin);
    assert!(issued["token_id"].as_i64().unwrap() > 0);
    assert_eq!(issued["ip"], "127.0.0.1");
    assert!(
        of("token_revoked")
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains("code_replay"))
    );
    assert!(
        of("token_revoked")
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains("app_removed"))
    );
    // Filters: by user and since; paging with before.
    let by_user = audit_events(&t, "user=erin&event=consent_removed").await;
    assert_eq!(by_user.len(), 1);
    let newest = audit_events(&t, "limit=2").await;
    let older = audit_events(&t, &format!("limit=2&before={}", newest[1]["id"])).await;
    assert!(older[0]["id"].as_i64() < newest[1]["id"].as_i64());
    assert!(
        audit_events(&t, &format!("since={}", START + 10 * 24 * 3600))
            .await
            .is_empty()
    );
    let r = reqwest::Client::new()
        .get(t.url("/admin/audit?event=nope"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// A webhook receiver that keeps what it is sent.
pub(super) async fn alert_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let keep = got.clone();
    let router = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, got)
}

pub(super) async fn wait_for_alert(
    got: &Arc<Mutex<Vec<Value>>>,
    kind: &str,
    n: usize,
) -> Vec<Value> {
    for _ in 0..200 {
        let of: Vec<Value> = got
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == kind)
            .cloned()
            .collect();
        if of.len() >= n {
            return of;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no {kind} alert: {:?}", got.lock().unwrap());
}

#[tokio::test]
async fn each_alert_kind_reaches_the_webhook_once_per_storm() {
    let (url, got) = alert_receiver().await;
    let t = TestApp::sqlite_with(|c| {
        c.alert_webhook = Some(url);
        c.trust_forwarded_for = true;
        c.alert_thresholds.failure_burst = 3;
        c.alert_thresholds.rate_min_calls = 20;
        c.alert_thresholds.rate_factor = 3.0;
        c.limits.app_calls_per_user = 10_000;
    })
    .await;
    let app = t.app("user_profile", AppMode::Live).await;
    t.user("fay", "fay-password").await;
    let token = user_token(&t, &app, "user_profile", "fay").await;
    let (_, long) = get_json(&t, &exchange_path(&app, &token)).await;
    let token = long["access_token"].as_str().unwrap().to_owned();
    let from = |ip: &'static str| [("x-forwarded-for", ip)];

    // A token used from a second network.
    get_full(&t, "/me?fields=id", &token, &from("198.51.100.7")).await;
    get_full(&t, "/me?fields=id", &token, &from("198.51.100.99")).await; // same /24
    get_full(&t, "/me?fields=id", &token, &from("203.0.113.9")).await;
    let a = wait_for_alert(&got, "new_network", 1).await;
    assert_eq!(a[0]["details"]["network"], "203.0.113.0/24");
    assert_eq!(a[0]["details"]["app_id"], app.client_id.as_str());

    // A burst of failed client authentications, then more: one alert per subject.
    for _ in 0..6 {
        app_token_request(&t, &app, "11111111111111111111111111111111").await;
    }
    let a = wait_for_alert(&got, "client_auth_failures", 1).await;
    assert!(
        a.iter()
            .any(|x| x["subject"] == format!("client:id:{}", app.client_id)),
        "{a:?}"
    );
    // A burst of failed sign-ins.
    let c = browser();
    for _ in 0..4 {
        try_login(&t, &c, &app, "fay", "wrong-password").await;
    }
    let a = wait_for_alert(&got, "login_failures", 1).await;
    assert!(a.iter().any(|x| x["subject"] == "account:fay"), "{a:?}");

    // A rate jump: a call every 5 minutes for an hour, then 30 in one minute.
    for _ in 0..13 {
        get_full(&t, "/me?fields=id", &token, &from("198.51.100.7")).await;
        t.clock.advance(300);
    }
    for _ in 0..30 {
        get_full(&t, "/me?fields=id", &token, &from("198.51.100.7")).await;
    }
    let a = wait_for_alert(&got, "rate_jump", 1).await;
    assert_eq!(a[0]["details"]["app_id"], app.client_id.as_str());

    // Storms were deduplicated: one alert per kind and subject.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let all = got.lock().unwrap().clone();
    let mut keys: Vec<String> = all
        .iter()
        .map(|a| format!("{}|{}", a["kind"], a["subject"]))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "duplicates in {all:?}");
    assert_eq!(all.iter().filter(|a| a["kind"] == "rate_jump").count(), 1);
}

/// A limiter backend that is always down, counting how often it is asked.
#[derive(Default)]
pub(super) struct Down(std::sync::atomic::AtomicU32);

impl Down {
    fn asked(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl gramkey_server::limits::Backend for Down {
    async fn check(
        &self,
        _: i64,
        _: &[gramkey_server::limits::Check],
    ) -> Result<gramkey_server::limits::Verdict, gramkey_server::limits::BackendError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(gramkey_server::limits::BackendError("down".into()))
    }
    async fn add(
        &self,
        _: i64,
        _: &gramkey_domain::ratelimit::BudgetKey,
        _: gramkey_domain::ratelimit::WindowSpec,
        _: u64,
    ) -> Result<(), gramkey_server::limits::BackendError> {
        Err(gramkey_server::limits::BackendError("down".into()))
    }
    async fn refund(
        &self,
        _: i64,
        _: &gramkey_domain::ratelimit::BudgetKey,
        _: gramkey_domain::ratelimit::WindowSpec,
        _: u64,
    ) -> Result<(), gramkey_server::limits::BackendError> {
        Err(gramkey_server::limits::BackendError("down".into()))
    }
    async fn reset(
        &self,
        _: &gramkey_domain::ratelimit::BudgetKey,
    ) -> Result<(), gramkey_server::limits::BackendError> {
        Err(gramkey_server::limits::BackendError("down".into()))
    }
    async fn reset_app(
        &self,
        _: &gramkey_domain::AppId,
    ) -> Result<(), gramkey_server::limits::BackendError> {
        Err(gramkey_server::limits::BackendError("down".into()))
    }
    async fn ping(&self) -> Result<&'static str, gramkey_server::limits::BackendError> {
        Err(gramkey_server::limits::BackendError("down".into()))
    }
}

#[tokio::test]
async fn a_down_limiter_fails_open_or_closed_as_configured() {
    use gramkey_server::limits::OnFailure;
    for on_failure in [OnFailure::Open, OnFailure::Closed] {
        let (store, dir) = fresh_sqlite().unwrap();
        let down = Arc::new(Down::default());
        let start = Start {
            limiter: Some(down.clone()),
            ..Start::default()
        };
        let t = TestApp::start_on(
            store,
            Some(dir),
            |c| c.on_limiter_failure = on_failure,
            start,
        )
        .await;
        let app = t.app("user_profile", AppMode::Live).await;
        if on_failure == OnFailure::Open {
            // Everything works, unlimited, with no usage headers (nothing is known of the
            // budgets), and a down backend is not asked again on every call: the clock stands
            // still here, so after the first failure it is asked no more.
            t.user("gus", "gus-password").await;
            let token = user_token(&t, &app, "user_profile", "gus").await;
            let asked = down.asked();
            for _ in 0..20 {
                let r = reqwest::Client::new()
                    .get(t.url("/me?fields=id"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                for name in [
                    "x-app-usage",
                    "x-business-use-case-usage",
                    "x-ratelimit-remaining",
                ] {
                    assert!(
                        r.headers().get(name).is_none(),
                        "{name} while the limiter is down"
                    );
                }
            }
            // (Probing again a second later is the unit tests' business: here the node's
            // once-a-second charging task may be the one that probes.)
            assert_eq!(down.asked(), asked, "a known-down backend is not asked");
        } else {
            // Closed: even a right secret is refused, as "temporarily unavailable", not as a
            // failed authentication, and nothing false is audited.
            let (s, b) = app_token_request(&t, &app, &app.secret).await;
            assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
            assert_eq!(b["error"], "temporarily_unavailable", "{b}");
            let r = reqwest::Client::new()
                .post(t.url("/oauth/introspect"))
                .basic_auth(&app.client_id, Some(&app.secret))
                .form(&[("token", "IGQWRnothing")])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            let events = t
                .state
                .ops
                .store
                .audit(&gramkey_store::AuditQuery {
                    limit: 100,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert!(
                events
                    .iter()
                    .all(|e| e.event.kind != gramkey_domain::audit::AuditKind::ClientAuthFailed),
                "{events:?}"
            );
        }
    }
    let text = String::from_utf8(logs().0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("RATE LIMITER UNAVAILABLE"),
        "an outage is logged loudly"
    );
}

#[tokio::test]
async fn writes_have_a_lower_budget_than_reads() {
    let t = TestApp::sqlite_with(|c| c.limits.writes_live = 2).await;
    let scopes = "instagram_business_basic,instagram_business_manage_comments";
    let (app, _) = setup(&t, scopes).await;
    let alice = user_id(&t, "alice").await;
    t.state
        .ops
        .store
        .add_media(&media_row(
            "17900000000000009".into(),
            alice,
            START - 10,
            "IMAGE",
            None,
            0,
        ))
        .await
        .unwrap();
    let token = user_token(&t, &app, scopes, "alice").await;
    let comment = |n: &'static str| {
        let (t, token) = (&t, token.clone());
        async move {
            call(
                t,
                reqwest::Method::POST,
                "/17900000000000009/comments",
                &token,
                &[("message", n)],
            )
            .await
        }
    };
    assert_eq!(comment("one").await.0, StatusCode::OK);
    assert_eq!(comment("two").await.0, StatusCode::OK);
    let (s, b) = comment("three").await;
    assert_eq!(
        (s, b["error"]["code"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, 17.into()),
        "{b}"
    );
    // Reads go on.
    let (s, b) = get(&t, "/17900000000000009/comments", &token).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"].as_array().unwrap().len(), 2);
}
