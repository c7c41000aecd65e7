//! App insights (`GET /{app-id}/insights`, for app tokens): which metrics, over which periods.

use crate::UnixTime;
use crate::error::GraphError;
use crate::graph::paging::parse_time;

/// Every metric, in answer order.
pub const METRICS: [&str; 5] = [
    "calls",
    "distinct_users",
    "errors",
    "throttled_calls",
    "rate_limit_usage",
];

/// How far back usage is kept by default, and so how far insights can look.
pub const MAX_RANGE_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
}

impl Period {
    pub fn secs(self) -> i64 {
        match self {
            Self::Hour => 3600,
            Self::Day => 86_400,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsightsRequest {
    pub metrics: Vec<&'static str>,
    pub period: Period,
    /// Period-aligned, `since < until`.
    pub since: UnixTime,
    pub until: UnixTime,
}

impl InsightsRequest {
    /// `metric` (comma-separated; all by default), `period` (`hour`, the default, over the last
    /// 24 hours; or `day`, over the last 7 days), `since` and `until` (as for paging). The range
    /// is widened to whole periods and may not exceed 30 days.
    pub fn parse(
        metric: Option<&str>,
        period: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
        now: UnixTime,
    ) -> Result<Self, GraphError> {
        let period = match period {
            None | Some("hour") => Period::Hour,
            Some("day") => Period::Day,
            Some(p) => {
                return Err(GraphError::invalid_parameter(format!(
                    "period must be hour or day, not {p}"
                )));
            }
        };
        let metrics = match metric {
            None => METRICS.to_vec(),
            Some(list) => list
                .split(',')
                .map(|m| {
                    METRICS
                        .iter()
                        .copied()
                        .find(|k| *k == m.trim())
                        .ok_or_else(|| {
                            GraphError::invalid_parameter(format!(
                                "metric must be one of {}, not {}",
                                METRICS.join(", "),
                                m.trim()
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let p = period.secs();
        let until = match until {
            Some(u) => parse_time("until", u)?,
            None => now,
        };
        // Widened to the end of its period (a period boundary stays as it is).
        let until = until + (p - until.rem_euclid(p)) % p;
        let since = match since {
            Some(s) => parse_time("since", s)?,
            None => {
                until
                    - if period == Period::Hour {
                        24 * p
                    } else {
                        7 * p
                    }
            }
        };
        let since = since - since.rem_euclid(p);
        if since >= until {
            return Err(GraphError::invalid_parameter("since must be before until"));
        }
        if until - since > MAX_RANGE_SECS {
            return Err(GraphError::invalid_parameter(
                "the range from since to until may be at most 30 days",
            ));
        }
        Ok(Self {
            metrics,
            period,
            since,
            until,
        })
    }

    /// The periods' starts, oldest first.
    pub fn periods(&self) -> impl Iterator<Item = UnixTime> + '_ {
        (self.since..self.until).step_by(usize::try_from(self.period.secs()).unwrap_or(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_last_24_hours_by_hour() {
        let now = 1_800_000_000 + 1234;
        let r = InsightsRequest::parse(None, None, None, None, now).unwrap();
        assert_eq!(r.metrics.len(), 5);
        assert_eq!(r.periods().count(), 24);
        assert_eq!(r.until % 3600, 0);
        assert!(r.until > now && r.until - now <= 3600);
        let d = InsightsRequest::parse(Some("calls,errors"), Some("day"), None, None, now).unwrap();
        assert_eq!(d.metrics, vec!["calls", "errors"]);
        assert_eq!(d.periods().count(), 7);
    }

    #[test]
    fn bad_requests_are_code_100() {
        for (m, p, s, u) in [
            (Some("likes"), None, None, None),
            (None, Some("week"), None, None),
            (None, None, Some("1800000000"), Some("1700000000")),
            (None, None, Some("1700000000"), Some("1800000000")),
        ] {
            assert_eq!(
                InsightsRequest::parse(m, p, s, u, 1_800_000_000)
                    .unwrap_err()
                    .code,
                100
            );
        }
    }
}
