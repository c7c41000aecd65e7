//! Legacy v1's error type and its `meta` envelope (wire protocol §4): a refusal in v1's words,
//! or a store fault, logged once, when rendered, and answered as v1's generic error. JSON, or
//! JSONP with a valid `callback`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gramkey_domain::error::GraphError;
use gramkey_domain::graph::legacy::{LegacyError, valid_callback};
use gramkey_store::StoreError;
use serde_json::{Value, json};

use super::graph::GraphResponse;
use crate::observe::ErrorCode;

/// The legacy flavour's one error type.
#[derive(Debug)]
pub enum LegacyResponse {
    Refused(LegacyError),
    Fault(StoreError),
}

impl From<LegacyError> for LegacyResponse {
    fn from(e: LegacyError) -> Self {
        Self::Refused(e)
    }
}

impl From<StoreError> for LegacyResponse {
    fn from(e: StoreError) -> Self {
        Self::Fault(e)
    }
}

/// A Graph-flavoured outcome (token authentication, budgets) in v1's words.
impl From<GraphResponse> for LegacyResponse {
    fn from(e: GraphResponse) -> Self {
        match e {
            GraphResponse::Refused(e) | GraphResponse::Throttled(e, _) => {
                Self::Refused(LegacyError::from(&e))
            }
            GraphResponse::Fault(e) => Self::Fault(e),
        }
    }
}

impl LegacyResponse {
    /// The error as v1 words it; a fault is logged here.
    fn into_error(self) -> LegacyError {
        match self {
            Self::Refused(e) => e,
            Self::Fault(e) => {
                tracing::error!(error = %e, "legacy request failed in the store");
                LegacyError::from(&GraphError::internal())
            }
        }
    }
}

/// The envelope, as JSON or (with a valid `callback`) JSONP. JSONP answers are HTTP 200 with the
/// real code in `meta.code`, as v1 did: a script tag cannot read a status.
pub fn respond(query: &[(String, String)], result: Result<Value, LegacyResponse>) -> Response {
    let result = result.map_err(LegacyResponse::into_error);
    let code = result.as_ref().err().map(|e| ErrorCode(u32::from(e.code)));
    let mut resp = envelope(query, result);
    if let Some(code) = code {
        resp.extensions_mut().insert(code);
    }
    resp
}

fn envelope(query: &[(String, String)], result: Result<Value, LegacyError>) -> Response {
    let (status, body) = match result {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (
            StatusCode::from_u16(e.code).unwrap_or(StatusCode::BAD_REQUEST),
            json!({"meta": {"error_type": e.error_type, "code": e.code, "error_message": e.message}}),
        ),
    };
    match query.iter().find(|(k, _)| k == "callback") {
        None => (status, axum::Json(body)).into_response(),
        Some((_, cb)) if valid_callback(cb) => {
            let mut resp = format!("/**/ {cb}({body});").into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/javascript; charset=utf-8"),
            );
            resp.headers_mut().insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            resp
        }
        Some(_) => {
            let e = LegacyError::invalid(
                "callback must be a JavaScript identifier path such as cb or app.feed.cb",
            );
            let body = json!({"meta": {"error_type": e.error_type, "code": e.code, "error_message": e.message}});
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        }
    }
}
