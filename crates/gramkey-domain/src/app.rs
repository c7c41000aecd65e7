//! Apps: their mode, the roles people hold on them, and redirect URI rules.

use crate::scope::ScopeSet;

/// Development apps can be authorized only by people with a role on them (Instagram §9); live
/// apps by anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppMode {
    Development,
    Live,
}

impl AppMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AppMode::Development => "development",
            AppMode::Live => "live",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "development" => Some(AppMode::Development),
            "live" => Some(AppMode::Live),
            _ => None,
        }
    }
}

/// A role on an app. Each lets its holder authorize the app in development mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Developer,
    Tester,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Tester => "tester",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "developer" => Some(Role::Developer),
            "tester" => Some(Role::Tester),
            _ => None,
        }
    }
}

/// May this person authorize an app in this mode, given their role on it?
pub fn may_authorize(mode: AppMode, role: Option<Role>) -> bool {
    mode == AppMode::Live || role.is_some()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AppError {
    #[error(
        "app names must be 1 to 100 characters, not all spaces, without control characters or invisible direction and formatting marks"
    )]
    Name,
    #[error("an app needs at least one redirect URI")]
    NoRedirectUri,
    #[error("invalid redirect URI {0:?}: {1}")]
    RedirectUri(String, &'static str),
    #[error("invalid callback URL {0:?}: {1}")]
    CallbackUrl(String, &'static str),
    #[error("an app needs at least one scope")]
    NoScopes,
    #[error("{0}")]
    Scope(#[from] crate::scope::ScopeError),
}

/// Checks an app's display name. The name is shown on consent pages and must be escaped there
/// like any untrusted text; here we refuse what cannot be displayed, and the invisible marks
/// that would let a name disguise itself: direction overrides and isolates (U+202E turns
/// "ppa yticilop" into "policity app" and the consent sentence after it backwards),
/// zero-width characters and other format marks.
pub fn validate_app_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > 100
        || name
            .chars()
            .any(|c| c.is_control() || is_invisible_format(c))
    {
        return Err(AppError::Name);
    }
    Ok(name.to_owned())
}

/// Unicode format characters (category Cf) that change how text around them reads without
/// showing themselves. The zero-width joiner stays allowed: emoji sequences need it.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200C}' | '\u{200E}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// Parses the scopes an app may request (any mix of families; each request uses one).
pub fn validate_app_scopes(raw: &str) -> Result<ScopeSet, AppError> {
    let set = ScopeSet::parse(raw).map_err(|e| match e {
        crate::scope::ScopeError::Empty => AppError::NoScopes,
        e => AppError::Scope(e),
    })?;
    Ok(set)
}

/// A registered redirect URI.
///
/// It must be an absolute `https` URL without a fragment; plain `http` is allowed only for
/// `localhost` and loopback addresses, so local development works. A URI registered on a
/// loopback IP literal (`http://127.0.0.1/cb`, `http://[::1]/cb`) matches that URI on **any
/// port**, as RFC 8252 §7.3 requires for native apps; every other URI must match exactly,
/// byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri(String);

impl RedirectUri {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let bad = |why| AppError::RedirectUri(raw.to_owned(), why);
        if raw.len() > 2048 {
            return Err(bad("longer than 2048 characters"));
        }
        // The URL parser silently drops tabs and newlines; we store the text as given, so
        // refuse them (and all whitespace and non-ASCII) outright.
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "must be printable ASCII without spaces (percent-encode anything else)",
            ));
        }
        let url = url::Url::parse(raw).map_err(|_| bad("not an absolute URL"))?;
        if url.fragment().is_some() {
            return Err(bad("must not contain a fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not contain credentials"));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_local_host(&url) => {}
            "http" => {
                return Err(bad(
                    "http is allowed only for localhost and loopback addresses",
                ));
            }
            _ => return Err(bad("scheme must be https (or http for localhost)")),
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Does a redirect URI presented by a client match this registered one?
    pub fn matches(&self, presented: &str) -> bool {
        // The URL parser drops tabs and line breaks silently, so `loop\tback` would match
        // `loopback` here and then reach a `Location` header as typed: control characters
        // never match.
        if presented.chars().any(char::is_control) {
            return false;
        }
        if self.0 == presented {
            return true;
        }
        let (Ok(reg), Ok(got)) = (url::Url::parse(&self.0), url::Url::parse(presented)) else {
            return false;
        };
        is_loopback_literal(&reg)
            && reg.scheme() == "http"
            && got.scheme() == "http"
            && reg.host() == got.host()
            && reg.path() == got.path()
            && reg.query() == got.query()
            && got.fragment().is_none()
            && got.username().is_empty()
            && got.password().is_none()
    }
}

