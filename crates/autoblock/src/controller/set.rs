//! The `set` layout: table `inet autoblock` (name from [`Config::table`]) with one timed hash
//! set per family and prefix length, one base chain on the input (or prerouting) hook, and one
//! `nfproto → saddr [→ mask] → lookup → counter → verdict` rule per set.
//!
//! It owns planning and committing set-layout changes; it does not own the wire codec
//! (`autoblock-netlink`) nor the chain layout (the parent module). Expiry is the kernel's job:
//! each element carries its own timeout; nothing here runs a timer.
//!
//! Design decisions, with the measurements behind them (Linux 6.18.44, 2 cores, throwaway
//! network namespaces):
//!
//! * **Prefixes: one hash set per prefix length, not an interval set.** 100,000 IPv4 /24
//!   prefixes with timeouts loaded with `nft -f`: interval (rbtree) set 1.60 s wall, 0.70 s
//!   kernel, 159 MB; then a one-element transaction in the same namespace took **1.92 s**.
//!   The same prefixes as network addresses in a timeout hash set: 0.45 s wall, 0.11 s
//!   kernel, 43 MB. The hash-per-length layout also lets overlapping prefixes coexist with
//!   their own timeouts (an rbtree refuses overlaps with `EEXIST`), exactly like the chain
//!   layout's independent rules. The cost is one rule per prefix length in use
//!   (`addr4`, `net4_24`, `net6_48`, …), created on demand, so the per-packet cost grows with
//!   the number of distinct lengths, not with the number of entries.
//! * **Sizing and growth.** A set's description size is a hard cap in the kernel (`ENFILE`),
//!   and expired-but-uncollected elements still count. New sets get
//!   `max(2 × needed, 65536)`; when a block would fill a set past 80 % of its size, a
//!   transaction of its own first re-sends `NEWSET` with `max(2 × needed, 65536)`. Verified
//!   here: the kernel accepts a size update of an existing set with the same key and flags,
//!   but applies it at commit, while elements in the *same* transaction are still checked
//!   against the old size (ENFILE) — hence the separate growth transaction, which changes
//!   nothing visible (test `grows_past_its_initial_size`). With [`Config::max_entries`] the size is that hard
//!   limit and `ENFILE` is reported against the entry that did not fit.
//! * **GC interval**: 10 s up to 262,144 slots, 30 s beyond (each GC run walks the whole
//!   table; expired elements are invisible to lookups immediately either way).
//! * **Refresh.** Re-blocking a timed entry sends `TIMEOUT` and `EXPIRATION` (kernels ≥ 6.12
//!   reset the expiry in place; probed at run time, see
//!   `Conn::probe_element_refresh`). Otherwise, and whenever the comment or the permanence
//!   of an entry changes (userdata is never updated in place), the element is removed and
//!   re-added in the same transaction: `DESTROYSETELEM` + `NEWSETELEM` on kernels ≥ 6.3, and
//!   `NEWSETELEM` + `DELSETELEM` + `NEWSETELEM` before (the first add makes the delete safe
//!   even if the element expired meanwhile).
//! * **Reading state.** Dumping a set costs the kernel O(n²) (1M elements: 8 s), so block and
//!   unblock never dump a large set to find out what exists: an empty set needs no read, up to
//!   [`GET_LIMIT`] entries are looked up one by one (one round trip each), and only larger
//!   batches against a non-empty set dump it. Counts come from `NFTA_SET_COUNT` (≥ 6.16)
//!   without a dump. `list` streams the dump without building an index.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use autoblock_netlink::consts::{NFT_META_NFPROTO, NFT_SET_TIMEOUT};
use autoblock_netlink::objects::{TYPE_IPV4_ADDR, TYPE_IPV6_ADDR};
use autoblock_netlink::{ElemOp, ElemRef, Expr, Family, PayloadBase, Rule, Set, SetElem, Verdict};

use super::*;
use crate::config::SetHook;

/// Entries per set looked up one by one before a dump of the set is cheaper.
pub const GET_LIMIT: usize = 4096;
/// Smallest set size autoblock creates.
const MIN_SIZE: u32 = 65_536;
/// `NFT_REJECT_ICMPX_UNREACH`: family-independent ICMP reject.
const NFT_REJECT_ICMPX_UNREACH: u32 = 2;
/// `NFT_REJECT_ICMPX_PORT_UNREACH`.
const NFT_REJECT_ICMPX_PORT_UNREACH: u8 = 1;

/// One set of the set layout, as reported by [`Controller::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetStatus {
    /// The set's name (`addr4`, `net4_24`, …).
    pub name: String,
    /// Prefix length of its entries.
    pub prefix_len: u8,
    /// Elements the kernel counts (kernels ≥ 6.16 report it directly; expired elements
    /// awaiting garbage collection included).
    pub elements: u64,
    /// The set's size (a hard cap in the kernel; autoblock grows it before it fills).
    pub size: Option<u32>,
    /// Whether the lookup rule for the set exists.
    pub has_rule: bool,
    /// Packets matched by the set's rule.
    pub packets: u64,
    /// Bytes matched by the set's rule.
    pub bytes: u64,
}

