//! How secrets are stored: never as themselves.
//!
//! - Tokens and codes are high-entropy, so a plain SHA-256 is enough and keeps validation to one
//!   hash plus one indexed lookup ([`TokenHash`]).
//! - Client secrets are high-entropy too, but a leaked database should not let anyone test
//!   guesses offline, so they get a keyed hash (HMAC-SHA256 under the server key,
//!   [`SecretHasher`]), not a slow KDF that would make every token request cost milliseconds.
//! - Human passwords are low-entropy and get Argon2id ([`crate::password`]).
//!
//! One exception, forced by the wire protocol: callbacks are signed with the app secret itself
//! (HMAC-SHA256, [`crate::callback`]), so the server must be able to produce it. It is never
//! stored, not even encrypted: it is *derived*, `HMAC-SHA256(key, app_id ":" seed)` under its
//! own key from the master key, and only the random seed is stored. The database alone
//! reveals nothing; the database together with the master key yields the current secret.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::secret::{AccessToken, AuthCode, ClientSecret, ct_eq};
use crate::token::MintOrder;

/// SHA-256 of a token or code: the only form in which one is stored.
///
/// A token that carries its [`MintOrder`] is stored under that order's eight bytes followed
/// by the first 24 bytes of its SHA-256, so that tokens minted together are stored together
/// (see [`MintOrder`]); 192 bits of hash still stand in for the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of_token(token: &AccessToken) -> Self {
        let text = token.expose();
        let Self(digest) = Self::of(text);
        match MintOrder::of(text) {
            Some(order) => {
                let mut key = [0; 32];
                key[..8].copy_from_slice(&order.key_prefix());
                key[8..].copy_from_slice(&digest[..24]);
                Self(key)
            }
            None => Self(digest),
        }
    }
    pub fn of_code(code: &AuthCode) -> Self {
        Self::of(code.expose())
    }
    fn of(value: &str) -> Self {
        Self(Sha256::digest(value.as_bytes()).into())
    }
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A hash is not secret, but a few bytes are all anyone needs to correlate. The last
        // ones: an ordered token's key begins with its mint time, which many tokens share.
        write!(f, "TokenHash(..{})", hex::encode(&self.0[28..]))
    }
}

