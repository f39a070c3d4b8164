//! Bulk loads: [`Controller::block_stream`] takes entries from an iterator (a file, standard
//! input, a save file) and loads them into the set layout's sets at the kernel's speed.
//!
//! It owns validating a stream entry by entry, the compact per-set staging of what was read,
//! encoding it into element messages, and splitting a load into several transactions where
//! the socket cannot send one large enough. It does not parse text (the caller turns lines
//! into [`Entry`] values) and it does not own the set layout's structure or growth rules
//! (`set.rs`).
//!
//! Memory: nothing is kept per entry but a fixed-size binary record (key, timeout, comment
//! id: 16 bytes for an IPv4 address, 28 for IPv6) in 1 MiB chunks per set; comments are
//! stored once per distinct text. The records are needed because a set must be created (with
//! its size) before its elements in the batch, and the size is only known at the end of the
//! stream. While the batch is encoded, each chunk is freed as soon as its records are in the
//! batch, so the peak is about the size of the batch itself (28 bytes per timed IPv4
//! element) plus one chunk. The chain layout keeps the per-entry path of
//! [`Controller::block`].
//!
//! Semantics: elements are added with `NEWSETELEM` without `NLM_F_EXCL`, so an entry that is
//! already blocked never fails the load. Into a set that was empty when the load was planned
//! the elements are simply added. Into a non-empty set every element is first removed
//! (`DESTROYSETELEM`, or add + delete before kernel 6.3) and then added in the same
//! transaction, so timeout, permanence and comment become exactly what the input says, as
//! with [`Controller::block`], without reading the set. Duplicate entries in one input are
//! not merged (that would cost memory per entry): the entry is blocked once, but which of
//! the duplicates' timeouts and comments wins is not specified.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::SystemTime;

use autoblock_netlink::{ElemOp, ElemRef, Family};

use super::set::{timeout_ms, SLabel, SetKey};
use super::*;

/// Bytes per staging chunk: above glibc's mmap threshold, so a freed chunk goes back to the
/// system at once.
const CHUNK: usize = 1 << 20;
/// Bad entries kept in a report or error (all are counted).
const KEEP_BAD: usize = 100;
/// Entries between two [`BulkProgress::Reading`] calls.
const PROGRESS_EVERY: u64 = 1 << 16;
/// Room reserved in each transaction for `BATCH_END`, and for the message headers the
/// element writer opens (one per 65,000 bytes of elements; 112 bytes at most each).
const MSG_OVERHEAD: usize = 112;
/// No comment (comment id of a record).
const NO_COMMENT: u32 = u32::MAX;
/// Smallest transaction a split load uses; below this the socket is unusable for loads.
const MIN_BUDGET: usize = 16 * 1024;

/// An entry of a bulk input that cannot be blocked, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BadEntry {
    /// Line number (1-based) or position in the input.
    pub line: u64,
    /// The offending text.
    pub text: String,
    /// Why it was refused.
    pub reason: String,
    /// The input cannot be read on (an I/O error): the load stops and nothing is applied,
    /// even with [`BulkOptions::skip_invalid`].
    pub fatal: bool,
}

impl BadEntry {
    /// A bad entry at `line`.
    pub fn new(line: u64, text: impl Into<String>, reason: impl Into<String>) -> Self {
        BadEntry {
            line,
            text: text.into(),
            reason: reason.into(),
            fatal: false,
        }
    }

    /// The input broke off at `line` (a read error): the load is refused as a whole.
    pub fn fatal(line: u64, text: impl Into<String>, reason: impl Into<String>) -> Self {
        BadEntry {
            fatal: true,
            ..BadEntry::new(line, text, reason)
        }
    }
}

impl std::fmt::Display for BadEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}: {:?}", self.line, self.reason, self.text)
    }
}

/// Errors of [`Controller::block_stream`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BulkError {
    /// The input holds invalid entries and skipping them was not asked for; nothing was
    /// sent to the kernel.
    #[error("{count} invalid entr{} in the input; nothing was applied{}", if *count == 1 { "y" } else { "ies" }, first_bad(bad))]
    Invalid {
        /// How many entries were invalid.
        count: u64,
        /// The first of them (at most 100), in input order.
        bad: Vec<BadEntry>,
    },
    /// The controller or the kernel refused the load.
    #[error(transparent)]
    Controller(#[from] Error),
}

