//! What every page handler of the site (settings, dashboard, console) shares: who is looking
//! ([`Person`], [`Administrator`]), sending them to sign in first, forms checked for their CSRF
//! token ([`CsrfForm`]), and an operation's error as a page.

use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::PrivateCookieJar;
use gramkey_store::User;

use crate::ops::OpError;
use crate::origin::Origin;
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

async fn jar(parts: &mut Parts, state: &AppState) -> PrivateCookieJar {
    match PrivateCookieJar::from_request_parts(parts, state).await {
        Ok(jar) => jar,
        Err(never) => match never {},
    }
}

/// A signed-in person, for the settings and dashboard pages. Anyone else is sent to sign in,
/// and back to this page after.
pub struct Person {
    pub viewer: Viewer,
    pub user: User,
    /// The request's origin, acting as this person: what they do here is theirs in the audit
    /// log.
    pub origin: Origin,
}

impl FromRequestParts<AppState> for Person {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let jar = jar(parts, state).await;
        let signed_in = viewer(state, &jar).await?;
        if let Some((viewer, user)) = signed_in.and_then(|v| v.user.clone().map(|u| (v, u))) {
            let origin = match Origin::from_request_parts(parts, state).await {
                Ok(origin) => origin.acting_as(user.id, &user.username),
                Err(never) => match never {},
            };
            return Ok(Person {
                viewer,
                user,
                origin,
            });
        }
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or(&parts.uri, |o| &o.0);
        let next = uri.path_and_query().map_or("/", |p| p.as_str());
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("next", next)
            .finish();
        Err(see_other(&format!("/accounts/login/?{query}")))
    }
}

/// Someone who may open the admin console. Nobody signed in is sent to the console's sign-in;
/// a signed-in person who is not an administrator is refused.
pub struct Administrator(pub Viewer);

impl FromRequestParts<AppState> for Administrator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let jar = jar(parts, state).await;
        match viewer(state, &jar).await? {
            Some(v) if v.admin => Ok(Administrator(v)),
            Some(v) => Err(pages::site_error(
                StatusCode::FORBIDDEN,
                &v.nav(Section::Console),
                "Administrators only",
                "Your account may not open the admin console. Sign in with the admin key instead.",
            )),
            None => Err(see_other("/console/login")),
        }
    }
}

/// A posted form whose CSRF token matches the session's; anything else is refused with a page
/// before the handler runs. The fields are kept in order, duplicates too (`scopes`).
pub struct CsrfForm(pub Vec<(String, String)>);

impl FromRequest<AppState> for CsrfForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = session::current(state, &jar(&mut parts, state).await);
        let axum::Form(form) = axum::Form::<Vec<(String, String)>>::from_request(
            Request::from_parts(parts, body),
            state,
        )
        .await
        .map_err(|_| {
            let why = "The form could not be read. Go back, reload the page and try again.";
            pages::error(StatusCode::BAD_REQUEST, "Invalid request", why)
        })?;
        match session {
            Some(s) if s.csrf_ok(field(&form, "csrf")) => match not_plain_text(&form) {
                Some(refusal) => Err(refusal),
                None => Ok(CsrfForm(form)),
            },
            _ => Err(csrf_refused()),
        }
    }
}

/// The page refusing a form whose fields hold control characters ([`gramkey_domain::text`]),
/// saying which field; `None` for a form of plain text.
pub fn not_plain_text(form: &[(String, String)]) -> Option<Response> {
    gramkey_domain::text::check_pairs(form.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .err()
        .map(|why| pages::error(StatusCode::BAD_REQUEST, "Invalid request", &why))
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
    let by_key = session.admin_key_ok(state);
    let admin = by_key
        || user
            .as_ref()
            .is_some_and(|u| state.config.admin_users.iter().any(|a| a == &u.username));
    if user.is_none() && !by_key {
        return Ok(None);
    }
    Ok(Some(Viewer {
        session,
        user,
        admin,
    }))
}

/// The usernames of the people `events` name (a missing one is left out: shown by id).
pub async fn usernames(
    state: &AppState,
    events: &[gramkey_store::AuditEvent],
) -> Result<crate::pages::console::Names, gramkey_store::StoreError> {
    let mut ids: Vec<_> = events.iter().filter_map(|e| e.event.user_id).collect();
    ids.sort_by_key(|u| u.0);
    ids.dedup();
    let mut names = crate::pages::console::Names::new();
    for uid in ids {
        if let Some(u) = state.ops.store.user(uid).await? {
            names.insert(uid.0, u.username.clone());
        }
    }
    Ok(names)
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
        "webhook-test" => "A test notification was queued; it appears under Webhook deliveries.",
        "clock" => "The app's test clock was moved.",
        "clock-reset" => "The app's test clock is back on real time.",
        "fault-added" => "The fault rule was added: the next matching calls get it.",
        "faults-cleared" => "Every fault rule was cleared.",
        "member-removed" => "They were removed from the app's roles.",
        "left" => "You left the app's team.",
        "logged-out" => "You are logged out.",
        "deleted" => "The app was deleted, with every token issued to it.",
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
