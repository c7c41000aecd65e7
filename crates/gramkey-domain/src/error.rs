//! The refusals the domain can give, with Instagram's codes and messages. Rendering them in a
//! wire format (Graph JSON, legacy v1 envelope, flat OAuth) is the server's job.

use crate::code::CodeRefusal;
use crate::time::{UnixTime, human_time};
pub use crate::token::RevokeReason;
use crate::token::TokenRefusal;

/// A refusal at `POST /oauth/access_token`. Instagram answers all of them with HTTP 400 and
/// `{"error_type":"OAuthException","code":400,"error_message":...}` (wire protocol §2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenEndpointError {
    /// Unknown `client_id`. Instagram's own message.
    #[error("Invalid platform app")]
    InvalidClient,
    /// Wrong `client_secret`. Graph's own message.
    #[error("Error validating client secret.")]
    BadClientSecret,
    #[error("Unsupported grant_type: {0}")]
    UnsupportedGrantType(String),
    #[error("Redirect URI does not match registered redirect URI")]
    RedirectNotRegistered,
    #[error(
        "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request"
    )]
    RedirectDiffers,
    /// Unknown, expired, or issued to another app: Instagram does not say which.
    #[error("Matching code was not found or was already used")]
    CodeNotFound,
    /// A second redemption of a code. Every token issued from it has been revoked.
    #[error("This authorization code has been used")]
    CodeUsed,
    #[error(
        "Invalid code_verifier: it does not match the code_challenge of the authorization request"
    )]
    PkceMismatch,
    #[error("Missing code_verifier: the authorization request used PKCE")]
    PkceMissing,
    #[error("code_verifier was given but the authorization request had no code_challenge")]
    PkceUnexpected,
    /// Unknown, expired, revoked, or another client's refresh token.
    #[error("Invalid refresh token")]
    InvalidRefreshToken,
    /// A rotated refresh token presented again after the grace window: every token of the
    /// grant has been revoked.
    #[error("This refresh token has already been used; every token of this grant has been revoked")]
    RefreshTokenReused,
    /// Too many failed client authentications from this client or address: even a right
    /// secret is refused until `retry_after` seconds have passed.
    #[error("Too many failed client authentications. Retry after {retry_after} seconds.")]
    Throttled { retry_after: i64 },
}

/// A Graph API error (wire protocol §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    pub http_status: u16,
    pub code: u32,
    pub subcode: Option<u32>,
    pub kind: &'static str,
    pub message: String,
}

impl GraphError {
    fn oauth(code: u32, subcode: Option<u32>, message: impl Into<String>) -> Self {
        Self {
            http_status: 400,
            code,
            subcode,
            kind: "OAuthException",
            message: message.into(),
        }
    }

