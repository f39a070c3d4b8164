//! Applying one decisions-stream answer to the kernel: the answer is parsed on one thread
//! while the controller's bulk loader consumes its `new` decisions on the calling thread, so
//! a 100,000-decision start-up stream is never held as text or as a list of entries — only
//! the bulk loader's compact staging, and a bounded queue between the two.
//!
//! It owns the order of changes for one answer: `deleted` decisions that come before the
//! `new` array (the Local API writes them first) are unblocked first, then all `new` bans go
//! into one [`Controller::block_stream`] load (one transaction unless the socket forces a
//! split, which the report says), then any `deleted` decisions that came after. It does not
//! do HTTP (the bouncer module hands it the body) and keeps no state between answers. The
//! daemon's own bans coming back (see [`OwnBans`]) are left as they are.

use std::collections::HashSet;
use std::io::Read;
use std::sync::mpsc;
use std::time::SystemTime;

use autoblock::controller::{BadEntry, BulkError, BulkOptions, BulkReport};
use autoblock::{Controller, Entry, Net};

use super::own::OwnBans;
use super::stream::{self, Action, Decision, List, Sink};

/// Decisions in flight between the parser and the bulk loader.
const QUEUE: usize = 4096;
/// Unblocks sent per transaction.
const UNBLOCK_CHUNK: usize = 4096;

/// What applying one answer did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Applied {
    /// Bans sent to the kernel.
    pub blocked: u64,
    /// Networks unblocked (asked; some may not have been blocked).
    pub unblocked: u64,
    /// Decisions ignored (another type or scope, already expired).
    pub ignored: u64,
    /// Decisions that are the daemon's own bans coming back (already enforced; neither
    /// applied again nor counted as bans), and deletions of networks it still bans itself.
    pub own: u64,
    /// Decisions that could not be enforced (a bad value, an allowlisted address).
    pub invalid: u64,
    /// The first of them.
    pub bad: Vec<BadEntry>,
    /// Transactions of the bulk load (0 when there was nothing new).
    pub transactions: u32,
    /// Warnings of the controller.
    pub warnings: Vec<String>,
}

/// Why an answer could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The body is not a valid answer; nothing of its `new` array was applied.
    #[error("the decisions stream is not valid JSON: {0}")]
    Json(String),
    /// The kernel or controller refused a change.
    #[error("the kernel refused the decisions: {0}")]
    Kernel(String),
}

enum Msg {
    Block(u64, Entry),
    Bad(BadEntry),
    Unblock(Net),
    EndDeleted,
    EndNew,
}

struct ChannelSink<'a> {
    tx: mpsc::SyncSender<Msg>,
    now: SystemTime,
    ignored: u64,
    own_hits: u64,
    seen: &'a mut HashSet<i64>,
    own: Option<&'a OwnBans>,
}

impl ChannelSink<'_> {
    fn send(&self, m: Msg) -> Result<(), String> {
        self.tx
            .send(m)
            .map_err(|_| "the bulk loader stopped reading".to_owned())
    }
}

impl Sink for ChannelSink<'_> {
    fn decision(&mut self, list: List, index: u64, d: Decision) -> Result<(), String> {
        // The Local API repeats a deleted decision in a few consecutive answers; applied
        // again, it would unblock a newer decision for the same address.
        if list == List::Deleted && d.id != 0 && !self.seen.insert(d.id) {
            self.ignored += 1;
            return Ok(());
        }
        match stream::convert(list, &d, self.now) {
            Action::Block(e) => {
                if self
                    .own
                    .is_some_and(|o| o.covers(&e.net, e.expires, self.now))
                {
                    self.own_hits += 1;
                    return Ok(());
                }
                self.send(Msg::Block(index, e))
            }
            Action::Unblock(n) => {
                if self.own.is_some_and(|o| o.active(&n, self.now)) {
                    self.own_hits += 1;
                    return Ok(());
                }
                self.send(Msg::Unblock(n))
            }
            Action::Ignore(_) => {
                self.ignored += 1;
                Ok(())
            }
            Action::Bad(reason) => self.send(Msg::Bad(BadEntry::new(index, d.value, reason))),
        }
    }

    fn end_of(&mut self, list: List) -> Result<(), String> {
        self.send(match list {
            List::New => Msg::EndNew,
            List::Deleted => Msg::EndDeleted,
        })
    }
}

fn unblock(ctl: &mut Controller, nets: &mut Vec<Net>, out: &mut Applied) -> Result<(), ApplyError> {
    for chunk in nets.chunks(UNBLOCK_CHUNK) {
        let r = ctl
            .unblock(chunk)
            .map_err(|e| ApplyError::Kernel(e.to_string()))?;
        out.unblocked += chunk.len() as u64;
        out.warnings.extend(r.warnings);
    }
    nets.clear();
    Ok(())
}

