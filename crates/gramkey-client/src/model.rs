//! Typed responses, parsed leniently where Instagram is inconsistent: ids as numbers or
//! strings, token responses flat or wrapped in `data`, permissions as a list or a
//! comma-separated string, `expires_in` as a number or a string.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// An access token. `Debug` never shows it; [`AccessToken::expose`] does, on purpose.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
    /// The token itself, to send it; keep it out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

impl<'de> Deserialize<'de> for AccessToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(AccessToken)
    }
}

/// A number or a string, as a string (`"17841400000000000"` either way).
pub fn lenient_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("an id, not {other}"))),
    }
}

fn lenient_opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(serde::de::Error::custom(format!("an id, not {other}"))),
    }
}

fn lenient_secs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(n.as_i64()),
        Value::String(s) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("seconds, not {s:?}"))),
        other => Err(serde::de::Error::custom(format!("seconds, not {other}"))),
    }
}

fn lenient_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => Vec::new(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::Array(items) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        other => return Err(serde::de::Error::custom(format!("a list, not {other}"))),
    })
}

/// What the code exchange answers: `{"access_token","user_id",…}`, or the same inside
/// `{"data":[…]}` as Instagram Login documents it.
#[derive(Debug, Clone, Deserialize)]
pub struct CodeToken {
    /// The token the server issued.
    pub access_token: AccessToken,
    /// The id of the user who authorized, as a string, when the server sends one.
    #[serde(default, deserialize_with = "lenient_opt_id")]
    pub user_id: Option<String>,
    /// The permissions the user granted, from a list or a comma-separated string; empty when
    /// not sent.
    #[serde(default, deserialize_with = "lenient_list")]
    pub permissions: Vec<String>,
    /// Seconds, when the server says (short-lived tokens last an hour).
    #[serde(default, deserialize_with = "lenient_secs")]
    pub expires_in: Option<i64>,
    /// Only from servers that issue RFC 6749 refresh tokens (gramkey apps that opt in).
    #[serde(default)]
    pub refresh_token: Option<AccessToken>,
    /// RFC 6749 §5.1's space-separated scopes, from gramkey's RFC-style answers.
    #[serde(default)]
    pub scope: Option<String>,
}

/// A device's pair of codes (RFC 8628 §3.2).
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceCodes {
    /// What the device polls with: a secret, like a code.
    pub device_code: AccessToken,
    /// What the user types on [`DeviceCodes::verification_uri`], such as `BCDF-GHJK`.
    pub user_code: String,
    /// The page where the user types [`DeviceCodes::user_code`].
    pub verification_uri: String,
    /// The same page with the code filled in, for a link or a QR code.
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// Seconds until both codes expire.
    pub expires_in: i64,
    /// The least seconds between polls (5 when the server does not say).
    #[serde(default, deserialize_with = "lenient_secs")]
    pub interval: Option<i64>,
}

/// One poll's answer (RFC 8628 §3.5); `access_denied` and `expired_token` are errors.
#[derive(Debug, Clone)]
pub enum DevicePoll {
    /// The user approved: the token, as the code exchange answers it.
    Token(CodeToken),
    /// `authorization_pending`: poll again after the interval.
    Pending,
    /// `slow_down`: poll again, five seconds more apart.
    SlowDown,
}

/// `debug_token`'s `data`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DebugToken {
    /// The app the token was issued to.
    #[serde(deserialize_with = "lenient_opt_id")]
    pub app_id: Option<String>,
    /// The token's `type`: `USER` or `APP`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The app's name.
    pub application: Option<String>,
    /// Whether the token can still be used (not expired, not revoked).
    pub is_valid: bool,
    /// Unix time; 0 for tokens that do not expire.
    pub expires_at: Option<i64>,
    /// When the token was issued, in Unix time.
    pub issued_at: Option<i64>,
    /// The permissions the token carries.
    pub scopes: Vec<String>,
    /// The app-scoped id of the token's user; absent for app tokens.
    #[serde(deserialize_with = "lenient_opt_id")]
    pub user_id: Option<String>,
}

/// RFC 7662's answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Introspection {
    /// Whether the token is valid now; when it is not, the server sends nothing else.
    pub active: bool,
    /// The app the token was issued to.
    pub client_id: Option<String>,
    /// Space-separated.
    pub scope: Option<String>,
    /// The app-scoped user id.
    pub sub: Option<String>,
    /// The user's username, for user tokens.
    pub username: Option<String>,
    /// When the token expires, in Unix time; absent for tokens that do not expire.
    pub exp: Option<i64>,
    /// When the token was issued, in Unix time.
    pub iat: Option<i64>,
    /// `short_lived`, `long_lived`, `app`, `refresh`.
    pub kind: Option<String>,
}

impl CodeToken {
    /// Parses a code exchange's answer, flat or wrapped in `data`.
    pub fn from_json(v: Value) -> Result<Self, serde_json::Error> {
        let v = match v
            .get("data")
            .and_then(|d| d.as_array())
            .and_then(|a| a.first())
        {
            Some(inner) if v.get("access_token").is_none() => inner.clone(),
            _ => v,
        };
        serde_json::from_value(v)
    }
}

/// A long-lived token, from the exchange or a refresh.
#[derive(Debug, Clone, Deserialize)]
pub struct LongLivedToken {
    /// The long-lived token.
    pub access_token: AccessToken,
    /// Seconds until it expires (about 60 days), when the server says.
    #[serde(default, deserialize_with = "lenient_secs")]
    pub expires_in: Option<i64>,
}

