//! nf_tables over `NETLINK_NETFILTER`: a sans-IO message codec, one socket, and batched
//! transactions.
//!
//! This crate knows nf_tables objects (tables, chains, rules, sets, elements) and how to move
//! them to and from the kernel. It knows nothing about *blocking*: which rules to write is the
//! controller's business (crate `autoblock`).
//!
//! * [`wire`], [`expr`], [`objects`], [`udata`]: the codec, pure functions on bytes.
//! * [`Batch`]: the messages of one transaction in one buffer, each operation identified by an
//!   [`OpId`] so errors can be traced to the entry that caused them.
//! * [`Conn`]: requests, dumps with generation checks, and [`Conn::commit`], which sends a
//!   batch in one `sendmsg` and drains the replies without blocking.
//! * [`Socket`]: the real socket — the only `unsafe` code of autoblock.
//! * [`fake`]: a recording transport that plays back kernel replies, for tests without root.
//!
//! ```no_run
//! use autoblock_netlink::{Batch, Chain, CommitOptions, Conn, Family, Table};
//!
//! let mut conn = Conn::open()?;
//! let genid = conn.genid()?;
//! let mut batch = Batch::new();
//! batch.add_table(&Table::new(Family::Inet, "example"));
//! batch.add_chain(&Chain::regular(Family::Inet, "example", "blocked"));
//! conn.commit(&mut batch, CommitOptions::default().genid(genid))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod batch;
pub mod conn;
pub mod consts;
pub mod error;
pub mod expr;
pub mod fake;
pub mod monitor;
pub mod objects;
pub mod socket;
pub mod udata;
pub mod wire;

pub use batch::{Batch, ElemOp, ElemWriter, OpId, RulePos};
pub use conn::{CommitOptions, Committed, Conn, Dumped, Transport};
pub use error::{CommitError, DecodeError, Error, KernelError, OpError};
pub use expr::{CmpOp, Expr, PayloadBase, Verdict};
pub use monitor::{Change, ChangeKind, Monitor, Transaction};
pub use objects::{Chain, ElemRef, Family, Hook, Rule, Set, SetElem, Table};
pub use socket::{local_addresses, Socket};
