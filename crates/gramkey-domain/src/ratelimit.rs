//! Rate limits (wire protocol §6): which budgets a request draws on, and the arithmetic of the
//! rolling windows that hold them.
//!
//! ## The algorithm: a sliding window of fixed buckets
//! A window of `window_secs` is cut into `buckets` equal buckets (the hour into 60 minutes).
//! A budget holds one counter per bucket that has seen use. At time `t` the window is the
//! bucket holding `t` and the `buckets − 1` before it; older buckets are dropped. A cost is
//! admitted when the sum of the window plus the cost stays within the limit, so no run of
//! `buckets` consecutive buckets ever holds more than the limit: "calls per rolling hour" to
//! the minute. Unlike GCRA, a burst of the whole budget is allowed, and it is regained as its
//! buckets leave the window, not in a trickle; unlike a sliding log it costs at most
//! `buckets` counters per budget, which is what makes one Redis hash per budget practical.
//!
//! The in-process limiter keeps [`Window`]s in memory; the Redis limiter keeps the same
//! buckets as hash fields and runs the same arithmetic in one script. [`retry_after`] is
//! computed here for both, from the buckets.

use std::collections::VecDeque;

use crate::app::AppMode;
use crate::{AppId, UnixTime};

/// The shape of a rolling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub window_secs: i64,
    pub buckets: i64,
}

impl WindowSpec {
    /// The rolling hour of wire protocol §6, to the minute.
    pub const HOUR: Self = Self {
        window_secs: 3600,
        buckets: 60,
    };
    /// The window failed sign-ins and client authentications are counted over.
    pub const FIFTEEN_MINUTES: Self = Self {
        window_secs: 900,
        buckets: 15,
    };

    pub fn bucket_secs(&self) -> i64 {
        (self.window_secs / self.buckets.max(1)).max(1)
    }
    pub fn bucket_of(&self, now: UnixTime) -> i64 {
        now.div_euclid(self.bucket_secs())
    }
    /// The oldest bucket still inside the window at `now`.
    pub fn oldest_live(&self, now: UnixTime) -> i64 {
        self.bucket_of(now) - self.buckets + 1
    }
}

/// Whether `cost` more fits in a window holding `used` of `limit`. A check of cost 0 (a budget
/// that is only read, such as time spent) passes while the budget is not yet spent.
pub fn fits(used: u64, cost: u64, limit: u64) -> bool {
    used.saturating_add(cost.max(1)) <= limit
}

/// How long until `cost` fits, from a window's live buckets `(bucket, amount)`, oldest first:
/// the moment enough of the oldest buckets have left the window. At least 1 second; a cost
/// larger than the whole limit waits a whole window.
pub fn retry_after(
    spec: WindowSpec,
    buckets: &[(i64, u64)],
    cost: u64,
    limit: u64,
    now: UnixTime,
) -> i64 {
    let mut used: u64 = buckets.iter().map(|(_, n)| n).sum();
    for (bucket, amount) in buckets {
        if fits(used, cost, limit) {
            break;
        }
        used = used.saturating_sub(*amount);
        if fits(used, cost, limit) {
            let leaves_at = (bucket + spec.buckets) * spec.bucket_secs();
            return (leaves_at - now).max(1);
        }
    }
    if fits(used, cost, limit) {
        1
    } else {
        spec.window_secs
    }
}

/// One budget's live buckets, oldest first, and their sum (so a check of an hour's sixty
/// buckets is one subtraction per bucket that left, not a sum of all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    buckets: VecDeque<(i64, u64)>,
    total: u64,
}

