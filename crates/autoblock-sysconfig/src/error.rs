//! Error types of the file model: [`ParseError`] for input that is not a
//! valid `iptables-restore` file, and [`ModelError`] for values that cannot
//! be put into (or read back from) autoblock's chain.
//!
//! The mirror's own error ([`crate::MirrorError`]) lives next to the mirror;
//! this module deliberately knows nothing about paths or I/O.

use std::fmt;

/// Most bytes of an offending line kept in an error, so that a 10 KiB rule
/// does not end up in a log message in full.
const MAX_TEXT: usize = 200;

/// A file that `iptables-restore` would reject (or that autoblock refuses to
/// touch because it could not rewrite it safely).
///
/// `line` is 1-based. For a missing `COMMIT` it is the line after the last
/// one, which is where `iptables-restore` reports it too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// The offending line (lossily decoded, shortened to 200 bytes).
    pub text: String,
    /// What is wrong with it.
    pub kind: ParseErrorKind,
}

impl ParseError {
    pub(crate) fn new(line: usize, text: &[u8], kind: ParseErrorKind) -> Self {
        ParseError {
            line,
            text: shorten(text),
            kind,
        }
    }
}

/// The reason a line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// A NUL byte: `iptables-restore` reads lines as C strings.
    #[error("NUL byte at column {column}")]
    NulByte {
        /// 1-based byte column.
        column: usize,
    },
    /// Longer than the line buffer of `iptables-restore`.
    #[error("line is {len} bytes long; iptables-restore reads at most {max} bytes per line")]
    LineTooLong {
        /// Length of the line as `iptables-restore` counts it (without the
        /// `\n`, with the `\r` of a CR LF ending).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A single word longer than the parameter buffer of `iptables-restore`.
    #[error("a word of {len} bytes; iptables-restore accepts at most {max} bytes per word")]
    WordTooLong {
        /// Length of the word after unquoting.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More words than `iptables-restore` can pass on.
    #[error("{count} words; iptables-restore accepts at most {max} on a line")]
    TooManyWords {
        /// Number of words.
        count: usize,
        /// The limit (3 fewer with a `[p:b]` prefix, which restore turns into
        /// `--set-counters P B`).
        max: usize,
    },
    /// Spaces or tabs only; `iptables-restore` fails with "no command specified".
    #[error("line contains only whitespace (an empty line must be really empty)")]
    WhitespaceOnly,
    /// Something other than a comment or `*table` outside a table section.
    #[error("{what} outside a table section (expected `*filter`, `*nat`, ... first)")]
    OutsideTable {
        /// What was found, e.g. "rule" or "COMMIT".
        what: &'static str,
    },
    /// `*` without a name.
    #[error("table line without a table name")]
    MissingTableName,
    /// A table name iptables does not know.
    #[error("unknown table {0:?} (known: filter, nat, mangle, raw, security)")]
    UnknownTable(String),
    /// A new `*table` before the previous one's `COMMIT`.
    #[error("table {new:?} starts before COMMIT of table {open:?}")]
    TableNotCommitted {
        /// The table that is still open.
        open: String,
        /// The table that starts.
        new: String,
    },
    /// End of file inside a table section.
    #[error("COMMIT expected: table {table:?} opened at line {opened} is never committed")]
    MissingCommit {
        /// Name of the open table.
        table: String,
        /// Line of its `*table` line.
        opened: usize,
    },
    /// Extra words on a `*table`, `:chain` or `COMMIT` line.
    #[error("unexpected {0:?} at the end of the line")]
    TrailingGarbage(String),
    /// `:` without a chain name.
    #[error("chain line without a chain name")]
    MissingChainName,
    /// A chain name iptables rejects.
    #[error("invalid chain name {name:?}: {reason}")]
    InvalidChainName {
        /// The name.
        name: String,
        /// Why.
        reason: ChainNameProblem,
    },
    /// Chain line without policy.
    #[error("chain {0:?} has no policy (ACCEPT, DROP, or - for a user-defined chain)")]
    MissingPolicy(String),
    /// Policy other than ACCEPT, DROP or `-`.
    #[error("bad policy {policy:?} for chain {chain:?} (ACCEPT, DROP or -)")]
    BadPolicy {
        /// The chain.
        chain: String,
        /// The policy word.
        policy: String,
    },
    /// A policy on a chain that is not built into the table.
    #[error("policy {policy} on chain {chain:?}, which is not a built-in chain of table {table} (user-defined chains take -)")]
    PolicyOnUserChain {
        /// The chain.
        chain: String,
        /// The policy word.
        policy: String,
        /// The table.
        table: String,
    },
    /// `[pkts:bytes]` that is not two decimal numbers.
    #[error("bad counters {0:?} (expected [packets:bytes], two decimal numbers)")]
    BadCounters(String),
    /// A `"` that is never closed.
    #[error("unterminated double quote")]
    UnterminatedQuote,
    /// A rule line with no words (e.g. only counters).
    #[error("no command on the line")]
    NoCommand,
    /// A first word that is not an iptables command.
    #[error("unknown command {0:?} (expected -A CHAIN ...)")]
    UnknownCommand(String),
    /// `-L`, `-S`, ... : meaningless (or rejected) in a restore file.
    #[error("command {0:?} is not allowed in a restore file")]
    CommandNotAllowed(String),
    /// A command without its chain.
    #[error("command {0:?} without a chain name")]
    MissingChain(String),
    /// `COMMIT` with something else on its line.
    #[error("COMMIT must stand alone on its line, without blanks")]
    CommitNotAlone,
    /// A rule for a chain that is neither built in nor declared.
    #[error("rule for chain {chain:?} which is not declared in table {table}")]
    UndeclaredChain {
        /// The chain.
        chain: String,
        /// The table.
        table: String,
    },
    /// A chain or table name that is not UTF-8.
    #[error("name is not valid UTF-8")]
    NotUtf8,
}

/// Why a chain name is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainNameProblem {
    /// Empty name.
    Empty,
    /// More than 28 bytes (`XT_EXTENSION_MAXNAMELEN` - 1).
    TooLong,
    /// Starts with `-` or `!`.
    BadStart,
    /// Contains a space, tab, quote or control character.
    BadCharacter,
    /// Equal to a verdict or target name such as `DROP` or `LOG`.
    ClashesWithTarget,
    /// Equal to a built-in chain name such as `INPUT` (only for autoblock's own chain).
    BuiltinName,
}

