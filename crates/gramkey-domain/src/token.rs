//! Access tokens: kinds, flavours, lifetimes, formats, and whether one may be used now.

use crate::entropy::{Entropy, random_alnum, random_hex};
use crate::ids::ScopedUserId;
use crate::scope::{Family, Scope, ScopeSet};
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
    /// An RFC 6749 refresh token (apps that opt in).
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::ShortLived => "short_lived",
            TokenKind::LongLived => "long_lived",
            TokenKind::App => "app",
            TokenKind::Refresh => "refresh",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "short_lived" => Some(TokenKind::ShortLived),
            "long_lived" => Some(TokenKind::LongLived),
            "app" => Some(TokenKind::App),
            "refresh" => Some(TokenKind::Refresh),
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
    /// Display, `IGAA…` for Instagram Login (154 characters: the [`MintOrder`], then 140
    /// random letters and digits, ~830 bits), and `{user_id}.{7 hex}.{32 hex}` for legacy v1
    /// (156 bits).
    pub fn generate_token(
        self,
        user: &ScopedUserId,
        entropy: &dyn Entropy,
        order: MintOrder,
    ) -> AccessToken {
        self.format_token(user, &TokenMaterial::draw(entropy, order))
    }

    /// The token `material` makes in this flavour's format, for `user`.
    pub fn format_token(self, user: &ScopedUserId, material: &TokenMaterial) -> AccessToken {
        let m = material;
        AccessToken::new(match self {
            Flavour::BasicDisplay => m.order.token("IGQV", &m.alnum),
            Flavour::InstagramLogin => m.order.token("IGAA", &m.alnum),
            Flavour::Legacy => format!("{user}.{}.{}", m.hex7, m.hex32),
        })
    }
}

/// The randomness of a user token, drawn before its flavour and user are known: a code's are
/// read inside the store's redemption, which formats the token there
/// ([`Flavour::format_token`]), so a code exchange needs no read before its write.
#[derive(Clone)]
pub struct TokenMaterial {
    order: MintOrder,
    alnum: String,
    hex7: String,
    hex32: String,
}

impl TokenMaterial {
    pub fn draw(entropy: &dyn Entropy, order: MintOrder) -> Self {
        Self {
            order,
            alnum: random_alnum(entropy, 140),
            hex7: random_hex(entropy, 7),
            hex32: random_hex(entropy, 32),
        }
    }
}

impl std::fmt::Debug for TokenMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenMaterial([redacted])")
    }
}

/// An RFC 6749 refresh token lives 90 days from its issue; each use rotates it.
pub const REFRESH_TOKEN_SECS: i64 = 90 * 24 * 3600;

/// By default, a rotated refresh token may be presented again this long after its first use
/// (clients that refresh in parallel); later reuse revokes the whole grant (RFC 9700 §4.14.2).
pub const REFRESH_REUSE_GRACE_SECS: i64 = 10;

/// A new refresh token: `IGRT`, the [`MintOrder`], and 140 letters and digits.
pub fn generate_refresh_token(entropy: &dyn Entropy, order: MintOrder) -> AccessToken {
    AccessToken::new(order.token("IGRT", &random_alnum(entropy, 140)))
}

/// When a token was minted, in microseconds since the Unix epoch, written into the token.
///
/// `IGQV…`, `IGAA…` and `IGRT…` tokens carry it after their four letters as ten base-62
/// digits, and their stored key begins with it ([`crate::TokenHash::of_token`]). Tokens minted
/// one after another then sit side by side in the token index, so an insert dirties the index
/// page the one before it did, not a random page of a table of millions (each one a page
/// written to the log at commit: BENCHMARKS.md, code exchange). Whoever holds a token can read
/// when the node minted it, to the microsecond, by the node's own clock (an app's test clock
/// does not move it); nothing else about the token or the node shows. Legacy v1 and app
/// tokens keep Instagram's own shapes and a plain hash.
///
/// A node of a release before this one looks such a token up under its plain SHA-256 and
/// does not find it: upgrade every node before the first one mints (docs/deployment.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MintOrder(u64);

