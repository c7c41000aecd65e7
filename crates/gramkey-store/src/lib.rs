//! gramkey's storage: one trait family ([`AppStore`], [`UserStore`], [`GrantStore`], together
//! [`Store`]), implemented once ([`sql::SqlStore`]) over two engines chosen at start-up:
//!
//! - [`sqlite::SqliteStore`], the embedded default: one writer thread that commits concurrent
//!   writes together (group commit), and a pool of readers;
//! - [`postgres::PgStore`], for several stateless nodes sharing one database.
//!
//! Either may keep a short-lived read-through cache of apps, users and tokens
//! ([`sql::SqlStore::cached`], [`cached`]).
//!
//! Stores never read the clock: callers pass `now`. Business rules stay in `gramkey-domain`;
//! the one rule a store must hold itself is atomicity: a code is redeemed at most once, even
//! when two requests race ([`GrantStore::redeem_code`]).

pub mod cached;
pub mod postgres;
mod records;
pub mod sql;
pub mod sqlite;
#[cfg(feature = "test-support")]
pub mod test_support;

use async_trait::async_trait;
use gramkey_domain::callback::CallbackKind;
use gramkey_domain::error::RevokeReason;
use gramkey_domain::graph::paging::PageRequest;
use gramkey_domain::retention::Cutoffs;
use gramkey_domain::sandbox::{FaultRule, FaultSpec};
use gramkey_domain::{
    AppId, CommentId, ContainerId, MediaId, Role, ScopeSet, ScopedUserId, TokenHash, TokenKind,
    UnixTime, UserId,
};

pub use records::*;

/// What can go wrong in a store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (a taken username, a duplicate id).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database failed; the message is for logs, never for clients.
    #[error("database error: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Registered apps and the roles people hold on them.
#[async_trait]
pub trait AppStore: Send + Sync {
    /// Fails with [`StoreError::Conflict`] when the id is taken.
    async fn create_app(&self, app: &App) -> Result<()>;
    async fn app(&self, id: &AppId) -> Result<Option<App>>;
    /// What a resource call needs of its app (`app` without copying the rest).
    async fn app_facts(&self, id: &AppId) -> Result<Option<AppFacts>>;
    /// Every app, oldest first.
    async fn apps(&self) -> Result<Vec<App>>;
    /// Replaces the secret hash and seed; false when there is no such app. With
    /// `keep_old_until`, the old hash stays valid until then; without, it stops at `now` (and so
    /// does any previous one). The app tokens issued so far end when the old secret does.
    async fn set_app_secret(
        &self,
        id: &AppId,
        secret_hash: &[u8],
        secret_seed: &[u8],
        keep_old_until: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<bool>;
    /// Writes an app's editable settings: name, redirect URIs, scopes, mode, refresh-token
    /// opt-in and callback URLs (not its id, secrets or creation time). False when there is no
    /// such app.
    async fn update_app(&self, app: &App) -> Result<bool>;
    /// Deletes the app with its roles, grants, codes and tokens; false when there is none.
    async fn delete_app(&self, id: &AppId) -> Result<bool>;
    /// Gives a user a role on an app, replacing any role they had.
    async fn set_role(&self, app: &AppId, user: UserId, role: Role, now: UnixTime) -> Result<()>;
    async fn role(&self, app: &AppId, user: UserId) -> Result<Option<Role>>;
    /// Everyone with a role on the app.
    async fn roles(&self, app: &AppId) -> Result<Vec<(UserId, Role)>>;
    /// The apps a user holds a role on, with the role, oldest app first.
    async fn apps_of(&self, user: UserId) -> Result<Vec<(App, Role)>>;
    /// Sets the app's test clock to `offset` seconds ahead of real time, and makes its pending
    /// callbacks and webhook notifications due `shift` seconds earlier (an advance brings due
    /// what was due within it). False when there is no such app.
    async fn set_clock(&self, id: &AppId, offset: i64, shift: i64) -> Result<bool>;
    /// The development-mode apps whose test clock runs ahead, with its offset.
    async fn clocked_apps(&self) -> Result<Vec<(AppId, i64)>>;
    /// Adds a fault rule for the app, at the app's time `now`.
    async fn add_fault(&self, id: &AppId, spec: &FaultSpec, now: UnixTime) -> Result<FaultRule>;
    /// The app's fault rules, oldest first, spent and lapsed ones included.
    async fn faults(&self, id: &AppId) -> Result<Vec<FaultRule>>;
    /// Takes one matching call from a counted rule: false when none is left (another call,
    /// perhaps on another node, took the last).
    async fn take_fault(&self, rule: i64) -> Result<bool>;
    /// Deletes the app's fault rules; how many there were.
    async fn clear_faults(&self, id: &AppId) -> Result<u64>;
}

/// User accounts and profiles.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Fails with [`StoreError::Conflict`] when the username is taken.
    async fn create_user(&self, user: &NewUser, now: UnixTime) -> Result<User>;
    /// Shared: the cache hands out the same copy, and a call copies no strings.
    async fn user(&self, id: UserId) -> Result<Option<std::sync::Arc<User>>>;
    async fn user_by_name(&self, username: &str) -> Result<Option<User>>;
    /// Every user, oldest first.
    async fn users(&self) -> Result<Vec<User>>;
    /// Replaces a user's password hash; false when there is no such user.
    async fn set_password(&self, id: UserId, password_hash: &str) -> Result<bool>;
    /// Deletes a user with everything that is theirs (media, comments, grants, tokens, roles);
    /// false when there is no such user.
    async fn delete_user(&self, id: UserId) -> Result<bool>;
}

