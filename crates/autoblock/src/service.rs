//! The asynchronous service (feature `tokio`): many tasks block and unblock concurrently, one
//! worker applies their requests in few large transactions, and each caller gets its own
//! precise result.
//!
//! It owns the request queue, coalescing, per-caller attribution of results and errors, and
//! graceful shutdown. It does not plan or encode anything itself: every transaction is a call
//! of the synchronous [`Controller`], which the worker owns on a blocking thread of its own
//! (netlink I/O blocks; the runtime's threads never wait for the kernel).
//!
//! How a round works:
//!
//! 1. The worker sleeps until a request arrives (no timer: an idle service costs nothing and
//!    a lone request is committed at once).
//! 2. It takes that request and everything else already queued (requests that arrived while
//!    the previous transaction was in flight), up to [`ServiceOptions::max_batch`] entries.
//!    A request that touches a network an earlier request of the round touches, or a
//!    `sync`/`list`/`status`, ends the round and starts the next one: arrival order decides
//!    between `block X` and `unblock X`.
//! 3. Each entry is validated on its own (allowlist, comment); an invalid entry fails only in
//!    its caller's [`Outcome::failed`].
//! 4. Set layout, the common case under churn: if every block of the round is of a new
//!    network and every unblock of a present one, the whole round is one transaction with no
//!    per-entry lookups (the kernel checks that assumption: `NEWSETELEM` with `NLM_F_EXCL`,
//!    `DELSETELEM`; if it does not hold, nothing is applied and step 5 runs).
//! 5. Otherwise the blocks of the round are one transaction and the unblocks another, each
//!    planned from what the kernel holds. If the kernel rejects one element, that entry
//!    fails for its caller and the rest is retried without it; an error that names no entry
//!    makes each request of the round retry on its own, so each caller gets the error of its
//!    own request.
//!
//! Not owned here: what an entry's metadata means in the kernel (the layouts), reading logs,
//! persistence of bans across restarts (a daemon's job), and timers (expiry is the kernel's
//! or the caller's).
//!
//! ```no_run
//! use std::time::Duration;
//! use autoblock::{Config, Controller, Entry, Layout, Service, ServiceOptions};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let ctl = Controller::open(Config::default().layout(Layout::Set))?;
//! let (svc, worker) = Service::start(ctl, ServiceOptions::default().queue(1024));
//! let mut tasks = Vec::new();
//! for i in 0..100u32 {
//!     let svc = svc.clone();
//!     tasks.push(tokio::spawn(async move {
//!         let net = format!("198.51.100.{}", i % 250).parse()?;
//!         let entry = Entry::new(net).with_timeout(Duration::from_secs(600));
//!         let outcome = svc.block(vec![entry]).await?;
//!         for (net, why) in &outcome.failed {
//!             eprintln!("{net} not blocked: {why}");
//!         }
//!         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(outcome.applied.len())
//!     }));
//! }
//! for t in tasks {
//!     t.await?.map_err(|e| e.to_string())?;
//! }
//! svc.shutdown().await; // applies what is queued, then the worker ends
//! worker.await??;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info_span};

use autoblock_netlink::Transport;

use crate::config::Config;
use crate::controller::{Controller, FamilyStatus, Listed, Report};
use crate::entry::{self, Entry, Net};
use crate::error::{Error, InputError};

/// Configuration of a [`Service`], with a chained builder.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceOptions {
    /// Requests that may wait in the queue; callers beyond it wait for room (backpressure).
    pub queue: usize,
    /// Entries merged into one transaction at most (a single larger request is still applied
    /// whole, in one transaction).
    pub max_batch: usize,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            queue: 4096,
            max_batch: 16_384,
        }
    }
}

impl ServiceOptions {
    /// Sets the queue length (at least 1).
    pub fn queue(mut self, n: usize) -> Self {
        self.queue = n.max(1);
        self
    }

    /// Sets the largest number of entries merged into one transaction (at least 1).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }
}

/// What became of each entry of one [`Service::block`] or [`Service::unblock`] request.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Outcome {
    /// Entries that were added, updated (comment, timeout) or removed.
    pub applied: Vec<Net>,
    /// Entries that were already in the requested state (for a block: present with the same
    /// metadata, or with an expiry time that has already passed).
    pub unchanged: Vec<Net>,
    /// Entries that were refused, and why; nothing of them was applied.
    pub failed: Vec<(Net, Error)>,
}

