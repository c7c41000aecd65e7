//! Operations shared by the CLI and the admin HTTP API, so both do exactly the same thing:
//! validate with the domain, generate ids and secrets, hash, store.

use std::sync::Arc;

use gramkey_domain::UserId;
use gramkey_domain::app::{AppError, validate_app_name, validate_app_scopes};
use gramkey_domain::callback::{CallbackKind, CallbackState, validate_callback_url};
use gramkey_domain::error::RevokeReason;
use gramkey_domain::password::{PasswordError, hash_password};
use gramkey_domain::retention::Retention;
use gramkey_domain::user::{Username, UsernameError};
use gramkey_domain::{
    AppId, AppMode, ClientSecret, Clock, Entropy, Password, RedirectUri, Role, SecretHasher,
};
use gramkey_store::{
    App, Callback, NewUser, Profile, Purged, Removal, Revoke, Store, StoreError, User,
};
use serde_json::{Value, json};

use crate::audit::{AuditFilter, Entry};
use crate::origin::Origin;
use gramkey_domain::audit::{AuditKind, Outcome};

/// Everything an operation needs. Time and randomness are injected here and nowhere else.
#[derive(Clone)]
pub struct Ops {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub hasher: SecretHasher,
}

impl Ops {
    /// `app`'s time: the real time, moved by its test clock while it is in development mode.
    pub fn now_for(&self, app: &App) -> gramkey_domain::UnixTime {
        self.time_for(gramkey_store::AppFacts::of(app))
    }

