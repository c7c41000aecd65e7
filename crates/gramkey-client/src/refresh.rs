//! Automatic refresh: when a long-lived token is due, and refreshing it once however many
//! callers ask at the same time, in this process or in others.
//!
//! - **Due** when less than `threshold` is left (less a clock-skew margin), with a per-account
//!   jitter so many accounts do not all refresh at the same moment.
//! - **Single flight.** Callers in one process queue on a per-account mutex; processes queue on
//!   an exclusive lock of `<vault>.refresh.lock`. Whoever gets through re-reads the vault: if
//!   the token was refreshed meanwhile (or is no longer due), nothing is sent.
//! - **Never worse.** A failed refresh keeps the token, records why, and says whether the user
//!   must authorize again ([`crate::Error::needs_reauthorization`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use crate::Client;
use crate::error::Error;
use crate::vault::{Account, Vault, VaultError, lock_beside};

/// When to refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refresh when less than this many seconds are left (default 14 days of the 60).
    pub threshold_secs: i64,
    /// Clocks disagree: count the token as this much shorter (default 5 minutes).
    pub skew_secs: i64,
    /// Spread: each account refreshes up to this much earlier, by a fixed amount of its own
    /// (default 1 hour).
    pub jitter_secs: i64,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            threshold_secs: 14 * 24 * 3600,
            skew_secs: 300,
            jitter_secs: 3600,
        }
    }
}

impl RefreshPolicy {
    /// The account's own jitter: stable, so "due" does not flicker between runs.
    fn jitter(&self, account: &Account) -> i64 {
        if self.jitter_secs <= 0 {
            return 0;
        }
        let h = account
            .user_id
            .bytes()
            .chain(account.app_id.bytes())
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        i64::try_from(h % u64::try_from(self.jitter_secs).unwrap_or(1)).unwrap_or(0)
    }

    /// Whether `account` should be refreshed at `now`. Never within 24 hours of signing in or
    /// of its last refresh: Instagram refuses to refresh a token younger than that.
    pub fn is_due(&self, account: &Account, now: i64) -> bool {
        if too_young(account, now) {
            return false;
        }
        let left = account
            .expires_at
            .saturating_sub(self.skew_secs)
            .saturating_sub(now);
        left < self.threshold_secs.saturating_add(self.jitter(account))
    }
}

/// Obtained (signed in or refreshed) less than 24 hours ago: Instagram refuses to refresh a
/// token that young, so it is not due yet, whatever the threshold.
pub fn too_young(account: &Account, now: i64) -> bool {
    let obtained = account
        .issued_at
        .max(account.last_refreshed_at.unwrap_or(0));
    now.saturating_sub(obtained) < 24 * 3600
}

/// What a refresh call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// This call refreshed the token; it now expires then.
    Now {
        /// When the new token expires, in Unix seconds.
        expires_at: i64,
    },
    /// Another caller refreshed it while this one waited.
    Elsewhere,
    /// Not due (and not forced).
    NotDue,
}

/// Why a refresh could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// No account by this alias in the vault, or one without a token.
    #[error("no account {0:?} in the vault")]
    NoAccount(String),
    /// The account was signed in on another server than the client talks to.
    #[error("{alias} belongs to {host}, not to this client's server")]
    OtherHost {
        /// The account's alias.
        alias: String,
        /// The server the account was signed in on.
        host: String,
    },
    /// The vault could not be read or written.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The server refused or could not be reached; the token was kept.
    #[error("refreshing {alias} failed, the token was kept: {error}")]
    Failed {
        /// The account's alias.
        alias: String,
        /// Why the refresh failed.
        error: Error,
    },
}

impl RefreshError {
    /// Whether the refresh failed because the user must authorize again.
    pub fn needs_reauthorization(&self) -> bool {
        matches!(self, RefreshError::Failed { error, .. } if error.needs_reauthorization())
    }
}

/// One mutex per (vault, account) in this process.
type Flights = Mutex<HashMap<(PathBuf, String), Arc<tokio::sync::Mutex<()>>>>;

