//! Parser and printer tables: every fixture in `tests/data` prints back
//! byte for byte, and each malformed input fails with the expected line
//! number and reason.
//!
//! The fixtures are either recorded here from iptables-nft (`record.sh`)
//! or written for this project; `tool.rs` checks them against the real
//! `iptables-restore`. Property tests live in `prop.rs`.

mod common;

use std::path::PathBuf;

use autoblock_sysconfig::{Counters, LineEnding, LineKind, RulesetFile};
use common::{malformed_inputs, with_head, HEAD};

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
