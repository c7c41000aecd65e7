//! The device authorization grant (RFC 8628), for apps that opted in: a device with no browser
//! asks for a pair of codes, shows the short `user_code` to its user, and polls the token
//! endpoint with the long `device_code` while the user signs in on another device's browser,
//! enters the user code on `/device` and consents.
//!
//! Instagram has no device flow; gramkey offers it to apps that turn it on, in RFC 8628's own
//! wire format. An approval issues an ordinary authorization code whose hash is the device
//! code's, tied to [`GRANT_TYPE`] as its redirect URI, so the poll that finds it approved
//! redeems it as any code is redeemed: once, in the code's flavour.

use crate::entropy::{Entropy, random_alnum, random_from};
use crate::scope::ScopeSet;
use crate::secret::AuthCode;
use crate::time::UnixTime;

/// The grant type a device polls with (RFC 8628 §3.4); also the redirect URI of the code an
/// approval issues, so no other grant can redeem it.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How long a pair of codes lives (RFC 8628 §3.2 `expires_in`): ten minutes.
pub const LIFETIME_SECS: i64 = 600;

/// The least time between two polls at first (RFC 8628 §3.2 `interval`).
pub const INTERVAL_SECS: i64 = 5;

/// What a `slow_down` adds to the interval (RFC 8628 §3.5).
pub const SLOW_DOWN_SECS: i64 = 5;

/// The interval never grows past this, however often a device polls too soon.
pub const MAX_INTERVAL_SECS: i64 = 60;

/// RFC 8628 §6.1's alphabet for user codes: consonants only (no words), no look-alikes.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// Letters in a user code: 20⁸ ≈ 2³⁴·⁶ codes, against a guesser held to a few tries a minute
/// over ten minutes.
const USER_CODE_LEN: usize = 8;

/// A new device code: 43 letters and digits (about 256 bits).
pub fn generate_device_code(entropy: &dyn Entropy) -> AuthCode {
    AuthCode::new(random_alnum(entropy, 43))
}

/// A new user code, as it is stored and compared: eight letters of the alphabet.
pub fn generate_user_code(entropy: &dyn Entropy) -> String {
    random_from(entropy, USER_CODE_ALPHABET, USER_CODE_LEN)
}

/// A user code as a person reads it: `BCDF-GHJK`.
pub fn display_user_code(code: &str) -> String {
    if code.len() == USER_CODE_LEN && code.is_ascii() {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

/// What a person typed, as a user code: case, spaces and dashes are ignored (RFC 8628 §6.1).
/// `None` when it cannot be one.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// The scopes a device asks for (RFC 8628 §3.1 `scope`, RFC 6749 §3.3): one family, its
/// required scope present, each allowed to the app. The refusal is `invalid_scope`'s
/// description.
pub fn requested_scopes(raw: Option<&str>, allowed: &ScopeSet) -> Result<ScopeSet, String> {
    let scopes = ScopeSet::parse(raw.unwrap_or_default()).map_err(|e| e.to_string())?;
    scopes.request_family().map_err(|e| e.to_string())?;
    if let Some(s) = scopes.iter().find(|s| !allowed.contains(*s)) {
        return Err(format!("this app may not request {}", s.as_str()));
    }
    Ok(scopes)
}

/// Where a device authorization stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// Waiting for the user.
    Pending,
    /// The user consented: a code is waiting under the device code's hash.
    Approved,
    /// The user said no.
    Denied,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "approved" => Some(Self::Approved),
            "denied" => Some(Self::Denied),
            _ => None,
        }
    }
}

/// What the store knows of a device authorization when the device polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollFacts {
    pub state: DeviceState,
    pub expires_at: UnixTime,
    pub interval: i64,
    pub last_polled_at: Option<UnixTime>,
}

/// The answer to a poll (RFC 8628 §3.5), and what the store writes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// `authorization_pending`; the poll is recorded.
    Pending,
    /// `slow_down`: polled before `interval` had passed; the interval grows to `interval`.
    SlowDown { interval: i64 },
    /// `expired_token`.
    Expired,
    /// `access_denied`.
    Denied,
    /// Redeem the code waiting under the device code's hash.
    Approved,
}

