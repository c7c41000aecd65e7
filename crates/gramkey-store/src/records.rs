//! The rows the store reads and writes, in domain types.

use gramkey_domain::account::InvitationState;
use gramkey_domain::audit::{AuditKind, Outcome};
use gramkey_domain::callback::{CallbackKind, CallbackState, Confirmation};
use gramkey_domain::code::{
    CodeChallenge, CodeFacts, CodeIssue, CodeRefusal, Presented, check_redemption, issue_for_code,
};
use gramkey_domain::error::RevokeReason;
use gramkey_domain::graph::media::MediaType;
use gramkey_domain::graph::paging::Position;
use gramkey_domain::graph::publish::{ContainerKind, ContainerStatus};
use gramkey_domain::token::TokenMaterial;
use gramkey_domain::webhook::{Field, Fields};
use gramkey_domain::{
    AccessToken, AppId, AppMode, CommentId, ContainerId, Flavour, MediaId, RedirectUri, Role,
    ScopeSet, ScopedUserId, TokenHash, TokenKind, UnixTime, UserId,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: AppId,
    pub name: String,
    /// HMAC-SHA256 of the client secret under the server key.
    pub secret_hash: Vec<u8>,
    pub redirect_uris: Vec<RedirectUri>,
    /// The scopes this app may request.
    pub scopes: ScopeSet,
    pub mode: AppMode,
    pub created_at: UnixTime,
    /// After a rotation with a grace period: the previous secret's hash and when it stops
    /// working.
    pub previous_secret: Option<(Vec<u8>, UnixTime)>,
    /// Opted in to RFC 6749 refresh tokens.
    pub refresh_tokens: bool,
    /// The random seed the client secret is derived from (see `gramkey_domain::hashing`).
    /// `None` for apps created before callbacks existed, until their secret is rotated.
    pub secret_seed: Option<Vec<u8>>,
    /// Where to POST when a user removes the app.
    pub deauthorize_url: Option<String>,
    /// Where to POST when a user asks for their data to be deleted.
    pub data_deletion_url: Option<String>,
    /// Legacy v1's "Enforce signed requests": every v1 call must carry a valid `sig`.
    pub signed_requests: bool,
    /// The test clock: the app's time is the real time plus this many seconds (sandbox tools,
    /// development mode only). Written only by [`crate::AppStore::set_clock`].
    pub clock_offset: i64,
    /// Fault rules added since they were last cleared: while 0, no call looks for rules.
    pub fault_rules: i64,
    /// Opted in to the device authorization grant (RFC 8628).
    pub device_flow: bool,
}

/// What a resource call needs of its app: its mode and the sandbox's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppFacts {
    pub mode: AppMode,
    /// See [`App::clock_offset`].
    pub clock_offset: i64,
    /// See [`App::fault_rules`].
    pub fault_rules: i64,
}

impl AppFacts {
    pub fn of(app: &App) -> Self {
        Self {
            mode: app.mode,
            clock_offset: app.clock_offset,
            fault_rules: app.fault_rules,
        }
    }
}

/// What a resource call needs of its token, found in one lookup
/// ([`crate::GrantStore::caller`]): the token, its app's facts, and its user.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: std::sync::Arc<TokenRecord>,
    pub app: AppFacts,
    /// The token's user; none for an app token.
    pub user: Option<std::sync::Arc<User>>,
}

/// What Instagram shows of a person.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile {
    pub full_name: String,
    pub biography: String,
    pub website: String,
    /// `BUSINESS`, `MEDIA_CREATOR` or `PERSONAL`.
    pub account_type: String,
    pub profile_picture_url: String,
    pub followers_count: i64,
    pub follows_count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Already validated and lower-cased.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub profile: Profile,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub password_hash: String,
    pub profile: Profile,
    pub created_at: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub id: MediaId,
    pub user_id: UserId,
    /// `IMAGE`, `VIDEO` or `CAROUSEL_ALBUM`.
    pub media_type: MediaType,
    pub caption: String,
    pub media_url: String,
    pub permalink: String,
    pub thumbnail_url: Option<String>,
    pub created_at: UnixTime,
    pub like_count: i64,
    /// Comments and replies; kept by the store as comments come and go.
    pub comments_count: i64,
    /// For an album's child: the album, and the child's place in it.
    pub parent_id: Option<MediaId>,
    pub position: i64,
}

