//! Prints what autoblock blocks and how many packets its rules dropped: per entry for the
//! chain layout (every entry has its own rule and counters), per set for the set layout (one
//! rule, hence one counter, per set).
//!
//! Needs root (reading the ruleset is privileged) and only reads. It does not change
//! anything, nor reset counters.
//!
//! ```text
//! counters [--layout chain|set]
//! ```

use autoblock::{Config, Controller, Layout};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let layout = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] | ["--layout", "set"] => Layout::Set,
        ["--layout", "chain"] => Layout::Chain,
        _ => return Err("usage: counters [--layout chain|set]".into()),
    };
    let mut ctl = Controller::open(Config::default().layout(layout))?;
    for fam in ctl.status()? {
        println!(
            "{:?}: {} entries, {} packets / {} bytes dropped",
            fam.family, fam.entries, fam.packets, fam.bytes
        );
        for set in &fam.sets {
            println!(
                "  set {:<10} {:>8} elements  {:>10} packets  {:>12} bytes",
                set.name, set.elements, set.packets, set.bytes
            );
        }
    }
    if layout == Layout::Chain {
        for e in ctl.list()? {
            println!(
                "  {:<20} {:>10} packets  {:>12} bytes  {}",
                e.net.to_string(),
                e.packets,
                e.bytes,
                e.comment.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}
