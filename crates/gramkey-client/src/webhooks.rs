//! Receiving Instagram webhooks (from Instagram or a gramkey server): answering the endpoint
//! verification, checking `X-Hub-Signature-256`, and reading a notification.
//!
//! ```
//! use gramkey_client::webhooks::{Notification, WebhookError, answer_verification};
//!
//! // The verification request: echo hub.challenge when hub.verify_token is yours.
//! let query = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=my-token";
//! assert_eq!(answer_verification(query, "my-token").as_deref(), Some("1158201444"));
//! assert_eq!(answer_verification(query, "another"), None);
//!
//! // A notification: the raw body and its X-Hub-Signature-256 header, with your app secret.
//! let body = br#"{"object":"instagram","entry":[{"id":"17841400000000001","time":1700000000,"changes":[{"field":"comments","value":{"from":{"id":"17841400000000002","username":"bob"},"media":{"id":"17900000000000001","media_product_type":"FEED"},"id":"17890000000000001","text":"nice"}}]}]}"#;
//! let header = gramkey_client::webhooks::sign("app-secret", body);
//! let n = Notification::verify(body, &header, "app-secret").unwrap();
//! let comment = n.entry[0].changes[0].comment().unwrap();
//! assert_eq!(comment.from.username, "bob");
//! assert_eq!(comment.text, "nice");
//! assert_eq!(
//!     Notification::verify(body, &header, "not the secret").unwrap_err(),
//!     WebhookError::BadSignature
//! );
//! ```

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Why a webhook notification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The `X-Hub-Signature-256` header is absent, or not `sha256=` and 64 hex digits.
    #[error("the X-Hub-Signature-256 header is missing or not \"sha256=<hex>\"")]
    MissingSignature,
    /// The signature does not match the body under the app secret.
    #[error(
        "the signature does not match: wrong app secret, a body changed on the way (sign the raw bytes, before any JSON parsing), or not sent by the platform"
    )]
    BadSignature,
    /// The body is not a notification; the text says why.
    #[error("the body is not an Instagram notification: {0}")]
    BadPayload(String),
}

/// The answer to a verification request (`GET callback?hub.mode=subscribe&…`, its raw query):
/// the challenge to send back as the whole body with HTTP 200, or `None` (answer 403) when the
/// mode or the verify token is not the one you chose.
pub fn answer_verification(query: &str, verify_token: &str) -> Option<String> {
    let mut mode = None;
    let mut token = None;
    let mut challenge = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "hub.mode" => mode = Some(v.into_owned()),
            "hub.verify_token" => token = Some(v.into_owned()),
            "hub.challenge" => challenge = Some(v.into_owned()),
            _ => {}
        }
    }
    let token_ok = token.is_some_and(|t| {
        use sha2::Digest;
        // Compared as digests, so the comparison takes the same time wherever they differ.
        Sha256::digest(t.as_bytes()) == Sha256::digest(verify_token.as_bytes())
    });
    (mode.as_deref() == Some("subscribe") && token_ok)
        .then_some(challenge)
        .flatten()
}

/// `sha256=<hex HMAC-SHA256 of body under app_secret>`, as the platform signs.
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    let mut mac = mac(app_secret);
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn mac(app_secret: &str) -> Hmac<Sha256> {
    #[allow(clippy::expect_used)]
    Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("HMAC takes any key length")
}

/// Checks `X-Hub-Signature-256` against the raw body, in constant time.
pub fn verify_signature(body: &[u8], header: &str, app_secret: &str) -> Result<(), WebhookError> {
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(WebhookError::MissingSignature)?;
    if hex.len() != 64 {
        return Err(WebhookError::MissingSignature);
    }
    let mut expected = [0u8; 32];
    for (i, byte) in expected.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| WebhookError::MissingSignature)?;
    }
    let mut mac = mac(app_secret);
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| WebhookError::BadSignature)
}

/// A notification: `{"object":"instagram","entry":[…]}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Notification {
    /// What the notification is about: `instagram`.
    pub object: String,
    /// One entry per account with changes.
    pub entry: Vec<Entry>,
}