impl Media {
    /// Where the media sits in its owner's list (not its place in an album: that is
    /// `position`).
    pub fn place(&self) -> Position {
        Position {
            at: self.created_at,
            id: self.id.as_str().to_owned(),
        }
    }
}

/// A comment or a reply, with its author's username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: CommentId,
    pub media_id: MediaId,
    pub user_id: UserId,
    pub username: String,
    /// The comment this one replies to.
    pub parent_id: Option<CommentId>,
    pub text: String,
    pub created_at: UnixTime,
    pub like_count: i64,
    pub hidden: bool,
}

impl Comment {
    /// Where the comment sits in its list.
    pub fn place(&self) -> Position {
        Position {
            at: self.created_at,
            id: self.id.as_str().to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewComment {
    pub id: CommentId,
    pub media_id: MediaId,
    pub user_id: UserId,
    pub parent_id: Option<CommentId>,
    pub text: String,
    pub created_at: UnixTime,
    /// The webhook notifications the comment causes, queued in its transaction.
    pub notifications: Vec<NewWebhook>,
}

/// Which comments to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentsOf<'a> {
    /// The top-level comments of a media.
    Media(&'a MediaId),
    /// The replies to a comment.
    Replies(&'a CommentId),
}

/// A publishing container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: ContainerId,
    pub app_id: AppId,
    pub user_id: UserId,
    pub kind: ContainerKind,
    pub source_url: Option<String>,
    pub source_is_video: bool,
    pub caption: String,
    pub is_carousel_item: bool,
    /// Child container ids, for a carousel.
    pub children: Vec<ContainerId>,
    /// As stored; `gramkey_domain::graph::publish::status` adds expiry.
    pub status: ContainerStatus,
    pub status_reason: Option<String>,
    pub created_at: UnixTime,
    pub published_at: Option<UnixTime>,
    pub media_id: Option<MediaId>,
}

/// A publication, decided by the caller and carried out atomically by
/// [`crate::ContentStore::publish`].
#[derive(Debug, Clone)]
pub struct Publication {
    pub container_id: ContainerId,
    pub user_id: UserId,
    /// The media to create: the post first, then an album's children.
    pub media: Vec<Media>,
    pub now: UnixTime,
    /// The cap: at most `quota_total` posts published since `quota_since`.
    pub quota_since: UnixTime,
    pub quota_total: u64,
    /// The webhook notifications the post causes (caption @mentions), queued in its
    /// transaction.
    pub notifications: Vec<NewWebhook>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    Published,
    /// The container is no longer `FINISHED` (published meanwhile, or failed).
    NotPublishable,
    OverQuota,
}

/// A user's consent to an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub app_id: AppId,
    pub user_id: UserId,
    /// The id this app sees for this user.
    pub scoped_id: ScopedUserId,
    pub scopes: ScopeSet,
    pub granted_at: UnixTime,
}

#[derive(Debug, Clone)]
pub struct NewCode {
    pub hash: TokenHash,
    pub app_id: AppId,
    pub user_id: UserId,
    pub scoped_id: ScopedUserId,
    pub redirect_uri: String,
    pub scopes: ScopeSet,
    pub code_challenge: Option<CodeChallenge>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A stored code, as a redemption reads it.
pub type CodeRecord = NewCode;

/// A pair of device codes (RFC 8628), as a device asked for them. Both codes are kept only as
/// hashes.
#[derive(Debug, Clone)]
pub struct NewDeviceAuthorization {
    pub device_hash: TokenHash,
    pub user_code_hash: TokenHash,
    pub app_id: AppId,
    pub scopes: ScopeSet,
    /// The least seconds between two polls, at first.
    pub interval: i64,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A device authorization, as the `/device` page finds it by its user code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    pub device_hash: TokenHash,
    pub app_id: AppId,
    pub scopes: ScopeSet,
    pub state: gramkey_domain::device::DeviceState,
    pub expires_at: UnixTime,
}

/// What the person on the `/device` page decided.
#[derive(Debug, Clone)]
pub enum DeviceDecision {
    /// Consent: the code to store under the device code's hash, for the device's next poll.
    Approve(NewCode),
    Deny(UserId),
}

/// What a client presents to redeem a code, when, and the randomness of what it will get: the
/// access token's (formatted once the code's flavour and user are read) and, for an app that
/// opted in, a refresh token.
#[derive(Debug, Clone)]
pub struct CodeClaim {
    pub app_id: AppId,
    pub redirect_uri: String,
    pub code_verifier: Option<String>,
    pub now: UnixTime,
    pub material: TokenMaterial,
    pub refresh: Option<AccessToken>,
}

/// The domain's verdict on `claim` for `code` ([`check_redemption`], then
/// [`issue_for_code`]): the rows to insert (the access token first) and the plaintext tokens,
/// or the refusal.
pub(crate) fn judge_claim(
    code: &CodeRecord,
    claim: &CodeClaim,
) -> Result<(Vec<NewToken>, CodeIssue), CodeRefusal> {
    let facts = CodeFacts {
        app_id: &code.app_id,
        redirect_uri: &code.redirect_uri,
        expires_at: code.expires_at,
        challenge: code.code_challenge.as_ref(),
    };
    let presented = Presented {
        app_id: &claim.app_id,
        redirect_uri: &claim.redirect_uri,
        code_verifier: claim.code_verifier.as_deref(),
    };
    check_redemption(&facts, &presented, claim.now)?;
    let issue = issue_for_code(
        &code.scopes,
        &code.scoped_id,
        &claim.material,
        claim.refresh.as_ref(),
        claim.now,
    )?;
    let access = NewToken {
        hash: TokenHash::of_token(&issue.access),
        kind: TokenKind::ShortLived,
        flavour: issue.flavour,
        app_id: code.app_id.clone(),
        user_id: Some(code.user_id),
        scopes: code.scopes.clone(),
        issued_at: claim.now,
        expires_at: issue.access_expires_at,
    };
    let mut rows = vec![access];
    if let Some((refresh, expires_at)) = &issue.refresh {
        rows.push(NewToken {
            hash: TokenHash::of_token(refresh),
            kind: TokenKind::Refresh,
            expires_at: *expires_at,
            ..rows[0].clone()
        });
    }
    Ok((rows, issue))
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub hash: TokenHash,
    pub kind: TokenKind,
    pub flavour: Flavour,
    pub app_id: AppId,
    pub user_id: Option<UserId>,
    pub scopes: ScopeSet,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// A number safe to log and audit in place of the token.
    pub id: i64,
    pub kind: TokenKind,
    pub flavour: Flavour,
    pub app_id: AppId,
    pub user_id: Option<UserId>,
    /// The app-scoped id of the user, for user tokens.
    pub scoped_id: Option<ScopedUserId>,
    pub scopes: ScopeSet,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked: Option<RevokeReason>,
    /// A short-lived token already exchanged for a long-lived one.
    pub exchanged: bool,
}

/// Which tokens [`crate::GrantStore::revoke_tokens`] revokes.
#[derive(Debug, Clone)]
pub enum Revoke {
    /// One token.
    Token(TokenHash),
    /// Every token of an app.
    App(AppId),
    /// Every token a user gave an app.
    AppUser(AppId, UserId),
    /// Every token of a user, in every app.
    User(UserId),
    /// Every token of the grant this token belongs to: up to the token issued from the code,
    /// then everything derived from it (refresh-token reuse).
    Family(TokenHash),
}

/// How [`crate::GrantStore::derive_tokens`] treats the token a new one derives from.
#[derive(Debug, Clone, Copy)]
pub enum Derivation {
    /// Long-lived exchange: the parent is marked exchanged, and must not have been before.
    Exchange { now: UnixTime },
    /// Refresh: the parent's expiry is cut to at most this time (a short grace period), and
    /// what an earlier refresh of it made is revoked at `now`: a token has at most one valid
    /// successor, however often it is refreshed within its grace (a client that lost the
    /// answer may ask again; tokens do not pile up).
    Refresh {
        now: UnixTime,
        parent_expires_at: UnixTime,
    },
    /// The new tokens hang under the parent, which is left as it is.
    Attach,
    /// Refresh-token rotation: the parent is marked used at `now`. It may be used again only if
    /// its first use was at or after `reusable_since` (the grace window for parallel refreshes).
    Rotate {
        now: UnixTime,
        reusable_since: UnixTime,
    },
}

/// The outcome of [`crate::GrantStore::redeem_code`].
#[derive(Debug, Clone)]
pub enum Redemption {
    /// The access token's record, and the tokens themselves (shown to the client once).
    Issued {
        record: TokenRecord,
        token: AccessToken,
        refresh: Option<AccessToken>,
    },
    NotFound,
    /// The code had been redeemed before; this many tokens were revoked now.
    Replayed {
        revoked: u64,
    },
    Refused(CodeRefusal),
}

// Small conversions shared by both backends.

pub(crate) fn join_uris(uris: &[RedirectUri]) -> String {
    uris.iter()
        .map(RedirectUri::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Stored URIs were validated on the way in; one that no longer parses is dropped, not trusted.
pub(crate) fn split_uris(s: &str) -> Vec<RedirectUri> {
    s.lines()
        .filter_map(|l| RedirectUri::parse(l).ok())
        .collect()
}

pub(crate) fn corrupt(what: &str, value: &str) -> crate::StoreError {
    crate::StoreError::Backend(format!("stored {what} {value:?} is not valid"))
}

/// What one [`crate::GrantStore::purge`] call deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub codes: u64,
    pub tokens: u64,
    pub callbacks: u64,
    /// Finished webhook deliveries (kept as long as callbacks).
    pub webhooks: u64,
    pub audit: u64,
    /// Usage hours; more exactly, the most rows deleted from any one of the hourly tables (the
    /// hours, their error counts, their users), each bounded by the batch on its own, so that a
    /// full batch means any of them may have more left.
    pub usage: u64,
    /// Records of apps people removed (see [`crate::AccessStore::removed_grants`]).
    pub removals: u64,
}

/// What [`crate::GrantStore::remove_grant`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removal {
    /// There was a grant, and it is gone; only then were the callbacks queued.
    pub grant: bool,
    /// Tokens revoked.
    pub tokens: u64,
}

/// A queued callback and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub id: i64,
    pub app_id: AppId,
    pub kind: CallbackKind,
    pub user_id: UserId,
    pub scoped_id: ScopedUserId,
    pub created_at: UnixTime,
    pub state: CallbackState,
    /// Attempts started, counting the one in progress.
    pub attempts: u32,
    /// When a pending callback is next due (or its current attempt's lease ends).
    pub next_attempt_at: UnixTime,
    /// The URL of the last attempt.
    pub url: Option<String>,
    pub last_error: Option<String>,
    /// When it was delivered or given up on.
    pub finished_at: Option<UnixTime>,
    /// From a data-deletion callback's answer.
    pub confirmation: Confirmation,
}

/// How an attempt ended, for [`crate::CallbackStore::finish_attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered {
        at: UnixTime,
        url: String,
        confirmation: Confirmation,
    },
    /// Failed; try again at `next_at`.
    Retry {
        url: Option<String>,
        error: String,
        next_at: UnixTime,
    },
    /// Failed for good.
    GaveUp {
        at: UnixTime,
        url: Option<String>,
        error: String,
    },
}

