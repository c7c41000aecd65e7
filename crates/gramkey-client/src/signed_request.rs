//! Checking the `signed_request` Instagram (or a gramkey server) POSTs to an app's deauthorize
//! and data-deletion callback URLs.
//!
//! ```
//! use gramkey_client::signed_request::{SignedRequest, SignedRequestError};
//!
//! // The form field `signed_request` from the callback's body, and your app secret.
//! let field = "4mMU1YzORcgwCwYmjUqQtPYfz07ppXazzRSH6p79wH0.eyJ1c2VyX2lkIjoiMTc4NDE0MDAwMDAwMDAwMDEiLCJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImlzc3VlZF9hdCI6MTYzNDIwNjU5Mn0";
//! let req = SignedRequest::verify(field, "0123456789abcdef0123456789abcdef").unwrap();
//! assert_eq!(req.user_id, "17841400000000001");
//! assert_eq!(req.issued_at, 1_634_206_592);
//!
//! // Anyone can send a callback; only a valid signature proves it came from the platform.
//! assert_eq!(
//!     SignedRequest::verify(field, "not the secret").unwrap_err(),
//!     SignedRequestError::BadSignature
//! );
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A verified signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The app-scoped id of the user who removed the app or asked for deletion.
    pub user_id: String,
    /// When the platform signed it, in Unix seconds.
    pub issued_at: i64,
    /// The whole payload, for fields this SDK does not know.
    pub payload: serde_json::Value,
}

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedRequestError {
    /// Not two base64url parts joined by a dot.
    #[error("a signed request is two base64url parts joined by a dot")]
    Malformed,
    /// The signature does not match the payload under the app secret.
    #[error("the signature does not match: wrong app secret, or not sent by the platform")]
    BadSignature,
    /// The payload is not JSON with a `user_id` and a numeric `issued_at`.
    #[error("the payload is not the expected JSON object")]
    BadPayload,
    /// The payload's `algorithm` is not `HMAC-SHA256`; this holds what it is (empty when absent).
    #[error("unsupported algorithm {0:?}; expected HMAC-SHA256")]
    Algorithm(String),
    /// Issued longer ago than [`SignedRequest::check_age`] allows.
    #[error("issued {age} s ago, older than the {max} s allowed")]
    TooOld {
        /// How many seconds ago it was issued.
        age: i64,
        /// The most seconds allowed.
        max: i64,
    },
}

impl SignedRequest {
    /// Checks the signature with `app_secret` (in constant time) and parses the payload.
    pub fn verify(signed_request: &str, app_secret: &str) -> Result<Self, SignedRequestError> {
        let (sig_b64, payload_b64) = signed_request
            .trim()
            .split_once('.')
            .ok_or(SignedRequestError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .map_err(|_| SignedRequestError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| SignedRequestError::Malformed)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
            .map_err(|_| SignedRequestError::BadSignature)?;
        mac.update(payload_b64.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| SignedRequestError::BadSignature)?;

        let payload: serde_json::Value =
            serde_json::from_slice(&payload).map_err(|_| SignedRequestError::BadPayload)?;
        let algorithm = payload
            .get("algorithm")
            .and_then(|a| a.as_str())
            .unwrap_or_default();
        if !algorithm.eq_ignore_ascii_case("HMAC-SHA256") {
            return Err(SignedRequestError::Algorithm(algorithm.to_owned()));
        }
        let user_id = match payload.get("user_id") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(SignedRequestError::BadPayload),
        };
        let issued_at = payload
            .get("issued_at")
            .and_then(serde_json::Value::as_i64)
            .ok_or(SignedRequestError::BadPayload)?;
        Ok(Self {
            user_id,
            issued_at,
            payload,
        })
    }

    /// Refuses a request issued more than `max_age_secs` before `now` (Unix seconds), so a
    /// captured callback cannot be replayed much later.
    pub fn check_age(&self, now: i64, max_age_secs: i64) -> Result<(), SignedRequestError> {
        let age = now - self.issued_at;
        if age > max_age_secs {
            return Err(SignedRequestError::TooOld {
                age,
                max: max_age_secs,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    // Computed with Python's hmac and base64 modules.
    const GOOD: &str = "4mMU1YzORcgwCwYmjUqQtPYfz07ppXazzRSH6p79wH0.eyJ1c2VyX2lkIjoiMTc4NDE0MDAwMDAwMDAwMDEiLCJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImlzc3VlZF9hdCI6MTYzNDIwNjU5Mn0";

    fn sign(payload: &str) -> String {
        let p = URL_SAFE_NO_PAD.encode(payload);
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(p.as_bytes());
        format!(
            "{}.{p}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn refuses_what_is_not_a_valid_signed_request() {
        assert!(SignedRequest::verify(GOOD, SECRET).is_ok());
        let e = |s: &str| SignedRequest::verify(s, SECRET).unwrap_err();
        assert_eq!(e("no-dot"), SignedRequestError::Malformed);
        assert_eq!(e("!!.??"), SignedRequestError::Malformed);
        // The payload changed, the signature did not.
        let (sig, _) = GOOD.split_once('.').unwrap();
        let forged = format!(
            "{sig}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"user_id":"1","algorithm":"HMAC-SHA256","issued_at":1}"#)
        );
        assert_eq!(e(&forged), SignedRequestError::BadSignature);
        assert_eq!(e(&sign("[]")), SignedRequestError::Algorithm(String::new()));
        assert_eq!(e(&sign("not json")), SignedRequestError::BadPayload);
        assert_eq!(
            e(&sign(r#"{"user_id":"1","algorithm":"none","issued_at":1}"#)),
            SignedRequestError::Algorithm("none".into())
        );
        assert_eq!(
            e(&sign(r#"{"algorithm":"HMAC-SHA256","issued_at":1}"#)),
            SignedRequestError::BadPayload
        );
        let numeric = SignedRequest::verify(
            &sign(r#"{"user_id":17841400000000001,"algorithm":"HMAC-SHA256","issued_at":5}"#),
            SECRET,
        )
        .unwrap();
        assert_eq!(numeric.user_id, "17841400000000001");
    }

    #[test]
    fn age_is_checked_against_the_callers_clock() {
        let r = SignedRequest::verify(GOOD, SECRET).unwrap();
        assert!(r.check_age(1_634_206_592 + 300, 300).is_ok());
        assert_eq!(
            r.check_age(1_634_206_592 + 301, 300),
            Err(SignedRequestError::TooOld { age: 301, max: 300 })
        );
    }
}
