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
use gramkey_domain::ratelimit::{
    APP_CALLS, APP_CPU, APP_TIME, Budget, BudgetKey, CallClass, Counted, Limits, WindowSpec,
    percent,
};
use gramkey_domain::{AppId, Clock, UnixTime};

use crate::metrics::Metrics;

/// One budget to check: `cost` more must fit under `limit` in the window `key` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub key: BudgetKey,
    pub spec: WindowSpec,
    pub limit: u64,
    pub cost: u64,
    /// Seconds the window's time is ahead of real time: an app's test clock (0 but for the
    /// sandbox's development-mode apps). A backend keeps its own housekeeping in real time.
    pub offset: i64,
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
        key: &BudgetKey,
        spec: WindowSpec,
        amount: u64,
    ) -> Result<(), BackendError>;
    /// Takes back what [`Backend::check`] charged (a sign-in that turned out right).
    async fn refund(
        &self,
        now: UnixTime,
        key: &BudgetKey,
        spec: WindowSpec,
        amount: u64,
    ) -> Result<(), BackendError>;
    /// Forgets a budget (an administrator ends a lockout).
    async fn reset(&self, key: &BudgetKey) -> Result<(), BackendError>;
    /// Forgets every one of `app`'s budgets (its test clock went back to real time, and its
    /// windows ahead of it would otherwise stay full).
    async fn reset_app(&self, app: &AppId) -> Result<(), BackendError>;
    /// Whether the backend answers (for `/readyz`), and what it is. In memory, always.
    async fn ping(&self) -> Result<&'static str, BackendError> {
        Ok("memory")
    }
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
    /// Instagram Login (the Instagram Platform): the caller's Instagram user id. Its calls
    /// count against Business Use Case limits and report `X-Business-Use-Case-Usage` under
    /// that id instead of `X-App-Usage` (wire protocol §15).
    pub business_user: Option<String>,
}

impl Standing {
    /// The usage header of this request's flavour and its value, with this request's own time
    /// added: `X-Business-Use-Case-Usage` for Instagram Login, `X-App-Usage` otherwise.
    /// `retry_after` (seconds) is the wait of a refused call.
    pub fn usage_header(
        &self,
        wall_us: u64,
        cpu_us: u64,
        retry_after: Option<i64>,
    ) -> (&'static str, String) {
        let Some(user) = &self.business_user else {
            return ("x-app-usage", self.app_usage(wall_us, cpu_us));
        };
        let minutes = retry_after.map_or(0, |s| (s.max(0) + 59) / 60);
        let usage = serde_json::json!({ user.as_str(): [{
            "type": "instagram",
            "call_count": percent(self.calls.0, self.calls.1),
            "total_cputime": percent(self.cpu_us.0 + cpu_us, self.cpu_us.1),
            "total_time": percent(self.time_us.0 + wall_us, self.time_us.1),
            "estimated_time_to_regain_access": minutes,
        }]});
        ("x-business-use-case-usage", usage.to_string())
    }

