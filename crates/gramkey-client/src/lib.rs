//! Client SDK for Instagram's token API, against the real Instagram hosts or any gramkey server.
//!
//! - where to send requests ([`Hosts`]): the real Instagram hosts, or one gramkey server;
//! - the authorize URL with `state` and PKCE ([`AuthorizeRequest`]);
//! - the token lifecycle and the resource API ([`Client`]): code exchange, long-lived exchange,
//!   refresh, the `refresh_token` grant, app tokens, `debug_token`, introspection, the device
//!   flow (RFC 8628), `/me`, media and comments with paging ([`Pager`], also a `Stream`),
//!   publishing, removal and revocation, and a generic `get`; typed, leniently parsed models
//!   ([`model`]); bounded retries with backoff that honour `Retry-After` and slow down as
//!   `X-App-Usage` nears 100 ([`RetryPolicy`]); errors classified into retry and re-authorize
//!   ([`Failure`]);
//! - checking the signed requests sent to an app's deauthorize and data-deletion callbacks
//!   ([`signed_request`]).
//!
//! - an encrypted token vault ([`vault`]) and single-flight automatic refresh ([`refresh`]),
//!   which `gramkey auth` builds on.
//!
//! The whole flow (compiled, not run: it needs a server and a browser):
//!
//! ```no_run
//! use gramkey_client::{AuthorizeRequest, Client, Failure, Hosts};
//!
//! # async fn run(code_from_redirect: &str, secret: &str) -> Result<(), gramkey_client::Error> {
//! let client = Client::new(Hosts::gramkey("http://127.0.0.1:8080").unwrap());
//! let redirect = "http://127.0.0.1:53682/callback";
//! let req = AuthorizeRequest::new("1955185181361652", redirect, &["user_profile", "user_media"]);
//! println!("open {}", req.url(client.hosts()));
//! // … the browser comes back to `redirect` with `code` and `state` (check it) …
//! let short = client
//!     .exchange_code("1955185181361652", secret, redirect, code_from_redirect, Some(req.verifier()))
//!     .await?;
//! let long = client.long_lived(secret, &short.access_token).await?;
//! let me = client.me(&long.access_token, &["id", "username"]).await?;
//! println!("signed in as {:?}", me.username);
//! let mut pages = client.media(&long.access_token, &["id", "caption"], 25);
//! while let Some(page) = pages.next_page().await? {
//!     println!("{} media", page.len());
//! }
//! match client.refresh(&long.access_token).await {
//!     Ok(fresh) => println!("good for {:?} more seconds", fresh.expires_in),
//!     Err(e) if e.needs_reauthorization() => println!("the user must sign in again"),
//!     Err(e) if e.failure() == Failure::RateLimited => println!("later"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
//!
//! ```
//! use gramkey_client::{AuthorizeRequest, Hosts};
//!
//! let hosts = Hosts::gramkey("http://127.0.0.1:8080").unwrap();
//! let req = AuthorizeRequest::new("1955185181361652", "http://127.0.0.1:8080/sandbox/callback", &["user_profile", "user_media"]);
//! let url = req.url(&hosts);
//! assert!(url.as_str().starts_with("http://127.0.0.1:8080/oauth/authorize?client_id=1955185181361652"));
//! // Keep `req.state()` to check the redirect, and `req.verifier()` for the code exchange.
//! assert_eq!(req.verifier().len(), 64);
//! ```

#![warn(missing_docs)]
mod client;
pub mod error;
pub mod loopback;

/// The crate's README, compiled as doctests so its examples stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
pub mod model;
pub mod refresh;
pub mod signed_request;
pub mod vault;
pub mod webhooks;

pub use client::{Client, Pager, RetryPolicy, pacing};
pub use error::{ApiError, Error, Failure};
pub use model::{DeviceCodes, DevicePoll};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use url::Url;

/// The base URLs a client talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts {
    /// Where `/oauth/authorize` lives (`www.instagram.com` for Instagram Login).
    pub authorize: Url,
    /// Where `/oauth/access_token` lives (`api.instagram.com`).
    pub api: Url,
    /// Where `/me`, `/access_token` and the Graph resources live (`graph.instagram.com`).
    pub graph: Url,
}