impl Outcome {
    /// Whether every entry was applied or already in place.
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Errors of a [`Service`] request as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The service is shutting down or has stopped: the request was not accepted and nothing
    /// of it was applied.
    #[error("the autoblock service has shut down; the request was not accepted")]
    Closed,
    /// The worker stopped (it panicked) after accepting the request: its outcome is unknown.
    #[error("the autoblock service stopped before answering; the request's outcome is unknown")]
    Lost,
    /// The controller failed the request as a whole (an error no single entry caused).
    #[error(transparent)]
    Controller(#[from] Error),
}

/// A cheaply cloneable handle to the worker that owns the controller.
///
/// Every clone sends to the same bounded queue. The worker stops once every handle is gone
/// or [`Service::shutdown`] was called, after applying everything already queued.
#[derive(Debug, Clone)]
pub struct Service {
    tx: mpsc::Sender<Msg>,
    /// Set by [`Service::shutdown`]: calls that start afterwards are refused at once.
    closed: Arc<AtomicBool>,
}

#[derive(Debug)]
enum Msg {
    Req(Request),
    Close,
}

#[derive(Debug)]
enum Op {
    Block(Vec<Entry>),
    Unblock(Vec<Net>),
    Sync(Vec<Entry>),
    List,
    Status,
}

#[derive(Debug)]
enum Reply {
    Outcome(Outcome),
    Report(Report),
    Listed(Vec<Listed>),
    Status(Vec<FamilyStatus>),
}

#[derive(Debug)]
struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Reply, ServiceError>>,
}

impl Service {
    /// Spawns the worker owning `ctl` on a blocking thread of the current tokio runtime and
    /// returns the handle and the worker's `JoinHandle` (it ends with `Ok(())` after a
    /// shutdown; requests never fail the worker itself).
    ///
    /// Must be called from within a tokio runtime. The controller keeps the network namespace
    /// it was opened in, whatever thread runs it.
    pub fn start<T>(
        ctl: Controller<T>,
        opts: ServiceOptions,
    ) -> (Service, tokio::task::JoinHandle<Result<(), Error>>)
    where
        T: Transport + Send + 'static,
    {
        Self::start_backend(ctl, opts)
    }

    fn start_backend<B: Backend>(
        backend: B,
        opts: ServiceOptions,
    ) -> (Service, tokio::task::JoinHandle<Result<(), Error>>) {
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let join = tokio::task::spawn_blocking(move || {
            Worker {
                backend,
                rx,
                max_batch: opts.max_batch.max(1),
                carry: None,
            }
            .run();
            Ok(())
        });
        (
            Service {
                tx,
                closed: Arc::new(AtomicBool::new(false)),
            },
            join,
        )
    }

    async fn call(&self, op: Op) -> Result<Reply, ServiceError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ServiceError::Closed);
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Req(Request { op, reply }))
            .await
            .map_err(|_| ServiceError::Closed)?;
        rx.await.map_err(|_| ServiceError::Lost)?
    }

    /// Blocks `entries`, merged with other callers' requests into few transactions.
    ///
    /// `Err` only when the request as a whole could not be applied; a refused entry (an
    /// allowlisted address, one the kernel rejected) is in [`Outcome::failed`] and does not
    /// keep the other entries from being applied.
    pub async fn block(&self, entries: Vec<Entry>) -> Result<Outcome, ServiceError> {
        match self.call(Op::Block(entries)).await? {
            Reply::Outcome(o) => Ok(o),
            _ => Err(ServiceError::Lost),
        }
    }

    /// Unblocks `nets`, merged with other callers' requests into few transactions.
    pub async fn unblock(&self, nets: Vec<Net>) -> Result<Outcome, ServiceError> {
        match self.call(Op::Unblock(nets)).await? {
            Reply::Outcome(o) => Ok(o),
            _ => Err(ServiceError::Lost),
        }
    }

    /// Makes the blocklist exactly `desired` ([`Controller::sync`]), in arrival order with
    /// the other requests (never merged with them).
    pub async fn sync(&self, desired: Vec<Entry>) -> Result<Report, ServiceError> {
        match self.call(Op::Sync(desired)).await? {
            Reply::Report(r) => Ok(r),
            _ => Err(ServiceError::Lost),
        }
    }

    /// Lists the blocked entries ([`Controller::list`]) after every earlier request.
    pub async fn list(&self) -> Result<Vec<Listed>, ServiceError> {
        match self.call(Op::List).await? {
            Reply::Listed(l) => Ok(l),
            _ => Err(ServiceError::Lost),
        }
    }

    /// Per-family status ([`Controller::status`]) after every earlier request.
    pub async fn status(&self) -> Result<Vec<FamilyStatus>, ServiceError> {
        match self.call(Op::Status).await? {
            Reply::Status(s) => Ok(s),
            _ => Err(ServiceError::Lost),
        }
    }

    /// Stops accepting requests (later calls on any handle return [`ServiceError::Closed`]);
    /// everything already queued is still applied and answered, then the worker ends.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        // An error means the worker is already gone: nothing left to flush.
        let _ = self.tx.send(Msg::Close).await;
    }
}

