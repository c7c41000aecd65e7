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

#[tokio::test]
async fn slow_and_idle_connections_are_closed_while_others_are_served() {
    use gramkey_server::transport::ConnectionLimits;
    use std::time::Duration;
    let limits = ConnectionLimits {
        header_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(2),
        max_connections: 8,
    };
    let (store, dir) = fresh_sqlite().unwrap();
    let start = Start {
        limits: Some(limits),
        ..Start::default()
    };
    let t = TestApp::start_on(store, Some(dir), |_| {}, start).await;
    let addr = t.base.trim_start_matches("http://").to_owned();
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
    use gramkey_server::transport::ConnectionLimits;
    use std::time::Duration;
    let limits = ConnectionLimits {
        header_timeout: Duration::from_millis(700),
        request_timeout: Duration::from_secs(2),
        max_connections: 4,
    };
    let (store, dir) = fresh_sqlite().unwrap();
    let start = Start {
        limits: Some(limits),
        ..Start::default()
    };
    let t = TestApp::start_on(store, Some(dir), |_| {}, start).await;
    let addr = t.base.trim_start_matches("http://").to_owned();
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
