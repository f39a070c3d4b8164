//! Fuzz target: on every file the parser accepts, writing autoblock's chain
//! must give a file that parses and reads back as the rules, and removing
//! the chain again must give a file that parses. The bytes of other lines must stay.
//!
//! Parsing alone is the `parse` target.

#![no_main]

use autoblock_sysconfig::{AutoRule, AutoTarget, Family, RulesetFile};
use libfuzzer_sys::fuzz_target;

const CHAIN: &str = "INPUT-AUTO";

fn rules() -> Vec<AutoRule> {
    vec![
        AutoRule {
            source: "192.0.2.9/32".into(),
            comment: Some("expires 2030-01-01T00:00:00Z".into()),
            target: AutoTarget::Drop,
        },
        AutoRule {
            source: "198.51.100.0/24".into(),
            comment: None,
            target: AutoTarget::Log {
                prefix: "autoblock: ".into(),
            },
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let Ok(file) = RulesetFile::parse(data) else {
        return;
    };
    // A chain of autoblock's name with foreign rules is refused by the
    // mirror before any edit; skip such inputs here too.
    if file.auto_rules(CHAIN, Family::V4).is_err() {
        return;
    }
    let mut edited = file.clone();
    edited
        .set_auto_chain(CHAIN, Family::V4, &rules())
        .expect("valid rules");
    let bytes = edited.to_bytes();
    let reparsed = RulesetFile::parse(&bytes).expect("edited file parses");
    assert_eq!(reparsed.auto_rules(CHAIN, Family::V4).expect("ours"), rules());

    // The other lines, as bytes with their line endings: unchanged and in
    // order, except that the last one may have gained a line ending.
    let others = |f: &RulesetFile| -> Vec<u8> {
        f.lines()
            .iter()
            .filter(|l| !l.text().windows(CHAIN.len()).any(|w| w == CHAIN.as_bytes()))
            .flat_map(|l| [l.text(), l.ending().as_bytes()].concat())
            .collect()
    };
    let before = others(&file);
    let after = others(&reparsed);
    assert!(after.starts_with(&before), "other lines changed");

    edited.remove_auto_chain(CHAIN);
    RulesetFile::parse(&edited.to_bytes()).expect("file without the chain parses");
});
