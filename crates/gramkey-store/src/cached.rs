//! The store's optional read-through cache: apps, users and tokens are served from memory for
//! at most `ttl` ([`SqlStore::cached`](crate::sql::SqlStore::cached)).
//!
//! These three are read on every API call and every token request, and each read from SQLite
//! costs file-lock system calls that dominate an otherwise microsecond lookup. Writes made
//! through this store clear what they touch at once (a replayed code clears every cached token,
//! since the replay revoked one); writes made by another process (the CLI on the same SQLite
//! file, another node on the same PostgreSQL) are seen within `ttl`. Expiry is never cached:
//! callers compare `expires_at` with their clock on every use. (A secret rotation shortens app
//! tokens' `expires_at`; made by another process, it too is seen within `ttl`.)
//!
//! Nothing else is cached: content lists change with every post and comment, the callback
//! outbox is written more than it is read, and the gauges and insights read fresh counts.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gramkey_domain::{AppId, TokenHash, UserId};
use moka::sync::Cache as Memo;

use crate::{App, Result, TokenRecord, User};

/// Entries kept per kind at most.
const CAPACITY: u64 = 100_000;

pub(crate) struct Cache {
    /// Bumped by every invalidation. A lookup that missed the cache stores what it read only
    /// if no invalidation happened meanwhile, so a revocation racing a lookup cannot leave the
    /// old, unrevoked row cached.
    generation: AtomicU64,
    pub(crate) apps: Memo<AppId, App>,
    pub(crate) users: Memo<UserId, User>,
    pub(crate) tokens: Memo<TokenHash, TokenRecord>,
}

/// What a write makes stale.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stale<'a> {
    App(&'a AppId),
    /// An app, and every token (which of its tokens changed is not known here).
    AppAndTokens(&'a AppId),
    User(UserId),
    Token(&'a TokenHash),
    /// Every token: revocations beyond one token, whose hashes are not known here.
    Tokens,
}

impl Cache {
    pub(crate) fn new(ttl: Duration) -> Self {
        fn memo<K, V>(ttl: Duration) -> Memo<K, V>
        where
            K: Hash + Eq + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
        {
            Memo::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build()
        }
        Self {
            generation: AtomicU64::new(0),
            apps: memo(ttl),
            users: memo(ttl),
            tokens: memo(ttl),
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

    pub(crate) fn forget(&self, stale: Stale<'_>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match stale {
            Stale::App(id) => self.apps.invalidate(id),
            Stale::AppAndTokens(id) => {
                self.apps.invalidate(id);
                self.tokens.invalidate_all();
            }
            Stale::User(id) => self.users.invalidate(&id),
            Stale::Token(hash) => self.tokens.invalidate(hash),
            Stale::Tokens => self.tokens.invalidate_all(),
        }
    }
}
