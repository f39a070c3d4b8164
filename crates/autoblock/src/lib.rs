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
//! # Guide
//!
//! ## Entries and their checks (no root needed)
//!
//! An [`Entry`] is a normalised [`Net`] (host bits refused unless you ask to clear them,
//! `::ffff:a.b.c.d` read as IPv4) with an optional comment and expiry. Parsing errors carry
//! the text they refused:
//!
//! ```
//! use std::time::Duration;
//! use autoblock::{Entry, InputError, Net};
//!
//! let net = Net::parse("198.51.100.0/24", false)?;
//! assert_eq!(net.prefix_len(), 24);
//! assert_eq!(Net::parse("::ffff:192.0.2.9", false)?.to_string(), "192.0.2.9/32");
//! match Net::parse("198.51.100.1/24", false) {
//!     Err(InputError::HostBits { masked, .. }) => assert_eq!(masked, "198.51.100.0/24"),
//!     other => panic!("{other:?}"),
//! }
//! let e = Entry::new(net)
//!     .with_comment("ssh brute force")
//!     .with_timeout(Duration::from_secs(3600));
//! assert!(e.expires.is_some());
//! # Ok::<(), InputError>(())
//! ```
//!
//! ## Configuration
//!
//! [`Config`] is a builder; [`Config::validate`] checks names and lengths (the controller
//! calls it too):
//!
//! ```
//! use autoblock::{Action, Config, Layout, Net};
//!
//! let cfg = Config::default()
//!     .layout(Layout::Set)
//!     .action(Action::Reject)
//!     .allow(["192.0.2.0/24".parse::<Net>()?]);
//! cfg.validate()?;
//! assert!(Config::default().chain("INPUT").validate().is_err());
//! # Ok::<(), autoblock::InputError>(())
//! ```
//!
//! ## Blocking, syncing, reading counters (root, synchronous)
//!
//! The [`Controller`] needs no async runtime. Each call is one transaction (the set layout's
//! `sync` is two, each atomic) and returns a [`Report`] saying what changed:
//!
//! ```no_run
//! use autoblock::{Config, Controller, Entry, Layout};
//!
//! let mut ctl = Controller::open(Config::default().layout(Layout::Set))?;
//! let desired = vec![Entry::new("203.0.113.0/24".parse()?)];
//! let report = ctl.sync(&desired)?; // block what is missing, unblock the rest
//! println!("+{} -{}", report.changed.len(), report.removed.len());
//! for fam in ctl.status()? {
//!     println!("{:?}: {} entries, {} packets dropped", fam.family, fam.entries, fam.packets);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Many concurrent callers: the async service (feature `tokio`)
//!
//! `service::Service` is a cloneable handle to one worker that owns the controller. Requests
//! arriving while a transaction is in flight are merged into the next one, and each caller
//! still learns which of its entries were applied, were already in place, or failed and why.
//! See the `service` module for an example, and `examples/` for complete programs:
//! `block_list`, `sync_blocklist`, `counters`, `service_load` and `churn` (the benchmark's
//! load generator).
//!
//! ## Errors and tracing
//!
//! [`Error`] and [`InputError`] are `#[non_exhaustive]` enums whose messages name the
//! offending input (the entry, the setting, the kernel's errno). Every transaction runs in a
//! `tracing` span (`commit` with its operation count and size; `block`/`set_block` with the
//! entry count; the service's `service_round` with requests, entries and microseconds).
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
