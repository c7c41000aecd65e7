//! The numbers behind the dashboard's usage chart: an app's calls in each of the last 24 hours,
//! its hourly call ceiling, and a y axis with round ticks that fits both. Drawing is the
//! server's job; what is drawn, and where, is decided here.

use crate::time::UnixTime;

pub const HOURS: usize = 24;
/// Gridlines above zero.
pub const TICKS: u64 = 4;

/// One hour's bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Start of the hour.
    pub hour: UnixTime,
    pub calls: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourlyChart {
    /// Oldest first; the last is the current, unfinished hour.
    pub bars: Vec<Bar>,
    /// The app's calls-per-hour limit, drawn as a line.
    pub ceiling: u64,
    /// The top of the y axis: a round number at or above every bar and the ceiling.
    pub y_max: u64,
    /// Gridline values, from 0 to `y_max`.
    pub ticks: Vec<u64>,
}

/// Builds the chart for the 24 hours ending with the one `now` is in. `hours` are
/// `(hour start, calls)`; hours outside the window are ignored, missing ones count zero.
pub fn last_24_hours(now: UnixTime, hours: &[(UnixTime, u64)], ceiling: u64) -> HourlyChart {
    let current = now - now.rem_euclid(3600);
    let first = current - 3600 * (HOURS as i64 - 1);
    let bars: Vec<Bar> = (0..HOURS as i64)
        .map(|i| {
            let hour = first + 3600 * i;
            let calls = hours
                .iter()
                .filter(|(h, _)| *h == hour)
                .map(|(_, c)| c)
                .sum();
            Bar { hour, calls }
        })
        .collect();
    let highest = bars.iter().map(|b| b.calls).max().unwrap_or(0).max(ceiling);
    let step = round_step(highest.div_ceil(TICKS).max(1));
    HourlyChart {
        bars,
        ceiling,
        y_max: step.saturating_mul(TICKS),
        ticks: (0..=TICKS).map(|i| i.saturating_mul(step)).collect(),
    }
}

/// The smallest of 1, 2, 5, 10, 20, 50 … that is at least `v`.
fn round_step(v: u64) -> u64 {
    let mut base = 1u64;
    loop {
        for m in [1, 2, 5] {
            let s = base.saturating_mul(m);
            if s >= v || s == u64::MAX {
                return s;
            }
        }
        base = base.saturating_mul(10);
    }
}

impl HourlyChart {
    /// How far up a plot of `height` the value `v` reaches.
    pub fn scale(&self, v: u64, height: f64) -> f64 {
        if self.y_max == 0 {
            return 0.0;
        }
        height * (v.min(self.y_max) as f64) / (self.y_max as f64)
    }

    pub fn total(&self) -> u64 {
        self.bars.iter().map(|b| b.calls).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_four_bars_ending_with_the_current_hour_with_gaps_as_zero() {
        let now = 100 * 3600 + 1234;
        let c = last_24_hours(
            now,
            &[(100 * 3600, 7), (90 * 3600, 3), (50 * 3600, 99)],
            200,
        );
        assert_eq!(c.bars.len(), HOURS);
        assert_eq!(c.bars[0].hour, 77 * 3600);
        assert_eq!(
            c.bars[23],
            Bar {
                hour: 100 * 3600,
                calls: 7
            }
        );
        assert_eq!(c.bars[13].calls, 3);
        assert_eq!(c.total(), 10, "an hour outside the window is left out");
    }

    #[test]
    fn the_axis_is_round_and_covers_both_the_bars_and_the_ceiling() {
        let now = 10 * 3600;
        let c = last_24_hours(now, &[(now, 30)], 200);
        assert_eq!(
            (c.y_max, c.ticks.clone()),
            (200, vec![0, 50, 100, 150, 200])
        );
        let c = last_24_hours(now, &[(now, 730)], 200);
        assert_eq!(c.y_max, 800);
        assert!(c.y_max >= 730);
        let c = last_24_hours(now, &[], 0);
        assert_eq!(c.y_max, 4, "an empty chart still has an axis");
    }

    #[test]
    fn values_scale_to_the_plot_and_stop_at_its_top() {
        let c = last_24_hours(0, &[(0, 100)], 200);
        assert_eq!(c.scale(100, 80.0), 40.0);
        assert_eq!(c.scale(0, 80.0), 0.0);
        assert_eq!(c.scale(10_000, 80.0), 80.0);
    }

    #[test]
    fn round_steps_follow_one_two_five() {
        let got: Vec<u64> = [1, 2, 3, 6, 11, 26, 999].map(round_step).to_vec();
        assert_eq!(got, vec![1, 2, 5, 10, 20, 50, 1000]);
    }
}
