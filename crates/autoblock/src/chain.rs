//! The `chain` layout's rule shapes: entries as the exact expression sequences iptables-nft
//! emits for `-s ADDR/LEN -j DROP|REJECT|LOG`, and the reverse parse of rules found in the
//! chain (written by autoblock, or re-created by `iptables-restore` from the sysconfig file).
//!
//! Only iptables-parseable expressions are produced here — never a set lookup or a native log —
//! because these rules live in `ip filter`/`ip6 filter`, which iptables-nft lists and saves.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use autoblock_netlink::expr::{parse_xt_log_info, xt_log_info};
use autoblock_netlink::{udata, CmpOp, Expr, Family, PayloadBase, Rule, Verdict};

use crate::entry::{IpFamily, Net};

/// `offsetof(struct iphdr, saddr)`.
const IPV4_SADDR: u32 = 12;
/// `offsetof(struct ipv6hdr, saddr)`.
const IPV6_SADDR: u32 = 8;
/// `LOG_WARNING`, iptables' default log level.
const LOG_LEVEL_WARNING: u8 = 4;
/// `IPT_ICMP_PORT_UNREACHABLE`: iptables' default `--reject-with` for IPv4.
const IPT_ICMP_PORT_UNREACHABLE: u32 = 3;
/// `IP6T_ICMP6_PORT_UNREACH`: iptables' default `--reject-with` for IPv6.
const IP6T_ICMP6_PORT_UNREACH: u32 = 4;

/// The nf_tables family of the iptables table for an IP family.
pub fn nf_family(f: IpFamily) -> Family {
    match f {
        IpFamily::V4 => Family::Ipv4,
        IpFamily::V6 => Family::Ipv6,
    }
}

/// What one rule of the chain does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// `-j DROP`.
    Drop,
    /// `-j REJECT` (default `--reject-with`).
    Reject,
    /// `-j LOG --log-prefix P`.
    Log {
        /// The log prefix.
        prefix: String,
    },
}

/// `-s NET` as iptables-nft encodes it: payload length = whole prefix bytes when the prefix
/// is byte-aligned, otherwise the full address plus a bitwise mask; the compared value is
/// pre-masked.
pub fn source_match(net: &Net) -> Vec<Expr> {
    let (offset, full) = match net.family() {
        IpFamily::V4 => (IPV4_SADDR, 4u32),
        IpFamily::V6 => (IPV6_SADDR, 16u32),
    };
    let bits = u32::from(net.prefix_len());
    let octets = net.octets();
    if bits % 8 == 0 {
        let len = bits / 8;
        vec![
            Expr::Payload {
                dreg: 1,
                base: PayloadBase::Network,
                offset,
                len,
            },
            Expr::Cmp {
                sreg: 1,
                op: CmpOp::Eq,
                data: octets[..len as usize].to_vec(),
            },
        ]
    } else {
        let mask = prefix_mask(bits, full as usize);
        vec![
            Expr::Payload {
                dreg: 1,
                base: PayloadBase::Network,
                offset,
                len: full,
            },
            Expr::Bitwise {
                sreg: 1,
                dreg: 1,
                len: full,
                mask,
                xor: vec![0; full as usize],
            },
            Expr::Cmp {
                sreg: 1,
                op: CmpOp::Eq,
                data: octets,
            },
        ]
    }
}

/// The `bitwise` mask of a `bits`-long prefix over `bytes` bytes (`/20` over 4 bytes is
/// `ff ff f0 00`).
pub fn prefix_mask(bits: u32, bytes: usize) -> Vec<u8> {
    (0..bytes as u32)
        .map(|i| match bits.saturating_sub(i * 8) {
            0 => 0,
            n if n >= 8 => 0xff,
            n => 0xffu8 << (8 - n),
        })
        .collect()
}