/// Runs a service until `shutdown` resolves, then flushes everything queued and returns the
/// worker's result (as in mini-redis' `server::run`).
///
/// The controller is opened for `cfg` in the calling thread's network namespace; `serve`
/// receives a handle right after (typically to spawn the tasks that feed the service).
pub async fn run(
    cfg: Config,
    opts: ServiceOptions,
    shutdown: impl Future<Output = ()>,
    serve: impl FnOnce(Service),
) -> Result<(), Error> {
    let ctl = Controller::open(cfg)?;
    let (svc, join) = Service::start(ctl, opts);
    serve(svc.clone());
    shutdown.await;
    svc.shutdown().await;
    drop(svc);
    match join.await {
        Ok(r) => r,
        Err(e) => Err(Error::Conflict(format!(
            "the service's worker stopped abnormally: {e}"
        ))),
    }
}

/// What the worker needs of a controller (the tests substitute a recording fake).
trait Backend: Send + 'static {
    fn validate(&self, e: &Entry) -> Result<(), InputError>;
    fn block(&mut self, entries: &[Entry]) -> Result<Report, Error>;
    fn unblock(&mut self, nets: &[Net]) -> Result<Report, Error>;
    fn sync(&mut self, desired: &[Entry]) -> Result<Report, Error>;
    fn list(&mut self) -> Result<Vec<Listed>, Error>;
    fn status(&mut self) -> Result<Vec<FamilyStatus>, Error>;
    /// Blocks and unblocks in one transaction, asserting the blocks are new and the unblocks
    /// present; `Ok(None)` (nothing applied) when that does not hold.
    fn churn(
        &mut self,
        _blocks: &[Entry],
        _unblocks: &[Net],
    ) -> Result<Option<(Report, Report)>, Error> {
        Ok(None)
    }
}

impl<T: Transport + Send + 'static> Backend for Controller<T> {
    fn validate(&self, e: &Entry) -> Result<(), InputError> {
        Controller::validate(self, std::slice::from_ref(e))
    }
    fn block(&mut self, entries: &[Entry]) -> Result<Report, Error> {
        Controller::block(self, entries)
    }
    fn unblock(&mut self, nets: &[Net]) -> Result<Report, Error> {
        Controller::unblock(self, nets)
    }
    fn sync(&mut self, desired: &[Entry]) -> Result<Report, Error> {
        Controller::sync(self, desired)
    }
    fn list(&mut self) -> Result<Vec<Listed>, Error> {
        Controller::list(self)
    }
    fn status(&mut self) -> Result<Vec<FamilyStatus>, Error> {
        Controller::status(self)
    }
    fn churn(
        &mut self,
        blocks: &[Entry],
        unblocks: &[Net],
    ) -> Result<Option<(Report, Report)>, Error> {
        self.set_churn(blocks, unblocks)
    }
}

/// One caller's request of a round.
struct Pending {
    reply: oneshot::Sender<Result<Reply, ServiceError>>,
    outcome: Outcome,
    error: Option<Error>,
}

/// Block or unblock: which transaction an entry goes to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Block,
    Unblock,
}

struct Worker<B> {
    backend: B,
    rx: mpsc::Receiver<Msg>,
    max_batch: usize,
    /// The request that ended the previous round, first of the next.
    carry: Option<Request>,
}

impl<B: Backend> Worker<B> {
    fn run(mut self) {
        loop {
            let first = match self.carry.take() {
                Some(r) => r,
                None => match self.rx.blocking_recv() {
                    Some(Msg::Req(r)) => r,
                    Some(Msg::Close) => {
                        debug!("service closing: flushing the queue");
                        self.rx.close();
                        continue;
                    }
                    None => return,
                },
            };
            match first.op {
                Op::Block(_) | Op::Unblock(_) => self.round(first),
                _ => self.single(first),
            }
        }
    }

    /// Requests that are never merged: run alone, in order.
    fn single(&mut self, req: Request) {
        let b = &mut self.backend;
        let r = match req.op {
            Op::Sync(d) => b.sync(&d).map(Reply::Report),
            Op::List => b.list().map(Reply::Listed),
            Op::Status => b.status().map(Reply::Status),
            Op::Block(_) | Op::Unblock(_) => return,
        };
        // A caller that stopped waiting is no error of the service.
        let _ = req.reply.send(r.map_err(ServiceError::from));
    }

