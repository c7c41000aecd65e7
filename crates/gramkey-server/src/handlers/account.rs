//! The site's own sign-in and a person's settings: "Apps and Websites", invitations, password.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::PrivateCookieJar;
use gramkey_domain::account::{AccessStatus, AccessTab, local_path};
use gramkey_domain::{AppId, Password};
use gramkey_store::{InvitationsOf, StoreError};

use crate::handlers::QueryPairs;
use crate::ops::OpError;
use crate::origin::Origin;
use crate::pages::settings::{self, Listed};
use crate::pages::{self, Section};
use crate::session;
use crate::signin::{self, SignInError};
use crate::state::AppState;
use crate::throttle;
use crate::web::{self, CsrfForm, Person, done_message, field, see_other};

/// Where to go after signing in: a local path, or the settings page.
fn next_of(raw: Option<&str>) -> String {
    raw.and_then(local_path)
        .unwrap_or("/accounts/manage_access/")
        .to_owned()
}

pub async fn login_form(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    query: QueryPairs,
) -> Response {
    let next = next_of(query.get("next"));
    let (jar, session) = session::ensure(&state, jar);
    if let Ok(Some(_)) = session::user(&state, &session).await {
        // Signed in already: on to where the link was going.
        return (jar, see_other(&next)).into_response();
    }
    let page = pages::page(
        StatusCode::OK,
        pages::site_login(
            &next,
            &session.csrf,
            pages::SignInAttempt {
                ok: done_message(query.get("done")),
                ..Default::default()
            },
        ),
    );
    (jar, page).into_response()
}

pub async fn login(
    State(state): State<AppState>,
    origin: Origin,
    jar: PrivateCookieJar,
    CsrfForm(form): CsrfForm,
) -> Response {
    let Some(session) = session::current(&state, &jar) else {
        return web::csrf_refused();
    };
    let next = next_of(field(&form, "next"));
    let username = field(&form, "username").unwrap_or("");
    let password = field(&form, "password").unwrap_or("");
    match signin::verify(&state, &origin, username, password, None).await {
        Ok(user) => {
            let jar = session::signed_in(&state, jar, &user);
            (jar, see_other(&next)).into_response()
        }
        Err(e) => {
            let status = e.status();
            if let SignInError::Store(inner) = &e {
                tracing::error!(error = %inner, "sign-in failed");
            }
            let page = pages::page(
                status,
                pages::site_login(
                    &next,
                    &session.csrf,
                    pages::SignInAttempt {
                        username,
                        error: Some(&e.message()),
                        ok: None,
                    },
                ),
            );
            (e.budget(), page).into_response()
        }
    }
}

pub async fn logout(jar: PrivateCookieJar, _: CsrfForm) -> Response {
    let to = see_other("/accounts/login/?done=logged-out");
    (session::signed_out(jar), to).into_response()
}

pub async fn manage_access(
    State(state): State<AppState>,
    Person { viewer, user, .. }: Person,
    query: QueryPairs,
) -> Response {
    let tab = AccessTab::parse(query.get("tab"));
    let store = &state.ops.store;
    let lists = async {
        Ok::<_, StoreError>((
            store.user_grants(user.id).await?,
            store.removed_grants(user.id).await?,
        ))
    };
    let (granted, removed) = match lists.await {
        Ok(v) => v,
        Err(e) => return viewer.op_error(Section::Settings, &OpError::Store(e)),
    };
    let now = state.ops.clock.now();
    let classified: Vec<Listed<'_>> = granted
        .iter()
        .map(|a| Listed {
            access: a,
            status: Some(AccessStatus::of(now, a.granted_at, a.latest_expiry)),
        })
        .collect();
    let (active, expired): (Vec<_>, Vec<_>) = classified
        .into_iter()
        .partition(|l| l.status.is_some_and(AccessStatus::is_active));
    let removed: Vec<Listed<'_>> = removed
        .iter()
        .map(|a| Listed {
            access: a,
            status: None,
        })
        .collect();
    let counts = [active.len(), expired.len(), removed.len()];
    let shown = match tab {
        AccessTab::Active => &active,
        AccessTab::Expired => &expired,
        AccessTab::Removed => &removed,
    };
    let done = done_message(query.get("done"));
    pages::page(
        StatusCode::OK,
        settings::apps_and_websites(&viewer.nav(Section::Settings), tab, counts, shown, done),
    )
}

