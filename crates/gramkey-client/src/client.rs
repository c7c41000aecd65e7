//! The HTTP client: the token lifecycle and the resource API, with bounded retries.
//!
//! Tokens travel in the `Authorization` header, never in URLs (which end up in logs and in
//! the `paging.next` links servers build).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::error::{ApiError, Error, Failure};
use crate::model::{
    AccessToken, CodeToken, Comment, Created, DebugToken, DeviceCodes, DevicePoll, Insight,
    Introspection, LongLivedToken, Media, User, WebhookSubscription,
};
use crate::{AppCredentials, AuthorizeRequest, Hosts};

/// RFC 8628's grant type.
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Graph's `{"data": [...]}` answers that are not paged.
#[derive(serde::Deserialize)]
struct Data<T> {
    data: Vec<T>,
}

/// When and how often to retry. Rate limits and transient failures are retried with
/// exponential backoff and full jitter, honouring `Retry-After`; a wait longer than `max_wait`
/// is not slept through but returned to the caller as the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many times a request is retried after its first attempt (default 3).
    pub max_retries: u32,
    /// The backoff's ceiling before the first retry, doubled for each retry after it (default
    /// 500 ms).
    pub base: Duration,
    /// The most a backoff's ceiling can grow to (default 30 s).
    pub cap: Duration,
    /// The longest wait that is slept through; a longer one is returned as the error (default
    /// 60 s).
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            max_wait: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1-based), given the server's `Retry-After` and a
    /// random `jitter` in `[0, 1)`; `None` when there should be no retry.
    pub fn wait(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if attempt > self.max_retries {
            return None;
        }
        let wait = match retry_after {
            Some(ra) => ra,
            None => {
                let exp = self
                    .base
                    .saturating_mul(1u32 << (attempt - 1).min(20))
                    .min(self.cap);
                exp.mul_f64(jitter.clamp(0.0, 1.0))
            }
        };
        (wait <= self.max_wait).then_some(wait)
    }
}

/// How long to pause before a request when the app's `X-App-Usage` reached `percent`: nothing
/// below 80, then up to 2 seconds at 100, so a busy app slows down before it is refused.
pub fn pacing(percent: u64) -> Duration {
    if percent < 80 {
        return Duration::ZERO;
    }
    Duration::from_millis((percent.min(100) - 80) * 100)
}

fn jitter() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Which failures a request may be retried after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Rate limits and transient failures: the request can be repeated safely.
    All,
    /// Rate limits only: a refused request was not carried out, but after a transient failure
    /// it may have been (a comment posted, a token exchanged), and must not be sent twice.
    RateLimitsOnly,
}

/// The highest of the usage percentages: `X-App-Usage` (Basic Display, Graph), or
/// `X-Business-Use-Case-Usage` (Instagram Login: `{"<ig-user-id>":[{…}]}`).
fn usage(headers: &HeaderMap) -> Option<u64> {
    let parse = |name: &str| -> Option<Value> {
        serde_json::from_str(headers.get(name)?.to_str().ok()?).ok()
    };
    let v = match parse("x-app-usage") {
        Some(v) => v,
        None => parse("x-business-use-case-usage")?
            .as_object()?
            .values()
            .next()?
            .get(0)?
            .clone(),
    };
    ["call_count", "total_time", "total_cputime"]
        .iter()
        .filter_map(|k| v[*k].as_u64())
        .max()
}

/// A client for one set of hosts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    hosts: Hosts,
    retry: RetryPolicy,
    /// The last `X-App-Usage` seen (its highest percentage), for pacing.
    last_usage: std::sync::Arc<AtomicU64>,
}