impl Window {
    /// Drops the buckets that left the window.
    fn expire(&mut self, spec: WindowSpec, now: UnixTime) {
        let oldest = spec.oldest_live(now);
        while let Some((_, n)) = self.buckets.front().filter(|(b, _)| *b < oldest) {
            self.total = self.total.saturating_sub(*n);
            self.buckets.pop_front();
        }
    }
    pub fn used(&mut self, spec: WindowSpec, now: UnixTime) -> u64 {
        self.expire(spec, now);
        self.total
    }
    pub fn add(&mut self, spec: WindowSpec, now: UnixTime, amount: u64) {
        self.expire(spec, now);
        let current = spec.bucket_of(now);
        self.total = self.total.saturating_add(amount);
        match self.buckets.back_mut() {
            Some((b, n)) if *b == current => *n = n.saturating_add(amount),
            // A clock that stepped back adds to the newest bucket rather than reorder them.
            Some((b, n)) if *b > current => *n = n.saturating_add(amount),
            _ => self.buckets.push_back((current, amount)),
        }
    }
    /// Takes back `amount` from the newest buckets (an attempt charged before it was judged,
    /// that turned out fine).
    pub fn take_back(&mut self, spec: WindowSpec, now: UnixTime, mut amount: u64) {
        self.expire(spec, now);
        for (_, n) in self.buckets.iter_mut().rev() {
            let taken = amount.min(*n);
            *n -= taken;
            self.total = self.total.saturating_sub(taken);
            amount -= taken;
            if amount == 0 {
                break;
            }
        }
        self.buckets.retain(|(_, n)| *n > 0);
    }
    pub fn retry_after(&mut self, spec: WindowSpec, cost: u64, limit: u64, now: UnixTime) -> i64 {
        self.expire(spec, now);
        let live: Vec<(i64, u64)> = self.buckets.iter().copied().collect();
        retry_after(spec, &live, cost, limit, now)
    }
    /// What the window holds before bucket `from` and from it on: `(from on, before)`.
    pub fn split(&mut self, spec: WindowSpec, now: UnixTime, from: i64) -> (u64, u64) {
        self.expire(spec, now);
        self.buckets.iter().fold((0, 0), |(recent, older), (b, n)| {
            if *b >= from {
                (recent + n, older)
            } else {
                (recent, older + n)
            }
        })
    }
    /// No live bucket: the window can be forgotten.
    pub fn is_idle(&mut self, spec: WindowSpec, now: UnixTime) -> bool {
        self.expire(spec, now);
        self.buckets.is_empty()
    }
}

/// A usage percentage as `X-App-Usage` reports it: 0–100, 100 when the budget is spent.
pub fn percent(used: u64, limit: u64) -> u64 {
    if limit == 0 {
        return 100;
    }
    (used.saturating_mul(100) / limit).min(100)
}

/// The limits of a deployment. The defaults are Instagram's where it documents them (wire
/// protocol §6) and ours where it does not (marked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The app pool: calls per rolling hour per user who authorized the app (Graph: 200).
    pub app_calls_per_user: u64,
    /// Wall-clock time an app's requests may take per rolling hour, per call of its pool (ours:
    /// 100 ms), reported as `total_time`.
    pub app_time_ms_per_call: u64,
    /// CPU time per call of the pool (ours: 50 ms), reported as `total_cputime`.
    pub app_cpu_ms_per_call: u64,
    /// Calls per rolling hour by one user through one app, any endpoint (ours: 1,000): code 17.
    pub user_calls: u64,
    /// Writes (publishing, comments) per rolling hour by one user through one app: legacy v1's
    /// 60 for live apps and 30 in development mode, applied to Graph writes too.
    pub writes_live: u64,
    pub writes_development: u64,
    /// Legacy v1 calls per rolling hour per token: 5,000 live, 500 in development mode.
    pub legacy_token_live: u64,
    pub legacy_token_development: u64,
    /// Failed client authentications per 15 minutes per address (ours). Not per client: client
    /// ids are public, and a per-client limit would let anyone lock an app out.
    pub client_auth_failures_per_ip: u64,
    /// Failed sign-ins per 15 minutes, per account and per IP address (ours). An account over
    /// its limit is locked until its oldest failure is 15 minutes old.
    pub login_failures_per_account: u64,
    pub login_failures_per_ip: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            app_calls_per_user: 200,
            app_time_ms_per_call: 100,
            app_cpu_ms_per_call: 50,
            user_calls: 1_000,
            writes_live: 60,
            writes_development: 30,
            legacy_token_live: 5_000,
            legacy_token_development: 500,
            client_auth_failures_per_ip: 30,
            login_failures_per_account: 5,
            login_failures_per_ip: 20,
        }
    }
}

/// What a resource request is, for the budgets it draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallClass {
    /// A Graph or Basic Display read, or an app token's call.
    Read,
    /// Publishing, commenting, deleting.
    Write,
    /// A legacy v1 call.
    Legacy,
}

