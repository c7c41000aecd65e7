//! The Graph API error shape.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gramkey_domain::app::ClientRefusal;
use gramkey_domain::entropy::{OsEntropy, random_alnum};
use gramkey_domain::error::GraphError;
use serde_json::json;

use crate::observe::LimitHeaders;
use crate::tokens::Failure;
use gramkey_store::StoreError;

/// The Graph flavour's one error type: a refusal, or a fault of the store, which is logged
/// once, when it is rendered, and answered with Graph's generic code 2.
#[derive(Debug)]
pub enum GraphResponse {
    Refused(GraphError),
    /// A refusal by a throttle, with its wait in seconds for `Retry-After`.
    Throttled(GraphError, i64),
    Fault(StoreError),
}

impl From<GraphError> for GraphResponse {
    fn from(e: GraphError) -> Self {
        Self::Refused(e)
    }
}

impl From<StoreError> for GraphResponse {
    fn from(e: StoreError) -> Self {
        Self::Fault(e)
    }
}

impl GraphResponse {
    /// In the token's flavour (Basic Display tags non-token errors `IGApiException`).
    pub fn in_flavour(self, flavour: gramkey_domain::Flavour) -> Self {
        match self {
            Self::Refused(e) => Self::Refused(e.in_flavour(flavour)),
            Self::Throttled(e, secs) => Self::Throttled(e.in_flavour(flavour), secs),
            fault => fault,
        }
    }

    /// The error as Graph words it; a fault is logged here.
    pub fn into_error(self) -> GraphError {
        match self {
            Self::Refused(e) | Self::Throttled(e, _) => e,
            Self::Fault(e) => {
                tracing::error!(error = %e, "graph request failed in the store");
                GraphError::internal()
            }
        }
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
            Failure::Unavailable => GraphError::unavailable(),
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
        match f {
            Failure::Store(e) => Self::Fault(e),
            Failure::Client(ClientRefusal::Throttled { retry_after }) => {
                Self::Throttled(GraphError::user_rate_limited(), retry_after)
            }
            other => Self::Refused(other.into()),
        }
    }
}

impl IntoResponse for GraphResponse {
    fn into_response(self) -> Response {
        let limits = match &self {
            Self::Throttled(_, secs) => LimitHeaders::wait(*secs),
            _ => LimitHeaders::default(),
        };
        let e = self.into_error();
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
        let mut resp = (status, limits, Json(json!({ "error": error }))).into_response();
        // For app insights' errors by code.
        resp.extensions_mut()
            .insert(crate::observe::ErrorCode(e.code));
        resp
    }
}

/// `Unknown path components` (Graph code 2500) for a path no route serves.
pub fn unknown_path(path: &str) -> Response {
    GraphResponse::from(GraphError::unknown_path(path)).into_response()
}
