//! The developer dashboard: `/developers/apps/…`. A signed-in person registers apps (becoming
//! their admin) and manages the apps they are an admin or developer of.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::PrivateCookieJar;
use gramkey_domain::account::{may_delete, may_manage};
use gramkey_domain::chart::last_24_hours;
use gramkey_domain::webhook::OBJECT;
use gramkey_domain::{AppMode, Role};
use gramkey_store::{App, AuditQuery, InvitationsOf, StoreError, User};

use crate::handlers::QueryPairs;
use crate::ops::{NewAppInput, OpError};
use crate::origin::Origin;
use crate::pages::dashboard::{self, AppForm, AppPage};
use crate::pages::{self, Section};
use crate::portal::AppEdit;
use crate::session;
use crate::state::AppState;
use crate::test_tools;
use crate::web::{self, CsrfForm, Person, Viewer, done_message, field, see_other};
use gramkey_domain::error::GraphError;

/// Newest audit events and callbacks shown on an app's page.
const RECENT: u32 = 20;

fn mode_of(form: &AppForm) -> Result<AppMode, OpError> {
    AppMode::parse(&form.mode)
        .ok_or_else(|| OpError::Invalid("Choose development or live mode.".into()))
}

pub async fn apps(
    State(state): State<AppState>,
    Person { viewer, user, .. }: Person,
    query: QueryPairs,
) -> Response {
    let blank = AppForm::blank();
    let done = done_message(query.get("done"));
    list(&state, &viewer, &user, &blank, (None, done), StatusCode::OK).await
}

async fn list(
    state: &AppState,
    viewer: &Viewer,
    user: &User,
    form: &AppForm,
    (error, done): (Option<&str>, Option<&str>),
    status: StatusCode,
) -> Response {
    match state.ops.store.apps_of(user.id).await {
        Ok(mut apps) => {
            // A tester's apps are for using, not managing: they are not listed here.
            apps.retain(|(_, role)| may_manage(Some(*role)));
            pages::page(
                status,
                dashboard::apps(&viewer.nav(Section::Developers), &apps, form, error, done),
            )
        }
        Err(e) => viewer.op_error(Section::Developers, &OpError::Store(e)),
    }
}

