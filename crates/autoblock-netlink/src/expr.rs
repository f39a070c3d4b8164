//! nf_tables rule expressions: the typed form of `NFTA_RULE_EXPRESSIONS` list elements.
//!
//! Covers what autoblock writes (payload, cmp, bitwise, counter, immediate, lookup, meta,
//! log, reject, xt targets and matches) and keeps anything else as [`Expr::Other`] so that a
//! newer kernel or another program's rule never breaks decoding. Encoding and decoding are
//! exact inverses for every known variant.

use crate::consts::*;
use crate::error::DecodeError;
use crate::wire::{Attr, Attrs, MsgWriter};

/// A verdict of an `immediate` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// `NF_DROP`.
    Drop,
    /// `NF_ACCEPT`.
    Accept,
    /// `NFT_CONTINUE`.
    Continue,
    /// `NFT_RETURN`.
    Return,
    /// `NFT_JUMP` to the named chain.
    Jump(String),
    /// `NFT_GOTO` to the named chain.
    Goto(String),
    /// Any other code.
    Other(i32),
}

impl Verdict {
    fn code(&self) -> i32 {
        match self {
            Verdict::Drop => NF_DROP,
            Verdict::Accept => NF_ACCEPT,
            Verdict::Continue => NFT_CONTINUE,
            Verdict::Return => NFT_RETURN,
            Verdict::Jump(_) => NFT_JUMP,
            Verdict::Goto(_) => NFT_GOTO,
            Verdict::Other(c) => *c,
        }
    }
}

/// Comparison operator of `cmp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CmpOp {
    /// `NFT_CMP_EQ`.
    Eq,
    /// `NFT_CMP_NEQ`.
    Neq,
    /// Any other operator code.
    Other(u32),
}

impl CmpOp {
    fn code(self) -> u32 {
        match self {
            CmpOp::Eq => 0,
            CmpOp::Neq => 1,
            CmpOp::Other(c) => c,
        }
    }
    fn from_code(c: u32) -> Self {
        match c {
            0 => CmpOp::Eq,
            1 => CmpOp::Neq,
            c => CmpOp::Other(c),
        }
    }
}

/// Payload base of a `payload` expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadBase {
    /// Link layer header.
    LinkLayer,
    /// Network header (IPv4/IPv6).
    Network,
    /// Transport header.
    Transport,
    /// Any other base.
    Other(u32),
}