    /// [`Ops::now_for`] from an app's facts.
    pub fn time_for(&self, app: gramkey_store::AppFacts) -> gramkey_domain::UnixTime {
        gramkey_domain::sandbox::app_time(self.clock.now(), app.mode, app.clock_offset)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}
impl From<AppError> for OpError {
    fn from(e: AppError) -> Self {
        OpError::Invalid(e.to_string())
    }
}
impl From<UsernameError> for OpError {
    fn from(e: UsernameError) -> Self {
        OpError::Invalid(e.to_string())
    }
}
impl From<PasswordError> for OpError {
    fn from(e: PasswordError) -> Self {
        OpError::Invalid(e.to_string())
    }
}

/// What it takes to register an app.
#[derive(Debug, Clone)]
pub struct NewAppInput {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: String,
    pub mode: AppMode,
    /// Opt in to RFC 6749 refresh tokens.
    pub refresh_tokens: bool,
    /// Legacy v1's "Enforce signed requests".
    pub signed_requests: bool,
    /// Opt in to the device authorization grant (RFC 8628).
    pub device_flow: bool,
    pub deauthorize_url: Option<String>,
    pub data_deletion_url: Option<String>,
}

/// Signed requests can be enforced only for an app whose secret the server can derive.
pub fn check_signed_requests(app: &App, on: bool) -> Result<(), OpError> {
    if on && app.secret_seed.is_none() {
        return Err(OpError::Invalid(format!(
            "this app's secret predates derived secrets; rotate it (gramkey app rotate-secret {}) before enforcing signed requests",
            app.id
        )));
    }
    Ok(())
}

/// Checks an optional callback URL; empty means none.
fn callback_url(raw: Option<&str>) -> Result<Option<String>, OpError> {
    match raw.map(str::trim).filter(|u| !u.is_empty()) {
        None => Ok(None),
        Some(u) => Ok(Some(validate_callback_url(u)?)),
    }
}

/// An app's editable settings, checked.
pub struct AppSettings {
    pub name: String,
    pub redirect_uris: Vec<RedirectUri>,
    pub scopes: gramkey_domain::ScopeSet,
    pub deauthorize_url: Option<String>,
    pub data_deletion_url: Option<String>,
}

impl AppSettings {
    /// Checks each setting as given (URIs trimmed; an empty callback URL means none).
    pub fn validate(
        name: &str,
        redirect_uris: &[String],
        scopes: &str,
        deauthorize_url: Option<&str>,
        data_deletion_url: Option<&str>,
    ) -> Result<Self, OpError> {
        let name = validate_app_name(name)?;
        if redirect_uris.is_empty() {
            return Err(AppError::NoRedirectUri.into());
        }
        let mut parsed: Vec<RedirectUri> = Vec::new();
        for u in redirect_uris {
            let uri = RedirectUri::parse(u.trim())?;
            // The same URI twice is one URI.
            if !parsed.contains(&uri) {
                parsed.push(uri);
            }
        }
        if parsed.len() > MAX_REDIRECT_URIS {
            return Err(OpError::Invalid(format!(
                "an app has at most {MAX_REDIRECT_URIS} redirect URIs"
            )));
        }
        let redirect_uris = parsed;
        Ok(Self {
            name,
            redirect_uris,
            scopes: validate_app_scopes(scopes)?,
            deauthorize_url: callback_url(deauthorize_url)?,
            data_deletion_url: callback_url(data_deletion_url)?,
        })
    }
}

/// Redirect URIs one app may register.
pub const MAX_REDIRECT_URIS: usize = 100;

/// Rows deleted per statement by the janitor run flat out (`gramkey janitor`): small enough
/// that a purge never holds the database for more than a moment.
pub const JANITOR_BATCH: u32 = 1000;

/// Rows deleted per statement by the node's own, paced janitor: a batch takes the writer
/// thread, and on a busy core the requests' share of it, for well under a millisecond
/// (BENCHMARKS.md, the janitor).
pub const JANITOR_PACED_BATCH: u32 = 100;

/// The node's janitor deletes for at most one part in this many of its time
/// ([`Ops::purge_expired`]) during a pass's first [`JANITOR_GENTLE_FOR`]. Its work shares the
/// node's cores with the requests, and a tail latency grows with how busy a core is: a tenth
/// added half to `GET /me`'s p99 at half load, whatever the batch size (BENCHMARKS.md, the
/// janitor). A fiftieth purges some hundreds of rows a second on a small machine.
pub const JANITOR_SHARE: u32 = 50;

/// The share of a pass that has lasted past [`JANITOR_GENTLE_FOR`]: a backlog that a fiftieth
/// does not clear (after a long stop, or on a node issuing faster than that purges) is worked
/// off at a tenth, so the janitor keeps up with what a node can issue.
pub const JANITOR_BACKLOG_SHARE: u32 = 10;

// A backlog is worked harder than a pass's start, and each waits between its batches.
const _: () = assert!(JANITOR_SHARE > JANITOR_BACKLOG_SHARE && JANITOR_BACKLOG_SHARE > 1);

/// How long a pass goes at [`JANITOR_SHARE`] before [`JANITOR_BACKLOG_SHARE`].
pub const JANITOR_GENTLE_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// The share of its time the node's janitor works, `into` its pass.
fn janitor_share(into: std::time::Duration) -> u32 {
    if into < JANITOR_GENTLE_FOR {
        JANITOR_SHARE
    } else {
        JANITOR_BACKLOG_SHARE
    }
}

/// Between two janitor batches, the first of which began at `began`, in a pass that began at
/// `pass`: `paced`, waits until that batch's time is the pass's share ([`janitor_share`]) of
/// the time since it began; otherwise only lets other work in.
async fn between_batches(began: std::time::Instant, pass: std::time::Instant, paced: bool) {
    if paced {
        let share = janitor_share(pass.elapsed());
        tokio::time::sleep(began.elapsed() * (share - 1)).await;
    } else {
        tokio::task::yield_now().await;
    }
}

/// Newest callbacks listed by [`Ops::callbacks`] when no limit is given.
pub const CALLBACK_LIST_LIMIT: u32 = 100;

impl Ops {
    /// Registers an app. The secret is returned once and stored only as a keyed hash.
    pub async fn create_app(
        &self,
        origin: &Origin,
        input: NewAppInput,
    ) -> Result<(App, ClientSecret), OpError> {
        let id = AppId::generate(&*self.entropy);
        let mut seed = [0u8; 32];
        self.entropy.fill(&mut seed);
        let detail = format!("mode {}", input.mode.as_str());
        self.insert_app(origin, id, &seed, input, detail).await
    }

