//! One module per endpoint group. Each handler parses, calls the domain and the store, renders.

pub mod account;
pub mod admin;
pub mod authorize;
pub mod console;
pub mod dashboard;
pub mod debug;
pub mod device;
pub mod form;
pub mod graph;
pub mod health;
pub mod insights;
pub mod legacy;
pub mod lifecycle;
pub mod me;
pub mod rfc;
pub mod sandbox;
pub mod test_tools;
pub mod token;
pub mod webhooks;

/// A request's query string, decoded into pairs in order, duplicates kept (each endpoint
/// decides what a repeat means). The one way the server reads a query: handlers take it as an
/// extractor, and the router's checks and the Graph fallback read [`QueryPairs::borrowed`].
/// (The admin API's typed parameters are axum's `Query<T>`.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl QueryPairs {
    pub fn parse(raw: Option<&str>) -> Self {
        QueryPairs(
            Self::borrowed(raw)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The same pairs, borrowed from `raw` where no decoding changed them.
    pub fn borrowed(
        raw: Option<&str>,
    ) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for QueryPairs {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(QueryPairs::parse(parts.uri.query()))
    }
}