/// `POST /developers/apps/`: registers the app and shows its secret, once.
pub async fn create(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Person {
        viewer,
        user,
        origin,
    }: Person,
    CsrfForm(form): CsrfForm,
) -> Response {
    let posted = AppForm::posted(&form);
    let created = async {
        let input = NewAppInput {
            name: posted.name.clone(),
            redirect_uris: posted.uris(),
            scopes: posted.scopes.join(","),
            mode: mode_of(&posted)?,
            refresh_tokens: false,
            signed_requests: posted.signed_requests,
            device_flow: posted.device_flow,
            deauthorize_url: Some(posted.deauthorize_url.clone()),
            data_deletion_url: Some(posted.data_deletion_url.clone()),
        };
        state.ops.create_app_as(&origin, &user, input).await
    };
    match created.await {
        Ok((app, secret)) => {
            tracing::info!(app_id = %app.id, user_id = user.id.0, "app created on the dashboard");
            let jar = session::show_secret_once(&state, jar, &viewer.session, &app.id, &secret);
            (jar, see_other(&format!("/developers/apps/{}/", app.id))).into_response()
        }
        Err(e @ OpError::Store(_)) => viewer.op_error(Section::Developers, &e),
        Err(e) => {
            let message = web::op_message(&e);
            list(
                &state,
                &viewer,
                &user,
                &posted,
                (Some(&message), None),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
    }
}

/// An operation on the app failed: a store failure is an error page; anything else is the
/// app's page again, the form as it was sent and the reason above it.
async fn failed(
    state: &AppState,
    viewer: &Viewer,
    (app, role): (&App, Role),
    form: AppForm,
    e: OpError,
) -> Response {
    if let OpError::Store(_) = e {
        return viewer.op_error(Section::Developers, &e);
    }
    let message = web::op_message(&e);
    let view = View::problem(form, &message);
    app_page(state, viewer, app, role, view, StatusCode::BAD_REQUEST).await
}

/// What an app's page shows besides what it reads from the store.
struct View<'a> {
    form: AppForm,
    new_secret: Option<&'a str>,
    error: Option<&'a str>,
    done: Option<&'a str>,
}

impl<'a> View<'a> {
    fn problem(form: AppForm, message: &'a str) -> Self {
        Self {
            form,
            new_secret: None,
            error: Some(message),
            done: None,
        }
    }
}

async fn app_page(
    state: &AppState,
    viewer: &Viewer,
    app: &App,
    role: Role,
    view: View<'_>,
    status: StatusCode,
) -> Response {
    let ops = &state.ops;
    let store = &ops.store;
    let now = ops.clock.now();
    // What was counted in memory, so the chart is current.
    state.usage.flush(&**store).await;
    let read = async {
        let hour = now - now.rem_euclid(3600);
        let hours = store.usage(&app.id, hour - 23 * 3600, hour + 3600).await?;
        let users = store.authorized_users(&app.id).await?;
        let mut roles = Vec::new();
        for (uid, role) in store.roles(&app.id).await? {
            let name = store
                .user(uid)
                .await?
                .map_or_else(|| format!("#{}", uid.0), |u| u.username.clone());
            roles.push((name, role));
        }
        let invitations = store.invitations(InvitationsOf::App(&app.id)).await?;
        let events = store
            .audit(&AuditQuery {
                app: Some(app.id.clone()),
                user: None,
                kind: None,
                since: None,
                before_id: None,
                limit: RECENT,
            })
            .await?;
        let callbacks = store.callbacks(Some(&app.id), RECENT).await?;
        let webhooks = (
            store.app_subscription(&app.id, OBJECT).await?,
            store.webhooks(Some(&app.id), RECENT).await?,
        );
        let app_now = ops.now_for(app);
        let faults: Vec<_> = store
            .faults(&app.id)
            .await?
            .into_iter()
            .filter(|r| r.active(app_now))
            .collect();
        Ok::<_, StoreError>((
            hours,
            users,
            roles,
            invitations,
            events,
            callbacks,
            webhooks,
            faults,
        ))
    };
    let (hours, users, roles, invitations, events, callbacks, (subscription, deliveries), faults) =
        match read.await {
            Ok(v) => v,
            Err(e) => return viewer.op_error(Section::Developers, &OpError::Store(e)),
        };
    let mut calls = state.calls.since(&app.id, 0, RECENT_CALLS);
    calls.reverse();
    let points: Vec<(i64, u64)> = hours.iter().map(|h| (h.hour, h.calls)).collect();
    let limited = state.config.rate_limits;
    let ceiling = if limited {
        state.limiter.limits.app_calls(users)
    } else {
        0
    };
    let page = AppPage {
        app,
        role,
        form: view.form,
        new_secret: view.new_secret,
        error: view.error,
        done: view.done,
        roles,
        invitations: &invitations,
        chart: last_24_hours(now, &points, ceiling),
        limited,
        events: &events,
        callbacks: &callbacks,
        subscription: subscription.as_ref(),
        deliveries: &deliveries,
        now,
        app_now: ops.now_for(app),
        faults: &faults,
        calls: &calls,
    };
    pages::page(
        status,
        dashboard::app(&viewer.nav(Section::Developers), &page),
    )
}

/// The signed-in person and the app of the path, which they manage; anyone else gets the page
/// that refuses them (the app is "not found").
pub struct Managed {
    viewer: Viewer,
    app: App,
    role: Role,
    origin: Origin,
}

impl FromRequestParts<AppState> for Managed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Person {
            viewer,
            user,
            origin,
        } = Person::from_request_parts(parts, state).await?;
        let id = Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| id)
            .unwrap_or_default();
        match state.ops.managed_app(&user, &id).await {
            Ok((app, role)) => Ok(Managed {
                viewer,
                app,
                role,
                origin,
            }),
            Err(e) => Err(viewer.op_error(Section::Developers, &e)),
        }
    }
}

pub async fn show(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Managed {
        viewer, app, role, ..
    }: Managed,
    query: QueryPairs,
) -> Response {
    let (jar, secret) = session::take_secret(&state, jar, &viewer.session, &app.id);
    let view = View {
        form: AppForm::of(&app),
        new_secret: secret.as_deref(),
        error: None,
        done: done_message(query.get("done")),
    };
    let page = app_page(&state, &viewer, &app, role, view, StatusCode::OK).await;
    (jar, page).into_response()
}

