//! `GET /oauth/authorize` and the login and consent forms behind it (wire protocol §1).
//!
//! 1. The request is validated ([`gramkey_domain::authorize`]): an untrusted client or redirect
//!    URI gets an error page, any other error goes back to the app.
//! 2. Without a session (or with `force_authentication=1`) the user gets the login form, which
//!    posts to `/oauth/authorize/login` and, on success, comes back to step 1.
//! 3. A development-mode app is refused to people without a role on it.
//! 4. If the user already granted every requested scope, the code is issued at once, as
//!    Instagram does; otherwise the consent form posts to `/oauth/authorize/consent`.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::PrivateCookieJar;
use gramkey_domain::app::may_authorize;
use gramkey_domain::authorize::{AppView, AuthorizeParams, AuthorizeRequest, Fatal, RedirectError};
use gramkey_domain::code::{CODE_LIFETIME_SECS, generate_code};
use gramkey_domain::{ScopeSet, ScopedUserId, TokenHash};
use gramkey_store::{App, NewCode, User};

use crate::audit::Entry;
use crate::handlers::QueryPairs;
use crate::origin::Origin;
use crate::pages;
use crate::session::{self, Session};
use crate::signin::{self, SignInError};
use crate::state::AppState;
use gramkey_domain::audit::{AuditKind, Outcome};

/// Form fields that belong to the form itself, not to the authorize request.
const FORM_FIELDS: [&str; 4] = ["csrf", "username", "password", "decision"];

fn redirect(status: StatusCode, url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(v) => (status, [(header::LOCATION, v)]).into_response(),
        Err(_) => pages::error(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The redirect URI cannot be used.",
        ),
    }
}

fn fatal_page(f: Fatal) -> Response {
    pages::error(StatusCode::BAD_REQUEST, "Invalid request", &f.to_string())
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "authorize flow failed");
    pages::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Please try again in a moment.",
    )
}

/// Validates the authorize parameters; on failure, the response to send.
async fn validate(
    state: &AppState,
    pairs: impl IntoIterator<Item = (String, String)>,
    redirect_status: StatusCode,
) -> Result<(App, AuthorizeRequest), Response> {
    let params = AuthorizeParams::from_pairs(pairs).map_err(fatal_page)?;
    let client_id = params.client_id().map_err(fatal_page)?;
    let app = state
        .ops
        .store
        .app(&client_id)
        .await
        .map_err(internal)?
        .ok_or_else(|| fatal_page(Fatal::UnknownClient))?;
    let view = AppView {
        id: &app.id,
        redirect_uris: &app.redirect_uris,
        allowed_scopes: &app.scopes,
    };
    match params.validate(view) {
        Ok(req) => Ok((app, req)),
        Err(gramkey_domain::authorize::AuthorizeError::Fatal(f)) => Err(fatal_page(f)),
        Err(gramkey_domain::authorize::AuthorizeError::Redirect(r)) => Err(redirect(
            redirect_status,
            &r.to_url(&state.config.public_url),
        )),
    }
}

