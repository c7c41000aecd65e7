//! What can go wrong talking to Instagram or gramkey, and what a caller should do about it.

use std::time::Duration;

/// A refusal from the server, whatever its wire shape: Graph's `{"error":{…}}`, the token
/// endpoint's flat `{"error_type","code","error_message"}`, legacy v1's `{"meta":{…}}`, or RFC
/// 6749's `{"error","error_description"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The answer's HTTP status.
    pub status: u16,
    /// Graph's `code` (190, 4, 17, 100 …), or the flat shape's code (usually the status).
    pub code: Option<u32>,
    /// Graph's `error_subcode` (463, 460 …), when the answer has one.
    pub subcode: Option<u32>,
    /// `OAuthException`, `IGApiException`, `OAuthRateLimitException`, `invalid_grant` …
    pub kind: String,
    /// The server's message (`message`, `error_message` or `error_description`).
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
    /// 458, revoked; 102; legacy v1's `OAuthAccessTokenException`): the user must authorize
    /// again.
    Invalidated,
    /// A rate limit (4, 17, 32, 341, 613, or HTTP 429): retry later.
    RateLimited,
    /// The server or the network failed (5xx, codes 1 and 2): retry with backoff.
    Transient,
    /// The request itself was refused (bad parameter, missing permission …): retrying will not
    /// help.
    Refused,
}

impl ApiError {
    /// What this refusal means for the caller.
    pub fn failure(&self) -> Failure {
        match (self.code, self.subcode) {
            (Some(190), Some(463)) => Failure::Expired,
            (Some(190 | 102), _) => Failure::Invalidated,
            // Legacy v1 names a bad token by its type, with code 400.
            _ if self.kind == "OAuthAccessTokenException" => Failure::Invalidated,
            (Some(4 | 17 | 32 | 341 | 613), _) => Failure::RateLimited,
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

/// Why a request failed: a refusal, no answer, or an answer that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a refusal.
    #[error("{0}")]
    Api(ApiError),
    /// No answer from `host`: refused, unreachable, timed out, TLS. Transient. Kept without
    /// its URL, which can hold a client secret (`ig_exchange_token` sends it in the query).
    #[error("could not reach {host}: {}", network_cause(.source))]
    Http {
        /// `host:port`, or `?` when the request had no URL.
        host: String,
        /// The underlying error, without its URL.
        #[source]
        source: reqwest::Error,
    },
    /// An answer that is neither the expected shape nor an error shape.
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        let host = e
            .url()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            .unwrap_or_else(|| "?".into());
        Error::Http {
            host,
            source: e.without_url(),
        }
    }
}

/// A network failure in words a person can act on: timed out, refused, a name that does not
/// resolve, a TLS failure, with the innermost cause.
fn network_cause(e: &reqwest::Error) -> String {
    let mut innermost = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        innermost = c.to_string();
        cause = c.source();
    }
    let lower = innermost.to_lowercase();
    let what = if e.is_timeout() {
        "timed out"
    } else if lower.contains("refused") {
        "connection refused"
    } else if lower.contains("dns") || lower.contains("lookup") || lower.contains("resolve") {
        "the name does not resolve"
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        "TLS failed"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "the connection failed"
    };
    format!("{what} ({innermost})")
}

