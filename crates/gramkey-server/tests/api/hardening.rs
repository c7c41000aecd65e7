//! What a hostile suite found (issue 15), each kept fixed by a test that fails without the fix.

use super::long_lived::short_lived;
use super::resource::{call, get, user_token};
use super::*;

/// Where a fetched URL is told apart: `/ok.jpg` is an image, `/to-userinfo` redirects to it
/// with credentials, `/loop` redirects to itself. Counts every request and every
/// `Authorization` header it sees.
#[derive(Clone, Default)]
struct Probe {
    hits: Arc<Mutex<Vec<String>>>,
    authorizations: Arc<Mutex<u32>>,
}

impl Probe {
    async fn start() -> (Self, u16) {
        use axum::http::HeaderMap;
        use axum::response::{IntoResponse, Redirect};
        let probe = Probe::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = probe.clone();
        let router =
            axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap| {
                let p = p.clone();
                async move {
                    p.hits.lock().unwrap().push(uri.path().to_owned());
                    if headers.contains_key("authorization") {
                        *p.authorizations.lock().unwrap() += 1;
                    }
                    match uri.path() {
                        "/to-userinfo" => {
                            Redirect::to(&format!("http://user:pass@127.0.0.1:{port}/ok.jpg"))
                                .into_response()
                        }
                        "/loop" => Redirect::to("/loop").into_response(),
                        _ => ([("content-type", "image/jpeg")], vec![0xFFu8, 0xD8, 0xFF])
                            .into_response(),
                    }
                }
            });
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (probe, port)
    }

    fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

const FETCH_FAILED: &str = "Error: The media could not be fetched from this URI (2207052)";

/// A publisher's token and account id on `t`.
async fn publisher(t: &TestApp) -> (String, String) {
    let scopes = "instagram_business_basic,instagram_business_content_publish";
    let app = t.app(scopes, AppMode::Live).await;
    t.user("alice", "alice-password").await;
    let token = user_token(t, &app, scopes, "alice").await;
    let (_, me) = get(t, "/me", &token).await;
    (token, me["id"].as_str().unwrap().to_owned())
}