impl Poll {
    /// RFC 8628 §3.5's `error` for every answer but an approval.
    pub fn error(self) -> Option<&'static str> {
        match self {
            Self::Pending => Some("authorization_pending"),
            Self::SlowDown { .. } => Some("slow_down"),
            Self::Expired => Some("expired_token"),
            Self::Denied => Some("access_denied"),
            Self::Approved => None,
        }
    }
}

/// Judges a poll at `now`. Expiry comes first, then the user's decision, which a device learns
/// on its first poll after it, however soon; only a device still waiting is held to the
/// interval.
pub fn judge_poll(facts: &PollFacts, now: UnixTime) -> Poll {
    if now >= facts.expires_at {
        return Poll::Expired;
    }
    match facts.state {
        DeviceState::Denied => Poll::Denied,
        DeviceState::Approved => Poll::Approved,
        DeviceState::Pending => match facts.last_polled_at {
            Some(last) if now - last < facts.interval => Poll::SlowDown {
                interval: (facts.interval + SLOW_DOWN_SECS).min(MAX_INTERVAL_SECS),
            },
            _ => Poll::Pending,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    #[test]
    fn user_codes_are_typeable() {
        let e = SeededEntropy::new(7);
        let code = generate_user_code(&e);
        assert_eq!(code.len(), 8);
        assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        let shown = display_user_code(&code);
        assert_eq!(shown.len(), 9);
        assert_eq!(normalize_user_code(&shown).as_deref(), Some(code.as_str()));
        assert_eq!(
            normalize_user_code(&format!(" {} ", shown.to_lowercase())).as_deref(),
            Some(code.as_str())
        );
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
        assert_eq!(normalize_user_code("BCDF-GHJA"), None, "no vowels");
        assert_eq!(normalize_user_code(""), None);
        assert_ne!(generate_user_code(&e), code);
        assert_eq!(generate_device_code(&e).expose().len(), 43);
    }

    #[test]
    fn scopes_are_checked_against_the_app() {
        let allowed = ScopeSet::parse("user_profile,user_media").unwrap();
        let ok = requested_scopes(Some("user_profile user_media"), &allowed).unwrap();
        assert_eq!(ok.to_stored(), "user_profile,user_media");
        assert!(requested_scopes(None, &allowed).is_err());
        assert!(
            requested_scopes(Some("user_media"), &allowed).is_err(),
            "user_profile is required"
        );
        assert!(requested_scopes(Some("nope"), &allowed).is_err());
        let not_allowed = requested_scopes(Some("instagram_business_basic"), &allowed);
        assert_eq!(
            not_allowed.unwrap_err(),
            "this app may not request instagram_business_basic"
        );
    }

    #[test]
    fn polls_are_judged_in_order() {
        let facts = PollFacts {
            state: DeviceState::Pending,
            expires_at: 1_000,
            interval: 5,
            last_polled_at: None,
        };
        assert_eq!(judge_poll(&facts, 100), Poll::Pending);
        let polled = PollFacts {
            last_polled_at: Some(100),
            ..facts
        };
        assert_eq!(judge_poll(&polled, 104), Poll::SlowDown { interval: 10 });
        assert_eq!(judge_poll(&polled, 105), Poll::Pending);
        let slow = PollFacts {
            interval: 58,
            ..polled
        };
        assert_eq!(judge_poll(&slow, 101), Poll::SlowDown { interval: 60 });
        // A decision is told at once, however soon the device polls.
        for (state, answer) in [
            (DeviceState::Approved, Poll::Approved),
            (DeviceState::Denied, Poll::Denied),
        ] {
            assert_eq!(judge_poll(&PollFacts { state, ..polled }, 101), answer);
            assert_eq!(
                judge_poll(&PollFacts { state, ..polled }, 1_000),
                Poll::Expired
            );
        }
        assert_eq!(judge_poll(&facts, 1_000), Poll::Expired);
        assert_eq!(Poll::Pending.error(), Some("authorization_pending"));
        assert_eq!(Poll::SlowDown { interval: 10 }.error(), Some("slow_down"));
        assert_eq!(Poll::Expired.error(), Some("expired_token"));
        assert_eq!(Poll::Denied.error(), Some("access_denied"));
        assert_eq!(Poll::Approved.error(), None);
        for s in [
            DeviceState::Pending,
            DeviceState::Approved,
            DeviceState::Denied,
        ] {
            assert_eq!(DeviceState::parse(s.as_str()), Some(s));
        }
    }
}
