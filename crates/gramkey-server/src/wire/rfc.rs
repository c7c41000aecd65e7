//! The standard OAuth error shape (RFC 6749 §5.2) for the standard endpoints (revocation,
//! introspection): `{"error","error_description"}`, 401 with `WWW-Authenticate` for a client
//! that failed to authenticate.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::no_store;
use super::oauth::{TokenErrorResponse, UNAVAILABLE};
use crate::observe::LimitHeaders;
use crate::tokens::Failure;
use gramkey_domain::app::ClientRefusal;

#[derive(Debug)]
pub struct RfcError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// A throttle's wait, for `Retry-After`.
    pub retry_after: Option<i64>,
    /// A server fault's cause: logged once, when rendered.
    pub fault: Option<String>,
}

impl RfcError {
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: description.into(),
            retry_after: None,
            fault: None,
        }
    }
    pub fn invalid_client() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: "Client authentication failed".into(),
            retry_after: None,
            fault: None,
        }
    }
    /// RFC 8628 §3.5: a device's poll that gets no token yet, with what it should do.
    pub fn device_poll(poll: gramkey_domain::device::Poll) -> Self {
        use gramkey_domain::device::Poll;
        let description = match poll {
            Poll::Pending => {
                "The user has not entered the code and approved yet: poll again after the interval"
                    .to_owned()
            }
            Poll::SlowDown { interval } => {
                format!("Polling too often: wait at least {interval} seconds between polls")
            }
            Poll::Expired => "The device code has expired: ask for a new one".to_owned(),
            Poll::Denied => "The user denied the request".to_owned(),
            Poll::Approved => "approved".to_owned(),
        };
        Self {
            error: poll.error().unwrap_or("invalid_grant"),
            ..Self::invalid_request(description)
        }
    }
    /// A server fault, answered generically; `cause` is logged when it is rendered.
    pub fn fault(cause: impl std::fmt::Display) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: "internal error".into(),
            retry_after: None,
            fault: Some(cause.to_string()),
        }
    }
}

/// The RFC 6749 §5.2 status and code of a token-endpoint refusal.
pub fn token_error_code(
    e: &gramkey_domain::error::TokenEndpointError,
) -> (StatusCode, &'static str) {
    use gramkey_domain::error::TokenEndpointError as E;
    match e {
        E::InvalidClient | E::BadClientSecret => (StatusCode::UNAUTHORIZED, "invalid_client"),
        E::UnsupportedGrantType(_) => (StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        E::RedirectNotRegistered
        | E::RedirectDiffers
        | E::CodeNotFound
        | E::CodeUsed
        | E::PkceMismatch
        | E::PkceMissing
        | E::PkceUnexpected
        | E::InvalidRefreshToken
        | E::RefreshTokenReused => (StatusCode::BAD_REQUEST, "invalid_grant"),
        E::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable"),
    }
}

impl From<gramkey_domain::error::TokenEndpointError> for RfcError {
    fn from(e: gramkey_domain::error::TokenEndpointError) -> Self {
        let (status, error) = token_error_code(&e);
        let retry_after = match e {
            gramkey_domain::error::TokenEndpointError::Throttled { retry_after } => {
                Some(retry_after)
            }
            _ => None,
        };
        Self {
            status,
            error,
            description: e.to_string(),
            retry_after,
            fault: None,
        }
    }
}

/// The token service's outcomes at the standard endpoints (revocation, introspection, and the
/// token endpoint for clients that speak RFC 6749).
impl From<Failure> for RfcError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::OtherClientsToken => Self {
                status: StatusCode::BAD_REQUEST,
                error: "unauthorized_client",
                description: "The token was not issued to this client".into(),
                retry_after: None,
                fault: None,
            },
            Failure::Client(ClientRefusal::UnknownClient | ClientRefusal::WrongSecret) => {
                Self::invalid_client()
            }
            Failure::Unavailable => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error: "temporarily_unavailable",
                description: UNAVAILABLE.into(),
                retry_after: None,
                fault: None,
            },
            Failure::Store(e) => Self::fault(e),
            other => match TokenErrorResponse::from(other) {
                TokenErrorResponse::Refused(e) => e.into(),
                TokenErrorResponse::Malformed(e) => Self::invalid_request(e.to_string()),
                TokenErrorResponse::Fault(cause) => Self::fault(cause),
                TokenErrorResponse::Unavailable => Self::from(Failure::Unavailable),
            },
        }
    }
}

impl IntoResponse for RfcError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.fault {
            tracing::error!(error = %cause, "standard OAuth endpoint failed");
        }
        let mut resp = (
            self.status,
            Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"gramkey\""),
            );
        }
        if let Some(secs) = self.retry_after {
            resp.extensions_mut().insert(LimitHeaders::wait(secs));
        }
        no_store(resp)
    }
}
