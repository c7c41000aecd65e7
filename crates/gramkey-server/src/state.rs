//! The state every handler shares.

use std::sync::Arc;

use axum::extract::FromRef;
use axum_extra::extract::cookie::Key;
use gramkey_domain::hashing::derive_key;
use gramkey_domain::secret::ct_eq;
use gramkey_domain::{AdminKey, Clock, Entropy, SecretHasher};
use gramkey_store::Store;
use sha2::{Digest, Sha256};

use crate::alerts::Alerter;
use crate::limits::memory::MemoryBackend;
use crate::limits::{Backend, Limiter};
use crate::metrics::Metrics;
use crate::ops::Ops;
use crate::outbound::Outbound;
use crate::usage::UsageBook;

/// Settings the server needs at run time.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The URL clients reach this server at, without a trailing slash, e.g.
    /// `http://127.0.0.1:8080`. Used in printed URLs and to decide `Secure` cookies.
    pub public_url: String,
    /// Guards `/admin/*`. Without one, the admin API answers 403.
    pub admin_key: Option<AdminKey>,
    /// How long after its first use a rotated refresh token may be used again, for clients
    /// that refresh in parallel. Later reuse revokes the whole grant.
    pub refresh_reuse_grace_secs: i64,
    /// Whether publishing fetches and checks each container's media (`IN_PROGRESS` until
    /// then). Off, a container is `FINISHED` at once and its URL is stored unchecked.
    pub fetch_media: bool,
    /// Let the server's own requests (media fetches, callbacks, alert webhooks) reach
    /// loopback, private and link-local addresses. Off: only public addresses (the SSRF
    /// policy, `gramkey_domain::outbound`).
    pub fetch_allow_private: bool,
    /// Posts an account may publish in 24 hours (`media_publish`'s cap and
    /// `content_publishing_limit`'s `quota_total`).
    pub publish_quota: u64,
    /// Rate limits (wire protocol §6 and ours).
    pub limits: gramkey_domain::ratelimit::Limits,
    /// Off: resource calls are neither limited nor watched (no usage headers, insights or
    /// rate and network alerts), for load tests. Sign-in and client-authentication throttling
    /// stay on.
    pub rate_limits: bool,
    /// What requests get while a shared limiter (Redis) cannot be asked.
    pub on_limiter_failure: crate::limits::OnFailure,
    /// Take the client's address from `X-Forwarded-For` (only behind a proxy that sets it).
    pub trust_forwarded_for: bool,
    /// Anomaly-alert thresholds, and where to POST alerts.
    pub alert_thresholds: gramkey_domain::alert::Thresholds,
    pub alert_webhook: Option<String>,
    /// Users who may open the admin console when signed in (besides anyone with the admin key).
    pub admin_users: Vec<String>,
    /// This node's name in the call log (default: the public URL's host and port).
    pub node_name: String,
}

impl ServerConfig {
    /// The defaults for everything but the public URL: what tests and the sandbox start from.
    pub fn new(public_url: impl Into<String>) -> Self {
        let public_url: String = public_url.into();
        let node_name = url::Url::parse(&public_url)
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.to_owned();
                Some(match u.port_or_known_default() {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                })
            })
            .unwrap_or_else(|| "gramkey".to_owned());
        Self {
            node_name,
            public_url,
            admin_key: None,
            refresh_reuse_grace_secs: gramkey_domain::token::REFRESH_REUSE_GRACE_SECS,
            fetch_media: true,
            fetch_allow_private: false,
            publish_quota: gramkey_domain::graph::publish::QUOTA_TOTAL,
            limits: gramkey_domain::ratelimit::Limits::default(),
            rate_limits: true,
            on_limiter_failure: crate::limits::OnFailure::Open,
            trust_forwarded_for: false,
            alert_thresholds: gramkey_domain::alert::Thresholds::default(),
            alert_webhook: None,
            admin_users: Vec::new(),
        }
    }
}

/// See [`Inner::app_facts`].
type AppFactsMap = std::collections::HashMap<
    gramkey_domain::AppId,
    ((gramkey_domain::AppMode, u64), gramkey_domain::UnixTime),
    foldhash::fast::RandomState,
>;

/// How long, in seconds by the injected clock, an app's facts are kept (another node's grants
/// are seen within it).
const APP_FACTS_TTL: i64 = 60;

