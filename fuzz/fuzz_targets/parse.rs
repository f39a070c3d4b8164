//! Fuzz target: parse arbitrary bytes as an iptables-restore file. The
//! parser must never panic, and whatever it accepts must print back
//! exactly as the input and parse again to the same model.
//!
//! It does not check the chain edit; that is the `edit` target.

#![no_main]

use autoblock_sysconfig::RulesetFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = RulesetFile::parse(data) {
        let printed = file.to_bytes();
        assert_eq!(printed, data, "printing changed the input");
        let again = RulesetFile::parse(&printed).expect("printed file parses");
        assert_eq!(again, file, "reparse differs");
    }
});
