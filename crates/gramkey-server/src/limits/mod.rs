//! Rate limiting: which budgets a request draws on (the rules are in
//! [`gramkey_domain::ratelimit`]) and where the budgets live: in this process
//! ([`memory::MemoryBackend`], the default) or in Redis ([`redis::RedisBackend`]), where every
//! node of a deployment shares them.
//!
//! A check is atomic over all of a request's budgets: either every one has room and each is
//! charged, or none is charged and the first that is full is named.

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use gramkey_domain::ratelimit::{Budget, CallClass, Limits, WindowSpec, percent};
use gramkey_domain::{AppId, Clock, UnixTime};

use crate::metrics::Metrics;

/// One budget to check: `cost` more must fit under `limit` in the window `key` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub key: String,
    pub spec: WindowSpec,
    pub limit: u64,
    pub cost: u64,
}

/// A backend's answer. `used` is, per check, what its window holds afterwards; on a refusal,
/// what the windows up to the refusing one hold (nothing was charged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed {
        used: Vec<u64>,
    },
    Limited {
        index: usize,
        retry_after: i64,
        used: Vec<u64>,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct BackendError(pub String);

/// Where budgets live.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Checks every budget and, only if all have room, charges each: atomically.
    async fn check(&self, now: UnixTime, checks: &[Check]) -> Result<Verdict, BackendError>;
    /// Charges a budget without checking it (time spent, a failed attempt).
    async fn add(
        &self,
        now: UnixTime,
        key: &str,
        spec: WindowSpec,
        amount: u64,
    ) -> Result<(), BackendError>;
    /// Forgets a budget (a successful sign-in clears the account's failures).
    async fn reset(&self, key: &str) -> Result<(), BackendError>;
}

/// What to do when the backend cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Let the request through, unlimited (the default: an outage of the limiter is not an
    /// outage of the API).
    Open,
    /// Refuse it: Graph code 2, HTTP 503.
    Closed,
}

/// A request's standing against its app's budgets, for `X-App-Usage` and the legacy headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    pub app_id: Option<AppId>,
    pub user_id: Option<i64>,
    /// The app pool's calls: used (this one included) and limit.
    pub calls: (u64, u64),
    /// Microseconds of wall-clock and CPU time used before this request, and their limits.
    pub time_us: (u64, u64),
    pub cpu_us: (u64, u64),
    /// Legacy v1: the token's limit and what is left of it.
    pub legacy: Option<(u64, u64)>,
}

impl Standing {
    /// `X-App-Usage`, with this request's own time added.
    pub fn app_usage(&self, wall_us: u64, cpu_us: u64) -> String {
        format!(
            r#"{{"call_count":{},"total_time":{},"total_cputime":{}}}"#,
            percent(self.calls.0, self.calls.1),
            percent(self.time_us.0 + wall_us, self.time_us.1),
            percent(self.cpu_us.0 + cpu_us, self.cpu_us.1),
        )
    }
}

/// A refusal: which budget, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Limited {
        budget: Budget,
        retry_after: i64,
    },
    /// The backend failed and the limiter fails closed.
    Unavailable,
}

/// The limiter the server holds.
pub struct Limiter {
    backend: Arc<dyn Backend>,
    pub limits: Limits,
    on_failure: OnFailure,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    /// When a backend failure was last logged, so an outage logs once a minute, not per request.
    last_failure_log: AtomicI64,
}

pub fn app_key(app: &AppId, what: &str) -> String {
    format!("gk:app:{app}:{what}")
}

impl Limiter {
    pub fn new(
        backend: Arc<dyn Backend>,
        limits: Limits,
        on_failure: OnFailure,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Self {
        Self {
            backend,
            limits,
            on_failure,
            clock,
            metrics,
            last_failure_log: AtomicI64::new(i64::MIN),
        }
    }

    fn failed(&self, e: &BackendError) -> Option<Refusal> {
        let now = self.clock.now();
        let last = self.last_failure_log.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 60
            && self
                .last_failure_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(error = %e, on_failure = ?self.on_failure,
                "RATE LIMITER UNAVAILABLE: requests are {} while it is down",
                if self.on_failure == OnFailure::Open { "NOT LIMITED" } else { "REFUSED" });
        }
        self.metrics.limiter_error();
        match self.on_failure {
            OnFailure::Open => None,
            OnFailure::Closed => Some(Refusal::Unavailable),
        }
    }

