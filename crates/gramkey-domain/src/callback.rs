//! Deauthorize and data-deletion callbacks (Instagram §8).
//!
//! When a user removes an app, or asks for their data to be deleted, the platform POSTs the
//! app's configured URL with one form field, `signed_request`:
//! `base64url(HMAC-SHA256(app_secret, payload_b64)) "." payload_b64`, both without padding, where
//! the payload is `{"user_id":"…","algorithm":"HMAC-SHA256","issued_at":…}`.
//!
//! Deliveries go through an outbox: this module decides what to send, how long to wait before
//! the next attempt, and whether an answer counts as delivered. The store keeps the outbox; the
//! server sends.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::app::{AppError, RedirectUri};
use crate::entropy::Entropy;
use crate::ids::ScopedUserId;
use crate::secret::ClientSecret;
use crate::time::UnixTime;

/// Which callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackKind {
    /// The user removed the app: the "Deauthorize Callback URL".
    Deauthorize,
    /// The user asked for their data to be deleted: the "Data Deletion Request URL".
    DataDeletion,
}

impl CallbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackKind::Deauthorize => "deauthorize",
            CallbackKind::DataDeletion => "data_deletion",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "deauthorize" => Some(CallbackKind::Deauthorize),
            "data_deletion" => Some(CallbackKind::DataDeletion),
            _ => None,
        }
    }
}

/// Where a callback is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackState {
    /// Waiting for its next attempt.
    Pending,
    /// The app acknowledged it.
    Delivered,
    /// Every attempt failed, or it could not be sent at all; `gramkey callbacks retry` requeues.
    Failed,
}

impl CallbackState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackState::Pending => "pending",
            CallbackState::Delivered => "delivered",
            CallbackState::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(CallbackState::Pending),
            "delivered" => Some(CallbackState::Delivered),
            "failed" => Some(CallbackState::Failed),
            _ => None,
        }
    }
}

/// Checks a callback URL: the same rules as a redirect URI (https, or http on loopback).
pub fn validate_callback_url(raw: &str) -> Result<String, AppError> {
    RedirectUri::parse(raw.trim())
        .map(|u| u.as_str().to_owned())
        .map_err(|e| match e {
            AppError::RedirectUri(u, why) => AppError::CallbackUrl(u, why),
            e => e,
        })
}

/// The `signed_request` for `user_id`, signed with the app's secret.
pub fn signed_request(
    secret: &ClientSecret,
    user_id: &ScopedUserId,
    issued_at: UnixTime,
) -> String {
    let payload = serde_json::json!({
        "user_id": user_id.as_str(),
        "algorithm": "HMAC-SHA256",
        "issued_at": issued_at,
    });
    let payload_b64 = URL_SAFE_NO_PAD.encode(payload.to_string());
    #[allow(clippy::expect_used)]
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(payload_b64.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{sig}.{payload_b64}")
}

/// Attempts before a callback is marked failed. With [`retry_delay`], the last one comes 18 to
/// 21 hours after the first.
pub const MAX_ATTEMPTS: u32 = 12;

/// How long to wait after the `attempts`-th failed attempt: 1 min doubling up to 6 h, less up to
/// a tenth at random, so that callbacks failing together do not all come back together.
pub fn retry_delay(attempts: u32, entropy: &dyn Entropy) -> i64 {
    let base = 60i64
        .saturating_mul(1 << attempts.saturating_sub(1).min(20))
        .min(6 * 3600);
    let mut b = [0u8; 2];
    entropy.fill(&mut b);
    let jitter = base / 10 * i64::from(u16::from_be_bytes(b)) / i64::from(u16::MAX);
    base - jitter
}

/// What to do after a failed attempt: retry at this time, or give up.
pub fn next_attempt(attempts: u32, now: UnixTime, entropy: &dyn Entropy) -> Option<UnixTime> {
    (attempts < MAX_ATTEMPTS).then(|| now + retry_delay(attempts, entropy))
}

/// What a data-deletion callback's answer carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    pub confirmation_code: Option<String>,
    pub status_url: Option<String>,
}

/// Longest confirmation code or status URL kept from an app's answer.
const MAX_FIELD: usize = 2048;