/// `POST /accounts/manage_access/{app}/remove`: revokes the app's tokens, forgets the grant,
/// and queues its deauthorize callback (and, when asked, its data-deletion callback).
pub async fn remove(
    State(state): State<AppState>,
    Person {
        viewer,
        user,
        origin,
    }: Person,
    Path(app_id): Path<String>,
    CsrfForm(form): CsrfForm,
) -> Response {
    let delete_data = field(&form, "delete_data").is_some();
    let Some(app) = AppId::parse(&app_id) else {
        return viewer.op_error(
            Section::Settings,
            &OpError::NotFound(format!("no app with id {app_id:?}")),
        );
    };
    match state
        .ops
        .remove_app_for_user(&origin, &app, user.id, delete_data)
        .await
    {
        Ok(r) if r.grant => {
            state.forget_app_facts(&app);
            see_other("/accounts/manage_access/?tab=removed&done=removed")
        }
        Ok(_) => viewer.op_error(
            Section::Settings,
            &OpError::NotFound("you have not authorized this app".into()),
        ),
        Err(e) => viewer.op_error(Section::Settings, &e),
    }
}

/// `POST /accounts/manage_access/{app}/delete_data`: asks a removed app to delete the data it
/// has about the person.
pub async fn delete_data(
    State(state): State<AppState>,
    Person {
        viewer,
        user,
        origin,
    }: Person,
    Path(app_id): Path<String>,
    _: CsrfForm,
) -> Response {
    match state
        .ops
        .request_data_deletion(&origin, &user, &app_id)
        .await
    {
        Ok(_) => see_other("/accounts/manage_access/?tab=removed&done=deletion"),
        Err(e) => viewer.op_error(Section::Settings, &e),
    }
}

pub async fn invitations(
    State(state): State<AppState>,
    Person { viewer, user, .. }: Person,
    query: QueryPairs,
) -> Response {
    let list = match state
        .ops
        .store
        .invitations(InvitationsOf::User(user.id))
        .await
    {
        Ok(l) => l,
        Err(e) => return viewer.op_error(Section::Settings, &OpError::Store(e)),
    };
    let done = done_message(query.get("done"));
    pages::page(
        StatusCode::OK,
        settings::invitations(&viewer.nav(Section::Settings), &list, done),
    )
}

/// `POST /accounts/invitations/{app}` with `decision=accept|decline`.
pub async fn answer(
    State(state): State<AppState>,
    Person {
        viewer,
        user,
        origin,
    }: Person,
    Path(app_id): Path<String>,
    CsrfForm(form): CsrfForm,
) -> Response {
    let accept = match field(&form, "decision") {
        Some("accept") => true,
        Some("decline") => false,
        _ => {
            return viewer.op_error(
                Section::Settings,
                &OpError::Invalid("Choose Accept or Decline.".into()),
            );
        }
    };
    match state
        .ops
        .answer_invitation(&origin, &user, &app_id, accept)
        .await
    {
        Ok(()) => see_other(if accept {
            "/accounts/invitations/?done=accepted"
        } else {
            "/accounts/invitations/?done=declined"
        }),
        Err(e) => viewer.op_error(Section::Settings, &e),
    }
}

pub async fn password_form(Person { viewer, .. }: Person, query: QueryPairs) -> Response {
    let done = done_message(query.get("done"));
    pages::page(
        StatusCode::OK,
        settings::password(&viewer.nav(Section::Settings), None, done),
    )
}

/// `POST /accounts/password/change/`: every token the person holds is revoked and every other
/// browser session ends; this one goes on, signed in with the new password.
pub async fn change_password(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Person {
        viewer,
        user,
        origin,
    }: Person,
    CsrfForm(form): CsrfForm,
) -> Response {
    let (current, new, confirm) = (
        field(&form, "current").unwrap_or(""),
        field(&form, "new").unwrap_or(""),
        field(&form, "confirm").unwrap_or(""),
    );
    let refuse = |message: &str| {
        pages::page(
            StatusCode::BAD_REQUEST,
            settings::password(&viewer.nav(Section::Settings), Some(message), None),
        )
    };
    if new != confirm {
        return refuse("The new passwords do not match.");
    }
    // The current password is a password: guessing it is throttled like signing in.
    if let Err(t) = throttle::login_attempt(&state, &origin, &user.username, None).await {
        let e = SignInError::from(t);
        let mut resp = refuse(&e.message());
        *resp.status_mut() = e.status();
        return (e.budget(), resp).into_response();
    }
    if !state.ops.password_is(&user, Password::new(current)).await {
        let why = "wrong current password";
        throttle::login_failed(&state, &origin, &user.username, Some(user.id), None, why).await;
        return refuse("Your current password is incorrect.");
    }
    throttle::right_secret(&state, &origin, &user.username).await;
    match state
        .ops
        .change_own_password(&origin, &user, Password::new(new))
        .await
    {
        Ok(updated) => {
            let jar = session::signed_in(&state, jar, &updated);
            (jar, see_other("/accounts/password/change/?done=password")).into_response()
        }
        Err(e @ OpError::Store(_)) => viewer.op_error(Section::Settings, &e),
        Err(e) => refuse(&web::op_message(&e)),
    }
}
