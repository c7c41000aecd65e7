//! The standard OAuth endpoints, so generic OAuth clients work too:
//!
//! - `POST /oauth/revoke` (RFC 7009), client-authenticated; unknown tokens answer 200 as the RFC
//!   says, another client's token is refused;
//! - `POST /oauth/introspect` (RFC 7662), client-authenticated; another client's token is
//!   reported inactive;
//! - `POST /oauth/device/code` (RFC 8628), client-authenticated, for apps that turned the
//!   device flow on; the user enters the code on `/device` ([`super::device`]);
//! - `GET /.well-known/oauth-authorization-server` (RFC 8414).
//!
//! Clients authenticate with `client_id`/`client_secret` in the form or HTTP Basic
//! (RFC 6749 §2.3.1).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gramkey_domain::token::NEVER;
use gramkey_domain::{ClientSecret, Scope, TokenKind, device};
use gramkey_store::App;
use serde_json::{Value, json};

use super::form::{FormFields, basic_credentials};
use crate::origin::Origin;
use crate::state::AppState;
use crate::tokens::{Failure, Tokens};
use crate::wire::no_store;
use crate::wire::oauth::TokenErrorResponse;
use crate::wire::rfc::RfcError;

/// The authenticated client, from HTTP Basic or the form (not both).
async fn client(tokens: &Tokens<'_>, headers: &HeaderMap, f: &FormFields) -> Result<App, RfcError> {
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
    let client = tokens
        .authenticate_client(&id, &ClientSecret::new(secret))
        .await?;
    Ok(client.app)
}

/// The form, with form-shaped errors turned into RFC ones.
fn form(fields: Result<FormFields, TokenErrorResponse>) -> Result<FormFields, RfcError> {
    fields.map_err(|e| match e {
        TokenErrorResponse::Refused(e) => RfcError::invalid_request(e.to_string()),
        TokenErrorResponse::Malformed(e) => RfcError {
            status: e.status(),
            ..RfcError::invalid_request(e.to_string())
        },
        TokenErrorResponse::Unavailable => RfcError::from(crate::tokens::Failure::Unavailable),
        TokenErrorResponse::Fault(cause) => RfcError::fault(cause),
    })
}

fn token_param(f: &FormFields) -> Result<&str, RfcError> {
    f.get("token")
        .ok_or_else(|| RfcError::invalid_request("Missing parameter: token"))
}

pub async fn revoke(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    fields: Result<FormFields, TokenErrorResponse>,
) -> Response {
    let tokens = state.tokens(&origin);
    let result = async {
        let f = form(fields)?;
        let app = client(&tokens, &headers, &f).await?;
        tokens.revoke(&app, token_param(&f)?).await?;
        Ok::<_, RfcError>(no_store(StatusCode::OK.into_response()))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn introspect(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    fields: Result<FormFields, TokenErrorResponse>,
) -> Response {
    let tokens = state.tokens(&origin);
    let result = async {
        let f = form(fields)?;
        let app = client(&tokens, &headers, &f).await?;
        let active = tokens.introspect(&app, token_param(&f)?).await?;
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
                let user = state.ops.store.user(uid).await.map_err(Failure::from)?;
                body["username"] = json!(user.map(|u| u.username.clone()));
            }
        }
        Ok::<_, RfcError>(no_store(Json(body).into_response()))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /oauth/device/code` (RFC 8628 §3.1–3.2), client-authenticated, for apps that turned
/// the device flow on.
pub async fn device_code(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    fields: Result<FormFields, TokenErrorResponse>,
) -> Response {
    let tokens = state.tokens(&origin);
    let result = async {
        let f = form(fields)?;
        let app = client(&tokens, &headers, &f).await?;
        if !app.device_flow {
            return Err(RfcError {
                error: "unauthorized_client",
                ..RfcError::invalid_request(
                    "This app has not turned the device flow on (gramkey app device-flow APP_ID on, or the dashboard)",
                )
            });
        }
        let scopes = device::requested_scopes(f.get("scope"), &app.scopes).map_err(|e| RfcError {
            error: "invalid_scope",
            ..RfcError::invalid_request(e)
        })?;
        let codes = tokens.device_codes(&app, scopes).await?;
        let base = &state.config.public_url;
        // A user code is letters and a dash: nothing to escape.
        let complete = format!("{base}/device?user_code={}", codes.user_code);
        Ok(no_store(
            Json(json!({
                "device_code": codes.device_code.expose(),
                "user_code": codes.user_code,
                "verification_uri": format!("{base}/device"),
                "verification_uri_complete": complete,
                "expires_in": codes.expires_in,
                "interval": codes.interval,
            }))
            .into_response(),
        ))
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
        // RFC 8628 §4, for apps that turned the device flow on.
        "device_authorization_endpoint": format!("{base}/oauth/device/code"),
        "response_types_supported": ["code"],
        // refresh_token: for apps that opted in (RFC 6749 §6).
        "grant_types_supported": [
            "authorization_code", "refresh_token", "client_credentials", device::GRANT_TYPE,
        ],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        // Every authorization response names the issuer (RFC 9207).
        "authorization_response_iss_parameter_supported": true,
        "scopes_supported": Scope::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    }))
}