impl Error {
    /// What this error means for the caller; a network failure counts as transient.
    pub fn failure(&self) -> Failure {
        match self {
            Error::Api(e) => e.failure(),
            Error::Http { .. } => Failure::Transient,
            Error::Decode(_) => Failure::Refused,
        }
    }
    /// The user must go through the authorization flow again.
    pub fn needs_reauthorization(&self) -> bool {
        matches!(self.failure(), Failure::Expired | Failure::Invalidated)
    }
    /// How long the server asked to wait (`Retry-After`), when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api(e) => e.retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every row of the wire reference's codes (§5, §6, legacy v1, RFC 6749 and 8628), as a
    /// server sends it, and what it means for a caller.
    #[test]
    fn the_classification_table() {
        let graph = |status: u16, code: u32, sub: Option<u32>, msg: &str| {
            let mut e = json!({"message": msg, "type": "OAuthException", "code": code});
            if let Some(s) = sub {
                e["error_subcode"] = json!(s);
            }
            (status, json!({ "error": e }))
        };
        use Failure::*;
        let rows: Vec<(&str, (u16, serde_json::Value), Failure)> = vec![
            (
                "190/463 expired",
                graph(400, 190, Some(463), "Session has expired"),
                Expired,
            ),
            (
                "190/458 app removed",
                graph(400, 190, Some(458), "app not installed"),
                Invalidated,
            ),
            (
                "190/459 checkpointed",
                graph(400, 190, Some(459), "checkpointed"),
                Invalidated,
            ),
            (
                "190/460 password changed",
                graph(400, 190, Some(460), "password"),
                Invalidated,
            ),
            (
                "190/464 unconfirmed user",
                graph(400, 190, Some(464), "unconfirmed"),
                Invalidated,
            ),
            (
                "190/467 invalid token",
                graph(400, 190, Some(467), "invalid"),
                Invalidated,
            ),
            (
                "190 revoked, no subcode",
                graph(400, 190, None, "Invalid OAuth access token"),
                Invalidated,
            ),
            (
                "102 session",
                graph(400, 102, None, "Session key invalid"),
                Invalidated,
            ),
            (
                "1 unknown error",
                graph(500, 1, None, "An unknown error occurred"),
                Transient,
            ),
            (
                "1 refused client secret",
                graph(400, 1, None, "Error validating client secret."),
                Refused,
            ),
            (
                "2 service unavailable",
                graph(503, 2, None, "Service temporarily unavailable"),
                Transient,
            ),
            (
                "3 unknown method",
                graph(400, 3, None, "Unknown method"),
                Refused,
            ),
            (
                "4 app rate limit",
                graph(429, 4, None, "Application request limit reached"),
                RateLimited,
            ),
            (
                "4 app rate limit as 403",
                graph(403, 4, None, "Application request limit reached"),
                RateLimited,
            ),
            (
                "17 user rate limit",
                graph(400, 17, None, "User request limit reached"),
                RateLimited,
            ),
            (
                "32 page rate limit",
                graph(400, 32, None, "Page request limit reached"),
                RateLimited,
            ),
            (
                "341 app limit",
                graph(400, 341, None, "Application limit reached"),
                RateLimited,
            ),
            (
                "613 rate limit",
                graph(400, 613, None, "Calls within one hour"),
                RateLimited,
            ),
            (
                "10 permission",
                graph(400, 10, None, "Application does not have permission"),
                Refused,
            ),
            (
                "200 permission",
                graph(403, 200, None, "Permissions error"),
                Refused,
            ),
            (
                "299 permission",
                graph(403, 299, None, "Permissions error"),
                Refused,
            ),
            (
                "100 invalid parameter",
                graph(400, 100, None, "Unsupported get request"),
                Refused,
            ),
            (
                "803 unknown alias",
                graph(404, 803, None, "Some of the aliases do not exist"),
                Refused,
            ),
            (
                "368 temporarily blocked",
                graph(400, 368, None, "Temporarily blocked"),
                Refused,
            ),
            (
                "Basic Display's IGApiException",
                (
                    400,
                    json!({"error":{"message":"Application does not have permission for this action","type":"IGApiException","code":10}}),
                ),
                Refused,
            ),
            (
                "v1 rate limit",
                (
                    429,
                    json!({"meta":{"code":429,"error_type":"OAuthRateLimitException","error_message":"The maximum number of requests per hour has been exceeded."}}),
                ),
                RateLimited,
            ),
            (
                "v1 bad token",
                (
                    400,
                    json!({"meta":{"code":400,"error_type":"OAuthAccessTokenException","error_message":"The access_token provided is invalid."}}),
                ),
                Invalidated,
            ),
            (
                "v1 bad parameter",
                (
                    400,
                    json!({"meta":{"code":400,"error_type":"APINotFoundError","error_message":"this user does not exist"}}),
                ),
                Refused,
            ),
            (
                "token endpoint, flat",
                (
                    400,
                    json!({"error_type":"OAuthException","code":400,"error_message":"Invalid platform app"}),
                ),
                Refused,
            ),
            (
                "token endpoint, code used",
                (
                    400,
                    json!({"error_type":"OAuthException","code":400,"error_message":"This authorization code has been used"}),
                ),
                Refused,
            ),
            (
                "RFC invalid_grant",
                (
                    400,
                    json!({"error":"invalid_grant","error_description":"bad code"}),
                ),
                Refused,
            ),
            (
                "RFC invalid_client",
                (
                    401,
                    json!({"error":"invalid_client","error_description":"Client authentication failed"}),
                ),
                Refused,
            ),
            (
                "RFC temporarily_unavailable",
                (503, json!({"error":"temporarily_unavailable"})),
                Transient,
            ),
            (
                "RFC throttled",
                (429, json!({"error":"temporarily_unavailable"})),
                RateLimited,
            ),
            (
                "RFC 8628 expired_token",
                (400, json!({"error":"expired_token"})),
                Refused,
            ),
            (
                "RFC 8628 access_denied",
                (400, json!({"error":"access_denied"})),
                Refused,
            ),
            ("any 5xx", (502, json!({"error":"bad_gateway"})), Transient),
        ];
        for (row, (status, body), want) in rows {
            let e =
                ApiError::parse(status, None, &body).unwrap_or_else(|| panic!("{row}: no shape"));
            assert_eq!(e.failure(), want, "{row}: {e}");
            let err = Error::Api(e);
            assert_eq!(
                err.needs_reauthorization(),
                matches!(want, Expired | Invalidated),
                "{row}"
            );
        }
        let limited = Error::Api(ApiError {
            retry_after: Some(Duration::from_secs(7)),
            ..ApiError::parse(429, None, &json!({"error":"x"})).unwrap()
        });
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(Error::Decode("x".into()).retry_after(), None);
    }

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