    /// Stores the app `id` whose secret derives from `seed`, and audits its creation with
    /// `detail`. Answers the app and its secret.
    pub(crate) async fn insert_app(
        &self,
        origin: &Origin,
        id: AppId,
        seed: &[u8],
        input: NewAppInput,
        detail: String,
    ) -> Result<(App, ClientSecret), OpError> {
        let settings = AppSettings::validate(
            &input.name,
            &input.redirect_uris,
            &input.scopes,
            input.deauthorize_url.as_deref(),
            input.data_deletion_url.as_deref(),
        )?;
        let secret = self.hasher.derive_client_secret(&id, seed);
        let app = App {
            secret_hash: self.hasher.hash_client_secret(&secret).to_vec(),
            id,
            name: settings.name,
            redirect_uris: settings.redirect_uris,
            scopes: settings.scopes,
            mode: input.mode,
            created_at: self.clock.now(),
            previous_secret: None,
            refresh_tokens: input.refresh_tokens,
            signed_requests: input.signed_requests,
            clock_offset: 0,
            fault_rules: 0,
            device_flow: input.device_flow,
            secret_seed: Some(seed.to_vec()),
            deauthorize_url: settings.deauthorize_url,
            data_deletion_url: settings.data_deletion_url,
        };
        self.store.create_app(&app).await?;
        self.audit(
            origin,
            AuditKind::AppCreated,
            Outcome::Success,
            Entry::default().app(&app.id).detail(detail),
        )
        .await;
        Ok((app, secret))
    }

    /// A fresh client secret for `app`: 32 hex characters (128 bits), the shape Meta issues,
    /// derived from a random seed (see `gramkey_domain::hashing` for why).
    fn new_secret(&self, app: &AppId) -> (ClientSecret, [u8; 32]) {
        let mut seed = [0u8; 32];
        self.entropy.fill(&mut seed);
        (self.hasher.derive_client_secret(app, &seed), seed)
    }

    /// The app's current client secret, to sign callbacks with; `None` for an app created
    /// before secrets were derived, until its secret is rotated.
    pub fn app_secret(&self, app: &App) -> Option<ClientSecret> {
        let seed = app.secret_seed.as_deref()?;
        let secret = self.hasher.derive_client_secret(&app.id, seed);
        // A seed that does not give the stored secret means the master key changed.
        self.hasher
            .verify_client_secret(&secret, &app.secret_hash)
            .then_some(secret)
    }

    /// Changes an app's callback URLs: `None` keeps one as it is, an empty string clears it.
    pub async fn set_app_callbacks(
        &self,
        origin: &Origin,
        id: &str,
        deauthorize_url: Option<&str>,
        data_deletion_url: Option<&str>,
    ) -> Result<App, OpError> {
        let mut app = self.app(id).await?;
        if let Some(u) = deauthorize_url {
            app.deauthorize_url = callback_url(Some(u))?;
        }
        if let Some(u) = data_deletion_url {
            app.data_deletion_url = callback_url(Some(u))?;
        }
        if !self.store.update_app(&app).await? {
            return Err(OpError::NotFound(format!("no app with id {id}")));
        }
        self.audit(
            origin,
            AuditKind::AppChanged,
            Outcome::Success,
            Entry::default().app(&app.id).detail("callback URLs"),
        )
        .await;
        Ok(app)
    }

    /// Turns legacy v1's "Enforce signed requests" on or off. Checking a `sig` needs the
    /// client secret, which only apps whose secret is derived from a seed can give.
    pub async fn set_signed_requests(
        &self,
        origin: &Origin,
        id: &str,
        on: bool,
    ) -> Result<App, OpError> {
        self.switch(origin, id, "signed requests", on, |app| {
            check_signed_requests(app, on)?;
            app.signed_requests = on;
            Ok(())
        })
        .await
    }

