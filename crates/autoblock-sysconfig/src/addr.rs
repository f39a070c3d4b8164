//! Source addresses as `iptables-save` prints them: the network address
//! (host bits cleared) and the prefix length, IPv6 in the exact text
//! glibc's `inet_ntop` produces (which differs from Rust's `Display` for
//! IPv4-compatible addresses such as `::1.2.3.4`).
//!
//! Only formatting and parsing of one address; it does not decide which
//! addresses may be blocked.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::Family;

/// A source in canonical form: `None` for a /0 prefix (iptables prints no
/// `-s` at all then), else `addr/len` with the host bits cleared.
pub(crate) fn canonical_source(
    source: &str,
    family: Family,
) -> Result<Option<String>, &'static str> {
    let (addr, len) = match source.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (source, None),
    };
    let max = match family {
        Family::V4 => 32,
        Family::V6 => 128,
    };
    let len = match len {
        None => max,
        Some(l) => {
            if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
                return Err("prefix length is not a decimal number");
            }
            let n: u32 = l.parse().map_err(|_| "prefix length is not a number")?;
            if n > max {
                return Err("prefix length too large for the family");
            }
            n
        }
    };
    if len == 0 {
        return Ok(None);
    }
    let text = match family {
        Family::V4 => {
            let a: Ipv4Addr = addr.parse().map_err(|_| "not an IPv4 address")?;
            let mask = u32::MAX << (32 - len);
            Ipv4Addr::from(u32::from(a) & mask).to_string()
        }
        Family::V6 => {
            let a: Ipv6Addr = addr.parse().map_err(|_| "not an IPv6 address")?;
            let mask = u128::MAX << (128 - len);
            format_ipv6(Ipv6Addr::from(u128::from(a) & mask))
        }
    };
    Ok(Some(format!("{text}/{len}")))
}

/// glibc `inet_ntop(AF_INET6)`: the first longest run (at least two) of
/// zero groups becomes `::`; `::a.b.c.d` for IPv4-compatible and
/// `::ffff:a.b.c.d` for IPv4-mapped addresses.
pub(crate) fn format_ipv6(addr: Ipv6Addr) -> String {
    let words = addr.segments();
    // (base, len) of the first longest run of zero words.
    let mut best: Option<(usize, usize)> = None;
    let mut cur: Option<(usize, usize)> = None;
    for (i, &w) in words.iter().enumerate() {
        if w == 0 {
            cur = Some(match cur {
                Some((b, l)) => (b, l + 1),
                None => (i, 1),
            });
        } else if let Some(c) = cur.take() {
            if best.is_none_or(|b| c.1 > b.1) {
                best = Some(c);
            }
        }
    }
    if let Some(c) = cur {
        if best.is_none_or(|b| c.1 > b.1) {
            best = Some(c);
        }
    }
    let best = best.filter(|b| b.1 >= 2);

    let mut out = String::with_capacity(39);
    for (i, &w) in words.iter().enumerate() {
        if let Some((base, len)) = best {
            if i >= base && i < base + len {
                if i == base {
                    out.push(':');
                }
                continue;
            }
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 {
            if let Some((0, len)) = best {
                if len == 6 || (len == 5 && words[5] == 0xffff) {
                    let o = addr.octets();
                    let _ = write!(out, "{}.{}.{}.{}", o[12], o[13], o[14], o[15]);
                    break;
                }
            }
        }
        let _ = write!(out, "{w:x}");
    }
    if let Some((base, len)) = best {
        if base + len == 8 {
            out.push(':');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> String {
        format_ipv6(s.parse().unwrap())
    }

    #[test]
    fn ipv6_text_matches_inet_ntop() {
        // Expected values as printed by ip6tables-nft-save 1.8.9 here.
        assert_eq!(v6("::1.2.3.4"), "::1.2.3.4");
        assert_eq!(v6("::ffff:1.2.3.4"), "::ffff:1.2.3.4");
        assert_eq!(v6("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
        assert_eq!(v6("2001:0:0:1:0:0:0:1"), "2001:0:0:1::1");
        assert_eq!(v6("2001:db8::"), "2001:db8::");
        assert_eq!(v6("::"), "::");
        assert_eq!(v6("::1"), "::1");
        assert_eq!(v6("::2"), "::2");
        assert_eq!(v6("::ffff:0:1.2.3.4"), "::ffff:0:102:304");
        assert_eq!(v6("::ffff:1:2"), "::ffff:0.1.0.2");
        assert_eq!(v6("1:0:0:2:0:0:3:4"), "1::2:0:0:3:4");
        assert_eq!(v6("1:0:2:3:4:5:6:7"), "1:0:2:3:4:5:6:7");
        assert_eq!(v6("fe80::1:2"), "fe80::1:2");
    }

    #[test]
    fn sources_are_masked_and_suffixed() {
        let c = |s, f| canonical_source(s, f);
        assert_eq!(c("192.0.2.9", Family::V4), Ok(Some("192.0.2.9/32".into())));
        assert_eq!(c("10.1.2.3/8", Family::V4), Ok(Some("10.0.0.0/8".into())));
        assert_eq!(c("0.0.0.0/0", Family::V4), Ok(None));
        assert_eq!(
            c("2001:db8::1/48", Family::V6),
            Ok(Some("2001:db8::/48".into()))
        );
        assert_eq!(
            c("2001:db8::1", Family::V6),
            Ok(Some("2001:db8::1/128".into()))
        );
        assert!(c("2001:db8::1", Family::V4).is_err());
        assert!(c("192.0.2.1", Family::V6).is_err());
        assert!(c("192.0.2.1/33", Family::V4).is_err());
        assert!(c("192.0.2.1/", Family::V4).is_err());
        assert!(c("192.0.2.1/+1", Family::V4).is_err());
        assert!(c("192.0.2.1/255.0.0.0", Family::V4).is_err());
        assert!(c("", Family::V4).is_err());
    }
}
