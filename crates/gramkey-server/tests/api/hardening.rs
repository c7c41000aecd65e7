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
