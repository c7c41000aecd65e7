//! Throttling of failed sign-ins and failed client authentications, per account (or client)
//! and per address, over 15 minutes (limits in [`gramkey_domain::ratelimit::Limits`]).
//!
//! Only failures count. Over a limit, even a right password or secret is refused until the
//! oldest failure is 15 minutes old: the lockout ends on its own, so a real user recovers by
//! waiting (the page says how long), and an administrator can end it at once
//! (`POST /admin/users/{username}/unlock`). A successful sign-in clears its account's count.

use gramkey_domain::alert::AlertKind;
use gramkey_domain::audit::{AuditKind, Outcome};
use gramkey_domain::{AppId, UserId};
use serde_json::json;

use crate::audit::Entry;
use crate::state::AppState;

fn ip() -> Option<std::net::IpAddr> {
    crate::observe::current().and_then(|c| c.ip)
}

/// The budgets of sign-ins to `username` from this request's address.
fn login_keys(state: &AppState, username: &str) -> Vec<(String, u64)> {
    let l = &state.limiter.limits;
    let mut keys = vec![(account_key(username), l.login_failures_per_account)];
    if let Some(ip) = ip() {
        keys.push((format!("gk:login:ip:{ip}"), l.login_failures_per_ip));
    }
    keys
}

/// The account's key: the name as typed, lower-cased and cut to Instagram's 30 characters, so
/// unknown names are throttled like known ones.
pub fn account_key(username: &str) -> String {
    let name: String = username.trim().to_lowercase().chars().take(30).collect();
    format!("gk:login:account:{name}")
}

fn client_keys(state: &AppState, client_id: &str) -> Vec<(String, u64)> {
    let l = &state.limiter.limits;
    let id: String = client_id.chars().take(32).collect();
    let mut keys = vec![(format!("gk:client:{id}"), l.client_auth_failures_per_client)];
    if let Some(ip) = ip() {
        keys.push((format!("gk:client:ip:{ip}"), l.client_auth_failures_per_ip));
    }
    keys
}

/// Whether a sign-in may be tried; if not, how many seconds until it may. A refusal is audited.
pub async fn login_allowed(state: &AppState, username: &str, app: &AppId) -> Result<(), i64> {
    let verdict = state
        .limiter
        .attempts_allowed(&login_keys(state, username))
        .await;
    if let Err(wait) = verdict {
        state.metrics.throttled_attempt("login");
        if let Some(ctx) = crate::observe::current() {
            ctx.throttled(wait);
        }
        state
            .ops
            .audit(
                AuditKind::LoginFailed,
                Outcome::Refused,
                Entry::default().app(app).detail(format!(
                    "throttled: too many failures; retry after {wait} s"
                )),
            )
            .await;
    }
    verdict
}

/// Counts, audits and (past the burst threshold) alerts on a failed sign-in.
pub async fn login_failed(state: &AppState, username: &str, user: Option<UserId>, app: &AppId) {
    let keys = login_keys(state, username);
    let counts = state.limiter.attempt_failed(&keys).await;
    state
        .ops
        .audit(
            AuditKind::LoginFailed,
            Outcome::Failure,
            Entry::default()
                .app(app)
                .user(user)
                .detail(if user.is_some() {
                    "wrong password"
                } else {
                    "no such user"
                }),
        )
        .await;
    for ((key, _), count) in keys.iter().zip(counts) {
        let subject = key.trim_start_matches("gk:login:");
        state.alerts.failures(
            AlertKind::LoginFailures,
            subject,
            count,
            json!({"subject": subject, "failures": count, "app_id": app.as_str()}),
        );
    }
}

pub async fn login_succeeded(state: &AppState, username: &str, user: UserId, app: &AppId) {
    state.limiter.clear(&account_key(username)).await;
    state
        .ops
        .audit(
            AuditKind::LoginSucceeded,
            Outcome::Success,
            Entry::default().app(app).user(Some(user)),
        )
        .await;
}

/// Whether `client_id` may try to authenticate; if not, the token-endpoint refusal.
pub async fn client_allowed(state: &AppState, client_id: &str) -> Result<(), i64> {
    let verdict = state
        .limiter
        .attempts_allowed(&client_keys(state, client_id))
        .await;
    if let Err(wait) = verdict {
        state.metrics.throttled_attempt("client_auth");
        if let Some(ctx) = crate::observe::current() {
            ctx.throttled(wait);
        }
        let entry = match AppId::parse(client_id) {
            Some(app) => Entry::default().app(&app),
            None => Entry::default(),
        };
        state
            .ops
            .audit(
                AuditKind::ClientAuthFailed,
                Outcome::Refused,
                entry.detail(format!(
                    "throttled: too many failures; retry after {wait} s"
                )),
            )
            .await;
    }
    verdict
}

/// Counts, audits and (past the burst threshold) alerts on a failed client authentication.
pub async fn client_failed(state: &AppState, client_id: &str, why: &str) {
    let keys = client_keys(state, client_id);
    let counts = state.limiter.attempt_failed(&keys).await;
    let entry = match AppId::parse(client_id) {
        Some(app) => Entry::default().app(&app),
        None => Entry::default(),
    };
    state
        .ops
        .audit(
            AuditKind::ClientAuthFailed,
            Outcome::Failure,
            entry.detail(why),
        )
        .await;
    for ((key, _), count) in keys.iter().zip(counts) {
        let subject = key.trim_start_matches("gk:");
        state.alerts.failures(
            AlertKind::ClientAuthFailures,
            subject,
            count,
            json!({"subject": subject, "failures": count}),
        );
    }
}
