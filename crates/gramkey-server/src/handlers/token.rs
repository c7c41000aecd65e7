//! `/oauth/access_token` (wire protocol §2 and §7, RFC 6749): parses the request, calls the
//! token service ([`crate::tokens`]) and renders its answer in the client's style.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use gramkey_domain::error::TokenEndpointError;
use gramkey_domain::{AuthCode, ClientSecret, Flavour, device};
use serde_json::json;

use super::form::{FormError, FormFields, basic_credentials};
use crate::handlers::QueryPairs;
use crate::origin::Origin;
use crate::state::AppState;
use crate::tokens::Issued;
use crate::wire::no_store;
use crate::wire::oauth::TokenErrorResponse;
use crate::wire::rfc::RfcError;

type Refusal = TokenErrorResponse;

/// The response style. Instagram's clients send the secret in the form and get Instagram's
/// exact shapes; their errors also carry RFC 6749 §5.2's `error` (see [`TokenErrorResponse`]),
/// so a generic library that sends the secret in the form (`client_secret_post`) can tell an
/// error from a token. Clients that authenticate with HTTP Basic (RFC 6749 §2.3.1) get RFC
/// 6749 §5.1 bodies (`token_type`, `expires_in`, `scope`) and pure §5.2 errors. A code
/// exchange with a PKCE `code_verifier` also gets the §5.1 body: Instagram had no PKCE, so
/// only generic clients send one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Instagram,
    Rfc,
}

pub async fn post(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    fields: Result<FormFields, Refusal>,
) -> Response {
    let (style, result) = match basic_credentials(&headers) {
        None => (
            Style::Instagram,
            async { token_request(&state, &origin, fields?, false, Style::Instagram).await }.await,
        ),
        Some(creds) => (
            Style::Rfc,
            async {
                let (id, secret) = creds.ok_or(TokenEndpointError::InvalidClient)?;
                token_request(
                    &state,
                    &origin,
                    fields?.with_basic_client(id, secret)?,
                    false,
                    Style::Rfc,
                )
                .await
            }
            .await,
        ),
    };
    match (style, result) {
        (_, Ok(resp)) => resp,
        (Style::Rfc, Err(TokenErrorResponse::Refused(e))) => RfcError::from(e).into_response(),
        (Style::Rfc, Err(TokenErrorResponse::Malformed(e))) => {
            RfcError::invalid_request(e.to_string()).into_response()
        }
        (Style::Rfc, Err(TokenErrorResponse::Fault(cause))) => {
            RfcError::fault(cause).into_response()
        }
        (_, Err(e)) => e.into_response(),
    }
}

/// `GET /oauth/access_token`: Meta documents the client-credentials grant as a GET; the
/// authorization-code grant must be POSTed.
pub async fn get(
    State(state): State<AppState>,
    origin: Origin,
    QueryPairs(pairs): QueryPairs,
) -> Response {
    respond(
        async {
            token_request(
                &state,
                &origin,
                FormFields::from_pairs(pairs)?,
                true,
                Style::Instagram,
            )
            .await
        }
        .await,
    )
}

fn respond(r: Result<Response, Refusal>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn token_request(
    state: &AppState,
    origin: &Origin,
    f: FormFields,
    via_get: bool,
    style: Style,
) -> Result<Response, Refusal> {
    let client_id = f.require("client_id")?;
    let secret = ClientSecret::new(f.require("client_secret")?);
    let grant_type = f.require("grant_type")?;
    let tokens = state.tokens(origin);
    let client = tokens.authenticate_client(client_id, &secret).await?;
    let app = &client.app;
    let issued = match grant_type {
        "authorization_code" if via_get => {
            return Err(
                FormError::Invalid("the authorization_code grant must be sent with POST").into(),
            );
        }
        "authorization_code" => {
            let redirect_uri = f.require("redirect_uri")?;
            let code = AuthCode::new(f.require("code")?);
            let verifier = f.get("code_verifier");
            let issued = tokens
                .redeem_code(app, &code, redirect_uri, verifier)
                .await?;
            // Generic clients (HTTP Basic, or PKCE, which Instagram never had) get RFC 6749
            // §5.1's body; Instagram's get their flavour's.
            return if style == Style::Rfc || verifier.is_some() {
                Ok(rfc_body(&issued))
            } else {
                instagram_body(state, &issued).await
            };
        }
        "client_credentials" => {
            let issued = tokens.client_credentials(&client).await?;
            return Ok(no_store(
                Json(json!({"access_token": issued.token.expose(), "token_type": "bearer"}))
                    .into_response(),
            ));
        }
        device::GRANT_TYPE if app.device_flow => {
            // RFC 8628 has no Instagram shape: its answers are RFC 6749's, whatever the style.
            return Ok(
                match tokens.device_token(app, f.require("device_code")?).await? {
                    Ok(issued) => rfc_body(&issued),
                    Err(poll) => RfcError::device_poll(poll).into_response(),
                },
            );
        }
        "refresh_token" if app.refresh_tokens => {
            tokens.rotate(app, f.require("refresh_token")?).await?
        }
        other => return Err(TokenEndpointError::UnsupportedGrantType(other.to_owned()).into()),
    };
    Ok(rfc_body(&issued))
}

/// RFC 6749 §5.1: `access_token`, `token_type`, `expires_in`, `scope`, and the user's
/// app-scoped id; `refresh_token` when one was issued.
fn rfc_body(issued: &Issued) -> Response {
    let record = &issued.record;
    let mut body = json!({
        "access_token": issued.token.expose(),
        "token_type": "bearer",
        "expires_in": record.expires_at - record.issued_at,
        "scope": record.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
        "user_id": record.scoped_id.as_ref().map(|s| s.as_str()),
    });
    if let Some(refresh) = &issued.refresh {
        body["refresh_token"] = json!(refresh.expose());
    }
    no_store(Json(body).into_response())
}

/// The success body of a code exchange, in the shape of the token's flavour (wire protocol
/// §2). Instagram Login uses the flat form seen in practice, not the documented `data`-wrapped
/// one.
async fn instagram_body(state: &AppState, issued: &Issued) -> Result<Response, Refusal> {
    let (record, token) = (&issued.record, &issued.token);
    let scoped = record
        .scoped_id
        .as_ref()
        .ok_or_else(|| Refusal::Fault("token without a scoped user id".into()))?;
    let mut body = match record.flavour {
        Flavour::BasicDisplay => {
            json!({"access_token": token.expose(), "user_id": scoped.as_number()})
        }
        Flavour::InstagramLogin => json!({
            "access_token": token.expose(),
            "user_id": scoped.as_number(),
            "permissions": record.scopes.permissions(),
        }),
        Flavour::Legacy => {
            let uid = record
                .user_id
                .ok_or_else(|| Refusal::Fault("legacy token without a user".into()))?;
            let user = state
                .ops
                .store
                .user(uid)
                .await?
                .ok_or_else(|| Refusal::Fault("token user vanished".into()))?;
            json!({
                "access_token": token.expose(),
                "user": {
                    "id": scoped.as_str(),
                    "username": user.username,
                    "full_name": user.profile.full_name,
                    "profile_picture": user.profile.profile_picture_url,
                    "bio": user.profile.biography,
                    "website": user.profile.website,
                }
            })
        }
    };
    if let Some(refresh) = &issued.refresh {
        body["refresh_token"] = json!(refresh.expose());
    }
    Ok(no_store(Json(body).into_response()))
}
