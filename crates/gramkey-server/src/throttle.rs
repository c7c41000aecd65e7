//! Throttling of sign-ins and failed client authentications, over 15 minutes (limits in
//! [`gramkey_domain::ratelimit::Limits`]).
//!
//! - **Sign-ins** are limited per account and per address. Each attempt is counted *before* the
//!   password is checked, atomically with the check of the limit, so parallel guesses cannot
//!   all slip through; a right password takes its attempt back and clears the account's count.
//!   Over a limit, even a right password is refused until the oldest attempt is 15 minutes old:
//!   the lockout ends on its own (the page says how long), or at once through
//!   `POST /admin/users/{username}/unlock`.
//! - **Client authentications** are limited per address only: client ids are public, so a
//!   per-client lockout would let anyone lock an app out of its token endpoint. Failures are
//!   also counted per client, for alerts.
//!
//! - **Admin keys** (the admin API's bearer key, the console's key form) are limited per
//!   address only, with the sign-in limit: a wrong key counts against the address it came
//!   from, so nobody can lock out the right key presented from an address that has not failed.
//!
//! Addresses are counted whole for IPv4 and by /64 for IPv6 (what one subscriber gets).

use std::net::IpAddr;

use gramkey_domain::alert::AlertKind;
use gramkey_domain::audit::{AuditKind, Outcome};
use gramkey_domain::{AppId, UserId};
use serde_json::json;

use crate::audit::Entry;
use crate::limits::AttemptRefused;
use crate::origin::Origin;
use crate::state::AppState;

/// The address an origin's attempts are counted under.
fn address(origin: &Origin) -> Option<String> {
    origin.ip.map(address_of)
}

/// How an address is counted: whole for IPv4, by /64 for IPv6.
pub fn address_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The keys of an address's sign-in, client-authentication and admin-key counts.
pub fn address_keys(address: &str) -> [String; 3] {
    [
        format!("gk:login:ip:{address}"),
        format!("gk:client:ip:{address}"),
        format!("gk:admin:ip:{address}"),
    ]
}

/// Which limit refused a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    Account,
    Address,
}

/// Why an attempt may not go on now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// A limit is full: wait this many seconds.
    Locked(i64, Locked),
    /// The shared limiter cannot be asked and fails closed. Nothing failed and nothing is
    /// audited: the caller answers "temporarily unavailable".
    Unavailable,
}

/// The account's key: the name as typed, lower-cased and cut to Instagram's 30 characters, so
/// unknown names are throttled like known ones.
pub fn account_key(username: &str) -> String {
    let name: String = username.trim().to_lowercase().chars().take(30).collect();
    format!("gk:login:account:{name}")
}

fn login_keys(state: &AppState, origin: &Origin, username: &str) -> Vec<(String, u64)> {
    let l = &state.limiter.limits;
    let mut keys = vec![(account_key(username), l.login_failures_per_account)];
    if let Some(a) = address(origin) {
        let [login, ..] = address_keys(&a);
        keys.push((login, l.login_failures_per_ip));
    }
    keys
}

fn client_ip_key(state: &AppState, origin: &Origin) -> Option<(String, u64)> {
    address(origin).map(|a| {
        let [_, client, _] = address_keys(&a);
        (client, state.limiter.limits.client_auth_failures_per_ip)
    })
}

/// A refusal by a throttle: counted, and audited at most once a minute per subject. Its
/// caller answers with `Retry-After` ([`crate::observe::LimitHeaders::wait`]).
async fn refused(
    state: &AppState,
    origin: &Origin,
    kind: AuditKind,
    subject: &str,
    entry: Entry,
    wait: i64,
) {
    state.metrics.throttled_attempt(match kind {
        AuditKind::LoginFailed => "login",
        _ => "client_auth",
    });
    if state.first_refusal_this_minute(subject) {
        state
            .ops
            .audit(
                origin,
                kind,
                Outcome::Refused,
                entry.detail(format!(
                    "throttled: too many attempts; retry after {wait} s"
                )),
            )
            .await;
    }
}

/// Counts a sign-in attempt, or refuses it with the seconds to wait and which limit is full.
pub async fn login_attempt(
    state: &AppState,
    origin: &Origin,
    username: &str,
    app: Option<&AppId>,
) -> Result<(), Throttled> {
    let keys = login_keys(state, origin, username);
    let (wait, which) = match state.limiter.attempt(&keys, true).await {
        Ok(()) => return Ok(()),
        Err(AttemptRefused::Unavailable) => return Err(Throttled::Unavailable),
        Err(AttemptRefused::Full { wait, which }) => (wait, which),
    };
    let locked = if which == 0 {
        Locked::Account
    } else {
        Locked::Address
    };
    let detail = match locked {
        Locked::Account => "this account",
        Locked::Address => "this address",
    };
    refused(
        state,
        origin,
        AuditKind::LoginFailed,
        &keys[which].0,
        Entry::default().app_opt(app).detail(format!("{detail}: ")),
        wait,
    )
    .await;
    Err(Throttled::Locked(wait, locked))
}

