//! Form bodies in both encodings Instagram's token endpoint accepts: multipart (the docs' `curl
//! -F` samples) and `application/x-www-form-urlencoded` (what most clients send). A parameter
//! given twice is refused (RFC 6749 §3.2).

use std::collections::HashMap;

pub use crate::wire::form::FormError;
use crate::wire::oauth::TokenErrorResponse;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;

/// Form and JSON bodies are small; anything larger is refused before it is read.
pub const BODY_LIMIT: usize = 64 * 1024;

impl FormError {
    /// A body that could not be read: over the limit, stalled (the transport's body timeout),
    /// or malformed.
    fn body(status: StatusCode, text: String, error: &(dyn std::error::Error + 'static)) -> Self {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::TooLarge;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = source {
            if e.is::<tower_http::timeout::TimeoutError>() {
                return Self::TimedOut;
            }
            source = e.source();
        }
        Self::Body(text)
    }
}

/// Form fields by name, each at most once.
#[derive(Debug, Default)]
pub struct FormFields(pub HashMap<String, String>);

/// HTTP Basic client credentials (RFC 6749 §2.3.1: each part form-urlencoded, then base64).
/// `None` without a Basic header; `Some(None)` when the header is malformed.
pub fn basic_credentials(headers: &axum::http::HeaderMap) -> Option<Option<(String, String)>> {
    use base64::Engine;
    let b64 = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok();
    let text = raw.and_then(|b| String::from_utf8(b).ok());
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some(
        text.as_deref()
            .and_then(|t| t.split_once(':'))
            .map(|(id, secret)| (decode(id), decode(secret))),
    )
}

impl FormFields {
    /// Adds client credentials that came in an `Authorization: Basic` header. A secret in the
    /// form as well is refused (RFC 6749 §2.3: one method only), as is a different client_id.
    pub fn with_basic_client(mut self, id: String, secret: String) -> Result<Self, FormError> {
        if self.0.contains_key("client_secret") {
            return Err(FormError::Duplicate("client_secret".into()));
        }
        if self
            .0
            .get("client_id")
            .is_some_and(|form_id| *form_id != id)
        {
            return Err(FormError::Invalid(
                "client_id in the form differs from the Authorization header",
            ));
        }
        self.0.insert("client_id".into(), id);
        self.0.insert("client_secret".into(), secret);
        Ok(self)
    }

    /// Fields from already-decoded pairs (a query string), each at most once.
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, FormError> {
        let mut fields = Self::default();
        for (k, v) in pairs {
            fields.insert(k, v)?;
        }
        Ok(fields)
    }

    fn insert(&mut self, k: String, v: String) -> Result<(), FormError> {
        gramkey_domain::text::check_pairs([(k.as_str(), v.as_str())])
            .map_err(FormError::ControlCharacter)?;
        if self.0.contains_key(&k) {
            return Err(FormError::Duplicate(k));
        }
        self.0.insert(k, v);
        Ok(())
    }
    /// A field's value; empty counts as absent.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
    pub fn require(&self, k: &'static str) -> Result<&str, FormError> {
        self.get(k).ok_or(FormError::Missing(k))
    }
}

impl<S: Send + Sync> FromRequest<S> for FormFields {
    type Rejection = TokenErrorResponse;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::read(req, state).await?)
    }
}

impl FormFields {
    /// Reads a urlencoded or multipart body; an empty body has no fields.
    pub async fn read<S: Send + Sync>(req: Request, state: &S) -> Result<Self, FormError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        // A body declared over the limit is refused before a byte of it is read.
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
            return Err(FormError::TooLarge);
        }
        let mut fields = FormFields::default();
        if content_type.starts_with("multipart/form-data") {
            let mut multipart = Multipart::from_request(req, state)
                .await
                .map_err(|e| FormError::body(e.status(), e.body_text(), &e))?;
            while let Some(field) = multipart
                .next_field()
                .await
                .map_err(|e| FormError::body(e.status(), e.body_text(), &e))?
            {
                let name = field.name().unwrap_or_default().to_owned();
                let value = field
                    .text()
                    .await
                    .map_err(|e| FormError::body(e.status(), e.body_text(), &e))?;
                fields.insert(name, value)?;
            }
        } else if content_type.is_empty()
            || content_type.starts_with("application/x-www-form-urlencoded")
        {
            let body = axum::body::Bytes::from_request(req, state)
                .await
                .map_err(|e| FormError::body(e.status(), e.body_text(), &e))?;
            for (k, v) in url::form_urlencoded::parse(&body) {
                fields.insert(k.into_owned(), v.into_owned())?;
            }
        } else {
            return Err(FormError::Body(format!(
                "unsupported Content-Type {content_type:?}; send application/x-www-form-urlencoded or multipart/form-data"
            )));
        }
        Ok(fields)
    }
}