impl Attempt {
    /// The columns an attempt writes: state, next attempt, url, error, finished, code, status URL.
    #[allow(clippy::type_complexity)]
    pub(crate) fn columns(
        &self,
    ) -> (
        &'static str,
        Option<UnixTime>,
        Option<&str>,
        Option<&str>,
        Option<UnixTime>,
        Option<&str>,
        Option<&str>,
    ) {
        match self {
            Attempt::Delivered {
                at,
                url,
                confirmation,
            } => (
                CallbackState::Delivered.as_str(),
                None,
                Some(url),
                None,
                Some(*at),
                confirmation.confirmation_code.as_deref(),
                confirmation.status_url.as_deref(),
            ),
            Attempt::Retry {
                url,
                error,
                next_at,
            } => (
                CallbackState::Pending.as_str(),
                Some(*next_at),
                url.as_deref(),
                Some(error),
                None,
                None,
                None,
            ),
            Attempt::GaveUp { at, url, error } => (
                CallbackState::Failed.as_str(),
                None,
                url.as_deref(),
                Some(error),
                Some(*at),
                None,
                None,
            ),
        }
    }
}

/// An audit event to append. Never a token, code, secret or password: ids only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    pub at: UnixTime,
    pub kind: AuditKind,
    pub outcome: Outcome,
    pub app_id: Option<AppId>,
    pub user_id: Option<UserId>,
    /// The token's row id (`TokenRecord::id`), never the token.
    pub token_id: Option<i64>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Free text: why a token was revoked, how many, which budget.
    pub detail: Option<String>,
}

