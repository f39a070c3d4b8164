//! Helpers shared by the integration tests: the table of malformed inputs
//! (used by the parser table in `parse.rs` and by the comparison with the
//! real `iptables-restore` in `tool.rs`).

#![allow(dead_code)]

use autoblock_sysconfig::{ChainNameProblem, ParseErrorKind};

/// One malformed input: the text, the expected line and reason.
pub struct Bad {
    pub name: &'static str,
    pub input: Vec<u8>,
    pub line: usize,
    pub kind: ParseErrorKind,
}

fn bad(name: &'static str, input: impl Into<Vec<u8>>, line: usize, kind: ParseErrorKind) -> Bad {
    Bad {
        name,
        input: input.into(),
        line,
        kind,
    }
}

pub const HEAD: &str =
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n";

pub fn with_head(body: &str) -> String {
    format!("{HEAD}{body}")
}

fn chain_name(name: &str, reason: ChainNameProblem) -> ParseErrorKind {
    ParseErrorKind::InvalidChainName {
        name: name.into(),
        reason,
    }
}

pub fn malformed_inputs() -> Vec<Bad> {
    use ParseErrorKind as K;
    let long_name = "A".repeat(29);
    let mut long_line = with_head("# ").into_bytes();
    long_line.extend(std::iter::repeat_n(b'x', 10_238));
    long_line.extend(b"\nCOMMIT\n");
    let long_word = with_head(&format!(
        "-A INPUT -m comment --comment {} -j ACCEPT\nCOMMIT\n",
        "w".repeat(1024)
    ));
    let many_words = with_head(&format!(
        "-A INPUT{} -j ACCEPT\nCOMMIT\n",
        " -m comment --comment x".repeat(62)
    ));
    let mut non_utf8 = with_head(":B").into_bytes();
    non_utf8.extend(b"\xff - [0:0]\nCOMMIT\n");
    vec![
        bad(
            "missing COMMIT",
            with_head("-A INPUT -j ACCEPT\n"),
            6,
            K::MissingCommit {
                table: "filter".into(),
                opened: 1,
            },
        ),
        bad(
            "missing COMMIT, no final newline",
            "# x\n*nat\n:PREROUTING ACCEPT [0:0]",
            4,
            K::MissingCommit {
                table: "nat".into(),
                opened: 2,
            },
        ),
        bad(
            "rule before table",
            format!("-A INPUT -j ACCEPT\n{HEAD}COMMIT\n"),
            1,
            K::OutsideTable { what: "rule" },
        ),
        bad(
            "rule after COMMIT",
            with_head("COMMIT\n-A INPUT -j ACCEPT\n"),
            6,
            K::OutsideTable { what: "rule" },
        ),
        bad(
            "COMMIT outside a table",
            "# nothing open\nCOMMIT\n",
            2,
            K::OutsideTable { what: "COMMIT" },
        ),
        bad(
            "chain outside a table",
            ":INPUT ACCEPT [0:0]\n",
            1,
            K::OutsideTable {
                what: "chain declaration",
            },
        ),
        bad(
            "unknown chain",
            with_head("-A INPUT -j ACCEPT\n-A FOO -j ACCEPT\nCOMMIT\n"),
            6,
            K::UndeclaredChain {
                chain: "FOO".into(),
                table: "filter".into(),
            },
        ),
        bad(
            "chain declared in another table",
            format!("*nat\n:FOO - [0:0]\nCOMMIT\n{HEAD}-A FOO -j ACCEPT\nCOMMIT\n"),
            8,
            K::UndeclaredChain {
                chain: "FOO".into(),
                table: "filter".into(),
            },
        ),
        bad(
            "built-in chain of another table",
            "*raw\n:PREROUTING ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n",
            3,
            K::UndeclaredChain {
                chain: "INPUT".into(),
                table: "raw".into(),
            },
        ),
        bad(
            "jump chain declared only after its use is fine, but -I to unknown is not",
            with_head("-I NOPE -j ACCEPT\nCOMMIT\n"),
            5,
            K::UndeclaredChain {
                chain: "NOPE".into(),
                table: "filter".into(),
            },
        ),
        bad(
            "bad rule counters",
            with_head("[1:x] -A INPUT -j ACCEPT\nCOMMIT\n"),
            5,
            K::BadCounters("[1:x]".into()),
        ),
        bad(
            "rule counters without ]",
            with_head("[1:2 -A INPUT -j ACCEPT\nCOMMIT\n"),
            5,
            K::BadCounters("[1:2".into()),
        ),
        bad(
            "negative counters",
            with_head("[-1:0] -A INPUT -j ACCEPT\nCOMMIT\n"),
            5,
            K::BadCounters("[-1:0]".into()),
        ),
        bad(
            "counters overflow u64",
            with_head("[18446744073709551616:0] -A INPUT -j ACCEPT\nCOMMIT\n"),
            5,
            K::BadCounters("[18446744073709551616:0]".into()),
        ),
        bad(
            "bad chain counters",
            "*filter\n:INPUT ACCEPT [x:0]\nCOMMIT\n",
            2,
            K::BadCounters("[x:0]".into()),
        ),
        bad(
            "overlong chain name",
            with_head(&format!(":{long_name} - [0:0]\nCOMMIT\n")),
            5,
            chain_name(&long_name, ChainNameProblem::TooLong),
        ),
        bad(
            "overlong chain name in -N",
            with_head(&format!("-N {long_name}\nCOMMIT\n")),
            5,
            chain_name(&long_name, ChainNameProblem::TooLong),
        ),
        bad(
            "chain name starting with -",
            with_head(":-FOO - [0:0]\nCOMMIT\n"),
            5,
            chain_name("-FOO", ChainNameProblem::BadStart),
        ),
        bad(
            "chain name of a target",
            with_head(":DROP - [0:0]\nCOMMIT\n"),
            5,
            chain_name("DROP", ChainNameProblem::ClashesWithTarget),
        ),
        bad(
            "NUL byte in a rule",
            with_head("-A INPUT -j ACC\0EPT\nCOMMIT\n"),
            5,
            K::NulByte { column: 16 },
        ),
        bad(
            "NUL byte in a comment",
            "# a\0b\n",
            1,
            K::NulByte { column: 4 },
        ),
        bad(
            "NUL byte alone",
            with_head("\0\nCOMMIT\n"),
            5,
            K::NulByte { column: 1 },
        ),
        bad(
            "whitespace-only line",
            with_head(" \t\nCOMMIT\n"),
            5,
            K::WhitespaceOnly,
        ),
        bad(
            "whitespace-only line outside tables",
            "  \n",
            1,
            K::WhitespaceOnly,
        ),
        bad(
            "comment not in column 1",
            with_head(" # indented\nCOMMIT\n"),
            5,
            K::UnknownCommand("#".into()),
        ),
        bad(
            "unknown table",
            "*foo\nCOMMIT\n",
            1,
            K::UnknownTable("foo".into()),
        ),
        bad("table without name", "*\nCOMMIT\n", 1, K::MissingTableName),
        bad(
            "table in table",
            with_head("*nat\nCOMMIT\n"),
            5,
            K::TableNotCommitted {
                open: "filter".into(),
                new: "nat".into(),
            },
        ),
        bad(
            "words after the table name",
            "*filter now\nCOMMIT\n",
            1,
            K::TrailingGarbage("now".into()),
        ),
        bad(
            "words after the counters",
            "*filter\n:INPUT ACCEPT [0:0] x\nCOMMIT\n",
            2,
            K::TrailingGarbage("x".into()),
        ),
        bad(
            "COMMIT with a trailing blank",
            with_head("COMMIT \n"),
            5,
            K::CommitNotAlone,
        ),
        bad(
            "lower-case commit",
            with_head("commit\n"),
            5,
            K::UnknownCommand("commit".into()),
        ),
        bad(
            "bad policy",
            "*filter\n:INPUT REJECT [0:0]\nCOMMIT\n",
            2,
            K::BadPolicy {
                chain: "INPUT".into(),
                policy: "REJECT".into(),
            },
        ),
        bad(
            "policy on a user chain",
            with_head(":FOO ACCEPT [0:0]\nCOMMIT\n"),
            5,
            K::PolicyOnUserChain {
                chain: "FOO".into(),
                policy: "ACCEPT".into(),
                table: "filter".into(),
            },
        ),
        bad(
            "missing policy",
            with_head(":FOO\nCOMMIT\n"),
            5,
            K::MissingPolicy("FOO".into()),
        ),
        bad(
            "chain line without a name",
            with_head(":\nCOMMIT\n"),
            5,
            K::MissingChainName,
        ),
        bad(
            "unterminated quote",
            with_head("-A INPUT -m comment --comment \"open -j ACCEPT\nCOMMIT\n"),
            5,
            K::UnterminatedQuote,
        ),
        bad(
            "counters only",
            with_head("[0:0]\nCOMMIT\n"),
            5,
            K::NoCommand,
        ),
        bad(
            "unknown command",
            with_head("INPUT -j ACCEPT\nCOMMIT\n"),
            5,
            K::UnknownCommand("INPUT".into()),
        ),
        bad(
            "list command",
            with_head("-L INPUT\nCOMMIT\n"),
            5,
            K::CommandNotAllowed("-L".into()),
        ),
        bad(
            "append without chain",
            with_head("-A\nCOMMIT\n"),
            5,
            K::MissingChain("-A".into()),
        ),
        bad(
            "line too long",
            long_line,
            5,
            K::LineTooLong {
                len: 10_240,
                max: 10_239,
            },
        ),
        bad(
            "word too long",
            long_word,
            5,
            K::WordTooLong {
                len: 1024,
                max: 1023,
            },
        ),
        bad(
            "too many words",
            many_words,
            5,
            K::TooManyWords {
                count: 252,
                max: 251,
            },
        ),
        bad("chain name not UTF-8", non_utf8, 5, K::NotUtf8),
        bad(
            "CRLF file: errors keep counting lines",
            "*filter\r\n:INPUT ACCEPT [0:0]\r\n-A FOO -j DROP\r\nCOMMIT\r\n",
            3,
            K::UndeclaredChain {
                chain: "FOO".into(),
                table: "filter".into(),
            },
        ),
    ]
}