fn form_pairs(form: &[(String, String)]) -> Vec<(String, String)> {
    form.iter()
        .filter(|(k, _)| !FORM_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn login_page(
    app: &App,
    req: &AuthorizeRequest,
    session: &Session,
    attempt: pages::SignInAttempt<'_>,
) -> Response {
    let status = if attempt.error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    pages::page(
        status,
        pages::login(&app.name, &req.to_params(), &session.csrf, attempt),
    )
}

fn csrf_refused() -> Response {
    pages::error(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The form was missing its security token or it did not match your session. Go back, reload the page and try again.",
    )
}

pub async fn get(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    QueryPairs(query): QueryPairs,
) -> Response {
    let (app, req) = match validate(&state, query, StatusCode::FOUND).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let (jar, session) = session::ensure(&state, jar);
    let user = match session::user(&state, &session).await {
        Ok(u) => u.filter(|_| !req.force_authentication),
        Err(e) => return internal(e),
    };
    let resp = match user {
        None => login_page(&app, &req, &session, Default::default()),
        Some(user) => continue_as(&state, &session, &app, &req, &user, StatusCode::FOUND).await,
    };
    (jar, resp).into_response()
}

/// The signed-in user goes on: role check, then either an immediate code or the consent page.
async fn continue_as(
    state: &AppState,
    session: &Session,
    app: &App,
    req: &AuthorizeRequest,
    user: &User,
    status: StatusCode,
) -> Response {
    if let Err(resp) = check_role(state, app, req, user, status).await {
        return resp;
    }
    let store = &state.ops.store;
    match store.grant(&app.id, user.id).await {
        Ok(Some(g)) if req.scopes.is_subset_of(&g.scopes) => {
            match issue_code(state, app, req, user, &g.scopes).await {
                Ok(url) => redirect(status, &url),
                Err(resp) => resp,
            }
        }
        Ok(_) => {
            let scopes: Vec<_> = req.scopes.iter().collect();
            pages::page(
                StatusCode::OK,
                pages::consent(
                    "/oauth/authorize/consent",
                    &app.name,
                    &user.username,
                    &scopes,
                    &req.to_params(),
                    &session.csrf,
                ),
            )
        }
        Err(e) => internal(e),
    }
}

/// Development-mode apps only for people with a role on them; others go back to the app.
async fn check_role(
    state: &AppState,
    app: &App,
    req: &AuthorizeRequest,
    user: &User,
    status: StatusCode,
) -> Result<(), Response> {
    let role = state
        .ops
        .store
        .role(&app.id, user.id)
        .await
        .map_err(internal)?;
    if may_authorize(app.mode, role) {
        Ok(())
    } else {
        Err(redirect(
            status,
            &RedirectError::insufficient_role(req).to_url(&state.config.public_url),
        ))
    }
}

/// Records the grant (keeping scopes granted before) and issues a code; returns the redirect URL.
async fn issue_code(
    state: &AppState,
    app: &App,
    req: &AuthorizeRequest,
    user: &User,
    granted: &ScopeSet,
) -> Result<String, Response> {
    let ops = &state.ops;
    let now = ops.now_for(app);
    let grant = save_grant(state, app, user, granted, &req.scopes, now)
        .await
        .map_err(internal)?;
    let code = generate_code(&*ops.entropy);
    let record = NewCode {
        hash: TokenHash::of_code(&code),
        app_id: req.app_id.clone(),
        user_id: user.id,
        scoped_id: grant.scoped_id,
        redirect_uri: req.redirect_uri.clone(),
        scopes: req.scopes.clone(),
        code_challenge: req.code_challenge.clone(),
        created_at: now,
        expires_at: now + CODE_LIFETIME_SECS,
    };
    ops.store.create_code(&record).await.map_err(internal)?;
    tracing::info!(app_id = %req.app_id, user_id = user.id.0, "authorization code issued");
    Ok(req.success_url(code.expose(), &state.config.public_url))
}

/// Records consent to `requested`, keeping the scopes `granted` before.
pub(super) async fn save_grant(
    state: &AppState,
    app: &App,
    user: &User,
    granted: &ScopeSet,
    requested: &ScopeSet,
    now: gramkey_domain::UnixTime,
) -> Result<gramkey_store::Grant, gramkey_store::StoreError> {
    let ops = &state.ops;
    let all = ScopeSet::new(granted.iter().chain(requested.iter()));
    let grant = ops
        .store
        .save_grant(
            &app.id,
            user.id,
            &all,
            &ScopedUserId::generate(&*ops.entropy),
            now,
        )
        .await?;
    state.forget_app_facts(&app.id);
    Ok(grant)
}

/// The common start of both forms: a session whose CSRF token the form echoes, and authorize
/// parameters that validate again.
async fn posted(
    state: &AppState,
    jar: &PrivateCookieJar,
    form: &[(String, String)],
) -> Result<(Session, App, AuthorizeRequest), Response> {
    let session = session::current(state, jar).ok_or_else(csrf_refused)?;
    if !session.csrf_ok(field(form, "csrf")) {
        return Err(csrf_refused());
    }
    if let Some(refusal) = crate::web::not_plain_text(form) {
        return Err(refusal);
    }
    let (app, req) = validate(state, form_pairs(form), StatusCode::SEE_OTHER).await?;
    Ok((session, app, req))
}

pub async fn login(
    State(state): State<AppState>,
    origin: Origin,
    jar: PrivateCookieJar,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let (session, app, req) = match posted(&state, &jar, &form).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let username = field(&form, "username").unwrap_or("");
    let password = field(&form, "password").unwrap_or("");
    let user = match signin::verify(&state, &origin, username, password, Some(&app.id)).await {
        Ok(user) => user,
        Err(SignInError::Store(e)) => return internal(e),
        Err(e) => {
            let attempt = pages::SignInAttempt {
                username,
                error: Some(&e.message()),
                ok: None,
            };
            let mut resp = login_page(&app, &req, &session, attempt);
            if matches!(e, SignInError::Locked(..) | SignInError::Unavailable) {
                *resp.status_mut() = e.status();
            }
            return (e.budget(), resp).into_response();
        }
    };
    let jar = session::signed_in(&state, jar, &user);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(req.to_params())
        .finish();
    (
        jar,
        redirect(StatusCode::SEE_OTHER, &format!("/oauth/authorize?{query}")),
    )
        .into_response()
}

pub async fn consent(
    State(state): State<AppState>,
    origin: Origin,
    jar: PrivateCookieJar,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let (session, app, req) = match posted(&state, &jar, &form).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let user = match session::user(&state, &session).await {
        Ok(u) => u,
        Err(e) => return internal(e),
    };
    let Some(user) = user else {
        return login_page(&app, &req, &session, Default::default());
    };
    match field(&form, "decision") {
        Some("deny") => {
            tracing::info!(app_id = %app.id, user_id = user.id.0, "user denied consent");
            redirect(
                StatusCode::SEE_OTHER,
                &RedirectError::user_denied(&req).to_url(&state.config.public_url),
            )
        }
        Some("allow") => {
            if let Err(resp) = check_role(&state, &app, &req, &user, StatusCode::SEE_OTHER).await {
                return resp;
            }
            let granted = match state.ops.store.grant(&app.id, user.id).await {
                Ok(g) => g.map(|g| g.scopes).unwrap_or_default(),
                Err(e) => return internal(e),
            };
            tracing::info!(app_id = %app.id, user_id = user.id.0, "consent granted");
            state
                .ops
                .audit(
                    &origin,
                    AuditKind::ConsentGranted,
                    Outcome::Success,
                    Entry::default()
                        .app(&app.id)
                        .user(Some(user.id))
                        .detail(format!("scopes {}", req.scopes.to_stored())),
                )
                .await;
            match issue_code(&state, &app, &req, &user, &granted).await {
                Ok(url) => redirect(StatusCode::SEE_OTHER, &url),
                Err(resp) => resp,
            }
        }
        _ => pages::error(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "Choose Allow or Cancel.",
        ),
    }
}