/// The full expression list of a rule: match, counter, then the target.
pub fn rule_exprs(net: &Net, kind: &RuleKind) -> Vec<Expr> {
    let mut v = source_match(net);
    v.push(Expr::Counter {
        bytes: 0,
        packets: 0,
    });
    v.push(match kind {
        RuleKind::Drop => Expr::Immediate(Verdict::Drop),
        RuleKind::Reject => {
            let with = match net.family() {
                IpFamily::V4 => IPT_ICMP_PORT_UNREACHABLE,
                IpFamily::V6 => IP6T_ICMP6_PORT_UNREACH,
            };
            let mut info = with.to_ne_bytes().to_vec();
            info.resize(8, 0); // XT_ALIGN(sizeof(struct ipt_reject_info))
            Expr::Target {
                name: "REJECT".into(),
                rev: 0,
                info,
            }
        }
        RuleKind::Log { prefix } => Expr::Target {
            name: "LOG".into(),
            rev: 0,
            info: xt_log_info(LOG_LEVEL_WARNING, prefix),
        },
    });
    v
}

/// The jump at the head of `INPUT`: `[counter][immediate jump CHAIN]`.
pub fn jump_exprs(chain: &str) -> Vec<Expr> {
    vec![
        Expr::Counter {
            bytes: 0,
            packets: 0,
        },
        Expr::Immediate(Verdict::Jump(chain.to_owned())),
    ]
}

/// Whether a rule of `INPUT` is exactly autoblock's jump to `chain`.
pub fn is_jump(rule: &Rule, chain: &str) -> bool {
    let mut rest = rule
        .exprs
        .iter()
        .filter(|e| !matches!(e, Expr::Counter { .. }));
    matches!(rest.next(), Some(Expr::Immediate(Verdict::Jump(c))) if c == chain)
        && rest.next().is_none()
}

/// A rule of the chain, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRule {
    /// Source network matched.
    pub net: Net,
    /// What it does.
    pub kind: RuleKind,
    /// Its comment (from rule userdata or an xt `comment` match).
    pub comment: Option<String>,
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
    /// Kernel handle.
    pub handle: u64,
}