fn first_bad(bad: &[BadEntry]) -> String {
    bad.first().map(|b| format!(" ({b})")).unwrap_or_default()
}

impl BulkError {
    /// Whether this is a problem with the input (exit code 2 in the CLI).
    pub fn is_input(&self) -> bool {
        match self {
            BulkError::Invalid { .. } => true,
            BulkError::Controller(e) => e.is_input(),
        }
    }
}

/// Progress of a bulk load, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkProgress {
    /// Entries read and validated so far (reported every 65,536 entries).
    Reading {
        /// Valid entries so far.
        entries: u64,
    },
    /// Reading is done; the load is being encoded and sent.
    Sending {
        /// Valid entries to send.
        entries: u64,
        /// Transactions the load needs (1 unless the socket forces a split).
        transactions: u32,
    },
    /// One transaction was committed.
    Committed {
        /// Transactions committed so far.
        done: u32,
        /// Entries committed so far.
        entries: u64,
    },
}

/// Options of [`Controller::block_stream`].
#[non_exhaustive]
#[derive(Default)]
pub struct BulkOptions<'a> {
    /// Skip invalid entries (they are counted and the first ones reported) instead of
    /// refusing the whole input.
    pub skip_invalid: bool,
    /// Largest transaction in bytes; `None` = whatever the socket can send. A smaller load
    /// is still one transaction; a larger one is split (tests use this to exercise the
    /// split path).
    pub max_transaction: Option<usize>,
    /// Called as the load progresses.
    pub progress: Option<&'a mut dyn FnMut(BulkProgress)>,
}

impl std::fmt::Debug for BulkOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkOptions")
            .field("skip_invalid", &self.skip_invalid)
            .field("max_transaction", &self.max_transaction)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl<'a> BulkOptions<'a> {
    /// Skips invalid entries instead of refusing the input.
    pub fn skip_invalid(mut self, on: bool) -> Self {
        self.skip_invalid = on;
        self
    }

    /// Caps the size of one transaction (the load is split above it).
    pub fn max_transaction(mut self, bytes: usize) -> Self {
        self.max_transaction = Some(bytes);
        self
    }

    /// Reports progress to `f`.
    pub fn progress(mut self, f: &'a mut dyn FnMut(BulkProgress)) -> Self {
        self.progress = Some(f);
        self
    }

    fn report(&mut self, p: BulkProgress) {
        if let Some(f) = self.progress.as_mut() {
            f(p);
        }
    }
}

/// What a bulk load did to one set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetLoad {
    /// The set's name (`addr4`, `net4_24`, …).
    pub name: String,
    /// Entries sent to it (duplicates in the input included).
    pub sent: u64,
    /// Elements the kernel counted before the load.
    pub before: u64,
    /// Elements the kernel counts after the load (kernels ≥ 6.16 report it; `None` before,
    /// where counting would need a dump).
    pub after: Option<u64>,
    /// Whether existing elements were replaced (the set was not empty), rather than new
    /// ones only added.
    pub replaced: bool,
}

/// Outcome of [`Controller::block_stream`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkReport {
    /// Valid entries sent to the kernel (duplicates included).
    pub entries: u64,
    /// Invalid entries skipped (`skip_invalid`).
    pub invalid: u64,
    /// The first skipped entries (at most 100).
    pub bad: Vec<BadEntry>,
    /// Entries not blocked because their expiry time had already passed.
    pub expired: u64,
    /// Per set, for the set layout.
    pub sets: Vec<SetLoad>,
    /// Transactions committed. More than one means the load was not atomic: the kernel
    /// held a part of it between two transactions.
    pub transactions: u32,
    /// The largest transaction the socket could send, when that forced a split.
    pub split_limit: Option<usize>,
    /// The chain layout's report (the chain layout loads through [`Controller::block`]).
    pub chain: Option<Report>,
    /// How many times a transaction was re-sent because another program changed the
    /// ruleset meanwhile.
    pub retries: u32,
    /// Things worth telling the administrator.
    pub warnings: Vec<String>,
}

