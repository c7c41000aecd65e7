//! `/device`: where a signed-in person enters the code a device shows (RFC 8628 §3.3), then
//! consents as on the authorize flow's page. An approval stores an authorization code under
//! the device code's hash, which the device's next poll of the token endpoint redeems
//! (`tokens::Tokens::device_token`).
//!
//! - Nobody signed in is sent to sign in first, and back here with the code kept.
//! - A development-mode app's code works only for people with a role on it, as its authorize
//!   flow does.
//! - Wrong codes count against the person (the sign-in limit per account, over 15 minutes), so a
//!   code cannot be guessed from here.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gramkey_domain::app::may_authorize;
use gramkey_domain::audit::{AuditKind, Outcome};
use gramkey_domain::device::{self, DeviceState};
use gramkey_store::{App, DeviceAuthorization, DeviceDecision, NewCode, User};

use crate::audit::Entry;
use crate::handlers::QueryPairs;
use crate::limits::AttemptRefused;
use crate::observe::LimitHeaders;
use crate::pages;
use crate::state::AppState;
use crate::tokens::user_code_hash;
use crate::web::{CsrfForm, Person, field};

/// What a wrong code, or a code past its use, is told: the same, so a guesser learns nothing.
const NOT_VALID: &str = "That code is not valid, or it has expired. Check the code on your device; if it has expired, ask the device for a new one.";

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "device flow failed");
    pages::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Please try again in a moment.",
    )
}

/// `GET /device`, optionally `?user_code=` (`verification_uri_complete`).
pub async fn form(Person { viewer, user, .. }: Person, query: QueryPairs) -> Response {
    let code = query.get("user_code").unwrap_or_default();
    pages::page(
        StatusCode::OK,
        pages::device_entry(&user.username, code, &viewer.session.csrf, None),
    )
}

fn entry_again(person: &Person, typed: &str, status: StatusCode, error: &str) -> Response {
    pages::page(
        status,
        pages::device_entry(
            &person.user.username,
            typed,
            &person.viewer.session.csrf,
            Some(error),
        ),
    )
}

/// `POST /device`: a code typed (→ the consent page), or a decision on it (→ done).
pub async fn post(
    State(state): State<AppState>,
    person: Person,
    CsrfForm(form): CsrfForm,
) -> Response {
    let typed = field(&form, "user_code").unwrap_or_default();
    let keys = [(
        format!("gk:device:user:{}", person.user.id.0),
        state.limiter.limits.login_failures_per_account,
    )];
    // A person over the limit is refused before the code is even looked up.
    match state.limiter.attempt(&keys, false).await {
        Ok(()) => {}
        Err(AttemptRefused::Full { wait, .. }) => {
            let message = format!(
                "Too many wrong codes. Try again in {} minutes.",
                (wait + 59) / 60
            );
            let page = entry_again(&person, typed, StatusCode::TOO_MANY_REQUESTS, &message);
            return (LimitHeaders::wait(wait), page).into_response();
        }
        Err(AttemptRefused::Unavailable) => {
            return entry_again(
                &person,
                typed,
                StatusCode::SERVICE_UNAVAILABLE,
                "This cannot be checked right now. Try again in a moment.",
            );
        }
    }
    let code = device::normalize_user_code(typed);
    let found = match &code {
        Some(code) => {
            let hash = user_code_hash(code);
            match state.ops.store.device_authorization(&hash).await {
                Ok(found) => found.map(|auth| (hash, auth)),
                Err(e) => return internal(e),
            }
        }
        None => None,
    };
    let app = match &found {
        Some((_, auth)) => match state.ops.store.app(&auth.app_id).await {
            Ok(app) => app,
            Err(e) => return internal(e),
        },
        None => None,
    };
    // Expiry is judged on the app's time, which its test clock may have moved.
    let pending = found.zip(app).filter(|((_, auth), app)| {
        auth.state == DeviceState::Pending && state.ops.now_for(app) < auth.expires_at
    });
    let Some(((hash, auth), app)) = pending else {
        let _ = state.limiter.attempt(&keys, true).await;
        return entry_again(&person, typed, StatusCode::BAD_REQUEST, NOT_VALID);
    };
    let role = match state.ops.store.role(&app.id, person.user.id).await {
        Ok(role) => role,
        Err(e) => return internal(e),
    };
    if !may_authorize(app.mode, role) {
        return entry_again(
            &person,
            typed,
            StatusCode::FORBIDDEN,
            "This app is in development mode: only people with a role on it can connect it.",
        );
    }
    match field(&form, "decision") {
        None => {
            let scopes: Vec<_> = auth.scopes.iter().collect();
            let params = [(
                "user_code",
                device::display_user_code(code.as_deref().unwrap_or_default()),
            )];
            pages::page(
                StatusCode::OK,
                pages::consent(
                    "/device",
                    &app.name,
                    &person.user.username,
                    &scopes,
                    &params,
                    &person.viewer.session.csrf,
                ),
            )
        }
        Some("allow") => decide(&state, &person, &app, (&hash, &auth), true).await,
        Some("deny") => decide(&state, &person, &app, (&hash, &auth), false).await,
        Some(_) => entry_again(
            &person,
            typed,
            StatusCode::BAD_REQUEST,
            "Choose Allow or Cancel.",
        ),
    }
}

async fn decide(
    state: &AppState,
    person: &Person,
    app: &App,
    (hash, auth): (&gramkey_domain::TokenHash, &DeviceAuthorization),
    allow: bool,
) -> Response {
    let user: &User = &person.user;
    let now = state.ops.now_for(app);
    let decision = if allow {
        let granted = match state.ops.store.grant(&app.id, user.id).await {
            Ok(g) => g.map(|g| g.scopes).unwrap_or_default(),
            Err(e) => return internal(e),
        };
        let grant =
            match super::authorize::save_grant(state, app, user, &granted, &auth.scopes, now).await
            {
                Ok(g) => g,
                Err(e) => return internal(e),
            };
        DeviceDecision::Approve(NewCode {
            hash: auth.device_hash,
            app_id: app.id.clone(),
            user_id: user.id,
            scoped_id: grant.scoped_id,
            redirect_uri: device::GRANT_TYPE.to_owned(),
            scopes: auth.scopes.clone(),
            code_challenge: None,
            created_at: now,
            expires_at: auth.expires_at,
        })
    } else {
        DeviceDecision::Deny(user.id)
    };
    match state
        .ops
        .store
        .decide_device_authorization(hash, &decision, now)
        .await
    {
        Ok(true) => {}
        // Decided in another tab meanwhile, or just expired.
        Ok(false) => {
            return entry_again(person, "", StatusCode::BAD_REQUEST, NOT_VALID);
        }
        Err(e) => return internal(e),
    }
    let (kind, outcome, detail) = if allow {
        (
            AuditKind::ConsentGranted,
            Outcome::Success,
            format!("device flow, scopes {}", auth.scopes.to_stored()),
        )
    } else {
        (
            AuditKind::ConsentGranted,
            Outcome::Refused,
            "device flow: the user cancelled".to_owned(),
        )
    };
    state
        .ops
        .audit(
            &person.origin,
            kind,
            outcome,
            Entry::default()
                .app(&app.id)
                .user(Some(user.id))
                .detail(detail),
        )
        .await;
    tracing::info!(app_id = %app.id, user_id = user.id.0, allow, "device authorization decided");
    pages::page(StatusCode::OK, pages::device_done(&app.name, allow))
}
