//! The token endpoint's flat error shape (wire protocol §2): HTTP 400,
//! `{"error_type":"OAuthException","code":400,"error_message":"..."}`, with RFC 6749 §5.2's
//! `error` and `error_description` beside them.
//!
//! Instagram's clients read `error_type`, `code` and `error_message` and ignore the rest;
//! generic OAuth libraries that send the secret in the form (`client_secret_post`) tell an
//! error from a token only by `error` (Authlib, oauth4webapi). Both are in every refusal, so
//! neither kind of client stores an error as if it were a token.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gramkey_domain::error::TokenEndpointError;
use serde_json::json;

use super::form::FormError;
use super::no_store;
use crate::observe::LimitHeaders;
use crate::tokens::Failure;
use gramkey_store::StoreError;

/// A token-endpoint refusal, a malformed request, or a server fault (logged where it happened,
/// answered generically).
#[derive(Debug)]
pub enum TokenErrorResponse {
    Refused(TokenEndpointError),
    Malformed(FormError),
    /// The shared rate limiter cannot be asked and fails closed (RFC 6749's
    /// `temporarily_unavailable`, HTTP 503).
    Unavailable,
    /// A server fault, with its cause: logged once, when rendered, and answered generically.
    Fault(String),
}

/// What a client is told while the shared rate limiter is down and the server fails closed.
pub const UNAVAILABLE: &str =
    "The service is temporarily unavailable. Please retry your request in a few seconds.";

impl From<FormError> for TokenErrorResponse {
    fn from(e: FormError) -> Self {
        Self::Malformed(e)
    }
}

impl From<StoreError> for TokenErrorResponse {
    fn from(e: StoreError) -> Self {
        Self::Fault(e.to_string())
    }
}

impl From<TokenEndpointError> for TokenErrorResponse {
    fn from(e: TokenEndpointError) -> Self {
        Self::Refused(e)
    }
}

/// The token service's outcomes at `/oauth/access_token`.
impl From<Failure> for TokenErrorResponse {
    fn from(f: Failure) -> Self {
        Self::Refused(match f {
            Failure::Client(r) => r.into(),
            Failure::RedirectNotRegistered => TokenEndpointError::RedirectNotRegistered,
            Failure::Code(r) => r.into(),
            Failure::CodeReplayed => TokenEndpointError::CodeUsed,
            Failure::RefreshTokenReused => TokenEndpointError::RefreshTokenReused,
            // The token endpoint's only token input is a refresh token.
            Failure::InvalidRefreshToken | Failure::Token(_) | Failure::OtherClientsToken => {
                TokenEndpointError::InvalidRefreshToken
            }
            Failure::Unavailable => return Self::Unavailable,
            Failure::Store(e) => return e.into(),
        })
    }
}

impl IntoResponse for TokenErrorResponse {
    fn into_response(self) -> Response {
        let rfc = match &self {
            Self::Refused(e) => super::rfc::token_error_code(e).1,
            Self::Malformed(_) => "invalid_request",
            Self::Unavailable => "temporarily_unavailable",
            Self::Fault(_) => "server_error",
        };
        let limits = match &self {
            Self::Refused(TokenEndpointError::Throttled { retry_after }) => {
                LimitHeaders::wait(*retry_after)
            }
            _ => LimitHeaders::default(),
        };
        let (status, kind, message) = match self {
            // Throttling speaks legacy v1's rate-limit shape (wire protocol §6).
            Self::Refused(e @ TokenEndpointError::Throttled { .. }) => (
                StatusCode::TOO_MANY_REQUESTS,
                "OAuthRateLimitException",
                e.to_string(),
            ),
            Self::Refused(e) => (StatusCode::BAD_REQUEST, "OAuthException", e.to_string()),
            Self::Malformed(e) => (e.status(), "OAuthException", e.to_string()),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "OAuthException",
                UNAVAILABLE.to_owned(),
            ),
            Self::Fault(cause) => {
                tracing::error!(error = %cause, "token endpoint failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "OAuthException",
                    "An unexpected error has occurred. Please retry your request later.".to_owned(),
                )
            }
        };
        let code = status.as_u16();
        no_store(
            (
                status,
                limits,
                Json(json!({
                    "error_type": kind,
                    "code": code,
                    "error_message": message,
                    "error": rfc,
                    "error_description": message,
                })),
            )
                .into_response(),
        )
    }
}
