//! The controller: block, unblock, sync, list, flush and remove, each as one atomic
//! nf_tables transaction built from a fresh, generation-checked read of the ruleset.
//!
//! Every write follows the same loop: read state at generation G → plan → commit guarded by
//! G → on `ERESTART` (another program changed the ruleset) read again and re-plan. Nothing is
//! half-applied: the kernel commits the whole batch or none of it. This module knows nothing
//! of files, logs or the command line.

use std::collections::HashMap;
use std::time::SystemTime;

use autoblock_netlink::{
    self as nl, udata, Batch, Chain, CommitError, CommitOptions, Conn, Hook, OpId, RulePos, Socket,
    Table, Transport,
};
use tracing::{debug, info_span};

use crate::allow::Allowlist;
use crate::chain::{self, nf_family, ParsedRule, RuleKind};
use crate::config::{Action, Config, Layout};
use crate::entry::{self, Entry, IpFamily, Net};
use crate::error::{Error, InputError};
use crate::meta;

/// Streamed bulk loads ([`Controller::block_stream`]).
mod bulk;
/// Mixed block/unblock transactions without element reads (the async service's fast path).
#[cfg(feature = "tokio")]
mod churn;
/// What the chain layout knows between operations.
mod known;
/// The set layout's implementation of the operations below.
mod set;

pub use bulk::{BadEntry, BulkError, BulkOptions, BulkProgress, BulkReport, SetLoad};
pub use set::SetStatus;

/// The iptables table autoblock's chain lives in.
pub const FILTER: &str = "filter";
/// The iptables base chain that jumps to autoblock's chain.
pub const INPUT: &str = "INPUT";

/// Outcome of [`Controller::block`] / [`Controller::unblock`] / [`Controller::sync`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Entries that were added (block) or removed (unblock, sync).
    pub changed: Vec<Net>,
    /// Entries whose metadata or action was updated in place.
    pub updated: Vec<Net>,
    /// Entries that were already in the requested state.
    pub unchanged: Vec<Net>,
    /// Entries sync removed.
    pub removed: Vec<Net>,
    /// Things worth telling the administrator.
    pub warnings: Vec<String>,
    /// How many times the transaction was rebuilt because another program changed the
    /// ruleset meanwhile.
    pub retries: u32,
}

/// One blocked entry as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Listed {
    /// The network.
    pub net: Net,
    /// The action its rules implement.
    pub action: Action,
    /// The administrator's comment.
    pub comment: Option<String>,
    /// When it expires.
    pub expires: Option<SystemTime>,
    /// Packets matched (by the drop/reject rule, or the log rule for `log`).
    pub packets: u64,
    /// Bytes matched.
    pub bytes: u64,
}

/// Per-family status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FamilyStatus {
    /// IPv4 or IPv6.
    pub family: IpFamily,
    /// Whether the chain exists.
    pub chain_exists: bool,
    /// Whether the jump is the first rule of `INPUT`.
    pub jump_first: bool,
    /// Entries in the chain.
    pub entries: usize,
    /// Rules in the chain that autoblock does not understand (left alone).
    pub foreign_rules: usize,
    /// Packets dropped/rejected/logged by the chain's rules.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Set layout: the family's sets (empty for the chain layout).
    pub sets: Vec<SetStatus>,
}

/// What the controller found in one family.
#[derive(Debug, Default)]
struct FamState {
    table: bool,
    input: bool,
    chain: bool,
    /// Handles of jumps to our chain in INPUT, and whether the first INPUT rule is one.
    jumps: Vec<u64>,
    jump_first: bool,
    first_input: Option<u64>,
    rules: Vec<ParsedRule>,
    foreign: Vec<u64>,
}