/// Identity of one set: family and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct SetKey {
    pub(super) fam: IpFamily,
    pub(super) len: u8,
}

impl SetKey {
    pub(super) fn of(net: &Net) -> SetKey {
        SetKey {
            fam: net.family(),
            len: net.prefix_len(),
        }
    }

    fn max_len(self) -> u8 {
        match self.fam {
            IpFamily::V4 => 32,
            IpFamily::V6 => 128,
        }
    }

    pub(super) fn name(self) -> String {
        let v = match self.fam {
            IpFamily::V4 => '4',
            IpFamily::V6 => '6',
        };
        if self.len == self.max_len() {
            format!("addr{v}")
        } else {
            format!("net{v}_{}", self.len)
        }
    }

    fn parse(name: &str) -> Option<SetKey> {
        let (fam, len) = match name {
            "addr4" => (IpFamily::V4, 32),
            "addr6" => (IpFamily::V6, 128),
            _ => {
                let (fam, rest) = if let Some(r) = name.strip_prefix("net4_") {
                    (IpFamily::V4, r)
                } else {
                    (IpFamily::V6, name.strip_prefix("net6_")?)
                };
                if rest.starts_with('0') && rest != "0" {
                    return None;
                }
                (fam, rest.parse::<u8>().ok()?)
            }
        };
        let k = SetKey { fam, len };
        let canonical = (k.len < k.max_len() || name.starts_with("addr")) && k.len <= k.max_len();
        canonical.then_some(k)
    }

    pub(super) fn key_len(self) -> usize {
        match self.fam {
            IpFamily::V4 => 4,
            IpFamily::V6 => 16,
        }
    }

    fn net_of(self, key: &[u8]) -> Option<Net> {
        let addr = match self.fam {
            IpFamily::V4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(key).ok()?)),
            IpFamily::V6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(key).ok()?)),
        };
        Net::new_masked(addr, self.len).ok()
    }
}

/// What was found in the set layout's table.
#[derive(Debug, Default)]
pub(super) struct SetState {
    chain: Option<Chain>,
    /// The chain of the other hook, if autoblock created one earlier.
    other_chain: bool,
    pub(super) sets: HashMap<SetKey, Set>,
    /// Our rules, by the set they look up.
    rules: HashMap<SetKey, Rule>,
    foreign_rules: usize,
}

/// What an operation of a set-layout batch was for.
#[derive(Debug)]
pub(super) enum SLabel {
    Structure(String),
    /// An element operation: the entry index of each element, in push order.
    Elems(Vec<u32>),
}

/// How an entry relates to what the kernel holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Add,
    Refresh,
    Replace,
    Keep,
    /// Not blocked: its expiry time has passed.
    Skip,
}

pub(super) fn timeout_ms(expires: Option<SystemTime>, now: SystemTime) -> Option<Option<u64>> {
    match expires {
        None => Some(None),
        Some(t) => {
            let d = t.duration_since(now).ok()?;
            if d.is_zero() {
                return None;
            }
            let ms = d.as_nanos().div_ceil(1_000_000);
            // Far beyond any real ban; keeps the kernel's jiffies conversion in range.
            Some(Some(u64::try_from(ms).unwrap_or(u64::MAX).min(1 << 40)))
        }
    }
}