/// Media, comments and publishing containers.
///
/// Lists are read a page at a time with [`PageRequest`]: up to `page.fetch()` rows (one more
/// than the page, so the caller can tell whether there is more) in display order, newest
/// first. With `before`, the rows nearest the cursor are read, and the extra one is the first.
#[async_trait]
pub trait ContentStore: Send + Sync {
    async fn add_media(&self, media: &Media) -> Result<()>;
    /// A user's top-level media (album children are not counted).
    async fn media_count(&self, user: UserId) -> Result<u64>;
    async fn media(&self, id: &MediaId) -> Result<Option<Media>>;
    /// A page of a user's top-level media.
    async fn media_page(&self, user: UserId, page: &PageRequest) -> Result<Vec<Media>>;
    /// An album's children, in order.
    async fn children(&self, album: &MediaId) -> Result<Vec<Media>>;
    async fn comment(&self, id: &CommentId) -> Result<Option<Comment>>;
    async fn comments_page(&self, of: CommentsOf<'_>, page: &PageRequest) -> Result<Vec<Comment>>;
    /// Adds a comment and counts it on its media, in one transaction. False, with nothing
    /// written, when the media or the parent comment is gone.
    async fn add_comment(&self, comment: &NewComment) -> Result<bool>;
    /// Deletes a comment with its replies and takes them off its media's count, in one
    /// transaction; how many comments went (0 when there was none).
    async fn delete_comment(&self, id: &CommentId) -> Result<u64>;
    async fn create_container(&self, container: &Container) -> Result<()>;
    async fn container(&self, id: &ContainerId) -> Result<Option<Container>>;
    /// Ends processing: `FINISHED`, or `ERROR` with the reason. Only an `IN_PROGRESS` container
    /// changes; false otherwise.
    async fn finish_container(&self, id: &ContainerId, outcome: Result<(), String>)
    -> Result<bool>;
    /// How many posts the user published since `since` (what the 24-hour cap counts).
    async fn publish_count(&self, user: UserId, since: UnixTime) -> Result<u64>;
    /// Publishes in one transaction: checks the cap, marks the container and its children
    /// `PUBLISHED` (only if it is still `FINISHED`), and inserts the media. Of two racing
    /// publications of one container, exactly one wins; of racing posts at the cap, none
    /// exceeds it.
    async fn publish(&self, publication: &Publication) -> Result<PublishOutcome>;
}

/// Consent, authorization codes and tokens.
#[async_trait]
pub trait GrantStore: Send + Sync {
    async fn grant(&self, app: &AppId, user: UserId) -> Result<Option<Grant>>;
    /// The grant behind an app-scoped user id: only that app's ids resolve.
    async fn grant_by_scoped_id(&self, app: &AppId, scoped: &ScopedUserId)
    -> Result<Option<Grant>>;
    /// Records consent. A first grant takes `new_scoped_id`; a later one keeps the id it has
    /// and replaces the scopes.
    async fn save_grant(
        &self,
        app: &AppId,
        user: UserId,
        scopes: &ScopeSet,
        new_scoped_id: &ScopedUserId,
        now: UnixTime,
    ) -> Result<Grant>;
    async fn create_code(&self, code: &NewCode) -> Result<()>;
    /// Stores a pair of device codes (RFC 8628). Fails as a conflict when a code's hash is
    /// taken.
    async fn create_device_authorization(&self, auth: &NewDeviceAuthorization) -> Result<()>;
    /// The device authorization a user code names, whatever its state.
    async fn device_authorization(
        &self,
        user_code_hash: &TokenHash,
    ) -> Result<Option<DeviceAuthorization>>;
    /// Records the person's decision on a pending, unexpired device authorization, in one
    /// transaction with the code an approval issues. False, with nothing written, when it is
    /// no longer pending or has expired.
    async fn decide_device_authorization(
        &self,
        user_code_hash: &TokenHash,
        decision: &DeviceDecision,
        now: UnixTime,
    ) -> Result<bool>;
    /// A device's poll, judged by [`judge_poll`](gramkey_domain::device::judge_poll) under a
    /// row lock and recorded: a pending poll's time, a `slow_down`'s longer interval. An
    /// approval is answered once: the authorization is forgotten, and the caller redeems the
    /// code under the device code's hash. `None` when the app has no such device code.
    async fn poll_device(
        &self,
        device_hash: &TokenHash,
        app: &AppId,
        now: UnixTime,
    ) -> Result<Option<gramkey_domain::device::Poll>>;
    /// The app a code was issued to, whether or not it was redeemed (the sandbox's callback
    /// page names it in the exchange command it shows).
    async fn code_app(&self, hash: &TokenHash) -> Result<Option<AppId>>;
    /// Redeems a code atomically, in one transaction:
    /// - unknown: [`Redemption::NotFound`];
    /// - already redeemed: the token issued from it, and every token exchanged or refreshed from
    ///   that one, is revoked ([`Redemption::Replayed`]);
    /// - otherwise the code is marked redeemed whatever the domain says of `claim`
    ///   ([`check_redemption`](gramkey_domain::code::check_redemption)); on a refusal nothing
    ///   else is written ([`Redemption::Refused`]), else the tokens the domain issues for the
    ///   code ([`issue_for_code`](gramkey_domain::code::issue_for_code), from the claim's
    ///   material) are stored, the access token as the root and a refresh token under it
    ///   ([`Redemption::Issued`]).
    ///
    /// The answer comes only after the transaction has committed.
    async fn redeem_code(&self, hash: &TokenHash, claim: &CodeClaim) -> Result<Redemption>;
    /// Revokes every unrevoked token matching `which`; returns how many. For an app, a user, or
    /// both, their unredeemed codes are burned in the same transaction.
    async fn revoke_tokens(
        &self,
        which: Revoke,
        reason: RevokeReason,
        now: UnixTime,
    ) -> Result<u64>;
    /// The user removes the app, in one transaction: the grant is forgotten (and remembered as
    /// removed, for [`AccessStore::removed_grants`]), every token the app holds for the user is
    /// revoked for `reason` and their unredeemed codes burned, and, only if there was a grant to
    /// forget, a callback of each of `callbacks` is queued, naming the user by the grant's
    /// app-scoped id.
    async fn remove_grant(
        &self,
        app: &AppId,
        user: UserId,
        reason: RevokeReason,
        now: UnixTime,
        callbacks: &[CallbackKind],
    ) -> Result<Removal>;
    /// Deletes at most `batch` codes, `batch` tokens (with the networks they were used from),
    /// `batch` finished callbacks, `batch` audit events, `batch` usage hours and `batch` removal
    /// records (kept as long as tokens) that are past `cutoffs`, in one short transaction;
    /// returns how many of each. Call again while it returns full batches.
    async fn purge(&self, cutoffs: Cutoffs, batch: u32) -> Result<Purged>;
    /// As [`GrantStore::purge`], for the codes and tokens of one app only: an app whose test
    /// clock runs ahead has cutoffs of its own.
    async fn purge_app(&self, app: &AppId, cutoffs: Cutoffs, batch: u32) -> Result<Purged>;
    /// Stores a token issued outside a code redemption (an app token).
    async fn create_token(&self, token: &NewToken) -> Result<TokenRecord>;
    /// A token by its hash, with the app-scoped id of its user.
    async fn token(&self, hash: &TokenHash) -> Result<Option<std::sync::Arc<TokenRecord>>>;
    /// A token by its hash with its app's facts and its user, in one query (from the cache,
    /// one lookup): what every resource call needs. None when the token or its app is unknown.
    async fn caller(&self, hash: &TokenHash) -> Result<Option<Caller>>;
    /// Issues `tokens` derived from the token `parent` (long-lived exchange, refresh, rotation), and
    /// updates the parent as `how` says, in one transaction. `None`, with nothing written, when
    /// the parent is unknown, revoked, or (for an exchange) already exchanged: of two racing
    /// exchanges exactly one wins.
    async fn derive_tokens(
        &self,
        parent: &TokenHash,
        how: Derivation,
        tokens: &[NewToken],
    ) -> Result<Option<Vec<TokenRecord>>>;
}

/// The outbox of deauthorize and data-deletion callbacks. Any number of nodes may deliver from
/// it at once: a claimed callback is leased to its claimer.
#[async_trait]
pub trait CallbackStore: Send + Sync {
    /// Claims up to `limit` pending callbacks due at `now`, oldest due first: each one's attempt
    /// count goes up and it is leased until `lease_until`, so no other claimer takes it
    /// meanwhile. If the claimer dies, it comes due again when the lease ends.
    async fn claim_callbacks(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Callback>>;
    /// Records how attempt number `attempt_no` of a claimed callback ended. False, with nothing
    /// written, when that attempt is no longer the current one (its lease ran out and another
    /// claimer took the callback): the later claimer's outcome wins.
    async fn finish_attempt(&self, id: i64, attempt_no: u32, attempt: &Attempt) -> Result<bool>;
    /// The newest `limit` callbacks, of one app or all.
    async fn callbacks(&self, app: Option<&AppId>, limit: u32) -> Result<Vec<Callback>>;
    /// Queues a failed callback for an attempt at `now`, with a fresh attempt count; false when
    /// there is no such callback or it has not failed.
    async fn retry_callback(&self, id: i64, now: UnixTime) -> Result<bool>;
}

/// Webhooks: apps' subscriptions, accounts' subscriptions of apps, and the outbox of
/// notifications, leased to one deliverer at a time as callbacks are.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// The app's subscription to `object`.
    async fn app_subscription(&self, app: &AppId, object: &str) -> Result<Option<AppSubscription>>;
    /// Saves the app's subscription to `object` (replacing URL and fields).
    async fn save_app_subscription(&self, app: &AppId, sub: &AppSubscription) -> Result<()>;
    /// Removes the app's subscription to `object`; false when there was none.
    async fn delete_app_subscription(&self, app: &AppId, object: &str) -> Result<bool>;
    /// Records (or replaces) an account's subscription of an app.
    async fn subscribe_account(&self, sub: &AccountSubscription) -> Result<()>;
    /// The apps an account subscribed.
    async fn account_subscriptions(&self, user: UserId) -> Result<Vec<AccountSubscription>>;
    /// Ends an account's subscription of an app; false when there was none.
    async fn unsubscribe_account(&self, app: &AppId, user: UserId) -> Result<bool>;
    /// The apps that hear of what happens on `user`'s account (see [`WebhookTarget`]).
    async fn webhook_targets(&self, user: UserId) -> Result<Vec<WebhookTarget>>;
    /// Queues notifications.
    async fn enqueue_webhooks(&self, notes: &[NewWebhook]) -> Result<()>;
    /// As [`CallbackStore::claim_callbacks`], for notifications.
    async fn claim_webhooks(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Webhook>>;
    /// As [`CallbackStore::finish_attempt`], with the answer's HTTP status if there was one.
    async fn finish_webhook(
        &self,
        id: i64,
        attempt_no: u32,
        attempt: &Attempt,
        status: Option<u16>,
    ) -> Result<bool>;
    /// The newest `limit` notifications, of one app or all.
    async fn webhooks(&self, app: Option<&AppId>, limit: u32) -> Result<Vec<Webhook>>;
    /// As [`CallbackStore::retry_callback`], for a notification.
    async fn retry_webhook(&self, id: i64, now: UnixTime) -> Result<bool>;
}

/// What the server needs to watch itself: the append-only audit log, hourly usage for app
/// insights, the networks each token was used from, and the counts behind its gauges.
#[async_trait]
pub trait MonitorStore: Send + Sync {
    /// Appends an event; returns its id. There is no way to change or delete one but the
    /// janitor's retention purge ([`GrantStore::purge`]).
    async fn append_audit(&self, event: &NewAuditEvent) -> Result<i64>;
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;
    /// Adds each delta to its app's hour, in one transaction: counts add up, `peak_call_pct`
    /// keeps the maximum, users are kept as a set. Deltas without an app are ignored.
    async fn record_usage(&self, deltas: &[UsageDelta]) -> Result<()>;
    /// An app's hours in `[since, until)`, oldest first; hours without calls are absent.
    async fn usage(&self, app: &AppId, since: UnixTime, until: UnixTime) -> Result<Vec<UsageHour>>;
    /// Distinct users of an app over the hours in `[since, until)`.
    async fn distinct_users(&self, app: &AppId, since: UnixTime, until: UnixTime) -> Result<u64>;
    /// Records that token `token_id` was used from `network` (e.g. `203.0.113.0/24`), and says
    /// whether that was new and how many networks it knew before. Atomic: of two racing first
    /// uses from one network, one is new.
    async fn note_network(
        &self,
        token_id: i64,
        network: &str,
        now: UnixTime,
    ) -> Result<NetworkSeen>;
    /// How many users have a grant on the app: the app pool's multiplier.
    async fn authorized_users(&self, app: &AppId) -> Result<u64>;
    /// Tokens neither revoked nor expired at `now`, by kind.
    async fn active_tokens(&self, now: UnixTime) -> Result<Vec<(TokenKind, u64)>>;
    /// Callbacks still pending delivery.
    async fn pending_callbacks(&self) -> Result<u64>;
    /// Answers when the database can be read and written (for `/readyz`); touches no table.
    async fn ping(&self) -> Result<()>;
}

/// What the web pages add: invitations to roles, and a person's view of the apps they
/// authorized.
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Invites a user to a role on an app, on behalf of `by`: a new pending invitation,
    /// replacing any earlier one (answered or not) for the same app and user.
    async fn invite(
        &self,
        app: &AppId,
        user: UserId,
        role: Role,
        by: Option<UserId>,
        now: UnixTime,
    ) -> Result<()>;
    /// Invitations of an app or to a user, newest first.
    async fn invitations(&self, of: InvitationsOf<'_>) -> Result<Vec<Invitation>>;
    /// Answers a pending invitation, in one transaction: accepting gives the user the role
    /// (replacing any they held, but never an admin's). False, with nothing written, when there is no pending one.
    async fn answer_invitation(
        &self,
        app: &AppId,
        user: UserId,
        accept: bool,
        now: UnixTime,
    ) -> Result<bool>;
    /// Takes a person off an app's team, in one transaction: their role, unless it is admin,
    /// and any invitation. False when there was neither.
    async fn remove_member(&self, app: &AppId, user: UserId) -> Result<bool>;
    /// The apps a user has granted access to, newest grant first, each with when the last of its
    /// tokens ends (expiry, or revocation if earlier).
    async fn user_grants(&self, user: UserId) -> Result<Vec<AppAccess>>;
    /// The apps a user removed (and has not authorized again since), newest removal first.
    async fn removed_grants(&self, user: UserId) -> Result<Vec<AppAccess>>;
    /// Queues a data-deletion callback naming the user by their id in the app, whether the app
    /// is still granted or was removed. False when the user never authorized the app (or its
    /// removal is forgotten).
    async fn request_data_deletion(&self, app: &AppId, user: UserId, now: UnixTime)
    -> Result<bool>;
}

/// The whole store.
pub trait Store:
    AppStore
    + UserStore
    + ContentStore
    + GrantStore
    + CallbackStore
    + WebhookStore
    + MonitorStore
    + AccessStore
{
}
impl<
    T: AppStore
        + UserStore
        + ContentStore
        + GrantStore
        + CallbackStore
        + WebhookStore
        + MonitorStore
        + AccessStore,
> Store for T
{
}
