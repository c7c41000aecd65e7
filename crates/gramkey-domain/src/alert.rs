//! Anomaly alerts: the rules that decide when something looks wrong, and the deduplication that
//! keeps a storm of anomalies from becoming a storm of alerts.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::UnixTime;
use crate::ratelimit::{Window, WindowSpec};

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// An app's request rate jumped far above its own recent baseline.
    RateJump,
    /// A token was used from a network it had never been used from.
    NewNetwork,
    /// Failed client authentications for one client or from one address.
    ClientAuthFailures,
    /// Failed sign-ins for one account or from one address.
    LoginFailures,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateJump => "rate_jump",
            Self::NewNetwork => "new_network",
            Self::ClientAuthFailures => "client_auth_failures",
            Self::LoginFailures => "login_failures",
        }
    }
}

/// Thresholds, all configurable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// A rate jump: calls in the last 5 minutes above `rate_factor` × the app's average per 5
    /// minutes over the 55 before, and at least `rate_min_calls`.
    pub rate_factor: f64,
    pub rate_min_calls: u64,
    /// A burst of failures: this many in 15 minutes for one client, account or address.
    pub failure_burst: u64,
    /// Alert when a token that has been used from some network is used from a new one.
    pub new_network: bool,
    /// The same alert (kind and subject) is sent at most once per this many seconds.
    pub cooldown_secs: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            rate_factor: 10.0,
            rate_min_calls: 500,
            failure_burst: 20,
            new_network: true,
            cooldown_secs: 3600,
        }
    }
}

/// The network an address belongs to, as far as "a network it has never been used from" goes:
/// the /24 of an IPv4 address, the /48 of an IPv6 one (a site's usual allocation). A value to
/// compare and hash without formatting (every authenticated call looks one up); its text is
/// `203.0.113.0/24` or `2001:db8:1::/48`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    V4([u8; 3]),
    V6([u16; 3]),
}

pub fn network_of(ip: IpAddr) -> Network {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Network::V4([a, b, c])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network_of(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                Network::V6([s[0], s[1], s[2]])
            }
        },
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Network::V4([a, b, c]) => write!(f, "{a}.{b}.{c}.0/24"),
            Network::V6([a, b, c]) => write!(f, "{a:x}:{b:x}:{c:x}::/48"),
        }
    }
}

/// How many of the rolling hour's minutes count as "recent" for a rate jump.
const RECENT_MINUTES: i64 = 5;

/// One app's calls per minute over the last hour, and since when it has been watched: no
/// baseline exists before a full hour of watching, so no jump is reported before.
#[derive(Debug, Clone)]
pub struct RateWatch {
    since: UnixTime,
    window: Window,
}

impl RateWatch {
    pub fn new(now: UnixTime) -> Self {
        Self {
            since: now,
            window: Window::default(),
        }
    }

    /// Counts a call; returns `(recent, baseline)` when the app's rate jumped: the calls in the
    /// last 5 minutes and the average per 5 minutes over the 55 before.
    pub fn call(&mut self, now: UnixTime, t: &Thresholds) -> Option<(u64, f64)> {
        let spec = WindowSpec::HOUR;
        self.window.add(spec, now, 1);
        if now - self.since < spec.window_secs {
            return None;
        }
        let first_recent = spec.bucket_of(now) - RECENT_MINUTES + 1;
        let (recent, older) = self.window.split(spec, now, first_recent);
        let baseline = older as f64 / ((spec.buckets - RECENT_MINUTES) / RECENT_MINUTES) as f64;
        (recent >= t.rate_min_calls && recent as f64 > t.rate_factor * baseline.max(1.0))
            .then_some((recent, baseline))
    }
}

/// Lets the same alert through at most once per cooldown.
#[derive(Debug, Default)]
pub struct Dedup {
    last: HashMap<(AlertKind, String), UnixTime>,
}

impl Dedup {
    pub fn admit(&mut self, kind: AlertKind, subject: &str, now: UnixTime, cooldown: i64) -> bool {
        if self.last.len() > 10_000 {
            self.last.retain(|_, at| now - *at < cooldown);
            // A flood of distinct subjects: forget them all rather than scan them per alert.
            if self.last.len() > 10_000 {
                self.last.clear();
            }
        }
        match self.last.get(&(kind, subject.to_owned())) {
            Some(at) if now - *at < cooldown => false,
            _ => {
                self.last.insert((kind, subject.to_owned()), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        assert_eq!(
            network_of("203.0.113.77".parse().unwrap()).to_string(),
            "203.0.113.0/24"
        );
        assert_eq!(
            network_of("2001:db8:1:2::5".parse().unwrap()).to_string(),
            "2001:db8:1::/48"
        );
        assert_eq!(
            network_of("::ffff:10.1.2.3".parse().unwrap()).to_string(),
            "10.1.2.0/24"
        );
    }

    #[test]
    fn a_jump_is_measured_against_the_apps_own_baseline() {
        let t = Thresholds {
            rate_factor: 5.0,
            rate_min_calls: 20,
            ..Thresholds::default()
        };
        let t0 = 1_800_000_000; // a minute boundary
        let mut w = RateWatch::new(t0);
        // 2 calls a minute for an hour: steady, never a jump.
        for m in 0..62 {
            for _ in 0..2 {
                assert_eq!(w.call(t0 + m * 60, &t), None);
            }
        }
        // Then 60 calls in one minute: 10 + 60 in the last 5 minutes against 10 per 5 before.
        let now = t0 + 62 * 60 + 30;
        let mut fired = None;
        for _ in 0..60 {
            fired = fired.or(w.call(now, &t));
        }
        let (recent, baseline) = fired.expect("a jump");
        assert!(
            recent >= 51 && (baseline - 10.0).abs() < 1.0,
            "{recent} {baseline}"
        );
    }

    #[test]
    fn no_jump_before_a_baseline_exists() {
        let t = Thresholds {
            rate_min_calls: 1,
            ..Thresholds::default()
        };
        let mut w = RateWatch::new(0);
        for _ in 0..1000 {
            assert_eq!(w.call(60, &t), None);
        }
    }

    #[test]
    fn dedup_lets_one_through_per_cooldown() {
        let mut d = Dedup::default();
        assert!(d.admit(AlertKind::RateJump, "app 1", 100, 3600));
        assert!(!d.admit(AlertKind::RateJump, "app 1", 200, 3600));
        assert!(d.admit(AlertKind::RateJump, "app 2", 200, 3600));
        assert!(d.admit(AlertKind::NewNetwork, "app 1", 200, 3600));
        assert!(d.admit(AlertKind::RateJump, "app 1", 3700, 3600));
    }
}
