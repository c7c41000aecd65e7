//! Long-lived tokens (wire protocol §3), on the Graph host with an optional `/vNN.N` prefix:
//!
//! - `GET /access_token?grant_type=ig_exchange_token&client_secret=…&access_token=SHORT`
//!   exchanges a short-lived token for a 60-day one, once;
//! - `GET /refresh_access_token?grant_type=ig_refresh_token&access_token=LONG` issues a new
//!   60-day token for a long-lived one at least 24 hours old. The refreshed token stays valid
//!   for a short grace period ([`REFRESH_GRACE_SECS`]), then lapses.
//!
//! Both answer `{"access_token","token_type":"bearer","expires_in"}`, and Graph errors.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use gramkey_domain::error::GraphError;
use gramkey_domain::token::{
    LONG_LIVED_SECS, LifecycleFacts, REFRESH_GRACE_SECS, TokenState, check_exchange, check_refresh,
    plausible_token,
};
use gramkey_domain::{ClientSecret, TokenHash, TokenKind};
use gramkey_store::{Derivation, NewToken, TokenRecord};
use serde_json::json;

use super::me::bearer;
use crate::state::AppState;
use crate::wire::graph::GraphResponse;
use crate::wire::no_store;
use gramkey_domain::audit::AuditKind;

fn internal(e: gramkey_store::StoreError) -> GraphError {
    tracing::error!(error = %e, "token lifecycle failed");
    GraphError::internal()
}

/// Query parameters, each at most once.
fn params(q: Option<String>) -> Result<Vec<(String, String)>, GraphError> {
    let pairs: Vec<(String, String)> = super::query_pairs(q);
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

/// The presented token's record.
async fn presented(
    state: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<(TokenHash, TokenRecord), GraphError> {
    let token = bearer(headers, pairs)?
        .ok_or_else(|| GraphError::invalid_parameter("Missing parameter: access_token"))?;
    if !plausible_token(token.expose()) {
        return Err(GraphError::invalid_token());
    }
    let hash = TokenHash::of_token(&token);
    let record = state
        .ops
        .store
        .token(&hash)
        .await
        .map_err(internal)?
        .ok_or_else(GraphError::invalid_token)?;
    Ok((hash, record))
}

fn facts(t: &TokenRecord) -> LifecycleFacts<'_> {
    LifecycleFacts {
        kind: t.kind,
        flavour: t.flavour,
        scopes: &t.scopes,
        issued_at: t.issued_at,
        state: TokenState {
            expires_at: t.expires_at,
            revoked: t.revoked,
        },
        exchanged: t.exchanged,
    }
}

/// A new long-lived token in the parent's flavour, for the same app, user and scopes.
fn long_lived_from(
    state: &AppState,
    parent: &TokenRecord,
    now: i64,
) -> Result<(gramkey_domain::AccessToken, NewToken), GraphError> {
    let scoped = parent
        .scoped_id
        .as_ref()
        .ok_or_else(GraphError::invalid_token)?;
    let token = parent.flavour.generate_token(scoped, &*state.ops.entropy);
    let new = NewToken {
        hash: TokenHash::of_token(&token),
        kind: TokenKind::LongLived,
        flavour: parent.flavour,
        app_id: parent.app_id.clone(),
        user_id: parent.user_id,
        scopes: parent.scopes.clone(),
        issued_at: now,
        expires_at: now + LONG_LIVED_SECS,
    };
    Ok((token, new))
}

fn answer(result: Result<serde_json::Value, GraphError>) -> Response {
    match result {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => no_store(GraphResponse(e).into_response()),
    }
}

pub async fn exchange(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    answer(exchange_inner(&state, &headers, q).await)
}

async fn exchange_inner(
    state: &AppState,
    headers: &HeaderMap,
    q: Option<String>,
) -> Result<serde_json::Value, GraphError> {
    let pairs = params(q)?;
    grant_type(&pairs, "ig_exchange_token")?;
    let secret = ClientSecret::new(require(&pairs, "client_secret")?);
    let (hash, parent) = presented(state, headers, &pairs).await?;
    let ops = &state.ops;
    let app = ops
        .store
        .app(&parent.app_id)
        .await
        .map_err(internal)?
        .ok_or_else(GraphError::invalid_token)?;
    if crate::throttle::client_allowed(state, app.id.as_str())
        .await
        .is_err()
    {
        return Err(GraphError::user_rate_limited());
    }
    if !ops.client_secret_ok(&app, &secret) {
        tracing::info!(app_id = %app.id, "client authentication failed on ig_exchange_token");
        crate::throttle::client_failed(
            state,
            Some(&app.id),
            "wrong client_secret on ig_exchange_token",
        )
        .await;
        return Err(GraphError::bad_client_secret());
    }
    let now = ops.clock.now();
    check_exchange(&facts(&parent), now)?;
    let (token, new) = long_lived_from(state, &parent, now)?;
    let issued = ops
        .store
        .derive_tokens(
            &hash,
            Derivation::Exchange { now },
            std::slice::from_ref(&new),
        )
        .await
        .map_err(internal)?
        .and_then(|mut v| v.pop())
        // Another request exchanged (or revoked) it between our read and our write.
        .ok_or_else(GraphError::already_exchanged)?;
    tracing::info!(app_id = %app.id, token_id = issued.id, parent_id = parent.id, "long-lived token issued");
    state
        .token_issued(
            AuditKind::TokenExchanged,
            &issued,
            format!("long-lived, from token {}", parent.id),
        )
        .await;
    Ok(
        json!({"access_token": token.expose(), "token_type": "bearer", "expires_in": issued.expires_at - now}),
    )
}

pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    answer(refresh_inner(&state, &headers, q).await)
}

async fn refresh_inner(
    state: &AppState,
    headers: &HeaderMap,
    q: Option<String>,
) -> Result<serde_json::Value, GraphError> {
    let pairs = params(q)?;
    grant_type(&pairs, "ig_refresh_token")?;
    let (hash, parent) = presented(state, headers, &pairs).await?;
    let now = state.ops.clock.now();
    check_refresh(&facts(&parent), now)?;
    let (token, new) = long_lived_from(state, &parent, now)?;
    let how = Derivation::Refresh {
        parent_expires_at: now + REFRESH_GRACE_SECS,
    };
    let issued = state
        .ops
        .store
        .derive_tokens(&hash, how, std::slice::from_ref(&new))
        .await
        .map_err(internal)?
        .and_then(|mut v| v.pop())
        .ok_or_else(GraphError::invalid_token)?;
    tracing::info!(app_id = %parent.app_id, token_id = issued.id, parent_id = parent.id, "token refreshed");
    state
        .token_issued(
            AuditKind::TokenRefreshed,
            &issued,
            format!("ig_refresh_token, from token {}", parent.id),
        )
        .await;
    Ok(
        json!({"access_token": token.expose(), "token_type": "bearer", "expires_in": issued.expires_at - now}),
    )
}
