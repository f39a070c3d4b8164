//! A connection to nf_tables: requests (GETGEN, single GETs, dumps) and batch commits over any
//! [`Transport`].
//!
//! The transaction logic lives here and is independent of the real socket, so it is tested
//! with a fake transport that records batches and plays back kernel replies. What this module
//! does not do: decide what to change (the controller does) or retry a stale batch (only the
//! caller can rebuild it from fresh state).

use std::io;

use crate::batch::{Batch, OpId, BEGIN_LEN};
use crate::consts::*;
use crate::error::{CommitError, Error, KernelError, OpError, ERESTART};
use crate::objects::{Chain, Family, Rule, Set, SetElem, Table};
use crate::socket::Socket;
use crate::wire::{Messages, MsgWriter, NlMsg};

/// What a connection needs from a socket. [`Socket`] is the real one; tests use
/// [`crate::fake::FakeTransport`].
pub trait Transport {
    /// The port id the kernel assigned (replies carry it in `nlmsg_pid`).
    fn portid(&self) -> u32;
    /// Makes sure a datagram of `len` bytes can be sent; on failure returns the largest
    /// datagram that can.
    fn reserve_send(&mut self, len: usize) -> Result<(), usize>;
    /// Asks for a receive buffer of `len` bytes; returns what is in force.
    fn reserve_recv(&mut self, len: usize) -> usize;
    /// Sends one datagram made of `parts` (one `sendmsg`).
    fn send(&mut self, parts: &[&[u8]]) -> io::Result<()>;
    /// Receives one datagram. `wait_ms`: `None` = do not block; `Some(ms)` = wait up to ms.
    /// `Ok(None)` = nothing to read.
    fn recv(&mut self, buf: &mut [u8], wait_ms: Option<u64>) -> io::Result<Option<usize>>;
}

/// A consistent read: the items and the generation id they belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dumped<T> {
    /// Ruleset generation the items were read at.
    pub genid: u32,
    /// The items.
    pub items: T,
}

/// Name prefix of the scratch tables the capability probes create and delete again within
/// a moment (a change monitor can ignore them: they are never anyone's state).
pub const PROBE_TABLE_PREFIX: &str = "autoblock-probe-";

/// Options of [`Conn::commit`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct CommitOptions {
    /// Generation id to guard the batch with (`NFNL_BATCH_GENID`): the kernel refuses the
    /// batch with `ERESTART` if the ruleset changed since. `None` = no check.
    pub genid: Option<u32>,
    /// Ask the kernel for the generation id the batch created.
    pub want_genid: bool,
}

impl CommitOptions {
    /// Guard the batch with `genid`.
    pub fn genid(mut self, genid: u32) -> Self {
        self.genid = Some(genid);
        self
    }

    /// Report the new generation id.
    pub fn want_genid(mut self) -> Self {
        self.want_genid = true;
        self
    }
}

/// A committed batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Handles of rules queued with an echo request, in batch order.
    pub handles: Vec<(OpId, u64)>,
    /// The new generation id, if requested and reported.
    pub genid: Option<u32>,
}

/// Receive buffer for one datagram. Dump parts are at most 32 KiB; notifications are
/// coalesced into skbs of a few pages.
const RX_BUF: usize = 256 * 1024;
/// How long to wait for the reply to a request before giving up.
const REPLY_TIMEOUT_MS: u64 = 10_000;
/// How often a dump is restarted when the ruleset changes under it.
const DUMP_RETRIES: u32 = 16;

/// A connection to nf_tables.
#[derive(Debug)]
pub struct Conn<T: Transport = Socket> {
    t: T,
    seq: u32,
    rx: Vec<u8>,
}

impl Conn<Socket> {
    /// Opens a connection in the calling thread's network namespace.
    pub fn open() -> Result<Self, Error> {
        Ok(Conn::with_transport(Socket::open()?))
    }
}

enum Flow {
    Continue,
    Done,
}

impl<T: Transport> Conn<T> {
    /// A connection over any transport.
    pub fn with_transport(t: T) -> Self {
        // Start sequence numbers from the clock so that replies to an earlier process using
        // the same port id are never mistaken for ours.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(1);
        Conn {
            t,
            seq: seed & 0x3fff_ffff,
            rx: vec![0; RX_BUF],
        }
    }