impl fmt::Display for ChainNameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChainNameProblem::Empty => "empty",
            ChainNameProblem::TooLong => "longer than 28 bytes",
            ChainNameProblem::BadStart => "starts with '-' or '!'",
            ChainNameProblem::BadCharacter => "contains whitespace, a quote or a control character",
            ChainNameProblem::ClashesWithTarget => "clashes with a target name",
            ChainNameProblem::BuiltinName => "is the name of a built-in chain",
        })
    }
}

/// A value that cannot be written into autoblock's chain, or a line in that
/// chain that autoblock did not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The chain name is not usable.
    #[error("invalid chain name {name:?}: {reason}")]
    InvalidChainName {
        /// The name.
        name: String,
        /// Why.
        reason: ChainNameProblem,
    },
    /// The source is not an address or prefix of the family.
    #[error("invalid {family} source {address:?}: {reason}")]
    InvalidSource {
        /// The source as given.
        address: String,
        /// The family it was used with.
        family: crate::Family,
        /// Why.
        reason: &'static str,
    },
    /// A comment iptables cannot store or a file line cannot carry.
    #[error("invalid comment {comment:?}: {reason}")]
    InvalidComment {
        /// The comment.
        comment: String,
        /// Why.
        reason: &'static str,
    },
    /// A log prefix iptables cannot store or a file line cannot carry.
    #[error("invalid log prefix {prefix:?}: {reason}")]
    InvalidLogPrefix {
        /// The prefix.
        prefix: String,
        /// Why.
        reason: &'static str,
    },
    /// A line in autoblock's chain that is not of the shape autoblock writes.
    #[error("line {line}: rule in chain {chain:?} is not one autoblock writes: {text}")]
    ForeignRule {
        /// 1-based line number.
        line: usize,
        /// The chain.
        chain: String,
        /// The line (lossily decoded, shortened).
        text: String,
    },
}

impl ModelError {
    pub(crate) fn foreign(line: usize, chain: &str, text: &[u8]) -> Self {
        ModelError::ForeignRule {
            line,
            chain: chain.to_owned(),
            text: shorten(text),
        }
    }
}

/// Lossy decoding, cut to [`MAX_TEXT`] bytes at a character boundary.
pub(crate) fn shorten(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(text);
    if s.len() <= MAX_TEXT {
        return s.into_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