impl Hosts {
    /// The real Instagram hosts.
    pub fn instagram() -> Self {
        let parse = |s: &str| Url::parse(s).unwrap_or_else(|_| unreachable!("static URL"));
        Self {
            authorize: parse("https://www.instagram.com/"),
            api: parse("https://api.instagram.com/"),
            graph: parse("https://graph.instagram.com/"),
        }
    }

    /// A gramkey server, which serves every endpoint from one base URL.
    pub fn gramkey(base: &str) -> Result<Self, url::ParseError> {
        let mut url = Url::parse(base)?;
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(Self {
            authorize: url.clone(),
            api: url.clone(),
            graph: url,
        })
    }
}

/// One authorization request: the parameters, a fresh `state`, and a PKCE verifier.
///
/// The verifier is deliberately not `Clone` and its `Debug` is redacted: it is a secret until the
/// code exchange. A web app that sends the browser away in one request and receives the
/// redirect in another keeps the request in between, server-side (a session store), with
/// serde:
///
/// ```
/// use gramkey_client::{AuthorizeRequest, Hosts};
/// let req = AuthorizeRequest::new("1955185181361652", "https://app.example/cb", &["user_profile"]);
/// let kept = serde_json::to_string(&req).unwrap(); // into the session, never to the browser
/// let back: AuthorizeRequest = serde_json::from_str(&kept).unwrap();
/// let redirect = format!("https://app.example/cb?code=AQBx&state={}#_", back.state());
/// assert_eq!(back.code_from_redirect(&redirect).unwrap(), "AQBx");
/// ```
#[derive(serde::Serialize, serde::Deserialize)]
pub struct AuthorizeRequest {
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    state: String,
    verifier: String,
}

/// An app's client id and secret, for the calls that authenticate the app. The secret's
/// `Debug` is redacted.
///
/// ```
/// let app = gramkey_client::AppCredentials::new("1955185181361652", "0123456789abcdef");
/// assert!(!format!("{app:?}").contains("0123456789abcdef"));
/// ```
#[derive(Clone)]
pub struct AppCredentials {
    client_id: String,
    client_secret: String,
}

impl AppCredentials {
    /// The app's client id and secret.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }
    /// The client id (the app id).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
    /// The secret, to send it; keep it out of logs.
    pub fn client_secret(&self) -> &str {
        &self.client_secret
    }
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

/// Why a redirect gave no code ([`AuthorizeRequest::code_from_redirect`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    /// Another sign-in's redirect, or a forged one: refuse it.
    #[error("the redirect's state does not match this sign-in")]
    StateMismatch,
    /// The user said no, or the server refused the request.
    #[error("sign-in refused: {error} ({description})")]
    Refused {
        /// The `error` code the server sent, such as `access_denied`.
        error: String,
        /// The server's `error_description`, else its `error_reason`; empty when neither came.
        description: String,
    },
    /// The redirect brings back the right `state` but no `code`.
    #[error("the redirect has no code")]
    NoCode,
}

impl std::fmt::Debug for AuthorizeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizeRequest")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .field("verifier", &"[redacted]")
            .finish()
    }
}

fn random_urlsafe(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // Without an OS random source there is no safe way to make a state or verifier.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    URL_SAFE_NO_PAD.encode(buf)
}

impl AuthorizeRequest {
    /// A request from the app `client_id` for `scopes`, coming back to `redirect_uri`, with a
    /// fresh random `state` and PKCE verifier.
    pub fn new(client_id: &str, redirect_uri: &str, scopes: &[&str]) -> Self {
        Self {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            state: random_urlsafe(24),
            // 48 bytes → 64 characters, inside RFC 7636's 43..=128.
            verifier: random_urlsafe(48),
        }
    }

    /// The random `state` the redirect must bring back.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// The redirect URI the request was made with, to send again with the code exchange.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The PKCE `code_verifier` to send with the code exchange.
    pub fn verifier(&self) -> &str {
        &self.verifier
    }