    /// Sets the sequence number the next request starts after (deterministic tests).
    #[doc(hidden)]
    pub fn set_seq(&mut self, seq: u32) {
        self.seq = seq;
    }

    /// The transport.
    pub fn transport(&mut self) -> &mut T {
        &mut self.t
    }

    fn next_seq(&mut self, n: u32) -> u32 {
        let s = self.seq.wrapping_add(1);
        self.seq = self.seq.wrapping_add(n);
        s
    }

    /// Reads and discards anything already queued (late replies of an earlier request).
    fn drain_stale(&mut self) -> Result<(), Error> {
        loop {
            match self.t.recv(&mut self.rx, None) {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(e) => return Err(Error::io("recvmsg", e)),
            }
        }
    }

    /// Sends one request and feeds every reply with its sequence number to `on_msg` until
    /// it says done (or an `NLMSG_DONE`/`NLMSG_ERROR` ends it).
    fn request(
        &mut self,
        req: &[u8],
        seq: u32,
        what: &dyn Fn() -> String,
        mut on_msg: impl FnMut(&NlMsg<'_>) -> Result<Flow, Error>,
    ) -> Result<(), Error> {
        self.drain_stale()?;
        self.t.send(&[req]).map_err(|e| Error::io("sendmsg", e))?;
        let portid = self.t.portid();
        loop {
            let n = match self.t.recv(&mut self.rx, Some(REPLY_TIMEOUT_MS)) {
                Ok(Some(n)) => n,
                Ok(None) => return Err(Error::Timeout(REPLY_TIMEOUT_MS)),
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => return Err(Error::Truncated),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Err(Error::RepliesLost)
                }
                Err(e) => return Err(Error::io("recvmsg", e)),
            };
            let data = self.rx[..n].to_vec();
            for m in Messages::new(&data) {
                let m = m?;
                if m.seq != seq || (m.pid != portid && m.pid != 0) {
                    continue;
                }
                match m.ty {
                    NLMSG_DONE => {
                        let err = m
                            .payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(0);
                        if err < 0 {
                            return Err(Error::Kernel {
                                what: what(),
                                error: KernelError {
                                    errno: -err,
                                    message: None,
                                    offset: None,
                                },
                            });
                        }
                        return Ok(());
                    }
                    NLMSG_ERROR => {
                        let e = parse_error(&m);
                        if e.errno == 0 {
                            return Ok(());
                        }
                        if e.errno == libc::EPERM {
                            return Err(Error::PermissionDenied);
                        }
                        return Err(Error::Kernel {
                            what: what(),
                            error: e,
                        });
                    }
                    _ => {
                        if let Flow::Done = on_msg(&m)? {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// The current ruleset generation id (`NFT_MSG_GETGEN`).
    pub fn genid(&mut self) -> Result<u32, Error> {
        let seq = self.next_seq(1);
        let mut req = Vec::with_capacity(20);
        MsgWriter::begin(
            &mut req,
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN,
            NLM_F_REQUEST,
            seq,
            NFPROTO_UNSPEC,
            0,
        )
        .finish();
        let mut genid = None;
        self.request(&req, seq, &|| "GETGEN".to_owned(), |m| {
            if m.nft_type() == Some(NFT_MSG_NEWGEN) {
                for a in m.attrs() {
                    let a = a?;
                    if a.ty == NFTA_GEN_ID {
                        genid = Some(a.be32()?);
                    }
                }
                return Ok(Flow::Done);
            }
            Ok(Flow::Continue)
        })?;
        genid.ok_or(Error::Decode(crate::error::DecodeError::new(
            "NEWGEN reply without a generation id",
        )))
    }

    /// Runs a dump until it completes at a single generation (restarting when the ruleset
    /// changes under it: `NLM_F_DUMP_INTR` or a `res_id` that differs from the generation).
    fn dump(
        &mut self,
        nft_type: u16,
        family: Family,
        what: &dyn Fn() -> String,
        attrs: &dyn Fn(&mut MsgWriter<'_>),
        mut on_item: impl FnMut(&NlMsg<'_>) -> Result<(), Error>,
        mut reset: impl FnMut(),
    ) -> Result<u32, Error> {
        for _ in 0..DUMP_RETRIES {
            let genid = self.genid()?;
            let seq = self.next_seq(1);
            let mut req = Vec::with_capacity(128);
            let mut w = MsgWriter::begin(
                &mut req,
                (NFNL_SUBSYS_NFTABLES << 8) | nft_type,
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                family.code(),
                0,
            );
            attrs(&mut w);
            w.finish();
            let mut interrupted = false;
            reset();
            let r = self.request(&req, seq, what, |m| {
                if m.flags & NLM_F_DUMP_INTR != 0 || m.res_id() != (genid & 0xffff) as u16 {
                    interrupted = true;
                }
                if !interrupted {
                    on_item(m)?;
                }
                Ok(Flow::Continue)
            });
            match r {
                // A dump of something that vanished meanwhile: retry at the new generation.
                Err(Error::Kernel { ref error, .. })
                    if error.errno == libc::EINTR || error.errno == libc::EAGAIN =>
                {
                    continue
                }
                Err(e) => return Err(e),
                Ok(()) => {}
            }
            if !interrupted {
                return Ok(genid);
            }
        }
        Err(Error::DumpInterrupted(DUMP_RETRIES))
    }

    /// Runs a dump of `get` and collects the `new` replies that `decode` keeps. A restarted
    /// dump starts the collection over, so the items all belong to the returned generation.
    fn collect<I>(
        &mut self,
        (get, new): (u16, u16),
        family: Family,
        what: &dyn Fn() -> String,
        attrs: &dyn Fn(&mut MsgWriter<'_>),
        decode: impl Fn(&NlMsg<'_>) -> Result<Option<I>, Error>,
    ) -> Result<Dumped<Vec<I>>, Error> {
        let items = std::cell::RefCell::new(Vec::new());
        let genid = self.dump(
            get,
            family,
            what,
            attrs,
            |m| {
                if m.nft_type() == Some(new) {
                    if let Some(item) = decode(m)? {
                        items.borrow_mut().push(item);
                    }
                }
                Ok(())
            },
            || items.borrow_mut().clear(),
        )?;
        Ok(Dumped {
            genid,
            items: items.into_inner(),
        })
    }

    /// Lists tables of `family` (`Family::Unspec` = all).
    pub fn list_tables(&mut self, family: Family) -> Result<Dumped<Vec<Table>>, Error> {
        self.collect(
            (NFT_MSG_GETTABLE, NFT_MSG_NEWTABLE),
            family,
            &|| "the table listing".to_owned(),
            &|_| {},
            |m| Ok(Some(Table::decode(m)?)),
        )
    }

    /// Lists chains of `family`, optionally of one table.
    pub fn list_chains(
        &mut self,
        family: Family,
        table: Option<&str>,
    ) -> Result<Dumped<Vec<Chain>>, Error> {
        self.collect(
            (NFT_MSG_GETCHAIN, NFT_MSG_NEWCHAIN),
            family,
            &|| "the chain listing".to_owned(),
            &|w| {
                if let Some(t) = table {
                    w.put_str(NFTA_CHAIN_TABLE, t);
                }
            },
            |m| {
                let c = Chain::decode(m)?;
                Ok(table.is_none_or(|t| c.table == t).then_some(c))
            },
        )
    }

    /// Lists the rules of a table, optionally of one chain, with handles and counters.
    pub fn list_rules(
        &mut self,
        family: Family,
        table: &str,
        chain: Option<&str>,
    ) -> Result<Dumped<Vec<Rule>>, Error> {
        self.collect(
            (NFT_MSG_GETRULE, NFT_MSG_NEWRULE),
            family,
            &|| match chain {
                Some(c) => format!("the rule listing of {} {table} {c}", family.nft_name()),
                None => format!("the rule listing of {} {table}", family.nft_name()),
            },
            &|w| {
                w.put_str(NFTA_RULE_TABLE, table);
                if let Some(c) = chain {
                    w.put_str(NFTA_RULE_CHAIN, c);
                }
            },
            |m| Ok(Some(Rule::decode(m)?)),
        )
    }

    /// Reads one rule by handle; `Ok(None)` if it does not exist.
    pub fn get_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        handle: u64,
    ) -> Result<Option<Rule>, Error> {
        let seq = self.next_seq(1);
        let mut req = Vec::with_capacity(96);
        let mut w = MsgWriter::begin(
            &mut req,
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
            NLM_F_REQUEST,
            seq,
            family.code(),
            0,
        );
        w.put_str(NFTA_RULE_TABLE, table);
        w.put_str(NFTA_RULE_CHAIN, chain);
        w.put_be64(NFTA_RULE_HANDLE, handle);
        w.finish();
        let mut rule = None;
        let r = self.request(&req, seq, &|| format!("GETRULE handle {handle}"), |m| {
            if m.nft_type() == Some(NFT_MSG_NEWRULE) {
                rule = Some(Rule::decode(m)?);
                return Ok(Flow::Done);
            }
            Ok(Flow::Continue)
        });
        match r {
            Err(Error::Kernel { error, .. }) if error.errno == libc::ENOENT => Ok(None),
            Err(e) => Err(e),
            Ok(()) => Ok(rule),
        }
    }

    /// Lists sets of a table (`None` = every table of the family).
    pub fn list_sets(
        &mut self,
        family: Family,
        table: Option<&str>,
    ) -> Result<Dumped<Vec<Set>>, Error> {
        self.collect(
            (NFT_MSG_GETSET, NFT_MSG_NEWSET),
            family,
            &|| "the set listing".to_owned(),
            &|w| {
                if let Some(t) = table {
                    w.put_str(NFTA_SET_TABLE, t);
                }
            },
            |m| Ok(Some(Set::decode(m)?)),
        )
    }

    /// Streams the live elements of a set to `f`. `f` is called again from the start if the
    /// dump has to restart (see `reset`). Returns the generation the elements belong to.
    pub fn for_each_element(
        &mut self,
        family: Family,
        table: &str,
        set: &str,
        mut reset: impl FnMut(),
        mut f: impl FnMut(SetElem),
    ) -> Result<u32, Error> {
        self.dump(
            NFT_MSG_GETSETELEM,
            family,
            &|| {
                format!(
                    "the element listing of set {} {table} {set}",
                    family.nft_name()
                )
            },
            &|w| {
                w.put_str(NFTA_SET_ELEM_LIST_TABLE, table);
                w.put_str(NFTA_SET_ELEM_LIST_SET, set);
            },
            |m| {
                if m.nft_type() == Some(NFT_MSG_NEWSETELEM) {
                    SetElem::decode_all(m, &mut f)?;
                }
                Ok(())
            },
            &mut reset,
        )
    }

    /// Commits a batch as one transaction: one `sendmsg`, then a non-blocking drain of every
    /// reply the kernel queued while it processed the batch.
    ///
    /// Success means: no error for any message and no reply lost. A lost reply (ENOBUFS)
    /// yields [`CommitError::OutcomeUnknown`], never success.
    pub fn commit(
        &mut self,
        batch: &mut Batch,
        opts: CommitOptions,
    ) -> Result<Committed, CommitError> {
        if batch.is_empty() {
            return Ok(Committed::default());
        }
        let n = batch.msgs.len() as u32;
        let base = self.next_seq(n + 2);
        let end_seq = base.wrapping_add(n + 1);
        // Sequence numbers: BEGIN = base, commands base+1..=base+n, END = base+n+1.
        patch_u32(&mut batch.buf, 8, base);
        let genid = opts.genid.unwrap_or(0);
        batch.buf[24..BEGIN_LEN].copy_from_slice(&genid.to_be_bytes());
        for (i, m) in batch.msgs.iter().enumerate() {
            patch_u32(&mut batch.buf, m.start + 8, base.wrapping_add(1 + i as u32));
        }
        let echo_flag_at = if opts.want_genid {
            batch.first_command_flags_offset()
        } else {
            None
        };
        let mut saved_flags = 0u16;
        if let Some(at) = echo_flag_at {
            saved_flags = u16::from_ne_bytes([batch.buf[at], batch.buf[at + 1]]);
            batch.buf[at..at + 2].copy_from_slice(&(saved_flags | NLM_F_ECHO).to_ne_bytes());
        }
        let mut end = Vec::with_capacity(20);
        MsgWriter::begin(
            &mut end,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end_seq,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        )
        .finish();

        let total = batch.buf.len() + end.len();
        let result = self.send_and_collect(batch, &end, total, base, end_seq);
        if let Some(at) = echo_flag_at {
            batch.buf[at..at + 2].copy_from_slice(&saved_flags.to_ne_bytes());
        }
        result
    }

    fn send_and_collect(
        &mut self,
        batch: &Batch,
        end: &[u8],
        total: usize,
        base: u32,
        end_seq: u32,
    ) -> Result<Committed, CommitError> {
        if let Err(max) = self.t.reserve_send(total) {
            return Err(CommitError::TooLarge { len: total, max });
        }
        // Each failing message yields at most one error (~1 KiB of skb truesize); echoed
        // rules come back coalesced, roughly their own size.
        let want = 256 * 1024 + batch.msgs.len() * 1024 + batch.echo_count() * 1024;
        self.t.reserve_recv(want.min(1 << 30));
        self.drain_stale()?;
        match self.t.send(&[&batch.buf, end]) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                return Err(CommitError::TooLarge { len: total, max: 0 })
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                return Err(CommitError::PermissionDenied)
            }
            Err(e) => return Err(CommitError::Io(Error::io("sendmsg", e))),
        }

        let portid = self.t.portid();
        let mut errors = Vec::new();
        let mut lost = false;
        let mut committed = Committed::default();
        let mut stale_genid = false;
        let mut denied = false;
        loop {
            let n = match self.t.recv(&mut self.rx, None) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    lost = true;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    lost = true;
                    continue;
                }
                Err(e) => return Err(CommitError::Io(Error::io("recvmsg", e))),
            };
            let data = &self.rx[..n];
            for m in Messages::new(data) {
                let m = m.map_err(Error::from)?;
                if m.pid != portid && m.pid != 0 {
                    continue;
                }
                let rel = m.seq.wrapping_sub(base);
                if rel > end_seq.wrapping_sub(base) {
                    continue;
                }
                match (m.ty, m.nft_type()) {
                    (NLMSG_ERROR, _) => {
                        let e = parse_error(&m);
                        if e.errno == 0 {
                            continue;
                        }
                        if rel == 0 {
                            match e.errno {
                                ERESTART => stale_genid = true,
                                libc::EPERM => denied = true,
                                _ => errors.push(OpError {
                                    op: batch.msgs.first().map(|x| x.op).unwrap_or(OpId(0)),
                                    element: None,
                                    error: e,
                                }),
                            }
                            continue;
                        }
                        if e.errno == libc::EPERM {
                            denied = true;
                        }
                        let idx = (rel as usize).saturating_sub(1);
                        let (op, element) = match batch.msgs.get(idx) {
                            Some(info) => {
                                (info.op, e.offset.and_then(|off| batch.element_at(idx, off)))
                            }
                            // An error on BATCH_END: charge it to the last command.
                            None => (batch.msgs.last().map(|x| x.op).unwrap_or(OpId(0)), None),
                        };
                        errors.push(OpError {
                            op,
                            element,
                            error: e,
                        });
                    }
                    (_, Some(NFT_MSG_NEWRULE)) if rel != 0 => {
                        let idx = (rel as usize).saturating_sub(1);
                        if let (Some(info), Ok(rule)) = (batch.msgs.get(idx), Rule::decode(&m)) {
                            committed.handles.push((info.op, rule.handle));
                        }
                    }
                    (_, Some(NFT_MSG_NEWGEN)) => {
                        for a in m.attrs() {
                            let a = a.map_err(Error::from)?;
                            if a.ty == NFTA_GEN_ID {
                                committed.genid = Some(a.be32().map_err(Error::from)?);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        if denied {
            return Err(CommitError::PermissionDenied);
        }
        if stale_genid {
            return Err(CommitError::GenerationChanged);
        }
        if lost {
            return Err(CommitError::OutcomeUnknown { errors });
        }
        if !errors.is_empty() {
            return Err(CommitError::Rejected { errors });
        }
        Ok(committed)
    }

    /// Reads one element of a set by key (non-dump `GETSETELEM`); `Ok(None)` if it is absent
    /// (or expired). Costs one round trip, independent of the set's size, where a dump of a
    /// large set costs the kernel O(n²) (netlink-facts.md §5.5).
    pub fn get_element(
        &mut self,
        family: Family,
        table: &str,
        set: &str,
        key: &[u8],
    ) -> Result<Option<SetElem>, Error> {
        let seq = self.next_seq(1);
        let mut req = Vec::with_capacity(96);
        let mut w = MsgWriter::begin(
            &mut req,
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM,
            NLM_F_REQUEST,
            seq,
            family.code(),
            0,
        );
        w.put_str(NFTA_SET_ELEM_LIST_TABLE, table);
        w.put_str(NFTA_SET_ELEM_LIST_SET, set);
        let list = w.nest_start(NFTA_SET_ELEM_LIST_ELEMENTS);
        crate::objects::ElemRef {
            key,
            ..Default::default()
        }
        .encode(&mut w);
        w.nest_end(list);
        w.finish();
        let mut found = None;
        let r = self.request(
            &req,
            seq,
            &|| {
                format!(
                    "the element lookup in set {} {table} {set}",
                    family.nft_name()
                )
            },
            |m| {
                if m.nft_type() == Some(NFT_MSG_NEWSETELEM) {
                    SetElem::decode_all(m, |e| found = Some(e))?;
                    return Ok(Flow::Done);
                }
                Ok(Flow::Continue)
            },
        );
        match r {
            Err(Error::Kernel { error, .. }) if error.errno == libc::ENOENT => Ok(None),
            Err(e) => Err(e),
            Ok(()) => Ok(found),
        }
    }

    /// Whether re-adding an existing set element with `NFTA_SET_ELEM_EXPIRATION` resets its
    /// expiry (Linux ≥ 6.12, "set element timeout update support"). Probed by behaviour, not
    /// by version: a scratch table with one timed element is created, the element is
    /// re-added with a longer expiration and read back, and the table is deleted again.
    pub fn probe_element_refresh(&mut self) -> Result<bool, Error> {
        let table = format!("{PROBE_TABLE_PREFIX}{}", self.seq);
        let key = [192u8, 0, 2, 1];
        let mut set = Set::new(
            Family::Inet,
            table.as_str(),
            "p",
            crate::objects::TYPE_IPV4_ADDR,
            4,
        );
        set.flags = NFT_SET_TIMEOUT;
        let elem = |expiration| crate::objects::ElemRef {
            key: &key,
            timeout: Some(3_600_000),
            expiration: Some(expiration),
            ..Default::default()
        };
        let mut b = Batch::new();
        b.add_table(&Table::new(Family::Inet, table.as_str()));
        b.add_set(&set);
        b.add_elements(
            crate::batch::ElemOp::Add,
            Family::Inet,
            &table,
            "p",
            [elem(60_000)],
        );
        let result = match self.commit(&mut b, CommitOptions::default()) {
            // A kernel that refuses EXPIRATION on insert cannot refresh either.
            Err(CommitError::Rejected { .. }) => Ok(false),
            Err(e) => Err(commit_to_error(e)),
            Ok(_) => {
                let mut again = Batch::new();
                again.add_elements(
                    crate::batch::ElemOp::Add,
                    Family::Inet,
                    &table,
                    "p",
                    [elem(3_600_000)],
                );
                match self.commit(&mut again, CommitOptions::default()) {
                    Err(CommitError::Rejected { .. }) => Ok(false),
                    Err(e) => Err(commit_to_error(e)),
                    Ok(_) => self
                        .get_element(Family::Inet, &table, "p", &key)
                        .map(|e| e.and_then(|e| e.expiration).is_some_and(|x| x > 120_000)),
                }
            }
        };
        self.drop_probe_table(&table)?;
        result
    }

    /// Deletes a probe's scratch table. It exists unless the probe's first batch failed;
    /// the kernel's refusal (ENOENT) is then expected and ignored.
    fn drop_probe_table(&mut self, table: &str) -> Result<(), Error> {
        let mut cleanup = Batch::new();
        cleanup.del_table(Family::Inet, table, false);
        match self.commit(&mut cleanup, CommitOptions::default()) {
            Ok(_) | Err(CommitError::Rejected { .. }) => Ok(()),
            Err(e) => Err(commit_to_error(e)),
        }
    }

    /// Whether re-adding an existing set with a larger `NFTA_SET_DESC_SIZE` raises its size
    /// (Linux ≥ 6.5, "permit update of set size"; older kernels accept the message and keep
    /// the old size, a limit the set then can never leave). Probed by behaviour: a scratch
    /// table with a set of size 4 is created, the set re-added with size 8 and read back, and
    /// the table is deleted again.
    pub fn probe_set_resize(&mut self) -> Result<bool, Error> {
        let table = format!("{PROBE_TABLE_PREFIX}{}", self.seq);
        let set = |size| {
            let mut s = Set::new(
                Family::Inet,
                table.as_str(),
                "p",
                crate::objects::TYPE_IPV4_ADDR,
                4,
            );
            s.flags = NFT_SET_TIMEOUT;
            s.size = Some(size);
            s
        };
        let mut b = Batch::new();
        b.add_table(&Table::new(Family::Inet, table.as_str()));
        b.add_set(&set(4));
        let result = match self.commit(&mut b, CommitOptions::default()) {
            Err(e) => Err(commit_to_error(e)),
            Ok(_) => {
                let mut again = Batch::new();
                again.add_set(&set(8));
                match self.commit(&mut again, CommitOptions::default()) {
                    // A kernel that refuses the update cannot grow a set either.
                    Err(CommitError::Rejected { .. }) => Ok(false),
                    Err(e) => Err(commit_to_error(e)),
                    Ok(_) => self.list_sets(Family::Inet, Some(&table)).map(|d| {
                        d.items
                            .iter()
                            .any(|s| s.table == table && s.name == "p" && s.size == Some(8))
                    }),
                }
            }
        };
        self.drop_probe_table(&table)?;
        result
    }

    /// Whether the kernel knows the `DESTROY*` messages (Linux ≥ 6.3). The probe is a batch
    /// that can never commit (it deletes a table that does not exist), so it changes nothing.
    pub fn probe_destroy(&mut self) -> Result<bool, Error> {
        let name = format!("{PROBE_TABLE_PREFIX}{}", self.seq);
        let mut b = Batch::new();
        let destroy = b.del_table(Family::Ipv4, &name, true);
        let _del = b.del_table(Family::Ipv4, &name, false);
        match self.commit(&mut b, CommitOptions::default()) {
            Ok(_) => Ok(true),
            Err(CommitError::Rejected { errors }) => Ok(!errors.iter().any(|e| e.op == destroy)),
            Err(CommitError::PermissionDenied) => Err(Error::PermissionDenied),
            Err(CommitError::Io(e)) => Err(e),
            Err(other) => Err(Error::Io {
                op: "probe",
                source: io::Error::other(other.to_string()),
            }),
        }
    }
}

fn commit_to_error(e: CommitError) -> Error {
    match e {
        CommitError::PermissionDenied => Error::PermissionDenied,
        CommitError::Io(e) => e,
        other => Error::Io {
            op: "probe",
            source: io::Error::other(other.to_string()),
        },
    }
}

fn patch_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

/// Decodes an `NLMSG_ERROR` payload: `int error; struct nlmsghdr msg; [payload]; [TLVs]`.
pub(crate) fn parse_error(m: &NlMsg<'_>) -> KernelError {
    let p = m.payload;
    let errno = p
        .get(..4)
        .map(|b| -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(libc::EIO);
    let mut e = KernelError {
        errno,
        message: None,
        offset: None,
    };
    if m.flags & NLM_F_ACK_TLVS == 0 {
        return e;
    }
    // With NETLINK_CAP_ACK the original request is reduced to its 16-byte header;
    // otherwise the whole request follows and its length is in that header.
    let inner_len = if m.flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        p.get(4..8)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .unwrap_or(NLMSG_HDRLEN)
    };
    let tlv_start = 4 + crate::wire::align4(inner_len);
    if let Some(tlvs) = p.get(tlv_start..) {
        for a in crate::wire::Attrs::new(tlvs).flatten() {
            match a.ty {
                NLMSGERR_ATTR_MSG => e.message = a.str().ok().map(str::to_owned),
                NLMSGERR_ATTR_OFFS => {
                    if let Ok(b) = <[u8; 4]>::try_from(a.payload) {
                        e.offset = Some(u32::from_ne_bytes(b));
                    }
                }
                _ => {}
            }
        }
    }
    e
}
