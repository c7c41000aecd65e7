//! Token and code formats: the shape check, `APP_ID|APP_SECRET`, PKCE challenges, the mint
//! order, the stored key and the stored kinds never panic; what passes the shape check is
//! ASCII of bounded length, and a token with a mint order is stored under it.
#![no_main]
use gramkey_domain::code::CodeChallenge;
use gramkey_domain::token::{MintOrder, plausible_token, split_app_credentials};
use gramkey_domain::{AccessToken, Flavour, TokenHash, TokenKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if plausible_token(raw) {
        assert!(raw.is_ascii() && (16..=512).contains(&raw.len()));
    }
    if let Some((app, _)) = split_app_credentials(raw) {
        assert!(raw.starts_with(app.as_str()));
    }
    let key = TokenHash::of_token(&AccessToken::new(raw));
    if let Some(order) = MintOrder::of(raw) {
        assert_eq!(key.0[..8], order.key_prefix());
    }
    let _ = TokenKind::parse(raw);
    let _ = Flavour::parse(raw);
    let (challenge, verifier) = raw.split_once(' ').unwrap_or((raw, raw));
    if let Ok(Some(c)) = CodeChallenge::parse(Some(challenge), Some("S256")) {
        let _ = c.verify(verifier);
    }
});
