//! The Graph API error shape.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gramkey_domain::app::ClientRefusal;
use gramkey_domain::entropy::{OsEntropy, random_alnum};
use gramkey_domain::error::GraphError;
use serde_json::json;

use crate::tokens::Failure;

/// A Graph error, ready to answer.
#[derive(Debug)]
pub struct GraphResponse(pub GraphError);

impl From<GraphError> for GraphResponse {
    fn from(e: GraphError) -> Self {
        Self(e)
    }
}

/// The token service's outcomes on the Graph host (`/access_token`, `/refresh_access_token`,
/// and authentication on every resource call).
impl From<Failure> for GraphError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Token(r) => r.into(),
            Failure::Client(ClientRefusal::Throttled { .. }) => GraphError::user_rate_limited(),
            Failure::Client(ClientRefusal::WrongSecret) => GraphError::bad_client_secret(),
            Failure::Store(e) => {
                tracing::error!(error = %e, "token service failed");
                GraphError::internal()
            }
            // Not produced on the Graph host: its only client is the token's own app.
            Failure::Client(ClientRefusal::UnknownClient)
            | Failure::RedirectNotRegistered
            | Failure::Code(_)
            | Failure::CodeReplayed
            | Failure::InvalidRefreshToken
            | Failure::RefreshTokenReused
            | Failure::OtherClientsToken => GraphError::invalid_token(),
        }
    }
}

impl From<Failure> for GraphResponse {
    fn from(f: Failure) -> Self {
        Self(f.into())
    }
}

impl IntoResponse for GraphResponse {
    fn into_response(self) -> Response {
        let e = self.0;
        let mut error = json!({
            "message": e.message,
            "type": e.kind,
            "code": e.code,
            // Graph tags every error with a trace id; ours correlates with nothing secret.
            "fbtrace_id": random_alnum(&OsEntropy, 11),
        });
        if let Some(sub) = e.subcode {
            error["error_subcode"] = json!(sub);
        }
        let status = StatusCode::from_u16(e.http_status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut resp = (status, Json(json!({ "error": error }))).into_response();
        // For app insights' errors by code.
        resp.extensions_mut()
            .insert(crate::observe::ErrorCode(e.code));
        resp
    }
}

/// `Unknown path components` (Graph code 2500) for a path no route serves.
pub fn unknown_path(path: &str) -> Response {
    GraphResponse(GraphError::unknown_path(path)).into_response()
}