/// `POST /developers/apps/{id}/settings`.
pub async fn save(
    State(state): State<AppState>,
    Managed {
        viewer,
        app,
        role,
        origin,
    }: Managed,
    CsrfForm(form): CsrfForm,
) -> Response {
    let posted = AppForm::posted(&form);
    let edited = async {
        let edit = AppEdit {
            name: posted.name.clone(),
            redirect_uris: posted.uris(),
            scopes: posted.scopes.join(","),
            mode: mode_of(&posted)?,
            deauthorize_url: posted.deauthorize_url.clone(),
            data_deletion_url: posted.data_deletion_url.clone(),
            signed_requests: posted.signed_requests,
            device_flow: posted.device_flow,
        };
        state.ops.edit_app(&origin, &app, edit).await
    };
    match edited.await {
        Ok(_) => {
            state.forget_app_facts(&app.id);
            see_other(&format!("/developers/apps/{}/?done=saved", app.id))
        }
        Err(e) => failed(&state, &viewer, (&app, role), posted, e).await,
    }
}

/// `POST /developers/apps/{id}/secret` with `grace` in seconds (0: the old secret stops now).
pub async fn rotate(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Managed {
        viewer,
        app,
        origin,
        ..
    }: Managed,
    CsrfForm(form): CsrfForm,
) -> Response {
    let grace = match field(&form, "grace").unwrap_or("0").parse::<i64>() {
        Ok(0) => None,
        Ok(g) => Some(g),
        Err(_) => {
            return viewer.op_error(
                Section::Developers,
                &OpError::Invalid("Choose how long the old secret keeps working.".into()),
            );
        }
    };
    match state
        .ops
        .rotate_secret(&origin, app.id.as_str(), grace)
        .await
    {
        Ok(secret) => {
            let jar = session::show_secret_once(&state, jar, &viewer.session, &app.id, &secret);
            (jar, see_other(&format!("/developers/apps/{}/", app.id))).into_response()
        }
        Err(e) => viewer.op_error(Section::Developers, &e),
    }
}

/// `POST /developers/apps/{id}/webhooks/test` with `field`: queues a test notification, as
/// the "Test" button of Meta's dashboard sends.
pub async fn test_webhook(
    State(state): State<AppState>,
    Managed {
        viewer, app, role, ..
    }: Managed,
    CsrfForm(form): CsrfForm,
) -> Response {
    let field = field(&form, "field").unwrap_or("");
    match state.ops.send_test_webhook(app.id.as_str(), field).await {
        Ok(()) => see_other(&format!(
            "/developers/apps/{}/?done=webhook-test#webhooks-heading",
            app.id
        )),
        Err(e) => failed(&state, &viewer, (&app, role), AppForm::of(&app), e).await,
    }
}

/// The calls of the app's call log its page shows, newest first.
const RECENT_CALLS: usize = 50;

/// Back to the app's tools after one was used (`done` names it), or the page again with the
/// tool's refusal above it.
async fn after_tool(
    state: &AppState,
    viewer: &Viewer,
    (app, role): (&App, Role),
    used: Result<&str, crate::wire::graph::GraphResponse>,
) -> Response {
    let refusal = match used {
        Ok(done) => {
            return see_other(&format!(
                "/developers/apps/{}/?done={done}#tools-heading",
                app.id
            ));
        }
        Err(crate::wire::graph::GraphResponse::Fault(e)) => OpError::Store(e),
        Err(other) => OpError::Invalid(other.into_error().message),
    };
    failed(state, viewer, (app, role), AppForm::of(app), refusal).await
}

/// `POST /developers/apps/{id}/test_clock` with `advance` (seconds), or `reset`.
pub async fn test_clock(
    State(state): State<AppState>,
    Managed {
        viewer,
        app,
        role,
        origin,
    }: Managed,
    CsrfForm(form): CsrfForm,
) -> Response {
    let moved = if field(&form, "reset").is_some() {
        test_tools::reset_clock(&state, &origin, &app)
            .await
            .map(|_| "clock-reset")
    } else {
        match field(&form, "advance").map(|s| s.trim().parse::<i64>()) {
            Some(Ok(by)) => test_tools::advance_clock(&state, &origin, &app, by)
                .await
                .map(|_| "clock"),
            _ => Err(GraphError::invalid_parameter("Choose how far to move the clock.").into()),
        }
    };
    after_tool(&state, &viewer, (&app, role), moved).await
}