impl<T: Transport> Controller<T> {
    fn set_chain_name(&self) -> &'static str {
        self.cfg.set_hook.chain_name()
    }

    fn set_rule_exprs(&self, k: SetKey) -> Vec<Expr> {
        let (proto, offset) = match k.fam {
            IpFamily::V4 => (nl::consts::NFPROTO_IPV4, 12),
            IpFamily::V6 => (nl::consts::NFPROTO_IPV6, 8),
        };
        let full = k.key_len() as u32;
        let mut v = vec![
            Expr::Meta {
                dreg: 1,
                key: NFT_META_NFPROTO,
            },
            Expr::Cmp {
                sreg: 1,
                op: nl::CmpOp::Eq,
                data: vec![proto],
            },
            Expr::Payload {
                dreg: 1,
                base: PayloadBase::Network,
                offset,
                len: full,
            },
        ];
        if k.len < k.max_len() {
            let mask = chain::prefix_mask(u32::from(k.len), k.key_len());
            v.push(Expr::Bitwise {
                sreg: 1,
                dreg: 1,
                len: full,
                mask,
                xor: vec![0; k.key_len()],
            });
        }
        v.push(Expr::Lookup {
            set: k.name(),
            sreg: 1,
            invert: false,
        });
        v.push(Expr::Counter {
            bytes: 0,
            packets: 0,
        });
        let log = Expr::Log {
            group: None,
            prefix: Some(self.cfg.log_prefix.clone()),
            level: None,
        };
        match self.cfg.action {
            Action::Drop => v.push(Expr::Immediate(Verdict::Drop)),
            Action::Reject => v.push(Expr::Reject {
                kind: NFT_REJECT_ICMPX_UNREACH,
                code: NFT_REJECT_ICMPX_PORT_UNREACH,
            }),
            Action::Log => v.push(log),
            Action::LogDrop => {
                v.push(log);
                v.push(Expr::Immediate(Verdict::Drop));
            }
        }
        v
    }

    /// Reads the table: chains, sets and the rules of our chain, at one generation.
    pub(super) fn set_read(&mut self) -> Result<(u32, SetState), Error> {
        let table = self.cfg.table.clone();
        let ours = self.set_chain_name();
        let other = match self.cfg.set_hook {
            SetHook::Input => SetHook::Prerouting.chain_name(),
            SetHook::Prerouting => SetHook::Input.chain_name(),
        };
        for _ in 0..self.cfg.max_retries.max(1) {
            let chains = self.conn.list_chains(Family::Inet, Some(&table))?;
            let sets = match self.conn.list_sets(Family::Inet, Some(&table)) {
                Ok(s) => s,
                // The set dump of a missing table ends in ENOENT: nothing is there yet.
                Err(nl::Error::Kernel { error, .. }) if error.errno == ENOENT => nl::Dumped {
                    genid: chains.genid,
                    items: Vec::new(),
                },
                Err(e) => return Err(e.into()),
            };
            if sets.genid != chains.genid {
                continue;
            }
            let mut st = SetState::default();
            for c in chains.items {
                if c.name == ours {
                    st.chain = Some(c);
                } else if c.name == other && c.hook.is_some() {
                    st.other_chain = true;
                }
            }
            for s in sets.items {
                if let Some(k) = SetKey::parse(&s.name) {
                    if s.key_len as usize == k.key_len() {
                        st.sets.insert(k, s);
                    }
                }
            }
            if st.chain.is_some() {
                let rules = self.conn.list_rules(Family::Inet, &table, Some(ours))?;
                if rules.genid != chains.genid {
                    continue;
                }
                for r in rules.items {
                    let k = r.exprs.iter().find_map(|e| match e {
                        Expr::Lookup { set, .. } => SetKey::parse(set),
                        _ => None,
                    });
                    match k {
                        Some(k) if !st.rules.contains_key(&k) => {
                            st.rules.insert(k, r);
                        }
                        _ => st.foreign_rules += 1,
                    }
                }
            }
            return Ok((chains.genid, st));
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }

    fn set_size_for(&self, needed: u64) -> u32 {
        match self.cfg.max_entries {
            Some(n) => n,
            None => u32::try_from(needed.saturating_mul(2))
                .unwrap_or(u32::MAX)
                .max(MIN_SIZE),
        }
    }

    fn set_desc(&self, k: SetKey, size: u32) -> Set {
        let (ty, len) = match k.fam {
            IpFamily::V4 => (TYPE_IPV4_ADDR, 4),
            IpFamily::V6 => (TYPE_IPV6_ADDR, 16),
        };
        let mut s = Set::new(Family::Inet, self.cfg.table.as_str(), k.name(), ty, len);
        s.flags = NFT_SET_TIMEOUT;
        // Without in-place growth a size would be a limit the set can never leave: such
        // kernels get sets without one (see `Config::resize_sets`).
        s.size = self.sets_sized().then_some(size);
        s.gc_interval = Some(if size > 262_144 { 30_000 } else { 10_000 });
        s
    }

    /// Whether the set layout's sets carry a size: a hard limit, or growth in place works.
    fn sets_sized(&self) -> bool {
        self.cfg.max_entries.is_some() || self.cfg.resize_sets.or(self.resize).unwrap_or(true)
    }

    /// Learns (once) whether this kernel raises an existing set's size in place.
    pub(super) fn probe_resize(&mut self) -> Result<(), Error> {
        if self.cfg.max_entries.is_none() && self.cfg.resize_sets.is_none() && self.resize.is_none()
        {
            self.resize = Some(self.conn.probe_set_resize()?);
        }
        Ok(())
    }

    /// Queues table, chain, the sets in `keys` (created or grown to hold `needed` elements)
    /// and their rules.
    pub(super) fn set_structure(
        &self,
        b: &mut Batch,
        labels: &mut Vec<SLabel>,
        st: &SetState,
        needs: &[(SetKey, u64)],
    ) -> Result<(), Error> {
        let table = self.cfg.table.as_str();
        let chain = self.set_chain_name();
        b.add_table(&Table::new(Family::Inet, table));
        labels.push(SLabel::Structure(format!("table inet {table}")));
        if st.other_chain {
            let other = match self.cfg.set_hook {
                SetHook::Input => SetHook::Prerouting.chain_name(),
                SetHook::Prerouting => SetHook::Input.chain_name(),
            };
            b.del_chain(Family::Inet, table, other, self.destroy);
            labels.push(SLabel::Structure(format!("the old chain {other}")));
        }
        let hook = Hook {
            num: match self.cfg.set_hook {
                SetHook::Input => nl::consts::NF_INET_LOCAL_IN,
                SetHook::Prerouting => nl::consts::NF_INET_PRE_ROUTING,
            },
            priority: self
                .cfg
                .set_priority
                .unwrap_or(self.cfg.set_hook.default_priority()),
        };
        if let Some(c) = &st.chain {
            if c.hook
                .is_some_and(|h| h.priority != hook.priority || h.num != hook.num)
            {
                return Err(Error::Conflict(format!(
                    "chain inet {table} {chain} exists with another hook or priority; run `autoblock remove --layout set` first to change it"
                )));
            }
        }
        b.add_chain(&Chain::base(Family::Inet, table, chain, hook));
        labels.push(SLabel::Structure(format!("chain inet {table} {chain}")));
        for &(k, needed) in needs {
            let size = self.set_target_size(st, k, needed);
            b.add_set(&self.set_desc(k, size));
            labels.push(SLabel::Structure(format!("set {}", k.name())));
        }
        for &(k, _) in needs {
            let want = self.set_rule_exprs(k);
            match st.rules.get(&k) {
                None => {
                    b.add_rule_parts(
                        Family::Inet,
                        table,
                        chain,
                        &want,
                        None,
                        RulePos::Append,
                        false,
                    );
                    labels.push(SLabel::Structure(format!("the rule for set {}", k.name())));
                }
                Some(r) if !same_rule(&r.exprs, &want) => {
                    b.replace_rule(Family::Inet, table, chain, r.handle, &want, None);
                    labels.push(SLabel::Structure(format!("the rule for set {}", k.name())));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The size set `k` should have to hold `needed` elements: the current size while it
    /// stays below 80 % full, otherwise `max(2 × needed, 65536)` (or the hard limit).
    fn set_target_size(&self, st: &SetState, k: SetKey, needed: u64) -> u32 {
        match (st.sets.get(&k), self.cfg.max_entries) {
            (_, Some(n)) => n,
            (Some(s), None) => match s.size {
                Some(cur) if cur > 0 && needed.saturating_mul(5) <= u64::from(cur) * 4 => cur,
                _ => self.set_size_for(needed),
            },
            (None, None) => self.set_size_for(needed),
        }
    }

    /// Grows existing sets that would fill up. The kernel applies a set's new size when the
    /// transaction commits, while elements of the same transaction are checked against the
    /// old size, so growth is its own (invisible) transaction before the elements'. Returns
    /// whether a growth transaction was attempted (the caller re-reads either way).
    pub(super) fn set_grow(
        &mut self,
        genid: u32,
        st: &SetState,
        needs: &[(SetKey, u64)],
    ) -> Result<bool, Error> {
        self.probe_resize()?;
        let sized = self.sets_sized();
        let mut b = Batch::new();
        let mut labels = Vec::new();
        for &(k, needed) in needs {
            let Some(cur) = st.sets.get(&k) else { continue };
            let size = self.set_target_size(st, k, needed);
            if !sized {
                // A set with a size (made by an older configuration) on a kernel that
                // cannot raise it: say so instead of letting it fill.
                if let Some(c) = cur.size.filter(|&c| u64::from(c) < needed) {
                    return Err(Error::Conflict(format!(
                        "set {} has a fixed size of {c} and this kernel cannot grow a set in place (Linux < 6.5): it cannot hold {needed} entries; run `autoblock --layout set save --file F`, `autoblock --layout set remove`, then `restore --file F` to re-create it without a size",
                        k.name()
                    )));
                }
                continue;
            }
            if cur.size.is_some_and(|c| c >= size) {
                continue;
            }
            debug!(set = %k.name(), from = ?cur.size, to = size, "growing set");
            b.add_set(&self.set_desc(k, size));
            labels.push(SLabel::Structure(format!(
                "set {} (growing it to {size})",
                k.name()
            )));
        }
        if b.is_empty() {
            return Ok(false);
        }
        self.set_commit(&mut b, genid, &labels, &[])?;
        Ok(true)
    }

    /// Current element count of a set (without a dump on kernels that report it).
    pub(super) fn set_count(&mut self, st: &SetState, k: SetKey) -> Result<u64, Error> {
        let Some(s) = st.sets.get(&k) else {
            return Ok(0);
        };
        if let Some(c) = s.count {
            return Ok(u64::from(c));
        }
        let n = std::cell::Cell::new(0u64);
        let table = self.cfg.table.clone();
        self.conn.for_each_element(
            Family::Inet,
            &table,
            &s.name,
            || n.set(0),
            |_| n.set(n.get() + 1),
        )?;
        Ok(n.get())
    }

    /// Finds which of `idx` (indexes into `entries`, all of set `k`) exist, with their
    /// current element.
    fn set_existing(
        &mut self,
        st: &SetState,
        k: SetKey,
        nets: &[Net],
        idx: &[u32],
        count: u64,
    ) -> Result<Vec<Option<SetElem>>, Error> {
        let mut out = vec![None; idx.len()];
        if !st.sets.contains_key(&k) || count == 0 {
            return Ok(out);
        }
        let table = self.cfg.table.clone();
        let name = k.name();
        if idx.len() <= GET_LIMIT {
            for (o, &i) in out.iter_mut().zip(idx) {
                let key = nets[i as usize].octets();
                *o = self.conn.get_element(Family::Inet, &table, &name, &key)?;
            }
            return Ok(out);
        }
        let pos: HashMap<Vec<u8>, usize> = idx
            .iter()
            .enumerate()
            .map(|(p, &i)| (nets[i as usize].octets(), p))
            .collect();
        let cell = std::cell::RefCell::new(&mut out);
        self.conn.for_each_element(
            Family::Inet,
            &table,
            &name,
            || cell.borrow_mut().iter_mut().for_each(|o| *o = None),
            |e| {
                if let Some(&p) = pos.get(&e.key) {
                    cell.borrow_mut()[p] = Some(e);
                }
            },
        )?;
        Ok(out)
    }

    fn refresh_supported(&mut self) -> Result<bool, Error> {
        if let Some(r) = self.cfg.refresh_timeouts.or(self.refresh) {
            return Ok(r);
        }
        let r = self.conn.probe_element_refresh()?;
        self.refresh = Some(r);
        Ok(r)
    }

    /// Groups entry indexes by set.
    fn group(nets: &[Net]) -> Vec<(SetKey, Vec<u32>)> {
        let mut g: HashMap<SetKey, Vec<u32>> = HashMap::new();
        for (i, n) in nets.iter().enumerate() {
            g.entry(SetKey::of(n)).or_default().push(i as u32);
        }
        let mut v: Vec<_> = g.into_iter().collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Commits a set-layout batch; errors name the entry (element) the kernel pointed at.
    /// Queues the removal of `nets[i]` for every `i` in `idx` from set `name`, with no error
    /// for elements that are already gone: `DESTROYSETELEM` where the kernel has it,
    /// otherwise add-then-delete in the same batch (netlink-facts §6). Nothing is queued for
    /// an empty `idx`.
    fn queue_removal(
        &self,
        b: &mut Batch,
        labels: &mut Vec<SLabel>,
        table: &str,
        name: &str,
        nets: &[Net],
        idx: &[u32],
    ) {
        if idx.is_empty() {
            return;
        }
        let ops: &[ElemOp] = if self.destroy {
            &[ElemOp::Destroy]
        } else {
            &[ElemOp::Add, ElemOp::Delete]
        };
        for &op in ops {
            let mut w = b.elements(op, Family::Inet, table, name);
            for &i in idx {
                let key = nets[i as usize].octets();
                w.push(&ElemRef {
                    key: &key,
                    ..Default::default()
                });
            }
            w.finish();
            labels.push(SLabel::Elems(idx.to_vec()));
        }
    }

    pub(super) fn set_commit(
        &mut self,
        b: &mut Batch,
        genid: u32,
        labels: &[SLabel],
        nets: &[Net],
    ) -> Result<bool, Error> {
        let max_entries = self.cfg.max_entries;
        self.commit_guarded(
            b,
            genid,
            "re-read the sets with `autoblock list --layout set` to see what was applied",
            |e| {
                let entry = match labels.get(e.op.0 as usize) {
                    Some(SLabel::Elems(v)) => match e.element.and_then(|x| v.get(x)) {
                        Some(&i) => nets
                            .get(i as usize)
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "an entry".into()),
                        None => "an entry of the batch".to_owned(),
                    },
                    Some(SLabel::Structure(s)) => s.clone(),
                    None => "the transaction".to_owned(),
                };
                if e.error.errno == libc_enfile() {
                    return Error::Conflict(format!(
                        "the set is full: {entry} does not fit (max_entries is {}); nothing was applied",
                        max_entries
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "unlimited".into())
                    ));
                }
                Error::Rejected {
                    entry,
                    error: e.error.clone(),
                }
            },
        )
    }

    pub(super) fn set_init(&mut self) -> Result<(), Error> {
        self.probe_resize()?;
        for _ in 0..self.cfg.max_retries {
            let (genid, st) = self.set_read()?;
            let mut needs = Vec::new();
            for fam in self.families() {
                let k = SetKey {
                    fam,
                    len: SetKey { fam, len: 0 }.max_len(),
                };
                needs.push((k, self.set_count(&st, k)?));
            }
            let mut b = Batch::new();
            let mut labels = Vec::new();
            self.set_structure(&mut b, &mut labels, &st, &needs)?;
            if self.set_commit(&mut b, genid, &labels, &[])? {
                return Ok(());
            }
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }

    /// `entries` come from [`Controller::checked`]: merged and validated.
    pub(super) fn set_block(&mut self, entries: &[Entry]) -> Result<Report, Error> {
        let span = info_span!("set_block", entries = entries.len());
        let _g = span.enter();
        // Element userdata: the comment only (the expiry is the element's own timeout).
        let mut udata = Vec::with_capacity(entries.len());
        for e in entries {
            udata.push(match e.comment.as_deref().filter(|c| !c.is_empty()) {
                Some(c) => Some(udata::comment(c).ok_or_else(|| InputError::BadComment {
                    comment: c.to_owned(),
                    reason: "too long: a set element comment holds at most 253 bytes",
                })?),
                None => None,
            });
        }
        let nets: Vec<Net> = entries.iter().map(|e| e.net).collect();
        let groups = Self::group(&nets);
        let refresh = if entries.iter().any(|e| e.expires.is_some()) {
            self.refresh_supported()?
        } else {
            false
        };
        // Probed before the first read: the probe commits, which moves the generation.
        self.probe_resize()?;
        for attempt in 0..self.cfg.max_retries {
            let now = SystemTime::now();
            let (genid, st) = self.set_read()?;
            let mut report = Report {
                retries: attempt,
                ..Report::default()
            };
            let mut plans = vec![Plan::Keep; entries.len()];
            let mut timeouts: Vec<Option<u64>> = vec![None; entries.len()];
            let mut needs = Vec::with_capacity(groups.len());
            for (k, idx) in &groups {
                let count = self.set_count(&st, *k)?;
                let existing = self.set_existing(&st, *k, &nets, idx, count)?;
                let mut added = 0u64;
                for (&i, ex) in idx.iter().zip(existing) {
                    let i = i as usize;
                    let e = &entries[i];
                    let Some(t) = timeout_ms(e.expires, now) else {
                        report.warnings.push(format!(
                            "{} was not blocked: its expiry time has passed",
                            e.net
                        ));
                        plans[i] = Plan::Skip;
                        continue;
                    };
                    timeouts[i] = t;
                    plans[i] = match ex {
                        None => {
                            added += 1;
                            Plan::Add
                        }
                        Some(ex) => {
                            let same_comment = ex.userdata.as_deref() == udata[i].as_deref();
                            match (t, ex.timeout, ex.expiration) {
                                (None, None, None) if same_comment => Plan::Keep,
                                (Some(want), Some(_), Some(left))
                                    if same_comment && want.abs_diff(left) < 1_000 =>
                                {
                                    Plan::Keep
                                }
                                (Some(_), Some(_), Some(_)) if same_comment && refresh => {
                                    Plan::Refresh
                                }
                                _ => Plan::Replace,
                            }
                        }
                    };
                }
                needs.push((*k, count + added));
            }
            if self.set_grow(genid, &st, &needs)? {
                continue;
            }
            let mut b = Batch::with_capacity(4096 + entries.len() * 40);
            let mut labels = Vec::new();
            self.set_structure(&mut b, &mut labels, &st, &needs)?;
            let table = self.cfg.table.clone();
            for (k, idx) in &groups {
                let name = k.name();
                let replaced: Vec<u32> = idx
                    .iter()
                    .copied()
                    .filter(|&i| plans[i as usize] == Plan::Replace)
                    .collect();
                self.queue_removal(&mut b, &mut labels, &table, &name, &nets, &replaced);
                let mut order = Vec::new();
                let mut w = b.elements(ElemOp::Add, Family::Inet, &table, &name);
                for &i in idx {
                    let iu = i as usize;
                    if matches!(plans[iu], Plan::Keep | Plan::Skip) {
                        continue;
                    }
                    let key = nets[iu].octets();
                    let t = timeouts[iu];
                    w.push(&ElemRef {
                        key: &key,
                        timeout: t,
                        expiration: if refresh { t } else { None },
                        userdata: udata[iu].as_deref(),
                        ..Default::default()
                    });
                    order.push(i);
                }
                w.finish();
                labels.push(SLabel::Elems(order));
            }
            for (i, p) in plans.iter().enumerate() {
                match p {
                    Plan::Add => report.changed.push(nets[i]),
                    Plan::Refresh | Plan::Replace => report.updated.push(nets[i]),
                    Plan::Keep | Plan::Skip => report.unchanged.push(nets[i]),
                }
            }
            if self.set_commit(&mut b, genid, &labels, &nets)? {
                return Ok(report);
            }
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }

    pub(super) fn set_unblock(&mut self, nets: &[Net]) -> Result<Report, Error> {
        let mut nets = nets.to_vec();
        let mut seen = std::collections::HashSet::new();
        nets.retain(|n| seen.insert(*n));
        let groups = Self::group(&nets);
        for attempt in 0..self.cfg.max_retries {
            let (genid, st) = self.set_read()?;
            let mut report = Report {
                retries: attempt,
                ..Report::default()
            };
            let mut b = Batch::new();
            let mut labels = Vec::new();
            let table = self.cfg.table.clone();
            for (k, idx) in &groups {
                let count = self.set_count(&st, *k)?;
                let existing = self.set_existing(&st, *k, &nets, idx, count)?;
                let gone: Vec<u32> = idx
                    .iter()
                    .zip(&existing)
                    .filter(|(_, e)| e.is_some())
                    .map(|(i, _)| *i)
                    .collect();
                for (&i, e) in idx.iter().zip(&existing) {
                    if e.is_some() {
                        report.changed.push(nets[i as usize]);
                    } else {
                        report.unchanged.push(nets[i as usize]);
                    }
                }
                if gone.is_empty() {
                    continue;
                }
                self.queue_removal(&mut b, &mut labels, &table, &k.name(), &nets, &gone);
            }
            if b.is_empty() || self.set_commit(&mut b, genid, &labels, &nets)? {
                return Ok(report);
            }
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }

    /// Streams every entry of the set layout to `f`, set by set, without building an index
    /// (a set of a million elements is listed in 6 MB; the kernel still needs seconds to
    /// dump it when idle, and took 40 s of CPU, 126 s wall, on a busy 2-core host, where
    /// `nft list set` took 134 s and 645 MB). `expires` is computed from the remaining time the kernel
    /// reports; `packets`/`bytes` are 0 because counters are per set rule, not per entry
    /// (see [`Controller::status`]). If another program changes the ruleset during the dump,
    /// the dump restarts and entries already passed to `f` may be passed again.
    pub fn for_each_listed(&mut self, f: impl FnMut(Listed)) -> Result<(), Error> {
        if self.cfg.layout != Layout::Set {
            self.list()?.into_iter().for_each(f);
            return Ok(());
        }
        self.set_walk(|_| {}, f)
    }

    /// Dumps every set; `reset(k)` is called before each (re)start of the dump of set `k`.
    fn set_walk(
        &mut self,
        mut reset: impl FnMut(&str),
        mut f: impl FnMut(Listed),
    ) -> Result<(), Error> {
        let (_, st) = self.set_read()?;
        let table = self.cfg.table.clone();
        let mut keys: Vec<SetKey> = st.sets.keys().copied().collect();
        keys.sort();
        for k in keys {
            let action = match st.rules.get(&k) {
                Some(r) => rule_action(&r.exprs),
                None => self.cfg.action,
            };
            let name = k.name();
            self.conn.for_each_element(
                Family::Inet,
                &table,
                &name,
                || reset(&name),
                |e| {
                    let Some(net) = k.net_of(&e.key) else { return };
                    f(Listed {
                        net,
                        action,
                        comment: e
                            .userdata
                            .as_deref()
                            .and_then(udata::parse_comment)
                            .map(str::to_owned),
                        // The kernel computes the time left when it fills the reply
                        // message, just before we read it: anchor it at each element's
                        // arrival (a dump of a large set takes minutes).
                        expires: e
                            .expiration
                            .filter(|_| e.timeout.is_some())
                            .map(|ms| SystemTime::now() + Duration::from_millis(ms)),
                        packets: 0,
                        bytes: 0,
                    })
                },
            )?;
        }
        Ok(())
    }

    pub(super) fn set_list(&mut self) -> Result<Vec<Listed>, Error> {
        let out = std::cell::RefCell::new(Vec::new());
        let mut mark = 0usize;
        let mut current = String::new();
        // The first call for a set marks where its entries start; a later call for the same
        // set is a restarted dump: drop what the interrupted pass added.
        self.set_walk(
            |name| {
                let mut v = out.borrow_mut();
                if name == current {
                    v.truncate(mark);
                } else {
                    current = name.to_owned();
                    mark = v.len();
                }
            },
            |l| out.borrow_mut().push(l),
        )?;
        Ok(out.into_inner())
    }

    pub(super) fn set_status(&mut self) -> Result<Vec<FamilyStatus>, Error> {
        let (_, st) = self.set_read()?;
        let mut out = Vec::new();
        for fam in self.families() {
            let mut keys: Vec<SetKey> = st.sets.keys().copied().filter(|k| k.fam == fam).collect();
            keys.sort();
            let mut sets = Vec::new();
            for k in keys {
                let count = self.set_count(&st, k)?;
                let (packets, bytes) = st.rules.get(&k).and_then(|r| r.counter()).unwrap_or((0, 0));
                sets.push(SetStatus {
                    name: k.name(),
                    prefix_len: k.len,
                    elements: count,
                    size: st.sets.get(&k).and_then(|s| s.size),
                    has_rule: st.rules.contains_key(&k),
                    packets,
                    bytes,
                });
            }
            out.push(FamilyStatus {
                family: fam,
                chain_exists: st.chain.is_some(),
                jump_first: st.chain.is_some() && sets.iter().all(|s| s.has_rule),
                entries: sets.iter().map(|s| s.elements as usize).sum(),
                foreign_rules: if fam == IpFamily::V4 {
                    st.foreign_rules
                } else {
                    0
                },
                packets: sets.iter().map(|s| s.packets).sum(),
                bytes: sets.iter().map(|s| s.bytes).sum(),
                sets,
            });
        }
        Ok(out)
    }

    pub(super) fn set_flush(&mut self) -> Result<usize, Error> {
        for _ in 0..self.cfg.max_retries {
            let (genid, st) = self.set_read()?;
            let mut b = Batch::new();
            let mut labels = Vec::new();
            let mut n = 0usize;
            let mut keys: Vec<SetKey> = st.sets.keys().copied().collect();
            keys.sort();
            for k in keys {
                n += self.set_count(&st, k)? as usize;
                b.flush_set(Family::Inet, &self.cfg.table, &k.name());
                labels.push(SLabel::Structure(format!("set {}", k.name())));
            }
            if b.is_empty() || self.set_commit(&mut b, genid, &labels, &[])? {
                return Ok(n);
            }
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }

    pub(super) fn set_remove(&mut self) -> Result<(), Error> {
        for _ in 0..self.cfg.max_retries {
            let genid = self.conn.genid()?;
            let exists = self
                .conn
                .list_tables(Family::Inet)?
                .items
                .iter()
                .any(|t| t.name == self.cfg.table);
            if !exists {
                return Ok(());
            }
            let mut b = Batch::new();
            b.del_table(Family::Inet, &self.cfg.table, self.destroy);
            let labels = [SLabel::Structure(format!("table inet {}", self.cfg.table))];
            if self.set_commit(&mut b, genid, &labels, &[])? {
                return Ok(());
            }
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }

    /// `desired` comes from [`Controller::checked`]: merged and validated.
    pub(super) fn set_sync(&mut self, desired: &[Entry]) -> Result<Report, Error> {
        // Whatever is in the sets but not desired goes; then the desired entries are blocked.
        // Two transactions, each atomic: the removal never unblocks a desired entry.
        let keep: std::collections::HashSet<Net> = desired.iter().map(|e| e.net).collect();
        let mut stale = Vec::new();
        self.for_each_listed(|l| {
            if !keep.contains(&l.net) {
                stale.push(l.net);
            }
        })?;
        let removed = self.set_unblock(&stale)?;
        let mut report = self.set_block(desired)?;
        report.removed = removed.changed;
        report.retries += removed.retries;
        Ok(report)
    }
}

/// Whether a rule's expressions are `want` (counters ignored).
fn same_rule(have: &[Expr], want: &[Expr]) -> bool {
    have.len() == want.len()
        && have.iter().zip(want).all(|(h, w)| match (h, w) {
            (Expr::Counter { .. }, Expr::Counter { .. }) => true,
            (
                Expr::Log {
                    group: g1,
                    prefix: p1,
                    ..
                },
                Expr::Log {
                    group: g2,
                    prefix: p2,
                    ..
                },
            ) => g1 == g2 && p1 == p2,
            _ => h == w,
        })
}

/// The action a set rule implements.
fn rule_action(exprs: &[Expr]) -> Action {
    let log = exprs.iter().any(|e| matches!(e, Expr::Log { .. }));
    let drop = exprs
        .iter()
        .any(|e| matches!(e, Expr::Immediate(Verdict::Drop)));
    let reject = exprs.iter().any(|e| matches!(e, Expr::Reject { .. }));
    match (reject, log, drop) {
        (true, _, _) => Action::Reject,
        (_, true, true) => Action::LogDrop,
        (_, false, true) => Action::Drop,
        _ => Action::Log,
    }
}

/// `ENFILE` (set full).
fn libc_enfile() -> i32 {
    23
}

/// `ENOENT`.
const ENOENT: i32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names_round_trip() {
        for (fam, len, name) in [
            (IpFamily::V4, 32, "addr4"),
            (IpFamily::V6, 128, "addr6"),
            (IpFamily::V4, 24, "net4_24"),
            (IpFamily::V6, 48, "net6_48"),
            (IpFamily::V4, 0, "net4_0"),
        ] {
            let k = SetKey { fam, len };
            assert_eq!(k.name(), name);
            assert_eq!(SetKey::parse(name), Some(k));
        }
        for bad in [
            "net4_32", "net4_33", "net6_129", "net4_024", "addr", "net4_", "x",
        ] {
            assert_eq!(SetKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn timeouts_round_up_and_refuse_the_past() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(timeout_ms(None, now), Some(None));
        assert_eq!(
            timeout_ms(Some(now + Duration::from_secs(3600)), now),
            Some(Some(3_600_000))
        );
        assert_eq!(timeout_ms(Some(now - Duration::from_secs(1)), now), None);
        assert_eq!(timeout_ms(Some(now), now), None);
    }

    #[test]
    fn actions_are_read_back_from_rules() {
        let log = Expr::Log {
            group: None,
            prefix: Some("p".into()),
            level: None,
        };
        let drop = Expr::Immediate(Verdict::Drop);
        assert_eq!(rule_action(std::slice::from_ref(&drop)), Action::Drop);
        assert_eq!(rule_action(&[log.clone(), drop]), Action::LogDrop);
        assert_eq!(rule_action(&[log]), Action::Log);
    }
}