impl BulkReport {
    /// Whether the whole load was applied in one transaction.
    pub fn is_atomic(&self) -> bool {
        self.transactions <= 1
    }
}

/// The staged records of one set.
#[derive(Debug)]
struct Staged {
    key: SetKey,
    /// Record size: key, timeout (u64, 0 = permanent), comment id (u32).
    rec: usize,
    chunks: std::collections::VecDeque<Vec<u8>>,
    count: u64,
}

impl Staged {
    fn new(key: SetKey) -> Self {
        Staged {
            key,
            rec: key.key_len() + 12,
            chunks: Default::default(),
            count: 0,
        }
    }

    fn push(&mut self, key: &[u8], timeout: u64, comment: u32) {
        let full = self
            .chunks
            .back()
            .is_none_or(|c| c.len() + self.rec > c.capacity());
        if full {
            self.chunks.push_back(Vec::with_capacity(CHUNK));
        }
        if let Some(c) = self.chunks.back_mut() {
            c.extend_from_slice(key);
            c.extend_from_slice(&timeout.to_le_bytes());
            c.extend_from_slice(&comment.to_le_bytes());
        }
        self.count += 1;
    }
}

/// One decoded record.
#[derive(Debug, Clone, Copy)]
struct Rec<'r> {
    key: &'r [u8],
    timeout: Option<u64>,
    comment: Option<&'r [u8]>,
}

/// Everything read from the stream.
#[derive(Debug, Default)]
struct Load {
    sets: Vec<Staged>,
    /// Encoded comment userdata by id, and the id of each text.
    comments: Vec<Vec<u8>>,
    comment_ids: HashMap<String, u32>,
    entries: u64,
    invalid: u64,
    bad: Vec<BadEntry>,
    expired: u64,
}

impl Load {
    fn bad(&mut self, b: BadEntry) {
        self.invalid += 1;
        if self.bad.len() < KEEP_BAD {
            self.bad.push(b);
        }
    }

    fn staged(&mut self, key: SetKey) -> &mut Staged {
        let i = match self.sets.iter().position(|s| s.key == key) {
            Some(i) => i,
            None => {
                self.sets.push(Staged::new(key));
                self.sets.len() - 1
            }
        };
        &mut self.sets[i]
    }

    fn comment_id(&mut self, c: &str) -> Option<u32> {
        if let Some(&id) = self.comment_ids.get(c) {
            return Some(id);
        }
        let u = udata::comment(c)?;
        let id = u32::try_from(self.comments.len())
            .ok()
            .filter(|&i| i != NO_COMMENT)?;
        self.comments.push(u);
        self.comment_ids.insert(c.to_owned(), id);
        Some(id)
    }

    fn rec<'r>(&'r self, s: &Staged, r: &'r [u8]) -> Rec<'r> {
        let k = s.key.key_len();
        let t = u64::from_le_bytes(r[k..k + 8].try_into().unwrap_or([0; 8]));
        let c = u32::from_le_bytes(r[k + 8..k + 12].try_into().unwrap_or([0xff; 4]));
        Rec {
            key: &r[..k],
            timeout: (t != 0).then_some(t),
            comment: self.comments.get(c as usize).map(Vec::as_slice),
        }
    }
}

/// Bytes an element takes in an add message (no `EXPIRATION`: a replaced element is new).
fn add_len(r: &Rec<'_>) -> usize {
    ElemRef {
        key: r.key,
        timeout: r.timeout,
        userdata: r.comment,
        ..Default::default()
    }
    .encoded_len()
}

/// Bytes an element takes in a removal message (key only).
fn key_len(r: &Rec<'_>) -> usize {
    ElemRef {
        key: r.key,
        ..Default::default()
    }
    .encoded_len()
}

