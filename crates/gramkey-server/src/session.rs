//! The browser session: one encrypted, authenticated cookie (`gk_session`, AES-GCM via
//! `axum-extra`'s private cookie jar) holding the signed-in user, when they signed in, and the
//! CSRF token that every form must echo. The cookie is `HttpOnly`, `SameSite=Lax` (the
//! authorize request arrives as a cross-site top-level navigation and must see the session),
//! and `Secure` when the public URL is https.
//!
//! A session also carries a fingerprint of the password hash it signed in with, so changing the
//! password ends every browser session at once, not just the tokens.

use axum_extra::extract::PrivateCookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use gramkey_domain::entropy::random_alnum;
use gramkey_domain::secret::ct_eq;
use gramkey_domain::{UnixTime, UserId};
use gramkey_store::{StoreError, User};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::AppState;

pub const COOKIE: &str = "gk_session";
/// A session lasts at most two weeks.
pub const SESSION_SECS: i64 = 14 * 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub csrf: String,
    pub uid: Option<i64>,
    pub auth_at: Option<UnixTime>,
    pub exp: UnixTime,
    /// Fingerprint of the password hash at sign-in.
    #[serde(default)]
    pub pw: String,
    /// Signed in to the admin console with the admin key: the key's fingerprint then
    /// ([`AppState::admin_key_fingerprint`]); it counts only while the key is the same.
    #[serde(default)]
    pub admin_key: Option<String>,
    /// A client secret just created or rotated, shown once on the next view of its app's page:
    /// the form that made it redirects there, so reloading the page cannot make another.
    #[serde(default)]
    pub secret: Option<ShownOnce>,
}

/// A secret waiting to be shown once. Its `Debug` is redacted.
#[derive(Clone, Serialize, Deserialize)]
pub struct ShownOnce {
    app: String,
    secret: String,
    at: UnixTime,
}

impl std::fmt::Debug for ShownOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShownOnce({}, [redacted])", self.app)
    }
}

/// How long a secret waits to be shown: long enough for the redirect, no longer.
const SHOWN_ONCE_SECS: i64 = 600;

impl Session {
    /// Signed in with the server's current admin key.
    pub fn admin_key_ok(&self, state: &AppState) -> bool {
        match (&self.admin_key, state.admin_key_fingerprint()) {
            (Some(had), Some(now)) => ct_eq(had.as_bytes(), now.as_bytes()),
            _ => false,
        }
    }
    pub fn user(&self) -> Option<UserId> {
        self.uid.map(UserId)
    }
    /// True when `presented` is this session's CSRF token.
    pub fn csrf_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| ct_eq(p.as_bytes(), self.csrf.as_bytes()))
    }
}

fn new_session(state: &AppState) -> Session {
    Session {
        csrf: random_alnum(&*state.ops.entropy, 32),
        uid: None,
        auth_at: None,
        exp: state.ops.clock.now() + SESSION_SECS,
        pw: String::new(),
        admin_key: None,
        secret: None,
    }
}

/// A short digest of a password hash: changes whenever the password does (a new salt each time).
fn password_fingerprint(user: &User) -> String {
    hex::encode(&Sha256::digest(user.password_hash.as_bytes())[..8])
}

/// The signed-in user of `session`, unless their password changed since they signed in.
pub async fn user(state: &AppState, session: &Session) -> Result<Option<User>, StoreError> {
    let Some(uid) = session.user() else {
        return Ok(None);
    };
    Ok(state
        .ops
        .store
        .user(uid)
        .await?
        .filter(|u| ct_eq(password_fingerprint(u).as_bytes(), session.pw.as_bytes()))
        .map(std::sync::Arc::unwrap_or_clone))
}

/// The current session, if the cookie is there, authentic and unexpired.
pub fn current(state: &AppState, jar: &PrivateCookieJar) -> Option<Session> {
    let s: Session = serde_json::from_str(jar.get(COOKIE)?.value()).ok()?;
    (s.exp > state.ops.clock.now()).then_some(s)
}

/// The current session, or a new anonymous one (added to the jar).
pub fn ensure(state: &AppState, jar: PrivateCookieJar) -> (PrivateCookieJar, Session) {
    match current(state, &jar) {
        Some(s) => (jar, s),
        None => {
            let s = new_session(state);
            (store(state, jar, &s), s)
        }
    }
}

/// A fresh session for a user who just signed in: a new CSRF token too, so nothing from before
/// sign-in carries over (session fixation).
pub fn signed_in(state: &AppState, jar: PrivateCookieJar, user: &User) -> PrivateCookieJar {
    let mut s = new_session(state);
    s.uid = Some(user.id.0);
    s.pw = password_fingerprint(user);
    s.auth_at = Some(state.ops.clock.now());
    store(state, jar, &s)
}

/// A session for the console, signed in with the admin key (keeping a signed-in user, if
/// any). A new CSRF token too.
pub fn admin_signed_in(
    state: &AppState,
    jar: PrivateCookieJar,
    previous: Option<Session>,
) -> PrivateCookieJar {
    let mut s = new_session(state);
    if let Some(p) = previous {
        (s.uid, s.pw, s.auth_at) = (p.uid, p.pw, p.auth_at);
    }
    s.admin_key = state.admin_key_fingerprint();
    store(state, jar, &s)
}

/// Keeps `secret` in the session, to be shown once on `app`'s page.
pub fn show_secret_once(
    state: &AppState,
    jar: PrivateCookieJar,
    session: &Session,
    app: &gramkey_domain::AppId,
    secret: &gramkey_domain::ClientSecret,
) -> PrivateCookieJar {
    let mut s = session.clone();
    s.secret = Some(ShownOnce {
        app: app.to_string(),
        secret: secret.expose().to_owned(),
        at: state.ops.clock.now(),
    });
    store(state, jar, &s)
}

/// The secret waiting to be shown on `app`'s page, if any: it leaves the session now.
pub fn take_secret(
    state: &AppState,
    jar: PrivateCookieJar,
    session: &Session,
    app: &gramkey_domain::AppId,
) -> (PrivateCookieJar, Option<String>) {
    let Some(once) = &session.secret else {
        return (jar, None);
    };
    let mut s = session.clone();
    s.secret = None;
    let jar = store(state, jar, &s);
    let fresh = once.at + SHOWN_ONCE_SECS > state.ops.clock.now();
    let shown = (once.app == app.as_str() && fresh).then(|| once.secret.clone());
    (jar, shown)
}

/// Signs out: the cookie is removed.
pub fn signed_out(jar: PrivateCookieJar) -> PrivateCookieJar {
    jar.remove(Cookie::build(COOKIE).path("/"))
}

fn store(state: &AppState, jar: PrivateCookieJar, s: &Session) -> PrivateCookieJar {
    let value = serde_json::to_string(s).unwrap_or_default();
    let cookie = Cookie::build((COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.secure_cookies())
        .max_age(time::Duration::seconds(SESSION_SECS))
        .build();
    jar.add(cookie)
}
