//! The legacy v1 API's envelope rules: its error types, `count`, and JSONP callback names.

use crate::error::GraphError;

/// `count` on `/v1/users/self/media/recent`: default 20, at most 100 (larger is lowered).
pub const DEFAULT_COUNT: u32 = 20;
pub const MAX_COUNT: u32 = 100;

/// A refusal in the v1 `meta` envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyError {
    pub code: u16,
    pub error_type: &'static str,
    pub message: String,
}

impl LegacyError {
    pub fn new(code: u16, error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            error_type,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(400, "APINotFoundError", message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "APIInvalidParametersError", message)
    }
    pub fn unknown_endpoint() -> Self {
        Self::new(404, "APINotFoundError", "this endpoint does not exist")
    }
    pub fn permission(scope: &str) -> Self {
        Self::new(
            400,
            "OAuthPermissionsException",
            format!(
                "This request requires scope={scope}, but this access token is not authorized with this scope."
            ),
        )
    }
}

impl From<&GraphError> for LegacyError {
    /// The v1 equivalent of a Graph refusal.
    fn from(e: &GraphError) -> Self {
        match e.code {
            190 => Self::new(
                400,
                "OAuthAccessTokenException",
                "The access_token provided is invalid.",
            ),
            2500 => Self::new(
                400,
                "OAuthParameterException",
                "Missing client_id or access_token URL parameter.",
            ),
            10 | 200..=299 => Self::new(400, "OAuthPermissionsException", strip_code(&e.message)),
            100 if e.subcode == Some(33) => Self::not_found("this object does not exist"),
            100 => Self::invalid(strip_code(&e.message)),
            2 => Self::new(
                503,
                "APIError",
                "The service is temporarily unavailable. Please retry your request later.",
            ),
            4 | 17 | 32 | 613 => Self::new(
                429,
                "OAuthRateLimitException",
                "The maximum number of requests per hour has been exceeded.",
            ),
            _ => Self::new(
                500,
                "APIError",
                "An unexpected error has occurred. Please retry your request later.",
            ),
        }
    }
}

fn strip_code(message: &str) -> String {
    match message.split_once(") ") {
        Some((head, rest)) if head.starts_with("(#") => rest.to_owned(),
        _ => message.to_owned(),
    }
}

/// A JSONP callback name: dotted JavaScript identifiers (`cb`, `jQuery123_456`, `app.feed.cb`),
/// at most 64 characters. Anything else could inject script, and is refused.
pub fn valid_callback(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.split('.').all(|part| {
            let mut bytes = part.bytes();
            matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b'$')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        })
}

/// `count`: a positive integer, lowered to [`MAX_COUNT`].
pub fn parse_count(raw: Option<&str>) -> Result<u32, LegacyError> {
    match raw {
        None => Ok(DEFAULT_COUNT),
        Some(r) => match r.parse::<u64>() {
            Ok(n) if n > 0 => Ok(u32::try_from(n.min(u64::from(MAX_COUNT))).unwrap_or(MAX_COUNT)),
            _ => Err(LegacyError::invalid(format!(
                "count must be a positive integer, not {r:?}"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks() {
        for ok in ["cb", "jQuery1_2", "$x", "app.feed.cb", "_"] {
            assert!(valid_callback(ok), "{ok}");
        }
        for bad in [
            "",
            "1cb",
            "a..b",
            "a.",
            "alert(1)",
            "a b",
            "a;b",
            "x-y",
            &"a".repeat(65),
        ] {
            assert!(!valid_callback(bad), "{bad}");
        }
    }

    #[test]
    fn errors_map() {
        let e = LegacyError::from(&GraphError::invalid_token());
        assert_eq!((e.code, e.error_type), (400, "OAuthAccessTokenException"));
        assert_eq!(
            LegacyError::from(&GraphError::missing_token()).error_type,
            "OAuthParameterException"
        );
        assert_eq!(
            LegacyError::from(&GraphError::not_found("1", "get")).error_type,
            "APINotFoundError"
        );
        let p = LegacyError::from(&GraphError::invalid_parameter("bad count"));
        assert_eq!(p.message, "bad count");
        assert_eq!(parse_count(None), Ok(DEFAULT_COUNT));
        assert_eq!(parse_count(Some("1000")), Ok(MAX_COUNT));
        assert!(parse_count(Some("0")).is_err());
    }
}
