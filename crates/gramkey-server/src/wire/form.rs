//! What is wrong with a request's parameters, whichever wire flavour answers it.

use axum::http::StatusCode;

/// What is wrong with a request's parameters, before anything is decided on them: the token
/// endpoint answers these as `invalid_request` (in Instagram's shape or RFC 6749's), Graph as
/// code 100.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("You must provide a {0}")]
    Missing(&'static str),
    #[error("Parameter {0} was given more than once")]
    Duplicate(String),
    #[error("Invalid parameter: {0}")]
    Invalid(&'static str),
    #[error("Could not read the request body: {0}")]
    Body(String),
    #[error("The request body is larger than the server accepts")]
    TooLarge,
    #[error("The request body did not arrive in time")]
    TimedOut,
    /// A name or value holds a control character ([`gramkey_domain::text`]).
    #[error("{0}")]
    ControlCharacter(String),
}

impl FormError {
    /// The HTTP status the error is answered with, whatever the wire shape: 413 for a body over
    /// the limit, 408 for one that stalled, 400 for the rest.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TimedOut => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}