fn flight(path: &std::path::Path, alias: &str) -> Arc<tokio::sync::Mutex<()>> {
    static FLIGHTS: OnceLock<Flights> = OnceLock::new();
    let mut map = FLIGHTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.entry((path.to_owned(), alias.to_owned()))
        .or_default()
        .clone()
}

/// Refreshes `alias` if it is due (or `force`), once across all concurrent callers. `now` is the
/// caller's clock, injected. Even forced, a token obtained less than 24 hours ago is left alone
/// (Instagram would refuse): [`Refreshed::NotDue`].
pub async fn refresh(
    client: &Client,
    vault: &Vault,
    alias: &str,
    policy: &RefreshPolicy,
    now: i64,
    force: bool,
) -> Result<Refreshed, RefreshError> {
    let find = |list: &[Account]| list.iter().find(|a| a.alias == alias).cloned();
    // The token as this caller saw it before waiting its turn: if another caller changed it
    // meanwhile, that caller did the refresh.
    let seen = find(&vault.load()?.list).and_then(|a| a.token);
    let flight = flight(vault.path(), alias);
    let _in_process = flight.lock().await;
    let lock_path = vault.path().to_owned();
    let _across_processes = {
        tokio::task::spawn_blocking(move || lock_beside(&lock_path, ".refresh.lock"))
            .await
            .map_err(|e| {
                RefreshError::Vault(VaultError::Corrupt {
                    path: vault.path().to_owned(),
                    why: e.to_string(),
                })
            })??
    };
    let account =
        find(&vault.load()?.list).ok_or_else(|| RefreshError::NoAccount(alias.to_owned()))?;
    if account.host != client.hosts().graph.as_str() {
        return Err(RefreshError::OtherHost {
            alias: alias.to_owned(),
            host: account.host,
        });
    }
    let Some(token) = account.token.clone() else {
        return Err(RefreshError::NoAccount(alias.to_owned()));
    };
    if seen.as_ref() != Some(&token) {
        return Ok(Refreshed::Elsewhere);
    }
    if too_young(&account, now) || (!force && !policy.is_due(&account, now)) {
        return Ok(Refreshed::NotDue);
    }
    // Changes apply only while the vault still holds the token that was sent: a sign-in that
    // replaced it meanwhile wins.
    let still = |acc: &Account| acc.token.as_ref() == Some(&token);
    match client.refresh(&token).await {
        Ok(fresh) => {
            let expires_at = now.saturating_add(fresh.expires_in.unwrap_or(60 * 24 * 3600));
            let applied = vault.update(|a| match a.find_mut(alias) {
                Some(acc) if still(acc) => {
                    acc.token = Some(fresh.access_token);
                    acc.issued_at = now;
                    acc.expires_at = expires_at;
                    acc.last_refreshed_at = Some(now);
                    acc.last_refresh_error = None;
                    acc.needs_reauthorization = false;
                    true
                }
                _ => false,
            })?;
            Ok(if applied {
                Refreshed::Now { expires_at }
            } else {
                Refreshed::Elsewhere
            })
        }
        // The server says the token is too young to refresh (its clock and ours disagree, or
        // the token came from elsewhere): not due yet, and nothing to record.
        Err(Error::Api(e))
            if e.failure() == crate::Failure::Refused && e.message.contains("24 hours") =>
        {
            Ok(Refreshed::NotDue)
        }
        Err(error) => {
            let why = error.to_string();
            let reauth = error.needs_reauthorization();
            vault.update(|a| {
                if let Some(acc) = a.find_mut(alias).filter(|acc| still(acc)) {
                    acc.last_refresh_error = Some(why);
                    acc.needs_reauthorization = reauth;
                }
            })?;
            Err(RefreshError::Failed {
                alias: alias.to_owned(),
                error,
            })
        }
    }
}

/// Called with an account's alias and the error when the user must authorize it again.
pub type ReauthHook = Arc<dyn Fn(&str, &Error) + Send + Sync>;