/// Which budget ran out, and so which error answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// The app pool's calls, time or CPU time: Graph code 4.
    App,
    /// One user's calls or writes through one app: Graph code 17.
    User,
    /// One legacy token's calls.
    LegacyToken,
}

/// One budget a call draws on: `cost` more must fit under `limit` in the window `key` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    pub key: BudgetKey,
    pub limit: u64,
    pub cost: u64,
    pub budget: Budget,
}

/// The index, in [`Limits::draws`], of the app pool's calls, wall-clock time and CPU time.
pub const APP_CALLS: usize = 0;
pub const APP_TIME: usize = 1;
pub const APP_CPU: usize = 2;

/// The name of a budget's window. An app's budgets are a value, not a string: every resource
/// call draws on four or five, and building and hashing their names cost more than the check
/// itself. A backend that needs a string (Redis) formats it: `gk:app:{app}:{what}`, then
/// `:{n}` when given; any other window (the attempt throttles') is named by its string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BudgetKey {
    App {
        app: AppId,
        what: Counted,
        n: Option<i64>,
    },
    Named(String),
}

/// What one of an app's budgets counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counted {
    /// The app pool's calls.
    Calls,
    /// The app pool's wall-clock time, in microseconds.
    TimeUs,
    /// The app pool's CPU time, in microseconds.
    CpuUs,
    /// One user's calls.
    User,
    /// One user's writes.
    Writes,
    /// One legacy token's calls.
    Token,
}

impl Counted {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Calls => "calls",
            Self::TimeUs => "time_us",
            Self::CpuUs => "cpu_us",
            Self::User => "user",
            Self::Writes => "writes",
            Self::Token => "token",
        }
    }
}

impl From<&str> for BudgetKey {
    fn from(name: &str) -> Self {
        Self::Named(name.to_owned())
    }
}

impl From<String> for BudgetKey {
    fn from(name: String) -> Self {
        Self::Named(name)
    }
}

impl BudgetKey {
    /// One of `app`'s budgets.
    pub fn app(app: &AppId, what: Counted) -> Self {
        Self::numbered(app, what, None)
    }
    fn numbered(app: &AppId, what: Counted, n: Option<i64>) -> Self {
        Self::App {
            app: app.clone(),
            what,
            n,
        }
    }
    /// Whether this is one of `app`'s budgets.
    pub fn is_of(&self, app: &AppId) -> bool {
        matches!(self, Self::App { app: a, .. } if a == app)
    }
    /// The start of the name of every one of `app`'s budgets.
    pub fn app_prefix(app: &AppId) -> String {
        format!("gk:app:{app}:")
    }
}

impl std::fmt::Display for BudgetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::App { app, what, n } => {
                write!(f, "gk:app:{app}:{}", what.as_str())?;
                match n {
                    Some(n) => write!(f, ":{n}"),
                    None => Ok(()),
                }
            }
            Self::Named(name) => f.write_str(name),
        }
    }
}

impl Limits {
    /// The rolling-hour budgets a resource call draws on, all checked and charged together:
    /// the app pool's calls, time and CPU time (always, in that order; time is charged after
    /// the call, so the check only asks that it is not yet spent), then one user's calls and,
    /// for a write, writes, then a legacy token's calls. `user` is none for an app token;
    /// `token` (the stored token's row) is none for `APP_ID|APP_SECRET`, which nothing stores
    /// and which has no budget of its own.
    pub fn draws(
        &self,
        app: &AppId,
        mode: AppMode,
        users: u64,
        user: Option<i64>,
        token: Option<i64>,
        class: CallClass,
    ) -> Vec<Draw> {
        let draw = |key: BudgetKey, limit: u64, cost: u64, budget: Budget| Draw {
            key,
            limit,
            cost,
            budget,
        };
        let (time_ms, cpu_ms) = self.app_time_ms(users);
        let mut draws = vec![
            draw(
                BudgetKey::app(app, Counted::Calls),
                self.app_calls(users),
                1,
                Budget::App,
            ),
            draw(
                BudgetKey::app(app, Counted::TimeUs),
                time_ms.saturating_mul(1000),
                0,
                Budget::App,
            ),
            draw(
                BudgetKey::app(app, Counted::CpuUs),
                cpu_ms.saturating_mul(1000),
                0,
                Budget::App,
            ),
        ];
        if let Some(uid) = user {
            draws.push(draw(
                BudgetKey::numbered(app, Counted::User, Some(uid)),
                self.user_calls,
                1,
                Budget::User,
            ));
            if class == CallClass::Write {
                draws.push(draw(
                    BudgetKey::numbered(app, Counted::Writes, Some(uid)),
                    self.writes(mode),
                    1,
                    Budget::User,
                ));
            }
        }
        if let (CallClass::Legacy, Some(token)) = (class, token) {
            draws.push(draw(
                BudgetKey::numbered(app, Counted::Token, Some(token)),
                self.legacy_token(mode),
                1,
                Budget::LegacyToken,
            ));
        }
        draws
    }

