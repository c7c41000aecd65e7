//! The sandbox's test tools, for apps in development mode only: a test clock per app and
//! fault injection. A live app is refused every tool ([`tools_allowed`]), so a production
//! deployment is never affected.
//!
//! - **Test clock.** An app's time is the real time plus its offset, which only grows
//!   ([`advance`]) until it is reset to zero. Everything about the app reads it: its codes' and
//!   tokens' times, the refresh rules, its rate windows, its insights, its deliveries' schedule.
//! - **Faults.** A rule ([`FaultRule`]) matches calls by route and method, and fires for the
//!   next `count` of them, with a `probability`, or for every one until it expires or is
//!   cleared. What a fault answers ([`Fault::effect`]) is what gramkey answers for the real
//!   condition, built by the same constructors.

use crate::app::AppMode;
use crate::error::GraphError;
use crate::graph::access::Need;
use crate::ratelimit::Budget;
use crate::time::UnixTime;
use crate::token::{Flavour, RevokeReason, TokenRefusal};

/// How far a test clock may be from the real one: ten years.
pub const MAX_OFFSET_SECS: i64 = 10 * 365 * 86_400;
/// The longest latency or hold a fault may ask for: two minutes.
pub const MAX_FAULT_MS: u64 = 120_000;
/// How many rules an app may have at once.
pub const MAX_RULES: usize = 50;

/// The sandbox's tools work for development-mode apps only.
pub fn tools_allowed(mode: AppMode) -> Result<(), GraphError> {
    match mode {
        AppMode::Development => Ok(()),
        AppMode::Live => Err(GraphError::invalid_parameter(
            "Test clocks, faults and the call log are sandbox tools: they work only for apps in development mode, and this app is live",
        )),
    }
}

/// An app's time: the real time, plus its test clock's offset while it is in development
/// mode (a live app always reads real time, whatever offset it was left with).
pub fn app_time(real: UnixTime, mode: AppMode, offset: i64) -> UnixTime {
    match mode {
        AppMode::Development => real.saturating_add(offset),
        AppMode::Live => real,
    }
}

/// The offset after advancing one of `offset` by `by` seconds: forward only, and never past
/// [`MAX_OFFSET_SECS`].
pub fn advance(offset: i64, by: i64) -> Result<i64, String> {
    if by <= 0 {
        return Err("advance must be a positive number of seconds: a test clock only moves forward until it is reset".into());
    }
    match offset.checked_add(by) {
        Some(o) if o <= MAX_OFFSET_SECS => Ok(o),
        _ => Err(format!(
            "a test clock may be at most {} days ahead of real time",
            MAX_OFFSET_SECS / 86_400
        )),
    }
}

/// How far a clock is ahead, in days, hours and minutes ("1 day 1 hour").
pub fn describe_offset(secs: i64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    let parts: Vec<String> = [(d, "day"), (h, "hour"), (m, "minute")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}{}", if n == 1 { "" } else { "s" }))
        .collect();
    if parts.is_empty() {
        format!("{secs} seconds")
    } else {
        parts.join(" ")
    }
}

