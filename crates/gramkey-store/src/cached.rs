//! The store's optional read-through cache: apps, users, tokens and callers (a token with its
//! app's facts and its user, what a resource call needs) are served from memory for at most
//! `ttl` ([`SqlStore::cached`](crate::sql::SqlStore::cached)).
//!
//! These are read on every API call and every token request, and each read from SQLite
//! costs file-lock system calls that dominate an otherwise microsecond lookup. Writes made
//! through this store clear what they touch at once (a replayed code clears every cached token,
//! since the replay revoked one); writes made by another process (the CLI on the same SQLite
//! file, another node on the same PostgreSQL) are seen within `ttl`. Expiry is never cached:
//! callers compare `expires_at` with their clock on every use. (A secret rotation shortens app
//! tokens' `expires_at`; made by another process, it too is seen within `ttl`.)
//!
//! Nothing else is cached: content lists change with every post and comment, the callback
//! outbox is written more than it is read, and the gauges and insights read fresh counts.
//!
//! **Several processes on one database keep their caches in step.** Every write that makes
//! something stale says so ([`Stale`]). Once it has committed, whether or not its caller still
//! waits, the engine drops that from this store's cache and announces it
//! ([`Stale::payload`]) to every other process: on PostgreSQL with `NOTIFY` on a channel per
//! schema (`gramkey_cache.<schema>`), which each caching node `LISTEN`s to (see
//! [`crate::postgres`]). A process without a cache (the CLI) announces too. A node whose
//! listening connection drops flushes its whole cache when it is back, since it may have
//! missed something; the TTL is the backstop for a notification lost otherwise (a node killed
//! between its commit and its `NOTIFY`). SQLite has no channel: a caching server watches the
//! file for other processes' commits instead (see [`crate::sqlite`]).

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gramkey_domain::{AppId, TokenHash, UserId};
/// A moka cache hashed with foldhash: SipHash, moka's default, was (with the server's per-call
/// maps) 7 % of a cached `GET /me`'s instructions. Keys are ids and token hashes, chosen by the server or by SHA-256.
pub(crate) type Memo<K, V> = moka::sync::Cache<K, V, foldhash::fast::RandomState>;

use crate::{App, Caller, Result, TokenRecord, User};

/// Entries kept per kind at most.
const CAPACITY: u64 = 100_000;

pub struct Cache {
    /// Bumped by every invalidation. A lookup that missed the cache stores what it read only
    /// if no invalidation happened meanwhile, so a revocation racing a lookup cannot leave the
    /// old, unrevoked row cached.
    generation: AtomicU64,
    /// Shared, so a caller that needs only an app's facts copies no strings.
    pub(crate) apps: Memo<AppId, std::sync::Arc<App>>,
    pub(crate) users: Memo<UserId, std::sync::Arc<User>>,
    pub(crate) tokens: Memo<TokenHash, std::sync::Arc<TokenRecord>>,
    /// A token with its app's facts and its user: one lookup per resource call. Which tokens
    /// an app or a user change touches is not known here, so such a change drops them all.
    pub(crate) callers: Memo<TokenHash, Caller>,
}

/// What a write makes stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    App(AppId),
    /// An app, and every token (which of its tokens changed is not known here).
    AppAndTokens(AppId),
    User(UserId),
    Token(TokenHash),
    /// Every token: revocations beyond one token, whose hashes are not known here.
    Tokens,
    /// A token something was derived from (exchanged, rotated): only this process's copy. What
    /// changed in it (`exchanged`) is checked again by the store's own conditional update, so
    /// another node's stale copy can do no harm, and issuance pays no notification.
    Derived(TokenHash),
    /// Everything cached: after a listening connection was lost.
    Everything,
}

impl Stale {
    /// What other processes are told, or `None` for what only concerns this one.
    pub fn payload(&self) -> Option<String> {
        Some(match self {
            Stale::App(id) => format!("app:{}", id.as_str()),
            Stale::AppAndTokens(id) => format!("app+tokens:{}", id.as_str()),
            Stale::User(id) => format!("user:{}", id.0),
            Stale::Token(hash) => format!("token:{}", hex(&hash.0)),
            Stale::Tokens => "tokens".to_owned(),
            Stale::Everything => "everything".to_owned(),
            Stale::Derived(_) => return None,
        })
    }

