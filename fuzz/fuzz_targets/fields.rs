//! The `fields` expression (`id,caption,children{media_url}`): parsing never panics, and what
//! parses renders back to an expression that parses to the same fields.
#![no_main]
use gramkey_domain::graph::fields::{parse, render};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(fields) = parse(raw) {
        let again = parse(&render(&fields)).expect("a rendered expression parses");
        assert_eq!(again, fields, "{raw:?}");
    }
});
