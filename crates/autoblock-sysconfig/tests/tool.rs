//! Differential tests against the real iptables-nft (1.8.x), each command
//! run in a fresh network namespace (`unshare -n`), never in this machine's
//! own:
//!
//! - rules created with `iptables-nft -A INPUT-AUTO ...` print in
//!   `iptables-nft-save` exactly as [`render_rule`] prints them;
//! - every fixture the parser accepts, `iptables-nft-restore` accepts too
//!   (and the CR LF fixture both refuse to restore);
//! - each malformed input is refused by `iptables-nft-restore` as well,
//!   except the listed cases where this parser is deliberately stricter;
//! - a file after [`RulesetFile::set_auto_chain`] restores, and saving it
//!   back shows the jump first in INPUT and the rules as rendered.
//!
//! Needs root and the `iptables` package: without them the tests panic
//! under `CI=true` and print a loud notice otherwise.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use autoblock_sysconfig::{render_rule, AutoRule, AutoTarget, Family, RulesetFile};

const CHAIN: &str = "INPUT-AUTO";

/// Malformed inputs that iptables-nft-restore 1.8.9 accepts (without
/// `-c`), but this parser refuses on purpose: such lines never come from
/// `iptables-save`, break `iptables-restore -c` (counters), or mean
/// something else than they seem (a policy on a user chain is ignored, an
/// unterminated quote silently runs to the end of the line, `-L` prints a
/// listing at boot, a NUL hides the rest of a line, a chain name that is
/// not UTF-8 cannot be shown or compared reliably).
const STRICTER: &[&str] = &[
    "bad rule counters",
    "negative counters",
    "counters overflow u64",
    "bad chain counters",
    "policy on a user chain",
    "unterminated quote",
    "words after the table name",
    "words after the counters",
    "NUL byte in a comment",
    "list command",
    "chain name not UTF-8",
];

fn tools_available() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let tools = [
        "iptables-nft",
        "iptables-nft-save",
        "iptables-nft-restore",
        "unshare",
    ]
    .iter()
    .all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if root && tools {
        return true;
    }
    let why = format!(
        "comparison with iptables-nft needs root (have: {root}) and iptables-nft, \
         iptables-nft-save, iptables-nft-restore, unshare (have: {tools}); \
         install with `apt-get install iptables util-linux`"
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}");
    }
    eprintln!("!!! NOT RUN: {why}");
    false
}

/// Runs a shell script in a new network namespace.
fn in_netns(script: &str, stdin: &[u8]) -> Output {
    let mut child = Command::new("unshare")
        .args(["-n", "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn unshare");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait for unshare")
}

/// Single-quotes a word for `sh`.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn family_tools(family: Family) -> (&'static str, &'static str) {
    match family {
        Family::V4 => ("iptables-nft", "iptables-nft"),
        Family::V6 => ("ip6tables-nft", "ip6tables-nft"),
    }
}

/// The iptables command line (without the program) creating `rule`.
fn iptables_args(rule: &AutoRule) -> Vec<String> {
    let mut args = vec![
        "-A".to_owned(),
        CHAIN.to_owned(),
        "-s".into(),
        rule.source.clone(),
    ];
    if let Some(c) = &rule.comment {
        args.extend(["-m".into(), "comment".into(), "--comment".into(), c.clone()]);
    }
    match &rule.target {
        AutoTarget::Drop => args.extend(["-j".into(), "DROP".into()]),
        AutoTarget::Reject => args.extend(["-j".into(), "REJECT".into()]),
        AutoTarget::Log { prefix } => {
            args.extend(["-j".into(), "LOG".into()]);
            if !prefix.is_empty() {
                args.extend(["--log-prefix".into(), prefix.clone()]);
            }
        }
    }
    args
}

