//! `signed_request` as an app verifies it (the SDK): never a panic on any input; only a
//! request signed with the secret verifies.
#![no_main]
use gramkey_client::signed_request::SignedRequest;
use gramkey_domain::callback::signed_request;
use gramkey_domain::{ClientSecret, ScopedUserId};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let _ = SignedRequest::verify(raw, SECRET);
    // The same bytes as a user id the server signs for: verifies with the secret only.
    if let Some(user) = ScopedUserId::parse(raw) {
        let signed = signed_request(&ClientSecret::new(SECRET), &user, 1_800_000_000);
        assert!(SignedRequest::verify(&signed, "another secret").is_err());
    }
});
