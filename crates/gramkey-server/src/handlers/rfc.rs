//! The standard OAuth endpoints, so generic OAuth clients work too:
//!
//! - `POST /oauth/revoke` (RFC 7009), client-authenticated; unknown tokens answer 200 as the RFC
//!   says, another client's token is refused;
//! - `POST /oauth/introspect` (RFC 7662), client-authenticated; another client's token is
//!   reported inactive;
//! - `GET /.well-known/oauth-authorization-server` (RFC 8414).
//!
//! Clients authenticate with `client_id`/`client_secret` in the form or HTTP Basic
//! (RFC 6749 §2.3.1).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gramkey_domain::error::RevokeReason;
use gramkey_domain::token::{NEVER, TokenState, check_usable, plausible_token};
use gramkey_domain::{AccessToken, AppId, ClientSecret, Scope, TokenHash, TokenKind};
use gramkey_store::{App, Revoke, TokenRecord};
use serde_json::{Value, json};

use super::form::{FormFields, basic_credentials};
use crate::state::AppState;
use crate::wire::no_store;
use crate::wire::oauth::TokenErrorResponse;
use crate::wire::rfc::RfcError;
use gramkey_domain::error::TokenEndpointError;

fn internal(e: gramkey_store::StoreError) -> RfcError {
    tracing::error!(error = %e, "standard OAuth endpoint failed");
    RfcError::internal()
}

/// The authenticated client, from HTTP Basic or the form (not both).
async fn client(state: &AppState, headers: &HeaderMap, f: &FormFields) -> Result<App, RfcError> {
    let basic = match basic_credentials(headers) {
        None => None,
        Some(None) => return Err(RfcError::invalid_client()),
        Some(Some(creds)) => Some(creds),
    };
    let (id, secret) = match (basic, f.get("client_id"), f.get("client_secret")) {
        (Some(_), _, Some(_)) => {
            return Err(RfcError::invalid_request(
                "use one client authentication method, not two",
            ));
        }
        (Some(creds), _, None) => creds,
        (None, Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
        _ => return Err(RfcError::invalid_client()),
    };
    crate::throttle::client_allowed(state, &id)
        .await
        .map_err(|retry_after| RfcError::from(TokenEndpointError::Throttled { retry_after }))?;
    let app = match AppId::parse(&id) {
        Some(app_id) => state.ops.store.app(&app_id).await.map_err(internal)?,
        None => None,
    };
    let Some(app) = app else {
        crate::throttle::client_failed(state, None, "unknown client_id").await;
        return Err(RfcError::invalid_client());
    };
    if !state.ops.client_secret_ok(&app, &ClientSecret::new(secret)) {
        tracing::info!(app_id = %app.id, "client authentication failed");
        crate::throttle::client_failed(state, Some(&app.id), "wrong client_secret").await;
        return Err(RfcError::invalid_client());
    }
    Ok(app)
}

/// The form, with form-shaped errors turned into RFC ones.
fn form(fields: Result<FormFields, TokenErrorResponse>) -> Result<FormFields, RfcError> {
    fields.map_err(|e| match e {
        TokenErrorResponse::Refused(e) => RfcError::invalid_request(e.to_string()),
        TokenErrorResponse::Internal => RfcError::internal(),
    })
}

async fn lookup(
    state: &AppState,
    f: &FormFields,
) -> Result<(TokenHash, Option<TokenRecord>), RfcError> {
    let token = f
        .get("token")
        .ok_or_else(|| RfcError::invalid_request("Missing parameter: token"))?;
    let hash = TokenHash::of_token(&AccessToken::new(token));
    if !plausible_token(token) {
        return Ok((hash, None));
    }
    Ok((hash, state.ops.store.token(&hash).await.map_err(internal)?))
}

pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    fields: Result<FormFields, TokenErrorResponse>,
) -> Response {
    let result = async {
        let f = form(fields)?;
        let app = client(&state, &headers, &f).await?;
        let (hash, record) = lookup(&state, &f).await?;
        match record {
            // RFC 7009 §2.2: an unknown or invalid token is not an error.
            None => {}
            Some(t) if t.app_id != app.id => {
                return Err(RfcError {
                    status: StatusCode::BAD_REQUEST,
                    error: "unauthorized_client",
                    description: "The token was not issued to this client".into(),
                });
            }
            Some(t) => {
                let now = state.ops.clock.now();
                let n = state.ops.store.revoke_tokens(Revoke::Token(hash), RevokeReason::Revoked, now).await.map_err(internal)?;
                tracing::info!(app_id = %app.id, token_id = t.id, reason = "revoked", "token revoked");
                state
                    .tokens_revoked(
                        RevokeReason::Revoked,
                        n,
                        crate::audit::Entry::default()
                            .app(&app.id)
                            .user(t.user_id)
                            .token(t.id)
                            .detail("RFC 7009 revocation by the client: "),
                    )
                    .await;
            }
        }
        Ok::<_, RfcError>(no_store(StatusCode::OK.into_response()))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    fields: Result<FormFields, TokenErrorResponse>,
) -> Response {
    let result = async {
        let f = form(fields)?;
        let app = client(&state, &headers, &f).await?;
        let (_, record) = lookup(&state, &f).await?;
        let now = state.ops.clock.now();
        let active = record.filter(|t| {
            t.app_id == app.id
                && check_usable(
                    TokenState {
                        expires_at: t.expires_at,
                        revoked: t.revoked,
                    },
                    now,
                )
                .is_ok()
        });
        let Some(t) = active else {
            return Ok(no_store(Json(json!({"active": false})).into_response()));
        };
        let mut body = json!({
            "active": true,
            "client_id": t.app_id.as_str(),
            "token_type": "bearer",
            "scope": t.scopes.iter().map(Scope::as_str).collect::<Vec<_>>().join(" "),
            "iat": t.issued_at,
            "kind": t.kind.as_str(),
        });
        if t.expires_at != NEVER {
            body["exp"] = json!(t.expires_at);
        }
        if t.kind != TokenKind::App {
            body["sub"] = json!(t.scoped_id.as_ref().map(|s| s.as_str()));
            if let Some(uid) = t.user_id {
                let user = state.ops.store.user(uid).await.map_err(internal)?;
                body["username"] = json!(user.map(|u| u.username));
            }
        }
        Ok::<_, RfcError>(no_store(Json(body).into_response()))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// RFC 8414 metadata. Only what is implemented is advertised.
pub async fn metadata(State(state): State<AppState>) -> Json<Value> {
    let base = &state.config.public_url;
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/access_token"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "introspection_endpoint": format!("{base}/oauth/introspect"),
        "response_types_supported": ["code"],
        // refresh_token: for apps that opted in (RFC 6749 §6).
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        // Every authorization response names the issuer (RFC 9207).
        "authorization_response_iss_parameter_supported": true,
        "scopes_supported": Scope::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    }))
}
