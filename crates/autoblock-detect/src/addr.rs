//! Address tokens taken from log text: IPv4 and IPv6 parsing, normalisation
//! (`::ffff:a.b.c.d` becomes IPv4) and the distinction between "an address",
//! "a host name" and "garbage".
//!
//! Deliberately no name resolution: a token that is a host name is reported as
//! such and never looked up, because a log line must not make this program talk
//! to DNS, and an attacker may control the reverse zone of their address.

use std::net::{IpAddr, Ipv6Addr};

/// What a host token in a log line turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostToken {
    /// A literal address, normalised.
    Addr(IpAddr),
    /// A host name (letters, digits, dots, dashes): never resolved.
    Hostname,
    /// Neither an address nor a plausible host name.
    Invalid,
}

/// Longest token that can be an address: a full IPv6 address with an embedded
/// IPv4 part and a zone index fits comfortably.
const MAX_ADDR_LEN: usize = 64;

/// Parses a host token as written by a server: `192.0.2.1`, `2001:db8::1`,
/// `[2001:db8::1]`, `fe80::1%eth0` (the zone is dropped), `::ffff:192.0.2.1`
/// (taken as IPv4).
pub(crate) fn parse_host(token: &[u8]) -> HostToken {
    let mut t = token;
    if let [b'[', inner @ .., b']'] = t {
        t = inner;
    }
    if t.is_empty() || t.len() > MAX_ADDR_LEN {
        return classify_non_addr(t);
    }
    if let Some(pct) = memchr::memchr(b'%', t) {
        // A zone index only makes sense after an IPv6 address.
        if memchr::memchr(b':', &t[..pct]).is_some() {
            t = &t[..pct];
        }
    }
    let Ok(s) = std::str::from_utf8(t) else {
        return HostToken::Invalid;
    };
    match s.parse::<IpAddr>() {
        Ok(ip) => HostToken::Addr(normalise(ip)),
        Err(_) => classify_non_addr(t),
    }
}

/// Parses an address token as a server writes it (`192.0.2.1`, `[2001:db8::1]`,
/// `fe80::1%eth0`, `::ffff:192.0.2.1` as IPv4); host names give `None`.
///
/// ```
/// use autoblock_detect::parse_addr;
/// assert_eq!(parse_addr(b"::ffff:192.0.2.7"), Some("192.0.2.7".parse().unwrap()));
/// assert_eq!(parse_addr(b"host.example"), None);
/// ```
pub fn parse_addr(token: &[u8]) -> Option<IpAddr> {
    match parse_host(token) {
        HostToken::Addr(ip) => Some(ip),
        _ => None,
    }
}

/// Maps IPv4-mapped IPv6 addresses to IPv4; everything else is unchanged.
/// (Printing an [`IpAddr`] then gives the RFC 5952 form.)
pub fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn classify_non_addr(t: &[u8]) -> HostToken {
    let plausible = !t.is_empty()
        && t.len() <= 253
        && t.iter().any(u8::is_ascii_alphabetic)
        && t.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    if plausible {
        HostToken::Hostname
    } else {
        HostToken::Invalid
    }
}

/// Masks `ip` to its first `prefix` bits (IPv4 prefixes above 32 and IPv6
/// prefixes above 128 are clamped).
pub(crate) fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let p = u32::from(prefix.min(32));
            let bits = u32::from(v4);
            let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let p = u32::from(prefix.min(128));
            let bits = u128::from(v6);
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let v = |s: &str| HostToken::Addr(s.parse().unwrap());
        let table: &[(&[u8], HostToken)] = &[
            (b"192.0.2.1", v("192.0.2.1")),
            (b"2001:DB8:0:0:0:0:0:1", v("2001:db8::1")),
            (b"[2001:db8::1]", v("2001:db8::1")),
            (b"::ffff:192.0.2.9", v("192.0.2.9")),
            (b"::FFFF:c000:0209", v("192.0.2.9")),
            (b"fe80::1%eth0", v("fe80::1")),
            (b"host.example.com", HostToken::Hostname),
            (b"localhost", HostToken::Hostname),
            (b"192.0.2.256", HostToken::Invalid),
            (b"", HostToken::Invalid),
            (b"1.2.3.4%eth0", HostToken::Invalid),
            (b"\xff\xfe", HostToken::Invalid),
            (b"a b", HostToken::Invalid),
        ];
        for (input, want) in table {
            assert_eq!(
                parse_host(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            parse_addr(b"2001:0db8:0000:0000:0000:0000:0000:0001").map(|a| a.to_string()),
            Some("2001:db8::1".to_string())
        );
    }

    #[test]
    fn masking() {
        let ip: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(mask(ip, 64), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(mask(ip, 0), "::".parse::<IpAddr>().unwrap());
        assert_eq!(mask(ip, 200), ip);
        let v4: IpAddr = "192.0.2.77".parse().unwrap();
        assert_eq!(mask(v4, 24), "192.0.2.0".parse::<IpAddr>().unwrap());
        assert_eq!(mask(v4, 32), v4);
    }
}