impl PayloadBase {
    fn code(self) -> u32 {
        match self {
            PayloadBase::LinkLayer => 0,
            PayloadBase::Network => 1,
            PayloadBase::Transport => 2,
            PayloadBase::Other(c) => c,
        }
    }
    fn from_code(c: u32) -> Self {
        match c {
            0 => PayloadBase::LinkLayer,
            1 => PayloadBase::Network,
            2 => PayloadBase::Transport,
            c => PayloadBase::Other(c),
        }
    }
}

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expr {
    /// Load `len` bytes at `offset` of the header `base` into register `dreg`.
    Payload {
        /// Destination register.
        dreg: u32,
        /// Header.
        base: PayloadBase,
        /// Offset within the header.
        offset: u32,
        /// Bytes to load.
        len: u32,
    },
    /// Compare register `sreg` with `data`.
    Cmp {
        /// Source register.
        sreg: u32,
        /// Operator.
        op: CmpOp,
        /// Value to compare with.
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor` over `len` bytes.
    Bitwise {
        /// Source register.
        sreg: u32,
        /// Destination register.
        dreg: u32,
        /// Bytes.
        len: u32,
        /// Mask.
        mask: Vec<u8>,
        /// Xor.
        xor: Vec<u8>,
    },
    /// Packet and byte counter.
    Counter {
        /// Bytes seen.
        bytes: u64,
        /// Packets seen.
        packets: u64,
    },
    /// Load a verdict into the verdict register.
    Immediate(Verdict),
    /// Look register `sreg` up in a set.
    Lookup {
        /// Set name.
        set: String,
        /// Source register.
        sreg: u32,
        /// Inverted lookup (`NFT_LOOKUP_F_INV`).
        invert: bool,
    },
    /// Load packet metadata `key` into `dreg`.
    Meta {
        /// Destination register.
        dreg: u32,
        /// `NFT_META_*` key.
        key: u32,
    },
    /// Native nf_tables log.
    Log {
        /// nflog group (NFLOG); `None` logs to the kernel log.
        group: Option<u16>,
        /// Prefix.
        prefix: Option<String>,
        /// Syslog level.
        level: Option<u32>,
    },
    /// Native reject.
    Reject {
        /// `NFT_REJECT_*` type.
        kind: u32,
        /// ICMP code.
        code: u8,
    },
    /// xtables target through nft_compat (`-j LOG`, `-j REJECT`).
    Target {
        /// Extension name.
        name: String,
        /// Revision.
        rev: u32,
        /// The extension's info struct, as iptables sends it.
        info: Vec<u8>,
    },
    /// xtables match through nft_compat (`-m comment`).
    Match {
        /// Extension name.
        name: String,
        /// Revision.
        rev: u32,
        /// The extension's info struct.
        info: Vec<u8>,
    },
    /// An expression this crate does not model: name and raw `NFTA_EXPR_DATA`.
    Other {
        /// Expression name.
        name: String,
        /// Raw attributes.
        data: Vec<u8>,
    },
}

impl Expr {
    /// The kernel name of the expression.
    pub fn name(&self) -> &str {
        match self {
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Counter { .. } => "counter",
            Expr::Immediate(_) => "immediate",
            Expr::Lookup { .. } => "lookup",
            Expr::Meta { .. } => "meta",
            Expr::Log { .. } => "log",
            Expr::Reject { .. } => "reject",
            Expr::Target { .. } => "target",
            Expr::Match { .. } => "match",
            Expr::Other { name, .. } => name,
        }
    }

    /// Writes the expression as one `NFTA_LIST_ELEM`.
    pub fn encode(&self, w: &mut MsgWriter<'_>) {
        let elem = w.nest_start(NFTA_LIST_ELEM);
        w.put_str(NFTA_EXPR_NAME, self.name());
        if let Expr::Other { data, .. } = self {
            w.put(NFTA_EXPR_DATA | NLA_F_NESTED, data);
            w.nest_end(elem);
            return;
        }
        let d = w.nest_start(NFTA_EXPR_DATA);
        match self {
            Expr::Payload {
                dreg,
                base,
                offset,
                len,
            } => {
                w.put_be32(NFTA_PAYLOAD_DREG, *dreg);
                w.put_be32(NFTA_PAYLOAD_BASE, base.code());
                w.put_be32(NFTA_PAYLOAD_OFFSET, *offset);
                w.put_be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Cmp { sreg, op, data } => {
                w.put_be32(NFTA_CMP_SREG, *sreg);
                w.put_be32(NFTA_CMP_OP, op.code());
                w.put_data_value(NFTA_CMP_DATA, data);
            }
            Expr::Bitwise {
                sreg,
                dreg,
                len,
                mask,
                xor,
            } => {
                w.put_be32(NFTA_BITWISE_SREG, *sreg);
                w.put_be32(NFTA_BITWISE_DREG, *dreg);
                w.put_be32(NFTA_BITWISE_LEN, *len);
                w.put_data_value(NFTA_BITWISE_MASK, mask);
                w.put_data_value(NFTA_BITWISE_XOR, xor);
            }
            Expr::Counter { bytes, packets } => {
                w.put_be64(NFTA_COUNTER_BYTES, *bytes);
                w.put_be64(NFTA_COUNTER_PACKETS, *packets);
            }
            Expr::Immediate(v) => {
                w.put_be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                let data = w.nest_start(NFTA_IMMEDIATE_DATA);
                let verdict = w.nest_start(NFTA_DATA_VERDICT);
                w.put_be32(NFTA_VERDICT_CODE, v.code() as u32);
                if let Verdict::Jump(chain) | Verdict::Goto(chain) = v {
                    w.put_str(NFTA_VERDICT_CHAIN, chain);
                }
                w.nest_end(verdict);
                w.nest_end(data);
            }
            Expr::Lookup { set, sreg, invert } => {
                w.put_str(NFTA_LOOKUP_SET, set);
                w.put_be32(NFTA_LOOKUP_SREG, *sreg);
                if *invert {
                    w.put_be32(NFTA_LOOKUP_FLAGS, 1);
                }
            }
            Expr::Meta { dreg, key } => {
                w.put_be32(NFTA_META_KEY, *key);
                w.put_be32(NFTA_META_DREG, *dreg);
            }
            Expr::Log {
                group,
                prefix,
                level,
            } => {
                if let Some(g) = group {
                    w.put(NFTA_LOG_GROUP, &g.to_be_bytes());
                }
                if let Some(p) = prefix {
                    w.put_str(NFTA_LOG_PREFIX, p);
                }
                if let Some(l) = level {
                    w.put_be32(NFTA_LOG_LEVEL, *l);
                }
            }
            Expr::Reject { kind, code } => {
                w.put_be32(NFTA_REJECT_TYPE, *kind);
                w.put(NFTA_REJECT_ICMP_CODE, &[*code]);
            }
            Expr::Target { name, rev, info } => {
                w.put_str(NFTA_TARGET_NAME, name);
                w.put_be32(NFTA_TARGET_REV, *rev);
                w.put(NFTA_TARGET_INFO, info);
            }
            Expr::Match { name, rev, info } => {
                w.put_str(NFTA_MATCH_NAME, name);
                w.put_be32(NFTA_MATCH_REV, *rev);
                w.put(NFTA_MATCH_INFO, info);
            }
            Expr::Other { .. } => unreachable!("handled above"),
        }
        w.nest_end(d);
        w.nest_end(elem);
    }

    /// Decodes one `NFTA_LIST_ELEM`.
    pub fn decode(elem: Attr<'_>) -> Result<Expr, DecodeError> {
        let mut name = None;
        let mut data: &[u8] = &[];
        for a in elem.nested() {
            let a = a?;
            match a.ty {
                NFTA_EXPR_NAME => name = Some(a.str()?),
                NFTA_EXPR_DATA => data = a.payload,
                _ => {}
            }
        }
        let name = name.ok_or(DecodeError::new("expression without a name"))?;
        let attrs = || Attrs::new(data);
        let be32 = |ty: u16| -> Result<Option<u32>, DecodeError> {
            for a in attrs() {
                let a = a?;
                if a.ty == ty {
                    return a.be32().map(Some);
                }
            }
            Ok(None)
        };
        let find = |ty: u16| -> Result<Option<Attr<'_>>, DecodeError> {
            for a in attrs() {
                let a = a?;
                if a.ty == ty {
                    return Ok(Some(a));
                }
            }
            Ok(None)
        };
        let need = |v: Option<u32>, what: &'static str| v.ok_or(DecodeError::new(what));
        let expr = match name {
            "payload" => Expr::Payload {
                dreg: need(be32(NFTA_PAYLOAD_DREG)?, "payload without dreg")?,
                base: PayloadBase::from_code(need(be32(NFTA_PAYLOAD_BASE)?, "payload base")?),
                offset: need(be32(NFTA_PAYLOAD_OFFSET)?, "payload offset")?,
                len: need(be32(NFTA_PAYLOAD_LEN)?, "payload len")?,
            },
            "cmp" => Expr::Cmp {
                sreg: need(be32(NFTA_CMP_SREG)?, "cmp sreg")?,
                op: CmpOp::from_code(need(be32(NFTA_CMP_OP)?, "cmp op")?),
                data: find(NFTA_CMP_DATA)?
                    .ok_or(DecodeError::new("cmp data"))?
                    .data_value()?
                    .to_vec(),
            },
            "bitwise" if find(NFTA_BITWISE_MASK)?.is_some() => Expr::Bitwise {
                sreg: need(be32(NFTA_BITWISE_SREG)?, "bitwise sreg")?,
                dreg: need(be32(NFTA_BITWISE_DREG)?, "bitwise dreg")?,
                len: need(be32(NFTA_BITWISE_LEN)?, "bitwise len")?,
                mask: find(NFTA_BITWISE_MASK)?
                    .ok_or(DecodeError::new("bitwise mask"))?
                    .data_value()?
                    .to_vec(),
                xor: match find(NFTA_BITWISE_XOR)? {
                    Some(a) => a.data_value()?.to_vec(),
                    None => Vec::new(),
                },
            },
            "counter" => {
                let mut bytes = 0;
                let mut packets = 0;
                for a in attrs() {
                    let a = a?;
                    match a.ty {
                        NFTA_COUNTER_BYTES => bytes = a.be64()?,
                        NFTA_COUNTER_PACKETS => packets = a.be64()?,
                        _ => {}
                    }
                }
                Expr::Counter { bytes, packets }
            }
            "immediate" if be32(NFTA_IMMEDIATE_DREG)? == Some(NFT_REG_VERDICT) => {
                let data = find(NFTA_IMMEDIATE_DATA)?.ok_or(DecodeError::new("immediate data"))?;
                let mut verdict = None;
                for a in data.nested() {
                    let a = a?;
                    if a.ty == NFTA_DATA_VERDICT {
                        let mut code = None;
                        let mut chain = None;
                        for v in a.nested() {
                            let v = v?;
                            match v.ty {
                                NFTA_VERDICT_CODE => code = Some(v.be32()? as i32),
                                NFTA_VERDICT_CHAIN => chain = Some(v.str()?.to_owned()),
                                _ => {}
                            }
                        }
                        verdict = Some(match (code, chain) {
                            (Some(NF_DROP), _) => Verdict::Drop,
                            (Some(NF_ACCEPT), _) => Verdict::Accept,
                            (Some(NFT_CONTINUE), _) => Verdict::Continue,
                            (Some(NFT_RETURN), _) => Verdict::Return,
                            (Some(NFT_JUMP), Some(c)) => Verdict::Jump(c),
                            (Some(NFT_GOTO), Some(c)) => Verdict::Goto(c),
                            (Some(c), _) => Verdict::Other(c),
                            (None, _) => return Err(DecodeError::new("verdict without code")),
                        });
                    }
                }
                Expr::Immediate(verdict.ok_or(DecodeError::new("immediate without verdict"))?)
            }
            "lookup" => Expr::Lookup {
                set: find(NFTA_LOOKUP_SET)?
                    .ok_or(DecodeError::new("lookup set"))?
                    .str()?
                    .to_owned(),
                sreg: need(be32(NFTA_LOOKUP_SREG)?, "lookup sreg")?,
                invert: be32(NFTA_LOOKUP_FLAGS)?.unwrap_or(0) & 1 != 0,
            },
            "meta" if be32(NFTA_META_DREG)?.is_some() => Expr::Meta {
                dreg: need(be32(NFTA_META_DREG)?, "meta dreg")?,
                key: need(be32(NFTA_META_KEY)?, "meta key")?,
            },
            "log" => Expr::Log {
                group: match find(NFTA_LOG_GROUP)? {
                    Some(a) if a.payload.len() == 2 => {
                        Some(u16::from_be_bytes([a.payload[0], a.payload[1]]))
                    }
                    Some(_) => return Err(DecodeError::new("log group")),
                    None => None,
                },
                prefix: find(NFTA_LOG_PREFIX)?
                    .map(|a| a.str())
                    .transpose()?
                    .map(str::to_owned),
                level: be32(NFTA_LOG_LEVEL)?,
            },
            "reject" => Expr::Reject {
                kind: need(be32(NFTA_REJECT_TYPE)?, "reject type")?,
                code: find(NFTA_REJECT_ICMP_CODE)?
                    .and_then(|a| a.payload.first().copied())
                    .unwrap_or(0),
            },
            "target" | "match" => {
                let name_ty = if name == "target" {
                    NFTA_TARGET_NAME
                } else {
                    NFTA_MATCH_NAME
                };
                let ext = find(name_ty)?
                    .ok_or(DecodeError::new("xt extension name"))?
                    .str()?
                    .to_owned();
                let rev = be32(NFTA_TARGET_REV)?.unwrap_or(0);
                let info = find(NFTA_TARGET_INFO)?
                    .map(|a| a.payload.to_vec())
                    .unwrap_or_default();
                if name == "target" {
                    Expr::Target {
                        name: ext,
                        rev,
                        info,
                    }
                } else {
                    Expr::Match {
                        name: ext,
                        rev,
                        info,
                    }
                }
            }
            other => Expr::Other {
                name: other.to_owned(),
                data: data.to_vec(),
            },
        };
        Ok(expr)
    }
}

/// `struct xt_log_info` of the xt `LOG` target (32 bytes: level, logflags, prefix[30]).
pub fn xt_log_info(level: u8, prefix: &str) -> Vec<u8> {
    let mut info = vec![0u8; 32];
    info[0] = level;
    let p = prefix.as_bytes();
    let n = p.len().min(29);
    info[2..2 + n].copy_from_slice(&p[..n]);
    info
}

/// Reads the prefix and level back from a `struct xt_log_info`.
pub fn parse_xt_log_info(info: &[u8]) -> Option<(u8, String)> {
    if info.len() < 32 {
        return None;
    }
    let raw = &info[2..32];
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Some((info[0], String::from_utf8_lossy(&raw[..end]).into_owned()))
}
