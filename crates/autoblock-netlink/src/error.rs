//! Errors of the netlink layer.
//!
//! Every kernel rejection keeps the errno, the extended-ack text and the operation it belongs
//! to, so callers can name the entry that caused it. This module formats errors; it does not
//! decide what a caller should do about them.

use std::fmt;
use std::io;

use crate::batch::OpId;

/// Bytes received from the kernel did not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed netlink data: {what}{}", attr.map(|a| format!(" (attribute {a})")).unwrap_or_default())]
pub struct DecodeError {
    what: &'static str,
    attr: Option<u16>,
}

impl DecodeError {
    pub(crate) fn new(what: &'static str) -> Self {
        DecodeError { what, attr: None }
    }
    pub(crate) fn attr(what: &'static str, attr: u16) -> Self {
        DecodeError {
            what,
            attr: Some(attr),
        }
    }
}

/// An error the kernel returned in an `NLMSG_ERROR` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError {
    /// Positive errno (`ENOENT`, `EEXIST`, ...).
    pub errno: i32,
    /// The extended-ack message, if the kernel gave one.
    pub message: Option<String>,
    /// The extended-ack offset of the offending attribute, relative to the start of the
    /// request message.
    pub offset: Option<u32>,
}

impl KernelError {
    /// The symbolic errno name, e.g. `"ENOENT"`.
    pub fn errno_name(&self) -> &'static str {
        errno_name(self.errno)
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = io::Error::from_raw_os_error(self.errno);
        let text = os.to_string();
        let text = text.split(" (os error").next().unwrap_or(&text);
        write!(f, "{} ({})", self.errno_name(), text)?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for KernelError {}

/// Symbolic name of the errnos nf_tables returns.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::ENOMEM => "ENOMEM",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::EFBIG => "EFBIG",
        libc::ERANGE => "ERANGE",
        libc::E2BIG => "E2BIG",
        libc::ELOOP => "ELOOP",
        libc::EMLINK => "EMLINK",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOBUFS => "ENOBUFS",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EAGAIN => "EAGAIN",
        85 => "ERESTART",
        _ => "errno",
    }
}

/// `ERESTART` is kernel-internal and not in libc: nf_tables returns it for a stale
/// generation id in `BATCH_BEGIN`.
pub const ERESTART: i32 = 85;

/// Errors of socket operations and of reading state (dumps, GETGEN).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller lacks `CAP_NET_ADMIN` in this network namespace.
    #[error("nf_tables refused the request: it needs CAP_NET_ADMIN in this network namespace (run as root)")]
    PermissionDenied,
    /// A socket call failed.
    #[error("netlink {op} failed: {source}")]
    Io {
        /// Which call failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel answered a request with an error.
    #[error("kernel rejected {what}: {error}")]
    Kernel {
        /// What was asked.
        what: String,
        /// The kernel's error.
        #[source]
        error: KernelError,
    },
    /// A reply could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The ruleset kept changing while it was being dumped.
    #[error("the ruleset changed {0} times while it was being read; giving up")]
    DumpInterrupted(u32),
    /// No reply arrived in time.
    #[error("no reply from the kernel within {0} ms")]
    Timeout(u64),
    /// A received datagram did not fit the receive buffer.
    #[error("a netlink reply was truncated (receive buffer too small)")]
    Truncated,
    /// Replies were lost (ENOBUFS) while reading.
    #[error("netlink replies were lost (ENOBUFS); the result is unknown")]
    RepliesLost,
}

impl Error {
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        if source.raw_os_error() == Some(libc::EPERM) {
            return Error::PermissionDenied;
        }
        Error::Io { op, source }
    }
}

/// One operation of a batch that the kernel rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    /// The operation, as returned by the [`crate::Batch`] method that queued it.
    pub op: OpId,
    /// For set-element operations: the index, within that operation, of the element the
    /// kernel pointed at (from the extended-ack offset), if it could be determined.
    pub element: Option<usize>,
    /// The kernel's error.
    pub error: KernelError,
}

/// Why a batch was not (or not knowingly) committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The generation id in `BATCH_BEGIN` was stale (`ERESTART`): another program changed
    /// the ruleset since it was read. Nothing was applied; re-read and rebuild.
    #[error("the ruleset changed since it was read (generation id mismatch); nothing was applied")]
    GenerationChanged,
    /// The kernel rejected one or more operations; the whole batch was rolled back.
    #[error("the kernel rejected the transaction; nothing was applied: {}", summary(.errors))]
    Rejected {
        /// Each rejected operation.
        errors: Vec<OpError>,
    },
    /// Replies were lost (`ENOBUFS`): whether the batch was committed is unknown. Reconcile
    /// by reading the ruleset; never assume success.
    #[error("netlink replies were lost (ENOBUFS); whether the transaction was applied is unknown")]
    OutcomeUnknown {
        /// Errors that did arrive.
        errors: Vec<OpError>,
    },
    /// The caller lacks `CAP_NET_ADMIN`.
    #[error("nf_tables refused the transaction: it needs CAP_NET_ADMIN in this network namespace (run as root)")]
    PermissionDenied,
    /// The batch is larger than the socket may send in one datagram, and the limit could not
    /// be raised (no `CAP_NET_ADMIN` in the initial user namespace, `net.core.wmem_max`).
    #[error("a transaction of {len} bytes does not fit the socket send buffer ({max} bytes at most here; raise net.core.wmem_max or run as root)")]
    TooLarge {
        /// Bytes of the batch.
        len: usize,
        /// Largest datagram this socket can send.
        max: usize,
    },
    /// A socket call failed.
    #[error(transparent)]
    Io(#[from] Error),
}

fn summary(errors: &[OpError]) -> String {
    let mut s = String::new();
    for (i, e) in errors.iter().take(3).enumerate() {
        if i > 0 {
            s.push_str("; ");
        }
        s.push_str(&format!("operation {}: {}", e.op.0, e.error));
    }
    if errors.len() > 3 {
        s.push_str(&format!("; and {} more", errors.len() - 3));
    }
    s
}