    /// An `OAuthException` with this code and message, for the errors only one module words
    /// (webhook verification's 2200).
    pub fn oauth_error(code: u32, message: impl Into<String>) -> Self {
        Self::oauth(code, None, message)
    }
    /// The same error, worded otherwise.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
    /// A token that does not parse or is not known.
    pub fn invalid_token() -> Self {
        Self::oauth(
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        )
    }
    /// No token at all on an endpoint that needs one (Graph's code 2500).
    pub fn missing_token() -> Self {
        Self::oauth(
            2500,
            None,
            "An active access token must be used to query information about the current user.",
        )
    }
    pub fn expired(expired_at: UnixTime, now: UnixTime) -> Self {
        Self::oauth(
            190,
            Some(463),
            format!(
                "Error validating access token: Session has expired on {}. The current time is {}.",
                human_time(expired_at),
                human_time(now)
            ),
        )
    }
    pub fn revoked(reason: RevokeReason) -> Self {
        match reason {
            RevokeReason::PasswordChanged => Self::oauth(
                190,
                Some(460),
                "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
            ),
            RevokeReason::AppRemoved => Self::oauth(
                190,
                Some(458),
                "Error validating access token: The user has not authorized application.",
            ),
            RevokeReason::CodeReplay | RevokeReason::Revoked => Self::oauth(
                190,
                None,
                "Error validating access token: The session is invalid because the user logged out or the token was revoked.",
            ),
        }
    }
    /// A short-lived token that was already exchanged for a long-lived one.
    pub fn already_exchanged() -> Self {
        Self::oauth(
            190,
            None,
            "Error validating access token: this short-lived token has already been exchanged for a long-lived token.",
        )
    }
    /// A wrong `client_secret` on a Graph endpoint.
    pub fn bad_client_secret() -> Self {
        Self::oauth(1, None, "Error validating client secret.")
    }
    /// A field that does not exist on the node type.
    pub fn nonexisting_field(field: &str, node: &str) -> Self {
        Self::oauth(
            100,
            None,
            format!("(#100) Tried accessing nonexisting field ({field}) on node type ({node})"),
        )
    }
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::oauth(100, None, format!("(#100) {}", message.into()))
    }
    /// The token lacks the permission a field or edge needs.
    pub fn permission(permission: &str) -> Self {
        Self {
            http_status: 400,
            code: 10,
            subcode: None,
            kind: "OAuthException",
            message: format!(
                "(#10) Application does not have permission for this action: it needs {permission}"
            ),
        }
    }
    /// Writing without the permission (Graph's permission codes 200–299).
    pub fn permission_write(permission: &str) -> Self {
        Self {
            code: 200,
            message: format!("(#200) Requires {permission} permission to manage the object"),
            ..Self::permission(permission)
        }
    }
    /// An id that does not exist, that this token may not see, or that does not take this
    /// method: Graph gives all three the same answer, so ids of other apps and users reveal
    /// nothing.
    pub fn not_found(id: &str, method: &str) -> Self {
        Self {
            kind: "GraphMethodException",
            ..Self::oauth(
                100,
                Some(33),
                format!(
                    "Unsupported {method} request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
                ),
            )
        }
    }
    /// A path no route or edge serves (Graph's code 2500).
    pub fn unknown_path(path: &str) -> Self {
        Self::oauth(2500, None, format!("Unknown path components: {path}"))
    }
    /// A path segment that is neither an id nor a known name.
    pub fn unknown_alias(alias: &str) -> Self {
        Self::oauth(
            803,
            None,
            format!("(#803) Some of the aliases you requested do not exist: {alias}"),
        )
    }
    /// A container that is still being processed.
    pub fn not_ready() -> Self {
        Self::oauth(
            9007,
            Some(2_207_027),
            "(#9007) The media is not ready for publishing, please wait for a moment",
        )
    }
    /// The 24-hour publishing cap.
    pub fn publish_limit() -> Self {
        Self::oauth(
            9,
            Some(2_207_042),
            "(#9) Application request limit reached: this account has reached the maximum number of posts it can publish through the API in 24 hours",
        )
    }
    /// The app pool is spent (code 4). Answered with HTTP 429 and `Retry-After` (wire protocol
    /// §5 leaves the status open; 429 lets generic clients back off).
    pub fn app_rate_limited() -> Self {
        Self {
            http_status: 429,
            ..Self::oauth(4, None, "(#4) Application request limit reached")
        }
    }
    /// One user's calls or writes through this app are spent (code 17).
    pub fn user_rate_limited() -> Self {
        Self {
            http_status: 429,
            ..Self::oauth(17, None, "(#17) User request limit reached")
        }
    }
    /// The shared limiter could not be asked and the server is set to fail closed (code 2).
    pub fn unavailable() -> Self {
        Self {
            http_status: 503,
            code: 2,
            subcode: None,
            kind: "OAuthException",
            message: "(#2) Service temporarily unavailable".into(),
        }
    }
    /// Basic Display tagged its non-token errors `IGApiException` (wire protocol §5).
    pub fn in_flavour(mut self, flavour: crate::token::Flavour) -> Self {
        if flavour == crate::token::Flavour::BasicDisplay && self.code != 190 {
            self.kind = "IGApiException";
        }
        self
    }
    pub fn internal() -> Self {
        Self {
            http_status: 500,
            code: 2,
            subcode: None,
            kind: "OAuthException",
            message: "An unexpected error has occurred. Please retry your request later.".into(),
        }
    }
}