/// Audits a failed sign-in and, past the burst threshold, alerts.
pub async fn login_failed(
    state: &AppState,
    origin: &Origin,
    username: &str,
    user: Option<UserId>,
    app: Option<&AppId>,
    detail: &str,
) {
    let keys = login_keys(state, origin, username);
    state
        .ops
        .audit(
            origin,
            AuditKind::LoginFailed,
            Outcome::Failure,
            Entry::default().app_opt(app).user(user).detail(detail),
        )
        .await;
    let counts = state.limiter.tally(&keys, false).await;
    for ((key, limit), count) in keys.iter().zip(counts) {
        let subject = key.trim_start_matches("gk:login:");
        state.alerts.failures(
            AlertKind::LoginFailures,
            subject,
            count,
            *limit,
            json!({"subject": subject, "failures": count, "app_id": app.map(AppId::as_str)}),
        );
    }
}

/// A right password: its attempt is taken back, and the account's count cleared.
pub async fn login_succeeded(
    state: &AppState,
    origin: &Origin,
    username: &str,
    user: UserId,
    app: Option<&AppId>,
) {
    right_secret(state, origin, username).await;
    state
        .ops
        .audit(
            origin,
            AuditKind::LoginSucceeded,
            Outcome::Success,
            Entry::default().app_opt(app).user(Some(user)),
        )
        .await;
}

/// A right password (or admin key) for `username`: its attempt is taken back from the address,
/// and the account's count cleared.
pub async fn right_secret(state: &AppState, origin: &Origin, username: &str) {
    let keys = login_keys(state, origin, username);
    state.limiter.clear(&keys[0].0).await;
    for (key, _) in &keys[1..] {
        state.limiter.refund(key).await;
    }
}

/// Whether this address may try to authenticate a client; if not, why (a wait in seconds, or
/// the limiter being unavailable, which is not audited: nothing failed).
pub async fn client_allowed(
    state: &AppState,
    origin: &Origin,
    client_id: &str,
) -> Result<(), Throttled> {
    let Some(key) = client_ip_key(state, origin) else {
        return Ok(());
    };
    match state
        .limiter
        .attempt(std::slice::from_ref(&key), false)
        .await
    {
        Ok(()) => Ok(()),
        Err(AttemptRefused::Unavailable) => Err(Throttled::Unavailable),
        Err(AttemptRefused::Full { wait, .. }) => {
            let entry = match AppId::parse(client_id) {
                Some(app) => Entry::default().app(&app),
                None => Entry::default(),
            };
            refused(
                state,
                origin,
                AuditKind::ClientAuthFailed,
                &key.0,
                entry,
                wait,
            )
            .await;
            Err(Throttled::Locked(wait, Locked::Address))
        }
    }
}

/// Counts, audits and (past the burst threshold) alerts on a failed client authentication.
/// `app` is the client when it exists: only real clients get a count of their own.
pub async fn client_failed(state: &AppState, origin: &Origin, app: Option<&AppId>, why: &str) {
    let mut keys: Vec<(String, u64)> = client_ip_key(state, origin).into_iter().collect();
    if let Some(app) = app {
        keys.push((format!("gk:client:id:{app}"), u64::MAX));
    }
    let counts = state.limiter.tally(&keys, true).await;
    let entry = match app {
        Some(app) => Entry::default().app(app),
        None => Entry::default(),
    };
    state
        .ops
        .audit(
            origin,
            AuditKind::ClientAuthFailed,
            Outcome::Failure,
            entry.detail(why),
        )
        .await;
    for ((key, limit), count) in keys.iter().zip(counts) {
        let subject = key.trim_start_matches("gk:");
        state.alerts.failures(
            AlertKind::ClientAuthFailures,
            subject,
            count,
            *limit,
            json!({"subject": subject, "failures": count}),
        );
    }
}

/// Checks an admin key presented from this request's address: `None` when the server has
/// none, else whether it is right. An address over its limit is refused before the key is
/// compared, even a right one, until its oldest failure is 15 minutes old (or
/// `POST /admin/addresses/{ip}/unlock`); a wrong key is counted, audited and alerted on.
pub async fn admin_key(
    state: &AppState,
    origin: &Origin,
    presented: &str,
) -> Result<Option<bool>, Throttled> {
    let key = address(origin).map(|a| {
        let [.., admin] = address_keys(&a);
        (admin, state.limiter.limits.login_failures_per_ip)
    });
    if let Some(key) = &key {
        match state
            .limiter
            .attempt(std::slice::from_ref(key), false)
            .await
        {
            Ok(()) => {}
            Err(AttemptRefused::Unavailable) => return Err(Throttled::Unavailable),
            Err(AttemptRefused::Full { wait, .. }) => {
                let entry = Entry::default().detail("admin key: this address: ");
                refused(state, origin, AuditKind::LoginFailed, &key.0, entry, wait).await;
                return Err(Throttled::Locked(wait, Locked::Address));
            }
        }
    }
    let right = state.is_admin_key(presented);
    if right == Some(false) {
        tracing::warn!("wrong or missing admin key");
        let entry = Entry::default().detail("wrong admin key");
        state
            .ops
            .audit(origin, AuditKind::LoginFailed, Outcome::Failure, entry)
            .await;
        if let Some((key, limit)) = key {
            let counts = state.limiter.tally(&[(key.clone(), limit)], true).await;
            let subject = key.trim_start_matches("gk:");
            let count = counts.first().copied().unwrap_or(0);
            state.alerts.failures(
                AlertKind::LoginFailures,
                subject,
                count,
                limit,
                json!({"subject": subject, "failures": count}),
            );
        }
    }
    Ok(right)
}
