//! The token endpoint's flat error shape (wire protocol §2): HTTP 400,
//! `{"error_type":"OAuthException","code":400,"error_message":"..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gramkey_domain::error::TokenEndpointError;
use serde_json::json;

use super::no_store;

/// A token-endpoint refusal, or a server fault (logged where it happened, answered generically).
#[derive(Debug)]
pub enum TokenErrorResponse {
    Refused(TokenEndpointError),
    Internal,
}

impl From<TokenEndpointError> for TokenErrorResponse {
    fn from(e: TokenEndpointError) -> Self {
        Self::Refused(e)
    }
}

impl IntoResponse for TokenErrorResponse {
    fn into_response(self) -> Response {
        let (status, kind, message) = match self {
            // Throttling speaks legacy v1's rate-limit shape (wire protocol §6).
            Self::Refused(e @ TokenEndpointError::Throttled { .. }) => (
                StatusCode::TOO_MANY_REQUESTS,
                "OAuthRateLimitException",
                e.to_string(),
            ),
            Self::Refused(e) => (StatusCode::BAD_REQUEST, "OAuthException", e.to_string()),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "OAuthException",
                "An unexpected error has occurred. Please retry your request later.".to_owned(),
            ),
        };
        let code = status.as_u16();
        no_store(
            (
                status,
                Json(json!({"error_type": kind, "code": code, "error_message": message})),
            )
                .into_response(),
        )
    }
}
