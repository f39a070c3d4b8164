//! nf_tables objects (tables, chains, rules, sets, set elements) as plain data, with their
//! decoders from kernel messages and their encoders into request messages.
//!
//! Objects here are descriptions, not handles to live kernel state: nothing in this module
//! talks to the kernel.

use crate::consts::*;
use crate::error::DecodeError;
use crate::expr::Expr;
use crate::wire::{Attrs, MsgWriter, NlMsg};

/// An nf_tables address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Family {
    /// `NFPROTO_INET`: IPv4 and IPv6.
    Inet,
    /// `NFPROTO_IPV4` (`ip`).
    Ipv4,
    /// `NFPROTO_IPV6` (`ip6`).
    Ipv6,
    /// `NFPROTO_UNSPEC` (dumps of every family).
    Unspec,
    /// Any other family number.
    Other(u8),
}

impl Family {
    /// The `nfgen_family` byte.
    pub fn code(self) -> u8 {
        match self {
            Family::Inet => NFPROTO_INET,
            Family::Ipv4 => NFPROTO_IPV4,
            Family::Ipv6 => NFPROTO_IPV6,
            Family::Unspec => NFPROTO_UNSPEC,
            Family::Other(c) => c,
        }
    }

    /// The family of an `nfgen_family` byte.
    pub fn from_code(c: u8) -> Self {
        match c {
            NFPROTO_INET => Family::Inet,
            NFPROTO_IPV4 => Family::Ipv4,
            NFPROTO_IPV6 => Family::Ipv6,
            NFPROTO_UNSPEC => Family::Unspec,
            c => Family::Other(c),
        }
    }

    /// The name `nft` uses (`ip`, `ip6`, `inet`).
    pub fn nft_name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ipv4 => "ip",
            Family::Ipv6 => "ip6",
            Family::Unspec => "unspec",
            Family::Other(_) => "other",
        }
    }
}

/// A table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Family.
    pub family: Family,
    /// Name.
    pub name: String,
    /// `NFT_TABLE_F_*` flags.
    pub flags: u32,
    /// Handle (0 when describing a table to create).
    pub handle: u64,
}

impl Table {
    /// A table to create.
    pub fn new(family: Family, name: impl Into<String>) -> Self {
        Table {
            family,
            name: name.into(),
            flags: 0,
            handle: 0,
        }
    }

    pub(crate) fn encode(&self, w: &mut MsgWriter<'_>) {
        w.put_str(NFTA_TABLE_NAME, &self.name);
        w.put_be32(NFTA_TABLE_FLAGS, self.flags);
    }

    /// Decodes a `NEWTABLE` message.
    pub fn decode(msg: &NlMsg<'_>) -> Result<Self, DecodeError> {
        let mut t = Table::new(Family::from_code(msg.family()), "");
        for a in msg.attrs() {
            let a = a?;
            match a.ty {
                NFTA_TABLE_NAME => t.name = a.str()?.to_owned(),
                NFTA_TABLE_FLAGS => t.flags = a.be32()?,
                NFTA_TABLE_HANDLE => t.handle = a.be64()?,
                _ => {}
            }
        }
        Ok(t)
    }
}

/// The hook of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    /// `NF_INET_*` hook number.
    pub num: u32,
    /// Priority (iptables' `filter` is 0, `raw` is -300).
    pub priority: i32,
}

/// A chain (regular when `hook` is `None`, base chain otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Family.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub name: String,
    /// Handle (0 when describing a chain to create).
    pub handle: u64,
    /// Hook of a base chain.
    pub hook: Option<Hook>,
    /// Chain type of a base chain (`filter`).
    pub chain_type: Option<String>,
    /// Policy of a base chain (`NF_ACCEPT` = 1, `NF_DROP` = 0).
    pub policy: Option<u32>,
    /// Number of references (jumps) to the chain, as reported by the kernel.
    pub use_count: u32,
}

impl Chain {
    /// A regular chain to create.
    pub fn regular(family: Family, table: impl Into<String>, name: impl Into<String>) -> Self {
        Chain {
            family,
            table: table.into(),
            name: name.into(),
            handle: 0,
            hook: None,
            chain_type: None,
            policy: None,
            use_count: 0,
        }
    }

