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
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            codes_after_expiry: 24 * 3600,
            tokens_after_end: 30 * 24 * 3600,
            callbacks_after_end: 30 * 24 * 3600,
        }
    }
}

/// What to delete at `now`: codes that expired before `codes_before`, and tokens that expired
/// or were revoked before `tokens_before`, and callbacks finished before `callbacks_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub codes_before: UnixTime,
    pub tokens_before: UnixTime,
    pub callbacks_before: UnixTime,
}

impl Retention {
    pub fn cutoffs(&self, now: UnixTime) -> Cutoffs {
        Cutoffs {
            codes_before: now.saturating_sub(self.codes_after_expiry),
            tokens_before: now.saturating_sub(self.tokens_after_end),
            callbacks_before: now.saturating_sub(self.callbacks_after_end),
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
        };
        assert_eq!(
            r.cutoffs(1000),
            Cutoffs {
                codes_before: 990,
                tokens_before: 900,
                callbacks_before: 950,
            }
        );
        assert_eq!(Retention::default().cutoffs(0).codes_before, -86_400);
    }
}