    /// Turns the device authorization grant (RFC 8628) on or off for an app. Turning it off
    /// leaves pending device codes to expire: their polls are refused as the grant is.
    pub async fn set_device_flow(
        &self,
        origin: &Origin,
        id: &str,
        on: bool,
    ) -> Result<App, OpError> {
        self.switch(origin, id, "device flow", on, |app| {
            app.device_flow = on;
            Ok(())
        })
        .await
    }

    /// Turns one of an app's settings on or off (`set` checks and changes it), and audits it.
    async fn switch(
        &self,
        origin: &Origin,
        id: &str,
        setting: &str,
        on: bool,
        set: impl FnOnce(&mut App) -> Result<(), OpError>,
    ) -> Result<App, OpError> {
        let mut app = self.app(id).await?;
        set(&mut app)?;
        if !self.store.update_app(&app).await? {
            return Err(OpError::NotFound(format!("no app with id {id}")));
        }
        let state = if on { "on" } else { "off" };
        self.audit(
            origin,
            AuditKind::AppChanged,
            Outcome::Success,
            Entry::default()
                .app(&app.id)
                .detail(format!("{setting} {state}")),
        )
        .await;
        Ok(app)
    }

    pub async fn app(&self, id: &str) -> Result<App, OpError> {
        let id =
            AppId::parse(id).ok_or_else(|| OpError::NotFound(format!("no app with id {id:?}")))?;
        self.store
            .app(&id)
            .await?
            .ok_or_else(|| OpError::NotFound(format!("no app with id {id}")))
    }

    /// Replaces an app's secret. The old one stops working at once, or after `grace_secs`.
    pub async fn rotate_secret(
        &self,
        origin: &Origin,
        id: &str,
        grace_secs: Option<i64>,
    ) -> Result<ClientSecret, OpError> {
        let app = self.app(id).await?;
        if grace_secs.is_some_and(|g| g <= 0 || g > 30 * 24 * 3600) {
            return Err(OpError::Invalid(
                "the grace period must be between 1 second and 30 days".into(),
            ));
        }
        let (secret, seed) = self.new_secret(&app.id);
        let keep_old_until = grace_secs.map(|g| self.clock.now() + g);
        let hash = self.hasher.hash_client_secret(&secret);
        if !self
            .store
            .set_app_secret(&app.id, &hash, &seed, keep_old_until, self.clock.now())
            .await?
        {
            return Err(OpError::NotFound(format!("no app with id {id}")));
        }
        let detail = match grace_secs {
            Some(g) => format!("the old secret works for {g} more seconds"),
            None => "the old secret stopped working".to_owned(),
        };
        self.audit(
            origin,
            AuditKind::SecretRotated,
            Outcome::Success,
            Entry::default().app(&app.id).detail(detail),
        )
        .await;
        Ok(secret)
    }

    /// Until when `presented` authenticates the app: for ever if it is the current secret, to
    /// the grace's end if it is the previous one; `None` if it is neither.
    pub fn client_secret_valid_until(
        &self,
        app: &App,
        presented: &ClientSecret,
    ) -> Option<gramkey_domain::UnixTime> {
        let previous = app
            .previous_secret
            .as_ref()
            .map(|(h, until)| (&h[..], *until));
        self.hasher
            .verify_client_secret_at(presented, &app.secret_hash, previous, self.clock.now())
    }

    /// Deletes an app with everything issued to it.
    pub async fn delete_app(&self, origin: &Origin, id: &str) -> Result<(), OpError> {
        let app = self.app(id).await?;
        self.store.delete_app(&app.id).await?;
        self.audit(
            origin,
            AuditKind::AppDeleted,
            Outcome::Success,
            Entry::default().app(&app.id),
        )
        .await;
        Ok(())
    }

    pub async fn set_role(
        &self,
        origin: &Origin,
        app_id: &str,
        username: &str,
        role: Role,
    ) -> Result<(), OpError> {
        let app = self.app(app_id).await?;
        let user = self.user(username).await?;
        self.store
            .set_role(&app.id, user.id, role, self.clock.now())
            .await?;
        self.audit(
            origin,
            AuditKind::AppChanged,
            Outcome::Success,
            Entry::default()
                .app(&app.id)
                .user(Some(user.id))
                .detail(format!("role {}", role.as_str())),
        )
        .await;
        Ok(())
    }

