//! Which URLs and addresses an outbound call may reach. The URL is checked
//! before anything is resolved ([`check_url`]), and every address its host
//! resolves to is checked again before one of them is connected to
//! ([`check_addresses`]), so neither an IP literal nor a DNS name pointing
//! inward gets a call onto the private network unless the operator allowed
//! it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the operator lets one kind of outbound call reach. Each caller has
/// its own (webhooks: `--webhook-allow-*`, list downloads:
/// `--list-allow-*`), so opening one to a test server on loopback does not
/// open the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// `http://` as well as `https://`: the answer can then be read and
    /// changed on the way, so only where the network is trusted.
    pub allow_insecure: bool,
    /// Non-public addresses: a URL could otherwise reach the cluster's own
    /// services or a cloud metadata endpoint.
    pub allow_private: bool,
}

/// True when `ip` is an address on the public internet: not private,
/// loopback, link-local, unique-local, CGNAT, multicast, unspecified,
/// broadcast, documentation, benchmarking or reserved. Addresses that embed
/// an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by it, so
/// `::ffff:127.0.0.1` is as private as `127.0.0.1`.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // IPv4-compatible (deprecated), NAT64 and 6to4 carry an IPv4 address.
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return is_public_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]))
}

/// Refuses a set of resolved addresses unless every one is public (or the
/// policy allows private ones): one private answer among public ones is
/// refused too, since the connection may land on any of them.
pub fn check_addresses(addrs: &[IpAddr], policy: UrlPolicy) -> std::result::Result<(), String> {
    if addrs.is_empty() {
        return Err("the host resolved to no address".into());
    }
    if policy.allow_private {
        return Ok(());
    }
    match addrs.iter().find(|a| !is_public(**a)) {
        Some(a) => Err(format!("the host resolves to a non-public address ({a})")),
        None => Ok(()),
    }
}

/// Refuses a URL the policy does not let a call reach: a scheme other than
/// `https` (or `http` where insecure calls are allowed), credentials in the
/// URL (they would be sent to whoever answers, and logged with the URL), no
/// host, or an IP literal outside the public internet. Host names are
/// judged later, by the addresses they resolve to.
pub fn check_url(u: &url::Url, policy: UrlPolicy) -> Result<(), String> {
    match u.scheme() {
        "https" => {}
        "http" if policy.allow_insecure => {}
        "http" => return Err("must be https://".into()),
        _ => return Err("must be an https:// URL".into()),
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry credentials".into());
    }
    let ip = match u.host() {
        None => return Err("names no host".into()),
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = ip.filter(|ip| !policy.allow_private && !is_public(*ip)) {
        return Err(format!(
            "points at a non-public address ({ip}); only public addresses are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "127.8.8.8",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
        ] {
            assert!(!is_public(ip(private)), "{private} counted as public");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip(public)), "{public} counted as private");
        }
    }

    #[test]
    fn resolved_addresses_are_refused_if_any_is_private() {
        let strict = UrlPolicy::default();
        assert!(check_addresses(&[ip("8.8.8.8")], strict).is_ok());
        let err = check_addresses(&[ip("8.8.8.8"), ip("127.0.0.1")], strict).unwrap_err();
        assert!(err.contains("127.0.0.1"), "{err}");
        assert!(check_addresses(&[], strict).is_err());
        let open = UrlPolicy {
            allow_private: true,
            ..strict
        };
        assert!(check_addresses(&[ip("127.0.0.1")], open).is_ok());
    }

    #[test]
    fn urls_are_checked_for_scheme_credentials_and_literal_addresses() {
        let strict = UrlPolicy::default();
        let check = |u: &str, p| check_url(&url::Url::parse(u).unwrap(), p);
        assert!(check("https://sanctionslistservice.ofac.treas.gov/x/SDN.XML", strict).is_ok());
        assert!(
            check("https://localhost/x", strict).is_ok(),
            "names wait for resolution"
        );
        for (bad, why) in [
            ("http://lists.example/a.xml", "https://"),
            ("ftp://lists.example/a.xml", "https://"),
            ("https://u:p@lists.example/a.xml", "credentials"),
            ("https://10.0.0.7/a.xml", "non-public"),
            ("https://[::ffff:127.0.0.1]/a.xml", "non-public"),
        ] {
            let e = check(bad, strict).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let insecure = UrlPolicy {
            allow_insecure: true,
            ..strict
        };
        assert!(check("http://lists.example/a.xml", insecure).is_ok());
        assert!(check("http://127.0.0.1:8080/a.xml", insecure).is_err());
        let private = UrlPolicy {
            allow_private: true,
            ..strict
        };
        assert!(check("https://127.0.0.1:8443/a.xml", private).is_ok());
        assert!(check("http://127.0.0.1:8080/a.xml", private).is_err());
    }
}
