//! Legacy v1's `sig` check over any parameters: never a panic, and never passes without a `sig`.
#![no_main]
use gramkey_domain::ClientSecret;
use gramkey_domain::graph::legacy::check_signature;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let (endpoint, query) = raw.split_once('?').unwrap_or(("/users/self", raw));
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let signed = check_signature(&ClientSecret::new("secret"), endpoint, &params).is_ok();
    if signed {
        assert!(params.iter().any(|(k, _)| k == "sig"));
    }
});