    pub async fn user(&self, username: &str) -> Result<User, OpError> {
        let name = Username::parse(username)?;
        self.store
            .user_by_name(name.as_str())
            .await?
            .ok_or_else(|| OpError::NotFound(format!("no user named {name}")))
    }

    /// Creates a user. Argon2id runs on a blocking thread: it takes tens of milliseconds.
    pub async fn create_user(
        &self,
        username: &str,
        password: Password,
        profile: Profile,
    ) -> Result<User, OpError> {
        let username = Username::parse(username)?;
        let entropy = self.entropy.clone();
        let password_hash =
            tokio::task::spawn_blocking(move || hash_password(&password, &*entropy))
                .await
                .map_err(|e| OpError::Invalid(format!("password hashing failed: {e}")))??;
        let new = NewUser {
            username: username.to_string(),
            password_hash,
            profile,
        };
        match self.store.create_user(&new, self.clock.now()).await {
            Err(StoreError::Conflict(_)) => Err(OpError::Conflict(format!(
                "the username {username} is taken"
            ))),
            other => Ok(other?),
        }
    }

    /// Changes a user's password and revokes every token they hold, in every app: clients then
    /// see code 190 with subcode 460, as on Instagram.
    pub async fn change_password(
        &self,
        origin: &Origin,
        username: &str,
        password: Password,
    ) -> Result<u64, OpError> {
        let user = self.user(username).await?;
        let entropy = self.entropy.clone();
        let hash = tokio::task::spawn_blocking(move || hash_password(&password, &*entropy))
            .await
            .map_err(|e| OpError::Invalid(format!("password hashing failed: {e}")))??;
        self.store.set_password(user.id, &hash).await?;
        let n = self
            .store
            .revoke_tokens(
                Revoke::User(user.id),
                RevokeReason::PasswordChanged,
                self.clock.now(),
            )
            .await?;
        self.revoked(
            origin,
            RevokeReason::PasswordChanged,
            n,
            Entry::default().user(Some(user.id)),
        )
        .await;
        Ok(n)
    }

    /// Revokes every token issued to an app.
    pub async fn revoke_app_tokens(&self, origin: &Origin, app_id: &str) -> Result<u64, OpError> {
        let app = self.app(app_id).await?;
        let n = self
            .store
            .revoke_tokens(
                Revoke::App(app.id.clone()),
                RevokeReason::Revoked,
                self.clock.now(),
            )
            .await?;
        self.revoked(
            origin,
            RevokeReason::Revoked,
            n,
            Entry::default().app(&app.id),
        )
        .await;
        Ok(n)
    }

    /// The user removes an app: its grant is forgotten and every token it holds for the user is
    /// revoked (190/458 from then on). The app's deauthorize callback is queued, and with
    /// `delete_data` its data-deletion callback too, for each URL the app has configured. All
    /// of it happens in one transaction, and the callbacks only if there was a grant.
    pub async fn remove_app_for_user(
        &self,
        origin: &Origin,
        app: &AppId,
        user: UserId,
        delete_data: bool,
    ) -> Result<Removal, OpError> {
        let mut callbacks = Vec::new();
        if let Some(a) = self.store.app(app).await? {
            if a.deauthorize_url.is_some() {
                callbacks.push(CallbackKind::Deauthorize);
            }
            if delete_data && a.data_deletion_url.is_some() {
                callbacks.push(CallbackKind::DataDeletion);
            }
        }
        let now = self.clock.now();
        let removal = self
            .store
            .remove_grant(app, user, RevokeReason::AppRemoved, now, &callbacks)
            .await?;
        let entry = Entry::default().app(app).user(Some(user));
        if removal.grant {
            let detail = if callbacks.contains(&CallbackKind::DataDeletion) {
                "with a data-deletion request"
            } else {
                "deauthorized"
            };
            self.audit(
                origin,
                AuditKind::ConsentRemoved,
                Outcome::Success,
                entry.clone().detail(detail),
            )
            .await;
        }
        self.revoked(origin, RevokeReason::AppRemoved, removal.tokens, entry)
            .await;
        Ok(removal)
    }

