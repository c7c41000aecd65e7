//! `GET /debug_token?input_token=…&access_token=APP_TOKEN` (wire protocol §7): what a token
//! is, for the app it belongs to. The caller must present an app token (issued, or the
//! `APP_ID|APP_SECRET` form) of the same app; another app's token is reported as invalid, so
//! no app learns about another's tokens.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use gramkey_domain::error::GraphError;
use gramkey_domain::token::{NEVER, TokenState, check_usable, plausible_token};
use gramkey_domain::{AccessToken, TokenHash, TokenKind};
use serde_json::{Value, json};

use super::me::{admit, authenticate, bearer};
use crate::handlers::QueryPairs;
use crate::observe::LimitHeaders;
use crate::origin::Origin;
use crate::state::AppState;
use crate::tokens::Bearer;
use crate::wire::graph::GraphResponse;
use gramkey_domain::ratelimit::CallClass;

/// Meta lets apps read a user's data for 90 days after the user last authorized them.
const DATA_ACCESS_SECS: i64 = 90 * 24 * 3600;

pub async fn debug_token(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    QueryPairs(query): QueryPairs,
) -> Response {
    let mut limits = LimitHeaders::default();
    let result = async {
        let caller = authenticate(&state, &origin, bearer(&headers, &query)?, &mut limits).await?;
        let verdict;
        (limits, verdict) = admit(
            &state,
            &origin,
            &caller,
            CallClass::Read,
            ("GET", "/debug_token"),
        )
        .await;
        verdict?;
        inner(&state, &caller, &query).await
    }
    .await;
    let response = match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    };
    (limits, response).into_response()
}

fn invalid() -> Value {
    json!({"data": {
        "error": {"code": 190, "message": "Invalid OAuth access token."},
        "is_valid": false,
        "scopes": [],
    }})
}

/// What `input_token` is, for `caller`, admitted; it must be an app token.
async fn inner(
    state: &AppState,
    caller: &Bearer,
    query: &[(String, String)],
) -> Result<Value, GraphResponse> {
    if !caller.is_app() {
        return Err(GraphError::invalid_parameter(
            "You must provide an app access token to debug tokens",
        )
        .into());
    }
    let mut inputs = query
        .iter()
        .filter(|(k, _)| k == "input_token")
        .map(|(_, v)| v.as_str());
    let input = match (inputs.next(), inputs.next()) {
        (Some(t), None) if !t.is_empty() => t,
        (Some(_), Some(_)) => {
            return Err(
                GraphError::invalid_parameter("input_token was given more than once").into(),
            );
        }
        _ => {
            return Err(GraphError::invalid_parameter("Missing parameter: input_token").into());
        }
    };
    if !plausible_token(input) {
        return Ok(invalid());
    }
    let store = &state.ops.store;
    let Some(t) = store
        .token(&TokenHash::of_token(&AccessToken::new(input)))
        .await?
    else {
        return Ok(invalid());
    };
    if &t.app_id != caller.app_id() {
        return Ok(invalid());
    }
    let app = store
        .app(&t.app_id)
        .await?
        .ok_or_else(GraphError::invalid_token)?;
    let now = state.ops.now_for(&app);
    let usable = check_usable(
        TokenState {
            expires_at: t.expires_at,
            revoked: t.revoked,
        },
        now,
    )
    .map_err(GraphError::from);
    let mut data = json!({
        "app_id": t.app_id.as_str(),
        "type": if t.kind == TokenKind::App { "APP" } else { "USER" },
        "application": app.name,
        "expires_at": if t.expires_at == NEVER { 0 } else { t.expires_at },
        "is_valid": usable.is_ok(),
        "issued_at": t.issued_at,
        "scopes": t.scopes.permissions(),
    });
    if t.kind != TokenKind::App {
        data["data_access_expires_at"] = json!(t.issued_at + DATA_ACCESS_SECS);
        data["user_id"] = json!(t.scoped_id.as_ref().map(|s| s.as_str()));
    }
    if let Err(e) = usable {
        let mut error = json!({"code": e.code, "message": e.message});
        if let Some(sub) = e.subcode {
            error["subcode"] = json!(sub);
        }
        data["error"] = error;
    }
    Ok(json!({ "data": data }))
}