    /// The app pool's calls per rolling hour for an app `users` people authorized. An app
    /// nobody has authorized yet still gets one user's worth, for its app token.
    pub fn app_calls(&self, users: u64) -> u64 {
        self.app_calls_per_user.saturating_mul(users.max(1))
    }
    /// Milliseconds of wall-clock time, and of CPU time, for the same app per rolling hour.
    pub fn app_time_ms(&self, users: u64) -> (u64, u64) {
        let calls = self.app_calls(users);
        (
            calls.saturating_mul(self.app_time_ms_per_call),
            calls.saturating_mul(self.app_cpu_ms_per_call),
        )
    }
    pub fn writes(&self, mode: AppMode) -> u64 {
        match mode {
            AppMode::Live => self.writes_live,
            AppMode::Development => self.writes_development,
        }
    }
    pub fn legacy_token(&self, mode: AppMode) -> u64 {
        match mode {
            AppMode::Live => self.legacy_token_live,
            AppMode::Development => self.legacy_token_development,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: WindowSpec = WindowSpec::HOUR;

    #[test]
    fn a_window_admits_exactly_its_limit_and_regains_it_as_buckets_leave() {
        let mut w = Window::default();
        let t0 = 1_700_000_000 - 1_700_000_000 % 60; // a minute boundary
        for i in 0..10 {
            assert!(fits(w.used(H, t0 + i), 1, 10));
            w.add(H, t0 + i, 1);
        }
        assert!(!fits(w.used(H, t0 + 30), 1, 10));
        // All ten calls sit in the bucket starting at t0; it leaves the window an hour later.
        assert_eq!(w.retry_after(H, 1, 10, t0 + 30), 3600 - 30);
        assert_eq!(w.used(H, t0 + 3599), 10);
        assert_eq!(w.used(H, t0 + 3600), 0);
        assert!(w.is_idle(H, t0 + 3600));
    }

    #[test]
    fn retry_after_waits_for_just_enough_old_buckets() {
        let t0 = 1_700_000_000 - 1_700_000_000 % 60;
        let mut w = Window::default();
        w.add(H, t0, 3); // minute 0
        w.add(H, t0 + 600, 4); // minute 10
        w.add(H, t0 + 1200, 3); // minute 20
        let now = t0 + 1800;
        assert_eq!(w.used(H, now), 10);
        // One more needs one bucket gone: minute 0's leaves at t0 + 3600.
        assert_eq!(w.retry_after(H, 1, 10, now), 1800);
        // Five more need minutes 0 and 10 gone.
        assert_eq!(w.retry_after(H, 5, 10, now), 2400);
        // More than the limit can never fit: a whole window.
        assert_eq!(w.retry_after(H, 11, 10, now), 3600);
    }

    #[test]
    fn a_read_only_check_passes_until_the_budget_is_spent() {
        assert!(fits(99, 0, 100));
        assert!(!fits(100, 0, 100));
        assert!(fits(9, 1, 10));
        assert!(!fits(10, 1, 10));
    }

    #[test]
    fn percentages_are_whole_and_capped() {
        assert_eq!(percent(0, 200), 0);
        assert_eq!(percent(57, 200), 28);
        assert_eq!(percent(200, 200), 100);
        assert_eq!(percent(500, 200), 100);
        assert_eq!(percent(1, 0), 100);
    }

    #[test]
    fn the_app_pool_grows_with_its_users() {
        let l = Limits::default();
        assert_eq!(l.app_calls(0), 200);
        assert_eq!(l.app_calls(7), 1400);
        assert_eq!(l.app_time_ms(7), (140_000, 70_000));
        assert_eq!(l.legacy_token(AppMode::Development), 500);
        assert_eq!(l.writes(AppMode::Live), 60);
    }

    #[test]
    fn the_running_total_is_the_sum_of_the_live_buckets() {
        let mut w = Window::default();
        let mut t = 0;
        for step in 0..500_i64 {
            t += step % 7 * 13;
            match step % 5 {
                0..=2 => w.add(H, t, (step % 4) as u64),
                3 => w.take_back(H, t, 2),
                _ => {}
            }
            let used = w.used(H, t);
            let sum: u64 = w.buckets.iter().map(|(_, n)| n).sum();
            assert_eq!(used, sum, "step {step}");
        }
    }

    #[test]
    fn taking_back_empties_the_newest_buckets_first() {
        let mut w = Window::default();
        w.add(H, 0, 2);
        w.add(H, 120, 1);
        w.take_back(H, 130, 2);
        assert_eq!(w.used(H, 130), 1);
        w.take_back(H, 130, 5);
        assert!(w.is_idle(H, 130));
    }

    #[test]
    fn an_apps_budgets_are_named_under_its_prefix() {
        let l = Limits::default();
        let app = AppId::parse("1234567890123456").unwrap();
        let other = AppId::parse("123456789012345").unwrap();
        let draws = l.draws(&app, AppMode::Live, 1, Some(7), Some(9), CallClass::Legacy);
        for d in &draws {
            assert!(d.key.is_of(&app) && !d.key.is_of(&other), "{}", d.key);
            assert!(d.key.to_string().starts_with(&BudgetKey::app_prefix(&app)));
            assert!(
                !d.key
                    .to_string()
                    .starts_with(&BudgetKey::app_prefix(&other))
            );
        }
        assert!(!BudgetKey::Named("gk:app:1234567890123456:calls".into()).is_of(&app));
        assert_eq!(BudgetKey::Named("login:x".into()).to_string(), "login:x");
    }

    #[test]
    fn each_kind_of_call_draws_on_its_budgets() {
        let l = Limits::default();
        let app = AppId::parse("1234567890123456").unwrap();
        let budgets = |user, token, class| -> Vec<(String, u64, u64, Budget)> {
            l.draws(&app, AppMode::Development, 3, user, token, class)
                .into_iter()
                .map(|d| (d.key.to_string(), d.limit, d.cost, d.budget))
                .collect()
        };
        let pool = vec![
            ("gk:app:1234567890123456:calls".into(), 600, 1, Budget::App),
            (
                "gk:app:1234567890123456:time_us".into(),
                60_000_000,
                0,
                Budget::App,
            ),
            (
                "gk:app:1234567890123456:cpu_us".into(),
                30_000_000,
                0,
                Budget::App,
            ),
        ];
        // An app token: the pool only.
        assert_eq!(budgets(None, Some(9), CallClass::Read), pool);
        let user = (
            "gk:app:1234567890123456:user:7".to_owned(),
            1000,
            1,
            Budget::User,
        );
        let mut read = pool.clone();
        read.push(user.clone());
        assert_eq!(budgets(Some(7), Some(9), CallClass::Read), read);
        let mut write = read.clone();
        write.push((
            "gk:app:1234567890123456:writes:7".into(),
            30,
            1,
            Budget::User,
        ));
        assert_eq!(budgets(Some(7), Some(9), CallClass::Write), write);
        let mut legacy = read.clone();
        legacy.push((
            "gk:app:1234567890123456:token:9".into(),
            500,
            1,
            Budget::LegacyToken,
        ));
        assert_eq!(budgets(Some(7), Some(9), CallClass::Legacy), legacy);
        // The pseudo-token APP_ID|APP_SECRET has no budget of its own.
        assert_eq!(budgets(Some(7), None, CallClass::Legacy), read);
    }

    #[test]
    fn a_clock_stepping_back_does_not_reorder_buckets() {
        let mut w = Window::default();
        w.add(H, 10_000, 1);
        w.add(H, 9_990, 1);
        assert_eq!(w.used(H, 10_000), 2);
    }
}
