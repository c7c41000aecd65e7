//! Renderers, one per wire flavour. A handler decides *what* to answer in domain terms; these
//! decide how it looks on the wire.
//!
//! - [`graph`]: `{"error":{"message","type","code","error_subcode","fbtrace_id"}}` (wire §5).
//! - [`oauth`]: the flat token-endpoint error `{"error_type","code","error_message"}` (wire §2).
//! - [`rfc`]: RFC 6749 §5.2 `{"error","error_description"}` for the standard endpoints.
//! - [`admin`]: the admin API's own `{"error":{"message","status"}}`.

pub mod admin;
pub mod form;
pub mod graph;
pub mod legacy;
pub mod nodes;
pub mod oauth;
pub mod rfc;

use axum::http::{HeaderValue, header};
use axum::response::Response;

/// Token responses and anything carrying a credential must not be cached (RFC 6749 §5.1).
pub fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}
