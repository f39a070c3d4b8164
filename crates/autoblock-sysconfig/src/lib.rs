//! Model, parser and printer of `iptables-save` / `iptables-restore` files
//! (`/etc/sysconfig/iptables`, `/etc/sysconfig/ip6tables`), and the atomic
//! mirror that keeps autoblock's chain in them.
//!
//! - [`RulesetFile`] parses a file, keeping every byte: unchanged content
//!   prints back byte for byte (comments, whitespace, counters, order, CR LF,
//!   a missing final newline). The parser checks the structure
//!   `iptables-restore` requires and reports the line number and reason of
//!   the first problem ([`ParseError`]).
//! - [`RulesetFile::set_auto_chain`] makes the last `*filter` section hold
//!   autoblock's chain (declaration, `-A INPUT -j CHAIN` as the first
//!   `INPUT` rule, the rules as [`render_rule`] prints them) and changes no
//!   other line.
//! - [`Mirror`] locks, reads and parses the file before the kernel is
//!   changed, and writes the new version atomically afterwards.
//!
//! - [`replace_file`] is the atomic writer behind the mirror, for other
//!   state files that need the same guarantees.
//!
//! # Owner, mode and SELinux label of the written files
//!
//! A replaced file keeps its owner and its `security.selinux` label (copied
//! onto the temporary file before the rename) and gets mode 0600, as the
//! `iptables` service writes it. A *new* file (no old file to copy from)
//! would otherwise get the label of the directory (`etc_t` for
//! `/etc/sysconfig`): only the `iptables_t` domain, or a creation under the
//! exact name `iptables`/`ip6tables`, gets `system_conf_t` from the policy,
//! and the temporary name matches neither. So a new file gets the label of
//! a packaged sibling (`iptables`, `ip6tables`, `iptables-config`,
//! `ip6tables-config`) when one is labelled, else
//! `system_u:object_r:system_conf_t:s0` ([`NEW_FILE_LABEL`]) when the
//! directory itself is labelled (SELinux active), else nothing (no SELinux).
//! Setting that label is best effort: if the policy refuses it, the file is
//! still written and `restorecon /etc/sysconfig/iptables` fixes the label.
//! The owner of a new file is the writing user (root for the service).
//!
//! This crate never talks to the kernel and never runs iptables; it only
//! reads and writes files.
//!
//! # How the grammar compares with `iptables-restore`
//!
//! Checked against iptables-nft 1.8.9 (see `tests/tool.rs`). The parser
//! refuses everything `iptables-restore` refuses at the structural level
//! (lines outside tables, missing `COMMIT`, unknown tables, rules for
//! undeclared chains, chain names over 28 bytes or clashing with targets,
//! bad policies, whitespace-only lines, NUL bytes, lines over 10,239
//! bytes, words over 1,023 bytes, more than 251 words). It is stricter on
//! a few inputs `iptables-restore` lets through without `-c`: malformed
//! or negative counters, words after a table name or after chain
//! counters, a policy on a user chain, an unterminated quote, `-L`/`-S`,
//! NUL bytes in comments, chain names that are not UTF-8. It does not
//! judge match and target options (`-m foo --bar`), which only the
//! kernel's extensions can.
//!
//! CR LF line endings are kept (the file prints back identically) but
//! `iptables-restore` rejects such lines, so [`Mirror`] refuses to
//! maintain a file with one ([`RulesetFile::crlf_line`]).
//!
//! ```
//! use autoblock_sysconfig::{AutoRule, AutoTarget, Family, RulesetFile};
//!
//! let mut file: RulesetFile = "\
//! *filter
//! :INPUT ACCEPT [0:0]
//! :FORWARD ACCEPT [0:0]
//! :OUTPUT ACCEPT [0:0]
//! -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
//! COMMIT
//! ".parse()?;
//! let rules = [AutoRule {
//!     source: "2001:db8::/48".into(),
//!     comment: None,
//!     target: AutoTarget::Reject,
//! }];
//! file.set_auto_chain("INPUT-AUTO", Family::V6, &rules)?;
//! assert_eq!(file.to_string(), "\
//! *filter
//! :INPUT ACCEPT [0:0]
//! :FORWARD ACCEPT [0:0]
//! :OUTPUT ACCEPT [0:0]
//! :INPUT-AUTO - [0:0]
//! -A INPUT -j INPUT-AUTO
//! -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
//! -A INPUT-AUTO -s 2001:db8::/48 -j REJECT --reject-with icmp6-port-unreachable
//! COMMIT
//! ");
//! assert_eq!(file.auto_rules("INPUT-AUTO", Family::V6)?, rules);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod addr;
mod auto;
mod error;
mod lex;
mod mirror;
mod model;

pub use auto::{
    check_auto_chain, render_rule, AutoJump, AutoRule, AutoTarget, Family, MAX_COMMENT_LEN,
    MAX_LOG_PREFIX_LEN,
};
pub use error::{ChainNameProblem, ModelError, ParseError, ParseErrorKind};
pub use lex::{save_string, Counters, LineEnding};
pub use mirror::{
    new_file_label, replace_file, Mirror, MirrorError, Outcome, Prepared, LOCK_FILE, NEW_FILE_LABEL,
};
pub use model::{Line, LineKind, RulesetFile, MAX_CHAIN_NAME};
