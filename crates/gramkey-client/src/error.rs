//! What can go wrong talking to Instagram or gramkey, and what a caller should do about it.

use std::time::Duration;

/// A refusal from the server, whatever its wire shape: Graph's `{"error":{…}}`, the token
/// endpoint's flat `{"error_type","code","error_message"}`, legacy v1's `{"meta":{…}}`, or RFC
/// 6749's `{"error","error_description"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// Graph's `code` (190, 4, 17, 100 …), or the flat shape's code (usually the status).
    pub code: Option<u32>,
    pub subcode: Option<u32>,
    /// `OAuthException`, `IGApiException`, `OAuthRateLimitException`, `invalid_grant` …
    pub kind: String,
    pub message: String,
    /// From `Retry-After`, when the server sent one.
    pub retry_after: Option<Duration>,
}

/// What a failure means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The token's time is up (190/463): the user must authorize again.
    Expired,
    /// The token was invalidated (190 with another subcode: password changed 460, app removed
    /// 458, revoked): the user must authorize again.
    Invalidated,
    /// A rate limit (4, 17, 32, 613, or HTTP 429): retry later.
    RateLimited,
    /// The server or the network failed (5xx, codes 1 and 2): retry with backoff.
    Transient,
    /// The request itself was refused (bad parameter, missing permission …): retrying will not
    /// help.
    Refused,
}

impl ApiError {
    pub fn failure(&self) -> Failure {
        match (self.code, self.subcode) {
            (Some(190), Some(463)) => Failure::Expired,
            (Some(190 | 102), _) => Failure::Invalidated,
            (Some(4 | 17 | 32 | 613), _) => Failure::RateLimited,
            _ if self.status == 429 => Failure::RateLimited,
            // Code 1 is also the token endpoints' "Error validating client secret": a wrong
            // secret stays wrong however often it is sent.
            (Some(1), _) if self.status < 500 && self.message.contains("client secret") => {
                Failure::Refused
            }
            (Some(1 | 2), _) => Failure::Transient,
            _ if self.status >= 500 => Failure::Transient,
            _ => Failure::Refused,
        }
    }

    /// From a response's status, `Retry-After` and body; `None` when the body is no error shape.
    pub fn parse(
        status: u16,
        retry_after: Option<Duration>,
        body: &serde_json::Value,
    ) -> Option<Self> {
        let num = |v: &serde_json::Value| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .and_then(|n| u32::try_from(n).ok())
        };
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        let (code, subcode, kind, message) =
            if let Some(e) = body.get("error").filter(|e| e.is_object()) {
                (
                    num(&e["code"]),
                    num(&e["error_subcode"]),
                    text(&e["type"]),
                    text(&e["message"]),
                )
            } else if let Some(m) = body.get("meta").filter(|m| m.get("error_type").is_some()) {
                (
                    num(&m["code"]),
                    None,
                    text(&m["error_type"]),
                    text(&m["error_message"]),
                )
            } else if body.get("error_type").is_some() {
                (
                    num(&body["code"]),
                    None,
                    text(&body["error_type"]),
                    text(&body["error_message"]),
                )
            } else if let Some(e) = body.get("error").and_then(|e| e.as_str()) {
                (None, None, e.to_owned(), text(&body["error_description"]))
            } else {
                return None;
            };
        Some(Self {
            status,
            code,
            subcode,
            kind,
            message,
            retry_after,
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(c) = self.code {
            write!(f, ", code {c}")?;
        }
        if let Some(s) = self.subcode {
            write!(f, "/{s}")?;
        }
        write!(f, " ({}): {}", self.kind, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a refusal.
    #[error("{0}")]
    Api(ApiError),
    /// No answer: connection, TLS or timeout. Transient. Kept without its URL, which can hold
    /// a client secret (`ig_exchange_token` sends it in the query).
    #[error("request failed: {0}")]
    Http(reqwest::Error),
    /// An answer that is neither the expected shape nor an error shape.
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Error::Http(e.without_url())
    }
}

impl Error {
    pub fn failure(&self) -> Failure {
        match self {
            Error::Api(e) => e.failure(),
            Error::Http(_) => Failure::Transient,
            Error::Decode(_) => Failure::Refused,
        }
    }
    /// The user must go through the authorization flow again.
    pub fn needs_reauthorization(&self) -> bool {
        matches!(self.failure(), Failure::Expired | Failure::Invalidated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(status: u16, body: serde_json::Value) -> ApiError {
        ApiError::parse(status, None, &body).unwrap()
    }

    #[test]
    fn every_wire_shape_parses_and_is_classified() {
        let expired = parsed(
            400,
            json!({"error":{"message":"Session has expired","type":"OAuthException","code":190,"error_subcode":463}}),
        );
        assert_eq!(expired.failure(), Failure::Expired);
        let password = parsed(
            400,
            json!({"error":{"message":"x","type":"OAuthException","code":"190","error_subcode":460}}),
        );
        assert_eq!(password.failure(), Failure::Invalidated);
        let app = parsed(
            429,
            json!({"error":{"message":"(#4) Application request limit reached","type":"OAuthException","code":4}}),
        );
        assert_eq!(app.failure(), Failure::RateLimited);
        let legacy = parsed(
            429,
            json!({"meta":{"code":429,"error_type":"OAuthRateLimitException","error_message":"…"}}),
        );
        assert_eq!(legacy.failure(), Failure::RateLimited);
        let flat = parsed(
            400,
            json!({"error_type":"OAuthException","code":400,"error_message":"Invalid platform app"}),
        );
        assert_eq!(
            (flat.failure(), flat.message.as_str()),
            (Failure::Refused, "Invalid platform app")
        );
        let rfc = parsed(
            400,
            json!({"error":"invalid_grant","error_description":"bad code"}),
        );
        assert_eq!(
            (rfc.kind.as_str(), rfc.failure()),
            ("invalid_grant", Failure::Refused)
        );
        let down = parsed(
            503,
            json!({"error":{"message":"(#2) Service temporarily unavailable","type":"OAuthException","code":2}}),
        );
        assert_eq!(down.failure(), Failure::Transient);
        // Code 1 is both Graph's unknown error and a refused client secret.
        let unknown = parsed(
            500,
            json!({"error":{"message":"An unknown error occurred","type":"OAuthException","code":1}}),
        );
        assert_eq!(unknown.failure(), Failure::Transient);
        let secret = parsed(
            400,
            json!({"error":{"message":"Error validating client secret.","type":"OAuthException","code":1}}),
        );
        assert_eq!(secret.failure(), Failure::Refused);
        assert!(ApiError::parse(200, None, &json!({"id":"1"})).is_none());
        assert_eq!(
            expired.to_string(),
            "HTTP 400, code 190/463 (OAuthException): Session has expired"
        );
    }
}