/// A fault that can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Code 4: the app's budget is spent.
    AppRateLimit,
    /// Code 17: the user's budget is spent.
    UserRateLimit,
    /// 190/463.
    ExpiredToken,
    /// 190/460.
    PasswordChanged,
    /// 190/458.
    Deauthorized,
    /// Code 10: the token lacks the permission.
    Permission,
    /// Code 2, HTTP 500.
    ServerError,
    /// Code 2, HTTP 503.
    Unavailable,
    /// The call is answered as usual, `ms` later.
    Latency,
    /// The connection is held `ms`, then closed without an answer.
    Timeout,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::AppRateLimit,
        Fault::UserRateLimit,
        Fault::ExpiredToken,
        Fault::PasswordChanged,
        Fault::Deauthorized,
        Fault::Permission,
        Fault::ServerError,
        Fault::Unavailable,
        Fault::Latency,
        Fault::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Fault::AppRateLimit => "app_rate_limit",
            Fault::UserRateLimit => "user_rate_limit",
            Fault::ExpiredToken => "expired_token",
            Fault::PasswordChanged => "password_changed",
            Fault::Deauthorized => "deauthorized",
            Fault::Permission => "permission",
            Fault::ServerError => "server_error",
            Fault::Unavailable => "unavailable",
            Fault::Latency => "latency",
            Fault::Timeout => "timeout",
        }
    }

    pub fn parse(s: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Whether the fault takes a duration (`ms`).
    pub fn timed(self) -> bool {
        matches!(self, Fault::Latency | Fault::Timeout)
    }

    /// Whether the fault announces a wait (`retry_after`).
    pub fn limits(self) -> bool {
        matches!(self, Fault::AppRateLimit | Fault::UserRateLimit)
    }

    /// What the fault does to a call made at `now` with a token of `flavour`; `ms` is the
    /// rule's duration (a latency, a hold, or a rate limit's wait).
    pub fn effect(self, ms: u64, now: UnixTime, flavour: Flavour) -> Effect {
        let refuse = |error: GraphError| Effect::Refuse { error, spent: None };
        let wait = i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX);
        match self {
            Fault::AppRateLimit => Effect::Refuse {
                error: GraphError::app_rate_limited(),
                spent: Some((Budget::App, wait)),
            },
            Fault::UserRateLimit => Effect::Refuse {
                error: GraphError::user_rate_limited(),
                spent: Some((Budget::User, wait)),
            },
            Fault::ExpiredToken => refuse(
                TokenRefusal::Expired {
                    expired_at: now - 1,
                    now,
                }
                .into(),
            ),
            Fault::PasswordChanged => {
                refuse(TokenRefusal::Revoked(RevokeReason::PasswordChanged).into())
            }
            Fault::Deauthorized => refuse(TokenRefusal::Revoked(RevokeReason::AppRemoved).into()),
            Fault::Permission => refuse(GraphError::permission(Need::Profile.permission(flavour))),
            Fault::ServerError => refuse(GraphError::internal()),
            Fault::Unavailable => refuse(GraphError::unavailable()),
            Fault::Latency => Effect::Delay(ms),
            Fault::Timeout => Effect::Hold(ms),
        }
    }
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// The call is refused with `error`; a rate-limit fault names the budget it reports spent
    /// (usage headers at 100 %) and the wait it announces (`Retry-After`, seconds).
    Refuse {
        error: GraphError,
        spent: Option<(Budget, i64)>,
    },
    /// Answered as usual, this many milliseconds later.
    Delay(u64),
    /// No answer: the connection is held this many milliseconds, then closed.
    Hold(u64),
}

/// A rule as asked for (`POST /{app-id}/test_faults`), checked.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    /// A route (`/me/media`, `/{id}/comments` written with the id), a prefix ending in `/*`,
    /// or `*` for every call.
    pub path: String,
    /// `GET`, `POST` or `DELETE`; none for any method.
    pub method: Option<String>,
    pub fault: Fault,
    /// A latency's or a hold's milliseconds; a rate limit's wait (`retry_after`, 60 s unless
    /// given), in milliseconds too.
    pub ms: u64,
    /// The next this many matching calls.
    pub count: Option<i64>,
    /// Each matching call with this probability.
    pub probability: Option<f64>,
    /// Seconds until the rule lapses.
    pub expires_in: Option<i64>,
}

impl FaultSpec {
    /// Reads a rule from a request's parameters; the error names what is wrong.
    pub fn from_params(params: &[(String, String)]) -> Result<FaultSpec, String> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
        };
        let number = |name: &str| -> Result<Option<i64>, String> {
            get(name)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| format!("{name} must be a whole number"))
                })
                .transpose()
        };
        let fault = get("fault").ok_or("fault is required")?;
        let fault = Fault::parse(fault).ok_or_else(|| {
            let all: Vec<&str> = Fault::ALL.iter().map(|f| f.as_str()).collect();
            format!("fault must be one of: {}", all.join(", "))
        })?;
        let path = get("path").unwrap_or("*");
        let path = if path == "*" {
            path.to_owned()
        } else {
            normalize_path(path)
                .ok_or("path must be * or a route starting with /, such as /me/media")?
        };
        let method = match get("method") {
            None | Some("") => None,
            Some(m) => match m.to_ascii_uppercase().as_str() {
                m @ ("GET" | "POST" | "DELETE") => Some(m.to_owned()),
                _ => return Err("method must be GET, POST or DELETE".into()),
            },
        };
        let ms = match (number("ms")?, fault.timed()) {
            (Some(ms), true) if ms > 0 && ms.unsigned_abs() <= MAX_FAULT_MS => ms.unsigned_abs(),
            (None, true) => return Err(format!("the {} fault needs ms", fault.as_str())),
            (Some(_), true) => return Err(format!("ms must be between 1 and {MAX_FAULT_MS}")),
            (Some(_), false) => {
                return Err(format!(
                    "ms applies to latency and timeout, not {}",
                    fault.as_str()
                ));
            }
            (None, false) => 0,
        };
        let ms = match (number("retry_after")?, fault.limits()) {
            (None, true) => 60_000,
            (Some(s), true) if (1..=3600).contains(&s) => s.unsigned_abs() * 1000,
            (Some(_), true) => return Err("retry_after must be between 1 and 3600 seconds".into()),
            (Some(_), false) => {
                return Err(format!(
                    "retry_after applies to the rate-limit faults, not {}",
                    fault.as_str()
                ));
            }
            (None, false) => ms,
        };
        let count = number("count")?;
        if count.is_some_and(|c| !(1..=1_000_000).contains(&c)) {
            return Err("count must be between 1 and 1000000".into());
        }
        let probability = get("probability")
            .map(|p| {
                p.parse::<f64>()
                    .ok()
                    .filter(|p| *p > 0.0 && *p <= 1.0)
                    .ok_or("probability must be a number above 0 and at most 1")
            })
            .transpose()?;
        if count.is_some() && probability.is_some() {
            return Err("give count or probability, not both".into());
        }
        let expires_in = number("expires_in")?;
        if expires_in.is_some_and(|s| !(1..=MAX_OFFSET_SECS).contains(&s)) {
            return Err("expires_in must be a positive number of seconds".into());
        }
        Ok(FaultSpec {
            path,
            method,
            fault,
            ms,
            count,
            probability,
            expires_in,
        })
    }
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    pub id: i64,
    pub path: String,
    pub method: Option<String>,
    pub fault: Fault,
    pub ms: u64,
    /// Matching calls it still fires for; none when it is not counted.
    pub remaining: Option<i64>,
    pub probability: Option<f64>,
    pub expires_at: Option<UnixTime>,
    pub created_at: UnixTime,
}

