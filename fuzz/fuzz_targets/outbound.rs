//! The SSRF policy on any URL: what passes with private destinations refused has no userinfo,
//! an http(s) scheme, and no literal address that is not public.
#![no_main]
use gramkey_domain::outbound::{check_url, is_public};
use libfuzzer_sys::fuzz_target;
use url::{Host, Url};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(url) = Url::parse(raw) else {
        return;
    };
    if check_url(&url, false).is_ok() {
        assert!(matches!(url.scheme(), "http" | "https"));
        assert!(url.username().is_empty() && url.password().is_none());
        match url.host() {
            Some(Host::Ipv4(ip)) => assert!(is_public(ip.into()), "{url}"),
            Some(Host::Ipv6(ip)) => assert!(is_public(ip.into()), "{url}"),
            Some(Host::Domain(d)) => assert!(!d.eq_ignore_ascii_case("localhost")),
            None => panic!("no host: {url}"),
        }
    }
});
