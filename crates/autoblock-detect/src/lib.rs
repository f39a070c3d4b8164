//! Detection for autoblock: splits log lines into envelopes, recognises
//! authentication failures (OpenSSH's sshd, MySQL/MariaDB, user regular
//! expressions), correlates the lines of one connection, and decides bans
//! (`maxretry` within `findtime`, escalating ban times, allowlist).
//!
//! It works on bytes it is given: no files, no sockets, no clock, no name
//! resolution, no netlink. It decides bans but never applies them.
//!
//! ```
//! use std::time::Duration;
//! use autoblock_detect::{AllowList, Event, Filter, Jail, Mode, PolicyState, Scanner, YearContext};
//!
//! let log = b"\
//! Nov 25 10:00:01 web sshd[101]: Invalid user admin from 203.0.113.9 port 40001
//! Nov 25 10:00:03 web sshd[101]: Failed password for invalid user admin from 203.0.113.9 port 40001 ssh2
//! Nov 25 10:00:05 web sshd[102]: Failed password for root from 203.0.113.9 port 40002 ssh2
//! Nov 25 10:00:07 web sshd[103]: Failed password for root from 203.0.113.9 port 40003 ssh2
//! Nov 25 10:00:08 web cron[7]: (root) CMD (true)
//! ";
//! let ctx = YearContext::utc("2026-11-25T12:00:00Z".parse().unwrap());
//! let mut scanner = Scanner::new(Filter::Sshd(Mode::Normal), ctx);
//! let jail = Jail { maxretry: 3, findtime: Duration::from_secs(600), ..Jail::default() };
//! let mut policy = PolicyState::new(jail, AllowList::new()).unwrap();
//!
//! let mut bans = Vec::new();
//! for (i, line) in log.split(|&b| b == b'\n').enumerate() {
//!     let Some(d) = scanner.feed(i as u64 + 1, line) else { continue };
//!     match d.event {
//!         Event::Failure(f) => bans.extend(policy.record(&f, d.time.unwrap())),
//!         Event::Forgive { host, count } => policy.forgive(host, count),
//!     }
//! }
//! // `Invalid user` and its `Failed password` are one attempt: three attempts, one ban.
//! assert_eq!(scanner.stats().failures, 3);
//! assert_eq!(scanner.stats().correlated, 1);
//! assert_eq!(bans.len(), 1);
//! assert_eq!(bans[0].net.to_string(), "203.0.113.9/32");
//! assert_eq!(bans[0].duration, Some(Duration::from_secs(600)));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod addr;
mod envelope;
mod filter;
mod journal;
mod mysqld;
mod policy;
mod regex_filter;
mod scanner;
mod simulate;
mod sshd;

pub use addr::{normalise, parse_addr};
pub use envelope::{Envelope, EnvelopeFormat, YearContext};
pub use filter::{Failure, FailureKind, Filter, Mode};
pub use journal::{JournalTrust, Untrusted};
pub use policy::{
    AllowList, BanDecision, Jail, OffenceRecord, PolicyError, PolicyState, PolicyStats,
};
pub use regex_filter::{FilterError, RegexFilter};
pub use scanner::{Detection, Event, ScanStats, Scanner, ScannerConfig, MAX_LINE};
pub use simulate::{simulate, SimEvent, Simulator};

/// Re-exported so callers name the same time and network types.
pub use ipnetwork::IpNetwork;
pub use jiff::Timestamp;