impl<T: Transport> Controller<T> {
    /// Blocks a stream of entries, numbered by their line in the input.
    ///
    /// Each item is an entry with its line number, or a [`BadEntry`] the caller could not
    /// parse. Every entry is checked as it arrives (allowlist, comment, expiry); invalid
    /// ones are collected and, unless [`BulkOptions::skip_invalid`], the load stops with
    /// [`BulkError::Invalid`] listing them before anything is sent. Entries whose expiry has
    /// passed are counted in [`BulkReport::expired`] and not blocked.
    ///
    /// For the set layout the load is one transaction guarded by the ruleset generation
    /// (sets that would fill up are grown in a transaction of their own first), encoded
    /// straight from a compact staging area without a per-entry allocation (see the module
    /// documentation for the memory and duplicate semantics). If the socket cannot send a
    /// transaction that large (a user namespace, a container with a small
    /// `net.core.wmem_max`), the load is split into several transactions of the largest size
    /// that fits, and [`BulkReport::transactions`] says so: the load is then not atomic.
    /// The chain layout collects the entries and calls [`Controller::block`].
    pub fn block_stream<I>(
        &mut self,
        items: I,
        mut opts: BulkOptions<'_>,
    ) -> Result<BulkReport, BulkError>
    where
        I: IntoIterator<Item = Result<(u64, Entry), BadEntry>>,
    {
        if self.cfg.layout != Layout::Set {
            return self.chain_stream(items, opts);
        }
        let span = info_span!("block_stream");
        let _g = span.enter();
        let now = SystemTime::now();
        let mut load = Load::default();
        for item in items {
            let (line, e) = match item {
                Ok(x) => x,
                Err(b) if b.fatal => {
                    load.bad.insert(0, b);
                    load.invalid += 1;
                    return Err(BulkError::Invalid {
                        count: load.invalid,
                        bad: load.bad,
                    });
                }
                Err(b) => {
                    load.bad(b);
                    continue;
                }
            };
            if let Err(err) = self.allow.check(&e.net) {
                load.bad(BadEntry::new(line, e.net.to_string(), err.to_string()));
                continue;
            }
            let comment = match e.comment.as_deref().filter(|c| !c.is_empty()) {
                None => NO_COMMENT,
                Some(c) => {
                    if let Err(err) = entry::check_comment(c) {
                        load.bad(BadEntry::new(line, c, err.to_string()));
                        continue;
                    }
                    match load.comment_id(c) {
                        Some(id) => id,
                        None => {
                            load.bad(BadEntry::new(
                                line,
                                c,
                                "comment too long: a set element comment holds at most 253 bytes",
                            ));
                            continue;
                        }
                    }
                }
            };
            let Some(timeout) = timeout_ms(e.expires, now) else {
                load.expired += 1;
                continue;
            };
            let key = SetKey::of(&e.net);
            let staged = load.staged(key);
            match e.net.addr() {
                IpAddr::V4(a) => staged.push(&a.octets(), timeout.unwrap_or(0), comment),
                IpAddr::V6(a) => staged.push(&a.octets(), timeout.unwrap_or(0), comment),
            }
            load.entries += 1;
            if load.entries % PROGRESS_EVERY == 0 {
                opts.report(BulkProgress::Reading {
                    entries: load.entries,
                });
            }
        }
        if load.invalid > 0 && !opts.skip_invalid {
            return Err(BulkError::Invalid {
                count: load.invalid,
                bad: load.bad,
            });
        }
        let mut report = BulkReport {
            entries: load.entries,
            invalid: load.invalid,
            bad: std::mem::take(&mut load.bad),
            expired: load.expired,
            ..BulkReport::default()
        };
        if load.expired > 0 {
            report.warnings.push(format!(
                "{} entr{} not blocked: their expiry time has passed",
                load.expired,
                if load.expired == 1 {
                    "y was"
                } else {
                    "ies were"
                }
            ));
        }
        if load.entries == 0 {
            return Ok(report);
        }
        load.sets.sort_by_key(|s| s.key);
        self.set_load(&mut load, &mut report, &mut opts)?;
        Ok(report)
    }

