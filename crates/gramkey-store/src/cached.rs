//! A read-through cache in front of any [`Store`]: apps, users and tokens are served from
//! memory for at most `ttl`.
//!
//! These three are read on every API call and every token request, and each read from SQLite
//! costs file-lock system calls that dominate an otherwise microsecond lookup. Writes made
//! through this store clear what they touch at once (a replayed code clears every cached token,
//! since the replay revoked one); writes made by another process (the CLI on the same SQLite
//! file, another node on the same PostgreSQL) are seen within `ttl`. Expiry is never cached:
//! callers compare `expires_at` with their clock on every use. (A secret rotation shortens app
//! tokens' `expires_at`; made by another process, it too is seen within `ttl`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use gramkey_domain::error::RevokeReason;
use gramkey_domain::{AppId, Role, ScopeSet, ScopedUserId, TokenHash, TokenKind, UnixTime, UserId};
use moka::sync::Cache;

use crate::{AccessStore, AppAccess, Invitation, InvitationsOf};
use crate::{
    App, AppStore, CodeClaim, Derivation, Grant, GrantStore, Media, NewCode, NewToken, NewUser,
    Redemption, Result, Store, TokenRecord, User, UserStore,
};
use crate::{Attempt, Callback, CallbackStore, Purged, Removal, Revoke};
use crate::{
    AuditEvent, AuditQuery, MonitorStore, NetworkSeen, NewAuditEvent, UsageDelta, UsageHour,
};
use crate::{
    Comment, CommentsOf, Container, ContentStore, NewComment, Publication, PublishOutcome,
};
use gramkey_domain::callback::CallbackKind;
use gramkey_domain::graph::paging::PageRequest;
use gramkey_domain::retention::Cutoffs;

/// Entries kept per kind at most.
const CAPACITY: u64 = 100_000;