/// A user, with the fields asked for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct User {
    /// The user's id, as a string.
    #[serde(deserialize_with = "lenient_id")]
    pub id: String,
    /// The user's Instagram username.
    pub username: Option<String>,
    /// The account's type, such as `BUSINESS` or `MEDIA_CREATOR`.
    pub account_type: Option<String>,
    /// How many media the user has posted.
    pub media_count: Option<u64>,
    /// The profile's display name.
    pub name: Option<String>,
    /// The profile's biography.
    pub biography: Option<String>,
    /// How many accounts follow the user.
    pub followers_count: Option<u64>,
    /// How many accounts the user follows.
    pub follows_count: Option<u64>,
    /// The URL of the user's profile picture.
    pub profile_picture_url: Option<String>,
}

/// A media object, with the fields asked for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Media {
    /// The media's id, as a string.
    #[serde(deserialize_with = "lenient_id")]
    pub id: String,
    /// The media's caption, when it has one.
    pub caption: Option<String>,
    /// `IMAGE`, `VIDEO` or `CAROUSEL_ALBUM`.
    pub media_type: Option<String>,
    /// The URL of the image or video file.
    pub media_url: Option<String>,
    /// The media's permanent URL on Instagram.
    pub permalink: Option<String>,
    /// The URL of a video's thumbnail image.
    pub thumbnail_url: Option<String>,
    /// When it was published, as ISO 8601 text (`2024-01-31T12:00:00+0000`).
    pub timestamp: Option<String>,
    /// The owner's username.
    pub username: Option<String>,
    /// How many likes the media has.
    pub like_count: Option<u64>,
    /// How many comments the media has.
    pub comments_count: Option<u64>,
}

/// A comment, with the fields asked for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Comment {
    /// The comment's id, as a string.
    #[serde(deserialize_with = "lenient_id")]
    pub id: String,
    /// The comment's text.
    pub text: Option<String>,
    /// The commenter's username.
    pub username: Option<String>,
    /// When it was posted, as ISO 8601 text.
    pub timestamp: Option<String>,
    /// How many likes the comment has.
    pub like_count: Option<u64>,
}

/// The id Graph answers for a write (`{"id": …}`).
#[derive(Debug, Clone, Deserialize)]
pub struct Created {
    /// The id of what was created, as a string.
    #[serde(deserialize_with = "lenient_id")]
    pub id: String,
}

/// An app's webhook subscription (`GET /{app-id}/subscriptions`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WebhookSubscription {
    /// The kind of object subscribed to, such as `instagram`.
    pub object: String,
    /// Where the notifications are sent.
    pub callback_url: String,
    /// Whether the subscription is on.
    #[serde(default)]
    pub active: bool,
    /// The fields subscribed to, each with its version.
    #[serde(default)]
    pub fields: Vec<SubscribedField>,
}

/// One field of a webhook subscription.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubscribedField {
    /// The field's name, such as `comments` or `mentions`.
    pub name: String,
    /// The Graph API version its notifications use, when the server says.
    pub version: Option<String>,
}

/// One metric of a media's or an account's insights.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Insight {
    /// The metric's name, such as `reach` or `likes`.
    pub name: String,
    /// The period it covers: `day`, `week`, `days_28` or `lifetime`.
    pub period: String,
    /// The metric's title, in words.
    pub title: Option<String>,
    /// What the metric measures, in words.
    pub description: Option<String>,
    /// Graph's id for the metric (`<object-id>/insights/<name>/<period>`).
    pub id: Option<String>,
    /// A time series (and a media's lifetime value, as its one element).
    #[serde(default)]
    pub values: Vec<InsightValue>,
    /// With `metric_type=total_value`.
    pub total_value: Option<InsightValue>,
}

/// One value of a metric, with the end of the period it covers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InsightValue {
    /// A number for most metrics; an object for breakdowns Meta nests.
    pub value: Value,
    /// The end of the period the value covers, as ISO 8601 text, for time-series values.
    pub end_time: Option<String>,
}

impl Insight {
    /// The one number a media metric or a total carries.
    pub fn number(&self) -> Option<i64> {
        self.total_value
            .as_ref()
            .or(self.values.first())
            .and_then(|v| v.value.as_i64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn code_tokens_parse_flat_or_wrapped_with_either_id_type() {
        let flat =
            CodeToken::from_json(json!({"access_token":"IGQVabc","user_id":17841400000000001_u64}))
                .unwrap();
        assert_eq!(flat.user_id.as_deref(), Some("17841400000000001"));
        let wrapped = CodeToken::from_json(json!({"data":[{"access_token":"IGAA","user_id":"1784","permissions":"instagram_business_basic,instagram_business_content_publish"}]})).unwrap();
        assert_eq!(wrapped.access_token.expose(), "IGAA");
        assert_eq!(
            wrapped.permissions,
            [
                "instagram_business_basic",
                "instagram_business_content_publish"
            ]
        );
        let listed = CodeToken::from_json(
            json!({"access_token":"x","permissions":["a","b"],"expires_in":"3600"}),
        )
        .unwrap();
        assert_eq!(
            (listed.permissions.len(), listed.expires_in),
            (2, Some(3600))
        );
        assert!(!format!("{flat:?}").contains("IGQVabc"));
    }

    #[test]
    fn users_and_media_take_what_is_there() {
        let u: User = serde_json::from_value(json!({"id":1784,"username":"alice"})).unwrap();
        assert_eq!((u.id.as_str(), u.media_count), ("1784", None));
        let m: Media =
            serde_json::from_value(json!({"id":"1790","media_type":"IMAGE","extra":1})).unwrap();
        assert_eq!(m.media_type.as_deref(), Some("IMAGE"));
    }
}
