//! The server over real HTTP: a cookie-keeping client logs in, consents, follows the redirect,
//! exchanges the code and calls `/me`; and every way that can go wrong. One test binary.

// Test helpers outside #[test] functions fail loudly too; real processes wait in real time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use gramkey_domain::time::ManualClock;
use gramkey_domain::{AppMode, OsEntropy, Password, Role};
use gramkey_server::limits::memory::MemoryBackend;
use gramkey_server::ops::NewAppInput;
use gramkey_server::test_support::hidden_inputs;
use gramkey_server::transport::Transport;
use gramkey_server::{AppState, ServerConfig};
use gramkey_store::test_support::postgres_url;

/// Test nodes run with the store's cache on, as in production on SQLite: the revocation tests
/// prove it is cleared.
const CACHE: std::time::Duration = std::time::Duration::from_secs(60);

fn fresh_sqlite() -> gramkey_store::Result<(Arc<dyn Store>, tempfile::TempDir)> {
    gramkey_store::test_support::fresh_sqlite_cached(CACHE)
}

async fn fresh_postgres(url: &str) -> gramkey_store::Result<Arc<dyn Store>> {
    gramkey_store::test_support::fresh_postgres_cached(url, CACHE).await
}
use gramkey_store::{Profile, Store};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::Value;

const START: i64 = 1_800_000_000;

#[path = "browser/harness.rs"]
mod browser;
#[path = "browser/site.rs"]
mod site;
const ADMIN_KEY: &str = "test-admin-key-0123456789";

// ---------------------------------------------------------------------------------------------
// Log capture: every test's logs go into one buffer, so a test can prove what never appears.

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Capture {
    static LOGS: OnceLock<Capture> = OnceLock::new();
    LOGS.get_or_init(|| {
        let capture = Capture::default();
        let writer = capture.clone();
        tracing_subscriber::fmt()
            .with_env_filter("trace,hyper=debug,h2=debug,sqlx=debug,reqwest=debug")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        capture
    })
}

// ---------------------------------------------------------------------------------------------
// TestApp: the real server on 127.0.0.1:0, an injected clock, a fresh store.

struct TestApp {
    base: String,
    state: AppState,
    clock: Arc<ManualClock>,
    _dir: Option<tempfile::TempDir>,
}

/// How a test node starts: plain HTTP, budgets in memory and no callback delivery unless
/// said otherwise.
#[derive(Default)]
struct Start {
    transport: Transport,
    limiter: Option<Arc<dyn gramkey_server::limits::Backend>>,
    /// Deliver callbacks, looking this often.
    callbacks: Option<std::time::Duration>,
    /// Timeouts and the connection cap, if not the defaults.
    limits: Option<gramkey_server::transport::ConnectionLimits>,
}

struct Registered {
    client_id: String,
    secret: String,
    redirect_uri: String,
}

impl TestApp {
    async fn sqlite() -> Self {
        let (store, dir) = fresh_sqlite().unwrap();
        Self::start(store, Some(dir)).await
    }

    async fn postgres(test: &str) -> Option<Self> {
        let url = postgres_url(test)?;
        Some(Self::start(fresh_postgres(&url).await.unwrap(), None).await)
    }

    async fn start(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>) -> Self {
        Self::start_with(store, dir, |_| {}).await
    }

    /// A fresh SQLite server with its configuration changed by `tune` (limits, alerts).
    async fn sqlite_with(tune: impl FnOnce(&mut ServerConfig)) -> Self {
        let (store, dir) = fresh_sqlite().unwrap();
        Self::start_with(store, Some(dir), tune).await
    }

    async fn start_with(
        store: Arc<dyn Store>,
        dir: Option<tempfile::TempDir>,
        tune: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        Self::start_on(store, dir, tune, Start::default()).await
    }

