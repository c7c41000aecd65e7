//! `GET /oauth/authorize`: which requests may proceed, and how each bad one is refused.
//!
//! Two kinds of refusal (RFC 6749 §4.1.2.1): when the client or its redirect URI cannot be
//! trusted, the user sees an error page and is **never** redirected ([`Fatal`]); every other
//! error goes back to the app's redirect URI as `error`, `error_reason` and
//! `error_description` ([`RedirectError`]), with `state` echoed (Instagram's docs are silent
//! about `state` on errors; RFC 6749 requires it, so we send it).

use std::collections::HashMap;

use crate::app::{RedirectUri, find_redirect};
use crate::code::CodeChallenge;
use crate::ids::AppId;
use crate::scope::{Family, Scope, ScopeError, ScopeSet};

/// The query parameters, each at most once.
#[derive(Debug, Default, Clone)]
pub struct AuthorizeParams(HashMap<String, String>);

/// A refusal shown as a page: the request is not trusted enough to redirect anywhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    #[error("The request has no client_id.")]
    MissingClientId,
    #[error("Invalid platform app: no app has this client_id.")]
    UnknownClient,
    #[error("The request has no redirect_uri.")]
    MissingRedirectUri,
    #[error("Redirect URI does not match registered redirect URI.")]
    RedirectMismatch,
    #[error("Parameter {0} was given more than once.")]
    Duplicate(String),
}

/// A refusal sent back to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectError {
    pub redirect_uri: String,
    pub error: &'static str,
    pub reason: &'static str,
    pub description: String,
    pub state: Option<String>,
}

impl RedirectError {
    /// The user pressed Cancel (wire protocol §1).
    pub fn user_denied(req: &AuthorizeRequest) -> Self {
        Self {
            redirect_uri: req.redirect_uri.clone(),
            error: "access_denied",
            reason: "user_denied",
            description: "The user denied your request".into(),
            state: req.state.clone(),
        }
    }
    /// A development-mode app, and the user has no role on it (wire protocol §9).
    pub fn insufficient_role(req: &AuthorizeRequest) -> Self {
        Self {
            redirect_uri: req.redirect_uri.clone(),
            error: "access_denied",
            reason: "insufficient_developer_role",
            description: "Insufficient developer role: this app is in development mode and the user has no role on it".into(),
            state: req.state.clone(),
        }
    }

    /// The full redirect URL: the registered URI plus the error parameters.
    /// The error redirect, naming the issuer (RFC 9207 `iss`) as every authorization
    /// response does.
    pub fn to_url(&self, issuer: &str) -> String {
        let mut pairs: Vec<(&str, &str)> = vec![
            ("error", self.error),
            ("error_reason", self.reason),
            ("error_description", &self.description),
        ];
        if let Some(s) = &self.state {
            pairs.push(("state", s));
        }
        pairs.push(("iss", issuer));
        append_query(&self.redirect_uri, &pairs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    Fatal(Fatal),
    Redirect(RedirectError),
}

impl From<Fatal> for AuthorizeError {
    fn from(f: Fatal) -> Self {
        AuthorizeError::Fatal(f)
    }
}

/// A request that may proceed to login and consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    pub app_id: AppId,
    /// As presented (which, for loopback URIs, may differ from the registered one by port).
    pub redirect_uri: String,
    pub scopes: ScopeSet,
    pub family: Family,
    pub state: Option<String>,
    pub code_challenge: Option<CodeChallenge>,
    pub force_authentication: bool,
}

impl AuthorizeRequest {
    /// The success redirect: `REDIRECT_URI?code=...&state=...#_` (wire protocol §1; the `#_`
    /// is Instagram's, and not part of the code).
    /// `REDIRECT_URI?code=…&state=…&iss=…#_`: Instagram's shape (the `#_` is Instagram's), with
    /// RFC 9207's `iss` so a client can tell which server answered (mix-up attacks).
    pub fn success_url(&self, code: &str, issuer: &str) -> String {
        let mut pairs = vec![("code", code)];
        if let Some(s) = &self.state {
            pairs.push(("state", s));
        }
        pairs.push(("iss", issuer));
        append_query(&self.redirect_uri, &pairs) + "#_"
    }

