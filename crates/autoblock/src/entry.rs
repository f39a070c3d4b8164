//! Addresses and prefixes as autoblock accepts them: parsing, validation and normalisation.
//!
//! Owns the input rules (host bits, `::ffff:a.b.c.d` as IPv4, duplicates) and the metadata
//! an entry carries (comment, expiry). It does not know how an entry is written to the kernel.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use crate::error::InputError;

/// IP version of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// A normalised network: an address with no host bits set and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Net {
    addr: IpAddr,
    len: u8,
}

impl Net {
    /// A network from an address and a prefix length, refusing host bits.
    pub fn new(addr: IpAddr, len: u8) -> Result<Net, InputError> {
        let text = format!("{addr}/{len}");
        let (addr, len) = unmap(addr, len);
        let max = max_len(addr);
        if len > max {
            return Err(InputError::BadPrefixLength { input: text, max });
        }
        let masked = mask(addr, len);
        if masked != addr {
            return Err(InputError::HostBits {
                input: text,
                masked: Net { addr: masked, len }.to_string(),
            });
        }
        Ok(Net { addr, len })
    }

    /// A network from an address and a prefix length, clearing host bits.
    pub fn new_masked(addr: IpAddr, len: u8) -> Result<Net, InputError> {
        let (addr, len) = unmap(addr, len);
        let max = max_len(addr);
        if len > max {
            return Err(InputError::BadPrefixLength {
                input: format!("{addr}/{len}"),
                max,
            });
        }
        Ok(Net {
            addr: mask(addr, len),
            len,
        })
    }

    /// A single address (/32 or /128).
    pub fn host(addr: IpAddr) -> Net {
        let (addr, _) = unmap(addr, max_len(addr));
        Net {
            addr,
            len: max_len(addr),
        }
    }