    /// Takes `first` and what is queued behind it, then applies them.
    fn round(&mut self, first: Request) {
        let started = Instant::now();
        let mut pending: Vec<Pending> = Vec::new();
        // (request index, kind, entry) in arrival order; networks unique in the round.
        let mut items: Vec<(u32, Kind, Entry)> = Vec::new();
        let mut owner: HashMap<Net, u32> = HashMap::new();
        let mut next = Some(first);
        while let Some(req) = next.take() {
            let (kind, entries) = match req.op {
                Op::Block(mut e) => {
                    entry::dedup(&mut e);
                    (Kind::Block, e)
                }
                Op::Unblock(mut n) => {
                    let mut seen = std::collections::HashSet::with_capacity(n.len());
                    n.retain(|x| seen.insert(*x));
                    (Kind::Unblock, n.into_iter().map(Entry::new).collect())
                }
                op => {
                    self.carry = Some(Request { op, ..req });
                    break;
                }
            };
            if !pending.is_empty()
                && (items.len() + entries.len() > self.max_batch
                    || entries.iter().any(|e| owner.contains_key(&e.net)))
            {
                let op = match kind {
                    Kind::Block => Op::Block(entries),
                    Kind::Unblock => Op::Unblock(entries.into_iter().map(|e| e.net).collect()),
                };
                self.carry = Some(Request { op, ..req });
                break;
            }
            let ri = pending.len() as u32;
            let mut outcome = Outcome::default();
            for e in entries {
                if kind == Kind::Block {
                    if let Err(err) = self.backend.validate(&e) {
                        outcome.failed.push((e.net, Error::Input(err)));
                        continue;
                    }
                }
                owner.insert(e.net, ri);
                items.push((ri, kind, e));
            }
            pending.push(Pending {
                reply: req.reply,
                outcome,
                error: None,
            });
            next = match self.rx.try_recv() {
                Ok(Msg::Req(r)) => Some(r),
                Ok(Msg::Close) => {
                    debug!("service closing: flushing the queue");
                    self.rx.close();
                    self.rx.try_recv().ok().and_then(|m| match m {
                        Msg::Req(r) => Some(r),
                        Msg::Close => None,
                    })
                }
                Err(_) => None,
            };
        }
        let span = info_span!(
            "service_round",
            requests = pending.len(),
            entries = items.len(),
            micros = tracing::field::Empty
        );
        let _g = span.enter();
        let (blocks, unblocks): (Vec<_>, Vec<_>) =
            items.into_iter().partition(|(_, k, _)| *k == Kind::Block);
        if !self.fast(&blocks, &unblocks, &owner, &mut pending) {
            for (kind, part) in [(Kind::Block, blocks), (Kind::Unblock, unblocks)] {
                if !part.is_empty() {
                    let part = part.into_iter().map(|(ri, _, e)| (ri, e)).collect();
                    self.apply(kind, part, &owner, &mut pending);
                }
            }
        }
        span.record("micros", started.elapsed().as_micros() as u64);
        for p in pending {
            let r = match p.error {
                Some(e) => Err(ServiceError::Controller(e)),
                None => Ok(Reply::Outcome(p.outcome)),
            };
            let _ = p.reply.send(r);
        }
    }

    /// The round in one transaction when every block is new and every unblock present
    /// (the common case under churn): no per-entry reads. `false` when that did not hold or
    /// failed; nothing was applied then and the regular path runs.
    fn fast(
        &mut self,
        blocks: &[(u32, Kind, Entry)],
        unblocks: &[(u32, Kind, Entry)],
        owner: &HashMap<Net, u32>,
        pending: &mut [Pending],
    ) -> bool {
        let b: Vec<Entry> = blocks.iter().map(|(_, _, e)| e.clone()).collect();
        let u: Vec<Net> = unblocks.iter().map(|(_, _, e)| e.net).collect();
        match self.backend.churn(&b, &u) {
            Ok(Some((rb, ru))) => {
                credit(rb, owner, pending);
                credit(ru, owner, pending);
                true
            }
            Ok(None) => false,
            Err(e) => {
                debug!(error = %e, "fast path failed; taking the regular path");
                false
            }
        }
    }

    /// Applies `items` in one transaction; isolates entry-attributed failures and retries
    /// the rest, and splits by request on errors that name no entry.
    fn apply(
        &mut self,
        kind: Kind,
        mut items: Vec<(u32, Entry)>,
        owner: &HashMap<Net, u32>,
        pending: &mut [Pending],
    ) {
        while !items.is_empty() {
            let span = info_span!("service_commit", ?kind, entries = items.len());
            let _g = span.enter();
            let r = match kind {
                Kind::Block => {
                    let entries: Vec<Entry> = items.iter().map(|(_, e)| e.clone()).collect();
                    self.backend.block(&entries)
                }
                Kind::Unblock => {
                    let nets: Vec<Net> = items.iter().map(|(_, e)| e.net).collect();
                    self.backend.unblock(&nets)
                }
            };
            match r {
                Ok(report) => {
                    credit(report, owner, pending);
                    return;
                }
                Err(e) => {
                    if let Some(pos) = offender(&e, &items) {
                        let (ri, bad) = items.remove(pos);
                        debug!(entry = %bad.net, error = %e, "entry rejected; retrying the rest");
                        pending[ri as usize].outcome.failed.push((bad.net, e));
                        continue;
                    }
                    let first = items[0].0;
                    if items.iter().all(|(ri, _)| *ri == first) {
                        pending[first as usize].error = Some(e);
                        return;
                    }
                    debug!(error = %e, "transaction failed; retrying request by request");
                    let mut by_req: Vec<(u32, Vec<(u32, Entry)>)> = Vec::new();
                    for it in items {
                        match by_req.last_mut() {
                            Some((ri, v)) if *ri == it.0 => v.push(it),
                            _ => by_req.push((it.0, vec![it])),
                        }
                    }
                    for (_, part) in by_req {
                        self.apply(kind, part, owner, pending);
                    }
                    return;
                }
            }
        }
    }
}

