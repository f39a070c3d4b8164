//! Batches: the messages of one nf_tables transaction, built in one contiguous buffer.
//!
//! A [`Batch`] is pure data. Each queued operation gets an [`OpId`] so that a kernel error
//! can be traced back to the operation (and, for set elements, to the element) that caused
//! it. Sequence numbers and the generation id are filled in when the batch is committed by
//! [`crate::Conn::commit`]; the batch itself performs no I/O.
//!
//! Set elements are streamed straight into the buffer and split into several `NEWSETELEM`
//! messages so that no `NFTA_SET_ELEM_LIST_ELEMENTS` attribute exceeds the 64 KiB limit of
//! `nla_len`; they are never split into several transactions.

use crate::consts::*;
use crate::expr::Expr;
use crate::objects::{Chain, ElemRef, Family, Rule, Set, Table};
use crate::wire::{self, Attrs, MsgWriter, Nest};

/// Identifies one operation queued in a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u32);

/// Where a new rule goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RulePos {
    /// At the end of the chain (`-A`).
    Append,
    /// At the head of the chain (`-I`).
    Head,
    /// Right after the rule with this handle.
    After(u64),
    /// Right before the rule with this handle.
    Before(u64),
}

/// Largest `NFTA_SET_ELEM_LIST_ELEMENTS` nest this crate writes (the attribute length is a
/// u16; nft also starts a new message before 65535 bytes).
pub const MAX_ELEMENTS_NEST: usize = 65_000;

#[derive(Debug, Clone, Copy)]
pub(crate) struct MsgInfo {
    /// Offset of the message in the buffer.
    pub start: usize,
    /// Operation it belongs to.
    pub op: OpId,
    /// For element messages: index (within the operation) of the message's first element.
    pub first_elem: Option<usize>,
}

/// The messages of one transaction.
#[derive(Debug, Clone)]
pub struct Batch {
    pub(crate) buf: Vec<u8>,
    pub(crate) msgs: Vec<MsgInfo>,
    next_op: u32,
    next_set_id: u32,
    echo_rules: usize,
}