/// Base-62 digits of a [`MintOrder`]: enough for microseconds until the year 28,000.
const ORDER_DIGITS: usize = 10;
/// The length of a token that carries a [`MintOrder`]: four letters, the order, 140 more.
const ORDERED_LEN: usize = 4 + ORDER_DIGITS + 140;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl MintOrder {
    /// The order of a token minted at `micros` since the epoch (the node's clock,
    /// [`crate::Clock::now_micros`]); times outside what ten digits hold are clamped.
    pub fn at_micros(micros: i64) -> Self {
        let max = 62u64.pow(ORDER_DIGITS as u32) - 1;
        Self(u64::try_from(micros).unwrap_or(0).min(max))
    }

    /// The order of a token minted now, by `clock`.
    pub fn now(clock: &dyn crate::Clock) -> Self {
        Self::at_micros(clock.now_micros())
    }

    /// The order a token carries, if it has the shape of one that does. Tokens minted before
    /// the order existed are 144 characters long and have none.
    pub fn of(token: &str) -> Option<Self> {
        let b = token.as_bytes();
        if b.len() != ORDERED_LEN || !matches!(&b[..4], b"IGQV" | b"IGAA" | b"IGRT") {
            return None;
        }
        b[4..4 + ORDER_DIGITS]
            .iter()
            .try_fold(0u64, |n, &c| {
                // BASE62's digits, by arithmetic: every authenticated call reads them.
                let digit = match c {
                    b'0'..=b'9' => c - b'0',
                    b'A'..=b'Z' => c - b'A' + 10,
                    b'a'..=b'z' => c - b'a' + 36,
                    _ => return None,
                };
                Some(n * 62 + u64::from(digit))
            })
            .map(Self)
    }

    /// The eight bytes the token's stored key begins with: big-endian, so keys sort as the
    /// orders do.
    pub fn key_prefix(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    fn token(self, letters: &str, random: &str) -> String {
        let mut digits = [b'0'; ORDER_DIGITS];
        let mut n = self.0;
        for d in digits.iter_mut().rev() {
            *d = BASE62[(n % 62) as usize];
            n /= 62;
        }
        let mut out = String::with_capacity(ORDERED_LEN);
        out.push_str(letters);
        out.extend(digits.iter().map(|&d| char::from(d)));
        out.push_str(random);
        out
    }
}

/// App tokens do not expire.
pub const NEVER: UnixTime = i64::MAX;

/// A new app token, `APP_ID|…`, the shape Meta's app tokens have (32 random letters and digits
/// after the bar, ~190 bits).
pub fn generate_app_token(app: &crate::AppId, entropy: &dyn Entropy) -> AccessToken {
    AccessToken::new(format!("{app}|{}", random_alnum(entropy, 32)))
}

/// Splits the `APP_ID|APP_SECRET` form Graph accepts as an app token. The caller must still
/// check the secret; an issued app token has the same shape and is tried first.
pub fn split_app_credentials(raw: &str) -> Option<(crate::AppId, crate::ClientSecret)> {
    let (id, secret) = raw.split_once('|')?;
    Some((crate::AppId::parse(id)?, crate::ClientSecret::new(secret)))
}

/// Cheap shape check before any lookup: a token this long or with these bytes cannot be ours,
/// and never reaches the database.
pub fn plausible_token(raw: &str) -> bool {
    // Every byte is looked at, without an early exit, so the loop runs 16 bytes at a time:
    // every authenticated call checks each byte of its token (about 150 of them).
    (16..=512).contains(&raw.len()) && raw.bytes().fold(true, |ok, b| ok & token_byte(b))
}

/// ASCII letters and digits, `.`, `-`, `_` and `|`: comparisons only, which vectorize.
fn token_byte(c: u8) -> bool {
    // Setting bit 5 maps `A..=Z` onto `a..=z`, and nothing else onto them.
    ((c | 0x20).wrapping_sub(b'a') < 26)
        | (c.wrapping_sub(b'0') < 10)
        | (c == b'.')
        | (c == b'-')
        | (c == b'_')
        | (c == b'|')
}

/// The facts about a stored token that decide whether it may be used.
#[derive(Debug, Clone, Copy)]
pub struct TokenState {
    pub expires_at: UnixTime,
    pub revoked: Option<RevokeReason>,
}

/// Why a token may not be used, exchanged or refreshed. Each wire flavour renders these its own
/// way (`From<TokenRefusal> for GraphError`); introspection only asks whether there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// No token on a call that needs one.
    Missing,
    /// Malformed or unknown.
    Invalid,
    Expired {
        expired_at: UnixTime,
        now: UnixTime,
    },
    Revoked(RevokeReason),
    /// A short-lived token already exchanged for a long-lived one.
    AlreadyExchanged,
    /// `ig_exchange_token` was given something other than a short-lived token.
    NotShortLived,
    /// Legacy v1 tokens have no long-lived form.
    LegacyNotExchangeable,
    /// `ig_refresh_token` was given something other than a long-lived token.
    NotLongLived,
    /// A long-lived token younger than [`REFRESH_MIN_AGE_SECS`].
    TooYoungToRefresh,
    /// Refreshing needs the basic profile permission (wire protocol §3).
    NoBasicPermission,
}