    /// A base chain of type `filter` to create, with policy accept.
    pub fn base(
        family: Family,
        table: impl Into<String>,
        name: impl Into<String>,
        hook: Hook,
    ) -> Self {
        Chain {
            hook: Some(hook),
            chain_type: Some("filter".to_owned()),
            policy: Some(NF_ACCEPT as u32),
            ..Chain::regular(family, table, name)
        }
    }

    pub(crate) fn encode(&self, w: &mut MsgWriter<'_>) {
        w.put_str(NFTA_CHAIN_TABLE, &self.table);
        w.put_str(NFTA_CHAIN_NAME, &self.name);
        if let Some(h) = self.hook {
            let n = w.nest_start(NFTA_CHAIN_HOOK);
            w.put_be32(NFTA_HOOK_HOOKNUM, h.num);
            w.put_be32(NFTA_HOOK_PRIORITY, h.priority as u32);
            w.nest_end(n);
            if let Some(p) = self.policy {
                w.put_be32(NFTA_CHAIN_POLICY, p);
            }
            if let Some(t) = &self.chain_type {
                w.put_str(NFTA_CHAIN_TYPE, t);
            }
        }
    }

    /// Decodes a `NEWCHAIN` message.
    pub fn decode(msg: &NlMsg<'_>) -> Result<Self, DecodeError> {
        let mut c = Chain::regular(Family::from_code(msg.family()), "", "");
        for a in msg.attrs() {
            let a = a?;
            match a.ty {
                NFTA_CHAIN_TABLE => c.table = a.str()?.to_owned(),
                NFTA_CHAIN_NAME => c.name = a.str()?.to_owned(),
                NFTA_CHAIN_HANDLE => c.handle = a.be64()?,
                NFTA_CHAIN_POLICY => c.policy = Some(a.be32()?),
                NFTA_CHAIN_TYPE => c.chain_type = Some(a.str()?.to_owned()),
                NFTA_CHAIN_USE => c.use_count = a.be32()?,
                NFTA_CHAIN_HOOK => {
                    let mut h = Hook {
                        num: 0,
                        priority: 0,
                    };
                    for x in a.nested() {
                        let x = x?;
                        match x.ty {
                            NFTA_HOOK_HOOKNUM => h.num = x.be32()?,
                            NFTA_HOOK_PRIORITY => h.priority = x.be32()? as i32,
                            _ => {}
                        }
                    }
                    c.hook = Some(h);
                }
                _ => {}
            }
        }
        Ok(c)
    }
}

/// A rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Family.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub chain: String,
    /// Handle (0 when describing a rule to create).
    pub handle: u64,
    /// Handle of the previous rule in the chain, as reported in dumps.
    pub position: Option<u64>,
    /// Expressions.
    pub exprs: Vec<Expr>,
    /// `NFTA_RULE_USERDATA` (TLVs; see [`crate::udata`]).
    pub userdata: Option<Vec<u8>>,
}

impl Rule {
    /// A rule to create.
    pub fn new(
        family: Family,
        table: impl Into<String>,
        chain: impl Into<String>,
        exprs: Vec<Expr>,
    ) -> Self {
        Rule {
            family,
            table: table.into(),
            chain: chain.into(),
            handle: 0,
            position: None,
            exprs,
            userdata: None,
        }
    }

    /// Decodes a `NEWRULE` message.
    pub fn decode(msg: &NlMsg<'_>) -> Result<Self, DecodeError> {
        let mut r = Rule::new(Family::from_code(msg.family()), "", "", Vec::new());
        for a in msg.attrs() {
            let a = a?;
            match a.ty {
                NFTA_RULE_TABLE => r.table = a.str()?.to_owned(),
                NFTA_RULE_CHAIN => r.chain = a.str()?.to_owned(),
                NFTA_RULE_HANDLE => r.handle = a.be64()?,
                NFTA_RULE_POSITION => r.position = Some(a.be64()?),
                NFTA_RULE_USERDATA => r.userdata = Some(a.payload.to_vec()),
                NFTA_RULE_EXPRESSIONS => {
                    for e in a.nested() {
                        r.exprs.push(Expr::decode(e?)?);
                    }
                }
                _ => {}
            }
        }
        Ok(r)
    }