    /// The chain layout: collect, validate with line numbers, block.
    fn chain_stream<I>(&mut self, items: I, opts: BulkOptions<'_>) -> Result<BulkReport, BulkError>
    where
        I: IntoIterator<Item = Result<(u64, Entry), BadEntry>>,
    {
        let mut load = Load::default();
        let mut entries = Vec::new();
        let now = SystemTime::now();
        for item in items {
            match item {
                Err(b) if b.fatal => {
                    load.bad.insert(0, b);
                    load.invalid += 1;
                    return Err(BulkError::Invalid {
                        count: load.invalid,
                        bad: load.bad,
                    });
                }
                Err(b) => load.bad(b),
                Ok((line, e)) => match self.validate(std::slice::from_ref(&e)) {
                    Err(err) => load.bad(BadEntry::new(line, e.net.to_string(), err.to_string())),
                    Ok(()) if e.expires.is_some_and(|t| t <= now) => load.expired += 1,
                    Ok(()) => entries.push(e),
                },
            }
        }
        if load.invalid > 0 && !opts.skip_invalid {
            return Err(BulkError::Invalid {
                count: load.invalid,
                bad: load.bad,
            });
        }
        let mut report = BulkReport {
            entries: entries.len() as u64,
            invalid: load.invalid,
            bad: load.bad,
            expired: load.expired,
            ..BulkReport::default()
        };
        if !entries.is_empty() {
            let r = self.block(&entries)?;
            report.transactions = 1;
            report.retries = r.retries;
            report.warnings.extend(r.warnings.iter().cloned());
            report.chain = Some(r);
        }
        Ok(report)
    }

    /// Grows, plans and commits a staged set-layout load.
    fn set_load(
        &mut self,
        load: &mut Load,
        report: &mut BulkReport,
        opts: &mut BulkOptions<'_>,
    ) -> Result<(), Error> {
        // Read the state and grow the sets that would fill up (its own transaction).
        // The resize probe commits, which moves the generation: probed before the first
        // read, or the load's first commit would be refused as stale and sent twice.
        self.probe_resize()?;
        let mut ready = None;
        for _ in 0..self.cfg.max_retries {
            let (genid, st) = self.set_read()?;
            let mut needs = Vec::with_capacity(load.sets.len());
            let mut before = Vec::with_capacity(load.sets.len());
            for s in &load.sets {
                let count = self.set_count(&st, s.key)?;
                before.push(count);
                needs.push((s.key, count + s.count));
            }
            if self.set_grow(genid, &st, &needs)? {
                continue;
            }
            ready = Some((genid, st, needs, before));
            break;
        }
        let Some((mut genid, st, needs, before)) = ready else {
            return Err(Error::TooManyRetries(self.cfg.max_retries));
        };
        let replace: Vec<bool> = before.iter().map(|&n| n > 0).collect();

        // Size of the whole load as one transaction.
        let mut total = 4096;
        for (s, &rep) in load.sets.iter().zip(&replace) {
            let mut bytes = 0usize;
            for c in &s.chunks {
                for r in c.chunks_exact(s.rec) {
                    let r = load.rec(s, r);
                    bytes += add_len(&r);
                    if rep {
                        bytes += key_len(&r) * if self.destroy { 1 } else { 2 };
                    }
                }
            }
            total += bytes + (bytes / 60_000 + 3) * MSG_OVERHEAD * 3;
        }
        let limit = self.conn.transport().reserve_send(total).err();
        let budget = match (limit, opts.max_transaction) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .filter(|&b| b < total);
        if let Some(b) = budget {
            if b < MIN_BUDGET {
                return Err(Error::TooLarge(format!(
                    "this socket can send transactions of at most {b} bytes, too small for a bulk load (raise net.core.wmem_max or run as root)"
                )));
            }
            report.split_limit = Some(b);
        }
        let planned = budget.map_or(1, |b| total.div_ceil(b.saturating_sub(4096).max(1)) as u32);
        opts.report(BulkProgress::Sending {
            entries: load.entries,
            transactions: planned,
        });

        let table = self.cfg.table.clone();
        let mut first = true;
        let mut committed = 0u64;
        let mut si = 0;
        let mut from = vec![0u64; load.sets.len()];
        while si < load.sets.len() {
            let mut b = Batch::with_capacity(budget.unwrap_or(total).min(total) + 4096);
            let mut labels = Vec::new();
            if first {
                self.set_structure(&mut b, &mut labels, &st, &needs)?;
                first = false;
            }
            let mut n = 0;
            while si < load.sets.len() {
                let name = load.sets[si].key.name();
                let (k, full) = self.encode(
                    load,
                    si,
                    &mut b,
                    &mut labels,
                    (&table, &name),
                    replace[si],
                    budget,
                    from[si],
                );
                from[si] += k;
                n += k;
                if load.sets[si].chunks.is_empty() {
                    si += 1;
                }
                if full {
                    break;
                }
            }
            if n == 0 && si < load.sets.len() {
                return Err(Error::TooLarge(format!(
                    "an entry does not fit a transaction of {} bytes",
                    budget.unwrap_or(0)
                )));
            }
            // Commit, re-sending the same batch if another program changed the ruleset
            // meanwhile (the elements do not depend on what the sets held).
            let mut done = false;
            for _ in 0..self.cfg.max_retries {
                let r = self.set_commit(&mut b, genid, &labels, &[]);
                match r {
                    Ok(true) => {
                        done = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) if report.transactions == 0 => return Err(e),
                    Err(e) => {
                        return Err(Error::Conflict(format!(
                            "the load was split into several transactions and {committed} entries in {} transactions were already applied when a later one failed: {e}",
                            report.transactions
                        )))
                    }
                }
                report.retries += 1;
                genid = self.bulk_recheck(&needs, &replace, load, report)?;
            }
            if !done {
                return Err(Error::TooManyRetries(self.cfg.max_retries));
            }
            report.transactions += 1;
            committed += n;
            opts.report(BulkProgress::Committed {
                done: report.transactions,
                entries: committed,
            });
            if si < load.sets.len() {
                genid = self.conn.genid()?;
            }
        }
        if report.transactions > 1 {
            report.warnings.push(format!(
                "this socket can send at most {} bytes per transaction, so the load went in {} transactions and was not atomic (raise net.core.wmem_max or run as root for one transaction)",
                report.split_limit.unwrap_or(0),
                report.transactions
            ));
        }
        // Counts after the load (no dump: kernels ≥ 6.16 report them with the set).
        let after: HashMap<String, u32> = match self.conn.list_sets(Family::Inet, Some(&table)) {
            Ok(d) => d
                .items
                .into_iter()
                .filter_map(|s| Some((s.name, s.count?)))
                .collect(),
            Err(_) => HashMap::new(),
        };
        for ((s, &b), &rep) in load.sets.iter().zip(&before).zip(&replace) {
            let name = s.key.name();
            report.sets.push(SetLoad {
                after: after.get(&name).map(|&c| u64::from(c)),
                name,
                sent: s.count,
                before: b,
                replaced: rep,
            });
        }
        Ok(())
    }

    /// After a generation change: re-reads, grows again if needed and returns the new
    /// generation. The batch stays valid; a set that was empty and is not anymore gets a
    /// warning (entries another program added meanwhile keep their timeout and comment).
    fn bulk_recheck(
        &mut self,
        needs: &[(SetKey, u64)],
        replace: &[bool],
        load: &Load,
        report: &mut BulkReport,
    ) -> Result<u32, Error> {
        for _ in 0..self.cfg.max_retries {
            let (genid, st) = self.set_read()?;
            if self.set_grow(genid, &st, needs)? {
                continue;
            }
            for (s, &rep) in load.sets.iter().zip(replace) {
                if !rep && self.set_count(&st, s.key)? > 0 && report.transactions == 0 {
                    let w = format!(
                        "another program added entries to set {} during the load; entries present in both keep that program's timeout and comment",
                        s.key.name()
                    );
                    if !report.warnings.contains(&w) {
                        report.warnings.push(w);
                    }
                }
            }
            return Ok(genid);
        }
        Err(Error::TooManyRetries(self.cfg.max_retries))
    }

    /// Moves records of set `si` into `b`: all of them, or (with a budget) as many as fit.
    /// Chunks are freed as they are consumed. Returns the number of records encoded and
    /// whether the budget is used up.
    #[allow(clippy::too_many_arguments)]
    fn encode(
        &self,
        load: &mut Load,
        si: usize,
        b: &mut Batch,
        labels: &mut Vec<SLabel>,
        (table, name): (&str, &str),
        replace: bool,
        budget: Option<usize>,
        from: u64,
    ) -> (u64, bool) {
        let removal: &[ElemOp] = match (replace, self.destroy) {
            (false, _) => &[],
            (true, true) => &[ElemOp::Destroy],
            (true, false) => &[ElemOp::Add, ElemOp::Delete],
        };
        let mut n = 0u64;
        while let Some(chunk) = load.sets[si].chunks.pop_front() {
            let s = &load.sets[si];
            let recs = chunk.len() / s.rec;
            // How many records of this chunk fit the budget.
            let take = match budget {
                None => recs,
                Some(bud) => {
                    let mut used = b.len() + 20 + MSG_OVERHEAD * (removal.len() + 1) * 2;
                    let mut k = 0;
                    for r in chunk.chunks_exact(s.rec) {
                        let r = load.rec(s, r);
                        let mut need = add_len(&r) + key_len(&r) * removal.len();
                        // A new message every 65,000 bytes of elements, per operation.
                        need += need * MSG_OVERHEAD * (removal.len() + 1) / 60_000 + 1;
                        if used + need > bud {
                            break;
                        }
                        used += need;
                        k += 1;
                    }
                    k
                }
            };
            let part = &chunk[..take * s.rec];
            let first = from + n;
            let label = || {
                SLabel::Structure(format!(
                    "an entry of set {name} (entries {}..{} of this load)",
                    first + 1,
                    first + take as u64
                ))
            };
            if take > 0 {
                for &op in removal {
                    let mut w = b.elements(op, Family::Inet, table, name);
                    for r in part.chunks_exact(s.rec) {
                        let r = load.rec(s, r);
                        w.push(&ElemRef {
                            key: r.key,
                            ..Default::default()
                        });
                    }
                    w.finish();
                    labels.push(label());
                }
                let mut w = b.elements(ElemOp::Add, Family::Inet, table, name);
                for r in part.chunks_exact(s.rec) {
                    let r = load.rec(s, r);
                    w.push(&ElemRef {
                        key: r.key,
                        timeout: r.timeout,
                        userdata: r.comment,
                        ..Default::default()
                    });
                }
                w.finish();
                labels.push(label());
            }
            n += take as u64;
            if take < recs {
                // The rest goes into the next transaction.
                let rec = s.rec;
                let mut chunk = chunk;
                chunk.drain(..take * rec);
                load.sets[si].chunks.push_front(chunk);
                return (n, true);
            }
            drop(chunk);
        }
        (n, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut load = Load::default();
        let k = SetKey::of(&"192.0.2.1".parse().unwrap());
        let c = load.comment_id("ssh").unwrap();
        assert_eq!(load.comment_id("ssh"), Some(c));
        let s = load.staged(k);
        s.push(&[192, 0, 2, 1], 3_600_000, c);
        s.push(&[192, 0, 2, 2], 0, NO_COMMENT);
        let s = &load.sets[0];
        assert_eq!(s.count, 2);
        let c0 = &s.chunks[0];
        let r: Vec<_> = c0.chunks_exact(s.rec).map(|r| load.rec(s, r)).collect();
        assert_eq!(r[0].key, &[192, 0, 2, 1]);
        assert_eq!(r[0].timeout, Some(3_600_000));
        assert_eq!(r[0].comment, udata::comment("ssh").as_deref());
        assert_eq!(r[1].timeout, None);
        assert_eq!(r[1].comment, None);
    }

    #[test]
    fn overlong_comments_get_no_id() {
        let mut load = Load::default();
        assert_eq!(load.comment_id(&"x".repeat(400)), None);
    }
}
