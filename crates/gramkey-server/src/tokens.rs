//! The token service: the OAuth core. Every way a token is issued, checked or revoked goes
//! through [`Tokens`]; the handlers of `/oauth/access_token`, `/access_token`,
//! `/refresh_access_token`, `/oauth/revoke`, `/oauth/introspect` and the resource API only parse,
//! call and render. The rules themselves are the domain's (`code::check_redemption`,
//! `token::check_*`); this service applies them to stored records, mints tokens, audits and
//! counts. It answers with domain outcomes ([`Failure`]); each wire flavour renders those its
//! own way (`From<Failure>` in `wire/`).
//!
//! Cost of a code exchange: one HMAC for the client secret, one indexed read of the app (cached),
//! and one write transaction, shared with every other concurrent request on SQLite (group
//! commit). No slow KDF anywhere.

use std::sync::Arc;

use gramkey_domain::app::{ClientRefusal, find_redirect};
use gramkey_domain::audit::{AuditKind, Outcome};
use gramkey_domain::code::CodeRefusal;
use gramkey_domain::device;
use gramkey_domain::error::RevokeReason;
use gramkey_domain::token::{
    LONG_LIVED_SECS, LifecycleFacts, MintOrder, REFRESH_GRACE_SECS, REFRESH_TOKEN_SECS,
    SHORT_LIVED_SECS, TokenMaterial, TokenRefusal, TokenState, check_exchange, check_refresh,
    check_usable, generate_app_token, generate_refresh_token, plausible_token,
    split_app_credentials,
};
use gramkey_domain::{
    AccessToken, AppId, AuthCode, ClientSecret, Flavour, ScopeSet, TokenHash, TokenKind, UnixTime,
};
use gramkey_store::{
    App, AppFacts, CodeClaim, Derivation, NewDeviceAuthorization, NewToken, Redemption, Revoke,
    StoreError, TokenRecord, User,
};

use crate::audit::Entry;
use crate::origin::Origin;
use crate::state::AppState;
use crate::throttle::{self, Throttled};

/// Why the OAuth core refused, or that it failed.
#[derive(Debug)]
pub enum Failure {
    Client(ClientRefusal),
    /// The `redirect_uri` is none of the app's.
    RedirectNotRegistered,
    Code(CodeRefusal),
    /// A code presented a second time: every token issued from it has been revoked.
    CodeReplayed,
    Token(TokenRefusal),
    /// Unknown, expired, revoked, or another client's refresh token.
    InvalidRefreshToken,
    /// A rotated refresh token presented again after the grace window: the grant is revoked.
    RefreshTokenReused,
    /// RFC 7009: a client may revoke only its own tokens.
    OtherClientsToken,
    /// The shared rate limiter cannot be asked and fails closed: nothing was decided.
    Unavailable,
    /// The store failed. Logged once, where it is rendered.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}
impl From<ClientRefusal> for Failure {
    fn from(r: ClientRefusal) -> Self {
        Failure::Client(r)
    }
}
impl From<TokenRefusal> for Failure {
    fn from(r: TokenRefusal) -> Self {
        Failure::Token(r)
    }
}

/// An authenticated client.
#[derive(Debug, Clone)]
pub struct Client {
    pub app: App,
    /// Until when the secret it presented works: for ever for the current one, the end of a
    /// rotation's grace for the previous one.
    pub secret_until: UnixTime,
}

/// The credential a resource call presented, authenticated, with what the call needs of its
/// app.
#[derive(Clone)]
pub struct Bearer {
    credential: Credential,
    /// The token's user, read with it (none for app tokens).
    user: Option<Arc<User>>,
    pub app: AppFacts,
    /// The app's time when the call was authenticated (its test clock, in development mode).
    pub now: UnixTime,
}

#[derive(Debug, Clone)]
enum Credential {
    /// An issued token (a user's, or an app token from `client_credentials`).
    Token(Arc<TokenRecord>),
    /// `APP_ID|APP_SECRET`: an app token that nothing stores.
    AppSecret(AppId),
}

/// Written out so that the user's record (its password hash) never reaches a log line.
impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bearer")
            .field("credential", &self.credential)
            .field("user", &self.user.as_ref().map(|u| u.id))
            .field("app", &self.app)
            .field("now", &self.now)
            .finish()
    }
}

