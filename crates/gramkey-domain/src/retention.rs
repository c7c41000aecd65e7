//! How long finished rows are kept before the janitor deletes them. Token tables that grow
//! without bound are the top complaint about peers (Hydra #1574, #3079); ours are trimmed in
//! small batches, so no purge ever holds the database for long.

use crate::time::UnixTime;

/// Retention periods, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Codes are kept this long after they expire. A replayed code can only be detected (and
    /// its tokens revoked) while its row exists.
    pub codes_after_expiry: i64,
    /// Tokens are kept this long after they expire or are revoked, so `debug_token` and
    /// introspection can still say why a token stopped working.
    pub tokens_after_end: i64,
    /// Delivered and failed callbacks are kept this long after their last attempt, so
    /// `gramkey callbacks list` can show what happened.
    pub callbacks_after_end: i64,
    /// Audit events are kept this long.
    pub audit: i64,
    /// Hourly usage (what app insights read) is kept this long; insights look back 7 days.
    pub usage: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            codes_after_expiry: 24 * 3600,
            tokens_after_end: 30 * 24 * 3600,
            callbacks_after_end: 30 * 24 * 3600,
            audit: 365 * 24 * 3600,
            usage: 30 * 24 * 3600,
        }
    }
}

/// What to delete at `now`: codes that expired before `codes_before`, tokens that expired or
/// were revoked before `tokens_before`, callbacks finished before `callbacks_before`, audit
/// events older than `audit_before` and usage hours older than `usage_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub codes_before: UnixTime,
    pub tokens_before: UnixTime,
    pub callbacks_before: UnixTime,
    pub audit_before: UnixTime,
    pub usage_before: UnixTime,
}

impl Retention {
    pub fn cutoffs(&self, now: UnixTime) -> Cutoffs {
        Cutoffs {
            codes_before: now.saturating_sub(self.codes_after_expiry),
            tokens_before: now.saturating_sub(self.tokens_after_end),
            callbacks_before: now.saturating_sub(self.callbacks_after_end),
            audit_before: now.saturating_sub(self.audit),
            usage_before: now.saturating_sub(self.usage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_trail_now_by_the_retention() {
        let r = Retention {
            codes_after_expiry: 10,
            tokens_after_end: 100,
            callbacks_after_end: 50,
            audit: 500,
            usage: 200,
        };
        assert_eq!(
            r.cutoffs(1000),
            Cutoffs {
                codes_before: 990,
                tokens_before: 900,
                callbacks_before: 950,
                audit_before: 500,
                usage_before: 800,
            }
        );
        assert_eq!(Retention::default().cutoffs(0).codes_before, -86_400);
    }
}
