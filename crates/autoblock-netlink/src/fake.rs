//! A fake transport for tests without a kernel: it records every datagram sent and answers
//! with replies produced by a closure, which can use the reply builders of this module.
//!
//! It models only what the transaction logic observes (datagrams in, datagrams out, a send
//! size limit, lost replies); it does not emulate nf_tables.

use std::collections::VecDeque;
use std::io;

use crate::conn::Transport;
use crate::consts::*;
use crate::wire::{Messages, MsgWriter};

/// Produces the reply datagrams for one sent datagram.
pub type Responder = Box<dyn FnMut(&[u8]) -> Vec<Vec<u8>> + Send>;

/// A transport that records what is sent and plays back replies.
pub struct FakeTransport {
    /// Every datagram sent, in order.
    pub sent: Vec<Vec<u8>>,
    queue: VecDeque<io::Result<Vec<u8>>>,
    responder: Responder,
    /// Largest datagram accepted (like `sk_sndbuf - 32`).
    pub max_send: usize,
    /// When set, the next drain reports ENOBUFS once (replies lost).
    pub lose_replies: bool,
}

impl std::fmt::Debug for FakeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTransport")
            .field("sent", &self.sent.len())
            .field("queued", &self.queue.len())
            .finish()
    }
}

/// Port id the fake pretends the kernel assigned.
pub const FAKE_PORTID: u32 = 4242;

impl FakeTransport {
    /// A fake that answers with `responder`.
    pub fn new(responder: impl FnMut(&[u8]) -> Vec<Vec<u8>> + Send + 'static) -> Self {
        FakeTransport {
            sent: Vec::new(),
            queue: VecDeque::new(),
            responder: Box::new(responder),
            max_send: usize::MAX,
            lose_replies: false,
        }
    }

    /// A fake that never answers (a kernel that accepts everything silently).
    pub fn silent() -> Self {
        FakeTransport::new(|_| Vec::new())
    }
}

impl Transport for FakeTransport {
    fn portid(&self) -> u32 {
        FAKE_PORTID
    }

    fn reserve_send(&mut self, len: usize) -> Result<(), usize> {
        if len <= self.max_send {
            Ok(())
        } else {
            Err(self.max_send)
        }
    }

    fn reserve_recv(&mut self, len: usize) -> usize {
        len
    }

    fn send(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let dgram: Vec<u8> = parts.concat();
        if dgram.len() > self.max_send {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        let replies = (self.responder)(&dgram);
        self.sent.push(dgram);
        if self.lose_replies {
            self.lose_replies = false;
            self.queue
                .push_back(Err(io::Error::from_raw_os_error(libc::ENOBUFS)));
        }
        self.queue.extend(replies.into_iter().map(Ok));
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8], _wait_ms: Option<u64>) -> io::Result<Option<usize>> {
        match self.queue.pop_front() {
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(d)) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(Some(n))
            }
        }
    }
}

/// `(type, flags, seq)` of every message in a datagram.
pub fn headers(dgram: &[u8]) -> Vec<(u16, u16, u32)> {
    Messages::new(dgram)
        .filter_map(Result::ok)
        .map(|m| (m.ty, m.flags, m.seq))
        .collect()
}

/// An `NLMSG_ERROR` reply (`errno` 0 = ACK) with optional extended-ack text and offset, as
/// the kernel sends it to a socket with `NETLINK_CAP_ACK`.
pub fn error(seq: u32, errno: i32, msg: Option<&str>, offset: Option<u32>) -> Vec<u8> {
    let mut flags = NLM_F_CAPPED;
    if msg.is_some() || offset.is_some() {
        flags |= NLM_F_ACK_TLVS;
    }
    let mut out = Vec::new();
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&FAKE_PORTID.to_ne_bytes());
    out.extend_from_slice(&(-errno).to_ne_bytes());
    // The capped copy of the request header.
    out.extend_from_slice(&16u32.to_ne_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    if let Some(m) = msg {
        let len = 4 + m.len() + 1;
        out.extend_from_slice(&(len as u16).to_ne_bytes());
        out.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        out.extend_from_slice(m.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    if let Some(o) = offset {
        out.extend_from_slice(&8u16.to_ne_bytes());
        out.extend_from_slice(&NLMSGERR_ATTR_OFFS.to_ne_bytes());
        out.extend_from_slice(&o.to_ne_bytes());
    }
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_ne_bytes());
    out
}

/// A `NEWGEN` message carrying `genid` (reply to GETGEN, or the echo of a commit).
pub fn newgen(seq: u32, genid: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = MsgWriter::begin(
        &mut out,
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN,
        0,
        seq,
        NFPROTO_UNSPEC,
        (genid & 0xffff) as u16,
    );
    w.put_be32(NFTA_GEN_ID, genid);
    w.finish();
    patch_pid(&mut out);
    out
}

/// `NLMSG_DONE` ending a dump.
pub fn done(seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&20u32.to_ne_bytes());
    out.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    out.extend_from_slice(&NLM_F_MULTI.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&FAKE_PORTID.to_ne_bytes());
    out.extend_from_slice(&0i32.to_ne_bytes());
    out
}

/// Sets `nlmsg_pid` of the first message to the fake port id.
pub fn patch_pid(msg: &mut [u8]) {
    msg[12..16].copy_from_slice(&FAKE_PORTID.to_ne_bytes());
}