    /// The parameters to carry through the login and consent forms. Every one is validated
    /// again when the form comes back.
    pub fn to_params(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("client_id", self.app_id.to_string()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("scope", self.scopes.to_stored()),
            ("response_type", "code".to_owned()),
        ];
        if let Some(s) = &self.state {
            v.push(("state", s.clone()));
        }
        if let Some(c) = &self.code_challenge {
            v.push(("code_challenge", c.as_str().to_owned()));
            v.push(("code_challenge_method", "S256".to_owned()));
        }
        v
    }
}

fn append_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{encoded}")
}

/// What the domain needs to know about the app named by `client_id`.
#[derive(Debug, Clone, Copy)]
pub struct AppView<'a> {
    pub id: &'a AppId,
    pub redirect_uris: &'a [RedirectUri],
    pub allowed_scopes: &'a ScopeSet,
}

/// The longest `state` we carry. Instagram does not document one; 2 KiB is far above what
/// any client sends and keeps redirect URLs within browser limits.
pub const MAX_STATE_LEN: usize = 2048;

impl AuthorizeParams {
    /// Collects query pairs. A repeated parameter is refused (RFC 6749 §3.1).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, Fatal> {
        let mut map = HashMap::new();
        for (k, v) in pairs {
            if map.contains_key(&k) {
                return Err(Fatal::Duplicate(k));
            }
            map.insert(k, v);
        }
        Ok(Self(map))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The client id, checked before the app is looked up. A malformed id names no app.
    pub fn client_id(&self) -> Result<AppId, Fatal> {
        let raw = self.get("client_id").ok_or(Fatal::MissingClientId)?;
        AppId::parse(raw).ok_or(Fatal::UnknownClient)
    }