/// Deleted decision ids remembered across answers (then the memory starts afresh).
const SEEN_MAX: usize = 1 << 17;

/// Parses `body` (a `/v1/decisions/stream` answer) and applies it through `ctl`.
///
/// `seen` holds the ids of deleted decisions already applied by earlier answers: they are
/// not applied again. Decisions `own` recognises as the daemon's own bans are skipped.
pub fn apply<R: Read + Send>(
    ctl: &mut Controller,
    body: R,
    seen: &mut HashSet<i64>,
    own: Option<&OwnBans>,
) -> Result<Applied, ApplyError> {
    if seen.len() > SEEN_MAX {
        seen.clear();
    }
    let (tx, rx) = mpsc::sync_channel::<Msg>(QUEUE);
    std::thread::scope(|s| {
        let parser = std::thread::Builder::new()
            .name("crowdsec-json".into())
            .spawn_scoped(s, move || {
                let mut sink = ChannelSink {
                    tx,
                    now: SystemTime::now(),
                    ignored: 0,
                    own_hits: 0,
                    seen,
                    own,
                };
                let r = stream::parse(std::io::BufReader::with_capacity(1 << 16, body), &mut sink);
                (r, sink.ignored, sink.own_hits)
            })
            .map_err(|e| ApplyError::Kernel(format!("cannot start the parser thread: {e}")))?;
        let mut out = Applied::default();
        let applied = consume(ctl, &rx, &mut out);
        // Unblocks the parser if the loader stopped early.
        drop(rx);
        let (parsed, ignored, own_hits) = parser
            .join()
            .map_err(|_| ApplyError::Json("the parser thread panicked".into()))?;
        out.ignored = ignored;
        out.own = own_hits;
        match (parsed, applied) {
            (Err(e), _) => Err(ApplyError::Json(e.to_string())),
            (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(())) => Ok(out),
        }
    })
}

fn consume(
    ctl: &mut Controller,
    rx: &mpsc::Receiver<Msg>,
    out: &mut Applied,
) -> Result<(), ApplyError> {
    let mut deleted: Vec<Net> = Vec::new();
    loop {
        match rx.recv() {
            // The parser finished (or failed: its result says which).
            Err(_) => return unblock(ctl, &mut deleted, out),
            Ok(Msg::Unblock(n)) => deleted.push(n),
            Ok(Msg::EndDeleted) => unblock(ctl, &mut deleted, out)?,
            Ok(Msg::Bad(b)) => {
                out.invalid += 1;
                out.bad.push(b);
            }
            Ok(Msg::EndNew) => {}
            Ok(Msg::Block(i, e)) => {
                let report = load(ctl, rx, (i, e), &mut deleted)?;
                out.blocked += report.entries;
                out.invalid += report.invalid;
                out.bad.extend(report.bad);
                out.transactions += report.transactions;
                out.warnings.extend(report.warnings);
                if let Some(limit) = report.split_limit {
                    out.warnings.push(format!(
                        "the start-up load was split into {} transactions (socket limit {limit} bytes)",
                        report.transactions
                    ));
                }
            }
        }
    }
}

/// Streams the rest of the `new` array into one bulk load, starting with `first`.
fn load(
    ctl: &mut Controller,
    rx: &mpsc::Receiver<Msg>,
    first: (u64, Entry),
    late_deleted: &mut Vec<Net>,
) -> Result<BulkReport, ApplyError> {
    let mut first = Some(first);
    let mut broken = false;
    let mut done = false;
    let items = std::iter::from_fn(|| {
        if done {
            return None;
        }
        if let Some((i, e)) = first.take() {
            return Some(Ok((i, e)));
        }
        loop {
            match rx.recv() {
                Ok(Msg::Block(i, e)) => return Some(Ok((i, e))),
                Ok(Msg::Bad(b)) => return Some(Err(b)),
                Ok(Msg::Unblock(n)) => late_deleted.push(n),
                Ok(Msg::EndDeleted) => {}
                Ok(Msg::EndNew) => {
                    done = true;
                    return None;
                }
                Err(_) => {
                    // The parser stopped before the array ended: apply nothing of it.
                    broken = true;
                    done = true;
                    return Some(Err(BadEntry::fatal(
                        0,
                        "",
                        "the decisions stream broke off",
                    )));
                }
            }
        }
    });
    let r = ctl.block_stream(items, BulkOptions::default().skip_invalid(true));
    match r {
        Ok(report) => Ok(report),
        Err(BulkError::Invalid { .. }) if broken => Err(ApplyError::Json(
            "the decisions stream broke off; nothing of it was applied".into(),
        )),
        Err(e) => Err(ApplyError::Kernel(e.to_string())),
    }
}
