//! Blocks the addresses and prefixes listed in a file (one per line, `#` comments), each for
//! an hour, with the set layout, and prints what the controller did with each.
//!
//! Needs root and changes the ruleset of the network namespace it runs in: try it in a
//! throwaway one, e.g. `unshare -n cargo run --example block_list -- FILE`. It does not parse
//! log files or decide what to block; see `autoblock-detect`.
//!
//! ```text
//! block_list FILE
//! ```

use std::time::Duration;

use autoblock::{Config, Controller, Entry, Layout, Net};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: block_list FILE (one address or prefix per line)")?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        // Errors name the file, the line and the text.
        let net = Net::parse(line, false).map_err(|e| format!("{path}:{}: {e}", i + 1))?;
        entries.push(
            Entry::new(net)
                .with_comment(format!("{path}:{}", i + 1))
                .with_timeout(Duration::from_secs(3600)),
        );
    }
    let mut ctl = Controller::open(Config::default().layout(Layout::Set))?;
    // Refuses the whole list, naming the entry, if any of it is allowlisted.
    ctl.validate(&entries)?;
    let report = ctl.block(&entries)?;
    println!(
        "{} blocked, {} updated, {} already blocked",
        report.changed.len(),
        report.updated.len(),
        report.unchanged.len()
    );
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}
