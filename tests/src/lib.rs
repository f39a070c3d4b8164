//! Test harness for autoblock's end-to-end tests: fresh network namespaces,
//! a two-namespace packet test bed, and helpers that run the real firewall
//! tools and the `autoblock` binary inside those namespaces.
//!
//! It owns: creating and destroying namespaces ([`Netns`]), the veth test bed
//! with its fixed set of documentation addresses ([`TestBed`], [`addr`]),
//! running `iptables-nft`, `nft`, `ip` and `autoblock` inside a namespace and
//! failing the test with the tool's stderr when they fail ([`tool`] and
//! friends), and the HARD SAFETY RULE check ([`assert_iptables_safe`]).
//!
//! It deliberately does not: touch this machine's own network namespace
//! (every command runs in a namespace the harness created), build the
//! `autoblock` binary (`cargo xtask test` builds it first; see
//! [`autoblock_bin`]), or skip a test that cannot run: without root every
//! kernel test panics with the reason, because a test that cannot run must
//! not pass.
//!
//! # Example
//!
//! ```no_run
//! use autoblock_tests::{addr, tool, TestBed};
//!
//! let bed = TestBed::new();
//! tool(bed.host(), &["nft", "add", "table", "ip", "t"]);
//! assert!(bed.send_udp(addr::V4_BLOCKED.into(), 0));
//! ```
//!
//! This is a test crate, not a shipped one: it may use `libc` with `unsafe`
//! (only for `unshare`, `gettid` and one interface ioctl), each block with a
//! `// SAFETY:` comment.

#![warn(missing_docs)]

mod bed;
mod daemon;
mod netns;
mod tools;

pub use bed::{addr, TestBed, DEFAULT_UDP_TIMEOUT, HOST_IF, OUTSIDE_IF};
pub use daemon::{sshd_failure_lines, sshd_jail, write_daemon_config, RunningDaemon};
pub use netns::{require_root, Netns};
pub use tools::{
    assert_iptables_safe, autoblock_bin, bare_verdict_rules, ip6tables, ip6tables_save, iptables,
    iptables_restore_test, iptables_save, kernel_at_least, locate_autoblock, nft, nft_json,
    normalize_save, output_text, tool, tool_with_input, try_tool, Family,
};