impl FaultRule {
    /// Whether the rule is still in force at `now`.
    pub fn active(&self, now: UnixTime) -> bool {
        self.remaining.is_none_or(|r| r > 0) && self.expires_at.is_none_or(|t| now < t)
    }

    /// Whether a call of `method` to `path` (as [`normalize_path`] gives it) matches.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        let method_ok = self
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method));
        let path_ok = match self.path.strip_suffix("/*") {
            _ if self.path == "*" => true,
            Some(prefix) => path
                .strip_prefix(prefix)
                .is_some_and(|r| r.starts_with('/')),
            None => self.path == path,
        };
        method_ok && path_ok
    }

    /// Whether a probabilistic rule fires for a call that drew `roll` (uniform in [0, 1)).
    pub fn fires(&self, roll: f64) -> bool {
        self.probability.is_none_or(|p| roll < p)
    }
}

/// A request path as rules name it: without the Graph version (`/v22.0`), a trailing slash or
/// v1's `.json`. `None` for what is not a path.
pub fn normalize_path(path: &str) -> Option<String> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return None;
    }
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // `/v22.0/…` is Graph's version; `/v1/…` is the legacy API's own path, and stays.
    let versioned = |s: &str| {
        s.strip_prefix('v')
            .and_then(|r| r.split_once('.'))
            .is_some_and(|(a, b)| {
                !a.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
            })
    };
    if segments.first().is_some_and(|s| versioned(s)) {
        segments.remove(0);
    }
    if let Some(last) = segments.last_mut()
        && let Some(bare) = last.strip_suffix(".json")
    {
        *last = bare;
    }
    Some(format!("/{}", segments.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn rule(path: &str, method: Option<&str>) -> FaultRule {
        FaultRule {
            id: 1,
            path: path.into(),
            method: method.map(str::to_owned),
            fault: Fault::ServerError,
            ms: 0,
            remaining: None,
            probability: None,
            expires_at: None,
            created_at: 0,
        }
    }

    #[test]
    fn only_development_apps_get_the_tools() {
        assert!(tools_allowed(AppMode::Development).is_ok());
        let e = tools_allowed(AppMode::Live).unwrap_err();
        assert_eq!(e.code, 100);
        assert!(e.message.contains("development mode"));
    }

    #[test]
    fn only_development_apps_read_their_clock() {
        assert_eq!(app_time(100, AppMode::Development, 50), 150);
        assert_eq!(app_time(100, AppMode::Live, 50), 100);
    }

    #[test]
    fn offsets_read_in_days_hours_and_minutes() {
        assert_eq!(describe_offset(90_000), "1 day 1 hour");
        assert_eq!(
            describe_offset(62 * 86_400 + 3600 + 120),
            "62 days 1 hour 2 minutes"
        );
        assert_eq!(describe_offset(59), "59 seconds");
    }

    #[test]
    fn a_clock_only_moves_forward_and_not_too_far() {
        assert_eq!(advance(0, 90_000), Ok(90_000));
        assert_eq!(advance(90_000, 3_600), Ok(93_600));
        assert!(advance(0, 0).is_err());
        assert!(advance(10, -5).unwrap_err().contains("forward"));
        assert!(advance(MAX_OFFSET_SECS, 1).is_err());
        assert!(advance(i64::MAX, i64::MAX).is_err());
    }

    #[test]
    fn paths_lose_their_version_slash_and_json() {
        assert_eq!(
            normalize_path("/v22.0/me/media").as_deref(),
            Some("/me/media")
        );
        assert_eq!(normalize_path("/me/media/").as_deref(), Some("/me/media"));
        assert_eq!(
            normalize_path("/v1/users/self.json").as_deref(),
            Some("/v1/users/self")
        );
        assert_eq!(
            normalize_path("/v1/users/self").as_deref(),
            Some("/v1/users/self")
        );
        assert_eq!(normalize_path("/me?fields=id").as_deref(), Some("/me"));
        assert_eq!(normalize_path("me"), None);
    }

    #[test]
    fn rules_match_by_route_prefix_and_method() {
        assert!(rule("*", None).matches("GET", "/me"));
        assert!(rule("/me/media", None).matches("GET", "/me/media"));
        assert!(!rule("/me/media", None).matches("GET", "/me"));
        assert!(rule("/me/*", None).matches("POST", "/me/media_publish"));
        assert!(!rule("/me/*", None).matches("GET", "/me"));
        assert!(!rule("/me/*", None).matches("GET", "/media"));
        assert!(rule("/me", Some("GET")).matches("get", "/me"));
        assert!(!rule("/me", Some("POST")).matches("GET", "/me"));
    }

    #[test]
    fn rules_lapse_by_count_and_time() {
        let mut r = rule("*", None);
        assert!(r.active(100));
        r.remaining = Some(0);
        assert!(!r.active(100));
        r.remaining = Some(2);
        r.expires_at = Some(100);
        assert!(r.active(99));
        assert!(!r.active(100));
        r.probability = Some(0.25);
        assert!(r.fires(0.1));
        assert!(!r.fires(0.3));
    }

    #[test]
    fn specs_are_checked() {
        let s = FaultSpec::from_params(&params(&[
            ("fault", "app_rate_limit"),
            ("path", "/v22.0/me/media"),
            ("method", "get"),
            ("count", "3"),
        ]))
        .unwrap();
        assert_eq!(s.path, "/me/media");
        assert_eq!(s.method.as_deref(), Some("GET"));
        assert_eq!(
            (s.fault, s.count, s.ms),
            (Fault::AppRateLimit, Some(3), 60_000)
        );
        let s = FaultSpec::from_params(&params(&[
            ("fault", "user_rate_limit"),
            ("retry_after", "5"),
        ]))
        .unwrap();
        assert_eq!(s.ms, 5_000);
        let s = FaultSpec::from_params(&params(&[("fault", "latency"), ("ms", "250")])).unwrap();
        assert_eq!((s.path.as_str(), s.ms), ("*", 250));
        for (bad, says) in [
            (vec![], "fault is required"),
            (vec![("fault", "boom")], "app_rate_limit, user_rate_limit"),
            (vec![("fault", "latency")], "needs ms"),
            (vec![("fault", "timeout"), ("ms", "0")], "between 1"),
            (vec![("fault", "server_error"), ("ms", "5")], "ms applies"),
            (
                vec![("fault", "server_error"), ("count", "0")],
                "count must",
            ),
            (
                vec![("fault", "server_error"), ("count", "x")],
                "whole number",
            ),
            (
                vec![("fault", "server_error"), ("probability", "2")],
                "probability",
            ),
            (
                vec![
                    ("fault", "server_error"),
                    ("count", "1"),
                    ("probability", "0.5"),
                ],
                "not both",
            ),
            (vec![("fault", "server_error"), ("method", "PUT")], "method"),
            (vec![("fault", "server_error"), ("path", "me")], "path"),
            (
                vec![("fault", "server_error"), ("expires_in", "-1")],
                "expires_in",
            ),
        ] {
            let e = FaultSpec::from_params(&params(&bad)).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn faults_answer_as_the_real_conditions_do() {
        let now = 1_700_000_000;
        let refused = |f: Fault| match f.effect(60_000, now, Flavour::InstagramLogin) {
            Effect::Refuse { error, spent } => (error, spent),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refused(Fault::AppRateLimit),
            (GraphError::app_rate_limited(), Some((Budget::App, 60)))
        );
        assert_eq!(refused(Fault::UserRateLimit).1, Some((Budget::User, 60)));
        let (e, _) = refused(Fault::ExpiredToken);
        assert_eq!((e.code, e.subcode), (190, Some(463)));
        assert_eq!(refused(Fault::PasswordChanged).0.subcode, Some(460));
        assert_eq!(refused(Fault::Deauthorized).0.subcode, Some(458));
        assert_eq!(refused(Fault::Permission).0.code, 10);
        assert_eq!(refused(Fault::ServerError).0, GraphError::internal());
        assert_eq!(refused(Fault::Unavailable).0.http_status, 503);
        assert_eq!(
            Fault::Latency.effect(40, now, Flavour::Legacy),
            Effect::Delay(40)
        );
        assert_eq!(
            Fault::Timeout.effect(40, now, Flavour::Legacy),
            Effect::Hold(40)
        );
        for f in Fault::ALL {
            assert_eq!(Fault::parse(f.as_str()), Some(f));
        }
    }
}