    /// The counter of the rule (the first `counter` expression): `(packets, bytes)`.
    pub fn counter(&self) -> Option<(u64, u64)> {
        self.exprs.iter().find_map(|e| match e {
            Expr::Counter { bytes, packets } => Some((*packets, *bytes)),
            _ => None,
        })
    }
}

/// A named set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// Family.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Set name.
    pub name: String,
    /// Handle (0 when describing a set to create).
    pub handle: u64,
    /// `NFT_SET_*` flags.
    pub flags: u32,
    /// nft datatype id of the key (ipv4_addr = 7, ipv6_addr = 8).
    pub key_type: u32,
    /// Key length in bytes.
    pub key_len: u32,
    /// Description size (a sizing hint and a hard cap in the kernel).
    pub size: Option<u32>,
    /// Default element timeout in ms.
    pub timeout: Option<u64>,
    /// Garbage collection interval in ms.
    pub gc_interval: Option<u32>,
    /// Set userdata.
    pub userdata: Option<Vec<u8>>,
    /// Live element count (kernels ≥ 6.16 report it).
    pub count: Option<u32>,
}

/// nft datatype id of `ipv4_addr`.
pub const TYPE_IPV4_ADDR: u32 = 7;
/// nft datatype id of `ipv6_addr`.
pub const TYPE_IPV6_ADDR: u32 = 8;

impl Set {
    /// A set to create.
    pub fn new(
        family: Family,
        table: impl Into<String>,
        name: impl Into<String>,
        key_type: u32,
        key_len: u32,
    ) -> Self {
        Set {
            family,
            table: table.into(),
            name: name.into(),
            handle: 0,
            flags: 0,
            key_type,
            key_len,
            size: None,
            timeout: None,
            gc_interval: None,
            userdata: None,
            count: None,
        }
    }

    pub(crate) fn encode(&self, w: &mut MsgWriter<'_>, id: u32) {
        w.put_str(NFTA_SET_TABLE, &self.table);
        w.put_str(NFTA_SET_NAME, &self.name);
        w.put_be32(NFTA_SET_FLAGS, self.flags);
        w.put_be32(NFTA_SET_KEY_TYPE, self.key_type);
        w.put_be32(NFTA_SET_KEY_LEN, self.key_len);
        w.put_be32(NFTA_SET_ID, id);
        if let Some(t) = self.timeout {
            w.put_be64(NFTA_SET_TIMEOUT, t);
        }
        if let Some(g) = self.gc_interval {
            w.put_be32(NFTA_SET_GC_INTERVAL, g);
        }
        if let Some(size) = self.size {
            let n = w.nest_start(NFTA_SET_DESC);
            w.put_be32(NFTA_SET_DESC_SIZE, size);
            w.nest_end(n);
        }
        if let Some(u) = &self.userdata {
            w.put(NFTA_SET_USERDATA, u);
        }
    }