pub struct CachedStore {
    inner: Arc<dyn Store>,
    /// Bumped by every invalidation. A lookup that missed the cache stores what it read only
    /// if no invalidation happened meanwhile, so a revocation racing a lookup cannot leave the
    /// old, unrevoked row cached.
    generation: AtomicU64,
    apps: Cache<AppId, App>,
    users: Cache<UserId, User>,
    tokens: Cache<TokenHash, TokenRecord>,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>, ttl: Duration) -> Self {
        fn cache<K, V>(ttl: Duration) -> Cache<K, V>
        where
            K: std::hash::Hash + Eq + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
        {
            Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build()
        }
        Self {
            inner,
            generation: AtomicU64::new(0),
            apps: cache(ttl),
            users: cache(ttl),
            tokens: cache(ttl),
        }
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn current(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Wraps `inner` when `ttl` is not zero.
    pub fn wrap(inner: Arc<dyn Store>, ttl: Duration) -> Arc<dyn Store> {
        if ttl.is_zero() {
            inner
        } else {
            Arc::new(Self::new(inner, ttl))
        }
    }
}

#[async_trait]
impl AppStore for CachedStore {
    async fn create_app(&self, app: &App) -> Result<()> {
        self.inner.create_app(app).await
    }
    async fn app(&self, id: &AppId) -> Result<Option<App>> {
        if let Some(app) = self.apps.get(id) {
            return Ok(Some(app));
        }
        let generation = self.current();
        let app = self.inner.app(id).await?;
        if let Some(a) = app.as_ref().filter(|_| self.current() == generation) {
            self.apps.insert(id.clone(), a.clone());
        }
        Ok(app)
    }
    async fn apps(&self) -> Result<Vec<App>> {
        self.inner.apps().await
    }
    async fn set_app_secret(
        &self,
        id: &AppId,
        secret_hash: &[u8],
        secret_seed: &[u8],
        keep_old_until: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<bool> {
        let r = self
            .inner
            .set_app_secret(id, secret_hash, secret_seed, keep_old_until, now)
            .await;
        self.bump();
        self.apps.invalidate(id);
        // The app's tokens now end with the old secret.
        self.tokens.invalidate_all();
        r
    }
    async fn update_app(&self, app: &App) -> Result<bool> {
        let r = self.inner.update_app(app).await;
        self.bump();
        self.apps.invalidate(&app.id);
        r
    }
    async fn delete_app(&self, id: &AppId) -> Result<bool> {
        let r = self.inner.delete_app(id).await;
        self.bump();
        self.apps.invalidate(id);
        // The app's tokens went with it.
        self.tokens.invalidate_all();
        r
    }
    async fn set_role(&self, app: &AppId, user: UserId, role: Role, now: UnixTime) -> Result<()> {
        self.inner.set_role(app, user, role, now).await
    }
    async fn role(&self, app: &AppId, user: UserId) -> Result<Option<Role>> {
        self.inner.role(app, user).await
    }
    async fn roles(&self, app: &AppId) -> Result<Vec<(UserId, Role)>> {
        self.inner.roles(app).await
    }
    async fn apps_of(&self, user: UserId) -> Result<Vec<(App, Role)>> {
        self.inner.apps_of(user).await
    }
}

#[async_trait]
impl AccessStore for CachedStore {
    async fn invite(
        &self,
        app: &AppId,
        user: UserId,
        role: Role,
        by: Option<UserId>,
        now: UnixTime,
    ) -> Result<()> {
        self.inner.invite(app, user, role, by, now).await
    }
    async fn invitations(&self, of: InvitationsOf<'_>) -> Result<Vec<Invitation>> {
        self.inner.invitations(of).await
    }
    async fn answer_invitation(
        &self,
        app: &AppId,
        user: UserId,
        accept: bool,
        now: UnixTime,
    ) -> Result<bool> {
        self.inner.answer_invitation(app, user, accept, now).await
    }
    async fn remove_member(&self, app: &AppId, user: UserId) -> Result<bool> {
        self.inner.remove_member(app, user).await
    }
    async fn user_grants(&self, user: UserId) -> Result<Vec<AppAccess>> {
        self.inner.user_grants(user).await
    }
    async fn removed_grants(&self, user: UserId) -> Result<Vec<AppAccess>> {
        self.inner.removed_grants(user).await
    }
    async fn request_data_deletion(
        &self,
        app: &AppId,
        user: UserId,
        now: UnixTime,
    ) -> Result<bool> {
        self.inner.request_data_deletion(app, user, now).await
    }
}

#[async_trait]
impl UserStore for CachedStore {
    async fn create_user(&self, user: &NewUser, now: UnixTime) -> Result<User> {
        self.inner.create_user(user, now).await
    }
    async fn user(&self, id: UserId) -> Result<Option<User>> {
        if let Some(u) = self.users.get(&id) {
            return Ok(Some(u));
        }
        let generation = self.current();
        let user = self.inner.user(id).await?;
        if let Some(u) = user.as_ref().filter(|_| self.current() == generation) {
            self.users.insert(id, u.clone());
        }
        Ok(user)
    }
    async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        self.inner.user_by_name(username).await
    }
    async fn users(&self) -> Result<Vec<User>> {
        self.inner.users().await
    }
    async fn set_password(&self, id: UserId, password_hash: &str) -> Result<bool> {
        let r = self.inner.set_password(id, password_hash).await;
        self.bump();
        self.users.invalidate(&id);
        r
    }
}

/// Content is not cached: lists change with every post and comment.
#[async_trait]
impl ContentStore for CachedStore {
    async fn add_media(&self, media: &Media) -> Result<()> {
        self.inner.add_media(media).await
    }
    async fn media_count(&self, user: UserId) -> Result<u64> {
        self.inner.media_count(user).await
    }
    async fn media(&self, id: &str) -> Result<Option<Media>> {
        self.inner.media(id).await
    }
    async fn media_page(&self, user: UserId, page: &PageRequest) -> Result<Vec<Media>> {
        self.inner.media_page(user, page).await
    }
    async fn children(&self, album: &str) -> Result<Vec<Media>> {
        self.inner.children(album).await
    }
    async fn comment(&self, id: &str) -> Result<Option<Comment>> {
        self.inner.comment(id).await
    }
    async fn comments_page(&self, of: CommentsOf<'_>, page: &PageRequest) -> Result<Vec<Comment>> {
        self.inner.comments_page(of, page).await
    }
    async fn add_comment(&self, comment: &NewComment) -> Result<bool> {
        self.inner.add_comment(comment).await
    }
    async fn delete_comment(&self, id: &str) -> Result<u64> {
        self.inner.delete_comment(id).await
    }
    async fn create_container(&self, container: &Container) -> Result<()> {
        self.inner.create_container(container).await
    }
    async fn container(&self, id: &str) -> Result<Option<Container>> {
        self.inner.container(id).await
    }
    async fn finish_container(&self, id: &str, outcome: Result<(), String>) -> Result<bool> {
        self.inner.finish_container(id, outcome).await
    }
    async fn publish_count(&self, user: UserId, since: UnixTime) -> Result<u64> {
        self.inner.publish_count(user, since).await
    }
    async fn publish(&self, publication: &Publication) -> Result<PublishOutcome> {
        self.inner.publish(publication).await
    }
}

#[async_trait]
impl GrantStore for CachedStore {
    async fn grant(&self, app: &AppId, user: UserId) -> Result<Option<Grant>> {
        self.inner.grant(app, user).await
    }
    async fn grant_by_scoped_id(
        &self,
        app: &AppId,
        scoped: &ScopedUserId,
    ) -> Result<Option<Grant>> {
        self.inner.grant_by_scoped_id(app, scoped).await
    }
    async fn save_grant(
        &self,
        app: &AppId,
        user: UserId,
        scopes: &ScopeSet,
        new_scoped_id: &ScopedUserId,
        now: UnixTime,
    ) -> Result<Grant> {
        self.inner
            .save_grant(app, user, scopes, new_scoped_id, now)
            .await
    }
    async fn create_code(&self, code: &NewCode) -> Result<()> {
        self.inner.create_code(code).await
    }
    async fn redeem_code(&self, hash: &TokenHash, claim: &CodeClaim) -> Result<Redemption> {
        let r = self.inner.redeem_code(hash, claim).await?;
        if matches!(r, Redemption::Replayed { revoked } if revoked > 0) {
            // Which cached token was revoked is not known here; revocations are rare.
            self.bump();
            self.tokens.invalidate_all();
        }
        Ok(r)
    }
    async fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>> {
        if let Some(t) = self.tokens.get(hash) {
            return Ok(Some(t));
        }
        let generation = self.current();
        let token = self.inner.token(hash).await?;
        if let Some(t) = token.as_ref().filter(|_| self.current() == generation) {
            self.tokens.insert(*hash, t.clone());
        }
        Ok(token)
    }
    async fn revoke_tokens(
        &self,
        which: Revoke,
        reason: RevokeReason,
        now: UnixTime,
    ) -> Result<u64> {
        let r = self.inner.revoke_tokens(which.clone(), reason, now).await;
        self.bump();
        match which {
            Revoke::Token(h) => self.tokens.invalidate(&h),
            _ => self.tokens.invalidate_all(),
        }
        r
    }
    async fn remove_grant(
        &self,
        app: &AppId,
        user: UserId,
        reason: RevokeReason,
        now: UnixTime,
        callbacks: &[CallbackKind],
    ) -> Result<Removal> {
        let r = self
            .inner
            .remove_grant(app, user, reason, now, callbacks)
            .await;
        // Cached tokens carry the grant's scoped id and their revocation state.
        self.bump();
        self.tokens.invalidate_all();
        r
    }
    async fn purge(&self, cutoffs: Cutoffs, batch: u32) -> Result<Purged> {
        let r = self.inner.purge(cutoffs, batch).await;
        if r.as_ref().is_ok_and(|p| p.tokens > 0) {
            self.bump();
            self.tokens.invalidate_all();
        }
        r
    }
    async fn create_token(&self, token: &NewToken) -> Result<TokenRecord> {
        self.inner.create_token(token).await
    }
    async fn derive_tokens(
        &self,
        parent: &TokenHash,
        how: Derivation,
        tokens: &[NewToken],
    ) -> Result<Option<Vec<TokenRecord>>> {
        let r = self.inner.derive_tokens(parent, how, tokens).await;
        self.bump();
        if matches!(how, Derivation::Refresh { .. }) {
            // It revoked what earlier refreshes of the parent made, whose hashes are unknown here.
            self.tokens.invalidate_all();
        } else {
            self.tokens.invalidate(parent);
        }
        r
    }
}

/// The outbox is never cached: it is written more than it is read.
#[async_trait]
impl CallbackStore for CachedStore {
    async fn claim_callbacks(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Callback>> {
        self.inner.claim_callbacks(now, lease_until, limit).await
    }
    async fn finish_attempt(&self, id: i64, attempt_no: u32, attempt: &Attempt) -> Result<bool> {
        self.inner.finish_attempt(id, attempt_no, attempt).await
    }
    async fn callbacks(&self, app: Option<&AppId>, limit: u32) -> Result<Vec<Callback>> {
        self.inner.callbacks(app, limit).await
    }
    async fn retry_callback(&self, id: i64, now: UnixTime) -> Result<bool> {
        self.inner.retry_callback(id, now).await
    }
}

/// Monitoring is never cached: the gauges and insights read fresh counts.
#[async_trait]
impl MonitorStore for CachedStore {
    async fn append_audit(&self, event: &NewAuditEvent) -> Result<i64> {
        self.inner.append_audit(event).await
    }
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        self.inner.audit(query).await
    }
    async fn record_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
        self.inner.record_usage(deltas).await
    }
    async fn usage(&self, app: &AppId, since: UnixTime, until: UnixTime) -> Result<Vec<UsageHour>> {
        self.inner.usage(app, since, until).await
    }
    async fn distinct_users(&self, app: &AppId, since: UnixTime, until: UnixTime) -> Result<u64> {
        self.inner.distinct_users(app, since, until).await
    }
    async fn note_network(
        &self,
        token_id: i64,
        network: &str,
        now: UnixTime,
    ) -> Result<NetworkSeen> {
        self.inner.note_network(token_id, network, now).await
    }
    async fn authorized_users(&self, app: &AppId) -> Result<u64> {
        self.inner.authorized_users(app).await
    }
    async fn active_tokens(&self, now: UnixTime) -> Result<Vec<(TokenKind, u64)>> {
        self.inner.active_tokens(now).await
    }
    async fn pending_callbacks(&self) -> Result<u64> {
        self.inner.pending_callbacks().await
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}