/// Parses a rule of autoblock's chain. `None` for anything that is not a plain
/// `-s NET [-m comment] -j DROP|REJECT|LOG` rule.
pub fn parse_rule(rule: &Rule) -> Option<ParsedRule> {
    let v6 = match rule.family {
        Family::Ipv4 => false,
        Family::Ipv6 => true,
        _ => return None,
    };
    let full: usize = if v6 { 16 } else { 4 };
    let want_offset = if v6 { IPV6_SADDR } else { IPV4_SADDR };
    let mut it = rule.exprs.iter().peekable();
    let len = match it.next()? {
        Expr::Payload {
            dreg,
            base: PayloadBase::Network,
            offset,
            len,
        } if *offset == want_offset && *len as usize <= full && *len > 0 => {
            let _ = dreg;
            *len as usize
        }
        _ => return None,
    };
    let mut mask: Option<Vec<u8>> = None;
    if let Some(Expr::Bitwise {
        mask: m,
        xor,
        len: blen,
        ..
    }) = it.peek()
    {
        if *blen as usize != len || xor.iter().any(|&b| b != 0) {
            return None;
        }
        mask = Some(m.clone());
        it.next();
    }
    let data = match it.next()? {
        Expr::Cmp {
            op: CmpOp::Eq,
            data,
            ..
        } if data.len() == len => data.clone(),
        _ => return None,
    };
    let prefix_len = match &mask {
        None => (len * 8) as u8,
        Some(m) => {
            let ones: u32 = m.iter().map(|b| b.count_ones()).sum();
            // The mask must be a contiguous prefix.
            if &prefix_mask(ones, len) != m {
                return None;
            }
            ones as u8
        }
    };
    let mut addr = vec![0u8; full];
    addr[..len].copy_from_slice(&data);
    let ip = if v6 {
        let a: [u8; 16] = addr.try_into().ok()?;
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        let a: [u8; 4] = addr.try_into().ok()?;
        IpAddr::V4(Ipv4Addr::from(a))
    };
    let net = Net::new(ip, prefix_len).ok()?;
    if net.family() != if v6 { IpFamily::V6 } else { IpFamily::V4 } {
        return None; // an IPv4-mapped prefix in ip6 filter is not ours
    }

    let mut comment = rule
        .userdata
        .as_deref()
        .and_then(udata::parse_comment)
        .map(str::to_owned);
    let mut counters = (0, 0);
    let mut kind = None;
    for e in it {
        match e {
            Expr::Match { name, info, .. } if name == "comment" && kind.is_none() => {
                let end = info.iter().position(|&b| b == 0).unwrap_or(info.len());
                comment = Some(String::from_utf8_lossy(&info[..end]).into_owned());
            }
            Expr::Counter { bytes, packets } if kind.is_none() => counters = (*packets, *bytes),
            Expr::Immediate(Verdict::Drop) if kind.is_none() => kind = Some(RuleKind::Drop),
            Expr::Target { name, info, .. } if kind.is_none() && name == "REJECT" => {
                let _ = info;
                kind = Some(RuleKind::Reject)
            }
            Expr::Target { name, info, .. } if kind.is_none() && name == "LOG" => {
                let (_, prefix) = parse_xt_log_info(info)?;
                kind = Some(RuleKind::Log { prefix });
            }
            _ => return None,
        }
    }
    Some(ParsedRule {
        net,
        kind: kind?,
        comment,
        packets: counters.0,
        bytes: counters.1,
        handle: rule.handle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(net: &str, kind: RuleKind) {
        let n: Net = net.parse().unwrap();
        let fam = nf_family(n.family());
        let mut r = Rule::new(fam, "filter", "INPUT-AUTO", rule_exprs(&n, &kind));
        r.userdata = udata::comment("c");
        let p = parse_rule(&r).expect(net);
        assert_eq!(p.net, n);
        assert_eq!(p.kind, kind);
        assert_eq!(p.comment.as_deref(), Some("c"));
    }

    #[test]
    fn every_shape_round_trips() {
        for n in [
            "10.99.0.2",
            "10.99.0.0/24",
            "10.99.0.0/20",
            "10.98.0.0/16",
            "10.0.0.0/8",
            "10.0.0.0/7",
            "2001:db8::1",
            "2001:db8::/48",
            "2001:db8::/60",
            "2001:db8::/32",
            "2001:db8:0:0:8000::/65",
        ] {
            round(n, RuleKind::Drop);
            round(n, RuleKind::Reject);
            round(
                n,
                RuleKind::Log {
                    prefix: "autoblock: ".into(),
                },
            );
        }
    }

    #[test]
    fn byte_aligned_prefixes_use_a_short_payload_and_others_a_mask() {
        let e = source_match(&"10.99.0.0/16".parse().unwrap());
        assert_eq!(e.len(), 2);
        assert!(matches!(
            e[0],
            Expr::Payload {
                len: 2,
                offset: 12,
                ..
            }
        ));
        let e = source_match(&"10.99.0.0/20".parse().unwrap());
        assert_eq!(
            e[1],
            Expr::Bitwise {
                sreg: 1,
                dreg: 1,
                len: 4,
                mask: vec![0xff, 0xff, 0xf0, 0],
                xor: vec![0; 4]
            }
        );
        let e = source_match(&"2001:db8::/60".parse().unwrap());
        assert!(matches!(
            e[0],
            Expr::Payload {
                len: 16,
                offset: 8,
                ..
            }
        ));
    }

    #[test]
    fn foreign_rules_are_not_parsed() {
        let n: Net = "10.0.0.1".parse().unwrap();
        let mut ex = rule_exprs(&n, &RuleKind::Drop);
        ex.insert(0, Expr::Meta { dreg: 1, key: 15 });
        assert!(parse_rule(&Rule::new(Family::Ipv4, "filter", "X", ex)).is_none());
        let jump = Rule::new(Family::Ipv4, "filter", "INPUT", jump_exprs("INPUT-AUTO"));
        assert!(parse_rule(&jump).is_none());
        assert!(is_jump(&jump, "INPUT-AUTO"));
        assert!(!is_jump(&jump, "OTHER"));
    }
}