    /// `X-App-Usage`, with this request's own time added.
    pub fn app_usage(&self, wall_us: u64, cpu_us: u64) -> String {
        // Written out rather than formatted: every resource call's answer carries it.
        let mut value = String::with_capacity(64);
        let mut digits = itoa::Buffer::new();
        value.push_str(r#"{"call_count":"#);
        value.push_str(digits.format(percent(self.calls.0, self.calls.1)));
        value.push_str(r#","total_time":"#);
        value.push_str(digits.format(percent(self.time_us.0 + wall_us, self.time_us.1)));
        value.push_str(r#","total_cputime":"#);
        value.push_str(digits.format(percent(self.cpu_us.0 + cpu_us, self.cpu_us.1)));
        value.push('}');
        value
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

/// Why an attempt (a sign-in, a client authentication) may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptRefused {
    /// A budget is full: the longest wait, in seconds, and which key imposes it.
    Full { wait: i64, which: usize },
    /// The backend failed and the limiter fails closed: nothing was counted, nobody failed.
    Unavailable,
}

/// After a backend failure, calls fail at once for this long, then one call probes it.
const PROBE_SECS: i64 = 1;

/// The limiter the server holds.
pub struct Limiter {
    backend: Arc<dyn Backend>,
    pub limits: Limits,
    on_failure: OnFailure,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    /// Time spent per app, not yet charged.
    spent:
        std::sync::Mutex<std::collections::HashMap<AppId, (u64, u64), foldhash::fast::RandomState>>,
    /// When a backend failure was last logged, so an outage logs once a minute, not per request.
    last_failure_log: AtomicI64,
    /// The circuit breaker: until then (by the clock), the backend is taken to be down and not
    /// asked; 0 while it answers. A down Redis costs one timed-out call per second, not one
    /// per request.
    down_until: AtomicI64,
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
            spent: std::sync::Mutex::default(),
            last_failure_log: AtomicI64::new(i64::MIN),
            down_until: AtomicI64::new(0),
        }
    }

    /// Runs `call` on the backend unless the breaker is open: then it fails at once. After a
    /// failure the breaker opens for [`PROBE_SECS`]; then the first caller probes (the others
    /// still fail at once) and closes it if the backend answers.
    async fn guarded<T>(
        &self,
        call: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let now = self.clock.now();
        let until = self.down_until.load(Ordering::Relaxed);
        if until != 0 {
            let probing = now >= until
                && self
                    .down_until
                    .compare_exchange(
                        until,
                        now + PROBE_SECS,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok();
            if !probing {
                return Err(BackendError(
                    "the rate limiter's backend is down; asking it again shortly".into(),
                ));
            }
        }
        match call.await {
            Ok(v) => {
                if until != 0 {
                    self.down_until.store(0, Ordering::Relaxed);
                    tracing::warn!("rate limiter backend answers again");
                }
                Ok(v)
            }
            Err(e) => {
                self.down_until.store(now + PROBE_SECS, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Whether the backend answers, and what it is (`memory` or `redis`).
    pub async fn ping(&self) -> Result<&'static str, BackendError> {
        self.backend.ping().await
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

    /// Admits a resource call to `app` (which `users` people authorized, and whose clock is
    /// `offset` seconds ahead) by `user` (none for an app token) with token row `token_id`
    /// (none for `APP_ID|APP_SECRET`), or says which budget is spent. Either way, the
    /// request's standing, for the usage headers: `None` when the backend could not be asked,
    /// so no usage headers are made up.
    pub async fn admit(
        &self,
        app: &AppId,
        (mode, users): (gramkey_domain::AppMode, u64),
        user: Option<i64>,
        token_id: Option<i64>,
        class: CallClass,
        offset: i64,
    ) -> Result<Option<Standing>, (Option<Standing>, Refusal)> {
        let draws = self.limits.draws(app, mode, users, user, token_id, class);
        let checks: Vec<Check> = draws
            .iter()
            .map(|d| Check {
                key: d.key.clone(),
                spec: WindowSpec::HOUR,
                limit: d.limit,
                cost: d.cost,
                offset,
            })
            .collect();
        let last = draws.len() - 1;
        let mut standing = unused(app, user, &draws);
        let fill = |standing: &mut Standing, used: &[u64]| {
            let at = |i: usize| used.get(i).copied();
            standing.calls.0 = at(APP_CALLS).unwrap_or(0);
            standing.time_us.0 = at(APP_TIME).unwrap_or(0);
            standing.cpu_us.0 = at(APP_CPU).unwrap_or(0);
            // A legacy budget that was not reached (an earlier one refused) is not reported.
            standing.legacy = match (standing.legacy, at(last)) {
                (Some((limit, _)), Some(used)) => Some((limit, limit.saturating_sub(used))),
                _ => None,
            };
        };
        match self
            .guarded(self.backend.check(self.clock.now(), &checks))
            .await
        {
            Ok(Verdict::Allowed { used }) => {
                fill(&mut standing, &used);
                Ok(Some(standing))
            }
            Ok(Verdict::Limited {
                index,
                retry_after,
                used,
            }) => {
                fill(&mut standing, &used);
                Err((
                    Some(standing),
                    Refusal::Limited {
                        budget: draws[index].budget,
                        retry_after,
                    },
                ))
            }
            // Nothing is known of the budgets: no usage headers rather than made-up ones.
            Err(e) => match self.failed(&e) {
                None => Ok(None),
                Some(r) => Err((None, r)),
            },
        }
    }

    /// A standing with `app`'s call budget spent, as a refusal by it reports (an injected
    /// rate-limit fault).
    pub fn exhausted(
        &self,
        app: &AppId,
        (mode, users): (gramkey_domain::AppMode, u64),
        user: Option<i64>,
        token_id: Option<i64>,
        class: CallClass,
    ) -> Standing {
        let draws = self.limits.draws(app, mode, users, user, token_id, class);
        let mut standing = unused(app, user, &draws);
        standing.calls.0 = standing.calls.1;
        standing
    }

    /// Notes the time a request of `app` took. It is charged to the app pool by
    /// [`Limiter::charge_spent`], once a second, so a request costs no round trip for it.
    pub fn spent(&self, app: &AppId, wall_us: u64, cpu_us: u64) {
        let mut pending = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        // Every call of a resource charges this: no key is copied once the app has one.
        match pending.get_mut(app) {
            Some((w, c)) => {
                *w = w.saturating_add(wall_us);
                *c = c.saturating_add(cpu_us);
            }
            None => {
                pending.insert(app.clone(), (wall_us, cpu_us));
            }
        }
    }

    /// Charges the time noted since the last call.
    pub async fn charge_spent(&self) {
        let pending = std::mem::take(&mut *self.spent.lock().unwrap_or_else(|p| p.into_inner()));
        let now = self.clock.now();
        for (app, (wall_us, cpu_us)) in pending {
            for (what, amount) in [(Counted::TimeUs, wall_us), (Counted::CpuUs, cpu_us)] {
                let key = BudgetKey::app(&app, what);
                let add = self.backend.add(now, &key, WindowSpec::HOUR, amount);
                if let Err(e) = self.guarded(add).await {
                    self.failed(&e);
                }
            }
        }
    }

    /// Whether attempts counted under each `(key, limit)` may go on; if not, the longest wait
    /// and which key imposes it.
    /// With `charge`, an allowed attempt is counted at once, atomically with the check, so
    /// parallel attempts cannot all pass before any is counted; take it back with
    /// [`Limiter::refund`] if it succeeds.
    pub async fn attempt(
        &self,
        keys: &[(String, u64)],
        charge: bool,
    ) -> Result<(), AttemptRefused> {
        let now = self.clock.now();
        let checks = attempt_checks(keys, u64::from(charge), false);
        match self.guarded(self.backend.check(now, &checks)).await {
            Ok(Verdict::Allowed { .. }) => Ok(()),
            Ok(Verdict::Limited { .. }) => {
                // The longest wait of all the full budgets, not just the first one found.
                let mut longest = (1, 0);
                for (i, c) in checks.iter().enumerate() {
                    let one = Check {
                        cost: 0,
                        ..c.clone()
                    };
                    match self.backend.check(now, std::slice::from_ref(&one)).await {
                        Ok(Verdict::Limited { retry_after, .. }) if retry_after > longest.0 => {
                            longest = (retry_after, i);
                        }
                        _ => {}
                    }
                }
                Err(AttemptRefused::Full {
                    wait: longest.0,
                    which: longest.1,
                })
            }
            Err(e) => match self.failed(&e) {
                None => Ok(()),
                Some(_) => Err(AttemptRefused::Unavailable),
            },
        }
    }

    /// Takes back an attempt charged by [`Limiter::attempt`].
    pub async fn refund(&self, key: &str) {
        let now = self.clock.now();
        let key = BudgetKey::from(key);
        let refund = self
            .backend
            .refund(now, &key, WindowSpec::FIFTEEN_MINUTES, 1);
        if let Err(e) = self.guarded(refund).await {
            self.failed(&e);
        }
    }

    /// What each key's 15-minute window holds, after adding one to each with `add` (a failed
    /// attempt). One backend call, never refused.
    pub async fn tally(&self, keys: &[(String, u64)], add: bool) -> Vec<u64> {
        let checks = attempt_checks(keys, u64::from(add), true);
        match self
            .guarded(self.backend.check(self.clock.now(), &checks))
            .await
        {
            Ok(Verdict::Allowed { used }) => used,
            Ok(Verdict::Limited { .. }) => vec![u64::MAX; keys.len()],
            Err(e) => {
                self.failed(&e);
                vec![0; keys.len()]
            }
        }
    }

    /// Clears the failures counted under `key`.
    /// Forgets every budget of `app` (its calls, time, users' calls and writes, legacy tokens).
    pub async fn forget_app(&self, app: &AppId) {
        if let Err(e) = self.guarded(self.backend.reset_app(app)).await {
            self.failed(&e);
        }
    }

    pub async fn clear(&self, key: &str) {
        if let Err(e) = self.guarded(self.backend.reset(&key.into())).await {
            self.failed(&e);
        }
    }
}

/// Checks of `(key, limit)` attempt budgets over 15 minutes; `unlimited` only counts.
/// A standing against `draws` with nothing counted yet (a legacy token's "left" at 0 until
/// filled).
fn unused(app: &AppId, user: Option<i64>, draws: &[gramkey_domain::ratelimit::Draw]) -> Standing {
    let last = draws.len() - 1;
    Standing {
        app_id: Some(app.clone()),
        user_id: user,
        calls: (0, draws[APP_CALLS].limit),
        time_us: (0, draws[APP_TIME].limit),
        cpu_us: (0, draws[APP_CPU].limit),
        legacy: (draws[last].budget == Budget::LegacyToken).then(|| (draws[last].limit, 0)),
        business_user: None,
    }
}

fn attempt_checks(keys: &[(String, u64)], cost: u64, unlimited: bool) -> Vec<Check> {
    keys.iter()
        .map(|(key, limit)| Check {
            key: key.as_str().into(),
            spec: WindowSpec::FIFTEEN_MINUTES,
            limit: if unlimited { u64::MAX } else { *limit },
            cost,
            offset: 0,
        })
        .collect()
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
            _: &BudgetKey,
            _: WindowSpec,
            _: u64,
        ) -> Result<(), BackendError> {
            Err(BackendError("down".into()))
        }
        async fn refund(
            &self,
            _: UnixTime,
            _: &BudgetKey,
            _: WindowSpec,
            _: u64,
        ) -> Result<(), BackendError> {
            Err(BackendError("down".into()))
        }
        async fn reset(&self, _: &BudgetKey) -> Result<(), BackendError> {
            Err(BackendError("down".into()))
        }
        async fn reset_app(&self, _: &AppId) -> Result<(), BackendError> {
            Err(BackendError("down".into()))
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
            let app = AppId::parse("1234567890123456").unwrap();
            let r = l
                .admit(
                    &app,
                    (gramkey_domain::AppMode::Live, 1),
                    Some(1),
                    Some(1),
                    CallClass::Read,
                    0,
                )
                .await;
            assert_eq!(matches!(r, Err((_, Refusal::Unavailable))), refused);
            assert_eq!(l.attempt(&[("k".into(), 1)], true).await.is_err(), refused);
        }
    }

    /// A down backend is asked once, then not again until the probe interval has passed;
    /// one that answers again closes the breaker.
    #[tokio::test]
    async fn a_down_backend_is_not_asked_on_every_call() {
        struct Flaky {
            asked: std::sync::atomic::AtomicU32,
            up: std::sync::atomic::AtomicBool,
        }
        #[async_trait]
        impl Backend for Flaky {
            async fn check(&self, _: UnixTime, c: &[Check]) -> Result<Verdict, BackendError> {
                self.asked.fetch_add(1, Ordering::SeqCst);
                if self.up.load(Ordering::SeqCst) {
                    Ok(Verdict::Allowed {
                        used: vec![1; c.len()],
                    })
                } else {
                    Err(BackendError("down".into()))
                }
            }
            async fn add(
                &self,
                _: UnixTime,
                _: &BudgetKey,
                _: WindowSpec,
                _: u64,
            ) -> Result<(), BackendError> {
                Ok(())
            }
            async fn refund(
                &self,
                _: UnixTime,
                _: &BudgetKey,
                _: WindowSpec,
                _: u64,
            ) -> Result<(), BackendError> {
                Ok(())
            }
            async fn reset(&self, _: &BudgetKey) -> Result<(), BackendError> {
                Ok(())
            }
            async fn reset_app(&self, _: &AppId) -> Result<(), BackendError> {
                Ok(())
            }
        }
        let backend = Arc::new(Flaky {
            asked: Default::default(),
            up: Default::default(),
        });
        let clock = Arc::new(ManualClock::new(1_800_000_000));
        let l = Limiter::new(
            backend.clone(),
            Limits::default(),
            OnFailure::Open,
            clock.clone(),
            Metrics::default(),
        );
        let keys = [("k".to_owned(), 5)];
        let asked = || backend.asked.load(Ordering::SeqCst);
        for _ in 0..10 {
            assert_eq!(l.attempt(&keys, false).await, Ok(()));
        }
        assert_eq!(asked(), 1, "asked once, then failed fast");
        clock.advance(PROBE_SECS);
        l.attempt(&keys, false).await.unwrap();
        assert_eq!(asked(), 2, "probed after the interval");
        backend.up.store(true, Ordering::SeqCst);
        clock.advance(PROBE_SECS);
        for _ in 0..3 {
            l.attempt(&keys, false).await.unwrap();
        }
        assert_eq!(asked(), 5, "back to asking every call once it answers");
    }

    /// What every backend must do, run against memory and (with `GRAMKEY_TEST_REDIS_URL`)
    /// Redis: the Lua script is held to the in-memory arithmetic.
    async fn contract(b: &dyn Backend, prefix: &str) {
        let key = |k: &str| BudgetKey::from(format!("{prefix}:{k}"));
        let hour = WindowSpec::HOUR;
        let check = |k: &str, limit: u64, cost: u64| Check {
            key: key(k),
            spec: hour,
            limit,
            cost,
            offset: 0,
        };
        let t0 = 1_800_000_000; // a minute boundary
        // All or nothing over several budgets.
        let both = [check("a", 3, 1), check("b", 2, 1)];
        assert_eq!(
            b.check(t0, &both).await.unwrap(),
            Verdict::Allowed { used: vec![1, 1] }
        );
        assert_eq!(
            b.check(t0 + 600, &both).await.unwrap(),
            Verdict::Allowed { used: vec![2, 2] }
        );
        assert_eq!(
            b.check(t0 + 900, &both).await.unwrap(),
            Verdict::Limited {
                index: 1,
                // "b"'s first call leaves the window at t0 + 3600.
                retry_after: 2700,
                used: vec![2, 2],
            }
        );
        assert_eq!(
            b.check(t0 + 900, &[check("a", 3, 0)]).await.unwrap(),
            Verdict::Allowed { used: vec![2] },
            "a refused check charges nothing"
        );
        // The window slides: at t0 + 3600 the first minute's calls are gone.
        assert_eq!(
            b.check(t0 + 3600, &both).await.unwrap(),
            Verdict::Allowed { used: vec![2, 2] }
        );
        // Adding without a check, a refund, a reset.
        b.add(t0, &key("t"), hour, 500).await.unwrap();
        b.add(t0 + 60, &key("t"), hour, 250).await.unwrap();
        assert_eq!(
            b.check(t0 + 60, &[check("t", 1000, 0)]).await.unwrap(),
            Verdict::Allowed { used: vec![750] }
        );
        b.refund(t0 + 60, &key("t"), hour, 50).await.unwrap();
        assert_eq!(
            b.check(t0 + 60, &[check("t", 1000, 0)]).await.unwrap(),
            Verdict::Allowed { used: vec![700] }
        );
        b.reset(&key("t")).await.unwrap();
        assert_eq!(
            b.check(t0 + 60, &[check("t", 1000, 0)]).await.unwrap(),
            Verdict::Allowed { used: vec![0] }
        );
        // An hour of traffic: a call in each of 60 minutes, then the window slides a minute
        // at a time and each minute's call leaves it exactly once (a budget's use is kept as
        // a sum between minutes, and counted again when a minute leaves).
        for m in 0..60 {
            b.check(t0 + m * 60 + 5, &[check("hour", 1000, 1)])
                .await
                .unwrap();
        }
        for (at, used) in [
            (3599, 60),
            (3600, 59),
            (3659, 59),
            (3660, 58),
            (7139, 1),
            (7140, 0),
        ] {
            assert_eq!(
                b.check(t0 + at, &[check("hour", 1000, 0)]).await.unwrap(),
                Verdict::Allowed { used: vec![used] },
                "at t0 + {at}"
            );
        }
        // A refund larger than what is held takes back only what is held.
        b.add(t0 + 7260, &key("hour"), hour, 2).await.unwrap();
        b.refund(t0 + 7260, &key("hour"), hour, 5).await.unwrap();
        assert_eq!(
            b.check(t0 + 7260, &[check("hour", 1000, 1)]).await.unwrap(),
            Verdict::Allowed { used: vec![1] }
        );

        // A refund takes back from the newest live minutes first: an attempt charged in one
        // minute and taken back in the next, one spread over two minutes, and nothing from a
        // minute that has left the window.
        b.add(t0 + 10, &key("edge"), hour, 3).await.unwrap();
        b.refund(t0 + 70, &key("edge"), hour, 1).await.unwrap();
        b.add(t0 + 80, &key("edge"), hour, 1).await.unwrap();
        b.refund(t0 + 90, &key("edge"), hour, 2).await.unwrap();
        assert_eq!(
            b.check(t0 + 90, &[check("edge", 1000, 0)]).await.unwrap(),
            Verdict::Allowed { used: vec![1] }
        );
        b.add(t0 + 3000, &key("edge"), hour, 1).await.unwrap();
        b.refund(t0 + 3610, &key("edge"), hour, 5).await.unwrap();
        assert_eq!(
            b.check(t0 + 3610, &[check("edge", 1000, 0)]).await.unwrap(),
            Verdict::Allowed { used: vec![0] }
        );
        assert_eq!(
            b.check(t0 + 3610, &[check("edge", 1000, 1)]).await.unwrap(),
            Verdict::Allowed { used: vec![1] },
            "the sum kept in step"
        );

        // A read-only check refuses a spent budget, with the wait until it has room.
        b.add(t0, &key("full"), hour, 10).await.unwrap();
        assert_eq!(
            b.check(t0 + 30, &[check("full", 10, 0)]).await.unwrap(),
            Verdict::Limited {
                index: 0,
                retry_after: 3570,
                used: vec![10],
            }
        );
    }

    #[tokio::test]
    async fn the_memory_backend_keeps_the_contract() {
        contract(&memory::MemoryBackend::default(), "gk:test").await;
    }

    /// A budget's hash as the earlier scripts left it (buckets only), or as a node running them
    /// leaves it during a rolling upgrade (the sum and its bound deleted as if they were old
    /// buckets, a bucket added behind them), is counted again, not read from a stale sum.
    #[tokio::test]
    async fn the_redis_budgets_count_what_earlier_scripts_wrote() {
        let Some(url) = gramkey_store::test_support::redis_url(
            "the_redis_budgets_count_what_earlier_scripts_wrote",
        ) else {
            return;
        };
        let b = redis::RedisBackend::connect(&url).await.unwrap();
        let key = format!(
            "gk:test:{}:old",
            gramkey_domain::entropy::random_alnum(&gramkey_domain::OsEntropy, 16)
        );
        let mut conn = ::redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let raw = |args: &[&str]| {
            let mut cmd = ::redis::cmd(args[0]);
            cmd.arg(&args[1..]);
            cmd
        };
        let t0: i64 = 1_800_000_000;
        let (b0, b1) = ((t0 / 60).to_string(), (t0 / 60 + 1).to_string());
        let _: () = raw(&["HSET", &key, &b0, "4", &b1, "5"])
            .query_async(&mut conn)
            .await
            .unwrap();
        let check = |cost| Check {
            key: key.clone().into(),
            spec: WindowSpec::HOUR,
            limit: 1000,
            cost,
            offset: 0,
        };
        // The charge also gives the key its expiry.
        assert_eq!(
            b.check(t0 + 90, &[check(1)]).await.unwrap(),
            Verdict::Allowed { used: vec![10] }
        );
        // An earlier node's call: our two fields gone, one more in a bucket.
        let _: () = raw(&["HDEL", &key, "-1", "-2"])
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = raw(&["HINCRBY", &key, &b1, "2"])
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            b.check(t0 + 95, &[check(0)]).await.unwrap(),
            Verdict::Allowed { used: vec![12] }
        );
    }

    #[tokio::test]
    async fn the_redis_backend_keeps_the_contract() {
        let Some(url) =
            gramkey_store::test_support::redis_url("the_redis_backend_keeps_the_contract")
        else {
            return;
        };
        let b = redis::RedisBackend::connect(&url).await.unwrap();
        // A fresh prefix per run: keys of earlier runs expire on their own.
        let prefix = format!(
            "gk:test:{}",
            gramkey_domain::entropy::random_alnum(&gramkey_domain::OsEntropy, 16)
        );
        contract(&b, &prefix).await;
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
        assert_eq!(s.usage_header(1_000_000, 5_000_000, None).0, "x-app-usage");
        let business = Standing {
            business_user: Some("17841400000000001".into()),
            ..s
        };
        let (name, value) = business.usage_header(1_000_000, 5_000_000, Some(61));
        assert_eq!(name, "x-business-use-case-usage");
        assert_eq!(
            value,
            r#"{"17841400000000001":[{"type":"instagram","call_count":28,"total_cputime":50,"total_time":10,"estimated_time_to_regain_access":2}]}"#
        );
    }
}
