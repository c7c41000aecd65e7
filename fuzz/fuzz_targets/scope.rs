//! `scope` strings: never a panic; a parsed set survives the stored form unchanged.
#![no_main]
use gramkey_domain::ScopeSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(set) = ScopeSet::parse(raw) {
        assert_eq!(ScopeSet::from_stored(&set.to_stored()), set);
        let _ = set.request_family();
        let _ = set.permissions();
    }
});