    /// Decodes a `NEWSET` message.
    pub fn decode(msg: &NlMsg<'_>) -> Result<Self, DecodeError> {
        let mut s = Set::new(Family::from_code(msg.family()), "", "", 0, 0);
        for a in msg.attrs() {
            let a = a?;
            match a.ty {
                NFTA_SET_TABLE => s.table = a.str()?.to_owned(),
                NFTA_SET_NAME => s.name = a.str()?.to_owned(),
                NFTA_SET_HANDLE => s.handle = a.be64()?,
                NFTA_SET_FLAGS => s.flags = a.be32()?,
                NFTA_SET_KEY_TYPE => s.key_type = a.be32()?,
                NFTA_SET_KEY_LEN => s.key_len = a.be32()?,
                NFTA_SET_TIMEOUT => s.timeout = Some(a.be64()?),
                NFTA_SET_GC_INTERVAL => s.gc_interval = Some(a.be32()?),
                NFTA_SET_USERDATA => s.userdata = Some(a.payload.to_vec()),
                NFTA_SET_COUNT => s.count = Some(a.be32()?),
                NFTA_SET_DESC => {
                    for d in a.nested() {
                        let d = d?;
                        if d.ty == NFTA_SET_DESC_SIZE {
                            s.size = Some(d.be32()?);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(s)
    }
}

/// A set element to write, borrowing its data (so bulk loads allocate nothing per element).
#[derive(Debug, Clone, Copy, Default)]
pub struct ElemRef<'a> {
    /// Key bytes (4 for IPv4, 16 for IPv6), network order.
    pub key: &'a [u8],
    /// `NFT_SET_ELEM_*` flags (`INTERVAL_END`).
    pub flags: u32,
    /// Timeout in ms.
    pub timeout: Option<u64>,
    /// Remaining time in ms (refreshes an existing element on kernels ≥ 6.12).
    pub expiration: Option<u64>,
    /// Element userdata.
    pub userdata: Option<&'a [u8]>,
}

impl ElemRef<'_> {
    /// Bytes this element takes inside `NFTA_SET_ELEM_LIST_ELEMENTS`.
    pub fn encoded_len(&self) -> usize {
        use crate::wire::align4;
        let mut n = 4; // LIST_ELEM nest header
        n += 4 + 4 + align4(self.key.len()); // KEY nest + DATA_VALUE
        if self.flags != 0 {
            n += 8;
        }
        if self.timeout.is_some() {
            n += 12;
        }
        if self.expiration.is_some() {
            n += 12;
        }
        if let Some(u) = self.userdata {
            n += 4 + align4(u.len());
        }
        n
    }

    pub(crate) fn encode(&self, w: &mut MsgWriter<'_>) {
        let e = w.nest_start(NFTA_LIST_ELEM);
        w.put_data_value(NFTA_SET_ELEM_KEY, self.key);
        if self.flags != 0 {
            w.put_be32(NFTA_SET_ELEM_FLAGS, self.flags);
        }
        if let Some(t) = self.timeout {
            w.put_be64(NFTA_SET_ELEM_TIMEOUT, t);
        }
        if let Some(x) = self.expiration {
            w.put_be64(NFTA_SET_ELEM_EXPIRATION, x);
        }
        if let Some(u) = self.userdata {
            w.put(NFTA_SET_ELEM_USERDATA, u);
        }
        w.nest_end(e);
    }
}

/// A set element read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetElem {
    /// Key bytes.
    pub key: Vec<u8>,
    /// `NFT_SET_ELEM_*` flags.
    pub flags: u32,
    /// Timeout in ms, when it differs from the set default (the kernel omits it otherwise).
    pub timeout: Option<u64>,
    /// Remaining time in ms.
    pub expiration: Option<u64>,
    /// Element userdata.
    pub userdata: Option<Vec<u8>>,
}

impl SetElem {
    /// Decodes every element of a `NEWSETELEM` message, calling `f` for each.
    pub fn decode_all(msg: &NlMsg<'_>, mut f: impl FnMut(SetElem)) -> Result<(), DecodeError> {
        for a in msg.attrs() {
            let a = a?;
            if a.ty != NFTA_SET_ELEM_LIST_ELEMENTS {
                continue;
            }
            for e in a.nested() {
                let e = e?;
                let mut el = SetElem::default();
                for x in Attrs::new(e.payload) {
                    let x = x?;
                    match x.ty {
                        NFTA_SET_ELEM_KEY => el.key = x.data_value()?.to_vec(),
                        NFTA_SET_ELEM_FLAGS => el.flags = x.be32()?,
                        NFTA_SET_ELEM_TIMEOUT => el.timeout = Some(x.be64()?),
                        NFTA_SET_ELEM_EXPIRATION => el.expiration = Some(x.be64()?),
                        NFTA_SET_ELEM_USERDATA => el.userdata = Some(x.payload.to_vec()),
                        _ => {}
                    }
                }
                f(el);
            }
        }
        Ok(())
    }
}