impl Client {
    /// A client for `hosts` ([`Hosts::instagram`] or [`Hosts::gramkey`]).
    pub fn new(hosts: Hosts) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("gramkey-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            http,
            hosts,
            retry: RetryPolicy::default(),
            last_usage: std::sync::Arc::default(),
        }
    }

    /// Retries as `retry` says instead of by [`RetryPolicy::default`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sends through `http` instead of the client's own (30 s timeout): your proxy, timeouts,
    /// TLS roots or connection pool. Retries and pacing stay the SDK's.
    ///
    /// ```
    /// use gramkey_client::{Client, Hosts};
    /// let http = reqwest::Client::builder()
    ///     .timeout(std::time::Duration::from_secs(5))
    ///     .build()
    ///     .unwrap();
    /// let client = Client::new(Hosts::instagram()).with_http(http);
    /// # let _ = client;
    /// ```
    pub fn with_http(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// The hosts this client sends its requests to.
    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    /// Sends what `build` makes (again on each retry) and decodes the answer.
    async fn send<T: DeserializeOwned>(
        &self,
        retry: Retry,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<T, Error> {
        let value = self.send_json(retry, build).await?;
        serde_json::from_value(value).map_err(|e| Error::Decode(e.to_string()))
    }

    async fn send_json(
        &self,
        retry: Retry,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Value, Error> {
        let mut attempt = 0;
        // What the last retry waited: a wait for `Retry-After` or a backoff already let the
        // budget recover, so pacing adds only what it asks beyond it, not on top of it.
        let mut waited = Duration::ZERO;
        loop {
            let percent = self.last_usage.load(Ordering::Relaxed);
            let pause = pacing(percent).saturating_sub(waited);
            if !pause.is_zero() {
                tracing::debug!(
                    usage_percent = percent,
                    pause_ms = pause.as_millis() as u64,
                    "pacing: the app's usage is near its limit, slowing down"
                );
                tokio::time::sleep(pause).await;
            }
            let err = match build().send().await {
                Err(e) => Error::from(e),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    self.last_usage
                        .store(usage(&headers).unwrap_or(0), Ordering::Relaxed);
                    let body: Value = match resp.json().await {
                        Ok(v) => v,
                        Err(e) if status < 400 => {
                            return Err(Error::Decode(e.without_url().to_string()));
                        }
                        Err(_) => Value::Null,
                    };
                    if status < 400 {
                        return Ok(body);
                    }
                    let retry_after = headers
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse().ok())
                        .map(Duration::from_secs);
                    Error::Api(
                        ApiError::parse(status, retry_after, &body).unwrap_or(ApiError {
                            status,
                            code: None,
                            subcode: None,
                            kind: "http".into(),
                            message: format!("HTTP {status}"),
                            retry_after,
                        }),
                    )
                }
            };
            let retryable = match err.failure() {
                Failure::RateLimited => true,
                Failure::Transient => retry == Retry::All,
                _ => false,
            };
            let retry_after = err.retry_after();
            attempt += 1;
            match self.retry.wait(attempt, retry_after, jitter()) {
                Some(wait) if retryable => {
                    tracing::info!(
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        retry_after = retry_after.map(|d| d.as_secs()),
                        error = %err,
                        "retrying"
                    );
                    tokio::time::sleep(wait).await;
                    waited = wait;
                }
                _ => {
                    tracing::debug!(attempt, error = %err, retryable, "giving up");
                    return Err(err);
                }
            }
        }
    }

    fn url(base: &Url, path: &str) -> Url {
        base.join(path).unwrap_or_else(|_| base.clone())
    }

    fn authed(&self, method: Method, url: Url, token: &AccessToken) -> RequestBuilder {
        self.http
            .request(method, url)
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
    }

    /// The code exchange (`POST /oauth/access_token`), with the PKCE verifier if the
    /// authorization request had one.
    pub async fn exchange_code(
        &self,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        code: &str,
        verifier: Option<&str>,
    ) -> Result<CodeToken, Error> {
        let url = Self::url(&self.hosts.api, "oauth/access_token");
        let mut form = vec![
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect_uri),
            ("code", code),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        // A code is good once: never resent after a failure that may have used it.
        let value = self
            .send_json(Retry::RateLimitsOnly, || {
                self.http.post(url.clone()).form(&form)
            })
            .await?;
        CodeToken::from_json(value).map_err(|e| Error::Decode(e.to_string()))
    }

    /// The code exchange for `req`'s redirect: its redirect URI and PKCE verifier go with the
    /// code, so nothing can be passed in the wrong order.
    ///
    /// ```no_run
    /// # async fn f(client: gramkey_client::Client, redirect_url: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// use gramkey_client::{AppCredentials, AuthorizeRequest};
    /// let app = AppCredentials::new("1955185181361652", std::env::var("SECRET")?);
    /// let req = AuthorizeRequest::new(app.client_id(), "https://app.example/cb", &["user_profile"]);
    /// // … the browser comes back to `redirect_url` …
    /// let code = req.code_from_redirect(redirect_url)?;
    /// let token = client.exchange(&app, &req, &code).await?;
    /// # let _ = token; Ok(()) }
    /// ```
    pub async fn exchange(
        &self,
        app: &AppCredentials,
        req: &AuthorizeRequest,
        code: &str,
    ) -> Result<CodeToken, Error> {
        self.exchange_code(
            app.client_id(),
            app.client_secret(),
            req.redirect_uri(),
            code,
            Some(req.verifier()),
        )
        .await
    }

    /// A short-lived token for a long-lived one (`GET /access_token`, `ig_exchange_token`).
    pub async fn long_lived(
        &self,
        client_secret: &str,
        short: &AccessToken,
    ) -> Result<LongLivedToken, Error> {
        let mut url = Self::url(&self.hosts.graph, "access_token");
        url.query_pairs_mut()
            .append_pair("grant_type", "ig_exchange_token")
            .append_pair("client_secret", client_secret);
        // A short-lived token is exchanged once: not resent after a transient failure.
        self.send(Retry::RateLimitsOnly, || {
            self.authed(Method::GET, url.clone(), short)
        })
        .await
    }

    /// A new long-lived token for one at least 24 hours old (`GET /refresh_access_token`).
    pub async fn refresh(&self, token: &AccessToken) -> Result<LongLivedToken, Error> {
        let mut url = Self::url(&self.hosts.graph, "refresh_access_token");
        url.query_pairs_mut()
            .append_pair("grant_type", "ig_refresh_token");
        self.send(Retry::All, || self.authed(Method::GET, url.clone(), token))
            .await
    }

    /// `GET /me` with `fields` (the token's validity check, too).
    pub async fn me(&self, token: &AccessToken, fields: &[&str]) -> Result<User, Error> {
        let mut url = Self::url(&self.hosts.graph, "me");
        url.query_pairs_mut()
            .append_pair("fields", &fields.join(","));
        self.send(Retry::All, || self.authed(Method::GET, url.clone(), token))
            .await
    }

    /// The user's media, a page at a time (`/me/media`).
    pub fn media(&self, token: &AccessToken, fields: &[&str], limit: u32) -> Pager<Media> {
        let mut url = Self::url(&self.hosts.graph, "me/media");
        url.query_pairs_mut()
            .append_pair("fields", &fields.join(","))
            .append_pair("limit", &limit.to_string());
        Pager::new(self.clone(), token.clone(), url)
    }

    /// A media object's comments, a page at a time.
    pub fn comments(&self, token: &AccessToken, media_id: &str, fields: &[&str]) -> Pager<Comment> {
        let mut url = Self::url(&self.hosts.graph, &format!("{media_id}/comments"));
        url.query_pairs_mut()
            .append_pair("fields", &fields.join(","));
        Pager::new(self.clone(), token.clone(), url)
    }

    /// Comments on a media object (`POST /{media-id}/comments`).
    pub async fn comment(
        &self,
        token: &AccessToken,
        media_id: &str,
        message: &str,
    ) -> Result<Created, Error> {
        let url = Self::url(&self.hosts.graph, &format!("{media_id}/comments"));
        self.send(Retry::RateLimitsOnly, || {
            self.authed(Method::POST, url.clone(), token)
                .form(&[("message", message)])
        })
        .await
    }

    /// Creates a publishing container for an image (`POST /{ig-user-id}/media`).
    pub async fn create_image_container(
        &self,
        token: &AccessToken,
        user_id: &str,
        image_url: &str,
        caption: &str,
    ) -> Result<Created, Error> {
        let url = Self::url(&self.hosts.graph, &format!("{user_id}/media"));
        self.send(Retry::RateLimitsOnly, || {
            self.authed(Method::POST, url.clone(), token)
                .form(&[("image_url", image_url), ("caption", caption)])
        })
        .await
    }

    /// Publishes a finished container (`POST /{ig-user-id}/media_publish`).
    pub async fn publish(
        &self,
        token: &AccessToken,
        user_id: &str,
        container_id: &str,
    ) -> Result<Created, Error> {
        let url = Self::url(&self.hosts.graph, &format!("{user_id}/media_publish"));
        self.send(Retry::RateLimitsOnly, || {
            self.authed(Method::POST, url.clone(), token)
                .form(&[("creation_id", container_id)])
        })
        .await
    }

    /// Subscribes the app's webhook endpoint to `fields` of the `instagram` object
    /// (`POST /{app-id}/subscriptions`, with the app's token, `APP_ID|APP_SECRET`). The platform
    /// first sends the endpoint a challenge with `verify_token`, which it must echo
    /// ([`crate::webhooks::answer_verification`]); otherwise this fails with code 2200.
    pub async fn subscribe_webhooks(
        &self,
        app_token: &AccessToken,
        app_id: &str,
        callback_url: &str,
        fields: &[&str],
        verify_token: &str,
    ) -> Result<(), Error> {
        let url = Self::url(&self.hosts.graph, &format!("{app_id}/subscriptions"));
        let fields = fields.join(",");
        self.send_json(Retry::RateLimitsOnly, || {
            self.authed(Method::POST, url.clone(), app_token).form(&[
                ("object", "instagram"),
                ("callback_url", callback_url),
                ("fields", fields.as_str()),
                ("verify_token", verify_token),
            ])
        })
        .await
        .map(|_| ())
    }

    /// The app's webhook subscriptions (`GET /{app-id}/subscriptions`, app token).
    pub async fn webhook_subscriptions(
        &self,
        app_token: &AccessToken,
        app_id: &str,
    ) -> Result<Vec<WebhookSubscription>, Error> {
        let url = Self::url(&self.hosts.graph, &format!("{app_id}/subscriptions"));
        let page: Data<WebhookSubscription> = self
            .send(Retry::All, || {
                self.authed(Method::GET, url.clone(), app_token)
            })
            .await?;
        Ok(page.data)
    }

    /// The user's account subscribes the app to its notifications
    /// (`POST /me/subscribed_apps?subscribed_fields=…`). Without it, no notification about
    /// the account is sent, however the app subscribed.
    pub async fn subscribe_account(
        &self,
        token: &AccessToken,
        fields: &[&str],
    ) -> Result<(), Error> {
        let mut url = Self::url(&self.hosts.graph, "me/subscribed_apps");
        url.query_pairs_mut()
            .append_pair("subscribed_fields", &fields.join(","));
        self.send_json(Retry::RateLimitsOnly, || {
            self.authed(Method::POST, url.clone(), token)
        })
        .await
        .map(|_| ())
    }

    /// A media's lifetime insights (`GET /{media-id}/insights?metric=…`).
    pub async fn media_insights(
        &self,
        token: &AccessToken,
        media_id: &str,
        metrics: &[&str],
    ) -> Result<Vec<Insight>, Error> {
        let mut url = Self::url(&self.hosts.graph, &format!("{media_id}/insights"));
        url.query_pairs_mut()
            .append_pair("metric", &metrics.join(","));
        let page: Data<Insight> = self
            .send(Retry::All, || self.authed(Method::GET, url.clone(), token))
            .await?;
        Ok(page.data)
    }

    /// The account's insights (`GET /me/insights?metric=…&period=…`), as totals
    /// (`metric_type=total_value`) or time series.
    pub async fn account_insights(
        &self,
        token: &AccessToken,
        metrics: &[&str],
        period: &str,
        total_value: bool,
    ) -> Result<Vec<Insight>, Error> {
        let mut url = Self::url(&self.hosts.graph, "me/insights");
        url.query_pairs_mut()
            .append_pair("metric", &metrics.join(","))
            .append_pair("period", period);
        if total_value {
            url.query_pairs_mut()
                .append_pair("metric_type", "total_value");
        }
        let page: Data<Insight> = self
            .send(Retry::All, || self.authed(Method::GET, url.clone(), token))
            .await?;
        Ok(page.data)
    }

    /// Any Graph `GET` (`path` relative to the Graph host, such as `me/media` or
    /// `17895695668004550/comments`) with `query`, as JSON, with the same retries and pacing
    /// as the typed calls. For fields and edges the SDK has no type for.
    pub async fn get(
        &self,
        token: &AccessToken,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, Error> {
        let mut url = Self::url(&self.hosts.graph, path.trim_start_matches('/'));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.send_json(Retry::All, || self.authed(Method::GET, url.clone(), token))
            .await
    }

    /// `grant_type=refresh_token` (RFC 6749 §6), for gramkey apps that opted in to refresh
    /// tokens: a new short-lived token and a new refresh token (the old one is spent).
    /// Instagram has no such grant (its tokens are refreshed with [`Client::refresh`]).
    pub async fn refresh_with(
        &self,
        client_id: &str,
        client_secret: &str,
        refresh_token: &AccessToken,
    ) -> Result<CodeToken, Error> {
        let url = Self::url(&self.hosts.api, "oauth/access_token");
        let form = [
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        // A refresh token is spent by its use: not resent after a failure that may have used it.
        let value = self
            .send_json(Retry::RateLimitsOnly, || {
                self.http.post(url.clone()).form(&form)
            })
            .await?;
        CodeToken::from_json(value).map_err(|e| Error::Decode(e.to_string()))
    }

    /// An app token (`client_credentials`, `GET /oauth/access_token`), for the app's own
    /// calls: webhooks subscriptions, `debug_token`.
    pub async fn app_token(
        &self,
        client_id: &str,
        client_secret: &str,
    ) -> Result<AccessToken, Error> {
        let mut url = Self::url(&self.hosts.api, "oauth/access_token");
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("client_secret", client_secret)
            .append_pair("grant_type", "client_credentials");
        #[derive(serde::Deserialize)]
        struct AppToken {
            access_token: AccessToken,
        }
        let t: AppToken = self.send(Retry::All, || self.http.get(url.clone())).await?;
        Ok(t.access_token)
    }

    /// What the platform knows of `input` (`GET /debug_token`), asked with the app's token:
    /// valid or not, its app, user, scopes and expiry.
    pub async fn debug_token(
        &self,
        app_token: &AccessToken,
        input: &AccessToken,
    ) -> Result<DebugToken, Error> {
        let mut url = Self::url(&self.hosts.graph, "debug_token");
        url.query_pairs_mut()
            .append_pair("input_token", input.expose());
        #[derive(serde::Deserialize)]
        struct Wrapped {
            data: DebugToken,
        }
        let w: Wrapped = self
            .send(Retry::All, || {
                self.authed(Method::GET, url.clone(), app_token)
            })
            .await?;
        Ok(w.data)
    }

    /// RFC 7662 introspection (`POST /oauth/introspect`), gramkey only: whether `token` is
    /// active, and for whom. Another client's token is reported inactive.
    pub async fn introspect(
        &self,
        client_id: &str,
        client_secret: &str,
        token: &AccessToken,
    ) -> Result<Introspection, Error> {
        let url = Self::url(&self.hosts.api, "oauth/introspect");
        self.send(Retry::All, || {
            self.http
                .post(url.clone())
                .basic_auth(client_id, Some(client_secret))
                .form(&[("token", token.expose())])
        })
        .await
    }

    /// RFC 8628 §3.1: a pair of codes for signing in on a device without a browser (gramkey
    /// servers, for apps that turned the device flow on; Instagram has no device flow). Show
    /// the user [`DeviceCodes::user_code`] and [`DeviceCodes::verification_uri`], then wait
    /// with [`Client::device_token`].
    pub async fn device_code(
        &self,
        client_id: &str,
        client_secret: &str,
        scopes: &[&str],
    ) -> Result<DeviceCodes, Error> {
        let url = Self::url(&self.hosts.api, "oauth/device/code");
        let scope = scopes.join(",");
        let form = [
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("scope", scope.as_str()),
        ];
        self.send(Retry::All, || self.http.post(url.clone()).form(&form))
            .await
    }

    /// One poll of the token endpoint for `codes` (RFC 8628 §3.4): the token once the user has
    /// approved, else what to do ([`DevicePoll`]). [`Client::device_token`] polls for you.
    pub async fn poll_device(
        &self,
        client_id: &str,
        client_secret: &str,
        codes: &DeviceCodes,
    ) -> Result<DevicePoll, Error> {
        let url = Self::url(&self.hosts.api, "oauth/access_token");
        let form = [
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("grant_type", DEVICE_GRANT),
            ("device_code", codes.device_code.expose()),
        ];
        match self
            .send_json(Retry::RateLimitsOnly, || {
                self.http.post(url.clone()).form(&form)
            })
            .await
        {
            Ok(v) => CodeToken::from_json(v)
                .map(DevicePoll::Token)
                .map_err(|e| Error::Decode(e.to_string())),
            Err(Error::Api(e)) if e.kind == "authorization_pending" => Ok(DevicePoll::Pending),
            Err(Error::Api(e)) if e.kind == "slow_down" => Ok(DevicePoll::SlowDown),
            Err(e) => Err(e),
        }
    }

    /// Polls until the user approves (RFC 8628 §3.5): every `interval` seconds, five more
    /// after each `slow_down`. Fails when the user cancels (`access_denied`) or the codes
    /// expire (`expired_token`), as an [`Error::Api`] of that `kind`.
    pub async fn device_token(
        &self,
        client_id: &str,
        client_secret: &str,
        codes: &DeviceCodes,
    ) -> Result<CodeToken, Error> {
        let mut interval = Duration::from_secs(codes.interval.unwrap_or(5).max(1).unsigned_abs());
        loop {
            tokio::time::sleep(interval).await;
            match self.poll_device(client_id, client_secret, codes).await? {
                DevicePoll::Token(t) => return Ok(t),
                DevicePoll::Pending => {
                    tracing::debug!("device flow: waiting for the user");
                }
                DevicePoll::SlowDown => {
                    interval += Duration::from_secs(5);
                    tracing::info!(
                        interval_s = interval.as_secs(),
                        "device flow: asked to slow down"
                    );
                }
            }
        }
    }

    /// The user removes the app (`DELETE /me/permissions`): every token of the app for the
    /// user stops working, on Instagram and on gramkey.
    pub async fn remove_app(&self, token: &AccessToken) -> Result<(), Error> {
        let url = Self::url(&self.hosts.graph, "me/permissions");
        self.send_json(Retry::All, || {
            self.authed(Method::DELETE, url.clone(), token)
        })
        .await
        .map(|_| ())
    }

    /// Revokes one token (RFC 7009, `POST /oauth/revoke`). gramkey serves it; Instagram does
    /// not (use [`Client::remove_app`] there).
    pub async fn revoke(
        &self,
        client_id: &str,
        client_secret: &str,
        token: &AccessToken,
    ) -> Result<(), Error> {
        let url = Self::url(&self.hosts.api, "oauth/revoke");
        let resp = self
            .http
            .post(url)
            .basic_auth(client_id, Some(client_secret))
            .form(&[("token", token.expose())])
            .send()
            .await?;
        let status = resp.status().as_u16();
        if status < 400 {
            return Ok(());
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Err(Error::Api(ApiError::parse(status, None, &body).unwrap_or(
            ApiError {
                status,
                code: None,
                subcode: None,
                kind: "http".into(),
                message: format!("HTTP {status}"),
                retry_after: None,
            },
        )))
    }
}

/// Pages of a Graph edge, following `paging.next`.
///
/// ```no_run
/// # async fn f(client: gramkey_client::Client, token: gramkey_client::model::AccessToken) -> Result<(), gramkey_client::Error> {
/// let mut pages = client.media(&token, &["id", "caption"], 25);
/// while let Some(page) = pages.next_page().await? {
///     for media in page {
///         println!("{} {:?}", media.id, media.caption);
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Pager<T> {
    client: Client,
    token: AccessToken,
    next: Option<Url>,
    _item: std::marker::PhantomData<T>,
}

impl<T: DeserializeOwned> Pager<T> {
    fn new(client: Client, token: AccessToken, first: Url) -> Self {
        Self {
            client,
            token,
            next: Some(first),
            _item: std::marker::PhantomData,
        }
    }

    /// Whether a page is left to read.
    pub fn has_more(&self) -> bool {
        self.next.is_some()
    }

    /// The next page, or `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>, Error> {
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        let value = self
            .client
            .send_json(Retry::All, || {
                self.client.authed(Method::GET, url.clone(), &self.token)
            })
            .await?;
        // Only links back to the same server (the token goes with them), and never the same
        // page twice.
        self.next = value["paging"]["next"]
            .as_str()
            .and_then(|n| Url::parse(n).ok())
            .filter(|n| n.origin() == url.origin() && *n != url);
        let items = serde_json::from_value(value["data"].clone())
            .map_err(|e| Error::Decode(e.to_string()))?;
        Ok(Some(items))
    }

    /// The remaining items one by one, as a [`futures_util::Stream`]; pages are fetched as
    /// the stream is read. An error ends the stream.
    ///
    /// ```no_run
    /// use futures_util::{StreamExt, TryStreamExt};
    /// # async fn f(client: gramkey_client::Client, token: gramkey_client::model::AccessToken) -> Result<(), gramkey_client::Error> {
    /// let first_ten: Vec<_> = client
    ///     .media(&token, &["id"], 25)
    ///     .into_stream()
    ///     .try_filter(|m| std::future::ready(m.media_type.as_deref() == Some("IMAGE")))
    ///     .take(10)
    ///     .try_collect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Result<T, Error>>
    where
        T: Send + 'static,
    {
        use futures_util::StreamExt;
        futures_util::stream::try_unfold(self, |mut pager| async move {
            Ok(pager.next_page().await?.map(|page| (page, pager)))
        })
        .map(|page| match page {
            Ok(items) => futures_util::stream::iter(items.into_iter().map(Ok).collect::<Vec<_>>()),
            Err(e) => futures_util::stream::iter(vec![Err(e)]),
        })
        .flatten()
    }

    /// Every remaining item, page after page.
    pub async fn all(mut self) -> Result<Vec<T>, Error> {
        let mut out = Vec::new();
        while let Some(page) = self.next_page().await? {
            out.extend(page);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_either_header() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-app-usage",
            r#"{"call_count":28,"total_time":81,"total_cputime":5}"#
                .parse()
                .unwrap(),
        );
        assert_eq!(usage(&h), Some(81));
        let mut h = HeaderMap::new();
        h.insert(
            "x-business-use-case-usage",
            r#"{"1784":[{"type":"instagram","call_count":90,"total_cputime":1,"total_time":2,"estimated_time_to_regain_access":0}]}"#
                .parse()
                .unwrap(),
        );
        assert_eq!(usage(&h), Some(90));
        assert_eq!(usage(&HeaderMap::new()), None);
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.wait(1, None, 0.999_999),
            Some(Duration::from_millis(500).mul_f64(0.999_999))
        );
        assert_eq!(p.wait(3, None, 0.5), Some(Duration::from_secs(1)));
        assert_eq!(p.wait(3, None, 0.0), Some(Duration::ZERO));
        let long = RetryPolicy {
            max_retries: 30,
            ..p
        };
        assert_eq!(long.wait(20, None, 0.5), Some(Duration::from_secs(15)));
        assert_eq!(
            p.wait(1, Some(Duration::from_secs(7)), 0.3),
            Some(Duration::from_secs(7))
        );
        // A wait beyond max_wait is the caller's to decide: no retry.
        assert_eq!(p.wait(1, Some(Duration::from_secs(3600)), 0.3), None);
        assert_eq!(p.wait(4, None, 0.5), None);
    }

    #[test]
    fn pacing_slows_down_near_the_limit() {
        assert_eq!(pacing(79), Duration::ZERO);
        assert_eq!(pacing(90), Duration::from_secs(1));
        assert_eq!(pacing(100), Duration::from_secs(2));
        assert_eq!(pacing(250), Duration::from_secs(2));
    }

    #[test]
    fn jitter_is_in_range() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