impl From<CodeRefusal> for TokenEndpointError {
    fn from(r: CodeRefusal) -> Self {
        match r {
            CodeRefusal::NotFound => Self::CodeNotFound,
            CodeRefusal::RedirectDiffers => Self::RedirectDiffers,
            CodeRefusal::PkceMismatch => Self::PkceMismatch,
            CodeRefusal::PkceMissing => Self::PkceMissing,
            CodeRefusal::PkceUnexpected => Self::PkceUnexpected,
        }
    }
}

impl From<crate::app::ClientRefusal> for TokenEndpointError {
    fn from(r: crate::app::ClientRefusal) -> Self {
        match r {
            crate::app::ClientRefusal::Throttled { retry_after } => Self::Throttled { retry_after },
            crate::app::ClientRefusal::UnknownClient => Self::InvalidClient,
            crate::app::ClientRefusal::WrongSecret => Self::BadClientSecret,
        }
    }
}

/// Graph's codes and messages for each token refusal (wire protocol §5).
impl From<TokenRefusal> for GraphError {
    fn from(r: TokenRefusal) -> Self {
        match r {
            TokenRefusal::Missing => Self::missing_token(),
            TokenRefusal::Invalid => Self::invalid_token(),
            TokenRefusal::Expired { expired_at, now } => Self::expired(expired_at, now),
            TokenRefusal::Revoked(reason) => Self::revoked(reason),
            TokenRefusal::AlreadyExchanged => Self::already_exchanged(),
            TokenRefusal::NotShortLived => {
                Self::invalid_parameter("ig_exchange_token needs a short-lived access token")
            }
            TokenRefusal::LegacyNotExchangeable => Self::invalid_parameter(
                "Legacy API tokens cannot be exchanged for long-lived tokens",
            ),
            TokenRefusal::NotLongLived => {
                Self::invalid_parameter("ig_refresh_token needs a long-lived access token")
            }
            TokenRefusal::TooYoungToRefresh => Self::invalid_parameter(
                "The access token can be refreshed only once it is at least 24 hours old",
            ),
            TokenRefusal::NoBasicPermission => Self::permission("the basic profile permission"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        assert_eq!(GraphError::invalid_token().code, 190);
        let e = GraphError::expired(1_504_203_000, 1_504_203_100);
        assert_eq!((e.code, e.subcode), (190, Some(463)));
        assert!(
            e.message
                .contains("Session has expired on Thursday, 31-Aug-2017 18:10:00 UTC")
        );
        assert_eq!(
            GraphError::revoked(RevokeReason::PasswordChanged).subcode,
            Some(460)
        );
        assert_eq!(
            GraphError::revoked(RevokeReason::AppRemoved).subcode,
            Some(458)
        );
        assert_eq!(
            RevokeReason::parse(RevokeReason::CodeReplay.as_str()),
            RevokeReason::CodeReplay
        );
        assert_eq!(
            TokenEndpointError::CodeNotFound.to_string(),
            "Matching code was not found or was already used"
        );
    }
    /// Each token refusal's Graph code and subcode (wire protocol §5).
    #[test]
    fn token_refusals_in_graph() {
        let code = |r: TokenRefusal| {
            let e = GraphError::from(r);
            (e.code, e.subcode)
        };
        assert_eq!(code(TokenRefusal::AlreadyExchanged).0, 190);
        assert_eq!(code(TokenRefusal::NotShortLived).0, 100);
        assert_eq!(code(TokenRefusal::LegacyNotExchangeable).0, 100);
        assert_eq!(code(TokenRefusal::NotLongLived).0, 100);
        assert_eq!(code(TokenRefusal::TooYoungToRefresh).0, 100);
        assert_eq!(code(TokenRefusal::NoBasicPermission).0, 10);
        let expired = TokenRefusal::Expired {
            expired_at: 5,
            now: 10,
        };
        assert_eq!(code(expired), (190, Some(463)));
        assert_eq!(
            code(TokenRefusal::Revoked(RevokeReason::PasswordChanged)),
            (190, Some(460))
        );
    }
}
