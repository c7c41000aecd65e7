//! Access tokens: kinds, flavours, lifetimes, formats, and whether one may be used now.

use crate::entropy::{Entropy, random_alnum, random_hex};
use crate::error::{GraphError, RevokeReason};
use crate::ids::ScopedUserId;
use crate::scope::Family;
use crate::secret::AccessToken;
use crate::time::UnixTime;

/// A short-lived user token lives one hour (wire protocol §2).
pub const SHORT_LIVED_SECS: i64 = 3600;
/// A long-lived token lives 60 days (wire protocol §3).
pub const LONG_LIVED_SECS: i64 = 60 * 24 * 3600;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    ShortLived,
    LongLived,
    App,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::ShortLived => "short_lived",
            TokenKind::LongLived => "long_lived",
            TokenKind::App => "app",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "short_lived" => Some(TokenKind::ShortLived),
            "long_lived" => Some(TokenKind::LongLived),
            "app" => Some(TokenKind::App),
            _ => None,
        }
    }
}

/// Which Instagram API a token belongs to; it follows from the family of the granted scopes and
/// decides the token's format and the shape of the code-exchange response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    BasicDisplay,
    InstagramLogin,
    Legacy,
}

impl Flavour {
    pub fn of(family: Family) -> Self {
        match family {
            Family::BasicDisplay => Flavour::BasicDisplay,
            Family::InstagramLogin => Flavour::InstagramLogin,
            Family::Legacy => Flavour::Legacy,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::BasicDisplay => "basic_display",
            Flavour::InstagramLogin => "instagram_login",
            Flavour::Legacy => "legacy",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "basic_display" => Some(Flavour::BasicDisplay),
            "instagram_login" => Some(Flavour::InstagramLogin),
            "legacy" => Some(Flavour::Legacy),
            _ => None,
        }
    }

    /// A new opaque token in this flavour's format (wire protocol §10): `IGQV…` for Basic
    /// Display, `IGAA…` for Instagram Login (144 characters, ~830 bits of randomness), and
    /// `{user_id}.{7 hex}.{32 hex}` for legacy v1 (156 bits).
    pub fn generate_token(self, user: &ScopedUserId, entropy: &dyn Entropy) -> AccessToken {
        AccessToken::new(match self {
            Flavour::BasicDisplay => format!("IGQV{}", random_alnum(entropy, 140)),
            Flavour::InstagramLogin => format!("IGAA{}", random_alnum(entropy, 140)),
            Flavour::Legacy => {
                format!(
                    "{}.{}.{}",
                    user,
                    random_hex(entropy, 7),
                    random_hex(entropy, 32)
                )
            }
        })
    }
}

/// Cheap shape check before any lookup: a token this long or with these bytes cannot be ours,
/// and never reaches the database.
pub fn plausible_token(raw: &str) -> bool {
    (16..=512).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

/// The facts about a stored token that decide whether it may be used.
#[derive(Debug, Clone, Copy)]
pub struct TokenState {
    pub expires_at: UnixTime,
    pub revoked: Option<RevokeReason>,
}

/// May this token be used at `now`? Revocation wins over expiry, so a client learns the
/// reason it must re-authorize.
pub fn check_usable(state: TokenState, now: UnixTime) -> Result<(), GraphError> {
    if let Some(reason) = state.revoked {
        return Err(GraphError::revoked(reason));
    }
    if now >= state.expires_at {
        return Err(GraphError::expired(state.expires_at, now));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    #[test]
    fn formats() {
        let e = SeededEntropy::new(9);
        let u = ScopedUserId::parse("17841400000000001").unwrap();
        let bd = Flavour::BasicDisplay.generate_token(&u, &e);
        assert!(bd.expose().starts_with("IGQV") && bd.expose().len() == 144);
        let il = Flavour::InstagramLogin.generate_token(&u, &e);
        assert!(il.expose().starts_with("IGAA"));
        let lg = Flavour::Legacy.generate_token(&u, &e);
        let parts: Vec<_> = lg.expose().split('.').collect();
        assert_eq!(parts[0], "17841400000000001");
        assert_eq!((parts[1].len(), parts[2].len()), (7, 32));
        assert!(plausible_token(bd.expose()) && plausible_token(lg.expose()));
        assert!(!plausible_token("short"));
        assert!(!plausible_token("IGQV<script>alert(1)</script>"));
    }

    #[test]
    fn usable_until_expiry_unless_revoked() {
        let live = TokenState {
            expires_at: 1000,
            revoked: None,
        };
        assert!(check_usable(live, 999).is_ok());
        assert_eq!(check_usable(live, 1000).unwrap_err().subcode, Some(463));
        let revoked = TokenState {
            expires_at: 1000,
            revoked: Some(RevokeReason::PasswordChanged),
        };
        assert_eq!(check_usable(revoked, 10).unwrap_err().subcode, Some(460));
        assert_eq!(check_usable(revoked, 5000).unwrap_err().subcode, Some(460));
    }
}
