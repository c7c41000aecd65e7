//! Where the server may send its own requests (media fetches, callbacks, alert webhooks): the
//! SSRF policy.
//!
//! A URL an app or a user gives the server must not make it reach what only the server can
//! reach: loopback, the cloud metadata address, private networks. The rule is applied twice by
//! the server's one outbound guard:
//! - to the URL itself ([`check_url`]): scheme, no userinfo, and a host written as an address
//!   (in any spelling the URL standard accepts: `127.1`, `2130706433`, `0x7f.0.0.1`,
//!   `[::ffff:127.0.0.1]`) must be public;
//! - to every address a host name resolves to ([`is_public`]), at connection time and for
//!   every redirect, so a name that resolves to a private address (DNS rebinding) cannot pass.
//!
//! The operator can let private destinations through (`--fetch-allow-private`) for a sandbox
//! whose media and callbacks live on the same machine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why a destination is refused. The text is for logs and for the operator, not for the app
/// whose URL it was: what an app sees must not tell one refusal from another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundRefusal {
    #[error("only http and https URLs are fetched, not {0}")]
    Scheme(String),
    #[error("URLs with a user name or password are refused")]
    Userinfo,
    #[error("the URL has no host")]
    NoHost,
    #[error("{0} is not a public address")]
    NotPublic(IpAddr),
    #[error("{0} names this machine")]
    Localhost(String),
}

/// Whether `url` may be requested: http(s), no userinfo, and a literal address host that is
/// public (names are judged by what they resolve to, at connection time).
pub fn check_url(url: &Url, allow_private: bool) -> Result<(), OutboundRefusal> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OutboundRefusal::Scheme(url.scheme().to_owned()));
    }
    // Credentials in a URL would be sent as `Authorization: Basic` to wherever it points.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OutboundRefusal::Userinfo);
    }
    if allow_private {
        return Ok(());
    }
    match url.host() {
        None => Err(OutboundRefusal::NoHost),
        Some(Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip)),
        Some(Host::Domain(name)) => {
            // Resolvers answer these from /etc/hosts or by rule (RFC 6761 §6.3), whatever DNS
            // says; refusing the name gives a clearer reason than refusing its address.
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                Err(OutboundRefusal::Localhost(name))
            } else {
                Ok(())
            }
        }
    }
}

/// `Ok` for a public address, else why not.
pub fn check_ip(ip: IpAddr) -> Result<(), OutboundRefusal> {
    if is_public(ip) {
        Ok(())
    } else {
        Err(OutboundRefusal::NotPublic(ip))
    }
}

/// Whether `ip` is a globally reachable unicast address: not loopback, unspecified, private,
/// shared (CGNAT), link-local (which holds `169.254.169.254`), documentation, benchmarking,
/// multicast, broadcast or reserved (the IANA special-purpose registries, RFC 6890). IPv6
/// addresses that carry an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by it.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network", 0.0.0.0 included
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // IPv4-compatible (deprecated, ::a.b.c.d), `::` and `::1` included.
    if s[..6] == [0; 6] {
        return s[6] != 0 && is_public_v4(embedded_v4(s[6], s[7]));
    }
    // NAT64 (64:ff9b::/96) reaches the IPv4 address it carries.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded_v4(s[6], s[7]));
    }
    // 6to4 (2002::/16) carries an IPv4 address in its next 32 bits.
    if s[0] == 0x2002 {
        return is_public_v4(embedded_v4(s[1], s[2]));
    }
    !((s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 (RFC 8215)
        || (s[0] == 0x0100 && s[1..4] == [0; 3]) // discard-only
        || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments, Teredo
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00) // multicast
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str) -> Result<(), OutboundRefusal> {
        check_url(&Url::parse(url).unwrap(), false)
    }

    #[test]
    fn loopback_in_every_spelling_is_refused() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://0.0.0.0/",
            "http://0/",
            "http://[::]/",
            "http://localhost:2375/",
            "http://LOCALHOST./",
            "http://api.localhost/",
        ] {
            assert!(check(url).is_err(), "{url} passed");
        }
    }

    #[test]
    fn metadata_private_and_special_ranges_are_refused() {
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://198.18.0.1/",
            "http://192.0.2.1/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[ff02::1]/",
            "http://[2001:db8::1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:c0a8:0101::1]/",
            "http://[::ffff:169.254.169.254]/",
        ] {
            assert!(
                matches!(check(url), Err(OutboundRefusal::NotPublic(_))),
                "{url} passed"
            );
        }
    }

    #[test]
    fn public_addresses_and_names_pass() {
        for url in [
            "https://cdn.example/x.jpg",
            "http://93.184.216.34/",
            "http://8.8.8.8/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://[2606:4700::1111]/",
            "http://[64:ff9b::808:808]/",
            "http://[2002:0808:0808::1]/",
        ] {
            assert_eq!(check(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn userinfo_and_other_schemes_are_refused_even_when_private_is_allowed() {
        for url in ["http://user:pass@cdn.example/", "http://user@cdn.example/"] {
            assert_eq!(
                check_url(&Url::parse(url).unwrap(), true),
                Err(OutboundRefusal::Userinfo)
            );
        }
        assert!(matches!(
            check_url(&Url::parse("file:///etc/passwd").unwrap(), true),
            Err(OutboundRefusal::Scheme(_))
        ));
        assert!(matches!(
            check_url(&Url::parse("gopher://127.0.0.1:6379/").unwrap(), true),
            Err(OutboundRefusal::Scheme(_))
        ));
    }

    #[test]
    fn allowing_private_lets_local_destinations_through() {
        for url in ["http://127.0.0.1:9/", "http://localhost/", "http://[::1]/"] {
            assert_eq!(check_url(&Url::parse(url).unwrap(), true), Ok(()));
        }
    }
}
