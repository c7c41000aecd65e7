//! What every page handler of the site (settings, dashboard, console) shares: who is looking,
//! sending them to sign in first, checking a form's CSRF token, and turning an operation's
//! error into a page.

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::PrivateCookieJar;
use gramkey_store::User;

use crate::ops::OpError;
use crate::pages::{self, Nav, Section};
use crate::session::{self, Session};
use crate::state::AppState;

/// A signed-in person (or an administrator signed in with the admin key), and their session.
pub struct Viewer {
    pub session: Session,
    pub user: Option<User>,
    /// May open the admin console.
    pub admin: bool,
}

impl Viewer {
    pub fn nav(&self, section: Section) -> Nav<'_> {
        Nav {
            username: self.user.as_ref().map(|u| u.username.as_str()),
            csrf: &self.session.csrf,
            admin: self.admin,
            section,
        }
    }

    /// The page for a failed operation, in the site's layout.
    pub fn op_error(&self, section: Section, e: &OpError) -> Response {
        let (status, title) = op_status(e);
        pages::site_error(status, &self.nav(section), title, &op_message(e))
    }
}

pub fn op_status(e: &OpError) -> (StatusCode, &'static str) {
    match e {
        OpError::Invalid(_) => (StatusCode::BAD_REQUEST, "That did not work"),
        OpError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        OpError::Conflict(_) => (StatusCode::CONFLICT, "That did not work"),
        OpError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong"),
    }
}

/// What a person is told; a store failure is logged, never shown.
pub fn op_message(e: &OpError) -> String {
    match e {
        OpError::Store(inner) => {
            tracing::error!(error = %inner, "page operation failed");
            "Please try again in a moment.".into()
        }
        e => e.to_string(),
    }
}

/// Who is looking, if anyone is signed in (with a password or the admin key).
pub async fn viewer(state: &AppState, jar: &PrivateCookieJar) -> Result<Option<Viewer>, Response> {
    let Some(session) = session::current(state, jar) else {
        return Ok(None);
    };
    let user = session::user(state, &session).await.map_err(|e| {
        tracing::error!(error = %e, "reading the signed-in user failed");
        pages::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Please try again in a moment.",
        )
    })?;
    let admin = session.admin
        || user
            .as_ref()
            .is_some_and(|u| state.config.admin_users.iter().any(|a| a == &u.username));
    if user.is_none() && !session.admin {
        return Ok(None);
    }
    Ok(Some(Viewer {
        session,
        user,
        admin,
    }))
}

/// The signed-in person, or a redirect to the sign-in page that comes back to `uri`.
pub async fn person(
    state: &AppState,
    jar: &PrivateCookieJar,
    uri: &Uri,
) -> Result<(Viewer, User), Response> {
    match viewer(state, jar).await? {
        Some(Viewer {
            session,
            user: Some(user),
            admin,
        }) => Ok((
            Viewer {
                session,
                user: Some(user.clone()),
                admin,
            },
            user,
        )),
        _ => {
            let next = uri.path_and_query().map_or("/", |p| p.as_str());
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("next", next)
                .finish();
            Err(see_other(&format!("/accounts/login/?{query}")))
        }
    }
}

/// A 303 to a path on this site.
pub fn see_other(path: &str) -> Response {
    match HeaderValue::from_str(path) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response(),
    }
}

/// A form field.
pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Refuses a form without this session's CSRF token. (The refusal is the handler's whole
/// answer, returned at once: boxing it would buy nothing.)
#[allow(clippy::result_large_err)]
pub fn check_csrf(session: &Session, form: &[(String, String)]) -> Result<(), Response> {
    if session.csrf_ok(field(form, "csrf")) {
        Ok(())
    } else {
        Err(csrf_refused())
    }
}

pub fn csrf_refused() -> Response {
    pages::error(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "The form was missing its security token or it did not match your session. Go back, reload the page and try again.",
    )
}

/// Notices a redirect may carry (`?done=…`): fixed texts, so a link cannot put words on a
/// page.
pub fn done_message(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "saved" => "Your changes were saved.",
        "invited" => "Invitation sent.",
        "removed" => "The app was removed. It can no longer use your account.",
        "deletion" => "Your data-deletion request was sent to the app.",
        "accepted" => "Invitation accepted.",
        "declined" => "Invitation declined.",
        "password" => {
            "Your password was changed. Apps you had authorized must ask you to sign in again."
        }
        _ => return None,
    })
}
