//! Webhooks for the Instagram Platform (docs/webhooks.md; wire protocol §13).
//!
//! An app subscribes its callback URL to fields of the `instagram` object with its app token,
//! after the URL proved it is the app's by echoing a challenge. Each account then subscribes the
//! app with its own token. Only then, and only for a live app, does what happens on the account
//! (a comment on its media, an @mention) become a notification: a JSON POST signed with the app
//! secret in `X-Hub-Signature-256`.
//!
//! This module decides the vocabulary (fields and the permission each needs), the payloads,
//! the signature, what a verification answer must be, and where mentions are. The store keeps
//! subscriptions and the outbox; the server sends.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::entropy::{Entropy, random_alnum};
use crate::error::GraphError;
use crate::ids::{AppId, ScopedUserId, UserId};
use crate::scope::{Scope, ScopeSet};
use crate::time::UnixTime;
use crate::user::Username;

/// The only object gramkey's apps subscribe to.
pub const OBJECT: &str = "instagram";

/// The fields of the `instagram` object an app may subscribe to, in Meta's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Comments,
    LiveComments,
    Mentions,
    Messages,
    MessageReactions,
    MessagingPostbacks,
    MessagingSeen,
    StoryInsights,
}

impl Field {
    pub const ALL: [Field; 8] = [
        Field::Comments,
        Field::LiveComments,
        Field::Mentions,
        Field::Messages,
        Field::MessageReactions,
        Field::MessagingPostbacks,
        Field::MessagingSeen,
        Field::StoryInsights,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Comments => "comments",
            Field::LiveComments => "live_comments",
            Field::Mentions => "mentions",
            Field::Messages => "messages",
            Field::MessageReactions => "message_reactions",
            Field::MessagingPostbacks => "messaging_postbacks",
            Field::MessagingSeen => "messaging_seen",
            Field::StoryInsights => "story_insights",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The permission an account must have granted for this field to flow (Meta's "webhook
    /// fields and permissions" table, Instagram Login column).
    pub fn scope(self) -> Scope {
        match self {
            Field::Comments | Field::LiveComments | Field::Mentions => {
                Scope::BusinessManageComments
            }
            Field::Messages
            | Field::MessageReactions
            | Field::MessagingPostbacks
            | Field::MessagingSeen => Scope::BusinessManageMessages,
            Field::StoryInsights => Scope::BusinessManageInsights,
        }
    }

    /// Whether the sandbox ever produces this field from what happens in it. The others are
    /// accepted, so a real integration's subscription call works, and reach the app only as
    /// test deliveries.
    pub fn happens_in_sandbox(self) -> bool {
        matches!(self, Field::Comments | Field::Mentions)
    }
}

/// A set of fields, kept sorted and without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(Vec<Field>);

impl Fields {
    /// `comments,mentions`, as `fields` and `subscribed_fields` take them (a JSON array of names
    /// is accepted too). Empty, or naming an unknown field, is refused the way Graph refuses a
    /// bad enum value.
    pub fn parse(param: &str, raw: &str) -> Result<Self, GraphError> {
        let names: Vec<String> = match serde_json::from_str::<Vec<String>>(raw) {
            Ok(list) => list,
            Err(_) => raw.split(',').map(|s| s.trim().to_owned()).collect(),
        };
        let mut fields = Vec::new();
        for (i, name) in names.iter().enumerate() {
            match Field::parse(name) {
                Some(f) => fields.push(f),
                None => {
                    return Err(GraphError::invalid_parameter(format!(
                        "Param {param}[{i}] must be one of {{{}}} - got \"{name}\"",
                        Field::ALL.map(Field::as_str).join(", ")
                    )));
                }
            }
        }
        if fields.is_empty() {
            return Err(GraphError::invalid_parameter(format!(
                "The parameter {param} is required"
            )));
        }
        Ok(Self::from_iter(fields))
    }

    /// The stored form: names joined by commas.
    pub fn to_stored(&self) -> String {
        self.names().join(",")
    }

    /// The stored form read back; names this version does not know are dropped.
    pub fn from_stored(s: &str) -> Self {
        s.split(',').filter_map(Field::parse).collect()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|f| f.as_str()).collect()
    }

    pub fn contains(&self, f: Field) -> bool {
        self.0.contains(&f)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Field> + '_ {
        self.0.iter().copied()
    }

    /// These and `more`.
    pub fn union(&self, more: &Fields) -> Fields {
        self.iter().chain(more.iter()).collect()
    }

    /// These without `less`.
    pub fn without(&self, less: &Fields) -> Fields {
        self.iter().filter(|f| !less.contains(*f)).collect()
    }

    /// The first field whose permission the grant lacks.
    pub fn missing_permission(&self, granted: &ScopeSet) -> Option<Field> {
        self.iter().find(|f| !granted.contains(f.scope()))
    }
}

impl FromIterator<Field> for Fields {
    fn from_iter<I: IntoIterator<Item = Field>>(iter: I) -> Self {
        let mut v: Vec<Field> = iter.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        Self(v)
    }
}

/// `POST /{ig-user-id}/subscribed_apps` without a permission a field needs: Graph's wording for
/// Pages' subscribed_apps, with Instagram's permission names.
pub fn missing_permission_error(field: Field) -> GraphError {
    GraphError::permission_write(field.scope().as_str()).with_message(format!(
        "(#200) To subscribe to the {} field, one of these permissions is needed: {}",
        field.as_str(),
        field.scope().as_str()
    ))
}

/// The verify token an app chooses: any non-empty text Graph would take in a query.
pub fn check_verify_token(raw: Option<&str>) -> Result<String, GraphError> {
    match raw {
        Some(t) if !t.is_empty() && t.len() <= 256 => Ok(t.to_owned()),
        Some(_) => Err(GraphError::invalid_parameter(
            "The parameter verify_token must be 1 to 256 characters",
        )),
        None => Err(GraphError::invalid_parameter(
            "The parameter verify_token is required",
        )),
    }
}

/// A fresh challenge for `hub.challenge`: digits, as Meta sends.
pub fn new_challenge(entropy: &dyn Entropy) -> String {
    let mut b = [0u8; 8];
    entropy.fill(&mut b);
    (u64::from_be_bytes(b) % 9_000_000_000 + 1_000_000_000).to_string()
}

/// The query of the verification request.
pub fn verification_query(challenge: &str, verify_token: &str) -> [(&'static str, String); 3] {
    [
        ("hub.mode", "subscribe".to_owned()),
        ("hub.challenge", challenge.to_owned()),
        ("hub.verify_token", verify_token.to_owned()),
    ]
}

/// Judges the endpoint's answer to the verification request: HTTP 200 with the challenge as
/// the whole body (surrounding whitespace allowed). The error is Graph's code 2200, worded as
/// Meta's: "Callback verification failed with the following errors: …".
pub fn judge_verification(
    status: u16,
    body: &str,
    challenge: &str,
    reason: &str,
) -> Result<(), GraphError> {
    let problem = if status != 200 {
        format!("HTTP Status Code = {status}; HTTP Message = {reason}")
    } else if body.trim() != challenge {
        format!(
            "HTTP Status Code = 200; HTTP Message = OK; Response does not match challenge, expected value=\"{challenge}\", received=\"{}\"",
            body.chars().take(64).collect::<String>()
        )
    } else {
        return Ok(());
    };
    Err(verification_failed(&problem))
}

/// The endpoint could not be reached at all (refused, timed out, not allowed by the outbound
/// guard).
pub fn verification_failed(problem: &str) -> GraphError {
    GraphError::oauth_error(
        2200,
        format!("(#2200) Callback verification failed with the following errors: {problem}"),
    )
}

/// `X-Hub-Signature-256`: `sha256=` and the lowercase hex HMAC-SHA256 of the raw body under
/// the app secret.
pub fn signature(app_secret: &str, body: &[u8]) -> String {
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One notification's body: one entry for the account, one change.
pub fn notification(
    account: &ScopedUserId,
    time: UnixTime,
    field: Field,
    value: &serde_json::Value,
) -> String {
    serde_json::json!({
        "object": OBJECT,
        "entry": [{
            "id": account.as_str(),
            "time": time,
            "changes": [{ "field": field.as_str(), "value": value }],
        }],
    })
    .to_string()
}

/// What a `comments` change carries (Meta's webhook reference, `FBInstagramCommentsField`).
pub struct CommentEvent<'a> {
    pub comment_id: &'a str,
    pub text: &'a str,
    /// The commenter as this app sees them.
    pub from_id: &'a ScopedUserId,
    pub from_username: &'a str,
    pub media_id: &'a str,
    /// `FEED`, `REELS` or `STORY`.
    pub media_product_type: &'a str,
    pub parent_id: Option<&'a str>,
}

impl CommentEvent<'_> {
    pub fn value(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "from": { "id": self.from_id.as_str(), "username": self.from_username },
            "media": { "id": self.media_id, "media_product_type": self.media_product_type },
            "id": self.comment_id,
            "text": self.text,
        });
        if let Some(parent) = self.parent_id {
            v["parent_id"] = serde_json::json!(parent);
        }
        v
    }
}