    /// Admits a resource call to `app` (which `users` people authorized) by `user` (none for
    /// an app token) with token row `token_id`, or says which budget is spent. Either way, the
    /// request's standing, for the usage headers.
    pub async fn admit(
        &self,
        app: &gramkey_store::App,
        users: u64,
        user: Option<i64>,
        token_id: i64,
        class: CallClass,
    ) -> Result<Standing, (Standing, Refusal)> {
        let l = &self.limits;
        let hour = WindowSpec::HOUR;
        let (time_ms, cpu_ms) = l.app_time_ms(users);
        let mut checks = vec![
            Check {
                key: app_key(&app.id, "calls"),
                spec: hour,
                limit: l.app_calls(users),
                cost: 1,
            },
            Check {
                key: app_key(&app.id, "time_us"),
                spec: hour,
                limit: time_ms.saturating_mul(1000),
                cost: 0,
            },
            Check {
                key: app_key(&app.id, "cpu_us"),
                spec: hour,
                limit: cpu_ms.saturating_mul(1000),
                cost: 0,
            },
        ];
        let mut budgets = vec![Budget::App, Budget::App, Budget::App];
        if let Some(uid) = user {
            checks.push(Check {
                key: app_key(&app.id, &format!("user:{uid}")),
                spec: hour,
                limit: l.user_calls,
                cost: 1,
            });
            budgets.push(Budget::User);
            if class == CallClass::Write {
                checks.push(Check {
                    key: app_key(&app.id, &format!("writes:{uid}")),
                    spec: hour,
                    limit: l.writes(app.mode),
                    cost: 1,
                });
                budgets.push(Budget::User);
            }
        }
        if class == CallClass::Legacy {
            checks.push(Check {
                key: format!("gk:token:{token_id}"),
                spec: hour,
                limit: l.legacy_token(app.mode),
                cost: 1,
            });
            budgets.push(Budget::LegacyToken);
        }
        let mut standing = Standing {
            app_id: Some(app.id.clone()),
            user_id: user,
            calls: (0, checks[0].limit),
            time_us: (0, checks[1].limit),
            cpu_us: (0, checks[2].limit),
            legacy: (class == CallClass::Legacy).then(|| (checks[checks.len() - 1].limit, 0)),
        };
        let fill = |standing: &mut Standing, used: &[u64]| {
            let at = |i: usize| used.get(i).copied();
            standing.calls.0 = at(0).unwrap_or(0);
            standing.time_us.0 = at(1).unwrap_or(0);
            standing.cpu_us.0 = at(2).unwrap_or(0);
            if let Some((limit, left)) = standing.legacy.as_mut() {
                *left = limit.saturating_sub(at(checks.len() - 1).unwrap_or(*limit));
            }
        };
        match self.backend.check(self.clock.now(), &checks).await {
            Ok(Verdict::Allowed { used }) => {
                fill(&mut standing, &used);
                Ok(standing)
            }
            Ok(Verdict::Limited {
                index,
                retry_after,
                used,
            }) => {
                fill(&mut standing, &used);
                Err((
                    standing,
                    Refusal::Limited {
                        budget: budgets[index],
                        retry_after,
                    },
                ))
            }
            Err(e) => match self.failed(&e) {
                None => Ok(standing),
                Some(r) => Err((standing, r)),
            },
        }
    }

    /// Charges the app pool with the time a request took.
    pub async fn spent(&self, app: &AppId, wall_us: u64, cpu_us: u64) {
        let now = self.clock.now();
        for (what, amount) in [("time_us", wall_us), ("cpu_us", cpu_us)] {
            if let Err(e) = self
                .backend
                .add(now, &app_key(app, what), WindowSpec::HOUR, amount)
                .await
            {
                self.failed(&e);
            }
        }
    }