/// `POST /developers/apps/{id}/test_faults` with a rule's fields (as the API takes them), or
/// `clear`.
pub async fn test_faults(
    State(state): State<AppState>,
    Managed {
        viewer,
        app,
        role,
        origin,
    }: Managed,
    CsrfForm(form): CsrfForm,
) -> Response {
    let done = if field(&form, "clear").is_some() {
        test_tools::clear_faults(&state, &origin, &app)
            .await
            .map(|_| "faults-cleared")
    } else {
        // Empty fields of the form are parameters not given.
        let params: Vec<(String, String)> = form
            .iter()
            .filter(|(k, v)| k != "csrf" && !v.trim().is_empty())
            .cloned()
            .collect();
        test_tools::add_fault(&state, &origin, &app, &params)
            .await
            .map(|_| "fault-added")
    };
    after_tool(&state, &viewer, (&app, role), done).await
}

/// `POST /developers/apps/{id}/invitations` with `username` and `role`.
pub async fn invite(
    State(state): State<AppState>,
    Managed {
        viewer,
        app,
        role,
        origin,
    }: Managed,
    CsrfForm(form): CsrfForm,
) -> Response {
    let invited = async {
        let as_role = Role::parse(field(&form, "role").unwrap_or(""))
            .ok_or_else(|| OpError::Invalid("Choose tester or developer.".into()))?;
        state
            .ops
            .invite(
                &origin,
                &app,
                field(&form, "username").unwrap_or("").trim(),
                as_role,
                viewer.user.as_ref(),
            )
            .await
    };
    match invited.await {
        Ok(_) => see_other(&format!("/developers/apps/{}/?done=invited", app.id)),
        Err(e) => failed(&state, &viewer, (&app, role), AppForm::of(&app), e).await,
    }
}

/// `POST /developers/apps/{id}/members/remove` with `username`: a developer or tester loses
/// their role, or a pending invitation is withdrawn.
pub async fn remove_member(
    State(state): State<AppState>,
    Managed {
        viewer,
        app,
        role,
        origin,
    }: Managed,
    CsrfForm(form): CsrfForm,
) -> Response {
    let username = field(&form, "username").unwrap_or("").trim();
    let myself = viewer
        .user
        .as_ref()
        .is_some_and(|u| u.username.eq_ignore_ascii_case(username));
    match state.ops.remove_member(&origin, &app, username).await {
        // Off the team, the app's page is no longer theirs to see.
        Ok(()) if myself => see_other("/developers/apps/?done=left"),
        Ok(()) => see_other(&format!("/developers/apps/{}/?done=member-removed", app.id)),
        Err(e) => failed(&state, &viewer, (&app, role), AppForm::of(&app), e).await,
    }
}

/// `POST /developers/apps/{id}/delete` with `confirm`: the app goes, with its roles, grants,
/// codes and tokens. Admins only.
pub async fn delete(
    State(state): State<AppState>,
    Managed {
        viewer,
        app,
        role,
        origin,
    }: Managed,
    CsrfForm(form): CsrfForm,
) -> Response {
    let refused = if !may_delete(role) {
        Some((
            StatusCode::FORBIDDEN,
            "Only the app's admins can delete it.",
        ))
    } else if field(&form, "confirm") != Some("yes") {
        let tick = "Tick the box to confirm that the app and everything issued to it should go.";
        Some((StatusCode::BAD_REQUEST, tick))
    } else {
        None
    };
    if let Some((status, message)) = refused {
        let view = View::problem(AppForm::of(&app), message);
        return app_page(&state, &viewer, &app, role, view, status).await;
    }
    match state.ops.delete_app(&origin, app.id.as_str()).await {
        Ok(()) => {
            state.forget_app_facts(&app.id);
            see_other("/developers/apps/?done=deleted")
        }
        Err(e) => viewer.op_error(Section::Developers, &e),
    }
}