fn sample_rules(family: Family) -> Vec<AutoRule> {
    let sources: &[&str] = match family {
        Family::V4 => &[
            "192.0.2.9/32",
            "10.1.2.3/8",
            "198.51.100.7",
            "203.0.113.0/24",
        ],
        Family::V6 => &[
            "2001:db8::/48",
            "2001:db8:0:0:1:0:0:1",
            "::1.2.3.4",
            "::ffff:1.2.3.4",
            "2001:0:0:1::1/127",
            "fe80::1:2/64",
        ],
    };
    let comments = [
        Some("ssh brute force"),
        Some("expires 2030-01-01T00:00:00Z"),
        Some("plain_word-1"),
        Some(r#"quote " backslash \ apostrophe ' end"#),
        Some(""),
        Some("tab\tand é"),
        None,
    ];
    let targets = [
        AutoTarget::Drop,
        AutoTarget::Reject,
        AutoTarget::Log {
            prefix: "autoblock: ".into(),
        },
        AutoTarget::Log {
            prefix: "AUTO-BLOCK".into(),
        },
        AutoTarget::Log {
            prefix: r#"a"b\c'"#.into(),
        },
    ];
    let mut rules = Vec::new();
    for (i, comment) in comments.iter().enumerate() {
        for (j, target) in targets.iter().enumerate() {
            rules.push(AutoRule {
                source: sources[(i + j) % sources.len()].to_owned(),
                comment: comment.map(str::to_owned),
                target: target.clone(),
            });
        }
    }
    rules.push(AutoRule {
        source: sources[0].to_owned(),
        comment: Some("c".repeat(255)),
        target: AutoTarget::Log {
            prefix: "p".repeat(29),
        },
    });
    rules
}

#[test]
fn render_rule_matches_iptables_nft_save() {
    if !tools_available() {
        return;
    }
    for family in [Family::V4, Family::V6] {
        let (ipt, _) = family_tools(family);
        let rules = sample_rules(family);
        let mut script = format!("set -e\n{ipt} -N {CHAIN}\n");
        for rule in &rules {
            let args: Vec<String> = iptables_args(rule).iter().map(|a| sh_quote(a)).collect();
            script.push_str(&format!("{ipt} {}\n", args.join(" ")));
        }
        script.push_str(&format!("{ipt}-save\n"));
        let out = in_netns(&script, b"");
        assert!(
            out.status.success(),
            "{family}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let saved = String::from_utf8(out.stdout).expect("UTF-8 output");
        let got: Vec<&str> = saved
            .lines()
            .filter(|l| l.starts_with(&format!("-A {CHAIN} ")))
            .collect();
        let want: Vec<String> = rules
            .iter()
            .map(|r| render_rule(CHAIN, family, r).expect("renderable"))
            .collect();
        assert_eq!(got, want, "{family}");
        // And the saved file parses and reads back as the canonical rules.
        let file: RulesetFile = saved.parse().expect("iptables-save output parses");
        let canonical: Vec<AutoRule> = rules
            .iter()
            .map(|r| r.canonical(family).expect("canonical"))
            .collect();
        assert_eq!(file.auto_rules(CHAIN, family).expect("ours"), canonical);
    }
}

/// Restores `bytes` with the family's `iptables-nft-restore` in a new
/// namespace, then prints `iptables-nft-save`.
fn restore(family: Family, bytes: &[u8]) -> Output {
    let (ipt, _) = family_tools(family);
    in_netns(&format!("{ipt}-restore && {ipt}-save"), bytes)
}

fn fixture_family(name: &str) -> Family {
    if name.contains("v6") {
        Family::V6
    } else {
        Family::V4
    }
}

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("tests/data")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rules"))
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).expect("fixture");
            (n, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn fixtures_restore_with_iptables_nft_restore() {
    if !tools_available() {
        return;
    }
    for (name, bytes) in fixtures() {
        let file = RulesetFile::parse(&bytes).expect("fixture parses");
        let out = restore(fixture_family(&name), &bytes);
        if file.crlf_line().is_some() {
            assert!(!out.status.success(), "{name}: CR LF file restored");
        } else {
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn malformed_inputs_are_refused_by_iptables_nft_restore_too() {
    if !tools_available() {
        return;
    }
    let mut wrong = Vec::new();
    for case in common::malformed_inputs() {
        let out = restore(Family::V4, &case.input);
        if out.status.success() != STRICTER.contains(&case.name) {
            wrong.push(format!(
                "{}: iptables-nft-restore {} it ({})",
                case.name,
                if out.status.success() {
                    "accepts"
                } else {
                    "refuses"
                },
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn mirrored_files_restore_and_save_back_identically() {
    if !tools_available() {
        return;
    }
    for (name, bytes) in fixtures() {
        let mut file = RulesetFile::parse(&bytes).expect("fixture parses");
        if file.crlf_line().is_some() {
            continue;
        }
        let family = fixture_family(&name);
        let rules: Vec<AutoRule> = sample_rules(family).into_iter().take(12).collect();
        file.set_auto_chain(CHAIN, family, &rules).expect("set");
        let out = restore(family, &file.to_bytes());
        assert!(
            out.status.success(),
            "{name}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            file
        );
        let saved = String::from_utf8(out.stdout).expect("UTF-8");
        let saved_file: RulesetFile = saved.parse().expect("save output parses");
        // The kernel holds exactly our rules, printed as we print them.
        let canonical: Vec<AutoRule> = rules
            .iter()
            .map(|r| r.canonical(family).expect("canonical"))
            .collect();
        assert_eq!(
            saved_file.auto_rules(CHAIN, family).expect("ours"),
            canonical,
            "{name}"
        );
        let ours: Vec<&str> = saved
            .lines()
            .filter(|l| l.starts_with(&format!("-A {CHAIN} ")))
            .collect();
        let mine = file.to_string();
        let written: Vec<&str> = mine
            .lines()
            .filter(|l| l.starts_with(&format!("-A {CHAIN} ")))
            .collect();
        assert_eq!(ours, written, "{name}");
        // The jump is the first INPUT rule of the last filter table.
        let filter = saved.rsplit("*filter").next().expect("filter section");
        let first_input = filter
            .lines()
            .find(|l| l.starts_with("-A INPUT "))
            .expect("an INPUT rule");
        assert_eq!(first_input, format!("-A INPUT -j {CHAIN}"), "{name}");
    }
}
