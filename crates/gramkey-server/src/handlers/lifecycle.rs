//! Long-lived tokens (wire protocol §3), on the Graph host with an optional `/vNN.N` prefix:
//!
//! - `GET /access_token?grant_type=ig_exchange_token&client_secret=…&access_token=SHORT`
//!   exchanges a short-lived token for a 60-day one, once;
//! - `GET /refresh_access_token?grant_type=ig_refresh_token&access_token=LONG` issues a new
//!   60-day token for a long-lived one at least 24 hours old. The refreshed token stays valid
//!   for a short grace period (`REFRESH_GRACE_SECS`), then lapses.
//!
//! The rules and the issuing are the token service's ([`crate::tokens`]).
//!
//! Both answer `{"access_token","token_type":"bearer","expires_in"}`, and Graph errors.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use gramkey_domain::ClientSecret;
use gramkey_domain::error::GraphError;
use serde_json::json;

use super::QueryPairs;
use super::me::bearer;
use crate::origin::Origin;
use crate::state::AppState;
use crate::tokens::Issued;
use crate::wire::graph::GraphResponse;
use crate::wire::no_store;

/// Query parameters, each at most once.
fn params(QueryPairs(pairs): QueryPairs) -> Result<Vec<(String, String)>, GraphError> {
    let mut seen = std::collections::HashSet::new();
    for (k, _) in &pairs {
        if !seen.insert(k.as_str()) {
            return Err(GraphError::invalid_parameter(format!(
                "{k} was given more than once"
            )));
        }
    }
    Ok(pairs)
}

fn require<'a>(pairs: &'a [(String, String)], key: &str) -> Result<&'a str, GraphError> {
    pairs
        .iter()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| GraphError::invalid_parameter(format!("Missing parameter: {key}")))
}

fn grant_type(pairs: &[(String, String)], expected: &str) -> Result<(), GraphError> {
    match require(pairs, "grant_type")? {
        g if g == expected => Ok(()),
        other => Err(GraphError::invalid_parameter(format!(
            "Unsupported grant_type: {other}; this endpoint takes {expected}"
        ))),
    }
}

/// The presented token: the header or `access_token`.
fn presented(
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<gramkey_domain::AccessToken, GraphError> {
    bearer(headers, pairs)?
        .ok_or_else(|| GraphError::invalid_parameter("Missing parameter: access_token"))
}

/// `{"access_token","token_type":"bearer","expires_in"}`.
fn long_lived(issued: &Issued) -> serde_json::Value {
    let r = &issued.record;
    json!({"access_token": issued.token.expose(), "token_type": "bearer", "expires_in": r.expires_at - r.issued_at})
}

fn answer(result: Result<serde_json::Value, GraphResponse>) -> Response {
    match result {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => no_store(e.into_response()),
    }
}

pub async fn exchange(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    query: QueryPairs,
) -> Response {
    answer(exchange_inner(&state, &origin, &headers, query).await)
}

async fn exchange_inner(
    state: &AppState,
    origin: &Origin,
    headers: &HeaderMap,
    query: QueryPairs,
) -> Result<serde_json::Value, GraphResponse> {
    let pairs = params(query)?;
    grant_type(&pairs, "ig_exchange_token")?;
    let secret = ClientSecret::new(require(&pairs, "client_secret")?);
    let token = presented(headers, &pairs)?;
    Ok(long_lived(
        &state.tokens(origin).exchange(&token, &secret).await?,
    ))
}

pub async fn refresh(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    query: QueryPairs,
) -> Response {
    answer(refresh_inner(&state, &origin, &headers, query).await)
}

async fn refresh_inner(
    state: &AppState,
    origin: &Origin,
    headers: &HeaderMap,
    query: QueryPairs,
) -> Result<serde_json::Value, GraphResponse> {
    let pairs = params(query)?;
    grant_type(&pairs, "ig_refresh_token")?;
    let token = presented(headers, &pairs)?;
    Ok(long_lived(&state.tokens(origin).refresh(&token).await?))
}
