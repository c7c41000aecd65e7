//! One module per endpoint group. Each handler parses, calls the domain and the store, renders.

pub mod account;
pub mod admin;
pub mod authorize;
pub mod console;
pub mod dashboard;
pub mod debug;
pub mod form;
pub mod graph;
pub mod health;
pub mod insights;
pub mod legacy;
pub mod lifecycle;
pub mod me;
pub mod rfc;
pub mod sandbox;
pub mod token;

/// The first value of `name` in a raw query string.
pub fn query_param(raw: &Option<String>, name: &str) -> Option<String> {
    query_pairs(raw.clone())
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The pairs of a raw query string, decoded, in order (duplicates kept: each endpoint decides).
pub fn query_pairs(raw: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}
