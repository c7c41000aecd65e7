//! Identifiers. Instagram's are decimal strings: app ids of 15–16 digits, user and media ids of
//! 17. gramkey keeps its internal user key ([`UserId`]) apart from the id an app sees
//! ([`ScopedUserId`]): each app gets its own id for the same person, as on Instagram.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::entropy::{Entropy, random_digits};
use crate::time::UnixTime;

/// An app's client id: 16 decimal digits (1 to 20 when parsed).
///
/// Held inline rather than as a `String`: every resource call copies its app's id into its
/// budgets, its usage and its call log, and a copy here is 21 bytes, not an allocation. The
/// digits come first, padded with zeros, so the derived order is the strings' order.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AppId {
    digits: [u8; AppId::MAX_LEN],
    len: u8,
}

impl AppId {
    const MAX_LEN: usize = 20;

    pub fn generate(entropy: &dyn Entropy) -> Self {
        Self::parse(&random_digits(entropy, 16)).unwrap_or_else(|| unreachable!("16 digits"))
    }
    /// Parses a client id as presented by a client: 1 to 20 decimal digits.
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() || s.len() > Self::MAX_LEN || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut digits = [0; Self::MAX_LEN];
        digits[..s.len()].copy_from_slice(s.as_bytes());
        Some(Self {
            digits,
            len: s.len() as u8,
        })
    }
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.digits[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Display for AppId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hashed as three words rather than 21 bytes: an app's id is hashed several times per call
/// (its budgets, usage, alerts). The zero padding tells lengths apart, so the digits alone
/// decide equality.
impl std::hash::Hash for AppId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut head = [0; 16];
        let mut tail = [0; 4];
        head.copy_from_slice(&self.digits[..16]);
        tail.copy_from_slice(&self.digits[16..]);
        state.write_u128(u128::from_le_bytes(head));
        state.write_u32(u32::from_le_bytes(tail));
    }
}

impl std::fmt::Debug for AppId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AppId").field(&self.as_str()).finish()
    }
}

/// The internal key of a user account. Never shown to apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub i64);

/// The id an app sees for a user: 17 digits, unique to the (app, user) pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopedUserId(String);

impl ScopedUserId {
    /// Instagram user ids start `1784`; so do ours, so clients that sniff them are not surprised.
    pub fn generate(entropy: &dyn Entropy) -> Self {
        Self(format!("1784{}", random_digits(entropy, 13)))
    }
    pub fn parse(s: &str) -> Option<Self> {
        (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// As a JSON number, for the responses where Instagram sends `user_id` unquoted. 17 digits
    /// fit in an `i64`; the parse cannot fail for ids gramkey made.
    pub fn as_number(&self) -> i64 {
        self.0.parse().unwrap_or_default()
    }
}

impl std::fmt::Display for ScopedUserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object id as a client may send it: 1 to 20 decimal digits.
pub fn valid_id(id: &str) -> bool {
    (1..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

/// Graph object ids (media, comments, publishing containers): decimal strings of 1 to 20
/// digits, as Instagram's. One type each, so a comment's id cannot be passed where a media's
/// is expected; they share the parse and the shape.
macro_rules! graph_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// An id as a client sent it (a path segment, a parameter): 1 to 20 digits.
            pub fn parse(s: &str) -> Option<Self> {
                valid_id(s).then(|| Self(s.to_owned()))
            }
            /// An id as the store kept it: written by gramkey, so not checked again.
            pub fn stored(s: String) -> Self {
                Self(s)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// In JSON, as Instagram sends ids: a string.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

graph_id!(
    /// A media object's id.
    MediaId
);
graph_id!(
    /// A comment's id.
    CommentId
);
graph_id!(
    /// A publishing container's id.
    ContainerId
);

/// A media object's id: 17 digits that grow with time, like Instagram's: `17`, the creation
/// time in Unix seconds (10 digits), then 5 digits of a sequence this process keeps. Lists are
/// ordered by `(created_at, id)`, so media made within the same second come back newest first
/// too. The sequence starts at a random place in each process, so two nodes creating media in
/// the same second rarely draw the same id (the store refuses a duplicate).
pub fn generate_media_id(entropy: &dyn Entropy, created_at: UnixTime) -> MediaId {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    const SPAN: u64 = 100_000;
    if SEQUENCE.load(Ordering::Relaxed) == 0 {
        let start: u64 = random_digits(entropy, 5).parse().unwrap_or(1);
        let _ = SEQUENCE.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed) % SPAN;
    MediaId(format!(
        "17{:010}{n:05}",
        created_at.clamp(0, 9_999_999_999)
    ))
}

/// A comment's id: 17 digits.
pub fn generate_comment_id(entropy: &dyn Entropy) -> CommentId {
    CommentId(format!("1800{}", random_digits(entropy, 13)))
}

/// A publishing container's id: 17 digits.
pub fn generate_container_id(entropy: &dyn Entropy) -> ContainerId {
    ContainerId(format!("1792{}", random_digits(entropy, 13)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn media_ids_grow_with_time_and_within_a_second() {
        let e = crate::entropy::SeededEntropy::new(1);
        let a = super::generate_media_id(&e, 1_700_000_000)
            .as_str()
            .to_owned();
        let b = super::generate_media_id(&e, 1_700_000_000)
            .as_str()
            .to_owned();
        let c = super::generate_media_id(&e, 1_700_000_001)
            .as_str()
            .to_owned();
        assert_eq!(a.len(), 17);
        assert!(a.starts_with("171700000000"));
        // Sorted as lists are: by time, then id. The sequence may wrap once in 100,000.
        assert!(b > a || b.ends_with("00000"), "{a} {b}");
        assert!(c > b, "{b} {c}");
    }

    use super::*;
    use crate::entropy::SeededEntropy;

    #[test]
    fn generated_ids_have_instagram_shapes() {
        let e = SeededEntropy::new(3);
        let app = AppId::generate(&e);
        assert_eq!(app.as_str().len(), 16);
        let u = ScopedUserId::generate(&e);
        assert_eq!(u.as_str().len(), 17);
        assert!(u.as_str().starts_with("1784"));
        assert_eq!(u.as_number().to_string(), u.as_str());
    }

    #[test]
    fn parse_is_strict() {
        assert!(AppId::parse("123").is_some());
        assert!(AppId::parse("").is_none());
        assert!(AppId::parse("12a").is_none());
        assert!(AppId::parse(" 12").is_none());
        assert!(AppId::parse(&"1".repeat(21)).is_none());
        assert_eq!(
            AppId::parse(&"9".repeat(20)).map(|a| a.to_string()),
            Some("9".repeat(20))
        );
        // Ordered as the strings are: "10" < "9", "1" < "10".
        let ids = ["9", "10", "1", "0123"].map(|s| AppId::parse(s).unwrap());
        let mut sorted = ids.clone();
        sorted.sort();
        let strings: Vec<&str> = sorted.iter().map(AppId::as_str).collect();
        assert_eq!(strings, ["0123", "1", "10", "9"]);
        assert_eq!(format!("{:?}", ids[0]), r#"AppId("9")"#);
        assert!(MediaId::parse("17841400000000001").is_some());
        assert!(CommentId::parse("").is_none());
        assert!(ContainerId::parse("1792x").is_none());
        assert!(MediaId::parse(&"1".repeat(21)).is_none());
    }
}
