//! The browser session: one encrypted, authenticated cookie (`gk_session`, AES-GCM via
//! `axum-extra`'s private cookie jar) holding the signed-in user, when they signed in, and the
//! CSRF token that every form must echo. The cookie is `HttpOnly`, `SameSite=Lax` (the
//! authorize request arrives as a cross-site top-level navigation and must see the session),
//! and `Secure` when the public URL is https.

use axum_extra::extract::PrivateCookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use gramkey_domain::entropy::random_alnum;
use gramkey_domain::secret::ct_eq;
use gramkey_domain::{UnixTime, UserId};
use serde::{Deserialize, Serialize};

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
}

impl Session {
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
    }
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
pub fn signed_in(state: &AppState, jar: PrivateCookieJar, user: UserId) -> PrivateCookieJar {
    let mut s = new_session(state);
    s.uid = Some(user.0);
    s.auth_at = Some(state.ops.clock.now());
    store(state, jar, &s)
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
