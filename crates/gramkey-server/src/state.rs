//! The state every handler shares.

use std::sync::Arc;

use axum::extract::FromRef;
use axum_extra::extract::cookie::Key;
use gramkey_domain::hashing::derive_key;
use gramkey_domain::secret::ct_eq;
use gramkey_domain::{AdminKey, Clock, Entropy, SecretHasher};
use gramkey_store::Store;
use sha2::{Digest, Sha256};

use crate::ops::Ops;

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
}

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub ops: Ops,
    pub config: ServerConfig,
    /// Processes publishing containers; `None` when `fetch_media` is off.
    pub fetcher: Option<crate::media_fetch::Fetcher>,
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
        let mut cookie_material = [0u8; 64];
        cookie_material[..32]
            .copy_from_slice(&derive_key(master_key, "gramkey cookie encryption v1"));
        cookie_material[32..].copy_from_slice(&derive_key(master_key, "gramkey cookie signing v1"));
        let admin_key_hash = config
            .admin_key
            .as_ref()
            .map(|k| Sha256::digest(k.expose().as_bytes()).into());
        let fetcher = config
            .fetch_media
            .then(|| crate::media_fetch::Fetcher::new(store.clone()));
        Self(Arc::new(Inner {
            fetcher,
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
    pub fn is_admin_key(&self, presented: &str) -> Option<bool> {
        let expected = self.admin_key_hash.as_ref()?;
        let got: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        Some(ct_eq(&got, expected))
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
