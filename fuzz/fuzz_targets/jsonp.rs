//! The JSONP callback name: what is accepted can only name a function (no quotes, brackets,
//! parentheses or spaces that would let a caller inject script).
#![no_main]
use gramkey_domain::graph::legacy::valid_callback;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if valid_callback(raw) {
        assert!(!raw.is_empty());
        assert!(
            raw.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '.')),
            "{raw:?}"
        );
    }
});
