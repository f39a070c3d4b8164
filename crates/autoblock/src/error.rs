//! Errors of the controller.
//!
//! Input errors name the offending input; kernel errors name the entry the kernel rejected.
//! Nothing is applied when any of these is returned, except for [`Error::OutcomeUnknown`],
//! which says exactly that the outcome could not be determined.

use autoblock_netlink as nl;

/// Bad input: refused before anything is sent to the kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Not an IPv4/IPv6 address or prefix.
    #[error("{input:?} is not an IPv4 or IPv6 address or prefix")]
    BadAddress {
        /// The text given.
        input: String,
    },
    /// Prefix length out of range.
    #[error("{input:?}: prefix length must be at most {max}")]
    BadPrefixLength {
        /// The text given.
        input: String,
        /// Largest prefix for the family.
        max: u8,
    },
    /// Host bits set in a prefix.
    #[error("{input:?} has host bits set; did you mean {masked}? (use --mask to clear them)")]
    HostBits {
        /// The text given.
        input: String,
        /// The network with host bits cleared.
        masked: String,
    },
    /// The entry overlaps the allowlist.
    #[error("refusing to block {entry}: it overlaps the allowlisted {allowed} ({why})")]
    Allowlisted {
        /// The entry.
        entry: String,
        /// The allowlist network it overlaps.
        allowed: String,
        /// Why that network is allowlisted.
        why: &'static str,
    },
    /// A comment that cannot be stored.
    #[error("comment {comment:?} cannot be used: {reason}")]
    BadComment {
        /// The comment.
        comment: String,
        /// Why.
        reason: &'static str,
    },
    /// A bad configuration value.
    #[error("invalid {what} {value:?}: {reason}")]
    BadConfig {
        /// Which setting.
        what: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: &'static str,
    },
}

/// Errors of controller operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input; nothing was applied.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The kernel rejected the change; nothing was applied.
    #[error("the kernel rejected {entry}: {error}; nothing was applied")]
    Rejected {
        /// The entry (or structure element) the kernel pointed at.
        entry: String,
        /// The kernel's error.
        error: nl::KernelError,
    },
    /// Replies were lost; the controller re-read the ruleset and reports what it found.
    #[error("the kernel's replies were lost (ENOBUFS): {0}")]
    OutcomeUnknown(String),
    /// Other programs kept changing the ruleset; gave up after several attempts.
    #[error("the ruleset kept changing while autoblock tried to apply its change ({0} attempts); nothing was applied")]
    TooManyRetries(u32),
    /// The table holds something autoblock must not touch or cannot parse.
    #[error("{0}")]
    Conflict(String),
    /// The change does not fit one transaction here.
    #[error("{0}")]
    TooLarge(String),
    /// Netlink failure.
    #[error(transparent)]
    Netlink(#[from] nl::Error),
}

impl Error {
    /// Whether this is a problem with the input (exit code 2 in the CLI).
    pub fn is_input(&self) -> bool {
        matches!(self, Error::Input(_))
    }
}
