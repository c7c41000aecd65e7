//! `POST /oauth/access_token`: the authorization-code grant (wire protocol §2).
//!
//! Cost per request: one HMAC to check the client secret, one indexed read for the app, one
//! write transaction shared with every other concurrent request (the SQLite store's group
//! commit), and for legacy tokens one more read for the user. No slow KDF anywhere.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use gramkey_domain::app::find_redirect;
use gramkey_domain::code::{CodeFacts, Presented, check_redemption};
use gramkey_domain::error::RevokeReason;
use gramkey_domain::error::TokenEndpointError;
use gramkey_domain::token::{
    REFRESH_TOKEN_SECS, SHORT_LIVED_SECS, TokenState, check_usable, generate_app_token,
    generate_refresh_token, plausible_token,
};
use gramkey_domain::{
    AccessToken, AppId, AuthCode, ClientSecret, Flavour, ScopeSet, TokenHash, TokenKind,
};
use gramkey_store::{App, Derivation, NewToken, Redemption, Revoke, TokenRecord};
use serde_json::json;

use super::form::{FormFields, basic_credentials};
use crate::audit::Entry;
use crate::state::AppState;
use crate::throttle;
use crate::wire::no_store;
use crate::wire::oauth::TokenErrorResponse;
use crate::wire::rfc::RfcError;
use gramkey_domain::audit::{AuditKind, Outcome};

type Refusal = TokenErrorResponse;