/// Files each network of `report` under the caller that asked for it.
fn credit(report: Report, owner: &HashMap<Net, u32>, pending: &mut [Pending]) {
    let mut put = |nets: Vec<Net>, applied: bool| {
        for n in nets {
            if let Some(&ri) = owner.get(&n) {
                let o = &mut pending[ri as usize].outcome;
                if applied {
                    o.applied.push(n);
                } else {
                    o.unchanged.push(n);
                }
            }
        }
    };
    put(report.changed, true);
    put(report.updated, true);
    put(report.unchanged, false);
}

/// The position in `items` of the entry an error names, if it names one of them.
fn offender(e: &Error, items: &[(u32, Entry)]) -> Option<usize> {
    let Error::Rejected { entry, .. } = e else {
        return None;
    };
    let net: Net = entry.parse().ok()?;
    items.iter().position(|(_, x)| x.net == net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    use autoblock_netlink::KernelError;

    /// What the fake kernel holds and saw.
    #[derive(Default)]
    struct State {
        set: BTreeSet<Net>,
        /// Entry counts of the block/unblock transactions attempted, in order.
        commits: Vec<(Kind, usize)>,
        /// Whether the one-transaction path is offered, and (blocks, unblocks) of each
        /// attempt of it, with whether it applied.
        fast: bool,
        fast_commits: Vec<(usize, usize, bool)>,
    }

    /// A recording backend: a set of networks, an allowlist, networks the "kernel" rejects,
    /// and an optional gate that holds the first commit until the test opens it.
    struct Fake {
        state: Arc<Mutex<State>>,
        allow: Vec<Net>,
        reject: Vec<Net>,
        gate: Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>,
        /// Reject with an error that names no entry.
        unattributed: bool,
    }

    impl Fake {
        fn new(state: Arc<Mutex<State>>) -> Fake {
            Fake {
                state,
                allow: vec![net("127.0.0.0/8")],
                reject: Vec::new(),
                gate: None,
                unattributed: false,
            }
        }

        fn hold(&mut self) {
            if let Some((entered, open)) = self.gate.take() {
                entered.send(()).expect("test alive");
                open.recv().expect("gate opened");
            }
        }
    }

    impl Backend for Fake {
        fn validate(&self, e: &Entry) -> Result<(), InputError> {
            match self.allow.iter().find(|a| a.overlaps(&e.net)) {
                Some(a) => Err(InputError::Allowlisted {
                    entry: e.net.to_string(),
                    allowed: a.to_string(),
                    why: "loopback",
                }),
                None => Ok(()),
            }
        }
        fn block(&mut self, entries: &[Entry]) -> Result<Report, Error> {
            self.state
                .lock()
                .unwrap()
                .commits
                .push((Kind::Block, entries.len()));
            self.hold();
            if let Some(bad) = entries.iter().find(|e| self.reject.contains(&e.net)) {
                if self.unattributed {
                    return Err(Error::Conflict(format!("something about {}", bad.net)));
                }
                return Err(Error::Rejected {
                    entry: bad.net.to_string(),
                    error: KernelError {
                        errno: 22,
                        message: None,
                        offset: None,
                    },
                });
            }
            let mut st = self.state.lock().unwrap();
            let mut r = Report::default();
            for e in entries {
                if st.set.insert(e.net) {
                    r.changed.push(e.net);
                } else {
                    r.unchanged.push(e.net);
                }
            }
            Ok(r)
        }
        fn unblock(&mut self, nets: &[Net]) -> Result<Report, Error> {
            self.state
                .lock()
                .unwrap()
                .commits
                .push((Kind::Unblock, nets.len()));
            self.hold();
            let mut st = self.state.lock().unwrap();
            let mut r = Report::default();
            for n in nets {
                if st.set.remove(n) {
                    r.changed.push(*n);
                } else {
                    r.unchanged.push(*n);
                }
            }
            Ok(r)
        }
        fn sync(&mut self, desired: &[Entry]) -> Result<Report, Error> {
            let mut st = self.state.lock().unwrap();
            st.set = desired.iter().map(|e| e.net).collect();
            Ok(Report::default())
        }
        fn list(&mut self) -> Result<Vec<Listed>, Error> {
            Ok(Vec::new())
        }
        fn status(&mut self) -> Result<Vec<FamilyStatus>, Error> {
            Err(Error::TooManyRetries(7))
        }
        fn churn(
            &mut self,
            blocks: &[Entry],
            unblocks: &[Net],
        ) -> Result<Option<(Report, Report)>, Error> {
            if !self.state.lock().unwrap().fast {
                return Ok(None);
            }
            self.hold();
            let mut st = self.state.lock().unwrap();
            let holds = blocks.iter().all(|e| !st.set.contains(&e.net))
                && unblocks.iter().all(|n| st.set.contains(n));
            st.fast_commits.push((blocks.len(), unblocks.len(), holds));
            if !holds {
                return Ok(None);
            }
            st.set.extend(blocks.iter().map(|e| e.net));
            for n in unblocks {
                st.set.remove(n);
            }
            let b = Report {
                changed: blocks.iter().map(|e| e.net).collect(),
                ..Report::default()
            };
            let u = Report {
                changed: unblocks.to_vec(),
                ..Report::default()
            };
            Ok(Some((b, u)))
        }
    }

    fn net(s: &str) -> Net {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn host(i: u32) -> Net {
        Net::host(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
            0xC633_6400 + i, // 198.51.100.0 + i
        )))
    }

    fn entries(nets: &[Net]) -> Vec<Entry> {
        nets.iter().map(|n| Entry::new(*n)).collect()
    }

    /// A service, its worker, "the worker entered its first commit", and the gate opener.
    type Gated = (
        Service,
        tokio::task::JoinHandle<Result<(), Error>>,
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    );

    /// Starts a service over a fake whose first commit waits for the returned gate sender.
    fn gated(state: &Arc<Mutex<State>>, reject: Vec<Net>) -> Gated {
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (open_tx, open_rx) = std::sync::mpsc::channel();
        let mut fake = Fake::new(state.clone());
        fake.unattributed = reject.len() > 1;
        fake.reject = reject;
        fake.gate = Some((entered_tx, open_rx));
        let (svc, join) = Service::start_backend(fake, ServiceOptions::default());
        (svc, join, entered_rx, open_tx)
    }

    /// Waits (on a blocking thread) until the worker is inside its first commit.
    async fn wait_entered(rx: std::sync::mpsc::Receiver<()>) {
        tokio::task::spawn_blocking(move || {
            rx.recv_timeout(std::time::Duration::from_secs(20))
                .expect("the worker never entered its first commit")
        })
        .await
        .expect("join");
    }

    /// Waits until `n` requests sit in the queue.
    async fn wait_queued(svc: &Service, n: usize) {
        let t0 = std::time::Instant::now();
        while svc.tx.max_capacity() - svc.tx.capacity() < n {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(10),
                "requests never queued"
            );
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_request_is_committed_at_once_without_a_timer() {
        let state = Arc::new(Mutex::new(State::default()));
        let (svc, join) = Service::start_backend(Fake::new(state.clone()), Default::default());
        let t0 = tokio::time::Instant::now();
        let o = svc.block(entries(&[host(1)])).await.unwrap();
        // With paused time a timer would have been auto-advanced: the clock did not move.
        assert_eq!(t0.elapsed(), std::time::Duration::ZERO);
        assert_eq!(o.applied, vec![host(1)]);
        assert!(o.unchanged.is_empty() && o.failed.is_empty());
        drop(svc);
        join.await.unwrap().unwrap();
        assert_eq!(state.lock().unwrap().commits, vec![(Kind::Block, 1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_queued_during_a_commit_share_the_next_transaction() {
        let state = Arc::new(Mutex::new(State::default()));
        let (svc, join, entered, open) = gated(&state, Vec::new());
        let first = tokio::spawn({
            let svc = svc.clone();
            async move { svc.block(entries(&[host(0)])).await }
        });
        wait_entered(entered).await;
        // 20 callers, 3 entries each, one of them already blocked by the first request.
        let mut tasks = Vec::new();
        for t in 0..20u32 {
            let svc = svc.clone();
            let mine = vec![host(100 + 3 * t), host(101 + 3 * t), host(102 + 3 * t)];
            tasks.push(tokio::spawn(async move {
                let out = svc.block(entries(&mine)).await;
                (mine, out)
            }));
        }
        wait_queued(&svc, 20).await;
        open.send(()).unwrap();
        let o = first.await.unwrap().unwrap();
        assert_eq!(o.applied, vec![host(0)]);
        for t in tasks {
            let (mine, out) = t.await.unwrap();
            let out = out.unwrap();
            assert_eq!(
                out.applied, mine,
                "each caller gets exactly its own entries"
            );
            assert!(out.unchanged.is_empty() && out.failed.is_empty());
        }
        drop(svc);
        join.await.unwrap().unwrap();
        let st = state.lock().unwrap();
        assert_eq!(st.commits, vec![(Kind::Block, 1), (Kind::Block, 60)]);
        assert_eq!(st.set.len(), 61);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poisoned_entry_fails_only_its_caller() {
        let state = Arc::new(Mutex::new(State::default()));
        let rejected = host(7);
        let (svc, join, entered, open) = gated(&state, vec![rejected]);
        let first = tokio::spawn({
            let svc = svc.clone();
            async move { svc.block(entries(&[host(1)])).await }
        });
        wait_entered(entered).await;
        let a = tokio::spawn({
            let svc = svc.clone();
            async move { svc.block(entries(&[host(2), net("127.0.0.1")])).await }
        });
        wait_queued(&svc, 1).await;
        let b = tokio::spawn({
            let svc = svc.clone();
            async move { svc.block(entries(&[host(3), rejected, host(1)])).await }
        });
        wait_queued(&svc, 2).await;
        let c = tokio::spawn({
            let svc = svc.clone();
            async move { svc.block(entries(&[host(4)])).await }
        });
        wait_queued(&svc, 3).await;
        open.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap().applied, vec![host(1)]);
        let a = a.await.unwrap().unwrap();
        assert_eq!(a.applied, vec![host(2)]);
        assert_eq!(a.failed.len(), 1);
        assert_eq!(a.failed[0].0, net("127.0.0.1"));
        assert!(matches!(
            a.failed[0].1,
            Error::Input(InputError::Allowlisted { .. })
        ));
        let b = b.await.unwrap().unwrap();
        assert_eq!(b.applied, vec![host(3)]);
        assert_eq!(b.unchanged, vec![host(1)]);
        assert_eq!(b.failed.len(), 1);
        assert_eq!(b.failed[0].0, rejected);
        assert!(b.failed[0].1.to_string().contains(&rejected.to_string()));
        assert_eq!(c.await.unwrap().unwrap().applied, vec![host(4)]);
        drop(svc);
        join.await.unwrap().unwrap();
        let st = state.lock().unwrap();
        // The merged transaction (2 + 3 + 1 entries) was rejected, then retried without the
        // offender; the allowlisted entry never reached the kernel.
        assert_eq!(
            st.commits,
            vec![(Kind::Block, 1), (Kind::Block, 5), (Kind::Block, 4)]
        );
        assert_eq!(
            st.set.iter().copied().collect::<Vec<_>>(),
            vec![host(1), host(2), host(3), host(4)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn block_then_unblock_of_one_network_keeps_arrival_order() {
        let state = Arc::new(Mutex::new(State::default()));
        let (svc, join, entered, open) = gated(&state, Vec::new());
        let first = tokio::spawn({
            let svc = svc.clone();
            async move { svc.block(entries(&[host(0)])).await }
        });
        wait_entered(entered).await;
        let x = host(9);
        let mut tasks = Vec::new();
        for (i, op) in [Kind::Block, Kind::Unblock, Kind::Block, Kind::Unblock]
            .into_iter()
            .enumerate()
        {
            let s = svc.clone();
            tasks.push(tokio::spawn(async move {
                match op {
                    Kind::Block => s.block(entries(&[x])).await,
                    Kind::Unblock => s.unblock(vec![x]).await,
                }
            }));
            wait_queued(&svc, i + 1).await;
        }
        open.send(()).unwrap();
        first.await.unwrap().unwrap();
        for t in tasks {
            let o = t.await.unwrap().unwrap();
            assert_eq!(o.applied, vec![x], "each step changed the state");
        }
        drop(svc);
        join.await.unwrap().unwrap();
        let st = state.lock().unwrap();
        assert!(!st.set.contains(&x), "the last request (unblock) wins");
        assert_eq!(
            st.commits,
            vec![
                (Kind::Block, 1),
                (Kind::Block, 1),
                (Kind::Unblock, 1),
                (Kind::Block, 1),
                (Kind::Unblock, 1)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_flushes_the_queue_and_refuses_later_requests() {
        let state = Arc::new(Mutex::new(State::default()));
        let (svc, join, entered, open) = gated(&state, Vec::new());
        let first = tokio::spawn({
            let svc = svc.clone();
            async move { svc.block(entries(&[host(0)])).await }
        });
        wait_entered(entered).await;
        let mut tasks = Vec::new();
        for t in 1..=50u32 {
            let svc = svc.clone();
            tasks.push(tokio::spawn(
                async move { svc.block(entries(&[host(t)])).await },
            ));
        }
        wait_queued(&svc, 50).await;
        let closer = tokio::spawn({
            let svc = svc.clone();
            async move { svc.shutdown().await }
        });
        wait_queued(&svc, 51).await;
        open.send(()).unwrap();
        closer.await.unwrap();
        first.await.unwrap().unwrap();
        for t in tasks {
            assert!(t.await.unwrap().unwrap().is_ok());
        }
        join.await.unwrap().unwrap();
        assert!(matches!(
            svc.block(entries(&[host(99)])).await,
            Err(ServiceError::Closed)
        ));
        assert_eq!(state.lock().unwrap().set.len(), 51);
    }

    #[tokio::test(start_paused = true)]
    async fn whole_request_errors_and_barriers() {
        let state = Arc::new(Mutex::new(State::default()));
        let (svc, join) = Service::start_backend(Fake::new(state.clone()), Default::default());
        svc.block(entries(&[host(1), host(2)])).await.unwrap();
        let r = svc.sync(entries(&[host(3)])).await.unwrap();
        assert_eq!(r, Report::default());
        assert_eq!(
            state
                .lock()
                .unwrap()
                .set
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![host(3)]
        );
        let o = svc.unblock(vec![host(3), host(4), host(3)]).await.unwrap();
        assert_eq!(o.applied, vec![host(3)]);
        assert_eq!(o.unchanged, vec![host(4)]);
        assert!(svc.list().await.unwrap().is_empty());
        match svc.status().await {
            Err(ServiceError::Controller(Error::TooManyRetries(7))) => {}
            other => panic!("expected the controller's error, got {other:?}"),
        }
        drop(svc);
        join.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_of_new_blocks_and_present_unblocks_is_one_transaction() {
        let state = Arc::new(Mutex::new(State {
            fast: true,
            set: (10..20).map(host).collect(),
            ..State::default()
        }));
        let (svc, join, entered, open) = gated(&state, Vec::new());
        let first = tokio::spawn({
            let svc = svc.clone();
            async move { svc.unblock(vec![host(10)]).await }
        });
        wait_entered(entered).await;
        let mut tasks = Vec::new();
        for t in 0..8u32 {
            let s = svc.clone();
            tasks.push(tokio::spawn(async move {
                if t % 2 == 0 {
                    s.block(entries(&[host(100 + t)])).await
                } else {
                    s.unblock(vec![host(11 + t)]).await
                }
            }));
        }
        wait_queued(&svc, 8).await;
        open.send(()).unwrap();
        first.await.unwrap().unwrap();
        for (t, h) in tasks.into_iter().enumerate() {
            let o = h.await.unwrap().unwrap();
            let want = if t % 2 == 0 {
                host(100 + t as u32)
            } else {
                host(11 + t as u32)
            };
            assert_eq!(o.applied, vec![want], "caller {t}");
        }
        // A round where one unblock is of an absent network: the one-transaction path
        // refuses, the regular path reports it as unchanged and applies the rest.
        let a = tokio::spawn({
            let s = svc.clone();
            async move { s.block(entries(&[host(200)])).await }
        });
        let b = tokio::spawn({
            let s = svc.clone();
            async move { s.unblock(vec![host(999)]).await }
        });
        assert_eq!(a.await.unwrap().unwrap().applied, vec![host(200)]);
        let b = b.await.unwrap().unwrap();
        assert_eq!(b.unchanged, vec![host(999)]);
        assert!(b.applied.is_empty());
        drop(svc);
        join.await.unwrap().unwrap();
        let st = state.lock().unwrap();
        // The eight requests queued behind the gated first one were one transaction of 4
        // blocks and 4 unblocks.
        assert!(
            st.fast_commits.contains(&(4, 4, true)),
            "{:?}",
            st.fast_commits
        );
        assert!(
            st.fast_commits.iter().any(|c| !c.2),
            "{:?}",
            st.fast_commits
        );
        assert!(st.set.contains(&host(200)) && !st.set.contains(&host(12)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_naming_no_entry_fails_only_the_request_that_causes_it() {
        let state = Arc::new(Mutex::new(State::default()));
        // Two rejected networks make the fake answer with an error that names no entry.
        let bad = host(66);
        let (svc, join, entered, open) = gated(&state, vec![bad, host(67)]);
        let first = tokio::spawn({
            let svc = svc.clone();
            async move { svc.block(entries(&[host(1)])).await }
        });
        wait_entered(entered).await;
        let mut tasks = Vec::new();
        for t in 0..3u32 {
            let s = svc.clone();
            let mine = if t == 1 {
                vec![host(10 + t), bad]
            } else {
                vec![host(10 + t)]
            };
            tasks.push(tokio::spawn(async move { s.block(entries(&mine)).await }));
            wait_queued(&svc, t as usize + 1).await;
        }
        open.send(()).unwrap();
        first.await.unwrap().unwrap();
        let results: Vec<_> = {
            let mut v = Vec::new();
            for h in tasks {
                v.push(h.await.unwrap());
            }
            v
        };
        assert_eq!(results[0].as_ref().unwrap().applied, vec![host(10)]);
        match &results[1] {
            Err(ServiceError::Controller(Error::Conflict(m))) => {
                assert!(m.contains(&bad.to_string()), "{m}")
            }
            other => panic!("expected the request's own error, got {other:?}"),
        }
        assert_eq!(results[2].as_ref().unwrap().applied, vec![host(12)]);
        drop(svc);
        join.await.unwrap().unwrap();
        let st = state.lock().unwrap();
        // Merged (4 entries) failed; then each request alone: 2 (fails), 1, 1.
        assert_eq!(
            st.commits,
            vec![
                (Kind::Block, 1),
                (Kind::Block, 4),
                (Kind::Block, 1),
                (Kind::Block, 2),
                (Kind::Block, 1)
            ]
        );
        assert!(
            !st.set.contains(&host(11)),
            "nothing of the failing request applied"
        );
    }
}