    /// Parses `ADDR` or `ADDR/LEN`. With `allow_host_bits`, host bits are cleared instead of
    /// refused.
    pub fn parse(s: &str, allow_host_bits: bool) -> Result<Net, InputError> {
        let t = s.trim();
        let bad = || InputError::BadAddress {
            input: s.to_owned(),
        };
        let (a, l) = match t.split_once('/') {
            Some((a, l)) => {
                if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) || l.len() > 3 {
                    return Err(bad());
                }
                (a, Some(l.parse::<u8>().map_err(|_| bad())?))
            }
            None => (t, None),
        };
        // Zone indexes (fe80::1%eth0) and bracketed forms are not source addresses.
        let addr = IpAddr::from_str(a).map_err(|_| bad())?;
        let len = l.unwrap_or(max_len(addr));
        if l.is_some() && len > max_len(addr) {
            return Err(InputError::BadPrefixLength {
                input: s.to_owned(),
                max: max_len(addr),
            });
        }
        let r = if allow_host_bits {
            Net::new_masked(addr, len)
        } else {
            Net::new(addr, len)
        };
        r.map_err(|e| match e {
            InputError::HostBits { masked, .. } => InputError::HostBits {
                input: s.to_owned(),
                masked,
            },
            other => other,
        })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// IPv4 or IPv6.
    pub fn family(&self) -> IpFamily {
        match self.addr {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// Whether this is a single address.
    pub fn is_host(&self) -> bool {
        self.len == max_len(self.addr)
    }

    /// Address bytes in network order (4 or 16).
    pub fn octets(&self) -> Vec<u8> {
        match self.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    /// Whether `addr` lies in this network.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let (addr, _) = unmap(addr, 128);
        match (self.addr, addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(addr, self.len) == self.addr
            }
            _ => false,
        }
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Net) -> bool {
        if self.family() != other.family() {
            return false;
        }
        let len = self.len.min(other.len);
        mask(self.addr, len) == mask(other.addr, len)
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Net {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Net::parse(s, false)
    }
}

fn max_len(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `::ffff:a.b.c.d/len` with `len >= 96` is the IPv4 network `a.b.c.d/(len - 96)`.
fn unmap(addr: IpAddr, len: u8) -> (IpAddr, u8) {
    if let IpAddr::V6(v6) = addr {
        if let Some(v4) = v6.to_ipv4_mapped() {
            if len >= 96 {
                return (IpAddr::V4(v4), len - 96);
            }
        }
    }
    (addr, len)
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// An entry to block: a network and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What to block.
    pub net: Net,
    /// Free text shown next to the entry (`-m comment` in iptables).
    pub comment: Option<String>,
    /// When the block ends (`None` = permanent).
    pub expires: Option<SystemTime>,
}

impl Entry {
    /// A permanent entry without comment.
    pub fn new(net: Net) -> Self {
        Entry {
            net,
            comment: None,
            expires: None,
        }
    }

    /// Sets the comment.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// Makes the entry expire `timeout` from now.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.expires = Some(SystemTime::now() + timeout);
        self
    }

    /// Makes the entry expire at `at`.
    pub fn with_expiry(mut self, at: SystemTime) -> Self {
        self.expires = Some(at);
        self
    }

    /// Time left before expiry, or `None` for a permanent entry (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.expires
            .map(|e| e.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

/// Checks a comment: printable text only (it ends up in `/etc/sysconfig/iptables`, where a
/// newline would break the file).
pub fn check_comment(c: &str) -> Result<(), InputError> {
    if c.chars().any(|ch| ch.is_control()) {
        return Err(InputError::BadComment {
            comment: c.to_owned(),
            reason: "control characters (such as newlines) are not allowed",
        });
    }
    Ok(())
}

/// Removes duplicate networks, keeping the first entry of each (its metadata wins).
pub fn dedup(entries: &mut Vec<Entry>) {
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    entries.retain(|e| seen.insert(e.net));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        Net::parse(s, false).unwrap().to_string()
    }

    fn err(s: &str) -> String {
        Net::parse(s, false).unwrap_err().to_string()
    }

    #[test]
    fn parsing_table() {
        assert_eq!(ok("203.0.113.7"), "203.0.113.7/32");
        assert_eq!(ok(" 198.51.100.0/24 "), "198.51.100.0/24");
        assert_eq!(ok("2001:db8::/48"), "2001:db8::/48");
        assert_eq!(ok("2001:DB8:0:0::1"), "2001:db8::1/128");
        assert_eq!(ok("::ffff:192.0.2.9"), "192.0.2.9/32");
        assert_eq!(ok("::ffff:192.0.2.0/120"), "192.0.2.0/24");
        assert_eq!(ok("0.0.0.0/0"), "0.0.0.0/0");
        assert!(err("198.51.100.1/24").contains("198.51.100.0/24"));
        assert!(err("2001:db8::1/48").contains("2001:db8::/48"));
        assert!(err("1.2.3.4/33").contains("32"));
        assert!(err("1.2.3.4/").contains("1.2.3.4/"));
        assert!(err("example.com").contains("example.com"));
        assert!(err("1.2.3.4/+8").contains("1.2.3.4/+8"));
        assert!(err("fe80::1%eth0").contains("fe80::1%eth0"));
        assert_eq!(
            Net::parse("198.51.100.1/24", true).unwrap().to_string(),
            "198.51.100.0/24"
        );
    }

    #[test]
    fn containment_and_overlap() {
        let n: Net = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(n.overlaps(&"10.9.0.0/16".parse().unwrap()));
        assert!(!n.overlaps(&"2001:db8::/32".parse().unwrap()));
    }

    #[test]
    fn duplicates_are_merged() {
        let mut v = vec![
            Entry::new("192.0.2.1".parse().unwrap()).with_comment("first"),
            Entry::new("192.0.2.1/32".parse().unwrap()),
            Entry::new("::ffff:192.0.2.1".parse().unwrap()),
        ];
        dedup(&mut v);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].comment.as_deref(), Some("first"));
    }

    proptest::proptest! {
        #[test]
        fn masked_parse_never_panics_and_round_trips(a: u32, l in 0u8..=32) {
            let net = Net::new_masked(IpAddr::V4(Ipv4Addr::from(a)), l).unwrap();
            let again: Net = net.to_string().parse().unwrap();
            proptest::prop_assert_eq!(net, again);
        }

        #[test]
        fn v6_masked_round_trips(a: u128, l in 0u8..=128) {
            let net = Net::new_masked(IpAddr::V6(Ipv6Addr::from(a)), l).unwrap();
            let again = Net::parse(&net.to_string(), false).unwrap();
            proptest::prop_assert_eq!(net, again);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,60}") {
            let _ = Net::parse(&s, false);
            let _ = Net::parse(&s, true);
        }
    }
}