fn is_loopback_literal(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

fn is_local_host(url: &url::Url) -> bool {
    is_loopback_literal(url) || url.host_str() == Some("localhost")
}

/// Finds the registered URI a presented one matches.
pub fn find_redirect<'a>(
    registered: &'a [RedirectUri],
    presented: &str,
) -> Option<&'a RedirectUri> {
    registered.iter().find(|r| r.matches(presented))
}

/// Why a client (an app) failed to authenticate with its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRefusal {
    /// Too many failed client authentications from this address: even a right secret is
    /// refused until `retry_after` seconds have passed.
    Throttled {
        retry_after: i64,
    },
    /// No app has this client id.
    UnknownClient,
    WrongSecret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_match_a_redirect_uri() {
        let r = RedirectUri::parse("http://127.0.0.1/loopback").unwrap();
        assert!(r.matches("http://127.0.0.1:5000/loopback"));
        for bad in [
            "http://127.0.0.1:5000/loop\tback",
            "http://127.0.0.1:5000/loopback\n",
            "http://127.0.0.1:5000/\rloopback",
        ] {
            assert!(!r.matches(bad), "{bad:?}");
        }
    }

    #[test]
    fn redirect_uri_rules() {
        assert!(RedirectUri::parse("https://example.com/cb").is_ok());
        assert!(RedirectUri::parse("http://localhost:3000/cb").is_ok());
        assert!(RedirectUri::parse("http://127.0.0.1/cb").is_ok());
        assert!(RedirectUri::parse("http://example.com/cb").is_err());
        assert!(RedirectUri::parse("https://example.com/cb#x").is_err());
        assert!(RedirectUri::parse("javascript:alert(1)").is_err());
        assert!(RedirectUri::parse("/relative").is_err());
        assert!(RedirectUri::parse("https://u:p@example.com/").is_err());
        assert!(RedirectUri::parse("https://good.example/cb\nhttps://evil.example/cb").is_err());
        assert!(RedirectUri::parse("https://good.example/c b").is_err());
        assert!(RedirectUri::parse("https://good.example/\u{fc}").is_err());
    }

    #[test]
    fn exact_match_except_loopback_port() {
        let r = RedirectUri::parse("https://example.com/cb").unwrap();
        assert!(r.matches("https://example.com/cb"));
        assert!(!r.matches("https://example.com/cb/"));
        assert!(!r.matches("https://example.com/cb?x=1"));
        assert!(!r.matches("https://example.com:8443/cb"));
        let l = RedirectUri::parse("http://127.0.0.1/cb").unwrap();
        assert!(l.matches("http://127.0.0.1:53211/cb"));
        assert!(!l.matches("http://127.0.0.1:53211/other"));
        assert!(!l.matches("http://localhost:53211/cb"));
        let h = RedirectUri::parse("http://localhost:3000/cb").unwrap();
        assert!(!h.matches("http://localhost:3001/cb"));
        let v6 = RedirectUri::parse("http://[::1]/cb").unwrap();
        assert!(v6.matches("http://[::1]:9/cb"));
    }

    #[test]
    fn names_modes_roles() {
        assert!(validate_app_name("  My App ").is_ok());
        assert!(validate_app_name("").is_err());
        assert!(validate_app_name("a\nb").is_err());
        assert!(validate_app_name("   ").is_err());
        for disguise in [
            "Official \u{202E}ppa",
            "a\u{2067}b",
            "zero\u{200B}width",
            "\u{FEFF}bom",
        ] {
            assert!(validate_app_name(disguise).is_err(), "{disguise:?}");
        }
        assert!(
            validate_app_name("Café 日本 👩\u{200D}💻").is_ok(),
            "letters, emoji and ZWJ"
        );
        assert_eq!(AppMode::parse("live"), Some(AppMode::Live));
        assert_eq!(Role::parse("tester").map(Role::as_str), Some("tester"));
        assert!(may_authorize(AppMode::Live, None));
        assert!(!may_authorize(AppMode::Development, None));
        assert!(may_authorize(AppMode::Development, Some(Role::Tester)));
    }
}
