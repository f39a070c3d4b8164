//! autoblock: block abusive source addresses in nf_tables, directly over netlink, in large
//! atomic batches.
//!
//! The [`Controller`] writes one of two layouts:
//!
//! * [`Layout::Chain`] — the classic RHEL recipe: chain `INPUT-AUTO` in `ip filter` and
//!   `ip6 filter`, jumped to from the head of `INPUT`, one `-s ADDR -j DROP` rule per entry,
//!   encoded exactly as iptables-nft encodes it so `iptables -L -n -v` and `iptables-save`
//!   show and save it.
//! * [`Layout::Set`] — nf_tables sets with kernel timeouts in table `inet autoblock`, for
//!   millions of entries at a flat per-packet cost.
//!
//! Every change is one transaction guarded by the ruleset generation id: it applies whole or
//! not at all, and a concurrent writer makes it re-read and re-plan, never clobber.
//! Loopback, the host's own addresses and configured networks are never blocked.
//!
//! ```no_run
//! use autoblock::{Config, Controller, Entry, Net};
//!
//! let mut ctl = Controller::open(Config::default())?;
//! let net: Net = "203.0.113.7".parse()?;
//! ctl.block(&[Entry::new(net).with_comment("ssh brute force")])?;
//! for e in ctl.list()? {
//!     println!("{} {} packets", e.net, e.packets);
//! }
//! ctl.unblock(&[net])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate knows nothing of files, logs or the command line; see `autoblock-cli`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod allow;
pub mod chain;
pub mod config;
pub mod controller;
pub mod entry;
pub mod error;
pub mod meta;
#[cfg(feature = "tokio")]
pub mod service;

pub use allow::Allowlist;
pub use config::{Action, Config, Layout};
pub use controller::{Controller, FamilyStatus, Listed, Report};
pub use entry::{Entry, IpFamily, Net};
pub use error::{Error, InputError};
#[cfg(feature = "tokio")]
pub use service::{Outcome, Service, ServiceError, ServiceOptions};

/// The netlink layer, re-exported for callers that need its types.
pub use autoblock_netlink as netlink;
