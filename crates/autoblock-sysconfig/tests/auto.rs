//! Editing autoblock's chain in a file: exact expected output for the
//! typical shapes, reuse of existing lines, read-back, removal, and the
//! values that must be refused.

use autoblock_sysconfig::{render_rule, AutoRule, AutoTarget, Family, ModelError, RulesetFile};

const CHAIN: &str = "INPUT-AUTO";

fn data(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn drop_rule(source: &str, comment: Option<&str>) -> AutoRule {
    AutoRule {
        source: source.into(),
        comment: comment.map(Into::into),
        target: AutoTarget::Drop,
    }
}

fn set(text: &str, family: Family, rules: &[AutoRule]) -> String {
    let mut file: RulesetFile = text.parse().unwrap_or_else(|e| panic!("{e}"));
    file.set_auto_chain(CHAIN, family, rules).unwrap();
    let out = file.to_string();
    // The result always parses and reads back as the rules.
    let again: RulesetFile = out.parse().unwrap_or_else(|e| panic!("{e}\n{out}"));
    let canonical: Vec<AutoRule> = rules.iter().map(|r| r.canonical(family).unwrap()).collect();
    assert_eq!(again.auto_rules(CHAIN, family).unwrap(), canonical);
    out
}

#[test]
fn render_matches_iptables_save_examples() {
    let cases = [
        (
            Family::V4,
            drop_rule("192.0.2.9/32", Some("ssh brute force")),
            r#"-A INPUT-AUTO -s 192.0.2.9/32 -m comment --comment "ssh brute force" -j DROP"#,
        ),
        (
            Family::V4,
            AutoRule {
                source: "10.0.0.0/8".into(),
                comment: None,
                target: AutoTarget::Log {
                    prefix: "autoblock: ".into(),
                },
            },
            r#"-A INPUT-AUTO -s 10.0.0.0/8 -j LOG --log-prefix "autoblock: ""#,
        ),
        (
            Family::V6,
            AutoRule {
                source: "2001:db8::/48".into(),
                comment: None,
                target: AutoTarget::Reject,
            },
            "-A INPUT-AUTO -s 2001:db8::/48 -j REJECT --reject-with icmp6-port-unreachable",
        ),
        (
            Family::V4,
            AutoRule {
                source: "198.51.100.7".into(),
                comment: Some("plain_word-1".into()),
                target: AutoTarget::Reject,
            },
            "-A INPUT-AUTO -s 198.51.100.7/32 -m comment --comment plain_word-1 -j REJECT --reject-with icmp-port-unreachable",
        ),
        (
            Family::V4,
            AutoRule {
                source: "0.0.0.0/0".into(),
                comment: Some(String::new()),
                target: AutoTarget::Log {
                    prefix: String::new(),
                },
            },
            r#"-A INPUT-AUTO -m comment --comment "" -j LOG"#,
        ),
    ];
    for (family, rule, want) in cases {
        assert_eq!(render_rule(CHAIN, family, &rule).unwrap(), want);
    }
}

#[test]
fn rhel_default_file_gets_declaration_jump_and_rules() {
    let original = data("rhel-default-v4.rules");
    let rules = [
        drop_rule("192.0.2.9/32", Some("expires 2030-01-01T00:00:00Z")),
        drop_rule("198.51.100.0/24", None),
    ];
    let out = set(&original, Family::V4, &rules);
    let want = original
        .replace(
            ":OUTPUT ACCEPT [0:0]\n",
            ":OUTPUT ACCEPT [0:0]\n:INPUT-AUTO - [0:0]\n-A INPUT -j INPUT-AUTO\n",
        )
        .replace(
            "COMMIT\n",
            "-A INPUT-AUTO -s 192.0.2.9/32 -m comment --comment \"expires 2030-01-01T00:00:00Z\" -j DROP\n\
             -A INPUT-AUTO -s 198.51.100.0/24 -j DROP\nCOMMIT\n",
        );
    assert_eq!(out, want);

    // Same rules again: nothing changes.
    assert_eq!(set(&out, Family::V4, &rules), out);
    // All rules gone: declaration and jump stay, the rules go.
    let emptied = set(&out, Family::V4, &[]);
    assert_eq!(
        emptied,
        original.replace(
            ":OUTPUT ACCEPT [0:0]\n",
            ":OUTPUT ACCEPT [0:0]\n:INPUT-AUTO - [0:0]\n-A INPUT -j INPUT-AUTO\n",
        )
    );
    // Removing the chain restores the original byte for byte.
    let mut file: RulesetFile = out.parse().unwrap();
    file.remove_auto_chain(CHAIN);
    assert_eq!(file.to_string(), original);
}

#[test]
fn missing_file_content_becomes_minimal_filter_section() {
    let out = set("", Family::V6, &[drop_rule("2001:db8::1", None)]);
    assert_eq!(
        out,
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :INPUT-AUTO - [0:0]\n-A INPUT -j INPUT-AUTO\n\
         -A INPUT-AUTO -s 2001:db8::1/128 -j DROP\nCOMMIT\n"
    );
    // No rules: still a valid file with the chain and the jump.
    assert_eq!(
        set("", Family::V4, &[]),
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :INPUT-AUTO - [0:0]\n-A INPUT -j INPUT-AUTO\nCOMMIT\n"
    );
}

#[test]
fn file_without_filter_and_final_newline_gets_one_appended() {
    let text = "# only nat here\n*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT";
    let out = set(text, Family::V4, &[drop_rule("192.0.2.1", None)]);
    assert_eq!(
        out,
        format!(
            "{text}\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             :INPUT-AUTO - [0:0]\n-A INPUT -j INPUT-AUTO\n-A INPUT-AUTO -s 192.0.2.1/32 -j DROP\nCOMMIT\n"
        )
    );
}

#[test]
fn last_line_ending_in_cr_reads_back_the_same() {
    // Found by the `edit` fuzz target: "# x\r" without a newline becomes a
    // CR LF comment line once a section is appended after it.
    let text = "# x\r";
    let out = set(text, Family::V4, &[]);
    assert!(out.starts_with("# x\r\n*filter\n"), "{out:?}");
    let file: RulesetFile = out.parse().unwrap();
    assert_eq!(file.lines()[0].text(), b"# x");
    assert_eq!(file.crlf_line(), None, "a CR LF comment restores fine");
}

#[test]
fn crlf_file_gets_crlf_lines() {
    let original = data("crlf.rules");
    let out = set(&original, Family::V4, &[drop_rule("192.0.2.1", None)]);
    assert!(out.contains(":INPUT-AUTO - [0:0]\r\n-A INPUT -j INPUT-AUTO\r\n-A INPUT -i lo"));
    assert!(out.contains("-A INPUT-AUTO -s 192.0.2.1/32 -j DROP\r\nCOMMIT\r\n"));
    assert!(!out.replace("\r\n", "").contains('\n'), "no bare LF");
}

#[test]
fn jump_is_moved_to_the_front_and_duplicates_go() {
    let text = "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                :INPUT-AUTO - [0:0]\n-A INPUT -i lo -j ACCEPT\n[7:420] -A INPUT -j INPUT-AUTO\n\
                -A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -j INPUT-AUTO\nCOMMIT\n";
    let out = set(text, Family::V4, &[]);
    assert_eq!(
        out,
        "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :INPUT-AUTO - [0:0]\n[7:420] -A INPUT -j INPUT-AUTO\n-A INPUT -i lo -j ACCEPT\n\
         -A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"
    );
}

#[test]
fn jump_follows_insert_lines_of_hand_written_files() {
    // `-I INPUT` puts a rule at the head of INPUT when restored, so an
    // `-A` jump would end up behind it; the jump becomes the last `-I`.
    let text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n\
                -I INPUT -s 203.0.113.7 -j DROP\n-A INPUT -j REJECT\nCOMMIT\n";
    let out = set(text, Family::V4, &[drop_rule("192.0.2.5", None)]);
    assert_eq!(
        out,
        "*filter\n:INPUT ACCEPT [0:0]\n:INPUT-AUTO - [0:0]\n-A INPUT -i lo -j ACCEPT\n\
         -I INPUT -s 203.0.113.7 -j DROP\n-I INPUT -j INPUT-AUTO\n-A INPUT -j REJECT\n\
         -A INPUT-AUTO -s 192.0.2.5/32 -j DROP\nCOMMIT\n"
    );
    // Stable on the next write, and back to the original on removal.
    assert_eq!(set(&out, Family::V4, &[drop_rule("192.0.2.5", None)]), out);
    let mut file: RulesetFile = out.parse().unwrap();
    file.remove_auto_chain(CHAIN);
    assert_eq!(file.to_string(), text);
}

#[test]
fn late_declaration_moves_before_the_jump() {
    // The declaration must precede `-A INPUT -j INPUT-AUTO`, or
    // iptables-restore fails with "Chain 'INPUT-AUTO' does not exist".
    let text =
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n:INPUT-AUTO - [0:0]\nCOMMIT\n";
    let out = set(text, Family::V4, &[drop_rule("192.0.2.3", None)]);
    assert_eq!(
        out,
        "*filter\n:INPUT ACCEPT [0:0]\n:INPUT-AUTO - [0:0]\n-A INPUT -j INPUT-AUTO\n\
         -A INPUT -i lo -j ACCEPT\n-A INPUT-AUTO -s 192.0.2.3/32 -j DROP\nCOMMIT\n"
    );
}

#[test]
fn unchanged_rules_keep_their_lines_and_counters() {
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:INPUT-AUTO - [0:0]\n-A INPUT -j INPUT-AUTO\n\
                [3:180] -A INPUT-AUTO -s 192.0.2.1/32 -j DROP\n\
                [5:300] -A INPUT-AUTO -s 192.0.2.2/32 -j DROP\n\
                -A FORWARD -j ACCEPT\n\
                [9:540] -A INPUT-AUTO -s 192.0.2.3/32 -j DROP\nCOMMIT\n";
    let out = set(
        text,
        Family::V4,
        &[
            drop_rule("192.0.2.3", None),
            drop_rule("192.0.2.4", None),
            drop_rule("192.0.2.1", None),
        ],
    );
    // New rules go where the chain's first rule was; kept rules keep
    // counters; the foreign FORWARD line stays where it was relative to
    // the other lines.
    assert_eq!(
        out,
        "*filter\n:INPUT ACCEPT [0:0]\n:INPUT-AUTO - [0:0]\n-A INPUT -j INPUT-AUTO\n\
         [9:540] -A INPUT-AUTO -s 192.0.2.3/32 -j DROP\n\
         -A INPUT-AUTO -s 192.0.2.4/32 -j DROP\n\
         [3:180] -A INPUT-AUTO -s 192.0.2.1/32 -j DROP\n\
         -A FORWARD -j ACCEPT\nCOMMIT\n"
    );
}

#[test]
fn only_the_last_filter_section_is_edited() {
    let original = data("two-filter-sections.rules");
    let out = set(&original, Family::V4, &[drop_rule("192.0.2.1", None)]);
    let first = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n";
    assert!(out.starts_with(first));
    assert_eq!(out.matches("INPUT-AUTO").count(), 3);
    assert!(out[first.len()..].contains(":INPUT-AUTO - [0:0]\n-A INPUT -j INPUT-AUTO\n"));
}

#[test]
fn other_tables_and_user_chains_are_untouched_in_every_fixture() {
    for name in [
        "recorded-v4-counters.rules",
        "recorded-v4.rules",
        "custom-chains-db.rules",
        "handwritten.rules",
        "legacy-1.8.5.rules",
        "rhel-default-v6.rules",
        "no-trailing-newline.rules",
        "comments-only.rules",
    ] {
        let original = data(name);
        let family = if name.contains("v6") {
            Family::V6
        } else {
            Family::V4
        };
        let source = if family == Family::V6 {
            "2001:db8::7"
        } else {
            "192.0.2.7"
        };
        let out = set(&original, family, &[drop_rule(source, Some("t"))]);
        // Every original line is still there, in order.
        let mut kept = out.lines().filter(|l| !l.contains(CHAIN));
        for line in original.lines() {
            assert_eq!(kept.next(), Some(line), "{name}");
        }
        let mut file: RulesetFile = out.parse().unwrap();
        file.remove_auto_chain(CHAIN);
        let back = file.to_string();
        if original.contains("*filter") {
            assert_eq!(back, original, "{name}");
        } else {
            // The `*filter` section created for the chain stays.
            assert_eq!(
                back,
                format!("{original}*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"),
                "{name}"
            );
        }
    }
}

#[test]
fn rules_in_the_recorded_v6_file_read_back() {
    let file: RulesetFile = data("recorded-v6-counters.rules").parse().unwrap();
    assert_eq!(
        file.auto_rules(CHAIN, Family::V6).unwrap(),
        [
            drop_rule("2001:db8::/48", Some("expires 2030-01-01T00:00:00Z")),
            AutoRule {
                source: "2001:db8:1::9/128".into(),
                comment: None,
                target: AutoTarget::Reject
            },
            AutoRule {
                source: "2001:db8:2::/64".into(),
                comment: None,
                target: AutoTarget::Log {
                    prefix: "autoblock: ".into()
                }
            },
        ]
    );
}

#[test]
fn foreign_rule_in_the_chain_is_reported_with_its_line() {
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:INPUT-AUTO - [0:0]\n-A INPUT -j INPUT-AUTO\n\
                -A INPUT-AUTO -s 192.0.2.1/32 -j DROP\n-A INPUT-AUTO -p tcp -j ACCEPT\nCOMMIT\n";
    let file: RulesetFile = text.parse().unwrap();
    match file.auto_rules(CHAIN, Family::V4) {
        Err(ModelError::ForeignRule { line, chain, text }) => {
            assert_eq!((line, chain.as_str()), (6, CHAIN));
            assert_eq!(text, "-A INPUT-AUTO -p tcp -j ACCEPT");
        }
        other => panic!("{other:?}"),
    }
    // A reject type of the other family is not ours either.
    let text = "*filter\n:INPUT-AUTO - [0:0]\n-A INPUT-AUTO -j REJECT --reject-with icmp6-port-unreachable\nCOMMIT\n";
    let file: RulesetFile = text.parse().unwrap();
    assert!(file.auto_rules(CHAIN, Family::V4).is_err());
    assert!(file.auto_rules(CHAIN, Family::V6).is_ok());
}

#[test]
fn removal_keeps_a_declaration_still_referenced() {
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:INPUT-AUTO - [0:0]\n-A INPUT -j INPUT-AUTO\n\
                -A FORWARD -j INPUT-AUTO\n-A INPUT-AUTO -s 192.0.2.1/32 -j DROP\nCOMMIT\n";
    let mut file: RulesetFile = text.parse().unwrap();
    file.remove_auto_chain(CHAIN);
    assert_eq!(
        file.to_string(),
        "*filter\n:INPUT ACCEPT [0:0]\n:INPUT-AUTO - [0:0]\n-A FORWARD -j INPUT-AUTO\nCOMMIT\n"
    );
    // And a file without the chain is left alone.
    let text = data("rhel-default-v4.rules");
    let mut file: RulesetFile = text.parse().unwrap();
    file.remove_auto_chain(CHAIN);
    assert_eq!(file.to_string(), text);
}

#[test]
fn values_that_cannot_be_stored_are_refused() {
    let bad = [
        drop_rule("192.0.2.1/33", None),
        drop_rule("2001:db8::1", None),
        drop_rule("192.0.2.1", Some(&"c".repeat(256))),
        drop_rule("192.0.2.1", Some("two\nlines")),
        drop_rule("192.0.2.1", Some("nul\0")),
        AutoRule {
            source: "192.0.2.1".into(),
            comment: None,
            target: AutoTarget::Log {
                prefix: "p".repeat(30),
            },
        },
        AutoRule {
            source: "192.0.2.1".into(),
            comment: None,
            target: AutoTarget::Log {
                prefix: "cr\r".into(),
            },
        },
    ];
    let original = data("rhel-default-v4.rules");
    for rule in bad {
        let mut file: RulesetFile = original.parse().unwrap();
        let good = drop_rule("192.0.2.2", None);
        assert!(
            file.set_auto_chain(CHAIN, Family::V4, &[good, rule.clone()])
                .is_err(),
            "{rule:?}"
        );
        // Nothing was changed by the failed call.
        assert_eq!(file.to_string(), original);
    }
    // Exactly at the limits is fine.
    let ok = [
        drop_rule("192.0.2.1", Some(&"c".repeat(255))),
        AutoRule {
            source: "192.0.2.1".into(),
            comment: None,
            target: AutoTarget::Log {
                prefix: "p".repeat(29),
            },
        },
    ];
    set(&original, Family::V4, &ok);

    for chain in [
        "",
        "INPUT",
        "PREROUTING",
        "DROP",
        "-X",
        "a b",
        &"C".repeat(29),
    ] {
        let mut file = RulesetFile::empty();
        assert!(
            matches!(
                file.set_auto_chain(chain, Family::V4, &[]),
                Err(ModelError::InvalidChainName { .. })
            ),
            "{chain:?}"
        );
        assert!(file.is_empty());
    }
}