impl Bearer {
    pub fn app_id(&self) -> &AppId {
        match &self.credential {
            Credential::Token(t) => &t.app_id,
            Credential::AppSecret(id) => id,
        }
    }
    /// An app's token (issued, or `APP_ID|APP_SECRET`) rather than a user's.
    pub fn is_app(&self) -> bool {
        self.stored().is_none_or(|t| t.kind == TokenKind::App)
    }
    /// The flavour errors are worded in: app tokens are the Instagram Platform's.
    pub fn flavour(&self) -> Flavour {
        self.stored().map_or(Flavour::InstagramLogin, |t| t.flavour)
    }
    /// The stored token, for the audit log, budgets and alerts; none for `APP_ID|APP_SECRET`.
    pub fn stored(&self) -> Option<&TokenRecord> {
        match &self.credential {
            Credential::Token(t) => Some(t),
            Credential::AppSecret(_) => None,
        }
    }
    /// The user of a user's token.
    pub fn user(&self) -> Option<&Arc<User>> {
        self.user.as_ref()
    }
    /// A user's token: the only bearer with a user behind it.
    pub fn into_user_token(self) -> Option<Arc<TokenRecord>> {
        match self.credential {
            Credential::Token(t) if t.kind != TokenKind::App && t.user_id.is_some() => Some(t),
            _ => None,
        }
    }
}

/// A device's pair of codes (RFC 8628 §3.2).
pub struct DeviceCodes {
    pub device_code: AuthCode,
    /// As a person reads it: `BCDF-GHJK`.
    pub user_code: String,
    pub expires_in: i64,
    pub interval: i64,
}

/// How a user code is stored and looked up: the hash of its normalized letters.
pub fn user_code_hash(normalized: &str) -> TokenHash {
    TokenHash::of_code(&AuthCode::new(normalized.to_owned()))
}

/// Tokens just issued, with the record of the first.
pub struct Issued {
    pub token: AccessToken,
    /// An RFC 6749 refresh token, for apps that opted in.
    pub refresh: Option<AccessToken>,
    pub record: TokenRecord,
}

/// The token service over a node's state, for one request's [`Origin`]: `state.tokens(origin)`.
pub struct Tokens<'a> {
    state: &'a AppState,
    origin: &'a Origin,
}

impl AppState {
    pub fn tokens<'a>(&'a self, origin: &'a Origin) -> Tokens<'a> {
        Tokens {
            state: self,
            origin,
        }
    }
}

/// A token presented in a request, not yet looked up.
fn hash_if_plausible(raw: &str) -> Option<TokenHash> {
    plausible_token(raw).then(|| TokenHash::of_token(&AccessToken::new(raw)))
}

fn state_of(t: &TokenRecord) -> TokenState {
    TokenState {
        expires_at: t.expires_at,
        revoked: t.revoked,
    }
}

fn lifecycle_facts(t: &TokenRecord) -> LifecycleFacts<'_> {
    LifecycleFacts {
        kind: t.kind,
        flavour: t.flavour,
        scopes: &t.scopes,
        issued_at: t.issued_at,
        state: state_of(t),
        exchanged: t.exchanged,
    }
}

