//! Parser and printer tables: every fixture in `tests/data` prints back
//! byte for byte, and each malformed input fails with the expected line
//! number and reason.
//!
//! The fixtures are either recorded here from iptables-nft (`record.sh`)
//! or written for this project; `tool.rs` checks them against the real
//! `iptables-restore`. Property tests live in `prop.rs`.

use std::path::PathBuf;

use autoblock_sysconfig::{
    ChainNameProblem, Counters, LineEnding, LineKind, ParseErrorKind, RulesetFile,
};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = data_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// All `*.rules` fixtures, sorted.
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir())
        .expect("tests/data exists")
        .map(|e| {
            e.expect("readable entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".rules"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| (n.clone(), fixture(&n)))
        .collect()
}

#[test]
fn every_fixture_round_trips_byte_for_byte() {
    let all = fixtures();
    assert!(all.len() >= 12, "fixtures missing: {}", all.len());
    for (name, bytes) in all {
        let file = RulesetFile::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            file.to_bytes(),
            bytes,
            "{name} does not print back identically"
        );
        let lines = bytes.iter().filter(|&&b| b == b'\n').count()
            + usize::from(!bytes.is_empty() && !bytes.ends_with(b"\n"));
        assert_eq!(file.lines().len(), lines, "{name}: line count");
        // Parsing the printed file gives the same model.
        assert_eq!(
            RulesetFile::parse(&file.to_bytes()).as_ref(),
            Ok(&file),
            "{name}"
        );
    }
}

#[test]
fn recorded_file_is_understood() {
    let file = RulesetFile::parse(&fixture("recorded-v4-counters.rules")).unwrap();
    assert_eq!(file.table_names(), ["mangle", "raw", "filter", "nat"]);
    let rules: Vec<(&str, Option<Counters>)> = file
        .lines()
        .iter()
        .filter_map(|l| match l.kind() {
            LineKind::Rule {
                chain, counters, ..
            } => Some((chain.as_str(), *counters)),
            _ => None,
        })
        .collect();
    assert_eq!(rules.len(), 21);
    assert!(
        rules.iter().all(|(_, c)| c.is_some()),
        "-c puts counters on every rule"
    );
    assert!(
        rules
            .iter()
            .any(|(_, c)| c.is_some_and(|c| c.packets > 0 && c.bytes > 0)),
        "the recording saw traffic"
    );
    let quoted = file
        .lines()
        .iter()
        .find_map(|l| match l.kind() {
            LineKind::Rule { chain, words, .. } if chain == "SSH-IN" && words.len() > 6 => {
                Some(words.clone())
            }
            _ => None,
        })
        .expect("SSH-IN rule with a comment");
    assert_eq!(quoted[7], br#"office "north" 'wing'"#);
    let declared: Vec<&str> = file
        .lines()
        .iter()
        .filter_map(|l| match l.kind() {
            LineKind::Chain {
                name, policy: None, ..
            } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(declared, ["LOGDROP", "SSH-IN", "PORTFWD"]);
}

#[test]
fn special_shapes() {
    let empty = RulesetFile::parse(b"").unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.to_bytes(), b"");

    let crlf = RulesetFile::parse(&fixture("crlf.rules")).unwrap();
    assert_eq!(crlf.crlf_line(), Some(1));
    assert!(crlf.lines().iter().all(|l| l.ending() == LineEnding::CrLf));
    assert_eq!(crlf.lines()[0].text(), b"*filter");

    let no_nl = RulesetFile::parse(&fixture("no-trailing-newline.rules")).unwrap();
    let last = no_nl.lines().last().unwrap();
    assert_eq!(
        (last.text(), last.ending()),
        (&b"COMMIT"[..], LineEnding::None)
    );
    assert_eq!(no_nl.crlf_line(), None);

    let hand = RulesetFile::parse(&fixture("handwritten.rules")).unwrap();
    let kinds: Vec<&LineKind> = hand.lines().iter().map(|l| l.kind()).collect();
    assert!(kinds.contains(&&LineKind::Chain {
        name: "OUTPUT".into(),
        policy: Some("ACCEPT".into()),
        counters: None
    }));
    assert!(kinds.contains(&&LineKind::Chain {
        name: "FORWARD".into(),
        policy: Some("DROP".into()),
        counters: Some(Counters {
            packets: 10,
            bytes: 20
        })
    }));
}

/// One malformed input: the text, the expected line and reason.
struct Bad {
    name: &'static str,
    input: Vec<u8>,
    line: usize,
    kind: ParseErrorKind,
}

fn bad(name: &'static str, input: impl Into<Vec<u8>>, line: usize, kind: ParseErrorKind) -> Bad {
    Bad {
        name,
        input: input.into(),
        line,
        kind,
    }
}

const HEAD: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n";

fn with_head(body: &str) -> String {
    format!("{HEAD}{body}")
}

fn chain_name(name: &str, reason: ChainNameProblem) -> ParseErrorKind {
    ParseErrorKind::InvalidChainName {
        name: name.into(),
        reason,
    }
}

fn malformed_inputs() -> Vec<Bad> {
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

#[test]
fn malformed_inputs_fail_with_line_and_reason() {
    for case in malformed_inputs() {
        match RulesetFile::parse(&case.input) {
            Ok(_) => panic!("{}: parsed, but must fail", case.name),
            Err(e) => {
                assert_eq!(
                    (e.line, &e.kind),
                    (case.line, &case.kind),
                    "{}: got `{e}`",
                    case.name
                );
                let shown = e.to_string();
                assert!(
                    shown.starts_with(&format!("line {}: ", case.line)),
                    "{}: {shown}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn error_carries_the_line_text() {
    let e = RulesetFile::parse(with_head("-A FOO -j ACCEPT\nCOMMIT\n").as_bytes()).unwrap_err();
    assert_eq!(e.text, "-A FOO -j ACCEPT");
    assert_eq!(
        e.to_string(),
        "line 5: rule for chain \"FOO\" which is not declared in table filter"
    );
}

#[test]
fn limits_are_inclusive() {
    // Exactly at each limit parses.
    let name = "A".repeat(28);
    let ok = [
        with_head(&format!(":{name} - [0:0]\n-A {name} -j ACCEPT\nCOMMIT\n")),
        with_head(&format!("# {}\nCOMMIT\n", "x".repeat(10_237))),
        with_head(&format!(
            "-A INPUT -m comment --comment {} -j ACCEPT\nCOMMIT\n",
            "w".repeat(1023)
        )),
        with_head(&format!(
            "-A INPUT ! -s 10.0.0.1{} -j ACCEPT\nCOMMIT\n",
            " -m comment --comment x".repeat(61)
        )),
        with_head(":INPUT - [0:0]\n:FOO -\n-A FOO -j RETURN\nCOMMIT\n"),
    ];
    for text in ok {
        let file = RulesetFile::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.to_bytes(), text.as_bytes());
    }
}

#[test]
fn large_file_parses_quickly() {
    let mut text = String::from(HEAD);
    for i in 0..100_000u32 {
        let [_, a, b, c] = i.to_be_bytes();
        text.push_str(&format!(
            "-A INPUT -s 10.{a}.{b}.{c}/32 -m comment --comment \"rule {i}\" -j DROP\n"
        ));
    }
    text.push_str("COMMIT\n");
    let start = std::time::Instant::now();
    let file = RulesetFile::parse(text.as_bytes()).unwrap();
    let parsed = start.elapsed();
    assert_eq!(file.lines().len(), 100_005);
    assert_eq!(file.to_bytes(), text.as_bytes());
    // Generous bound for a debug build on a shared 2-core machine.
    assert!(
        parsed.as_secs() < 20,
        "parsing 100,000 rules took {parsed:?}"
    );
}