/// Judges an app's answer. Any 2xx acknowledges a deauthorize callback. A data-deletion
/// callback must also answer `{"url": "…", "confirmation_code": "…"}`, as Meta requires; without
/// it the attempt fails and is retried, with an error saying what was expected.
pub fn judge_answer(kind: CallbackKind, status: u16, body: &str) -> Result<Confirmation, String> {
    if !(200..300).contains(&status) {
        return Err(format!("the app answered HTTP {status}"));
    }
    if kind == CallbackKind::Deauthorize {
        return Ok(Confirmation::default());
    }
    let expected =
        "a data-deletion callback must answer JSON {\"url\": \"…\", \"confirmation_code\": \"…\"}";
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|_| format!("{expected}; the answer is not JSON"))?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= MAX_FIELD)
            .map(str::to_owned)
    };
    match (field("confirmation_code"), field("url")) {
        (Some(code), Some(url)) => Ok(Confirmation {
            confirmation_code: Some(code),
            status_url: Some(url),
        }),
        _ => Err(format!(
            "{expected}; a field is missing, empty or not a string"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    #[test]
    fn signed_request_matches_an_independent_computation() {
        // Computed with Python's hmac and base64 modules from the same payload text.
        let secret = ClientSecret::new("0123456789abcdef0123456789abcdef");
        let id = ScopedUserId::parse("17841400000000001").unwrap();
        assert_eq!(
            signed_request(&secret, &id, 1_634_206_592),
            "4mMU1YzORcgwCwYmjUqQtPYfz07ppXazzRSH6p79wH0.eyJ1c2VyX2lkIjoiMTc4NDE0MDAwMDAwMDAwMDEiLCJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImlzc3VlZF9hdCI6MTYzNDIwNjU5Mn0"
        );
    }

    #[test]
    fn retries_back_off_and_end() {
        let e = SeededEntropy::new(7);
        let d1 = retry_delay(1, &e);
        assert!((54..=60).contains(&d1), "{d1}");
        let d2 = retry_delay(2, &e);
        assert!((108..=120).contains(&d2), "{d2}");
        assert!(retry_delay(30, &e) <= 6 * 3600);
        assert!(retry_delay(30, &e) >= 6 * 3600 * 9 / 10);
        assert_eq!(next_attempt(MAX_ATTEMPTS, 100, &e), None);
        let next = next_attempt(1, 100, &e).unwrap();
        assert!((154..=160).contains(&next));
        let total: i64 = (1..MAX_ATTEMPTS).map(|n| retry_delay(n, &e)).sum();
        assert!((18 * 3600..21 * 3600).contains(&total), "{total}");
    }

    #[test]
    fn answers_are_judged_per_kind() {
        use CallbackKind::*;
        assert!(judge_answer(Deauthorize, 200, "").is_ok());
        assert!(judge_answer(Deauthorize, 204, "whatever").is_ok());
        assert!(
            judge_answer(Deauthorize, 500, "")
                .unwrap_err()
                .contains("500")
        );
        assert!(judge_answer(Deauthorize, 302, "").is_err());
        let ok = judge_answer(
            DataDeletion,
            200,
            r#"{"url":"https://app.example/status?id=9","confirmation_code":"abc9"}"#,
        )
        .unwrap();
        assert_eq!(ok.confirmation_code.as_deref(), Some("abc9"));
        assert_eq!(
            ok.status_url.as_deref(),
            Some("https://app.example/status?id=9")
        );
        for bad in [
            "",
            "ok",
            r#"{"url":"x"}"#,
            r#"{"url":"x","confirmation_code":7}"#,
            r#"{"url":"","confirmation_code":"c"}"#,
        ] {
            let e = judge_answer(DataDeletion, 200, bad).unwrap_err();
            assert!(e.contains("confirmation_code"), "{bad}: {e}");
        }
    }

    #[test]
    fn kinds_states_and_urls() {
        for k in [CallbackKind::Deauthorize, CallbackKind::DataDeletion] {
            assert_eq!(CallbackKind::parse(k.as_str()), Some(k));
        }
        for s in [
            CallbackState::Pending,
            CallbackState::Delivered,
            CallbackState::Failed,
        ] {
            assert_eq!(CallbackState::parse(s.as_str()), Some(s));
        }
        assert!(validate_callback_url(" https://app.example/deauth ").is_ok());
        assert!(validate_callback_url("http://127.0.0.1:9/x").is_ok());
        assert!(matches!(
            validate_callback_url("http://app.example/x"),
            Err(AppError::CallbackUrl(..))
        ));
    }
}