fn internal(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "token endpoint failed");
    TokenErrorResponse::Internal
}

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
    headers: HeaderMap,
    fields: Result<FormFields, Refusal>,
) -> Response {
    let (style, result) = match basic_credentials(&headers) {
        None => (
            Style::Instagram,
            async { token_request(&state, fields?, false, Style::Instagram).await }.await,
        ),
        Some(creds) => (
            Style::Rfc,
            async {
                let (id, secret) = creds.ok_or(TokenEndpointError::InvalidClient)?;
                token_request(
                    &state,
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
        (Style::Rfc, Err(TokenErrorResponse::Internal)) => RfcError::internal().into_response(),
        (_, Err(e)) => e.into_response(),
    }
}

/// `GET /oauth/access_token`: Meta documents the client-credentials grant as a GET; the
/// authorization-code grant must be POSTed.
pub async fn get(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let pairs = super::query_pairs(q);
    respond(
        async {
            token_request(
                &state,
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
    f: FormFields,
    via_get: bool,
    style: Style,
) -> Result<Response, Refusal> {
    let client_id = f.require("client_id")?;
    let secret = ClientSecret::new(f.require("client_secret")?);
    let grant_type = f.require("grant_type")?;
    let ops = &state.ops;
    throttle::client_allowed(state, client_id)
        .await
        .map_err(|retry_after| TokenEndpointError::Throttled { retry_after })?;
    let app = match AppId::parse(client_id) {
        Some(id) => ops.store.app(&id).await.map_err(internal)?,
        None => None,
    };
    let Some(app) = app else {
        throttle::client_failed(state, None, "unknown client_id").await;
        return Err(TokenEndpointError::InvalidClient.into());
    };
    let Some(secret_until) = ops.client_secret_valid_until(&app, &secret) else {
        tracing::info!(app_id = %app.id, "client authentication failed");
        throttle::client_failed(state, Some(&app.id), "wrong client_secret").await;
        return Err(TokenEndpointError::BadClientSecret.into());
    };
    match grant_type {
        "authorization_code" if via_get => Err(TokenEndpointError::Invalid(
            "the authorization_code grant must be sent with POST",
        )
        .into()),
        "authorization_code" => code_grant(state, &app, &f, style).await,
        "client_credentials" => app_token(state, &app, secret_until).await,
        "refresh_token" if app.refresh_tokens => refresh_grant(state, &app, &f).await,
        other => Err(TokenEndpointError::UnsupportedGrantType(other.to_owned()).into()),
    }
}

/// `grant_type=client_credentials`: an app token (wire protocol §7), `{"access_token",
/// "token_type":"bearer"}`. App tokens last as long as the secret they were asked for with
/// (for ever, unless it is rotated); they can read only what an app may.
async fn app_token(
    state: &AppState,
    app: &App,
    until: gramkey_domain::UnixTime,
) -> Result<Response, Refusal> {
    let ops = &state.ops;
    let token = generate_app_token(&app.id, &*ops.entropy);
    let now = ops.clock.now();
    let new = NewToken {
        hash: TokenHash::of_token(&token),
        kind: TokenKind::App,
        // App tokens speak Graph only.
        flavour: Flavour::InstagramLogin,
        app_id: app.id.clone(),
        user_id: None,
        scopes: ScopeSet::default(),
        issued_at: now,
        expires_at: until,
    };
    let record = ops.store.create_token(&new).await.map_err(internal)?;
    tracing::info!(app_id = %app.id, token_id = record.id, kind = "app", "token issued");
    state
        .token_issued(AuditKind::TokenIssued, &record, "client_credentials")
        .await;
    Ok(no_store(
        Json(json!({"access_token": token.expose(), "token_type": "bearer"})).into_response(),
    ))
}

/// A new refresh token for the same app, user and scopes as the access token `with`.
fn new_refresh_token(
    entropy: &dyn gramkey_domain::Entropy,
    with: &NewToken,
) -> (AccessToken, NewToken) {
    let token = generate_refresh_token(entropy);
    let new = NewToken {
        hash: TokenHash::of_token(&token),
        kind: TokenKind::Refresh,
        expires_at: with.issued_at + REFRESH_TOKEN_SECS,
        ..with.clone()
    };
    (token, new)
}

/// `grant_type=refresh_token` (RFC 6749 §6), for apps that opted in. Every use rotates the
/// refresh token. A rotated one presented again within the grace window gets a fresh pair
/// (parallel refreshes); after it, the whole grant is revoked (reuse means it leaked).
async fn refresh_grant(state: &AppState, app: &App, f: &FormFields) -> Result<Response, Refusal> {
    let ops = &state.ops;
    let presented = f.require("refresh_token")?;
    let hash = TokenHash::of_token(&AccessToken::new(presented));
    let now = ops.clock.now();
    let record = if plausible_token(presented) {
        ops.store.token(&hash).await.map_err(internal)?
    } else {
        None
    };
    let old = record
        .filter(|t| t.kind == TokenKind::Refresh && t.app_id == app.id)
        .filter(|t| {
            check_usable(
                TokenState {
                    expires_at: t.expires_at,
                    revoked: t.revoked,
                },
                now,
            )
            .is_ok()
        })
        .ok_or(TokenEndpointError::InvalidRefreshToken)?;
    let access = old.flavour.generate_token(
        old.scoped_id
            .as_ref()
            .ok_or(TokenEndpointError::InvalidRefreshToken)?,
        &*ops.entropy,
    );
    let access_new = NewToken {
        hash: TokenHash::of_token(&access),
        kind: TokenKind::ShortLived,
        flavour: old.flavour,
        app_id: app.id.clone(),
        user_id: old.user_id,
        scopes: old.scopes.clone(),
        issued_at: now,
        expires_at: now + SHORT_LIVED_SECS,
    };
    let (refresh, refresh_new) = new_refresh_token(&*ops.entropy, &access_new);
    let how = Derivation::Rotate {
        now,
        reusable_since: now - state.config.refresh_reuse_grace_secs,
    };
    let pair = [access_new, refresh_new];
    let Some(issued) = ops
        .store
        .derive_tokens(&hash, how, &pair)
        .await
        .map_err(internal)?
    else {
        let revoked = ops
            .store
            .revoke_tokens(Revoke::Family(hash), RevokeReason::Revoked, now)
            .await
            .map_err(internal)?;
        tracing::warn!(app_id = %app.id, token_id = old.id, revoked, "refresh token reused; revoked every token of the grant");
        state
            .tokens_revoked(
                RevokeReason::Revoked,
                revoked,
                Entry::default()
                    .app(&app.id)
                    .user(old.user_id)
                    .token(old.id)
                    .detail("refresh token reused: "),
            )
            .await;
        return Err(TokenEndpointError::RefreshTokenReused.into());
    };
    tracing::info!(app_id = %app.id, token_id = issued[0].id, parent_id = old.id, "token refreshed (refresh_token grant)");
    state
        .token_issued(
            AuditKind::TokenRefreshed,
            &issued[0],
            format!("refresh_token grant, from token {}", old.id),
        )
        .await;
    Ok(no_store(
        Json(json!({
            "access_token": access.expose(),
            "token_type": "bearer",
            "expires_in": SHORT_LIVED_SECS,
            "refresh_token": refresh.expose(),
            "scope": old.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
        }))
        .into_response(),
    ))
}

/// `grant_type=authorization_code` (wire protocol §2).
async fn code_grant(
    state: &AppState,
    app: &App,
    f: &FormFields,
    style: Style,
) -> Result<Response, Refusal> {
    let ops = &state.ops;
    let redirect_uri = f.require("redirect_uri")?.to_owned();
    let code = AuthCode::new(f.require("code")?);
    let verifier = f.get("code_verifier").map(str::to_owned);
    if find_redirect(&app.redirect_uris, &redirect_uri).is_none() {
        return Err(TokenEndpointError::RedirectNotRegistered.into());
    }

    let now = ops.clock.now();
    let code_hash = TokenHash::of_code(&code);
    // The tokens are made inside the store's transaction, once the code is known to be good
    // (with a refresh token, for apps that opted in); this slot carries them back out.
    type Minted = (AccessToken, Option<AccessToken>);
    let minted: Arc<Mutex<Option<Minted>>> = Arc::default();
    let with_refresh = app.refresh_tokens;
    let rfc_body = style == Style::Rfc || verifier.is_some();
    let slot = minted.clone();
    let entropy = ops.entropy.clone();
    let client = app.id.clone();
    let decide = Box::new(move |rec: &gramkey_store::CodeRecord| {
        let facts = CodeFacts {
            app_id: &rec.app_id,
            redirect_uri: &rec.redirect_uri,
            expires_at: rec.expires_at,
            challenge: rec.code_challenge.as_ref(),
        };
        let presented = Presented {
            app_id: &client,
            redirect_uri: &redirect_uri,
            code_verifier: verifier.as_deref(),
        };
        check_redemption(&facts, &presented, now)?;
        let family = rec
            .scopes
            .request_family()
            .map_err(|_| TokenEndpointError::CodeNotFound)?;
        let flavour = Flavour::of(family);
        let token = flavour.generate_token(&rec.scoped_id, &*entropy);
        let new = NewToken {
            hash: TokenHash::of_token(&token),
            kind: TokenKind::ShortLived,
            flavour,
            app_id: rec.app_id.clone(),
            user_id: Some(rec.user_id),
            scopes: rec.scopes.clone(),
            issued_at: now,
            expires_at: now + SHORT_LIVED_SECS,
        };
        let mut issue = vec![new];
        let refresh = with_refresh.then(|| {
            let (refresh, new_refresh) = new_refresh_token(&*entropy, &issue[0]);
            issue.push(new_refresh);
            refresh
        });
        if let Ok(mut s) = slot.lock() {
            *s = Some((token, refresh));
        }
        Ok(issue)
    });
    let record = match ops
        .store
        .redeem_code(&code_hash, now, decide)
        .await
        .map_err(internal)?
    {
        Redemption::Issued(record) => record,
        Redemption::NotFound => return Err(TokenEndpointError::CodeNotFound.into()),
        Redemption::Refused(e) => return Err(e.into()),
        Redemption::Replayed { revoked } => {
            tracing::warn!(app_id = %app.id, revoked, "authorization code replayed; revoked the tokens issued from it");
            state
                .ops
                .audit(
                    AuditKind::CodeReplay,
                    Outcome::Refused,
                    Entry::default()
                        .app(&app.id)
                        .detail(format!("{revoked} tokens revoked")),
                )
                .await;
            state
                .tokens_revoked(
                    RevokeReason::CodeReplay,
                    revoked,
                    Entry::default().app(&app.id),
                )
                .await;
            return Err(TokenEndpointError::CodeUsed.into());
        }
    };
    let (token, refresh) = minted
        .lock()
        .ok()
        .and_then(|mut s| s.take())
        .ok_or_else(|| internal("minted token missing"))?;
    tracing::info!(app_id = %app.id, token_id = record.id, kind = record.kind.as_str(), "token issued");
    state
        .token_issued(AuditKind::TokenIssued, &record, "authorization_code")
        .await;
    let mut body = if rfc_body {
        json!({
            "access_token": token.expose(),
            "token_type": "bearer",
            "expires_in": record.expires_at - now,
            "scope": record.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
            "user_id": record.scoped_id.as_ref().map(|s| s.as_str()),
        })
    } else {
        response_body(state, &record, &token).await?
    };
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh.expose());
    }
    Ok(no_store(Json(body).into_response()))
}

/// The success body, in the shape of the token's flavour (wire protocol §2). Instagram Login
/// uses the flat form seen in practice, not the documented `data`-wrapped one.
async fn response_body(
    state: &AppState,
    record: &TokenRecord,
    token: &AccessToken,
) -> Result<serde_json::Value, Refusal> {
    let scoped = record
        .scoped_id
        .as_ref()
        .ok_or_else(|| internal("token without a scoped user id"))?;
    Ok(match record.flavour {
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
                .ok_or_else(|| internal("legacy token without a user"))?;
            let user = state
                .ops
                .store
                .user(uid)
                .await
                .map_err(internal)?
                .ok_or_else(|| internal("token user vanished"))?;
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
    })
}