/// Size of the `BATCH_BEGIN` message this crate writes (header, nfgenmsg, GENID attribute).
pub(crate) const BEGIN_LEN: usize = 28;

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::with_capacity(4096)
    }

    /// An empty batch with room for `bytes` bytes of messages.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(BEGIN_LEN));
        let mut w = MsgWriter::begin(
            &mut buf,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            0,
            NFPROTO_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        // The generation id is patched in at commit time; 0 means "no check".
        w.put_be32(NFNL_BATCH_GENID, 0);
        let len = w.finish();
        debug_assert_eq!(len, BEGIN_LEN);
        Batch {
            buf,
            msgs: Vec::new(),
            next_op: 0,
            next_set_id: 1,
            echo_rules: 0,
        }
    }

    /// Whether the batch holds no command.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Number of netlink messages (commands) in the batch.
    pub fn message_count(&self) -> usize {
        self.msgs.len()
    }

    /// Number of operations queued.
    pub fn op_count(&self) -> usize {
        self.next_op as usize
    }

    /// Bytes of the batch, `BATCH_BEGIN` included and `BATCH_END` (20 bytes) excluded.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Number of rules queued with an echo request.
    pub fn echo_count(&self) -> usize {
        self.echo_rules
    }

    /// Asks the kernel to echo the rule that operation `op` creates, after it was queued
    /// (its handle then comes back in [`crate::Committed::handles`]). Useful when only the
    /// last of many queued rules needs an echo. `false` if `op` queued no message.
    pub fn request_echo(&mut self, op: OpId) -> bool {
        let Some(m) = self.msgs.iter().rev().find(|m| m.op == op) else {
            return false;
        };
        let at = m.start + 6;
        let flags = u16::from_ne_bytes([self.buf[at], self.buf[at + 1]]);
        if flags & NLM_F_ECHO == 0 {
            self.buf[at..at + 2].copy_from_slice(&(flags | NLM_F_ECHO).to_ne_bytes());
            self.echo_rules += 1;
        }
        true
    }

    /// The raw bytes (sequence numbers are 0 until committed).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    fn op(&mut self) -> OpId {
        let id = OpId(self.next_op);
        self.next_op += 1;
        id
    }

    fn msg(&mut self, nft_type: u16, flags: u16, family: Family, op: OpId) -> MsgWriter<'_> {
        self.msgs.push(MsgInfo {
            start: self.buf.len(),
            op,
            first_elem: None,
        });
        MsgWriter::begin(
            &mut self.buf,
            (NFNL_SUBSYS_NFTABLES << 8) | nft_type,
            NLM_F_REQUEST | flags,
            0,
            family.code(),
            0,
        )
    }

    /// Creates a table if it does not exist (no-op otherwise).
    pub fn add_table(&mut self, t: &Table) -> OpId {
        let op = self.op();
        let mut w = self.msg(NFT_MSG_NEWTABLE, NLM_F_CREATE, t.family, op);
        t.encode(&mut w);
        w.finish();
        op
    }

    /// Deletes a table and everything in it. `destroy` uses `DESTROYTABLE` (kernel ≥ 6.3),
    /// which does not fail when the table is missing.
    pub fn del_table(&mut self, family: Family, name: &str, destroy: bool) -> OpId {
        let op = self.op();
        let ty = if destroy {
            NFT_MSG_DESTROYTABLE
        } else {
            NFT_MSG_DELTABLE
        };
        let mut w = self.msg(ty, 0, family, op);
        w.put_str(NFTA_TABLE_NAME, name);
        w.finish();
        op
    }

    /// Creates a chain if it does not exist (no-op otherwise; a base chain with another hook
    /// or priority is an error).
    pub fn add_chain(&mut self, c: &Chain) -> OpId {
        let op = self.op();
        let mut w = self.msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE, c.family, op);
        c.encode(&mut w);
        w.finish();
        op
    }

    /// Deletes a chain (its rules go with it; jumps to it must be gone first).
    pub fn del_chain(&mut self, family: Family, table: &str, name: &str, destroy: bool) -> OpId {
        let op = self.op();
        let ty = if destroy {
            NFT_MSG_DESTROYCHAIN
        } else {
            NFT_MSG_DELCHAIN
        };
        let mut w = self.msg(ty, 0, family, op);
        w.put_str(NFTA_CHAIN_TABLE, table);
        w.put_str(NFTA_CHAIN_NAME, name);
        w.finish();
        op
    }

    /// Adds a rule at `pos`. With `echo`, the kernel reports the new rule's handle.
    pub fn add_rule(&mut self, r: &Rule, pos: RulePos, echo: bool) -> OpId {
        self.add_rule_parts(
            r.family,
            &r.table,
            &r.chain,
            &r.exprs,
            r.userdata.as_deref(),
            pos,
            echo,
        )
    }

    /// Adds a rule given by its parts (avoids building a [`Rule`] for bulk loads).
    #[allow(clippy::too_many_arguments)]
    pub fn add_rule_parts(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        exprs: &[Expr],
        userdata: Option<&[u8]>,
        pos: RulePos,
        echo: bool,
    ) -> OpId {
        let op = self.op();
        let mut flags = NLM_F_CREATE;
        if matches!(pos, RulePos::Append | RulePos::After(_)) {
            flags |= NLM_F_APPEND;
        }
        if echo {
            flags |= NLM_F_ECHO;
            self.echo_rules += 1;
        }
        let mut w = self.msg(NFT_MSG_NEWRULE, flags, family, op);
        w.put_str(NFTA_RULE_TABLE, table);
        w.put_str(NFTA_RULE_CHAIN, chain);
        if let RulePos::After(h) | RulePos::Before(h) = pos {
            w.put_be64(NFTA_RULE_POSITION, h);
        }
        put_rule_body(&mut w, exprs, userdata);
        w.finish();
        op
    }

    /// Replaces the rule `handle` of `chain` in place (`NLM_F_REPLACE`): the new rule keeps
    /// the handle and the position of the old one.
    pub fn replace_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        handle: u64,
        exprs: &[Expr],
        userdata: Option<&[u8]>,
    ) -> OpId {
        let op = self.op();
        let mut w = self.msg(NFT_MSG_NEWRULE, NLM_F_REPLACE, family, op);
        w.put_str(NFTA_RULE_TABLE, table);
        w.put_str(NFTA_RULE_CHAIN, chain);
        w.put_be64(NFTA_RULE_HANDLE, handle);
        put_rule_body(&mut w, exprs, userdata);
        w.finish();
        op
    }

    /// Deletes the rule `handle` of `chain`. The chain name is mandatory: without it the
    /// kernel would delete every rule of every chain in the table (netlink-facts.md §6).
    /// `destroy` uses `DESTROYRULE` (kernel ≥ 6.3): no error when the rule is gone.
    pub fn del_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        handle: u64,
        destroy: bool,
    ) -> OpId {
        let op = self.op();
        let ty = if destroy {
            NFT_MSG_DESTROYRULE
        } else {
            NFT_MSG_DELRULE
        };
        let mut w = self.msg(ty, 0, family, op);
        w.put_str(NFTA_RULE_TABLE, table);
        w.put_str(NFTA_RULE_CHAIN, chain);
        w.put_be64(NFTA_RULE_HANDLE, handle);
        w.finish();
        op
    }

    /// Deletes every rule of `chain` (DELRULE with a chain and no handle).
    pub fn flush_chain(&mut self, family: Family, table: &str, chain: &str) -> OpId {
        let op = self.op();
        let mut w = self.msg(NFT_MSG_DELRULE, 0, family, op);
        w.put_str(NFTA_RULE_TABLE, table);
        w.put_str(NFTA_RULE_CHAIN, chain);
        w.finish();
        op
    }

    /// Creates a set, or updates the timeout, GC interval and size of an existing one with
    /// the same key and flags.
    pub fn add_set(&mut self, s: &Set) -> OpId {
        let op = self.op();
        let id = self.next_set_id;
        self.next_set_id += 1;
        let mut w = self.msg(NFT_MSG_NEWSET, NLM_F_CREATE, s.family, op);
        s.encode(&mut w, id);
        w.finish();
        op
    }

    /// Deletes a set (rules that look it up must be gone first).
    pub fn del_set(&mut self, family: Family, table: &str, name: &str, destroy: bool) -> OpId {
        let op = self.op();
        let ty = if destroy {
            NFT_MSG_DESTROYSET
        } else {
            NFT_MSG_DELSET
        };
        let mut w = self.msg(ty, 0, family, op);
        w.put_str(NFTA_SET_TABLE, table);
        w.put_str(NFTA_SET_NAME, name);
        w.finish();
        op
    }

    /// Removes every element of a set.
    pub fn flush_set(&mut self, family: Family, table: &str, set: &str) -> OpId {
        let op = self.op();
        let mut w = self.msg(NFT_MSG_DELSETELEM, 0, family, op);
        w.put_str(NFTA_SET_ELEM_LIST_TABLE, table);
        w.put_str(NFTA_SET_ELEM_LIST_SET, set);
        w.finish();
        op
    }

    /// Starts streaming elements into a set. See [`ElemWriter`].
    pub fn elements<'b>(
        &'b mut self,
        kind: ElemOp,
        family: Family,
        table: &'b str,
        set: &'b str,
    ) -> ElemWriter<'b> {
        let op = self.op();
        ElemWriter {
            batch: self,
            kind,
            family,
            table,
            set,
            op,
            open: None,
            count: 0,
        }
    }

    /// Adds elements (no error for elements that already exist, unless `kind` is
    /// [`ElemOp::Create`]). Returns the operation id; errors name the element index.
    pub fn add_elements<'e>(
        &mut self,
        kind: ElemOp,
        family: Family,
        table: &str,
        set: &str,
        elems: impl IntoIterator<Item = ElemRef<'e>>,
    ) -> OpId {
        let mut w = self.elements(kind, family, table, set);
        for e in elems {
            w.push(&e);
        }
        w.finish()
    }

    /// Sets `NLM_F_ECHO` on the first command, so that the kernel reports the new generation
    /// id of a committed batch (`NFT_MSG_NEWGEN` carries the first command's sequence number).
    pub(crate) fn first_command_flags_offset(&self) -> Option<usize> {
        self.msgs.first().map(|m| m.start + 6)
    }

    /// Finds which element of an element message the extended-ack `offset` points into.
    pub(crate) fn element_at(&self, msg: usize, offset: u32) -> Option<usize> {
        let info = self.msgs.get(msg)?;
        let first = info.first_elem?;
        let (len, ..) = wire::header_at(&self.buf, info.start)?;
        let body = self.buf.get(info.start..info.start + len)?;
        let offset = offset as usize;
        // Attributes start after nlmsghdr (16) and nfgenmsg (4).
        let mut at = 20;
        for a in Attrs::new(body.get(20..)?) {
            let a = a.ok()?;
            let total = wire::align4(4 + a.payload.len());
            if a.ty == NFTA_SET_ELEM_LIST_ELEMENTS {
                let mut eat = at + 4;
                for (i, e) in a.nested().enumerate() {
                    let e = e.ok()?;
                    let elen = wire::align4(4 + e.payload.len());
                    if offset >= eat && offset < eat + elen {
                        return Some(first + i);
                    }
                    eat += elen;
                }
                return None;
            }
            at += total;
        }
        None
    }
}