/// A `mentions` change: the media, and the comment when the mention is in one.
pub fn mention_value(media_id: &str, comment_id: Option<&str>) -> serde_json::Value {
    match comment_id {
        Some(c) => serde_json::json!({ "media_id": media_id, "comment_id": c }),
        None => serde_json::json!({ "media_id": media_id }),
    }
}

/// The usernames @mentioned in `text`, lower-cased, each once, in order. A mention is `@`
/// not preceded by a username character, followed by a valid username (a trailing period is
/// punctuation, not part of the name).
pub fn mentions(text: &str) -> Vec<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '_';
    let mut found: Vec<String> = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        if c == '@' && !prev.is_some_and(is_name) {
            let rest = &text[i + 1..];
            let end = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
            let name = rest[..end].trim_end_matches('.');
            if let Ok(u) = Username::parse(name)
                && !found.iter().any(|f| f == u.as_str())
            {
                found.push(u.as_str().to_owned());
            }
        }
        prev = Some(c);
    }
    found
}

/// The id an app sees for a person who has not authorized it (a commenter, in `from.id`):
/// stable for the pair, 17 digits starting `1784` like every scoped id. A person who has
/// authorized the app is named by their grant's id instead.
pub fn outsider_id(app: &AppId, user: UserId) -> ScopedUserId {
    use sha2::Digest;
    let digest = Sha256::digest(format!("gramkey outsider {} {}", app.as_str(), user.0));
    let mut n = [0u8; 8];
    n.copy_from_slice(&digest[..8]);
    let digits = u64::from_be_bytes(n) % 10_000_000_000_000;
    #[allow(clippy::expect_used)]
    ScopedUserId::parse(&format!("1784{digits:013}")).expect("digits")
}