    /// A published payload read back; one not understood (from a newer gramkey) flushes
    /// everything, which is always safe.
    pub fn parse(payload: &str) -> Stale {
        let parsed = match payload.split_once(':') {
            Some(("app", id)) => AppId::parse(id).map(Stale::App),
            Some(("app+tokens", id)) => AppId::parse(id).map(Stale::AppAndTokens),
            Some(("user", id)) => id.parse().ok().map(|id| Stale::User(UserId(id))),
            Some(("token", h)) => unhex(h).map(|h| Stale::Token(TokenHash(h))),
            None if payload == "tokens" => Some(Stale::Tokens),
            _ => None,
        };
        parsed.unwrap_or(Stale::Everything)
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Cache {
    pub(crate) fn new(ttl: Duration) -> Self {
        fn memo<K, V>(ttl: Duration) -> Memo<K, V>
        where
            K: Hash + Eq + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
        {
            moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build_with_hasher(foldhash::fast::RandomState::default())
        }
        Self {
            generation: AtomicU64::new(0),
            apps: memo(ttl),
            users: memo(ttl),
            tokens: memo(ttl),
            callers: memo(ttl),
        }
    }

    /// The cached value of `key`, or what `read` finds (kept, unless something was made stale
    /// while it read).
    pub(crate) async fn through<K, V>(
        &self,
        memo: &Memo<K, V>,
        key: K,
        read: impl Future<Output = Result<Option<V>>>,
    ) -> Result<Option<V>>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if let Some(v) = memo.get(&key) {
            return Ok(Some(v));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let found = read.await?;
        if let Some(v) = found
            .as_ref()
            .filter(|_| self.generation.load(Ordering::SeqCst) == generation)
        {
            memo.insert(key, v.clone());
        }
        Ok(found)
    }

    /// The count of invalidations so far (see [`Cache::share_user`]).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// `user`, read while `generation` held: the cached copy when it says the same; else this
    /// one, kept for others when none is cached and nothing was made stale since. A cached
    /// copy that differs is left alone and not handed out: it may predate another node's
    /// change whose notice is still on its way.
    pub(crate) fn share_user(&self, user: User, generation: u64) -> std::sync::Arc<User> {
        if let Some(cached) = self.users.get(&user.id) {
            if *cached == user {
                return cached;
            }
            return std::sync::Arc::new(user);
        }
        let user = std::sync::Arc::new(user);
        if self.generation() == generation {
            self.users.insert(user.id, user.clone());
        }
        user
    }

    pub(crate) fn forget(&self, stale: &Stale) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match stale {
            Stale::App(id) => {
                self.apps.invalidate(id);
                self.callers.invalidate_all();
            }
            Stale::AppAndTokens(id) => {
                self.apps.invalidate(id);
                self.tokens.invalidate_all();
                self.callers.invalidate_all();
            }
            Stale::User(id) => {
                self.users.invalidate(id);
                self.callers.invalidate_all();
            }
            Stale::Token(hash) | Stale::Derived(hash) => {
                self.tokens.invalidate(hash);
                self.callers.invalidate(hash);
            }
            Stale::Tokens => {
                self.tokens.invalidate_all();
                self.callers.invalidate_all();
            }
            Stale::Everything => {
                self.apps.invalidate_all();
                self.users.invalidate_all();
                self.tokens.invalidate_all();
                self.callers.invalidate_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_published_reads_back_as_itself() {
        let app = AppId::parse("1234567890").unwrap_or_else(|| unreachable!());
        for stale in [
            Stale::App(app.clone()),
            Stale::AppAndTokens(app),
            Stale::User(UserId(42)),
            Stale::Token(TokenHash([7; 32])),
            Stale::Tokens,
            Stale::Everything,
        ] {
            let payload = stale.payload().unwrap_or_default();
            assert_eq!(Stale::parse(&payload), stale, "{payload}");
        }
        assert_eq!(Stale::Derived(TokenHash([1; 32])).payload(), None);
        for unknown in ["", "media:1", "token:zz", "user:x", "app:"] {
            assert_eq!(Stale::parse(unknown), Stale::Everything, "{unknown}");
        }
    }
}