/// An appended audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: i64,
    pub event: NewAuditEvent,
}

/// Which audit events to read: all filters optional, newest first, at most `limit`; with
/// `before_id`, only events older than that one (for paging).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub app: Option<AppId>,
    pub user: Option<UserId>,
    pub kind: Option<AuditKind>,
    pub since: Option<UnixTime>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// One node's usage of one app in one hour, to be added to what the store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageDelta {
    pub app_id: Option<AppId>,
    /// The hour's start (a multiple of 3600).
    pub hour: UnixTime,
    pub calls: u64,
    /// Calls refused by a rate limit.
    pub throttled: u64,
    /// The highest `call_count` percentage seen in the hour (kept as a maximum, not added).
    pub peak_call_pct: u64,
    /// Error answers by Graph code, `(code, count)`.
    pub errors: Vec<(u32, u64)>,
    /// Users who made calls (kept as a set).
    pub users: Vec<UserId>,
}

/// An app's usage in one hour, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageHour {
    pub hour: UnixTime,
    pub calls: u64,
    pub throttled: u64,
    pub peak_call_pct: u64,
    pub distinct_users: u64,
    /// `(code, count)`, by code.
    pub errors: Vec<(u32, u64)>,
}

/// What [`crate::MonitorStore::note_network`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkSeen {
    /// This token had not been used from this network before.
    pub new: bool,
    /// How many other networks the token had been used from before this call.
    pub known_before: u64,
}