/// May this token be used at `now`? Revocation wins over expiry, so a client learns the
/// reason it must re-authorize.
pub fn check_usable(state: TokenState, now: UnixTime) -> Result<(), TokenRefusal> {
    if let Some(reason) = state.revoked {
        return Err(TokenRefusal::Revoked(reason));
    }
    if now >= state.expires_at {
        return Err(TokenRefusal::Expired {
            expired_at: state.expires_at,
            now,
        });
    }
    Ok(())
}

/// A long-lived token may be refreshed once it is this old (wire protocol §3).
pub const REFRESH_MIN_AGE_SECS: i64 = 24 * 3600;

/// After a refresh, the token that was refreshed stays valid this long (or until its own
/// expiry, if sooner), so a client that refreshed twice at once, or crashed before saving the
/// new token, is never left holding nothing. Then it lapses, so refreshing does not pile up
/// valid tokens.
pub const REFRESH_GRACE_SECS: i64 = 300;

/// What the lifecycle rules need to know about a token.
#[derive(Debug, Clone, Copy)]
pub struct LifecycleFacts<'a> {
    pub kind: TokenKind,
    pub flavour: Flavour,
    pub scopes: &'a ScopeSet,
    pub issued_at: UnixTime,
    pub state: TokenState,
    /// Already exchanged for a long-lived token.
    pub exchanged: bool,
}

/// May this token be exchanged for a long-lived one (`grant_type=ig_exchange_token`)? Only an
/// unexpired, unrevoked short-lived Basic Display or Instagram Login token, and only once.
pub fn check_exchange(t: &LifecycleFacts<'_>, now: UnixTime) -> Result<(), TokenRefusal> {
    check_usable(t.state, now)?;
    if t.kind != TokenKind::ShortLived {
        return Err(TokenRefusal::NotShortLived);
    }
    if t.flavour == Flavour::Legacy {
        return Err(TokenRefusal::LegacyNotExchangeable);
    }
    if t.exchanged {
        return Err(TokenRefusal::AlreadyExchanged);
    }
    Ok(())
}

/// May this token be refreshed (`grant_type=ig_refresh_token`)? A long-lived token, at least
/// 24 hours old, unexpired, whose user granted the basic profile permission (wire protocol §3).
pub fn check_refresh(t: &LifecycleFacts<'_>, now: UnixTime) -> Result<(), TokenRefusal> {
    check_usable(t.state, now)?;
    if t.kind != TokenKind::LongLived {
        return Err(TokenRefusal::NotLongLived);
    }
    if now < t.issued_at + REFRESH_MIN_AGE_SECS {
        return Err(TokenRefusal::TooYoungToRefresh);
    }
    let basic = [Scope::UserProfile, Scope::BusinessBasic, Scope::Basic];
    if !basic.iter().any(|s| t.scopes.contains(*s)) {
        return Err(TokenRefusal::NoBasicPermission);
    }
    Ok(())
}

