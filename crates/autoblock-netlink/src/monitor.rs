//! The nf_tables change monitor: a socket subscribed to the `NFNLGRP_NFTABLES` multicast
//! group, and a decoder that groups the kernel's notifications into transactions.
//!
//! The kernel multicasts one message per object a transaction changed (NEWTABLE, DELTABLE,
//! DELCHAIN, DELRULE, DELSET, DELSETELEM, ...) and ends each transaction with NEWGEN, which
//! carries the new generation id and the pid and name of the process that committed it
//! (`NFTA_GEN_PROC_PID`, `NFTA_GEN_PROC_NAME`). [`Monitor::next`] returns one
//! [`Transaction`] per NEWGEN. When the socket's buffer overflowed (ENOBUFS) notifications
//! were lost: the result says so, and the caller must assume anything may have changed.
//!
//! Deliberately not here: deciding what a change means for autoblock (the daemon does that)
//! and any `unsafe` (the socket module holds all of it).

use std::io;

use crate::conn::Transport;
use crate::consts::*;
use crate::error::Error;
use crate::socket::Socket;
use crate::wire::Messages;

/// Which kind of object a notification is about, and whether it was added or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A table was added.
    NewTable,
    /// A table was removed (also `nft flush ruleset`).
    DelTable,
    /// A chain was added.
    NewChain,
    /// A chain was removed.
    DelChain,
    /// A rule was added.
    NewRule,
    /// A rule was removed (also a chain flush, `iptables -F`).
    DelRule,
    /// A set was added.
    NewSet,
    /// A set was removed.
    DelSet,
    /// Set elements were added.
    NewSetElem,
    /// Set elements were removed.
    DelSetElem,
    /// Another nf_tables message type.
    Other(u16),
}

impl ChangeKind {
    fn from_msg(t: u16) -> ChangeKind {
        match t {
            NFT_MSG_NEWTABLE => ChangeKind::NewTable,
            NFT_MSG_DELTABLE | NFT_MSG_DESTROYTABLE => ChangeKind::DelTable,
            NFT_MSG_NEWCHAIN => ChangeKind::NewChain,
            NFT_MSG_DELCHAIN | NFT_MSG_DESTROYCHAIN => ChangeKind::DelChain,
            NFT_MSG_NEWRULE => ChangeKind::NewRule,
            NFT_MSG_DELRULE | NFT_MSG_DESTROYRULE => ChangeKind::DelRule,
            NFT_MSG_NEWSET => ChangeKind::NewSet,
            NFT_MSG_DELSET | NFT_MSG_DESTROYSET => ChangeKind::DelSet,
            NFT_MSG_NEWSETELEM => ChangeKind::NewSetElem,
            NFT_MSG_DELSETELEM | NFT_MSG_DESTROYSETELEM => ChangeKind::DelSetElem,
            other => ChangeKind::Other(other),
        }
    }

    /// Whether the change removed something.
    pub fn is_removal(self) -> bool {
        matches!(
            self,
            ChangeKind::DelTable
                | ChangeKind::DelChain
                | ChangeKind::DelRule
                | ChangeKind::DelSet
                | ChangeKind::DelSetElem
        )
    }

    /// A short name (`table`, `chain`, `rule`, `set`, `set element`).
    pub fn object(self) -> &'static str {
        match self {
            ChangeKind::NewTable | ChangeKind::DelTable => "table",
            ChangeKind::NewChain | ChangeKind::DelChain => "chain",
            ChangeKind::NewRule | ChangeKind::DelRule => "rule",
            ChangeKind::NewSet | ChangeKind::DelSet => "set",
            ChangeKind::NewSetElem | ChangeKind::DelSetElem => "set element",
            ChangeKind::Other(_) => "object",
        }
    }
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What changed.
    pub kind: ChangeKind,
    /// The nf_tables family (`NFPROTO_*`).
    pub family: u8,
    /// The table it concerns (every object message carries its table's name first).
    pub table: Option<String>,
}

/// The notifications of one committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transaction {
    /// The changes, in the kernel's order.
    pub changes: Vec<Change>,
    /// The ruleset generation after the transaction.
    pub generation: Option<u32>,
    /// The pid of the process that committed it.
    pub pid: Option<u32>,
    /// Its name (the kernel's `comm`).
    pub process: Option<String>,
    /// Notifications were lost before this point (socket buffer overrun): anything may have
    /// changed.
    pub overrun: bool,
}

impl Transaction {
    /// `name[pid]` of the committing process, or `unknown`.
    pub fn who(&self) -> String {
        match (&self.process, self.pid) {
            (Some(n), Some(p)) => format!("{n}[{p}]"),
            (None, Some(p)) => format!("pid {p}"),
            (Some(n), None) => n.clone(),
            (None, None) => "unknown".to_owned(),
        }
    }
}

/// The receive buffer a [`Monitor`] asks for (bytes; the kernel's accounting of queued
/// notifications, allocated only while they wait to be read).
pub const MONITOR_RCVBUF: usize = 64 << 20;

/// A socket subscribed to nf_tables change notifications in the current network namespace.
#[derive(Debug)]
pub struct Monitor {
    sock: Socket,
    buf: Vec<u8>,
    pending: Transaction,
}