    /// A fresh SQLite server speaking HTTPS with a self-signed certificate, made as
    /// `--tls-self-signed` makes it; with the certificate's path.
    async fn sqlite_tls() -> (Self, std::path::PathBuf) {
        let (store, dir) = fresh_sqlite().unwrap();
        let (cert, key, made) = gramkey_server::transport::self_signed(dir.path()).unwrap();
        assert!(made);
        let transport = Transport::tls_from_pem(&cert, &key).unwrap();
        (
            Self::start_on(
                store,
                Some(dir),
                |_| {},
                Start {
                    transport,
                    ..Start::default()
                },
            )
            .await,
            cert,
        )
    }

    /// The server, started as `start` says.
    async fn start_on(
        store: Arc<dyn Store>,
        dir: Option<tempfile::TempDir>,
        tune: impl FnOnce(&mut ServerConfig),
        start: Start,
    ) -> Self {
        let Start {
            transport,
            limiter,
            callbacks,
            limits,
        } = start;
        logs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if transport.is_tls() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().unwrap());
        let clock = Arc::new(ManualClock::new(START));
        let mut config = ServerConfig {
            admin_key: Some(gramkey_domain::AdminKey::new(ADMIN_KEY)),
            refresh_reuse_grace_secs: 10,
            // Media hosts and callback receivers in tests are on 127.0.0.1; the hardening
            // tests turn this off to prove the guard.
            fetch_allow_private: true,
            ..ServerConfig::new(base.clone())
        };
        tune(&mut config);
        let limiter = limiter.unwrap_or_else(|| Arc::new(MemoryBackend::default()));
        let state = AppState::with_limiter(
            store,
            clock.clone(),
            Arc::new(OsEntropy),
            b"test master key",
            config,
            limiter,
        );
        let mut node = gramkey_server::Node::new(state.clone(), listener).transport(transport);
        if let Some(every) = callbacks {
            node = node.callbacks(every);
        }
        if let Some(limits) = limits {
            node = node.connection_limits(limits);
        }
        tokio::spawn(async move { node.run_until(std::future::pending()).await.unwrap() });
        Self {
            base,
            state,
            clock,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn app(&self, scopes: &str, mode: AppMode) -> Registered {
        let redirect_uri = "https://app.example/cb".to_owned();
        let (app, secret) = self
            .state
            .ops
            .create_app(
                &gramkey_server::origin::Origin::LOCAL,
                NewAppInput {
                    name: "Test <b>App</b>".into(),
                    redirect_uris: vec![redirect_uri.clone(), "http://127.0.0.1/loopback".into()],
                    scopes: scopes.into(),
                    mode,
                    refresh_tokens: false,
                    signed_requests: false,
                    device_flow: false,
                    deauthorize_url: None,
                    data_deletion_url: None,
                },
            )
            .await
            .unwrap();
        Registered {
            client_id: app.id.to_string(),
            secret: secret.expose().to_owned(),
            redirect_uri,
        }
    }

    async fn user(&self, name: &str, password: &str) {
        let profile = Profile {
            full_name: format!("{name} full"),
            account_type: "BUSINESS".into(),
            ..Profile::default()
        };
        self.state
            .ops
            .create_user(name, Password::new(password), profile)
            .await
            .unwrap();
    }

    async fn role(&self, app: &Registered, user: &str, role: Role) {
        self.state
            .ops
            .set_role(
                &gramkey_server::origin::Origin::LOCAL,
                &app.client_id,
                user,
                role,
            )
            .await
            .unwrap();
    }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn authorize_query(app: &Registered, scope: &str, extra: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.extend_pairs([
        ("client_id", app.client_id.as_str()),
        ("redirect_uri", app.redirect_uri.as_str()),
        ("scope", scope),
        ("response_type", "code"),
        ("state", "st4te"),
    ]);
    for (k, v) in extra {
        s.append_pair(k, v);
    }
    s.finish()
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .expect("a redirect")
        .to_str()
        .unwrap()
        .to_owned()
}

fn query_of(url: &str) -> Vec<(String, String)> {
    let u = url::Url::parse(url).unwrap();
    u.query_pairs().into_owned().collect()
}

fn param(url: &str, name: &str) -> Option<String> {
    query_of(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Opens the authorize URL, logs in and, if asked, consents. Returns the final redirect.
async fn authorize(
    t: &TestApp,
    c: &reqwest::Client,
    query: &str,
    user: &str,
    pw: &str,
    decision: &str,
) -> String {
    let page = c
        .get(t.url(&format!("/oauth/authorize?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Log in"), "login page expected: {html}");
    let mut form = hidden_inputs(&html);
    form.push(("username".into(), user.into()));
    form.push(("password".into(), pw.into()));
    let r = c
        .post(t.url("/oauth/authorize/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "login must succeed");
    let next = location(&r);
    let r = c.get(t.url(&next)).send().await.unwrap();
    if r.status() == StatusCode::FOUND {
        return location(&r);
    }
    let html = r.text().await.unwrap();
    assert!(
        html.contains("would like to access your account"),
        "consent page expected: {html}"
    );
    let mut form = hidden_inputs(&html);
    form.push(("decision".into(), decision.into()));
    let r = c
        .post(t.url("/oauth/authorize/consent"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    location(&r)
}

fn code_of(redirect: &str) -> String {
    assert!(redirect.ends_with("#_"), "Instagram appends #_: {redirect}");
    param(redirect, "code").expect("a code")
}

async fn exchange(
    t: &TestApp,
    app: &Registered,
    code: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = vec![
        ("client_id", app.client_id.as_str()),
        ("client_secret", app.secret.as_str()),
        ("grant_type", "authorization_code"),
        ("redirect_uri", app.redirect_uri.as_str()),
        ("code", code),
    ];
    form.extend_from_slice(extra);
    let r = reqwest::Client::new()
        .post(t.url("/oauth/access_token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn exchange_multipart(t: &TestApp, app: &Registered, code: &str) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new()
        .text("client_id", app.client_id.clone())
        .text("client_secret", app.secret.clone())
        .text("grant_type", "authorization_code")
        .text("redirect_uri", app.redirect_uri.clone())
        .text("code", code.to_owned());
    let r = reqwest::Client::new()
        .post(t.url("/oauth/access_token"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn me(t: &TestApp, token: &str, fields: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .get(t.url(&format!("/me?fields={fields}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

fn assert_flat_error(status: StatusCode, body: &Value, message: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error_type"], "OAuthException", "{body}");
    assert_eq!(body["code"], 400, "{body}");
    assert_eq!(body["error_message"], message, "{body}");
}

/// A signed-in user's live app and a first code.
async fn setup(t: &TestApp, scopes: &str) -> (Registered, reqwest::Client) {
    let app = t.app(scopes, AppMode::Live).await;
    t.user("alice", "alice-password").await;
    (app, browser())
}

// The sections, one module each; their shared helpers are visible to all.
#[path = "api/admin.rs"]
mod admin;
#[path = "api/architecture.rs"]
mod architecture;
#[path = "api/authorize.rs"]
mod authorize;
#[path = "api/callbacks.rs"]
mod callbacks;
#[path = "api/device_flow.rs"]
mod device_flow;
#[path = "api/flow.rs"]
mod flow;
#[path = "api/hardening.rs"]
mod hardening;
#[path = "api/health.rs"]
mod health;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/long_lived.rs"]
mod long_lived;
#[path = "api/refresh_tokens.rs"]
mod refresh_tokens;
#[path = "api/resource.rs"]
mod resource;
#[path = "api/revocation.rs"]
mod revocation;
#[path = "api/secrets_in_logs.rs"]
mod secrets_in_logs;
#[path = "api/test_tools.rs"]
mod test_tools;
#[path = "api/token_endpoint.rs"]
mod token_endpoint;
#[path = "api/webhooks.rs"]
mod webhooks;
#[path = "api/wire_shapes.rs"]
mod wire_shapes;
use callbacks::*;
use limits::*;
use long_lived::*;
use resource::*;