/// Makes an image container for `url` and waits for it to end: its `status_code`, `status`.
async fn container(t: &TestApp, token: &str, ig: &str, url: &str) -> (String, String) {
    let (s, b) = call(
        t,
        reqwest::Method::POST,
        &format!("/{ig}/media"),
        token,
        &[("image_url", url)],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{url}: {b}");
    let id = b["id"].as_str().unwrap().to_owned();
    for _ in 0..500 {
        let (_, st) = get(t, &format!("/{id}?fields=status_code,status"), token).await;
        if st["status_code"] != "IN_PROGRESS" {
            return (
                st["status_code"].as_str().unwrap().to_owned(),
                st["status"].as_str().unwrap_or_default().to_owned(),
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("container for {url} never finished");
}

#[tokio::test]
async fn publishing_cannot_make_the_server_fetch_private_addresses() {
    let t = TestApp::sqlite_with(|c| c.fetch_allow_private = false).await;
    let (token, ig) = publisher(&t).await;
    let (probe, port) = Probe::start().await;
    // Every spelling of this machine, with the port of a server that would answer with an
    // image; metadata and private ranges on the default port.
    let urls = [
        format!("http://127.0.0.1:{port}/ok.jpg"),
        format!("http://127.1:{port}/ok.jpg"),
        format!("http://2130706433:{port}/ok.jpg"),
        format!("http://0x7f.0.0.1:{port}/ok.jpg"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok.jpg"),
        format!("http://localhost:{port}/ok.jpg"),
        format!("http://0.0.0.0:{port}/ok.jpg"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/x.jpg".to_owned(),
        "http://[::1]:9/x.jpg".to_owned(),
    ];
    for url in &urls {
        assert_eq!(
            container(&t, &token, &ig, url).await,
            ("ERROR".to_owned(), FETCH_FAILED.to_owned()),
            "{url}"
        );
    }
    assert_eq!(
        probe.hits(),
        Vec::<String>::new(),
        "nothing reached the local server"
    );
}

#[tokio::test]
async fn userinfo_redirects_and_their_count_are_checked_even_when_private_is_allowed() {
    let t = TestApp::sqlite().await; // fetch_allow_private on, as the sandbox runs
    let (token, ig) = publisher(&t).await;
    let (probe, port) = Probe::start().await;
    let base = format!("http://127.0.0.1:{port}");
    // Credentials in the URL would be sent as `Authorization: Basic`.
    let with_userinfo = format!("http://user:pass@127.0.0.1:{port}/ok.jpg");
    assert_eq!(container(&t, &token, &ig, &with_userinfo).await.0, "ERROR");
    assert!(probe.hits().is_empty(), "{:?}", probe.hits());
    // A redirect is held to the same rules as the first URL.
    assert_eq!(
        container(&t, &token, &ig, &format!("{base}/to-userinfo")).await,
        ("ERROR".to_owned(), FETCH_FAILED.to_owned())
    );
    assert_eq!(probe.hits(), vec!["/to-userinfo".to_owned()]);
    // At most 5 redirects.
    assert_eq!(
        container(&t, &token, &ig, &format!("{base}/loop")).await.0,
        "ERROR"
    );
    assert_eq!(probe.hits().len(), 1 + 6);
    assert_eq!(*probe.authorizations.lock().unwrap(), 0);
    // The control: the same server's image is fetched.
    assert_eq!(
        container(&t, &token, &ig, &format!("{base}/ok.jpg"))
            .await
            .0,
        "FINISHED"
    );
}

#[tokio::test]
async fn callbacks_to_private_addresses_are_refused_and_say_why() {
    use super::callbacks::{Receiver, admin_callbacks, callback_app, remove_by_admin};
    use gramkey_server::callbacks::Deliverer;
    let t = TestApp::sqlite_with(|c| c.fetch_allow_private = false).await;
    let rx = Receiver::start().await;
    let app = callback_app(&t, &rx).await;
    t.user("alice", "alice-password").await;
    short_lived(&t, &app, &browser(), true).await;
    let (s, b) = remove_by_admin(&t, &app, true).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let deliver = Deliverer::new(t.state.ops.clone(), t.state.config.fetch_allow_private).unwrap();
    assert_eq!(deliver.deliver_due().await.unwrap(), 2);
    assert!(
        rx.take().is_empty(),
        "the receiver on 127.0.0.1 got nothing"
    );
    let listed = admin_callbacks(&t, &app).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    for cb in &listed {
        let error = cb["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("outbound") && error.contains("127.0.0.1"),
            "{cb}"
        );
    }
}

/// Writes `head` on a new connection and reads until the server closes it (or 10 s pass).
/// Returns what the server answered and how long it took to close.
async fn held(addr: &str, head: &str) -> tokio::task::JoinHandle<(String, std::time::Duration)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let head = head.to_owned();
    tokio::spawn(async move {
        let began = std::time::Instant::now();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            conn.read_to_end(&mut answer),
        )
        .await;
        assert!(read.is_ok(), "still open after 10 s: {head:?}");
        (
            String::from_utf8_lossy(&answer).into_owned(),
            began.elapsed(),
        )
    })
}

/// A node with this header timeout, a 2 s request deadline and this connection cap; its
/// address.
async fn limited(header_timeout: std::time::Duration, max_connections: usize) -> (TestApp, String) {
    let limits = gramkey_server::transport::ConnectionLimits {
        header_timeout,
        request_timeout: std::time::Duration::from_secs(2),
        max_connections,
    };
    let (store, dir) = fresh_sqlite().unwrap();
    let start = Start {
        limits: Some(limits),
        ..Start::default()
    };
    let t = TestApp::start_on(store, Some(dir), |_| {}, start).await;
    let addr = t.base.trim_start_matches("http://").to_owned();
    (t, addr)
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed_while_others_are_served() {
    use std::time::Duration;
    let (t, addr) = limited(Duration::from_millis(500), 8).await;
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let slow = [
        // Silent, and headers that never end.
        held(&addr, "").await,
        held(&addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n").await,
        // A body that stops after 3 bytes, and one that claims 10 GB.
        held(&addr, &format!("POST /oauth/access_token HTTP/1.1\r\nHost: x\r\n{form}Content-Length: 100\r\n\r\nabc")).await,
        held(&addr, &format!("POST /oauth/access_token HTTP/1.1\r\nHost: x\r\n{form}Content-Length: 10000000000\r\n\r\nabc")).await,
        // Keep-alive, idle after one answer.
        held(&addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await,
    ];
    // Meanwhile, others are served at once.
    let ok = reqwest::get(t.url("/healthz")).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let mut answers = Vec::new();
    for conn in slow {
        let (answer, took) = conn.await.unwrap();
        assert!(
            took < Duration::from_secs(3),
            "closed after {took:?}: {answer}"
        );
        answers.push(answer);
    }
    assert_eq!(answers[0], "");
    assert_eq!(answers[1], "");
    // The stalled body is answered in the token endpoint's own shape.
    assert!(answers[2].starts_with("HTTP/1.1 408"), "{}", answers[2]);
    assert!(
        answers[2].contains(r#""error":"invalid_request""#),
        "{}",
        answers[2]
    );
    assert!(answers[3].starts_with("HTTP/1.1 413"), "{}", answers[3]);
    assert!(
        answers[3].contains(r#""error_type":"OAuthException""#),
        "{}",
        answers[3]
    );
    assert!(answers[4].starts_with("HTTP/1.1 200"), "{}", answers[4]);
}

#[tokio::test]
async fn at_the_connection_cap_new_connections_wait_and_the_log_says_so() {
    use std::time::Duration;
    let (t, addr) = limited(Duration::from_millis(700), 4).await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(held(&addr, "").await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Served once the silent ones time out, not refused.
    let began = std::time::Instant::now();
    let ok = reqwest::get(t.url("/healthz")).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(
        began.elapsed() >= Duration::from_millis(300),
        "{:?}",
        began.elapsed()
    );
    for conn in silent {
        conn.await.unwrap();
    }
    let logged = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    assert!(logged.contains("connection limit reached"), "no log line");
}

/// NUL and other control characters in any text input: refused in the route's own shape, on
/// both stores (PostgreSQL answered 500 for NUL, SQLite stored it).
async fn control_characters(t: TestApp) {
    use super::long_lived::graph_code;
    let scopes = "instagram_business_basic,instagram_business_content_publish,instagram_business_manage_comments";
    let app = t.app(scopes, AppMode::Live).await;
    t.user("alice", "alice-password").await;
    let token = user_token(&t, &app, scopes, "alice").await;
    let (_, me) = get(&t, "/me", &token).await;
    let ig = me["id"].as_str().unwrap().to_owned();
    let alice = super::resource::user_id(&t, "alice").await;
    let row =
        super::resource::media_row("17900000000000001".into(), alice, START, "IMAGE", None, 0);
    t.state.ops.store.add_media(&row).await.unwrap();
    let (_, media) = get(&t, "/me/media", &token).await;
    let media_id = media["data"][0]["id"].as_str().unwrap().to_owned();
    let message = "Parameter message contains a control character (U+0000); text may hold only tabs and line breaks";

    // Bodies and queries on Graph: code 100, nothing stored.
    let (s, b) = call(
        &t,
        reqwest::Method::POST,
        &format!("/{media_id}/comments"),
        &token,
        &[("message", "hi\0there")],
    )
    .await;
    assert_eq!(
        (s, graph_code(&b)),
        (StatusCode::BAD_REQUEST, (Some(100), None)),
        "{b}"
    );
    assert_eq!(b["error"]["message"], format!("(#100) {message}"));
    let (s, b) = call(
        &t,
        reqwest::Method::POST,
        &format!("/{media_id}/comments?message=hi%00there"),
        &token,
        &[],
    )
    .await;
    assert_eq!(
        (s, graph_code(&b).0),
        (StatusCode::BAD_REQUEST, Some(100)),
        "{b}"
    );
    for form in [
        [
            ("image_url", "https://cdn.example/x.jpg"),
            ("caption", "bell\u{7}"),
        ],
        [
            ("image_url", "https://cdn.example/x\u{1b}.jpg"),
            ("caption", "fine"),
        ],
    ] {
        let (s, b) = call(
            &t,
            reqwest::Method::POST,
            &format!("/{ig}/media"),
            &token,
            &form,
        )
        .await;
        assert_eq!(
            (s, graph_code(&b).0),
            (StatusCode::BAD_REQUEST, Some(100)),
            "{form:?}: {b}"
        );
    }
    let (_, comments) = get(&t, &format!("/{media_id}/comments"), &token).await;
    assert_eq!(comments["data"], serde_json::json!([]));
    // Tabs and line breaks are text.
    let (s, b) = call(
        &t,
        reqwest::Method::POST,
        &format!("/{media_id}/comments"),
        &token,
        &[("message", "two\tcolumns\r\nand a line")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // The token endpoint, in its flat shape.
    let r = reqwest::Client::new()
        .post(t.url("/oauth/access_token"))
        .form(&[
            ("client_id", app.client_id.as_str()),
            ("client_secret", "x\0"),
            ("grant_type", "authorization_code"),
            ("redirect_uri", "https://app.example/cb"),
            ("code", "AQ"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"], "invalid_request", "{b}");
    assert!(
        b["error_message"]
            .as_str()
            .unwrap()
            .contains("client_secret contains a control character"),
        "{b}"
    );

    // Legacy v1, in its envelope.
    let r = reqwest::get(t.url(&format!("/v1/users/self?access_token={token}&x=%01")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["meta"]["error_type"], "APIInvalidParametersError", "{b}");

    // The admin API's JSON.
    let r = reqwest::Client::new()
        .post(t.url("/admin/users"))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({"username": "bob\u{0}", "password": "bob-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("U+0000"));
}

#[tokio::test]
async fn control_characters_are_refused_on_sqlite() {
    control_characters(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn control_characters_are_refused_on_postgres() {
    let Some(t) = TestApp::postgres("control_characters_are_refused_on_postgres").await else {
        return;
    };
    control_characters(t).await;
}

/// Wrong admin keys are counted per address: the address that guesses is refused (the right
/// key too, until its failures age), and the right key from any other address still works.
#[tokio::test]
async fn wrong_admin_keys_lock_out_their_address_only() {
    let t = TestApp::sqlite_with(|c| c.trust_forwarded_for = true).await;
    let limit = t.state.limiter.limits.login_failures_per_ip;
    let admin = |from: &'static str, key: &'static str| {
        let url = t.url("/admin/apps");
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(key)
                .header("x-forwarded-for", from)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for i in 0..limit {
        assert_eq!(
            admin("203.0.113.7", "wrong").await,
            StatusCode::UNAUTHORIZED,
            "try {i}"
        );
    }
    assert_eq!(
        admin("203.0.113.7", "wrong").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        admin("203.0.113.7", ADMIN_KEY).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(admin("198.51.100.9", ADMIN_KEY).await, StatusCode::OK);
    // Right keys cost nothing.
    for _ in 0..(limit + 5) {
        assert_eq!(admin("198.51.100.9", ADMIN_KEY).await, StatusCode::OK);
    }
    // Once its failures are 15 minutes old, the address may try again.
    t.clock.advance(15 * 60 + 1);
    assert_eq!(admin("203.0.113.7", ADMIN_KEY).await, StatusCode::OK);
}

/// Small ones: request ids, oversized heads, v1's repeated parameters, tabs in redirect URIs.
#[tokio::test]
async fn request_ids_heads_repeats_and_redirect_tabs() {
    let t = TestApp::sqlite().await;
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let id_of = |r: &reqwest::Response| r.headers()["x-request-id"].to_str().unwrap().to_owned();
    // A safe client id is kept; a long one or one that could break a log line is replaced.
    let r = client
        .get(t.url("/healthz"))
        .header("x-request-id", "trace-0f8fad5b")
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&r), "trace-0f8fad5b");
    for bad in ["evil\tline=1", &"x".repeat(200), "a b"] {
        let r = client
            .get(t.url("/healthz"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        assert_ne!(id_of(&r), bad);
        assert!(gramkey_domain::text::safe_request_id(&id_of(&r)));
    }
    // Oversized heads get a body in Graph's shape, not hyper's empty answer.
    let r = client
        .get(t.url(&format!("/me?x={}", "a".repeat(10_000))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::URI_TOO_LONG);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], 100);
    let r = client
        .get(t.url("/me"))
        .header("x-big", "b".repeat(40_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], 100);
    // Legacy v1 refuses a repeated parameter as Graph does (but for `sig`, which
    // python-instagram sends twice: resource::real_client_libraries_work_unmodified).
    let r = client
        .get(t.url("/v1/users/self?access_token=a&access_token=b"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        b["meta"]["error_message"],
        "Parameter access_token was given more than once"
    );
    // A tab in a loopback redirect URI does not match (and so never reaches Location).
    let app = t.app("user_profile", AppMode::Live).await;
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", app.client_id.as_str()),
            ("redirect_uri", "http://127.0.0.1:5000/loop\tback"),
            ("scope", "user_profile"),
            ("response_type", "code"),
        ])
        .finish();
    let r = client
        .get(t.url(&format!("/oauth/authorize?{q}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
}

#[tokio::test]
async fn client_request_ids_are_logged_only_when_safe() {
    let t = TestApp::sqlite().await;
    let marker = "forged-line-7f3a";
    reqwest::Client::new()
        .get(t.url("/healthz"))
        .header("x-request-id", format!("x\t{marker}"))
        .send()
        .await
        .unwrap();
    // The control: a safe id is logged as sent.
    reqwest::Client::new()
        .get(t.url("/healthz"))
        .header("x-request-id", "safe-id-91b2c4")
        .send()
        .await
        .unwrap();
    let logged = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    assert!(logged.contains("safe-id-91b2c4"));
    assert!(!logged.contains(marker));
}