impl Monitor {
    /// Opens the socket and joins `NFNLGRP_NFTABLES` (needs CAP_NET_ADMIN).
    ///
    /// The receive buffer is raised to [`MONITOR_RCVBUF`] where allowed: the kernel queues a
    /// whole transaction's notifications at its commit, and a load of 100,000 elements
    /// overran the default buffer, which reads as "anything may have changed".
    pub fn open() -> Result<Monitor, Error> {
        let mut sock = Socket::open()?;
        sock.reserve_recv(MONITOR_RCVBUF);
        sock.subscribe(NFNLGRP_NFTABLES)?;
        Ok(Monitor {
            sock,
            buf: vec![0u8; 1 << 17],
            pending: Transaction::default(),
        })
    }

    /// Waits up to `wait_ms` (forever with `None`) for the next complete transaction.
    /// `Ok(None)` when the time ran out first.
    pub fn next(&mut self, wait_ms: Option<u64>) -> Result<Option<Transaction>, Error> {
        // `Socket::recv` without a wait never blocks: "wait forever" is a poll without end
        // (an idle monitor must sleep in the kernel, not spin on EAGAIN).
        let wait = wait_ms.unwrap_or(i32::MAX as u64);
        loop {
            let n = match self.sock.recv(&mut self.buf, Some(wait)) {
                Ok(Some(n)) => n,
                Ok(None) if wait_ms.is_some() => return Ok(None),
                Ok(None) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    let mut t = std::mem::take(&mut self.pending);
                    t.overrun = true;
                    return Ok(Some(t));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("recvmsg(monitor)", e)),
            };
            if let Some(t) = decode_into(&mut self.pending, &self.buf[..n]) {
                return Ok(Some(t));
            }
        }
    }
}

/// Adds the notifications in `data` to `pending`; returns the finished transaction when a
/// NEWGEN ended one. Messages after that NEWGEN in the same datagram start the next one.
pub fn decode_into(pending: &mut Transaction, data: &[u8]) -> Option<Transaction> {
    let mut done: Option<Transaction> = None;
    for m in Messages::new(data) {
        let Ok(m) = m else { break };
        let Some(t) = m.nft_type() else { continue };
        if t == NFT_MSG_NEWGEN {
            let mut tx = std::mem::take(pending);
            for a in m.attrs().flatten() {
                match a.ty {
                    NFTA_GEN_ID => tx.generation = a.be32().ok(),
                    NFTA_GEN_PROC_PID => tx.pid = a.be32().ok(),
                    NFTA_GEN_PROC_NAME => tx.process = a.str().ok().map(str::to_owned),
                    _ => {}
                }
            }
            // Two transactions in one datagram: keep the earlier's changes too.
            if let Some(mut prev) = done.take() {
                prev.changes.append(&mut tx.changes);
                tx.changes = prev.changes;
            }
            done = Some(tx);
            continue;
        }
        // Attribute 1 is the table's name in table, chain, rule, set and element messages.
        let table = m
            .attrs()
            .flatten()
            .find(|a| a.ty == 1)
            .and_then(|a| a.str().ok().map(str::to_owned));
        pending.changes.push(Change {
            kind: ChangeKind::from_msg(t),
            family: m.family(),
            table,
        });
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: u16, family: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut payload = vec![family, 0, 0, 0];
        for (ty, data) in attrs {
            let len = 4 + data.len();
            payload.extend_from_slice(&(len as u16).to_ne_bytes());
            payload.extend_from_slice(&ty.to_ne_bytes());
            payload.extend_from_slice(data);
            while payload.len() % 4 != 0 {
                payload.push(0);
            }
        }
        let mut m = Vec::new();
        let len = 16 + payload.len();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | t).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&payload);
        m
    }

    #[test]
    fn a_flush_ruleset_transaction_decodes_with_its_process() {
        let mut data = msg(NFT_MSG_DELRULE, 2, &[(1, b"filter\0")]);
        data.extend(msg(NFT_MSG_DELTABLE, 1, &[(1, b"autoblock\0")]));
        let mut pending = Transaction::default();
        assert!(decode_into(&mut pending, &data).is_none());
        let gen = msg(
            NFT_MSG_NEWGEN,
            0,
            &[
                (NFTA_GEN_ID, &7u32.to_be_bytes()),
                (NFTA_GEN_PROC_PID, &4242u32.to_be_bytes()),
                (NFTA_GEN_PROC_NAME, b"nft\0"),
            ],
        );
        let t = decode_into(&mut pending, &gen).expect("a transaction");
        assert_eq!(t.generation, Some(7));
        assert_eq!(t.who(), "nft[4242]");
        assert_eq!(t.changes.len(), 2);
        assert_eq!(t.changes[0].kind, ChangeKind::DelRule);
        assert_eq!(t.changes[1].table.as_deref(), Some("autoblock"));
        assert!(t.changes.iter().all(|c| c.kind.is_removal()));
        assert!(pending.changes.is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        let mut pending = Transaction::default();
        for len in 0..64 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = decode_into(&mut pending, &data);
        }
    }
}