/// What an operation in a batch was for (to name it in errors).
#[derive(Debug, Clone, Copy)]
enum Label {
    Structure(&'static str),
    Entry(usize),
}

/// Blocks and unblocks addresses in nf_tables.
#[derive(Debug)]
pub struct Controller<T: Transport = Socket> {
    conn: Conn<T>,
    cfg: Config,
    allow: Allowlist,
    destroy: bool,
    /// Whether set element timeouts can be refreshed in place; probed on first use.
    refresh: Option<bool>,
    /// Whether an existing set's size can be raised in place; probed on first use.
    resize: Option<bool>,
    /// The chain layout's state after this controller's last commit (see `known.rs`).
    known: Option<known::Known>,
    /// Handles the kernel echoed for the last committed batch.
    echoed: Vec<(OpId, u64)>,
    /// The network namespace's cookie, when the transport can tell it.
    netns_cookie: Option<u64>,
}

impl Controller<Socket> {
    /// Opens a netlink connection in the calling thread's network namespace, reads the host's
    /// addresses for the allowlist and probes the kernel's capabilities.
    pub fn open(cfg: Config) -> Result<Self, Error> {
        let mut conn = Conn::open()?;
        let cookie = conn.transport().netns_cookie();
        let host = if cfg.allow_host_addresses {
            nl::local_addresses().map_err(|e| nl::Error::Io {
                op: "getifaddrs",
                source: e,
            })?
        } else {
            Vec::new()
        };
        let mut ctl = Controller::with_conn(conn, cfg, &host)?;
        ctl.netns_cookie = cookie;
        Ok(ctl)
    }
}

impl<T: Transport> Controller<T> {
    /// A controller over an existing connection (tests use a fake transport).
    pub fn with_conn(
        mut conn: Conn<T>,
        cfg: Config,
        host: &[std::net::IpAddr],
    ) -> Result<Self, Error> {
        cfg.validate()?;
        let destroy = match cfg.use_destroy {
            Some(d) => d,
            None => conn.probe_destroy()?,
        };
        let allow = Allowlist::new(host, &cfg.allow);
        Ok(Controller {
            conn,
            cfg,
            allow,
            destroy,
            refresh: None,
            resize: None,
            known: None,
            echoed: Vec::new(),
            netns_cookie: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The allowlist in force.
    pub fn allowlist(&self) -> &Allowlist {
        &self.allow
    }

    /// Whether `DESTROY*` messages are used (kernel ≥ 6.3, unless forced off).
    pub fn uses_destroy(&self) -> bool {
        self.destroy
    }

    /// The netlink connection.
    pub fn conn(&mut self) -> &mut Conn<T> {
        &mut self.conn
    }

    /// Checks entries before anything is sent: allowlist, comments, the empty prefix.
    pub fn validate(&self, entries: &[Entry]) -> Result<(), InputError> {
        for e in entries {
            self.allow.check(&e.net)?;
            if let Some(c) = &e.comment {
                entry::check_comment(c)?;
            }
            meta::encode(e.expires, e.comment.as_deref())?;
        }
        Ok(())
    }

    /// The entries with duplicates merged (the first one's metadata wins), checked as by
    /// [`Controller::validate`]: what every layout's block and sync work on.
    fn checked(&self, entries: &[Entry]) -> Result<Vec<Entry>, Error> {
        let mut entries = entries.to_vec();
        entry::dedup(&mut entries);
        self.validate(&entries)?;
        Ok(entries)
    }

    fn families(&self) -> [IpFamily; 2] {
        [IpFamily::V4, IpFamily::V6]
    }

    fn read_family(&mut self, f: IpFamily) -> Result<(u32, FamState), Error> {
        let fam = nf_family(f);
        let chains = self.conn.list_chains(fam, Some(FILTER))?;
        let mut st = FamState::default();
        let mut genid = chains.genid;
        for c in &chains.items {
            st.table = true;
            if c.name == INPUT {
                st.input = true;
            }
            if c.name == self.cfg.chain {
                st.chain = true;
            }
        }
        if !st.table {
            st.table = self
                .conn
                .list_tables(fam)?
                .items
                .iter()
                .any(|t| t.name == FILTER);
        }
        if st.input {
            let rules = self.conn.list_rules(fam, FILTER, Some(INPUT))?;
            if rules.genid != genid {
                return Err(Error::TooManyRetries(0)); // caller retries
            }
            st.first_input = rules.items.first().map(|r| r.handle);
            for (i, r) in rules.items.iter().enumerate() {
                if chain::is_jump(r, &self.cfg.chain) {
                    st.jumps.push(r.handle);
                    if i == 0 {
                        st.jump_first = true;
                    }
                }
            }
        }
        if st.chain {
            let rules = self.conn.list_rules(fam, FILTER, Some(&self.cfg.chain))?;
            if rules.genid != genid {
                return Err(Error::TooManyRetries(0));
            }
            genid = rules.genid;
            for r in &rules.items {
                match chain::parse_rule(r) {
                    Some(p) if p.net.family() == f => st.rules.push(p),
                    _ => st.foreign.push(r.handle),
                }
            }
        }
        Ok((genid, st))
    }

    /// Reads both families at one generation.
    fn read(&mut self) -> Result<(u32, [FamState; 2]), Error> {
        for _ in 0..self.cfg.max_retries.max(1) {
            let a = self.read_family(IpFamily::V4);
            let b = self.read_family(IpFamily::V6);
            match (a, b) {
                (Ok((g4, s4)), Ok((g6, s6))) if g4 == g6 => return Ok((g4, [s4, s6])),
                (Ok(_), Ok(_))
                | (Err(Error::TooManyRetries(0)), _)
                | (_, Err(Error::TooManyRetries(0))) => continue,
                (Err(e), _) | (_, Err(e)) => return Err(e),
            }
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }

    /// The state to plan a write on: what this controller's last commit left, if the ruleset
    /// generation says nothing changed since, else a fresh read. The flag says which.
    fn read_for_write(&mut self) -> Result<(u32, [FamState; 2], bool), Error> {
        if let Some(k) = self.known.take() {
            if self.conn.genid()? == k.genid {
                debug!(genid = k.genid, "chain state known; not re-read");
                return Ok((k.genid, k.states, true));
            }
        }
        let (genid, states) = self.read()?;
        Ok((genid, states, false))
    }

    /// For a state that was not read just now: checks, one rule at a time, that the rules a
    /// batch is about to delete or replace are what the state says (a few of them; a long
    /// list is planned on a fresh read instead). `false` = read again.
    fn confirm(&mut self, states: &[FamState; 2], track: &known::Track) -> Result<bool, Error> {
        const MAX_CHECKS: usize = 64;
        if track.touched().count() > MAX_CHECKS {
            return Ok(false);
        }
        let touched: Vec<(usize, u64)> = track.touched().collect();
        for (fi, handle) in touched {
            let fam = nf_family(self.families()[fi]);
            let want = states[fi].rules.iter().find(|r| r.handle == handle);
            let got = self
                .conn
                .get_rule(fam, FILTER, &self.cfg.chain, handle)?
                .and_then(|r| chain::parse_rule(&r));
            let same = match (want, got) {
                (Some(w), Some(g)) => w.net == g.net && w.kind == g.kind && w.comment == g.comment,
                _ => false,
            };
            if !same {
                debug!(handle, "known chain state is stale; reading again");
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// After a commit guarded by `genid` succeeded: remember the state it left, if certain.
    fn settle(&mut self, genid: u32, states: [FamState; 2], track: known::Track) {
        let echoed = std::mem::take(&mut self.echoed);
        self.known = track.apply(states, &echoed).map(|states| known::Known {
            genid: known::next_genid(genid),
            states,
        });
    }

    /// The chain layout's known state, encoded for the next process in this network
    /// namespace (`None` when there is nothing certain to hand on, or the kernel cannot name
    /// the namespace). The encoding is private to this crate; hand it back, unchanged, to
    /// [`Controller::use_chain_state`]. The CLI keeps it in `/run/autoblock`.
    pub fn chain_state(&self) -> Option<Vec<u8>> {
        let k = self.known.as_ref()?;
        let cookie = self.netns_cookie?;
        Some(known::encode(k, cookie, &self.cfg.chain))
    }

    /// Takes a state from [`Controller::chain_state`] of an earlier process. It is used only
    /// if it belongs to this network namespace and chain, and only while the ruleset
    /// generation shows no change since; rules about to be deleted are checked one by one.
    /// Returns whether it was accepted.
    pub fn use_chain_state(&mut self, bytes: &[u8]) -> bool {
        let Some(cookie) = self.netns_cookie else {
            return false;
        };
        self.known = known::decode(bytes, cookie, &self.cfg.chain);
        self.known.is_some()
    }

    /// Queues what is missing of table, `INPUT`, the chain and the jump at the head of INPUT.
    fn ensure_structure(&self, b: &mut Batch, labels: &mut Vec<Label>, f: IpFamily, st: &FamState) {
        let fam = nf_family(f);
        let push = |op: OpId, l: Label, labels: &mut Vec<Label>| {
            debug_assert_eq!(op.0 as usize, labels.len());
            labels.push(l);
        };
        if !st.table {
            let op = b.add_table(&Table::new(fam, FILTER));
            push(op, Label::Structure("table filter"), labels);
        }
        if !st.input {
            // Exactly what iptables-nft creates: base chain INPUT, hook input, priority 0,
            // type filter, policy accept.
            let op = b.add_chain(&Chain::base(
                fam,
                FILTER,
                INPUT,
                Hook {
                    num: nl::consts::NF_INET_LOCAL_IN,
                    priority: 0,
                },
            ));
            push(op, Label::Structure("chain INPUT"), labels);
        }
        if !st.chain {
            let op = b.add_chain(&Chain::regular(fam, FILTER, &self.cfg.chain));
            push(op, Label::Structure("autoblock's chain"), labels);
        }
        if !st.jump_first {
            // Remove jumps that are not at the head, then insert one at the head.
            for h in &st.jumps {
                let op = b.del_rule(fam, FILTER, INPUT, *h, self.destroy);
                push(op, Label::Structure("the old jump in INPUT"), labels);
            }
            let op = b.add_rule_parts(
                fam,
                FILTER,
                INPUT,
                &chain::jump_exprs(&self.cfg.chain),
                None,
                RulePos::Head,
                false,
            );
            push(
                op,
                Label::Structure("the jump at the head of INPUT"),
                labels,
            );
        } else {
            for h in st.jumps.iter().skip(1) {
                let op = b.del_rule(fam, FILTER, INPUT, *h, self.destroy);
                push(op, Label::Structure("a duplicate jump in INPUT"), labels);
            }
        }
    }

    fn kinds(&self) -> Vec<RuleKind> {
        let log = RuleKind::Log {
            prefix: self.cfg.log_prefix.clone(),
        };
        match self.cfg.action {
            Action::Drop => vec![RuleKind::Drop],
            Action::Reject => vec![RuleKind::Reject],
            Action::Log => vec![log],
            Action::LogDrop => vec![log, RuleKind::Drop],
        }
    }

    fn commit(
        &mut self,
        b: &mut Batch,
        genid: u32,
        labels: &[Label],
        entries: &[Entry],
    ) -> Result<bool, Error> {
        self.commit_guarded(
            b,
            genid,
            "re-read the ruleset with `autoblock list` to see what was applied",
            |e| {
                let entry = match labels.get(e.op.0 as usize) {
                    Some(Label::Entry(i)) => entries
                        .get(*i)
                        .map(|x| x.net.to_string())
                        .unwrap_or_else(|| "an entry".into()),
                    Some(Label::Structure(s)) => (*s).to_owned(),
                    None => "the transaction".to_owned(),
                };
                Error::Rejected {
                    entry,
                    error: e.error.clone(),
                }
            },
        )
    }

    /// Commits a planned chain-layout batch (nothing to commit when it is empty) and keeps
    /// the state it leaves. `Ok(false)`: another program changed the ruleset; plan again.
    fn finish(
        &mut self,
        b: &mut Batch,
        genid: u32,
        states: [FamState; 2],
        track: known::Track,
        labels: &[Label],
        entries: &[Entry],
    ) -> Result<bool, Error> {
        if b.is_empty() {
            self.known = Some(known::Known { genid, states });
            return Ok(true);
        }
        track.request_echoes(b);
        if self.commit(b, genid, labels, entries)? {
            self.settle(genid, states, track);
            return Ok(true);
        }
        Ok(false)
    }

    /// Commits `b` guarded by `genid`, for both layouts: `Ok(true)` when applied,
    /// `Ok(false)` when another program changed the ruleset meanwhile (re-read and re-plan).
    /// `rejected` turns the kernel's first rejection into an error naming the entry;
    /// `hint` tells the user how to see what was applied when the outcome is unknown.
    fn commit_guarded(
        &mut self,
        b: &mut Batch,
        genid: u32,
        hint: &str,
        rejected: impl FnOnce(&nl::OpError) -> Error,
    ) -> Result<bool, Error> {
        let span = info_span!("commit", ops = b.op_count(), bytes = b.len());
        let _g = span.enter();
        self.known = None;
        self.echoed.clear();
        match self.conn.commit(b, CommitOptions::default().genid(genid)) {
            Ok(c) => {
                self.echoed = c.handles;
                Ok(true)
            }
            Err(CommitError::GenerationChanged) => {
                debug!("generation changed; re-reading");
                Ok(false)
            }
            Err(CommitError::Rejected { errors }) => Err(rejected(&errors[0])),
            Err(CommitError::OutcomeUnknown { .. }) => Err(Error::OutcomeUnknown(hint.to_owned())),
            Err(CommitError::PermissionDenied) => Err(Error::Netlink(nl::Error::PermissionDenied)),
            Err(CommitError::TooLarge { len, max }) => Err(Error::TooLarge(format!(
                "the change needs a {len}-byte transaction but this socket can send at most {max} bytes (raise net.core.wmem_max or run as root)"
            ))),
            Err(CommitError::Io(e)) => Err(Error::Netlink(e)),
            Err(e) => Err(Error::Conflict(e.to_string())),
        }
    }

    /// Creates the structure (chains and the jump) without blocking anything.
    pub fn init(&mut self) -> Result<(), Error> {
        if self.cfg.layout == Layout::Set {
            return self.set_init();
        }
        for attempt in 0..self.cfg.max_retries {
            let (genid, states) = self.read()?;
            let mut b = Batch::new();
            let mut labels = Vec::new();
            for (f, st) in self.families().into_iter().zip(states.iter()) {
                self.ensure_structure(&mut b, &mut labels, f, st);
            }
            if b.is_empty() || self.commit(&mut b, genid, &labels, &[])? {
                return Ok(());
            }
            debug!(attempt, "init retry");
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }

    /// Blocks `entries` (idempotent): missing rules are appended, rules whose comment or
    /// expiry changed are replaced in place, rules of another action are converted.
    pub fn block(&mut self, entries: &[Entry]) -> Result<Report, Error> {
        let entries = self.checked(entries)?;
        if self.cfg.layout == Layout::Set {
            return self.set_block(&entries);
        }
        let span = info_span!("block", entries = entries.len());
        let _g = span.enter();
        let comments = comments_of(&entries)?;
        for attempt in 0..self.cfg.max_retries {
            let (genid, states, from_known) = self.read_for_write()?;
            let mut b = Batch::with_capacity(256 + entries.len() * 200);
            let mut labels = Vec::with_capacity(entries.len() + 8);
            let mut track = known::Track::default();
            let mut report = self.plan_block(
                &mut b,
                &mut labels,
                &entries,
                &comments,
                &states,
                &mut track,
            )?;
            report.retries = attempt;
            if from_known && !self.confirm(&states, &track)? {
                continue;
            }
            if self.finish(&mut b, genid, states, track, &labels, &entries)? {
                return Ok(report);
            }
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }

    /// Queues the changes that make `entries` blocked with the configured action.
    fn plan_block(
        &self,
        b: &mut Batch,
        labels: &mut Vec<Label>,
        entries: &[Entry],
        comments: &[Option<String>],
        states: &[FamState; 2],
        track: &mut known::Track,
    ) -> Result<Report, Error> {
        let kinds = self.kinds();
        let mut report = Report::default();
        let mut index: [HashMap<Net, Vec<&ParsedRule>>; 2] = Default::default();
        for (i, st) in states.iter().enumerate() {
            for r in &st.rules {
                index[i].entry(r.net).or_default().push(r);
            }
        }
        let mut touched = [false, false];
        for e in entries {
            touched[fam_idx(e.net.family())] = true;
        }
        for (i, f) in self.families().into_iter().enumerate() {
            if touched[i] {
                let before = labels.len();
                self.ensure_structure(b, labels, f, &states[i]);
                if labels.len() != before {
                    // The jump, when one is inserted, is the last operation queued.
                    let jump = (!states[i].jump_first).then(|| OpId(labels.len() as u32 - 1));
                    track.structure(i, jump);
                }
            }
        }
        let chain = self.cfg.chain.as_str();
        let mut udata_buf = Vec::new();
        for (ei, e) in entries.iter().enumerate() {
            let fi = fam_idx(e.net.family());
            let fam = nf_family(e.net.family());
            let comment = comments[ei].as_deref();
            let ud = match comment {
                Some(c) if udata::comment_into(c, &mut udata_buf) => Some(udata_buf.as_slice()),
                Some(c) => {
                    return Err(InputError::BadComment {
                        comment: c.to_owned(),
                        reason: "too long",
                    }
                    .into())
                }
                None => None,
            };
            let existing = index[fi].get(&e.net).map(Vec::as_slice).unwrap_or(&[]);
            let mut changed = false;
            // Keep rules of a wanted kind (replacing them in place when the comment differs),
            // add the missing kinds next to them, delete rules of other kinds.
            let mut anchor: Option<u64> = None;
            for k in &kinds {
                match existing.iter().find(|r| &r.kind == k) {
                    Some(r) => {
                        if r.comment.as_deref() != comment {
                            b.replace_rule(
                                fam,
                                FILTER,
                                chain,
                                r.handle,
                                &chain::rule_exprs(&e.net, k),
                                ud,
                            );
                            track.replace(fi, r.handle, e.net, k, comment);
                            labels.push(Label::Entry(ei));
                            changed = true;
                        }
                        anchor = Some(r.handle);
                    }
                    None => {
                        let pos = match (anchor, existing.first()) {
                            (Some(h), _) => RulePos::After(h),
                            (None, Some(first)) => RulePos::Before(first.handle),
                            (None, None) => RulePos::Append,
                        };
                        let op = b.add_rule_parts(
                            fam,
                            FILTER,
                            chain,
                            &chain::rule_exprs(&e.net, k),
                            ud,
                            pos,
                            false,
                        );
                        debug_assert_eq!(op.0 as usize, labels.len());
                        track.add(fi, op, e.net, k, comment, pos);
                        labels.push(Label::Entry(ei));
                        changed = true;
                    }
                }
            }
            for r in existing {
                if !kinds.contains(&r.kind) {
                    b.del_rule(fam, FILTER, chain, r.handle, self.destroy);
                    track.delete(fi, r.handle);
                    labels.push(Label::Entry(ei));
                    changed = true;
                }
            }
            if existing.is_empty() {
                report.changed.push(e.net);
            } else if changed {
                report.updated.push(e.net);
            } else {
                report.unchanged.push(e.net);
            }
        }
        for (i, st) in states.iter().enumerate() {
            let added = report
                .changed
                .iter()
                .filter(|n| fam_idx(n.family()) == i)
                .count();
            let n = st.rules.len() + added * kinds.len();
            if n > self.cfg.warn_chain_len {
                report.warnings.push(format!(
                    "the {} chain now holds about {n} rules and every packet walks them in order; consider the set layout (--layout set) beyond a few thousand entries",
                    if i == 0 { "IPv4" } else { "IPv6" }
                ));
            }
        }
        Ok(report)
    }

    /// Unblocks `nets` (idempotent): every rule of the chain for exactly that network goes.
    pub fn unblock(&mut self, nets: &[Net]) -> Result<Report, Error> {
        if self.cfg.layout == Layout::Set {
            return self.set_unblock(nets);
        }
        let entries: Vec<Entry> = nets.iter().map(|n| Entry::new(*n)).collect();
        let mut entries = entries;
        entry::dedup(&mut entries);
        for attempt in 0..self.cfg.max_retries {
            let (genid, states, from_known) = self.read_for_write()?;
            let mut track = known::Track::default();
            let mut report = Report {
                retries: attempt,
                ..Report::default()
            };
            let mut index: [HashMap<Net, Vec<u64>>; 2] = Default::default();
            for (i, st) in states.iter().enumerate() {
                for r in &st.rules {
                    index[i].entry(r.net).or_default().push(r.handle);
                }
            }
            let mut b = Batch::new();
            let mut labels = Vec::new();
            for (ei, e) in entries.iter().enumerate() {
                let fi = fam_idx(e.net.family());
                match index[fi].get(&e.net) {
                    Some(handles) => {
                        for h in handles {
                            b.del_rule(
                                nf_family(e.net.family()),
                                FILTER,
                                &self.cfg.chain,
                                *h,
                                self.destroy,
                            );
                            track.delete(fi, *h);
                            labels.push(Label::Entry(ei));
                        }
                        report.changed.push(e.net);
                    }
                    None => report.unchanged.push(e.net),
                }
            }
            if from_known && !self.confirm(&states, &track)? {
                continue;
            }
            if self.finish(&mut b, genid, states, track, &labels, &entries)? {
                return Ok(report);
            }
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }

    /// Makes the chain hold exactly `desired`: removes the rest and blocks what is missing,
    /// in one transaction.
    pub fn sync(&mut self, desired: &[Entry]) -> Result<Report, Error> {
        let desired = self.checked(desired)?;
        if self.cfg.layout == Layout::Set {
            return self.set_sync(&desired);
        }
        let comments = comments_of(&desired)?;
        let keep: std::collections::HashSet<Net> = desired.iter().map(|e| e.net).collect();
        for attempt in 0..self.cfg.max_retries {
            let (genid, states, from_known) = self.read_for_write()?;
            let mut b = Batch::new();
            let mut labels = Vec::new();
            let mut track = known::Track::default();
            let mut report = self.plan_block(
                &mut b,
                &mut labels,
                &desired,
                &comments,
                &states,
                &mut track,
            )?;
            for (fi, st) in states.iter().enumerate() {
                let fam = nf_family(self.families()[fi]);
                for r in &st.rules {
                    if !keep.contains(&r.net) {
                        b.del_rule(fam, FILTER, &self.cfg.chain, r.handle, self.destroy);
                        track.delete(fi, r.handle);
                        labels.push(Label::Structure("a stale entry"));
                        if report.removed.last() != Some(&r.net) {
                            report.removed.push(r.net);
                        }
                    }
                }
            }
            report.retries = attempt;
            if from_known && !self.confirm(&states, &track)? {
                continue;
            }
            if self.finish(&mut b, genid, states, track, &labels, &desired)? {
                return Ok(report);
            }
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }

    /// The chain layout's rules in chain order, per family, as the kernel holds them now
    /// (what the sysconfig mirror writes).
    /// Counters are not part of this answer (they are zero when the rules come from what
    /// this controller's last commit left, which spares re-reading a long chain).
    pub fn chain_rules(&mut self) -> Result<Vec<(IpFamily, ParsedRule)>, Error> {
        let mut out = Vec::new();
        if let Some(k) = &self.known {
            let genid = k.genid;
            if self.conn.genid()? == genid {
                if let Some(k) = &self.known {
                    for (f, st) in self.families().into_iter().zip(&k.states) {
                        out.extend(st.rules.iter().map(|r| (f, r.clone())));
                    }
                    return Ok(out);
                }
            }
        }
        let (_, states) = self.read()?;
        for (f, st) in self.families().into_iter().zip(states) {
            out.extend(st.rules.into_iter().map(|r| (f, r)));
        }
        Ok(out)
    }

    /// Lists the entries of the chain with their counters, in chain order.
    pub fn list(&mut self) -> Result<Vec<Listed>, Error> {
        if self.cfg.layout == Layout::Set {
            return self.set_list();
        }
        let (_, states) = self.read()?;
        let mut out: Vec<Listed> = Vec::new();
        let mut kinds: Vec<[bool; 3]> = Vec::new(); // log, drop, reject
        let mut pos: HashMap<Net, usize> = HashMap::new();
        for r in states.iter().flat_map(|st| st.rules.iter()) {
            let i = *pos.entry(r.net).or_insert_with(|| {
                let (expires, text) = match &r.comment {
                    Some(c) => meta::decode(c),
                    None => (None, None),
                };
                out.push(Listed {
                    net: r.net,
                    action: Action::Log,
                    comment: text,
                    expires,
                    packets: 0,
                    bytes: 0,
                });
                kinds.push([false; 3]);
                out.len() - 1
            });
            let k = match r.kind {
                RuleKind::Log { .. } => 0,
                RuleKind::Drop => 1,
                RuleKind::Reject => 2,
            };
            kinds[i][k] = true;
            // The verdict rule's counters say what was blocked; a log-only entry shows its
            // log rule's counters.
            if k != 0 || (!kinds[i][1] && !kinds[i][2]) {
                out[i].packets = r.packets;
                out[i].bytes = r.bytes;
            }
        }
        for (l, k) in out.iter_mut().zip(kinds) {
            l.action = match k {
                [_, _, true] => Action::Reject,
                [true, true, _] => Action::LogDrop,
                [false, true, _] => Action::Drop,
                _ => Action::Log,
            };
        }
        Ok(out)
    }

    /// Per-family status.
    pub fn status(&mut self) -> Result<Vec<FamilyStatus>, Error> {
        if self.cfg.layout == Layout::Set {
            return self.set_status();
        }
        let (_, states) = self.read()?;
        Ok(self
            .families()
            .into_iter()
            .zip(states.iter())
            .map(|(f, st)| FamilyStatus {
                family: f,
                chain_exists: st.chain,
                jump_first: st.jump_first,
                entries: {
                    let mut nets: Vec<Net> = st.rules.iter().map(|r| r.net).collect();
                    nets.sort();
                    nets.dedup();
                    nets.len()
                },
                foreign_rules: st.foreign.len(),
                packets: st.rules.iter().map(|r| r.packets).sum(),
                bytes: st.rules.iter().map(|r| r.bytes).sum(),
                sets: Vec::new(),
            })
            .collect())
    }

    /// Removes every entry, keeping the chain and the jump. Returns the number of rules
    /// removed.
    pub fn flush(&mut self) -> Result<usize, Error> {
        if self.cfg.layout == Layout::Set {
            return self.set_flush();
        }
        for _ in 0..self.cfg.max_retries {
            let (genid, states) = self.read()?;
            let mut b = Batch::new();
            let mut labels = Vec::new();
            let mut n = 0;
            for (f, st) in self.families().into_iter().zip(states.iter()) {
                if st.chain {
                    b.flush_chain(nf_family(f), FILTER, &self.cfg.chain);
                    labels.push(Label::Structure("autoblock's chain"));
                    n += st.rules.len() + st.foreign.len();
                }
            }
            if b.is_empty() || self.commit(&mut b, genid, &labels, &[])? {
                return Ok(n);
            }
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }

    /// Removes everything autoblock created: the jumps and the chain (with its rules). The
    /// `filter` table and `INPUT` stay: they belong to iptables.
    pub fn remove(&mut self) -> Result<(), Error> {
        if self.cfg.layout == Layout::Set {
            return self.set_remove();
        }
        for _ in 0..self.cfg.max_retries {
            let (genid, states) = self.read()?;
            let mut b = Batch::new();
            let mut labels = Vec::new();
            for (f, st) in self.families().into_iter().zip(states.iter()) {
                let fam = nf_family(f);
                for h in &st.jumps {
                    b.del_rule(fam, FILTER, INPUT, *h, self.destroy);
                    labels.push(Label::Structure("the jump in INPUT"));
                }
                if st.chain {
                    b.del_chain(fam, FILTER, &self.cfg.chain, self.destroy);
                    labels.push(Label::Structure("autoblock's chain"));
                }
            }
            if b.is_empty() || self.commit(&mut b, genid, &labels, &[])? {
                return Ok(());
            }
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }
}

fn fam_idx(f: IpFamily) -> usize {
    match f {
        IpFamily::V4 => 0,
        IpFamily::V6 => 1,
    }
}

fn comments_of(entries: &[Entry]) -> Result<Vec<Option<String>>, Error> {
    entries
        .iter()
        .map(|e| meta::encode(e.expires, e.comment.as_deref()).map_err(Error::from))
        .collect()
}
