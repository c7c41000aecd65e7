//! Time as a parameter. Nothing in gramkey asks the system clock except [`SystemClock`]; tests
//! use [`ManualClock`] so expiry is tested without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch, UTC. Instagram reports `expires_in` and `issued_at` in
/// seconds, so nothing finer is needed.
pub type UnixTime = i64;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixTime;
    /// Microseconds since the epoch, for what needs finer than [`Clock::now`] and no rule
    /// depends on: the order tokens are minted in ([`crate::token::MintOrder`]).
    fn now_micros(&self) -> i64 {
        self.now().saturating_mul(1_000_000)
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    // The one reading of the system clock.
    #[allow(clippy::disallowed_methods)]
    fn since_epoch() -> std::time::Duration {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        i64::try_from(Self::since_epoch().as_secs()).unwrap_or(i64::MAX)
    }
    fn now_micros(&self) -> i64 {
        i64::try_from(Self::since_epoch().as_micros()).unwrap_or(i64::MAX)
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: UnixTime) -> Self {
        Self(AtomicI64::new(start))
    }
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
    pub fn set(&self, now: UnixTime) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

/// `2017-08-31T18:10:00+0000`, the timestamp form Instagram's Graph API uses.
pub fn graph_timestamp(t: UnixTime) -> String {
    use ::time::{OffsetDateTime, macros::format_description};
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+0000");
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_default()
}

/// Human-readable UTC time for error messages ("Session has expired on ...").
pub fn human_time(t: UnixTime) -> String {
    use ::time::{OffsetDateTime, macros::format_description};
    let fmt = format_description!(
        "[weekday], [day]-[month repr:short]-[year] [hour]:[minute]:[second] UTC"
    );
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(100);
        assert_eq!(c.now(), 100);
        c.advance(3600);
        assert_eq!(c.now(), 3700);
        c.set(5);
        assert_eq!(c.now(), 5);
    }

    #[test]
    fn graph_timestamp_matches_instagram_form() {
        assert_eq!(graph_timestamp(1_504_203_000), "2017-08-31T18:10:00+0000");
    }

    #[test]
    fn human_time_names_the_day() {
        assert_eq!(
            human_time(1_504_203_000),
            "Thursday, 31-Aug-2017 18:10:00 UTC"
        );
    }
}