impl Notification {
    /// Verifies the signature, then parses the body.
    pub fn verify(body: &[u8], header: &str, app_secret: &str) -> Result<Self, WebhookError> {
        verify_signature(body, header, app_secret)?;
        serde_json::from_slice(body).map_err(|e| WebhookError::BadPayload(e.to_string()))
    }
}

/// What happened on one account.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Entry {
    /// The account (your app user's Instagram id), as a string.
    #[serde(deserialize_with = "crate::model::lenient_id")]
    pub id: String,
    /// When the platform sent it, in Unix seconds.
    pub time: i64,
    /// What changed, field by field.
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// One change: a field and its value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Change {
    /// `comments`, `mentions`, `live_comments`, …
    pub field: String,
    /// The change's data, whose shape depends on the field.
    pub value: serde_json::Value,
}

impl Change {
    /// A `comments` or `live_comments` change.
    pub fn comment(&self) -> Option<CommentChange> {
        matches!(self.field.as_str(), "comments" | "live_comments")
            .then(|| serde_json::from_value(self.value.clone()).ok())
            .flatten()
    }
    /// A `mentions` change.
    pub fn mention(&self) -> Option<MentionChange> {
        (self.field == "mentions")
            .then(|| serde_json::from_value(self.value.clone()).ok())
            .flatten()
    }
}

/// A comment on one of your app user's posts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CommentChange {
    /// The comment's id.
    pub id: String,
    /// The comment's text.
    pub text: String,
    /// Who wrote it.
    pub from: CommentAuthor,
    /// The media it was written on.
    pub media: CommentMedia,
    /// Set when the comment is a reply.
    pub parent_id: Option<String>,
}

/// Who wrote a comment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CommentAuthor {
    /// The commenter's Instagram-scoped id.
    pub id: String,
    /// The commenter's username.
    pub username: String,
}

/// The media a comment is on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CommentMedia {
    /// The media's id.
    pub id: String,
    /// Where the media appears, such as `FEED` or `REELS`, when the platform says.
    pub media_product_type: Option<String>,
}

/// Your app user was @mentioned: in a comment (`comment_id`) or a caption.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MentionChange {
    /// The media the mention is in, or whose comment it is in.
    pub media_id: String,
    /// The comment with the mention; `None` for a caption.
    pub comment_id: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signatures_are_checked_against_the_raw_body() {
        // openssl dgst -sha256 -hmac 'app-secret' of the same bytes.
        let body = br#"{"object":"instagram"}"#;
        let header = "sha256=f9f60d2fd6f1498ad1636cf26d6916018f8c80c0a4ac67169c9499d510ee1762";
        assert_eq!(sign("app-secret", body), header);
        assert_eq!(verify_signature(body, header, "app-secret"), Ok(()));
        assert_eq!(
            verify_signature(br#"{"object": "instagram"}"#, header, "app-secret"),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature(body, "sha1=abc", "app-secret"),
            Err(WebhookError::MissingSignature)
        );
        assert_eq!(
            verify_signature(body, &header.replace('f', "g"), "app-secret"),
            Err(WebhookError::MissingSignature)
        );
    }

    #[test]
    fn verification_needs_the_mode_and_the_token() {
        let q = "hub.mode=subscribe&hub.challenge=42&hub.verify_token=t%26k";
        assert_eq!(answer_verification(q, "t&k").as_deref(), Some("42"));
        assert_eq!(answer_verification(q, "t"), None);
        assert_eq!(
            answer_verification(
                "hub.mode=unsubscribe&hub.challenge=42&hub.verify_token=t",
                "t"
            ),
            None
        );
    }

    #[test]
    fn mentions_parse() {
        let n: Notification = serde_json::from_str(
            r#"{"object":"instagram","entry":[{"id":17841400000000001,"time":1,"changes":[{"field":"mentions","value":{"media_id":"1","comment_id":"2"}}]}]}"#,
        )
        .unwrap();
        assert_eq!(n.entry[0].id, "17841400000000001");
        let m = n.entry[0].changes[0].mention().unwrap();
        assert_eq!(
            (m.media_id.as_str(), m.comment_id.as_deref()),
            ("1", Some("2"))
        );
        assert!(n.entry[0].changes[0].comment().is_none());
    }
}
