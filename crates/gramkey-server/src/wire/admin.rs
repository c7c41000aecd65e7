//! The admin API's error shape: `{"error":{"message","status"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ops::OpError;

#[derive(Debug)]
pub struct AdminError(pub StatusCode, pub String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"error": {"message": self.1, "status": self.0.as_u16()}})),
        )
            .into_response()
    }
}

impl From<OpError> for AdminError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Invalid(m) => AdminError(StatusCode::BAD_REQUEST, m),
            OpError::NotFound(m) => AdminError(StatusCode::NOT_FOUND, m),
            OpError::Conflict(m) => AdminError(StatusCode::CONFLICT, m),
            OpError::Store(e) => {
                tracing::error!(error = %e, "admin operation failed");
                AdminError(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
            }
        }
    }
}