impl Tokens<'_> {
    /// Audits and counts a token issued (`TokenIssued`, `TokenExchanged` or `TokenRefreshed`).
    async fn issued(&self, kind: AuditKind, token: &TokenRecord, detail: impl Into<String>) {
        self.state.metrics.token_issued(token.kind);
        let entry = Entry::default()
            .app(&token.app_id)
            .user(token.user_id)
            .token(token.id)
            .detail(detail);
        self.state
            .ops
            .audit(self.origin, kind, Outcome::Success, entry)
            .await;
    }

    /// Audits and counts `n` tokens revoked for `reason`.
    async fn revoked(&self, reason: RevokeReason, n: u64, entry: Entry) {
        self.state.metrics.tokens_revoked(reason, n);
        self.state.ops.revoked(self.origin, reason, n, entry).await;
    }

    /// `app`'s time: its test clock's, in development mode.
    fn now(&self, app: &App) -> UnixTime {
        self.state.ops.now_for(app)
    }

    /// What a call needs of the app `id`, and its time; the token it is asked for is invalid
    /// when the app is gone.
    async fn now_of(&self, id: &AppId) -> Result<(AppFacts, UnixTime), Failure> {
        let facts = self
            .state
            .ops
            .store
            .app_facts(id)
            .await?
            .ok_or(TokenRefusal::Invalid)?;
        Ok((facts, self.state.ops.time_for(facts)))
    }

    /// A new user token of `kind` for the same app, user and scopes as `like`, in `flavour`'s
    /// format, issued at `now`.
    fn mint(
        &self,
        now: UnixTime,
        flavour: Flavour,
        kind: TokenKind,
        like: (&AppId, gramkey_domain::UserId, &ScopeSet),
        scoped: &gramkey_domain::ScopedUserId,
    ) -> (AccessToken, NewToken) {
        let token = flavour.generate_token(scoped, &*self.state.ops.entropy, self.mint_order());
        let lifetime = match kind {
            TokenKind::LongLived => LONG_LIVED_SECS,
            _ => SHORT_LIVED_SECS,
        };
        let new = NewToken {
            hash: TokenHash::of_token(&token),
            kind,
            flavour,
            app_id: like.0.clone(),
            user_id: Some(like.1),
            scopes: like.2.clone(),
            issued_at: now,
            expires_at: now + lifetime,
        };
        (token, new)
    }

    /// Where a token minted now goes in the token index: the node's own clock, not an app's
    /// test clock, since it orders storage and nothing else.
    fn mint_order(&self) -> MintOrder {
        MintOrder::now(&*self.state.ops.clock)
    }

    /// A new refresh token for the same app, user and scopes as the access token `with`.
    fn mint_refresh(&self, with: &NewToken) -> (AccessToken, NewToken) {
        let token = generate_refresh_token(&*self.state.ops.entropy, self.mint_order());
        let new = NewToken {
            hash: TokenHash::of_token(&token),
            kind: TokenKind::Refresh,
            expires_at: with.issued_at + REFRESH_TOKEN_SECS,
            ..with.clone()
        };
        (token, new)
    }

    /// Whether this address may try to authenticate a client now.
    async fn not_throttled(&self, client_id: &str) -> Result<(), Failure> {
        throttle::client_allowed(self.state, self.origin, client_id)
            .await
            .map_err(|t| match t {
                Throttled::Locked(retry_after, _) => {
                    ClientRefusal::Throttled { retry_after }.into()
                }
                Throttled::Unavailable => Failure::Unavailable,
            })
    }

    /// Checks `secret` against a known app; a wrong one is counted, audited (with `context`)
    /// and, past the burst threshold, alerted on.
    async fn check_secret(
        &self,
        app: App,
        secret: &ClientSecret,
        context: &str,
    ) -> Result<Client, Failure> {
        match self.state.ops.client_secret_valid_until(&app, secret) {
            Some(secret_until) => Ok(Client { app, secret_until }),
            None => {
                tracing::info!(app_id = %app.id, context, "client authentication failed");
                throttle::client_failed(self.state, self.origin, Some(&app.id), context).await;
                Err(ClientRefusal::WrongSecret.into())
            }
        }
    }

    /// Authenticates a client by id and secret (RFC 6749 §2.3.1), throttled per address.
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        secret: &ClientSecret,
    ) -> Result<Client, Failure> {
        self.not_throttled(client_id).await?;
        let app = match AppId::parse(client_id) {
            Some(id) => self.state.ops.store.app(&id).await?,
            None => None,
        };
        let Some(app) = app else {
            throttle::client_failed(self.state, self.origin, None, "unknown client_id").await;
            return Err(ClientRefusal::UnknownClient.into());
        };
        self.check_secret(app, secret, "wrong client_secret").await
    }

    /// `grant_type=client_credentials`: an app token (wire protocol §7). It lasts as long as
    /// the secret it was asked for with (for ever, unless it is rotated), and speaks Graph only.
    pub async fn client_credentials(&self, client: &Client) -> Result<Issued, Failure> {
        let token = generate_app_token(&client.app.id, &*self.state.ops.entropy);
        let new = NewToken {
            hash: TokenHash::of_token(&token),
            kind: TokenKind::App,
            flavour: Flavour::InstagramLogin,
            app_id: client.app.id.clone(),
            user_id: None,
            scopes: ScopeSet::default(),
            issued_at: self.now(&client.app),
            expires_at: client.secret_until,
        };
        let record = self.state.ops.store.create_token(&new).await?;
        tracing::info!(app_id = %record.app_id, token_id = record.id, kind = "app", "token issued");
        self.issued(AuditKind::TokenIssued, &record, "client_credentials")
            .await;
        Ok(Issued {
            token,
            refresh: None,
            record,
        })
    }

    /// `grant_type=authorization_code` (wire protocol §2, RFC 6749 §4.1.3, RFC 7636 §4.6).
    ///
    /// The randomness of the tokens is drawn here; the store redeems the code in one
    /// transaction, where the domain judges the claim and formats the token in the code's
    /// flavour: every refusal burns the code, and a second redemption revokes what the first
    /// issued.
    pub async fn redeem_code(
        &self,
        client: &App,
        code: &AuthCode,
        redirect_uri: &str,
        code_verifier: Option<&str>,
    ) -> Result<Issued, Failure> {
        if find_redirect(&client.redirect_uris, redirect_uri).is_none() {
            return Err(Failure::RedirectNotRegistered);
        }
        let hash = TokenHash::of_code(code);
        self.redeem(
            client,
            &hash,
            redirect_uri,
            code_verifier,
            "authorization_code",
        )
        .await
    }

    /// Redeems the code stored under `hash`: an authorization code's, or the one a device
    /// authorization's approval stored under the device code's hash.
    async fn redeem(
        &self,
        client: &App,
        hash: &TokenHash,
        redirect_uri: &str,
        code_verifier: Option<&str>,
        grant: &str,
    ) -> Result<Issued, Failure> {
        let entropy = &*self.state.ops.entropy;
        let order = self.mint_order();
        let claim = CodeClaim {
            app_id: client.id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            code_verifier: code_verifier.map(str::to_owned),
            now: self.now(client),
            material: TokenMaterial::draw(entropy, order),
            refresh: client
                .refresh_tokens
                .then(|| generate_refresh_token(entropy, order)),
        };
        let redeemed = self.state.ops.store.redeem_code(hash, &claim).await?;
        let (record, token, refresh) = match redeemed {
            Redemption::Issued {
                record,
                token,
                refresh,
            } => (record, token, refresh),
            Redemption::NotFound => return Err(Failure::Code(CodeRefusal::NotFound)),
            Redemption::Refused(refusal) => return Err(Failure::Code(refusal)),
            Redemption::Replayed { revoked } => {
                tracing::warn!(app_id = %client.id, revoked, "authorization code replayed; revoked the tokens issued from it");
                let entry = Entry::default().app(&client.id);
                self.state
                    .ops
                    .audit(
                        self.origin,
                        AuditKind::CodeReplay,
                        Outcome::Refused,
                        entry.clone().detail(format!("{revoked} tokens revoked")),
                    )
                    .await;
                self.revoked(RevokeReason::CodeReplay, revoked, entry).await;
                return Err(Failure::CodeReplayed);
            }
        };
        tracing::info!(app_id = %client.id, token_id = record.id, kind = record.kind.as_str(), "token issued");
        self.issued(AuditKind::TokenIssued, &record, grant).await;
        Ok(Issued {
            token,
            refresh,
            record,
        })
    }

    /// RFC 8628 §3.1–3.2: a pair of codes for a device of an app that turned the device flow
    /// on, for `scopes` (already checked against the app).
    pub async fn device_codes(
        &self,
        client: &App,
        scopes: ScopeSet,
    ) -> Result<DeviceCodes, Failure> {
        let ops = &self.state.ops;
        let now = self.now(client);
        // A user code's hash may be taken (one chance in 2³⁴ per live code): draw again.
        for _ in 0..3 {
            let device_code = device::generate_device_code(&*ops.entropy);
            let user_code = device::generate_user_code(&*ops.entropy);
            let auth = NewDeviceAuthorization {
                device_hash: TokenHash::of_code(&device_code),
                user_code_hash: user_code_hash(&user_code),
                app_id: client.id.clone(),
                scopes: scopes.clone(),
                interval: device::INTERVAL_SECS,
                created_at: now,
                expires_at: now + device::LIFETIME_SECS,
            };
            match ops.store.create_device_authorization(&auth).await {
                Ok(()) => {
                    tracing::info!(app_id = %client.id, "device codes issued");
                    return Ok(DeviceCodes {
                        device_code,
                        user_code: device::display_user_code(&user_code),
                        expires_in: device::LIFETIME_SECS,
                        interval: device::INTERVAL_SECS,
                    });
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Backend("no free user code after three draws".into()).into())
    }

    /// `grant_type=urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4–3.5): the
    /// tokens once the user approved; until then the poll's answer. An unknown device code,
    /// or another app's, is refused as an unknown code is.
    pub async fn device_token(
        &self,
        client: &App,
        device_code: &str,
    ) -> Result<Result<Issued, device::Poll>, Failure> {
        let unknown = Failure::Code(CodeRefusal::NotFound);
        let Some(hash) = hash_if_plausible(device_code) else {
            return Err(unknown);
        };
        let now = self.now(client);
        let poll = self
            .state
            .ops
            .store
            .poll_device(&hash, &client.id, now)
            .await?;
        match poll {
            None => Err(unknown),
            Some(device::Poll::Approved) => self
                .redeem(client, &hash, device::GRANT_TYPE, None, device::GRANT_TYPE)
                .await
                .map(Ok),
            Some(other) => Ok(Err(other)),
        }
    }

    /// `grant_type=refresh_token` (RFC 6749 §6), for apps that opted in. Every use rotates the
    /// refresh token. A rotated one presented again within the grace window gets a fresh pair
    /// (parallel refreshes); after it, the whole grant is revoked (reuse means it leaked).
    pub async fn rotate(&self, client: &App, refresh_token: &str) -> Result<Issued, Failure> {
        let store = &self.state.ops.store;
        let now = self.now(client);
        let Some(hash) = hash_if_plausible(refresh_token) else {
            return Err(Failure::InvalidRefreshToken);
        };
        let old = store
            .token(&hash)
            .await?
            .filter(|t| t.kind == TokenKind::Refresh && t.app_id == client.id)
            .filter(|t| check_usable(state_of(t), now).is_ok())
            .ok_or(Failure::InvalidRefreshToken)?;
        let (Some(scoped), Some(user)) = (old.scoped_id.as_ref(), old.user_id) else {
            return Err(Failure::InvalidRefreshToken);
        };
        let (token, access) = self.mint(
            now,
            old.flavour,
            TokenKind::ShortLived,
            (&client.id, user, &old.scopes),
            scoped,
        );
        let (refresh, refresh_new) = self.mint_refresh(&access);
        let how = Derivation::Rotate {
            now,
            reusable_since: now - self.state.config.refresh_reuse_grace_secs,
        };
        let Some(mut issued) = store
            .derive_tokens(&hash, how, &[access, refresh_new])
            .await?
        else {
            let revoked = store
                .revoke_tokens(Revoke::Family(hash), RevokeReason::Revoked, now)
                .await?;
            tracing::warn!(app_id = %client.id, token_id = old.id, revoked, "refresh token reused; revoked every token of the grant");
            let entry = Entry::default()
                .app(&client.id)
                .user(old.user_id)
                .token(old.id)
                .detail("refresh token reused: ");
            self.revoked(RevokeReason::Revoked, revoked, entry).await;
            return Err(Failure::RefreshTokenReused);
        };
        let record = issued.swap_remove(0);
        tracing::info!(app_id = %client.id, token_id = record.id, parent_id = old.id, "token refreshed (refresh_token grant)");
        self.issued(
            AuditKind::TokenRefreshed,
            &record,
            format!("refresh_token grant, from token {}", old.id),
        )
        .await;
        Ok(Issued {
            token,
            refresh: Some(refresh),
            record,
        })
    }

    /// The record of a presented token, whatever its state.
    async fn presented(
        &self,
        token: &AccessToken,
    ) -> Result<(TokenHash, Arc<TokenRecord>), Failure> {
        let hash = hash_if_plausible(token.expose()).ok_or(TokenRefusal::Invalid)?;
        let record = self
            .state
            .ops
            .store
            .token(&hash)
            .await?
            .ok_or(TokenRefusal::Invalid)?;
        Ok((hash, record))
    }

    /// `grant_type=ig_exchange_token` (wire protocol §3): a short-lived token for a 60-day one,
    /// once, with the app's secret.
    pub async fn exchange(
        &self,
        token: &AccessToken,
        secret: &ClientSecret,
    ) -> Result<Issued, Failure> {
        let (hash, parent) = self.presented(token).await?;
        let app = self
            .state
            .ops
            .store
            .app(&parent.app_id)
            .await?
            .ok_or(TokenRefusal::Invalid)?;
        self.not_throttled(app.id.as_str()).await?;
        let now = self.now(&app);
        self.check_secret(app, secret, "wrong client_secret on ig_exchange_token")
            .await?;
        check_exchange(&lifecycle_facts(&parent), now)?;
        // Another request exchanged (or revoked) it between our read and our write.
        self.derive(now, &hash, &parent, Derivation::Exchange { now })
            .await?
            .ok_or(Failure::Token(TokenRefusal::AlreadyExchanged))
    }

    /// `grant_type=ig_refresh_token` (wire protocol §3): a new 60-day token for one at least
    /// 24 hours old. The refreshed token stays valid for [`REFRESH_GRACE_SECS`], then lapses.
    pub async fn refresh(&self, token: &AccessToken) -> Result<Issued, Failure> {
        let (hash, parent) = self.presented(token).await?;
        let (_, now) = self.now_of(&parent.app_id).await?;
        check_refresh(&lifecycle_facts(&parent), now)?;
        let how = Derivation::Refresh {
            now,
            parent_expires_at: now + REFRESH_GRACE_SECS,
        };
        self.derive(now, &hash, &parent, how)
            .await?
            .ok_or(Failure::Token(TokenRefusal::Invalid))
    }

    /// A long-lived token derived from `parent` as `how` says; `None` when the store refused
    /// the derivation (a race lost).
    async fn derive(
        &self,
        now: UnixTime,
        hash: &TokenHash,
        parent: &TokenRecord,
        how: Derivation,
    ) -> Result<Option<Issued>, Failure> {
        let (Some(scoped), Some(user)) = (parent.scoped_id.as_ref(), parent.user_id) else {
            return Err(TokenRefusal::Invalid.into());
        };
        let (token, new) = self.mint(
            now,
            parent.flavour,
            TokenKind::LongLived,
            (&parent.app_id, user, &parent.scopes),
            scoped,
        );
        let Some(record) = self
            .state
            .ops
            .store
            .derive_tokens(hash, how, std::slice::from_ref(&new))
            .await?
            .and_then(|mut v| v.pop())
        else {
            return Ok(None);
        };
        let (kind, detail) = match how {
            Derivation::Exchange { .. } => (AuditKind::TokenExchanged, "long-lived"),
            _ => (AuditKind::TokenRefreshed, "ig_refresh_token"),
        };
        tracing::info!(app_id = %parent.app_id, token_id = record.id, parent_id = parent.id, "{detail} token issued");
        self.issued(kind, &record, format!("{detail}, from token {}", parent.id))
            .await;
        Ok(Some(Issued {
            token,
            refresh: None,
            record,
        }))
    }

    /// The credential of a resource call, usable now. Expiry and revocation are checked on
    /// every call, whether the store answered from its cache or not. `APP_ID|APP_SECRET` is an
    /// app token that was never stored (wire protocol §7), valid while the secret is.
    pub async fn authenticate_token(&self, token: Option<&AccessToken>) -> Result<Bearer, Failure> {
        let token = token.ok_or(TokenRefusal::Missing)?;
        let hash = hash_if_plausible(token.expose()).ok_or(TokenRefusal::Invalid)?;
        if let Some(found) = self.state.ops.store.caller(&hash).await? {
            let now = self.state.ops.time_for(found.app);
            check_usable(state_of(&found.token), now)?;
            return Ok(Bearer {
                credential: Credential::Token(found.token),
                user: found.user,
                app: found.app,
                now,
            });
        }
        let app = self
            .app_credentials(token.expose())
            .await?
            .ok_or(TokenRefusal::Invalid)?;
        Ok(Bearer {
            now: self.now(&app),
            app: AppFacts::of(&app),
            credential: Credential::AppSecret(app.id),
            user: None,
        })
    }

    /// The app whose right `APP_ID|APP_SECRET` `raw` is, if it is one.
    async fn app_credentials(&self, raw: &str) -> Result<Option<App>, Failure> {
        let Some((app_id, secret)) = split_app_credentials(raw) else {
            return Ok(None);
        };
        let Some(app) = self.state.ops.store.app(&app_id).await? else {
            return Ok(None);
        };
        if self.not_throttled(app.id.as_str()).await.is_err() {
            return Ok(None);
        }
        Ok(self
            .check_secret(app, &secret, "wrong secret in APP_ID|APP_SECRET")
            .await
            .ok()
            .map(|client| client.app))
    }

    /// RFC 7662: the client's own token, if it is active now; anything else is inactive.
    pub async fn introspect(
        &self,
        client: &App,
        token: &str,
    ) -> Result<Option<Arc<TokenRecord>>, Failure> {
        let Some(hash) = hash_if_plausible(token) else {
            return Ok(None);
        };
        let now = self.now(client);
        Ok(self
            .state
            .ops
            .store
            .token(&hash)
            .await?
            .filter(|t| t.app_id == client.id && check_usable(state_of(t), now).is_ok()))
    }

    /// RFC 7009: revokes one of the client's tokens. An unknown or malformed token is not an
    /// error (§2.2); another client's is.
    pub async fn revoke(&self, client: &App, token: &str) -> Result<(), Failure> {
        let Some(hash) = hash_if_plausible(token) else {
            return Ok(());
        };
        let store = &self.state.ops.store;
        let Some(t) = store.token(&hash).await? else {
            return Ok(());
        };
        if t.app_id != client.id {
            return Err(Failure::OtherClientsToken);
        }
        let n = store
            .revoke_tokens(Revoke::Token(hash), RevokeReason::Revoked, self.now(client))
            .await?;
        tracing::info!(app_id = %client.id, token_id = t.id, reason = "revoked", "token revoked");
        let entry = Entry::default()
            .app(&client.id)
            .user(t.user_id)
            .token(t.id)
            .detail("RFC 7009 revocation by the client: ");
        self.revoked(RevokeReason::Revoked, n, entry).await;
        Ok(())
    }
}