    /// [`Ops::remove_app_for_user`] by username and app id, for the CLI and the admin API.
    pub async fn remove_app_by_name(
        &self,
        origin: &Origin,
        username: &str,
        app_id: &str,
        delete_data: bool,
    ) -> Result<Removal, OpError> {
        let user = self.user(username).await?;
        let app = self.app(app_id).await?;
        let removal = self
            .remove_app_for_user(origin, &app.id, user.id, delete_data)
            .await?;
        if !removal.grant {
            return Err(OpError::NotFound(format!(
                "{} has not authorized app {}",
                user.username, app.id
            )));
        }
        Ok(removal)
    }

    /// Audits a revocation of `n` tokens (none: nothing to audit).
    pub async fn revoked(&self, origin: &Origin, reason: RevokeReason, n: u64, entry: Entry) {
        if n > 0 {
            self.audit(
                origin,
                AuditKind::TokenRevoked,
                Outcome::Success,
                entry.more(&format!("{n} revoked: {}", reason.as_str())),
            )
            .await;
        }
    }

    /// The newest callbacks, of one app or all.
    pub async fn callbacks(
        &self,
        app_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Callback>, OpError> {
        let app = self.app_filter(app_id).await?;
        Ok(self.store.callbacks(app.as_ref(), limit).await?)
    }

    /// A listing's `--app` filter: the app's id, checked to exist; `None` for every app.
    pub(crate) async fn app_filter(&self, app_id: Option<&str>) -> Result<Option<AppId>, OpError> {
        match app_id {
            Some(id) => Ok(Some(self.app(id).await?.id)),
            None => Ok(None),
        }
    }

    /// Queues a failed callback for another round of attempts, starting now.
    pub async fn retry_callback(&self, id: i64) -> Result<(), OpError> {
        if self.store.retry_callback(id, self.clock.now()).await? {
            Ok(())
        } else {
            Err(OpError::NotFound(format!(
                "no failed callback {id} (pending ones are retried on their own; delivered ones are not sent again)"
            )))
        }
    }

    /// One janitor pass: deletes finished codes and tokens past `retention`, a batch at a time,
    /// until none are left. Returns the totals. `paced`, it deletes [`JANITOR_PACED_BATCH`] rows
    /// at a time and works at most a [`JANITOR_SHARE`]th of the time, a
    /// [`JANITOR_BACKLOG_SHARE`]th once the pass has lasted [`JANITOR_GENTLE_FOR`]: after each
    /// batch it waits until the batch's own time is that share of the time since it began, so
    /// a large backlog (a million expired tokens after a restart) is cleared in the background
    /// instead of taking the database's writer, and a core, from the requests.
    pub async fn purge_expired(
        &self,
        retention: Retention,
        paced: bool,
    ) -> Result<Purged, OpError> {
        let cutoffs = retention.cutoffs(self.clock.now());
        let batch = if paced {
            JANITOR_PACED_BATCH
        } else {
            JANITOR_BATCH
        };
        let mut total = Purged::default();
        // Elapsed time, not a point in time: monotonic.
        #[allow(clippy::disallowed_methods)]
        let pass = std::time::Instant::now();
        loop {
            // Elapsed time, not a point in time: monotonic.
            #[allow(clippy::disallowed_methods)]
            let began = std::time::Instant::now();
            let p = self.store.purge(cutoffs, batch).await?;
            total.codes += p.codes;
            total.tokens += p.tokens;
            total.callbacks += p.callbacks;
            total.webhooks += p.webhooks;
            total.audit += p.audit;
            total.usage += p.usage;
            total.removals += p.removals;
            if [
                p.codes,
                p.tokens,
                p.callbacks,
                p.webhooks,
                p.audit,
                p.usage,
                p.removals,
            ]
            .iter()
            .all(|&n| n < u64::from(batch))
            {
                break;
            }
            between_batches(began, pass, paced).await;
        }
        // Apps whose test clock runs ahead: their codes and tokens by their own time.
        for (app, offset) in self.store.clocked_apps().await? {
            let cutoffs = retention.cutoffs(self.clock.now().saturating_add(offset));
            loop {
                #[allow(clippy::disallowed_methods)]
                let began = std::time::Instant::now();
                let p = self.store.purge_app(&app, cutoffs, batch).await?;
                total.codes += p.codes;
                total.tokens += p.tokens;
                if p.codes.max(p.tokens) < u64::from(batch) {
                    break;
                }
                between_batches(began, pass, paced).await;
            }
        }
        Ok(total)
    }

    /// [`Ops::purge_expired`] as the node's janitor runs it: what it purged is logged, and a
    /// failure is logged and left for the next pass.
    pub async fn janitor_pass(&self, retention: Retention) {
        match self.purge_expired(retention, true).await {
            Ok(p) if p.codes + p.tokens + p.callbacks + p.webhooks + p.audit + p.usage > 0 => {
                tracing::info!(
                    codes = p.codes,
                    tokens = p.tokens,
                    callbacks = p.callbacks,
                    webhook_deliveries = p.webhooks,
                    audit = p.audit,
                    usage = p.usage,
                    "janitor purged expired rows"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "janitor pass failed"),
        }
    }
}

/// The public view of an app, as the CLI's `--json` and the admin API show it. Never the secret
/// or its hash.
pub fn app_json(app: &App) -> Value {
    json!({
        "id": app.id.as_str(),
        "name": app.name,
        "redirect_uris": app.redirect_uris.iter().map(RedirectUri::as_str).collect::<Vec<_>>(),
        "scopes": app.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "mode": app.mode.as_str(),
        "refresh_tokens": app.refresh_tokens,
        "signed_requests": app.signed_requests,
        "device_flow": app.device_flow,
        "deauthorize_url": app.deauthorize_url,
        "data_deletion_url": app.data_deletion_url,
        "created_at": app.created_at,
    })
}

/// The public view of a queued callback.
pub fn callback_json(c: &Callback) -> Value {
    json!({
        "id": c.id,
        "app_id": c.app_id.as_str(),
        "kind": c.kind.as_str(),
        "user_id": c.scoped_id.as_str(),
        "state": c.state.as_str(),
        "attempts": c.attempts,
        "created_at": c.created_at,
        "next_attempt_at": (c.state == CallbackState::Pending).then_some(c.next_attempt_at),
        "finished_at": c.finished_at,
        "url": c.url,
        "last_error": c.last_error,
        "confirmation_code": c.confirmation.confirmation_code,
        "status_url": c.confirmation.status_url,
    })
}

/// The public view of a user. Never the password hash.
pub fn user_json(user: &User) -> Value {
    json!({
        "id": user.id.0,
        "username": user.username,
        "name": user.profile.full_name,
        "account_type": user.profile.account_type,
        "created_at": user.created_at,
    })
}

impl Ops {
    /// Appends an event. The action it records has already happened, so a failure to append
    /// is logged as an error, not returned.
    pub async fn audit(&self, origin: &Origin, kind: AuditKind, outcome: Outcome, entry: Entry) {
        let event = entry.event(origin, kind, outcome, self.clock.now());
        if let Err(e) = self.store.append_audit(&event).await {
            tracing::error!(error = %e, event = kind.as_str(), "AUDIT EVENT LOST: appending it failed");
        }
    }
}

impl Ops {
    /// The newest audit events matching `filter` (at most 1,000; 100 by default).
    pub async fn audit_log(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<gramkey_store::AuditEvent>, OpError> {
        let app = match &filter.app {
            Some(a) => Some(
                AppId::parse(a)
                    .ok_or_else(|| OpError::Invalid(format!("{a:?} is not an app id")))?,
            ),
            None => None,
        };
        let user = match &filter.user {
            Some(name) => Some(self.user(name).await?.id),
            None => None,
        };
        let kind = match &filter.event {
            Some(e) => Some(AuditKind::parse(e).ok_or_else(|| {
                OpError::Invalid(format!(
                    "unknown event {e:?}; events are {}",
                    AuditKind::ALL.map(AuditKind::as_str).join(", ")
                ))
            })?),
            None => None,
        };
        Ok(self
            .store
            .audit(&gramkey_store::AuditQuery {
                app,
                user,
                kind,
                since: filter.since,
                before_id: filter.before_id,
                limit: filter.limit.unwrap_or(100).clamp(1, 1000),
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gramkey_domain::entropy::SeededEntropy;
    use gramkey_domain::time::ManualClock;
    use gramkey_domain::{Flavour, ScopeSet, TokenHash, TokenKind};
    use gramkey_store::NewToken;
    use std::time::Duration;

    /// 2,500 app tokens expired long ago: two full batches and a part.
    async fn ops_with_expired_tokens() -> (Ops, tempfile::TempDir) {
        const NOW: i64 = 1_800_000_000;
        let (store, dir) = gramkey_store::test_support::fresh_sqlite().unwrap();
        let ops = Ops {
            store: store.clone(),
            clock: Arc::new(ManualClock::new(NOW)),
            entropy: Arc::new(SeededEntropy::new(7)),
            hasher: SecretHasher::new(&[7; 32]),
        };
        let (app, _) = ops
            .create_app(
                &Origin::LOCAL,
                NewAppInput {
                    name: "janitor".into(),
                    redirect_uris: vec!["https://j.example/cb".into()],
                    scopes: "user_profile".into(),
                    mode: AppMode::Live,
                    refresh_tokens: false,
                    signed_requests: false,
                    device_flow: false,
                    deauthorize_url: None,
                    data_deletion_url: None,
                },
            )
            .await
            .unwrap();
        let mut inserts = tokio::task::JoinSet::new();
        for n in 0..2_500u32 {
            let (store, app_id) = (store.clone(), app.id.clone());
            let mut hash = [0; 32];
            hash[..4].copy_from_slice(&n.to_be_bytes());
            inserts.spawn(async move {
                store
                    .create_token(&NewToken {
                        hash: TokenHash(hash),
                        kind: TokenKind::App,
                        flavour: Flavour::BasicDisplay,
                        app_id,
                        user_id: None,
                        scopes: ScopeSet::default(),
                        issued_at: NOW - 41 * 86_400,
                        expires_at: NOW - 40 * 86_400,
                    })
                    .await
            });
        }
        while let Some(done) = inserts.join_next().await {
            done.unwrap().unwrap();
        }
        (ops, dir)
    }

    #[test]
    fn a_pass_is_gentle_at_first_and_firm_with_a_backlog() {
        assert_eq!(janitor_share(Duration::ZERO), JANITOR_SHARE);
        assert_eq!(
            janitor_share(JANITOR_GENTLE_FOR - Duration::from_millis(1)),
            JANITOR_SHARE
        );
        assert_eq!(janitor_share(JANITOR_GENTLE_FOR), JANITOR_BACKLOG_SHARE);
        assert_eq!(
            janitor_share(JANITOR_GENTLE_FOR * 100),
            JANITOR_BACKLOG_SHARE
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_janitor_paces_itself_and_a_purge_asked_for_does_not() {
        let (ops, _dir) = ops_with_expired_tokens().await;
        let started = tokio::time::Instant::now();
        let purged = ops
            .purge_expired(Retention::default(), false)
            .await
            .unwrap();
        assert_eq!(purged.tokens, 2_500);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no waits between batches"
        );

        let (ops, _dir) = ops_with_expired_tokens().await;
        let started = tokio::time::Instant::now();
        let purged = ops.purge_expired(Retention::default(), true).await.unwrap();
        assert_eq!(purged.tokens, 2_500, "paced, it still purges everything");
        assert!(
            started.elapsed() > Duration::ZERO,
            "it waited after each full batch"
        );
    }
}