    /// `BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()))
    }

    /// Checks where the browser came back to (the whole redirect URL, or its query) against
    /// this request: the `state` must be this request's, then the answer is its `code`, or
    /// the refusal the server sent (`error`, `error_reason`, `error_description`).
    pub fn code_from_redirect(&self, redirect: &str) -> Result<String, RedirectError> {
        let query = match Url::parse(redirect.trim()) {
            Ok(url) => url.query().unwrap_or_default().to_owned(),
            Err(_) => redirect.trim().trim_start_matches('?').to_owned(),
        };
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        // Instagram's refusals may come without state; ours carry it. A state that is there
        // must match, and a code needs one.
        match get("state") {
            Some(s) if s != self.state => return Err(RedirectError::StateMismatch),
            None if get("error").is_none() => return Err(RedirectError::StateMismatch),
            _ => {}
        }
        if let Some(error) = get("error") {
            return Err(RedirectError::Refused {
                error,
                description: get("error_description")
                    .or_else(|| get("error_reason"))
                    .unwrap_or_default(),
            });
        }
        get("code")
            .map(|c| c.trim_end_matches("#_").to_owned())
            .filter(|c| !c.is_empty())
            .ok_or(RedirectError::NoCode)
    }

    /// The URL to open in the browser.
    pub fn url(&self, hosts: &Hosts) -> Url {
        let mut url = hosts
            .authorize
            .join("oauth/authorize")
            .unwrap_or_else(|_| hosts.authorize.clone());
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &self.scopes.join(","))
            .append_pair("response_type", "code")
            .append_pair("state", &self.state)
            .append_pair("code_challenge", &self.challenge())
            .append_pair("code_challenge_method", "S256");
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let h = Hosts::gramkey("http://127.0.0.1:8080/base").unwrap();
        assert_eq!(h.api.as_str(), "http://127.0.0.1:8080/base/");
        assert_eq!(
            Hosts::instagram().graph.as_str(),
            "https://graph.instagram.com/"
        );
        assert!(Hosts::gramkey("not a url").is_err());
    }

    #[test]
    fn authorize_url_carries_state_and_pkce() {
        let req = AuthorizeRequest::new(
            "123",
            "http://127.0.0.1/cb",
            &["user_profile", "user_media"],
        );
        let url = req.url(&Hosts::instagram());
        assert_eq!(url.host_str(), Some("www.instagram.com"));
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["scope"], "user_profile,user_media");
        assert_eq!(q["state"], req.state());
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], req.challenge());
        assert_eq!(req.challenge().len(), 43);
        assert!(!format!("{req:?}").contains(req.verifier()));
        let other = AuthorizeRequest::new("123", "http://127.0.0.1/cb", &["user_profile"]);
        assert_ne!(other.state(), req.state());
    }

    #[test]
    fn redirects_are_checked() {
        let req = AuthorizeRequest::new("123", "http://127.0.0.1/cb", &["user_profile"]);
        let st = req.state().to_owned();
        let ok = format!("http://127.0.0.1/cb?code=AQB&state={st}#_");
        assert_eq!(req.code_from_redirect(&ok).unwrap(), "AQB");
        assert_eq!(
            req.code_from_redirect(&format!("code=AQC&state={st}"))
                .unwrap(),
            "AQC"
        );
        assert_eq!(
            req.code_from_redirect("http://127.0.0.1/cb?code=AQB&state=other"),
            Err(RedirectError::StateMismatch)
        );
        assert_eq!(
            req.code_from_redirect("http://127.0.0.1/cb?code=AQB"),
            Err(RedirectError::StateMismatch)
        );
        assert_eq!(
            req.code_from_redirect(&format!(
                "http://127.0.0.1/cb?error=access_denied&error_reason=user_denied&error_description=The+user+denied+your+request.&state={st}"
            )),
            Err(RedirectError::Refused {
                error: "access_denied".into(),
                description: "The user denied your request.".into()
            })
        );
        assert_eq!(
            req.code_from_redirect(&format!("http://127.0.0.1/cb?state={st}")),
            Err(RedirectError::NoCode)
        );
    }
}