/// The sample a test delivery carries for `field`, as Meta's dashboard sends: made-up ids,
/// the account id `0`.
pub fn test_notification(field: Field, time: UnixTime) -> String {
    let value = match field {
        Field::Comments | Field::LiveComments => serde_json::json!({
            "from": { "id": "232323232", "username": "test" },
            "media": { "id": "123123123", "media_product_type": "FEED" },
            "id": "17865799348089039",
            "text": "This is an example.",
        }),
        Field::Mentions => mention_value("17887498072083520", Some("17887498072083521")),
        Field::Messages
        | Field::MessageReactions
        | Field::MessagingPostbacks
        | Field::MessagingSeen => serde_json::json!({
            "sender": { "id": "12334" },
            "recipient": { "id": "23245" },
            "timestamp": "1527459824",
            "message": { "mid": "random_mid", "text": "random_text" },
        }),
        Field::StoryInsights => serde_json::json!({
            "media_id": "17887498072083520",
            "impressions": 444, "reach": 44, "taps_forward": 4, "taps_back": 3,
            "exits": 3, "replies": 0,
        }),
    };
    #[allow(clippy::expect_used)]
    notification(
        &ScopedUserId::parse("0").expect("digits"),
        time,
        field,
        &value,
    )
}

/// A verify token of the kind the dashboard suggests.
pub fn suggest_verify_token(entropy: &dyn Entropy) -> String {
    random_alnum(entropy, 24)
}

