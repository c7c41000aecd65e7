//! The outbound guard: the one way the server sends requests of its own (media fetches,
//! deauthorize and data-deletion callbacks, alert webhooks).
//!
//! The destinations are given by apps and users, so each request is held to the domain's SSRF
//! policy ([`gramkey_domain::outbound`]) at three points:
//! - the URL before it is sent: http(s) only, no userinfo, no private literal address;
//! - every address a host name resolves to, in the resolver the connection uses, so the
//!   address checked is the address connected to (DNS rebinding cannot slip between them);
//! - every redirect, with the same checks and a cap on their number.
//!
//! Proxies from the environment are ignored: through a proxy, the proxy would resolve the name
//! and the check would be on the wrong address. `--fetch-allow-private` lets private and
//! loopback destinations through (userinfo and schemes stay refused).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gramkey_domain::outbound::{OutboundRefusal, check_url, is_public};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, RequestBuilder, redirect};
use url::Url;

/// What a connection may take, whatever the request's own timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What one kind of outbound request is allowed.
#[derive(Debug, Clone, Copy)]
pub struct Purpose {
    /// Shown in the `User-Agent`: `gramkey/0.1.0 (media fetch)`.
    pub name: &'static str,
    /// The whole request, connection and body included.
    pub timeout: Duration,
    /// How many redirects are followed (0: none).
    pub redirects: usize,
}

/// An HTTP client held to the SSRF policy. Cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    http: reqwest::Client,
    allow_private: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("not a URL: {0}")]
    Url(#[from] url::ParseError),
    #[error("refused by the outbound policy: {0}")]
    Refused(#[from] OutboundRefusal),
}

impl Outbound {
    pub fn new(allow_private: bool, purpose: Purpose) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(purpose.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(purpose.timeout))
            .no_proxy()
            .redirect(redirects(allow_private, purpose.redirects))
            .user_agent(format!(
                "gramkey/{} ({})",
                env!("CARGO_PKG_VERSION"),
                purpose.name
            ));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Self {
            http: builder.build()?,
            allow_private,
        })
    }

    pub fn get(&self, url: &str) -> Result<RequestBuilder, OutboundError> {
        self.request(Method::GET, url)
    }

    pub fn post(&self, url: &str) -> Result<RequestBuilder, OutboundError> {
        self.request(Method::POST, url)
    }

    fn request(&self, method: Method, url: &str) -> Result<RequestBuilder, OutboundError> {
        let url = Url::parse(url)?;
        check_url(&url, self.allow_private)?;
        Ok(self.http.request(method, url))
    }
}

/// A failed send in words, for logs and for an app's callback list: the guard's refusal if
/// that is why (a name that resolved only to private addresses, a redirect to one), else the
/// cause without the URL (which may carry a signed query, and is shown beside it anyway).
pub fn describe(e: reqwest::Error) -> String {
    if let Some(refused) = refusal(&e) {
        return OutboundError::Refused(refused.clone()).to_string();
    }
    if e.is_timeout() {
        return "no answer in time".into();
    }
    if e.is_connect() {
        return "could not connect".into();
    }
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

fn refusal(e: &reqwest::Error) -> Option<&OutboundRefusal> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<OutboundRefusal>() {
            return Some(r);
        }
        source = s.source();
    }
    None
}

/// Follows at most `max` redirects, each checked as the first URL was.
fn redirects(allow_private: bool, max: usize) -> redirect::Policy {
    if max == 0 {
        return redirect::Policy::none();
    }
    redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > max {
            let error = format!("more than {max} redirects");
            return attempt.error(error);
        }
        match check_url(attempt.url(), allow_private) {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(refusal),
        }
    })
}

/// Resolves as the system does, then keeps only public addresses: the connection is made to
/// one of those or not at all.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                all.iter().copied().filter(|a| is_public(a.ip())).collect();
            match (public.is_empty(), all.first()) {
                (false, _) => Ok(Box::new(public.into_iter()) as Addrs),
                (true, Some(first)) => Err(Box::new(OutboundRefusal::NotPublic(first.ip())) as _),
                (true, None) => Err(format!("{} has no address", name.as_str()).into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    /// The resolver is what stops a name that points inside (DNS rebinding, a hosts entry):
    /// `localhost` is refused by name before it gets here, so it stands in for any such name.
    #[tokio::test]
    async fn names_that_resolve_only_to_private_addresses_are_refused() {
        let refused = PublicOnly
            .resolve(Name::from_str("localhost").unwrap())
            .await
            .err()
            .expect("localhost resolves to loopback only");
        assert!(
            refused.downcast_ref::<OutboundRefusal>().is_some(),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn a_send_refused_by_the_resolver_says_so() {
        let http = Outbound::new(
            false,
            Purpose {
                name: "test",
                timeout: Duration::from_secs(5),
                redirects: 0,
            },
        )
        .unwrap();
        // Sent past the URL check (which refuses `localhost` by name): the resolver stops it.
        let request = http.http.get("http://localhost:9/");
        let e = request.send().await.unwrap_err();
        let debug = format!("{e:?}");
        let said = describe(e);
        assert!(
            said.starts_with("refused by the outbound policy"),
            "{said} / {debug}"
        );
    }
}
