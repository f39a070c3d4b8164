//! Property tests over generated restore files:
//!
//! - parse(text) prints back as text, and parse(print(x)) == x;
//! - mutated files never panic the parser, and whatever parses prints back;
//! - set_auto_chain keeps every other line in order, reads back as the
//!   canonical rules, is independent of the previous rules, and
//!   remove_auto_chain undoes it.

use autoblock_sysconfig::{save_string, AutoRule, AutoTarget, Family, RulesetFile};
use proptest::prelude::*;

const CHAIN: &str = "INPUT-AUTO";

const TABLES: &[(&str, &[&str])] = &[
    ("filter", &["INPUT", "FORWARD", "OUTPUT"]),
    ("nat", &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]),
    (
        "mangle",
        &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
    ),
    ("raw", &["PREROUTING", "OUTPUT"]),
    ("security", &["INPUT", "FORWARD", "OUTPUT"]),
];

const USER_CHAINS: &[&str] = &["WEB", "SSH-IN", "LOG_DROP", "a", "x-y_z", "DOCKER-USER"];

const BARE_WORDS: &[&str] = &[
    "-p",
    "tcp",
    "-m",
    "tcp",
    "--dport",
    "22",
    "-s",
    "10.0.0.0/8",
    "-i",
    "lo",
    "!",
    "-d",
    "192.0.2.1/32",
    "--state",
    "NEW,ESTABLISHED",
    "-j",
    "ACCEPT",
    "DROP",
    "LOG",
];

#[derive(Debug, Clone)]
enum Arg {
    Bare(usize),
    Quoted(String),
}

#[derive(Debug, Clone)]
struct RuleSpec {
    chain: usize,
    insert: bool,
    counters: Option<(u64, u64)>,
    blank_after_counters: bool,
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
enum Item {
    Rule(RuleSpec),
    Comment(String),
    Blank,
}

/// A built-in chain: declared?, policy DROP (else ACCEPT)?, counters.
type Builtin = (bool, bool, Option<(u64, u64)>);

#[derive(Debug, Clone)]
struct Section {
    table: usize,
    builtins: Vec<Builtin>,
    users: Vec<usize>,
    items: Vec<Item>,
}

#[derive(Debug, Clone)]
enum Top {
    Comment(String),
    Blank,
    Section(Section),
}

#[derive(Debug, Clone)]
struct FileSpec {
    tops: Vec<Top>,
    crlf: bool,
    final_newline: bool,
    wide_spacing: bool,
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~\t]{0,24}",
        "\\PC{0,8}",
        Just(String::new()),
        Just(r#"a "quoted" \ word's"#.to_owned()),
    ]
}

fn counters() -> impl Strategy<Value = Option<(u64, u64)>> {
    prop::option::of((any::<u64>(), any::<u64>()))
}

fn arg() -> impl Strategy<Value = Arg> {
    prop_oneof![
        3 => (0..BARE_WORDS.len()).prop_map(Arg::Bare),
        1 => text().prop_map(Arg::Quoted),
    ]
}

fn section() -> impl Strategy<Value = Section> {
    (0..TABLES.len()).prop_flat_map(|table| {
        let n = TABLES[table].1.len();
        (
            Just(table),
            prop::collection::vec((any::<bool>(), any::<bool>(), counters()), n),
            prop::collection::btree_set(0..USER_CHAINS.len(), 0..3),
            prop::collection::vec(
                prop_oneof![
                    6 => (
                        0..n + 3,
                        prop::bool::weighted(0.1),
                        counters(),
                        any::<bool>(),
                        prop::collection::vec(arg(), 0..8)
                    )
                        .prop_map(|(chain, insert, counters, blank_after_counters, args)| {
                            Item::Rule(RuleSpec {
                                chain,
                                insert,
                                counters,
                                blank_after_counters,
                                args,
                            })
                        }),
                    1 => "[ -~]{0,30}".prop_map(Item::Comment),
                    1 => Just(Item::Blank),
                ],
                0..12,
            ),
        )
            .prop_map(|(table, builtins, users, items)| Section {
                table,
                builtins,
                users: users.into_iter().collect(),
                items,
            })
    })
}

fn file_spec() -> impl Strategy<Value = FileSpec> {
    (
        prop::collection::vec(
            prop_oneof![
                1 => "[ -~]{0,30}".prop_map(Top::Comment),
                1 => Just(Top::Blank),
                3 => section().prop_map(Top::Section),
            ],
            0..6,
        ),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(tops, crlf, final_newline, wide_spacing)| FileSpec {
            tops,
            crlf,
            final_newline,
            wide_spacing,
        })
}

fn render_counters(c: (u64, u64)) -> String {
    format!("[{}:{}]", c.0, c.1)
}