/// Keeps every account of a vault fresh: [`Refresher::refresh_due`] once, or
/// [`Refresher::run`] in the background. Accounts that need the user again go to the hook.
pub struct Refresher {
    client: Client,
    vault: Arc<Vault>,
    policy: RefreshPolicy,
    on_reauth: Option<ReauthHook>,
}

impl Refresher {
    /// `client` must be for the hosts the vault's accounts were signed in on.
    pub fn new(client: Client, vault: Arc<Vault>, policy: RefreshPolicy) -> Self {
        Self {
            client,
            vault,
            policy,
            on_reauth: None,
        }
    }

    /// Sets the hook [`Refresher::refresh_due`] calls for each account whose user must authorize
    /// again.
    pub fn on_reauth(mut self, hook: ReauthHook) -> Self {
        self.on_reauth = Some(hook);
        self
    }

    /// Refreshes every due account at `now`; returns what happened to each.
    pub async fn refresh_due(
        &self,
        now: i64,
    ) -> Result<Vec<(String, Result<Refreshed, RefreshError>)>, VaultError> {
        let accounts = self.vault.load()?;
        let mut out = Vec::new();
        // Only this client's server's accounts, and not those that need the user already (an
        // expired token cannot be refreshed).
        let graph = self.client.hosts().graph.as_str();
        for a in accounts
            .list
            .iter()
            .filter(|a| !a.needs_sign_in(now) && a.host == graph)
        {
            let result = refresh(
                &self.client,
                &self.vault,
                &a.alias,
                &self.policy,
                now,
                false,
            )
            .await;
            match (&result, &self.on_reauth) {
                (Err(RefreshError::Failed { error, .. }), Some(hook))
                    if error.needs_reauthorization() =>
                {
                    hook(&a.alias, error);
                }
                _ => {}
            }
            out.push((a.alias.clone(), result));
        }
        Ok(out)
    }

    /// [`Refresher::refresh_due`] every `every`, for ever, on the system clock.
    pub async fn run(self, every: std::time::Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // The SDK depends on nothing of ours, so it has no Clock: this is its one reading
            // of the system clock; everything below takes `now`.
            #[allow(clippy::disallowed_methods)]
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            // A vault that does not open stays untouched; the next tick tries again.
            let _ = self.refresh_due(now).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(expires_at: i64) -> Account {
        Account {
            host: "h".into(),
            app_id: "1".into(),
            user_id: "2".into(),
            username: None,
            alias: "a".into(),
            scopes: vec![],
            issued_at: 0,
            expires_at,
            last_refreshed_at: None,
            last_refresh_error: None,
            needs_reauthorization: false,
            token: None,
        }
    }

    #[test]
    fn due_under_the_threshold_with_skew_and_a_stable_jitter() {
        const DAY: i64 = 24 * 3600;
        let p = RefreshPolicy {
            threshold_secs: 1000,
            skew_secs: 100,
            jitter_secs: 0,
        };
        let at = |secs: i64| DAY + secs;
        assert!(!p.is_due(&account(at(2000)), at(899)));
        assert!(p.is_due(&account(at(2000)), at(901)));
        let j = RefreshPolicy {
            jitter_secs: 500,
            ..p
        };
        let extra = j.jitter(&account(0));
        assert!((0..500).contains(&extra));
        assert_eq!(extra, j.jitter(&account(0)), "stable");
        assert!(j.is_due(&account(at(2000)), at(901) - extra));
        let mut fresh = account(at(2000));
        fresh.last_refreshed_at = Some(at(900));
        assert!(!p.is_due(&fresh, at(901)), "refreshed less than 24 h ago");
        // Signed in less than 24 hours ago: not due, whatever the threshold.
        let mut young = account(60 * DAY);
        young.issued_at = 10 * DAY;
        let eager = RefreshPolicy {
            threshold_secs: 61 * DAY,
            ..p
        };
        assert!(!eager.is_due(&young, 11 * DAY - 1));
        assert!(eager.is_due(&young, 11 * DAY));
    }
}
