//! The admin console: `/console/…`, for anyone signed in with the admin key or as a user the
//! server names with `--admin-user`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::PrivateCookieJar;

use crate::audit::AuditFilter;
use crate::handlers::QueryPairs;
use crate::ops::OpError;
use crate::origin::Origin;
use crate::pages::console::{self, AuditForm};
use crate::pages::{self, Section};
use crate::session;
use crate::signin::SignInError;
use crate::state::AppState;
use crate::throttle;
use crate::web::{self, Administrator, CsrfForm, field, see_other};

/// Events per page of the audit log.
const PAGE: u32 = 50;

pub async fn login_form(State(state): State<AppState>, jar: PrivateCookieJar) -> Response {
    let (jar, session) = session::ensure(&state, jar);
    let page = pages::page(StatusCode::OK, pages::admin_key_login(&session.csrf, None));
    (jar, page).into_response()
}

/// `POST /console/login` with `key`: throttled like a password.
pub async fn login(
    State(state): State<AppState>,
    origin: Origin,
    jar: PrivateCookieJar,
    CsrfForm(form): CsrfForm,
) -> Response {
    let Some(session) = session::current(&state, &jar) else {
        return web::csrf_refused();
    };
    let refuse = |status: StatusCode, message: &str| {
        pages::page(status, pages::admin_key_login(&session.csrf, Some(message)))
    };
    match throttle::admin_key(&state, &origin, field(&form, "key").unwrap_or("")).await {
        Err(t) => {
            let e = SignInError::from(t);
            (e.budget(), refuse(e.status(), &e.message())).into_response()
        }
        Ok(None) => refuse(
            StatusCode::FORBIDDEN,
            "Signing in with the admin key is not enabled on this server.",
        ),
        Ok(Some(false)) => refuse(StatusCode::UNAUTHORIZED, "That is not the admin key."),
        Ok(Some(true)) => {
            let jar = session::admin_signed_in(&state, jar, Some(session.clone()));
            (jar, see_other("/console/audit")).into_response()
        }
    }
}

pub async fn audit(
    State(state): State<AppState>,
    Administrator(viewer): Administrator,
    QueryPairs(query): QueryPairs,
) -> Response {
    let mut form = AuditForm::default();
    let mut before = None;
    let mut bad = None;
    for (k, v) in query {
        let v = v.trim().to_owned();
        match k.as_str() {
            "app" => form.app = v,
            "user" => form.user = v,
            "event" => form.event = v,
            "since" => form.since = v,
            "before" if !v.is_empty() => match v.parse::<i64>() {
                Ok(b) => before = Some(b),
                Err(_) => bad = Some(format!("{v:?} is not an event id")),
            },
            _ => {}
        }
    }
    let since = match form.since.as_str() {
        "" => None,
        s => match gramkey_domain::graph::paging::parse_time("since", s) {
            Ok(t) => Some(t),
            Err(_) => {
                bad = Some("Since must be a date (YYYY-MM-DD), Unix time or RFC 3339.".into());
                None
            }
        },
    };
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let result = match bad {
        Some(message) => Err(OpError::Invalid(message)),
        None => {
            state
                .ops
                .audit_log(&AuditFilter {
                    app: nonempty(&form.app),
                    user: nonempty(&form.user),
                    event: nonempty(&form.event),
                    since,
                    before_id: before,
                    limit: Some(PAGE),
                })
                .await
        }
    };
    let nav = viewer.nav(Section::Console);
    match result {
        Ok(events) => {
            let names = match web::usernames(&state, &events).await {
                Ok(n) => n,
                Err(e) => return viewer.op_error(Section::Console, &OpError::Store(e)),
            };
            let older = (events.len() == PAGE as usize)
                .then(|| events.last().map(|e| e.id))
                .flatten();
            pages::page(
                StatusCode::OK,
                console::audit(
                    &nav,
                    &form,
                    (&events, &names),
                    (before.is_some(), older),
                    None,
                ),
            )
        }
        Err(e @ OpError::Store(_)) => viewer.op_error(Section::Console, &e),
        Err(e) => {
            let (status, _) = web::op_status(&e);
            // An unknown user or app matches nothing: say so next to the filters.
            let status = if status == StatusCode::NOT_FOUND {
                StatusCode::OK
            } else {
                status
            };
            pages::page(
                status,
                console::audit(
                    &nav,
                    &form,
                    (&[], &Default::default()),
                    (false, None),
                    Some(&web::op_message(&e)),
                ),
            )
        }
    }
}

pub async fn apps(State(state): State<AppState>, Administrator(viewer): Administrator) -> Response {
    match state.ops.store.apps().await {
        Ok(apps) => pages::page(
            StatusCode::OK,
            console::apps(&viewer.nav(Section::Console), &apps),
        ),
        Err(e) => viewer.op_error(Section::Console, &OpError::Store(e)),
    }
}

pub async fn users(
    State(state): State<AppState>,
    Administrator(viewer): Administrator,
) -> Response {
    match state.ops.store.users().await {
        Ok(users) => pages::page(
            StatusCode::OK,
            console::users(&viewer.nav(Section::Console), &users),
        ),
        Err(e) => viewer.op_error(Section::Console, &OpError::Store(e)),
    }
}
