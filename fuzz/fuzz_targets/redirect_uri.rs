//! Redirect URIs: parsing and matching never panic; a registered URI matches itself, and a
//! presented URI with a control character never matches (it would reach `Location`).
#![no_main]
use gramkey_domain::RedirectUri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let (registered, presented) = raw.split_once('\u{0}').unwrap_or((raw, raw));
    if let Ok(r) = RedirectUri::parse(registered) {
        assert!(r.matches(r.as_str()));
        if presented.chars().any(char::is_control) {
            assert!(!r.matches(presented));
        }
    }
});