    /// Validates the whole request against the app it names.
    pub fn validate(&self, app: AppView<'_>) -> Result<AuthorizeRequest, AuthorizeError> {
        let redirect = self.get("redirect_uri").ok_or(Fatal::MissingRedirectUri)?;
        if find_redirect(app.redirect_uris, redirect).is_none() {
            return Err(Fatal::RedirectMismatch.into());
        }
        let state = self.get("state").map(str::to_owned);
        let refuse = |error, reason, description: String| {
            AuthorizeError::Redirect(RedirectError {
                redirect_uri: redirect.to_owned(),
                error,
                reason,
                description,
                state: state.clone(),
            })
        };
        if state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
            // The state itself is the problem, so it is not echoed.
            return Err(AuthorizeError::Redirect(RedirectError {
                redirect_uri: redirect.to_owned(),
                error: "invalid_request",
                reason: "invalid_state",
                description: format!("state must be at most {MAX_STATE_LEN} characters"),
                state: None,
            }));
        }
        match self.get("response_type") {
            None => {
                return Err(refuse(
                    "invalid_request",
                    "missing_response_type",
                    "Missing required parameter: response_type".into(),
                ));
            }
            Some("code") => {}
            Some(other) => {
                return Err(refuse(
                    "unsupported_response_type",
                    "unsupported_response_type",
                    format!("Unsupported response_type: {other}; only \"code\" is supported"),
                ));
            }
        }
        let requested = match self.get("scope") {
            // Legacy v1: "all approved apps have basic access by default" (wire protocol §11).
            // Basic Display and Instagram Login documented `scope` as required, so for them an
            // absent scope stays an error.
            None | Some("") if app.allowed_scopes.contains(Scope::Basic) => "basic",
            other => other.unwrap_or_default(),
        };
        let scopes = ScopeSet::parse(requested).map_err(|e| {
            let reason = if e == ScopeError::Empty {
                "missing_scope"
            } else {
                "invalid_scope"
            };
            let error = if e == ScopeError::Empty {
                "invalid_request"
            } else {
                "invalid_scope"
            };
            refuse(error, reason, e.to_string())
        })?;
        let family = scopes
            .request_family()
            .map_err(|e| refuse("invalid_scope", "invalid_scope", e.to_string()))?;
        if let Some(s) = scopes.iter().find(|s| !app.allowed_scopes.contains(*s)) {
            return Err(refuse(
                "invalid_scope",
                "invalid_scope",
                format!("Invalid scope: this app may not request {}", s.as_str()),
            ));
        }
        let code_challenge = CodeChallenge::parse(
            self.get("code_challenge"),
            self.get("code_challenge_method"),
        )
        .map_err(|e| refuse("invalid_request", "invalid_code_challenge", e.to_string()))?;
        let force_authentication = match self
            .get("force_authentication")
            .or(self.get("force_reauth"))
        {
            None | Some("0") | Some("false") => false,
            Some("1") | Some("true") => true,
            Some(_) => {
                return Err(refuse(
                    "invalid_request",
                    "invalid_force_authentication",
                    "force_authentication must be 0 or 1".into(),
                ));
            }
        };
        Ok(AuthorizeRequest {
            app_id: app.id.clone(),
            redirect_uri: redirect.to_owned(),
            scopes,
            family,
            state,
            code_challenge,
            force_authentication,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://gk.example";

    fn params(pairs: &[(&str, &str)]) -> AuthorizeParams {
        AuthorizeParams::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .unwrap()
    }

    fn with_app<T>(f: impl FnOnce(AppView<'_>) -> T) -> T {
        let id = AppId::parse("1234").unwrap();
        let uris = vec![RedirectUri::parse("https://app.example/cb").unwrap()];
        let scopes = ScopeSet::parse("user_profile,user_media,instagram_business_basic").unwrap();
        f(AppView {
            id: &id,
            redirect_uris: &uris,
            allowed_scopes: &scopes,
        })
    }

    const OK: &[(&str, &str)] = &[
        ("client_id", "1234"),
        ("redirect_uri", "https://app.example/cb"),
        ("scope", "user_profile,user_media"),
        ("response_type", "code"),
        ("state", "xyz"),
    ];

    fn with(overrides: &[(&str, &str)]) -> AuthorizeParams {
        let mut v: Vec<(&str, &str)> = OK
            .iter()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .copied()
            .collect();
        v.extend(overrides.iter().filter(|(_, val)| !val.is_empty()));
        params(&v)
    }

    #[test]
    fn valid_request() {
        let r = with_app(|a| params(OK).validate(a)).unwrap();
        assert_eq!(r.family, Family::BasicDisplay);
        assert_eq!(
            r.success_url("AQabc", ISS),
            "https://app.example/cb?code=AQabc&state=xyz&iss=https%3A%2F%2Fgk.example#_"
        );
        assert!(!r.force_authentication);
    }

    #[test]
    fn untrusted_client_or_redirect_is_fatal() {
        assert_eq!(params(&[]).client_id(), Err(Fatal::MissingClientId));
        assert_eq!(
            params(&[("client_id", "abc")]).client_id(),
            Err(Fatal::UnknownClient)
        );
        let e = with_app(|a| with(&[("redirect_uri", "https://evil.example/cb")]).validate(a));
        assert_eq!(e, Err(AuthorizeError::Fatal(Fatal::RedirectMismatch)));
        let e = with_app(|a| with(&[("redirect_uri", "")]).validate(a));
        assert_eq!(e, Err(AuthorizeError::Fatal(Fatal::MissingRedirectUri)));
        let dup =
            AuthorizeParams::from_pairs(vec![("a".into(), "1".into()), ("a".into(), "2".into())]);
        assert_eq!(dup.unwrap_err(), Fatal::Duplicate("a".into()));
    }

    fn redirect_error(overrides: &[(&str, &str)]) -> RedirectError {
        match with_app(|a| with(overrides).validate(a)) {
            Err(AuthorizeError::Redirect(r)) => r,
            other => panic!("expected a redirect error, got {other:?}"),
        }
    }

    #[test]
    fn an_absent_scope_is_basic_for_legacy_apps_only() {
        let id = AppId::parse("1234").unwrap();
        let uris = vec![RedirectUri::parse("https://app.example/cb").unwrap()];
        let legacy = ScopeSet::parse("basic,public_content").unwrap();
        let without_scope: Vec<(&str, &str)> =
            OK.iter().copied().filter(|(k, _)| *k != "scope").collect();
        let view = AppView {
            id: &id,
            redirect_uris: &uris,
            allowed_scopes: &legacy,
        };
        let ok = params(&without_scope).validate(view).unwrap();
        assert_eq!(ok.scopes.to_stored(), "basic");
        let mut empty = without_scope.clone();
        empty.push(("scope", ""));
        assert_eq!(
            params(&empty).validate(view).unwrap().scopes.to_stored(),
            "basic"
        );
        // Basic Display and Instagram Login documented scope as required.
        let e = redirect_error(&[("scope", "")]);
        assert_eq!((e.error, e.reason), ("invalid_request", "missing_scope"));
    }

    #[test]
    fn other_errors_redirect_with_state() {
        let e = redirect_error(&[("response_type", "token")]);
        assert_eq!(e.error, "unsupported_response_type");
        assert_eq!(e.state.as_deref(), Some("xyz"));
        assert!(
            e.to_url(ISS).starts_with(
                "https://app.example/cb?error=unsupported_response_type&error_reason="
            )
        );
        assert!(
            e.to_url(ISS)
                .ends_with("&state=xyz&iss=https%3A%2F%2Fgk.example")
        );
        assert_eq!(
            redirect_error(&[("response_type", "")]).error,
            "invalid_request"
        );
        assert_eq!(redirect_error(&[("scope", "")]).error, "invalid_request");
        assert_eq!(
            redirect_error(&[("scope", "user_profile,bogus")]).error,
            "invalid_scope"
        );
        assert_eq!(
            redirect_error(&[("scope", "user_media")]).error,
            "invalid_scope"
        );
        assert_eq!(
            redirect_error(&[("scope", "user_profile,basic")]).error,
            "invalid_scope"
        );
        assert_eq!(
            redirect_error(&[(
                "scope",
                "instagram_business_basic,instagram_business_content_publish"
            )])
            .error,
            "invalid_scope"
        );
        assert_eq!(
            redirect_error(&[("code_challenge", "abc"), ("code_challenge_method", "S256")]).reason,
            "invalid_code_challenge"
        );
        assert_eq!(
            redirect_error(&[("force_authentication", "2")]).reason,
            "invalid_force_authentication"
        );
        let long = "s".repeat(MAX_STATE_LEN + 1);
        let e = redirect_error(&[("state", &long)]);
        assert_eq!((e.reason, e.state), ("invalid_state", None));
    }

    #[test]
    fn denial_and_pkce_and_force() {
        let ch = crate::code::s256_challenge("a".repeat(43).as_str());
        let r = with_app(|a| {
            with(&[
                ("code_challenge", &ch),
                ("code_challenge_method", "S256"),
                ("force_authentication", "1"),
            ])
            .validate(a)
        })
        .unwrap();
        assert!(r.force_authentication);
        assert!(r.code_challenge.is_some());
        assert!(
            r.to_params()
                .iter()
                .any(|(k, _)| *k == "code_challenge_method")
        );
        let d = RedirectError::user_denied(&r).to_url(ISS);
        assert_eq!(
            d,
            "https://app.example/cb?error=access_denied&error_reason=user_denied&error_description=The+user+denied+your+request&state=xyz&iss=https%3A%2F%2Fgk.example"
        );
    }
}