/// What an [`ElemWriter`] does with its elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ElemOp {
    /// `NEWSETELEM` without `NLM_F_EXCL`: existing elements are left alone (no error).
    Add,
    /// `NEWSETELEM` with `NLM_F_EXCL`: an existing element is an error.
    Create,
    /// `DELSETELEM`: a missing element is an error (aborts the batch).
    Delete,
    /// `DESTROYSETELEM` (kernel ≥ 6.3; reliable for every element from 6.7): missing
    /// elements are ignored.
    Destroy,
}

/// Streams set elements into a batch, opening a new message whenever the current one would
/// exceed [`MAX_ELEMENTS_NEST`].
#[derive(Debug)]
pub struct ElemWriter<'b> {
    batch: &'b mut Batch,
    kind: ElemOp,
    family: Family,
    table: &'b str,
    set: &'b str,
    op: OpId,
    /// Open message: the nest of its element list.
    open: Option<Nest>,
    count: usize,
}

impl ElemWriter<'_> {
    fn open_msg(&mut self) -> Nest {
        let (ty, flags) = match self.kind {
            ElemOp::Add => (NFT_MSG_NEWSETELEM, NLM_F_CREATE),
            ElemOp::Create => (NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL),
            ElemOp::Delete => (NFT_MSG_DELSETELEM, 0),
            ElemOp::Destroy => (NFT_MSG_DESTROYSETELEM, 0),
        };
        let start = self.batch.buf.len();
        self.batch.msgs.push(MsgInfo {
            start,
            op: self.op,
            first_elem: Some(self.count),
        });
        let mut w = MsgWriter::begin(
            &mut self.batch.buf,
            (NFNL_SUBSYS_NFTABLES << 8) | ty,
            NLM_F_REQUEST | flags,
            0,
            self.family.code(),
            0,
        );
        w.put_str(NFTA_SET_ELEM_LIST_TABLE, self.table);
        w.put_str(NFTA_SET_ELEM_LIST_SET, self.set);
        w.nest_start(NFTA_SET_ELEM_LIST_ELEMENTS)
    }

    fn close_msg(&mut self, nest: Nest) {
        let start = self.batch.msgs.last().map(|m| m.start).unwrap_or(0);
        let len = self.batch.buf.len() - nest.offset();
        self.batch.buf[nest.offset()..nest.offset() + 2]
            .copy_from_slice(&(len as u16).to_ne_bytes());
        let total = self.batch.buf.len() - start;
        self.batch.buf[start..start + 4].copy_from_slice(&(total as u32).to_ne_bytes());
    }

    /// Appends one element.
    pub fn push(&mut self, e: &ElemRef<'_>) {
        let need = e.encoded_len();
        if let Some(nest) = self.open {
            let cur = self.batch.buf.len() - nest.offset();
            if cur + need > MAX_ELEMENTS_NEST {
                self.close_msg(nest);
                self.open = None;
            }
        }
        if self.open.is_none() {
            self.open = Some(self.open_msg());
        }
        // Encode the element at the end of the buffer. A throwaway writer positioned at the
        // current message start keeps the encoding in one place.
        let start = self.batch.msgs.last().map(|m| m.start).unwrap_or(0);
        let mut w = MsgWriter::resume(&mut self.batch.buf, start);
        e.encode(&mut w);
        self.count += 1;
    }

    /// Number of elements pushed so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Closes the last message and returns the operation id.
    pub fn finish(mut self) -> OpId {
        if let Some(nest) = self.open.take() {
            self.close_msg(nest);
        }
        self.op
    }
}

impl Drop for ElemWriter<'_> {
    fn drop(&mut self) {
        // A writer dropped without finish() still leaves a well-formed batch.
        if let Some(nest) = self.open.take() {
            self.close_msg(nest);
        }
    }
}

/// The part of a `NEWRULE` after its position attributes: the expression list, then the
/// userdata (the order iptables-nft writes them in).
fn put_rule_body(w: &mut MsgWriter<'_>, exprs: &[Expr], userdata: Option<&[u8]>) {
    let list = w.nest_start(NFTA_RULE_EXPRESSIONS);
    for e in exprs {
        e.encode(w);
    }
    w.nest_end(list);
    if let Some(u) = userdata {
        w.put(NFTA_RULE_USERDATA, u);
    }
}
