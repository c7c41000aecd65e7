//! Where an action comes from: the client's address and user agent, and the person signed in
//! on a page. The audit log records it, the throttles count attempts by its address, and the
//! alerts watch where tokens are used from.
//!
//! It is passed explicitly. [`crate::observe`] puts each request's origin in the request's
//! extensions and handlers take it as an extractor ([`Origin`] is one); the CLI and background
//! work pass [`Origin::LOCAL`]. This module depends on nothing else in the crate, so the audit
//! log and the throttles do not depend on the HTTP layer.

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::request::Parts;
use gramkey_domain::UserId;

/// Who an action comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The client's address ([`crate::observe`] says which one, behind a proxy).
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header, as sent: kept without a copy (every request has an origin;
    /// few are recorded), read through [`Origin::user_agent`].
    pub user_agent: Option<HeaderValue>,
    /// The person signed in on the page the action was taken on, with their username.
    pub actor: Option<(UserId, String)>,
}

impl Origin {
    /// The CLI and background tasks: no address, no agent, nobody signed in.
    pub const LOCAL: Origin = Origin {
        ip: None,
        user_agent: None,
        actor: None,
    };

    /// At most 256 characters of the `User-Agent` header, if it is plain text.
    pub fn user_agent(&self) -> Option<String> {
        let agent = self.user_agent.as_ref()?.to_str().ok()?;
        Some(agent.chars().take(256).collect())
    }

    /// The same origin, acting as the signed-in `user`.
    pub fn acting_as(&self, user: UserId, username: &str) -> Origin {
        Origin {
            actor: Some((user, username.to_owned())),
            ..self.clone()
        }
    }
}

/// A request's origin, as [`crate::observe`] found it; [`Origin::LOCAL`] on a router built
/// without that layer.
impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Origin>()
            .cloned()
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_recorded_is_plain_text_of_at_most_256_characters() {
        let sent = |v: &[u8]| Origin {
            user_agent: Some(HeaderValue::from_bytes(v).unwrap()),
            ..Origin::default()
        };
        assert_eq!(sent(b"curl/8.5").user_agent().as_deref(), Some("curl/8.5"));
        assert_eq!(sent(&[b'x'; 300]).user_agent().map(|a| a.len()), Some(256));
        assert_eq!(sent(b"caf\xc3\xa9").user_agent(), None);
        assert_eq!(Origin::LOCAL.user_agent(), None);
    }
}
