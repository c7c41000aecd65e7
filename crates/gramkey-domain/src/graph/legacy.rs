//! The legacy v1 API's envelope rules: its error types, `count`, JSONP callback names, and
//! signed requests (`sig`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::GraphError;
use crate::secret::ClientSecret;

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
    /// A request to an app that enforces signed requests, without a valid `sig`.
    pub fn signed_request(why: &str) -> Self {
        Self::new(
            403,
            "OAuthForbiddenException",
            format!("Invalid signed-request: {why}"),
        )
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

/// Legacy v1's "Enforce signed requests" (wire protocol §11): `sig` is the hex HMAC-SHA256,
/// under the client secret, of the endpoint path after `/v1` as requested (with `.json` if the
/// client asked for it) followed by `|name=value` for every other parameter, sorted by name,
/// values decoded.
///
/// A request may carry `sig` more than once: python-instagram signs its GETs twice, once over
/// `access_token` alone and once over every parameter, and sends both. The request is signed
/// when any of them matches.
pub fn check_signature(
    secret: &ClientSecret,
    endpoint: &str,
    params: &[(String, String)],
) -> Result<(), LegacyError> {
    let sigs: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "sig")
        .map(|(_, v)| v.as_str())
        .collect();
    if sigs.is_empty() {
        return Err(LegacyError::signed_request(
            "Missing required parameter 'sig'",
        ));
    }
    let mut signed: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k != "sig")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    signed.sort_unstable();
    let mut base = endpoint.to_owned();
    for (k, v) in signed {
        base.push('|');
        base.push_str(k);
        base.push('=');
        base.push_str(v);
    }
    let matches = |sig: &str| {
        let Ok(given) = hex::decode(sig) else {
            return false;
        };
        #[allow(clippy::expect_used)]
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
        mac.update(base.as_bytes());
        // Constant time.
        mac.verify_slice(&given).is_ok()
    };
    if sigs.into_iter().any(matches) {
        Ok(())
    } else {
        Err(LegacyError::signed_request("Signature does not match"))
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

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The example of Instagram's v1 "Secure requests" documentation.
    #[test]
    fn signatures_follow_the_documented_example() {
        let secret = ClientSecret::new("6dc1787668c64c939929c17683d7cb74");
        let endpoint = "/media/657988443280050001_25025320";
        let good = "260634b241a6cfef5e4644c205fb30246ff637591142781b86e2075faf1b163a";
        let token = "fb2e77d.47a0479900504cb3ab4a1f626d174d2d";
        // Parameter order on the wire does not matter; the signature sorts them.
        let ok = pairs(&[("count", "10"), ("sig", good), ("access_token", token)]);
        assert_eq!(check_signature(&secret, endpoint, &ok), Ok(()));
        // A second, wrong sig beside the right one (python-instagram sends two).
        let two = pairs(&[
            ("access_token", token),
            ("sig", "00"),
            ("count", "10"),
            ("sig", good),
        ]);
        assert_eq!(check_signature(&secret, endpoint, &two), Ok(()));
        let missing = check_signature(&secret, endpoint, &pairs(&[("access_token", token)]));
        assert_eq!(missing.unwrap_err().code, 403);
        // Another parameter value, another endpoint, another secret: refused.
        let changed = pairs(&[("access_token", token), ("count", "11"), ("sig", good)]);
        let e = check_signature(&secret, endpoint, &changed).unwrap_err();
        assert_eq!(e.error_type, "OAuthForbiddenException");
        assert_eq!(
            e.message,
            "Invalid signed-request: Signature does not match"
        );
        assert!(check_signature(&secret, "/media/1", &ok).is_err());
        assert!(check_signature(&ClientSecret::new("other"), endpoint, &ok).is_err());
        let not_hex = pairs(&[("access_token", token), ("count", "10"), ("sig", "zz")]);
        assert!(check_signature(&secret, endpoint, &not_hex).is_err());
    }

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