    /// Whether attempts counted under each `(key, limit)` may go on (failed sign-ins, failed
    /// client authentications); if not, the longest wait.
    pub async fn attempts_allowed(&self, keys: &[(String, u64)]) -> Result<(), i64> {
        let checks: Vec<Check> = keys
            .iter()
            .map(|(key, limit)| Check {
                key: key.clone(),
                spec: WindowSpec::FIFTEEN_MINUTES,
                limit: *limit,
                cost: 0,
            })
            .collect();
        match self.backend.check(self.clock.now(), &checks).await {
            Ok(Verdict::Allowed { .. }) => Ok(()),
            Ok(Verdict::Limited { retry_after, .. }) => Err(retry_after),
            Err(e) => match self.failed(&e) {
                None => Ok(()),
                Some(_) => Err(5),
            },
        }
    }

    /// Counts a failed attempt under each key; returns, per key, the failures now counted.
    pub async fn attempt_failed(&self, keys: &[(String, u64)]) -> Vec<u64> {
        let now = self.clock.now();
        let mut counts = Vec::with_capacity(keys.len());
        for (key, _) in keys {
            // Charging with a check of limit u64::MAX returns the count in one round trip.
            let check = Check {
                key: key.clone(),
                spec: WindowSpec::FIFTEEN_MINUTES,
                limit: u64::MAX,
                cost: 1,
            };
            match self.backend.check(now, std::slice::from_ref(&check)).await {
                Ok(Verdict::Allowed { used }) => counts.push(used[0]),
                Ok(Verdict::Limited { .. }) => counts.push(u64::MAX),
                Err(e) => {
                    self.failed(&e);
                    counts.push(0);
                }
            }
        }
        counts
    }

    /// Clears the failures counted under `key`.
    pub async fn clear(&self, key: &str) {
        if let Err(e) = self.backend.reset(key).await {
            self.failed(&e);
        }
    }
}

/// A backend call that takes longer than this counts as a failure.
pub const BACKEND_TIMEOUT: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;
    use gramkey_domain::time::ManualClock;

    struct Down;

    #[async_trait]
    impl Backend for Down {
        async fn check(&self, _: UnixTime, _: &[Check]) -> Result<Verdict, BackendError> {
            Err(BackendError("down".into()))
        }
        async fn add(
            &self,
            _: UnixTime,
            _: &str,
            _: WindowSpec,
            _: u64,
        ) -> Result<(), BackendError> {
            Err(BackendError("down".into()))
        }
        async fn reset(&self, _: &str) -> Result<(), BackendError> {
            Err(BackendError("down".into()))
        }
    }

    fn app() -> gramkey_store::App {
        gramkey_store::App {
            id: AppId::parse("1234567890123456").unwrap(),
            name: "t".into(),
            secret_hash: vec![],
            redirect_uris: vec![],
            scopes: Default::default(),
            mode: gramkey_domain::AppMode::Live,
            created_at: 0,
            previous_secret: None,
            refresh_tokens: false,
            secret_seed: None,
            deauthorize_url: None,
            data_deletion_url: None,
        }
    }

    #[tokio::test]
    async fn a_down_backend_fails_as_configured() {
        for (on_failure, refused) in [(OnFailure::Open, false), (OnFailure::Closed, true)] {
            let l = Limiter::new(
                Arc::new(Down),
                Limits::default(),
                on_failure,
                Arc::new(ManualClock::new(1_800_000_000)),
                Metrics::default(),
            );
            let r = l.admit(&app(), 1, Some(1), 1, CallClass::Read).await;
            assert_eq!(matches!(r, Err((_, Refusal::Unavailable))), refused);
            assert_eq!(
                l.attempts_allowed(&[("k".into(), 1)]).await.is_err(),
                refused
            );
        }
    }

    #[tokio::test]
    async fn usage_headers_add_this_requests_time() {
        let s = Standing {
            calls: (57, 200),
            time_us: (1_000_000, 20_000_000),
            cpu_us: (0, 10_000_000),
            ..Standing::default()
        };
        assert_eq!(
            s.app_usage(1_000_000, 5_000_000),
            r#"{"call_count":28,"total_time":10,"total_cputime":50}"#
        );
    }
}