/// Why a token was revoked, and the 190 subcode that tells a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// Its authorization code was redeemed a second time (RFC 6749 §4.1.2).
    CodeReplay,
    /// The user changed their password (subcode 460).
    PasswordChanged,
    /// The user removed the app (subcode 458).
    AppRemoved,
    /// Revoked by the app or an administrator.
    Revoked,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::CodeReplay => "code_replay",
            RevokeReason::PasswordChanged => "password_changed",
            RevokeReason::AppRemoved => "app_removed",
            RevokeReason::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "code_replay" => RevokeReason::CodeReplay,
            "password_changed" => RevokeReason::PasswordChanged,
            "app_removed" => RevokeReason::AppRemoved,
            _ => RevokeReason::Revoked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    fn facts(kind: TokenKind, scopes: &ScopeSet, issued_at: UnixTime) -> LifecycleFacts<'_> {
        LifecycleFacts {
            kind,
            flavour: Flavour::BasicDisplay,
            scopes,
            issued_at,
            state: TokenState {
                expires_at: issued_at + LONG_LIVED_SECS,
                revoked: None,
            },
            exchanged: false,
        }
    }

    #[test]
    fn exchange_rules() {
        let scopes = ScopeSet::parse("user_profile").unwrap();
        let short = facts(TokenKind::ShortLived, &scopes, 0);
        assert!(check_exchange(&short, 10).is_ok());
        assert_eq!(
            check_exchange(
                &LifecycleFacts {
                    exchanged: true,
                    ..short
                },
                10
            ),
            Err(TokenRefusal::AlreadyExchanged)
        );
        assert_eq!(
            check_exchange(&facts(TokenKind::LongLived, &scopes, 0), 10),
            Err(TokenRefusal::NotShortLived)
        );
        let legacy = LifecycleFacts {
            flavour: Flavour::Legacy,
            ..short
        };
        assert_eq!(
            check_exchange(&legacy, 10),
            Err(TokenRefusal::LegacyNotExchangeable)
        );
        let expired = LifecycleFacts {
            state: TokenState {
                expires_at: 5,
                revoked: None,
            },
            ..short
        };
        assert_eq!(
            check_exchange(&expired, 10),
            Err(TokenRefusal::Expired {
                expired_at: 5,
                now: 10
            })
        );
    }

    #[test]
    fn refresh_rules() {
        let scopes = ScopeSet::parse("user_profile,user_media").unwrap();
        let long = facts(TokenKind::LongLived, &scopes, 1000);
        assert_eq!(
            check_refresh(&long, 1000 + REFRESH_MIN_AGE_SECS - 1),
            Err(TokenRefusal::TooYoungToRefresh)
        );
        assert!(check_refresh(&long, 1000 + REFRESH_MIN_AGE_SECS).is_ok());
        assert_eq!(
            check_refresh(&long, 1000 + LONG_LIVED_SECS),
            Err(TokenRefusal::Expired {
                expired_at: 1000 + LONG_LIVED_SECS,
                now: 1000 + LONG_LIVED_SECS
            })
        );
        assert_eq!(
            check_refresh(
                &facts(TokenKind::ShortLived, &scopes, 0),
                REFRESH_MIN_AGE_SECS
            ),
            Err(TokenRefusal::NotLongLived)
        );
        let media_only = ScopeSet::parse("user_media").unwrap();
        let no_basic = facts(TokenKind::LongLived, &media_only, 0);
        assert_eq!(
            check_refresh(&no_basic, REFRESH_MIN_AGE_SECS),
            Err(TokenRefusal::NoBasicPermission)
        );
    }

    #[test]
    fn formats() {
        let e = SeededEntropy::new(9);
        let u = ScopedUserId::parse("17841400000000001").unwrap();
        let at = MintOrder::at_micros(1_764_000_000_123_456);
        let bd = Flavour::BasicDisplay.generate_token(&u, &e, at);
        assert!(bd.expose().starts_with("IGQV") && bd.expose().len() == 154);
        let il = Flavour::InstagramLogin.generate_token(&u, &e, at);
        assert!(il.expose().starts_with("IGAA"));
        let lg = Flavour::Legacy.generate_token(&u, &e, at);
        let parts: Vec<_> = lg.expose().split('.').collect();
        assert_eq!(parts[0], "17841400000000001");
        assert_eq!((parts[1].len(), parts[2].len()), (7, 32));
        assert!(plausible_token(bd.expose()) && plausible_token(lg.expose()));
        assert!(!plausible_token("short"));
        let app = crate::AppId::parse("1234567890123456").unwrap();
        let t = generate_app_token(&app, &e);
        assert!(plausible_token(t.expose()));
        let (id, rest) = split_app_credentials(t.expose()).unwrap();
        assert_eq!((id, rest.expose().len()), (app, 32));
        assert!(split_app_credentials("abc|def").is_none());
        assert!(!plausible_token("IGQV<script>alert(1)</script>"));
    }

    #[test]
    fn a_token_carries_the_order_it_was_minted_in() {
        let e = SeededEntropy::new(3);
        let u = ScopedUserId::parse("17841400000000001").unwrap();
        let orders = [0, 1, 61, 62, 1_764_000_000_123_456, 1_764_000_000_123_457];
        let mut keys = Vec::new();
        for micros in orders {
            let at = MintOrder::at_micros(micros);
            for token in [
                Flavour::BasicDisplay.generate_token(&u, &e, at),
                Flavour::InstagramLogin.generate_token(&u, &e, at),
                generate_refresh_token(&e, at),
            ] {
                assert_eq!(MintOrder::of(token.expose()), Some(at), "{token:?}");
                assert!(plausible_token(token.expose()));
            }
            keys.push(at.key_prefix());
        }
        assert!(keys.is_sorted(), "keys sort as the orders do");
        // Every digit, in the last place and in the first.
        for k in 0..62 {
            for micros in [k, k * 62i64.pow(9)] {
                let at = MintOrder::at_micros(micros);
                let token = generate_refresh_token(&e, at);
                assert_eq!(MintOrder::of(token.expose()), Some(at), "{micros}");
            }
        }
        // Out of range: clamped, never wrapped.
        assert_eq!(MintOrder::at_micros(-5), MintOrder::at_micros(0));
        assert_eq!(MintOrder::at_micros(i64::MAX), MintOrder(62u64.pow(10) - 1));
        let last = generate_refresh_token(&e, MintOrder::at_micros(i64::MAX));
        assert_eq!(&last.expose()[4..14], "zzzzzzzzzz");
        // Tokens without one: legacy v1, app tokens, and user tokens minted before it existed
        // (four letters and 140 random ones), or anything else of the wrong shape.
        let lg = Flavour::Legacy.generate_token(&u, &e, MintOrder::at_micros(7));
        let app = generate_app_token(&crate::AppId::parse("1234567890123456").unwrap(), &e);
        let before = format!("IGQV{}", random_alnum(&e, 140));
        let unlike = format!("IGXX{}", &before[4..]);
        let good = generate_refresh_token(&e, MintOrder::at_micros(7));
        let good = good.expose();
        let odd = format!("{}-{}", &good[..12], &good[13..]);
        let long = format!("{good}a");
        for t in [
            lg.expose(),
            app.expose(),
            &before,
            &unlike,
            &odd,
            &good[..153],
            &long,
        ] {
            assert_eq!(MintOrder::of(t), None, "{t}");
        }
    }

    #[test]
    fn a_token_holds_letters_digits_and_four_marks_only() {
        for b in 0..=u8::MAX {
            let raw: Vec<u8> = std::iter::repeat_n(b'a', 20).chain([b]).collect();
            let expected = b.is_ascii_alphanumeric() || b".-_|".contains(&b);
            let plausible = std::str::from_utf8(&raw).is_ok_and(plausible_token);
            assert_eq!(plausible, expected && b.is_ascii(), "byte {b:#04x}");
        }
        assert!(!plausible_token("aaaaaaaaaaaaaaaaaaaé"));
    }

    #[test]
    fn usable_until_expiry_unless_revoked() {
        let live = TokenState {
            expires_at: 1000,
            revoked: None,
        };
        assert!(check_usable(live, 999).is_ok());
        assert_eq!(
            check_usable(live, 1000),
            Err(TokenRefusal::Expired {
                expired_at: 1000,
                now: 1000
            })
        );
        let revoked = TokenState {
            expires_at: 1000,
            revoked: Some(RevokeReason::PasswordChanged),
        };
        assert_eq!(
            check_usable(revoked, 10),
            Err(TokenRefusal::Revoked(RevokeReason::PasswordChanged))
        );
        assert_eq!(
            check_usable(revoked, 5000),
            Err(TokenRefusal::Revoked(RevokeReason::PasswordChanged))
        );
    }
}