/// At most this many apps' facts are kept; past it, the map starts again empty.
const APP_FACTS_CAPACITY: usize = 100_000;

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub ops: Ops,
    pub config: ServerConfig,
    /// Processes publishing containers; `None` when `fetch_media` is off.
    pub fetcher: Option<crate::media_fetch::Fetcher>,
    pub limiter: Arc<Limiter>,
    pub metrics: Metrics,
    pub usage: UsageBook,
    pub alerts: Arc<Alerter>,
    /// The calls of development-mode apps on this node (the sandbox's call log).
    pub calls: crate::call_log::CallLog,
    /// Each app's mode and how many users authorized it (the app pool's multiplier), and
    /// when they were read: what admitting a call needs, without reading the app. A plain
    /// map, read on every call: one lookup, where a moka cache cost several times that.
    app_facts: std::sync::RwLock<AppFactsMap>,
    /// The minute (by the injected clock) each budget's refusal was last audited: a storm of
    /// refused calls makes one audit event a minute per budget, not one per call.
    refusals_audited: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    cookie_key: Key,
    admin_key_hash: Option<[u8; 32]>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        master_key: &[u8],
        config: ServerConfig,
    ) -> Self {
        Self::with_limiter(
            store,
            clock,
            entropy,
            master_key,
            config,
            Arc::new(MemoryBackend::default()),
        )
    }

    /// [`AppState::new`] with budgets kept in `backend` (Redis, to share them between nodes).
    pub fn with_limiter(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        master_key: &[u8],
        config: ServerConfig,
        backend: Arc<dyn Backend>,
    ) -> Self {
        let metrics = Metrics::default();
        let limiter = Arc::new(Limiter::new(
            backend,
            config.limits,
            config.on_limiter_failure,
            clock.clone(),
            metrics.clone(),
        ));
        let alerts = Arc::new(Alerter::new(
            config.alert_thresholds,
            config.alert_webhook.clone(),
            config.fetch_allow_private,
            clock.clone(),
            store.clone(),
            metrics.clone(),
        ));
        let mut cookie_material = [0u8; 64];
        cookie_material[..32]
            .copy_from_slice(&derive_key(master_key, "gramkey cookie encryption v1"));
        cookie_material[32..].copy_from_slice(&derive_key(master_key, "gramkey cookie signing v1"));
        let admin_key_hash = config
            .admin_key
            .as_ref()
            .map(|k| Sha256::digest(k.expose().as_bytes()).into());
        let fetcher = if config.fetch_media {
            let http = Outbound::new(config.fetch_allow_private, crate::media_fetch::PURPOSE)
                .map_err(
                    |e| tracing::error!(error = %e, "the media fetch client could not be built"),
                )
                .ok();
            http.map(|http| crate::media_fetch::Fetcher::new(store.clone(), http))
        } else {
            None
        };
        Self(Arc::new(Inner {
            fetcher,
            limiter,
            metrics,
            usage: UsageBook::default(),
            calls: crate::call_log::CallLog::new(config.node_name.clone()),
            alerts,
            refusals_audited: std::sync::Mutex::default(),
            app_facts: std::sync::RwLock::default(),
            ops: Ops {
                store,
                clock,
                entropy,
                hasher: SecretHasher::new(master_key),
            },
            config,
            cookie_key: Key::from(&cookie_material),
            admin_key_hash,
        }))
    }

    /// Whether `presented` is the admin key. Compared as hashes, in constant time.
    /// A short digest of the admin key, kept in a console session: when the key changes (or is
    /// unset), sessions opened with the old one stop being admin sessions.
    pub fn admin_key_fingerprint(&self) -> Option<String> {
        self.admin_key_hash
            .map(|h| hex::encode(&Sha256::digest(h)[..8]))
    }

    pub fn is_admin_key(&self, presented: &str) -> Option<bool> {
        let expected = self.admin_key_hash.as_ref()?;
        let got: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        Some(ct_eq(&got, expected))
    }

    /// `app`'s mode and how many users authorized it, kept for a minute; `None` for no app.
    pub async fn app_facts(
        &self,
        app: &gramkey_domain::AppId,
    ) -> Result<Option<(gramkey_domain::AppMode, u64)>, gramkey_store::StoreError> {
        let now = self.ops.clock.now();
        let fresh = self
            .app_facts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .filter(|(_, read_at)| (*read_at..*read_at + APP_FACTS_TTL).contains(&now))
            .map(|(facts, _)| *facts);
        if fresh.is_some() {
            return Ok(fresh);
        }
        let Some(record) = self.ops.store.app(app).await? else {
            return Ok(None);
        };
        let facts = (record.mode, self.ops.store.authorized_users(app).await?);
        let mut kept = self.app_facts.write().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= APP_FACTS_CAPACITY {
            kept.clear();
        }
        kept.insert(app.clone(), (facts, now));
        Ok(Some(facts))
    }

    /// Forgets `app`'s cached facts, after a grant was made or removed here (other nodes see
    /// the change within the minute).
    pub fn forget_app_facts(&self, app: &gramkey_domain::AppId) {
        self.app_facts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
    }

    /// Whether this is the first refusal for `subject` (a budget's key) this minute.
    pub fn first_refusal_this_minute(&self, subject: &str) -> bool {
        let minute = self.ops.clock.now().div_euclid(60);
        let mut seen = self
            .refusals_audited
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, m| *m == minute);
        }
        seen.insert(subject.to_owned(), minute) != Some(minute)
    }

    pub fn secure_cookies(&self) -> bool {
        self.config.public_url.starts_with("https://")
    }
}

impl FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Key {
        state.cookie_key.clone()
    }
}
