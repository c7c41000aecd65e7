//! Checking a username and password, for the authorize flow's login form and the site's own:
//! throttled before the password is checked, verified in constant time whether or not the user
//! exists, audited either way.

use gramkey_domain::password::{dummy_hash, verify_password};
use gramkey_domain::user::Username;
use gramkey_domain::{AppId, Password};
use gramkey_store::{StoreError, User};

use crate::observe::LimitHeaders;
use crate::origin::Origin;
use crate::state::AppState;
use crate::throttle::{self, Locked, Throttled};

/// Why a sign-in failed, in words a person can act on.
#[derive(Debug)]
pub enum SignInError {
    Missing,
    /// Too many failures: wait this many seconds.
    Locked(i64, Locked),
    Wrong,
    /// The shared limiter cannot be asked and fails closed.
    Unavailable,
    Store(StoreError),
}

impl SignInError {
    /// A lockout's wait, for `Retry-After`.
    pub fn budget(&self) -> LimitHeaders {
        match self {
            SignInError::Locked(wait, _) => LimitHeaders::wait(*wait),
            _ => LimitHeaders::default(),
        }
    }
}

impl From<Throttled> for SignInError {
    fn from(t: Throttled) -> Self {
        match t {
            Throttled::Locked(wait, locked) => SignInError::Locked(wait, locked),
            Throttled::Unavailable => SignInError::Unavailable,
        }
    }
}

impl SignInError {
    /// The status of the page that shows it.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            SignInError::Locked(..) => StatusCode::TOO_MANY_REQUESTS,
            SignInError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            SignInError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            SignInError::Missing | SignInError::Wrong => StatusCode::UNAUTHORIZED,
        }
    }

    /// The message the form shows.
    pub fn message(&self) -> String {
        match self {
            SignInError::Missing => "Enter your username and password.".into(),
            SignInError::Locked(wait, locked) => {
                let minutes = (wait + 59) / 60;
                let whose = match locked {
                    Locked::Account => "for this account",
                    Locked::Address => "from your network",
                };
                format!(
                    "Too many failed sign-ins {whose}. Try again in {minutes} minute{}.",
                    if minutes == 1 { "" } else { "s" }
                )
            }
            SignInError::Wrong => "The username or password is incorrect.".into(),
            SignInError::Unavailable => {
                "Signing in is temporarily unavailable. Please try again in a minute.".into()
            }
            SignInError::Store(_) => "Something went wrong. Please try again in a moment.".into(),
        }
    }
}

/// The user `username` names, if `password` is theirs. `app` is the app being authorized, if
/// any, for the audit log.
pub async fn verify(
    state: &AppState,
    origin: &Origin,
    username: &str,
    password: &str,
    app: Option<&AppId>,
) -> Result<User, SignInError> {
    if username.is_empty() || password.is_empty() {
        return Err(SignInError::Missing);
    }
    throttle::login_attempt(state, origin, username, app).await?;
    let user = match Username::parse(username) {
        Ok(name) => state
            .ops
            .store
            .user_by_name(name.as_str())
            .await
            .map_err(SignInError::Store)?,
        Err(_) => None,
    };
    // Verify against a dummy hash when there is no such user, so both failures take as long.
    let phc = user
        .as_ref()
        .map_or_else(|| dummy_hash().to_owned(), |u| u.password_hash.clone());
    let password = Password::new(password);
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .unwrap_or(false);
    let known = user.as_ref().map(|u| u.id);
    let Some(user) = user.filter(|_| ok) else {
        tracing::info!(app_id = ?app.map(AppId::as_str), "failed login");
        let why = if known.is_some() {
            "wrong password"
        } else {
            "no such user"
        };
        throttle::login_failed(state, origin, username, known, app, why).await;
        return Err(SignInError::Wrong);
    };
    tracing::info!(user_id = user.id.0, "user signed in");
    throttle::login_succeeded(state, origin, username, user.id, app).await;
    Ok(user)
}