/// Writes the spec as a valid restore file.
fn render(spec: &FileSpec) -> String {
    let sep = if spec.wide_spacing { " \t " } else { " " };
    let mut lines: Vec<String> = Vec::new();
    for top in &spec.tops {
        match top {
            Top::Comment(c) => lines.push(format!("#{c}")),
            Top::Blank => lines.push(String::new()),
            Top::Section(s) => {
                let (table, builtins) = TABLES[s.table];
                lines.push(format!("*{table}"));
                for (name, (declared, drop, c)) in builtins.iter().zip(&s.builtins) {
                    if *declared {
                        let policy = if *drop { "DROP" } else { "ACCEPT" };
                        let c = c.map(render_counters).unwrap_or_default();
                        lines.push(
                            format!(":{name}{sep}{policy}{sep}{c}")
                                .trim_end()
                                .to_owned(),
                        );
                    }
                }
                for u in &s.users {
                    lines.push(format!(":{}{sep}-{sep}[0:0]", USER_CHAINS[*u]));
                }
                for item in &s.items {
                    match item {
                        Item::Comment(c) => lines.push(format!("#{c}")),
                        Item::Blank => lines.push(String::new()),
                        Item::Rule(r) => {
                            // Chains: built-ins first, then declared user chains.
                            let chains: Vec<&str> = builtins
                                .iter()
                                .copied()
                                .chain(s.users.iter().map(|u| USER_CHAINS[*u]))
                                .collect();
                            let chain = chains[r.chain % chains.len()];
                            let mut line = String::new();
                            if let Some(c) = r.counters {
                                line.push_str(&render_counters(c));
                                if r.blank_after_counters {
                                    line.push(' ');
                                }
                            }
                            line.push_str(if r.insert { "-I" } else { "-A" });
                            line.push_str(sep);
                            line.push_str(chain);
                            for a in &r.args {
                                line.push_str(sep);
                                match a {
                                    Arg::Bare(i) => line.push_str(BARE_WORDS[*i]),
                                    Arg::Quoted(t) => line.push_str(&save_string(t)),
                                }
                            }
                            lines.push(line);
                        }
                    }
                }
                lines.push("COMMIT".into());
            }
        }
    }
    let eol = if spec.crlf { "\r\n" } else { "\n" };
    let mut out = lines.join(eol);
    if spec.final_newline && !lines.is_empty() {
        out.push_str(eol);
    }
    out
}

fn auto_rule(family: Family) -> impl Strategy<Value = AutoRule> {
    let source = match family {
        Family::V4 => (any::<[u8; 4]>(), 0u8..=32)
            .prop_map(|(a, l)| format!("{}.{}.{}.{}/{l}", a[0], a[1], a[2], a[3]))
            .boxed(),
        Family::V6 => (any::<u128>(), 0u8..=128)
            .prop_map(|(a, l)| format!("{}/{l}", std::net::Ipv6Addr::from(a)))
            .boxed(),
    };
    let target = prop_oneof![
        Just(AutoTarget::Drop),
        Just(AutoTarget::Reject),
        "[ -~]{0,29}".prop_map(|prefix| AutoTarget::Log { prefix }),
    ];
    (source, prop::option::of("[ -~\t]{0,60}|\\PC{0,20}"), target).prop_map(
        |(source, comment, target)| AutoRule {
            source,
            comment,
            target,
        },
    )
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::V4), Just(Family::V6)]
}

fn family_and_rules() -> impl Strategy<Value = (Family, Vec<AutoRule>, Vec<AutoRule>)> {
    family().prop_flat_map(|f| {
        (
            Just(f),
            prop::collection::vec(auto_rule(f), 0..6),
            prop::collection::vec(auto_rule(f), 0..6),
        )
    })
}

fn not_ours(text: &str) -> Vec<&str> {
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.contains(CHAIN))
        .filter(|l| !l.is_empty())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_print_round_trip(spec in file_spec()) {
        let text = render(&spec);
        let file = RulesetFile::parse(text.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(file.to_bytes(), text.as_bytes());
        let again = RulesetFile::parse(&file.to_bytes()).unwrap();
        prop_assert_eq!(again, file);
    }

    #[test]
    fn mutated_files_never_panic(spec in file_spec(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6)) {
        let mut bytes = render(&spec).into_bytes();
        for (at, byte, op) in edits {
            let i = if bytes.is_empty() { 0 } else { at.index(bytes.len()) };
            match op {
                0 if !bytes.is_empty() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ if !bytes.is_empty() => { bytes.remove(i); }
                _ => bytes.push(byte),
            }
        }
        if let Ok(file) = RulesetFile::parse(&bytes) {
            prop_assert_eq!(file.to_bytes(), bytes);
        }
    }

    #[test]
    fn set_auto_chain_is_a_minimal_reversible_edit(
        spec in file_spec(),
        (family, first, second) in family_and_rules(),
    ) {
        let text = render(&spec);
        let original = RulesetFile::parse(text.as_bytes()).unwrap();

        let mut once = original.clone();
        once.set_auto_chain(CHAIN, family, &second).unwrap();
        let out = once.to_bytes();
        let out_text = String::from_utf8(out.clone()).unwrap();

        // Valid, reads back as the canonical rules.
        let reparsed = RulesetFile::parse(&out)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{out_text}")))?;
        let canonical: Vec<AutoRule> =
            second.iter().map(|r| r.canonical(family).unwrap()).collect();
        prop_assert_eq!(reparsed.auto_rules(CHAIN, family).unwrap(), canonical);

        // Every other non-empty line is kept, in order; at most one
        // `*filter` section with built-in chains was appended.
        let before = not_ours(&text);
        let after = not_ours(&out_text);
        let had_filter = original.table_names().contains(&"filter");
        if had_filter {
            prop_assert_eq!(&after, &before);
        } else {
            prop_assert_eq!(&after[..before.len()], &before[..]);
            prop_assert_eq!(
                &after[before.len()..],
                &["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", "COMMIT"][..]
            );
        }

        // The result does not depend on the rules written before.
        let mut twice = original.clone();
        twice.set_auto_chain(CHAIN, family, &first).unwrap();
        twice.set_auto_chain(CHAIN, family, &second).unwrap();
        prop_assert_eq!(twice.to_bytes(), out.clone());

        // Removing the chain gives the original back (plus the appended
        // section, and a final newline if one had to be added for it).
        let mut removed = once;
        removed.remove_auto_chain(CHAIN);
        if had_filter {
            prop_assert_eq!(removed.to_bytes(), text.as_bytes());
        } else {
            let removed_text = String::from_utf8(removed.to_bytes()).unwrap();
            prop_assert!(removed_text.starts_with(&text));
        }
    }
}