/// Judges a delivery's answer: any 2xx acknowledges it (Meta retries anything else).
pub fn judge_answer(status: u16) -> Result<String, String> {
    if (200..300).contains(&status) {
        Ok(format!("HTTP {status}"))
    } else {
        Err(format!("the endpoint answered HTTP {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    #[test]
    fn fields_parse_as_a_list_or_json_and_refuse_unknown_names() {
        let f = Fields::parse("fields", "mentions, comments,comments").unwrap();
        assert_eq!(f.names(), ["comments", "mentions"]);
        assert_eq!(
            Fields::parse("fields", r#"["live_comments"]"#)
                .unwrap()
                .names(),
            ["live_comments"]
        );
        let e = Fields::parse("subscribed_fields", "comments,likes").unwrap_err();
        assert_eq!(e.code, 100);
        assert!(
            e.message
                .starts_with("(#100) Param subscribed_fields[1] must be one of {comments, "),
            "{}",
            e.message
        );
        assert!(Fields::parse("fields", "").is_err());
        assert_eq!(
            Fields::from_stored("mentions,zzz,comments").to_stored(),
            "comments,mentions"
        );
        let a = Fields::parse("f", "comments,mentions").unwrap();
        let b = Fields::parse("f", "mentions,messages").unwrap();
        assert_eq!(a.union(&b).to_stored(), "comments,mentions,messages");
        assert_eq!(a.without(&b).to_stored(), "comments");
    }

    #[test]
    fn each_field_needs_its_permission() {
        let f = Fields::parse("f", "comments,messages").unwrap();
        let granted =
            ScopeSet::parse("instagram_business_basic,instagram_business_manage_comments").unwrap();
        assert_eq!(f.missing_permission(&granted), Some(Field::Messages));
        let e = missing_permission_error(Field::Messages);
        assert_eq!(e.code, 200);
        assert_eq!(
            e.message,
            "(#200) To subscribe to the messages field, one of these permissions is needed: instagram_business_manage_messages"
        );
    }

    #[test]
    fn the_signature_matches_an_independent_computation() {
        // printf '%s' '{"object":"instagram"}' | openssl dgst -sha256 -hmac 'app-secret'
        assert_eq!(
            signature("app-secret", br#"{"object":"instagram"}"#),
            "sha256=f9f60d2fd6f1498ad1636cf26d6916018f8c80c0a4ac67169c9499d510ee1762"
        );
    }

    #[test]
    fn verification_needs_status_200_and_the_challenge() {
        assert!(judge_verification(200, "1234\n", "1234", "OK").is_ok());
        let e = judge_verification(404, "", "1234", "Not Found").unwrap_err();
        assert_eq!(e.code, 2200);
        assert_eq!(
            e.message,
            "(#2200) Callback verification failed with the following errors: HTTP Status Code = 404; HTTP Message = Not Found"
        );
        let e = judge_verification(200, "hello", "1234", "OK").unwrap_err();
        assert!(
            e.message
                .contains("expected value=\"1234\", received=\"hello\"")
        );
        let c = new_challenge(&SeededEntropy::new(1));
        assert_eq!(c.len(), 10);
        assert!(c.bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn mentions_are_found_as_instagram_reads_them() {
        assert_eq!(
            mentions("hi @Alice and @bob_1. also @alice, mail a@b.c, @. @x..y"),
            ["alice", "bob_1"]
        );
        assert_eq!(mentions("(@carol)"), ["carol"]);
        assert!(mentions("no one").is_empty());
    }

    #[test]
    fn payloads_have_instagrams_shape() {
        let account = ScopedUserId::parse("17841400000000001").unwrap();
        let from = ScopedUserId::parse("17841400000000002").unwrap();
        let value = CommentEvent {
            comment_id: "17890000000000001",
            text: "nice",
            from_id: &from,
            from_username: "bob",
            media_id: "17900000000000001",
            media_product_type: "FEED",
            parent_id: None,
        }
        .value();
        let body: serde_json::Value = serde_json::from_str(&notification(
            &account,
            1_700_000_000,
            Field::Comments,
            &value,
        ))
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"object":"instagram","entry":[{"id":"17841400000000001","time":1_700_000_000,
              "changes":[{"field":"comments","value":{"from":{"id":"17841400000000002","username":"bob"},
              "media":{"id":"17900000000000001","media_product_type":"FEED"},"id":"17890000000000001","text":"nice"}}]}]})
        );
        assert_eq!(
            mention_value("1", Some("2")),
            serde_json::json!({"media_id":"1","comment_id":"2"})
        );
        let app = AppId::parse("1234567890123456").unwrap();
        let a = outsider_id(&app, UserId(7));
        assert_eq!(a, outsider_id(&app, UserId(7)));
        assert_ne!(a, outsider_id(&app, UserId(8)));
        assert_eq!(a.as_str().len(), 17);
        assert!(a.as_str().starts_with("1784"));
    }
}