/// Keys derived from the server's master key, one per purpose.
#[derive(Clone)]
pub struct SecretHasher {
    client_secret_key: [u8; 32],
    derivation_key: [u8; 32],
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHasher([redacted])")
    }
}

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256(key, label): derives a purpose-bound key from the master key.
pub fn derive_key(master: &[u8], label: &str) -> [u8; 32] {
    #[allow(clippy::expect_used)]
    let mut mac = HmacSha256::new_from_slice(master).expect("HMAC accepts any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

impl SecretHasher {
    pub fn new(master_key: &[u8]) -> Self {
        Self {
            client_secret_key: derive_key(master_key, "gramkey client-secret v1"),
            derivation_key: derive_key(master_key, "gramkey client-secret derivation v1"),
        }
    }

    /// The client secret of `app_id` for this seed: 32 hex characters (128 bits), the shape
    /// Meta issues. See the module documentation for why secrets are derived.
    pub fn derive_client_secret(&self, app_id: &crate::AppId, seed: &[u8]) -> ClientSecret {
        #[allow(clippy::expect_used)]
        let mut mac = HmacSha256::new_from_slice(&self.derivation_key).expect("any key length");
        mac.update(app_id.as_str().as_bytes());
        mac.update(b":");
        mac.update(seed);
        ClientSecret::new(hex::encode(&mac.finalize().into_bytes()[..16]))
    }

    pub fn hash_client_secret(&self, secret: &ClientSecret) -> [u8; 32] {
        #[allow(clippy::expect_used)]
        let mut mac = HmacSha256::new_from_slice(&self.client_secret_key).expect("any key length");
        mac.update(secret.expose().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Checks a presented secret against the current hash and, after a rotation with a grace
    /// period, the previous one while `now` is before its end. Returns until when the presented
    /// secret stays valid: [`crate::token::NEVER`] for the current one, the grace's end for the
    /// previous one; `None` when it is neither.
    pub fn verify_client_secret_at(
        &self,
        presented: &ClientSecret,
        current: &[u8],
        previous: Option<(&[u8], crate::UnixTime)>,
        now: crate::UnixTime,
    ) -> Option<crate::UnixTime> {
        let hash = self.hash_client_secret(presented);
        // Both comparisons always run, so timing does not tell which secret matched.
        let current_ok = ct_eq(&hash, current);
        let previous_ok = previous.is_some_and(|(h, until)| ct_eq(&hash, h) & (now < until));
        if current_ok {
            Some(crate::token::NEVER)
        } else {
            previous.filter(|_| previous_ok).map(|(_, until)| until)
        }
    }

    /// Constant-time check of a presented secret against the stored hash.
    pub fn verify_client_secret(&self, presented: &ClientSecret, stored: &[u8]) -> bool {
        ct_eq(&self.hash_client_secret(presented), stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_secret_hash_is_keyed() {
        let a = SecretHasher::new(b"key-one");
        let b = SecretHasher::new(b"key-two");
        let s = ClientSecret::new("0123456789abcdef0123456789abcdef");
        assert_ne!(a.hash_client_secret(&s), b.hash_client_secret(&s));
        let stored = a.hash_client_secret(&s);
        assert!(a.verify_client_secret(&s, &stored));
        assert!(!a.verify_client_secret(&ClientSecret::new("other"), &stored));
        assert!(!b.verify_client_secret(&s, &stored));
    }

    #[test]
    fn derived_secrets_depend_on_key_app_and_seed() {
        let (a, b) = (SecretHasher::new(b"key-one"), SecretHasher::new(b"key-two"));
        let app = crate::AppId::parse("1234567890123456").unwrap();
        let other = crate::AppId::parse("6543210987654321").unwrap();
        let s = a.derive_client_secret(&app, b"seed");
        assert_eq!(s.expose().len(), 32);
        assert!(s.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(s, a.derive_client_secret(&app, b"seed"));
        assert_ne!(s, a.derive_client_secret(&app, b"seed2"));
        assert_ne!(s, a.derive_client_secret(&other, b"seed"));
        assert_ne!(s, b.derive_client_secret(&app, b"seed"));
    }

    #[test]
    fn previous_secret_works_until_the_grace_ends() {
        let h = SecretHasher::new(b"k");
        let (old, new) = (ClientSecret::new("old"), ClientSecret::new("new"));
        let (old_h, new_h) = (h.hash_client_secret(&old), h.hash_client_secret(&new));
        let prev = Some((&old_h[..], 100));
        let never = Some(crate::token::NEVER);
        assert_eq!(h.verify_client_secret_at(&new, &new_h, prev, 99), never);
        assert_eq!(h.verify_client_secret_at(&old, &new_h, prev, 99), Some(100));
        assert_eq!(h.verify_client_secret_at(&old, &new_h, prev, 100), None);
        assert_eq!(h.verify_client_secret_at(&old, &new_h, None, 0), None);
    }

    #[test]
    fn token_hash_is_sha256() {
        let h = TokenHash::of_token(&AccessToken::new("abc"));
        assert_eq!(
            hex::encode(h.0),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(!format!("{h:?}").contains("ba7816bf8f01cfea4141"));
        assert_eq!(format!("{h:?}"), "TokenHash(..f20015ad)");
    }

    #[test]
    fn an_ordered_token_is_stored_under_its_order_then_its_hash() {
        let e = crate::entropy::SeededEntropy::new(1);
        let at = |us| MintOrder::at_micros(us);
        let token = crate::token::generate_refresh_token(&e, at(1_000_000));
        let key = TokenHash::of_token(&token).0;
        let digest: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
        assert_eq!(key[..8], 1_000_000u64.to_be_bytes());
        assert_eq!(key[8..], digest[..24]);
        // Minted later, stored after, whatever the random part.
        let later = crate::token::generate_refresh_token(&e, at(1_000_001));
        assert!(TokenHash::of_token(&later).0 > key);
        // One character changed: another key.
        let mut forged = token.expose().to_owned();
        forged.replace_range(20..21, if &forged[20..21] == "a" { "b" } else { "a" });
        assert_ne!(TokenHash::of_token(&AccessToken::new(forged)).0, key);
    }
}
