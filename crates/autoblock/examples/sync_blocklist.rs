//! Makes the blocklist exactly the networks of a file (one per line, `#` comments): what is
//! missing is blocked, what is not listed any more is unblocked, in atomic transactions.
//! Run it again after editing the file; a second run with the same file changes nothing.
//!
//! Needs root and changes the ruleset of the network namespace it runs in: try it in a
//! throwaway one, e.g. `unshare -n cargo run --example sync_blocklist -- FILE`. It does not
//! fetch lists from anywhere.
//!
//! ```text
//! sync_blocklist FILE [--layout chain|set]
//! ```

use autoblock::{Config, Controller, Entry, Layout, Net};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: sync_blocklist FILE [--layout chain|set]")?;
    let layout = match (args.next().as_deref(), args.next().as_deref()) {
        (None, _) => Layout::Set,
        (Some("--layout"), Some("set")) => Layout::Set,
        (Some("--layout"), Some("chain")) => Layout::Chain,
        _ => return Err("usage: sync_blocklist FILE [--layout chain|set]".into()),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut desired = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if !line.is_empty() {
            let net = Net::parse(line, false).map_err(|e| format!("{path}:{}: {e}", i + 1))?;
            desired.push(Entry::new(net).with_comment("blocklist"));
        }
    }
    let mut ctl = Controller::open(Config::default().layout(layout))?;
    let report = ctl.sync(&desired)?;
    println!(
        "added {}, updated {}, removed {}, unchanged {}",
        report.changed.len(),
        report.updated.len(),
        report.removed.len(),
        report.unchanged.len()
    );
    for n in &report.removed {
        println!("  unblocked {n}");
    }
    Ok(())
}