/// An invitation to take a role on an app, with the names the pages show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub app_id: AppId,
    pub app_name: String,
    pub user_id: UserId,
    pub username: String,
    pub role: Role,
    pub state: InvitationState,
    pub invited_at: UnixTime,
    pub answered_at: Option<UnixTime>,
    /// Who sent it, by username (`None` when sent outside the pages, or their account is gone).
    pub invited_by: Option<String>,
}

/// Whose invitations to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationsOf<'a> {
    App(&'a AppId),
    User(UserId),
}

/// An app a person authorized (or removed), as their "Apps and Websites" page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAccess {
    pub app_id: AppId,
    pub app_name: String,
    pub scopes: ScopeSet,
    pub granted_at: UnixTime,
    /// When the last of the app's tokens for this person ends: its expiry, or its revocation
    /// if that came first. `None` when it holds no token (none issued yet, or all purged).
    pub latest_expiry: Option<UnixTime>,
    /// For a removed app: when.
    pub removed_at: Option<UnixTime>,
    /// The app has somewhere to send a data-deletion request.
    pub accepts_data_deletion: bool,
    /// For a removed app: when the person last asked it to delete their data.
    pub deletion_requested_at: Option<UnixTime>,
    /// The confirmation code the app answered the latest data-deletion request with.
    pub deletion_confirmation: Option<String>,
}

/// An app's webhook subscription to the `instagram` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSubscription {
    pub object: String,
    pub callback_url: String,
    pub fields: Fields,
    pub updated_at: UnixTime,
}

/// An account's subscription of an app (`POST /{ig-user-id}/subscribed_apps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSubscription {
    pub app_id: AppId,
    pub user_id: UserId,
    pub fields: Fields,
    pub created_at: UnixTime,
}

/// An app that hears of what happens on an account: live, subscribed to the `instagram`
/// object, subscribed by the account, and authorized by it. Whether a field flows is the
/// caller's to judge from `fields` and `scopes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub app_id: AppId,
    /// The account as this app sees it.
    pub account: ScopedUserId,
    /// What the account granted the app.
    pub scopes: ScopeSet,
    /// What the app subscribed to.
    pub fields: Fields,
}

/// A notification to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    pub app_id: AppId,
    pub field: Field,
    /// The exact bytes to POST (and sign).
    pub body: String,
    /// Sent from the dashboard or the CLI, whatever the app's mode.
    pub test: bool,
    pub created_at: UnixTime,
}

/// A notification in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: i64,
    pub app_id: AppId,
    pub field: String,
    pub body: String,
    pub test: bool,
    pub created_at: UnixTime,
    pub state: CallbackState,
    pub attempts: u32,
    pub next_attempt_at: UnixTime,
    /// Where the last attempt went.
    pub url: Option<String>,
    /// The HTTP status of the last answer, if there was one.
    pub status: Option<u16>,
    pub last_error: Option<String>,
    pub finished_at: Option<UnixTime>,
}
