//! `cargo xtask bench chain`: the chain layout against the tools it
//! replaces, side by side in one run.
//!
//! Three scenarios, each in its own fresh network namespace: load N (default
//! 100,000) `/32` DROP rules into `INPUT-AUTO` with (a) `autoblock block -f`,
//! (b) `iptables-nft-restore --noflush` of an equivalent file and (c) `nft
//! -f` of an equivalent ruleset; then remove single rules with (a)
//! `autoblock unblock ADDR` and (b) `iptables-nft -D INPUT-AUTO -s ADDR -j
//! DROP`. Every load is verified with `iptables-nft -S` (unmeasured) so a
//! fast failure can never pass for a fast load. Targets: autoblock load ≤
//! 0.75 × iptables-restore; single unblock ≤ 2 ms.
//!
//! It deliberately gives every tool the same starting point (the chain and
//! the INPUT jump exist before the measured load) and does not repeat loads:
//! one run of each, on a machine that may be busy, so read the ratios, not
//! the third digit.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{
    load_average, merge_rounds, row, show_ratio, verdict, Check, Scenario, Step, StepResult,
};
use crate::util::{build_autoblock, require_root, show_duration, show_kb, Flags};

/// How many single unblocks are measured per tool (different addresses).
const UNBLOCKS: usize = 5;
/// Target: autoblock's load time as a fraction of iptables-restore's.
const LOAD_TARGET: f64 = 0.75;
/// Target: one `autoblock unblock`.
const UNBLOCK_TARGET: Duration = Duration::from_millis(2);

/// Runs `cargo xtask bench chain [--count N] [--rounds R]`.
pub fn run(args: &[String]) -> Result<ExitCode> {
    let flags = Flags::parse(args, &[], &["--count", "--rounds"])?;
    let rounds: usize = match flags.value("--rounds") {
        Some(v) => v.parse().with_context(|| format!("--rounds {v}"))?,
        None => 1,
    };
    if !(1..=20).contains(&rounds) {
        bail!("--rounds must be between 1 and 20");
    }
    let count: usize = match flags.value("--count") {
        Some(v) => v.parse().with_context(|| format!("--count {v}"))?,
        None => 100_000,
    };
    if !(UNBLOCKS * 2..=1_000_000).contains(&count) {
        bail!("--count must be between {} and 1000000", UNBLOCKS * 2);
    }
    require_root("cargo xtask bench chain")?;
    let autoblock = build_autoblock(true)?;
    let autoblock = autoblock.to_string_lossy().into_owned();

    let dir = tempfile::Builder::new()
        .prefix("autoblock-bench-")
        .tempdir()
        .context("temporary directory")?;
    let addrs = addresses(count);
    let files = write_inputs(dir.path(), &addrs)?;
    let targets = unblock_targets(&addrs);

    println!(
        "bench chain: {count} /32 DROP rules in INPUT-AUTO, each tool in a fresh network namespace"
    );
    let load_before = load_average();
    let scenarios = scenarios(&autoblock, &files, count, &targets);
    // Rounds interleave the tools, so a burst of load elsewhere on the
    // machine hits all of them alike.
    let mut all = Vec::new();
    for round in 1..=rounds {
        if rounds > 1 {
            println!(" round {round}/{rounds}");
        }
        let mut results = Vec::new();
        for scenario in &scenarios {
            results.extend(scenario.run()?);
        }
        all.push(results);
    }
    let results = merge_rounds(&all);
    if rounds > 1 {
        println!("\n  medians of {rounds} rounds (peak RSS: the highest)");
    }
    let report = report(count, &results);
    println!("{report}");
    println!(
        "  load average before/after: {load_before} / {}  (2 cores; a busy machine slows every tool)",
        load_average()
    );
    let failed = results.iter().any(|r| r.measured.is_err());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// N distinct addresses: 10.0.0.1, 10.0.0.2, … (rules only; no traffic).
fn addresses(count: usize) -> Vec<Ipv4Addr> {
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    (1..=count)
        .map(|i| Ipv4Addr::from(base + u32::try_from(i).unwrap_or(u32::MAX)))
        .collect()
}

/// Addresses spread over the list (first, last, middle, quarters), so the
/// unblock measurements do not favour one end of the chain.
fn unblock_targets(addrs: &[Ipv4Addr]) -> Vec<String> {
    let n = addrs.len();
    [n / 2, 0, n - 1, n / 4, 3 * n / 4]
        .iter()
        .take(UNBLOCKS)
        .map(|&i| addrs[i].to_string())
        .collect()
}

/// The three input files, one per tool, all describing the same rules.
#[derive(Debug)]
struct Files {
    /// One address per line, for `autoblock block -f`.
    autoblock: String,
    /// An `iptables-restore` file appending to `INPUT-AUTO`.
    iptables: String,
    /// An `nft -f` ruleset adding to `ip filter INPUT-AUTO`.
    nft: String,
}

fn write_inputs(dir: &Path, addrs: &[Ipv4Addr]) -> Result<Files> {
    let mut plain = String::new();
    let mut restore = String::from("*filter\n");
    let mut nft = String::from("table ip filter {\n  chain INPUT-AUTO {\n");
    for a in addrs {
        let _ = writeln!(plain, "{a}");
        let _ = writeln!(restore, "-A INPUT-AUTO -s {a}/32 -j DROP");
        // iptables-nft's encoding of `-s A -j DROP` carries a counter.
        let _ = writeln!(nft, "    ip saddr {a} counter drop");
    }
    restore.push_str("COMMIT\n");
    nft.push_str("  }\n}\n");
    let write = |name: &str, text: &str| -> Result<String> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path.to_string_lossy().into_owned())
    };
    Ok(Files {
        autoblock: write("addresses.txt", &plain)?,
        iptables: write("rules.iptables", &restore)?,
        nft: write("rules.nft", &nft)?,
    })
}

fn scenarios(autoblock: &str, files: &Files, count: usize, targets: &[String]) -> Vec<Scenario> {
    let rules = |n: usize| Check::iptables_rules("INPUT-AUTO", n);
    let structure = || {
        vec![
            Step::new("setup chain", &["iptables-nft", "-N", "INPUT-AUTO"]),
            Step::new(
                "setup jump",
                &["iptables-nft", "-I", "INPUT", "1", "-j", "INPUT-AUTO"],
            ),
        ]
    };

    let mut a = vec![
        Step::new("autoblock init", &[autoblock, "--no-mirror", "init"]).checking(rules(0)),
        Step::new(
            "load autoblock",
            &[autoblock, "--no-mirror", "block", "-f", &files.autoblock],
        )
        .checking(rules(count)),
    ];
    for (i, t) in targets.iter().enumerate() {
        a.push(
            Step::new(
                format!("unblock autoblock {i}"),
                &[autoblock, "--no-mirror", "unblock", t],
            )
            .checking(rules(count - i - 1)),
        );
    }

    let mut b = structure();
    b.push(
        Step::new(
            "load iptables-restore",
            &["iptables-nft-restore", "--noflush", &files.iptables],
        )
        .checking(rules(count)),
    );
    for (i, t) in targets.iter().enumerate() {
        b.push(
            Step::new(
                format!("unblock iptables {i}"),
                &["iptables-nft", "-D", "INPUT-AUTO", "-s", t, "-j", "DROP"],
            )
            .checking(rules(count - i - 1)),
        );
    }

    let mut c = structure();
    c.push(Step::new("load nft", &["nft", "-f", &files.nft]).checking(rules(count)));

    vec![
        Scenario {
            name: "(a) autoblock".to_owned(),
            steps: a,
        },
        Scenario {
            name: "(b) iptables-nft-restore".to_owned(),
            steps: b,
        },
        Scenario {
            name: "(c) nft -f".to_owned(),
            steps: c,
        },
    ]
}

fn report(count: usize, results: &[StepResult]) -> String {
    let find = |label: &str| results.iter().find(|r| r.label == label);
    let unblocks = |prefix: &str| -> Vec<&StepResult> {
        results
            .iter()
            .filter(|r| r.label.starts_with(prefix))
            .collect()
    };
    let mut out = String::new();
    let _ = writeln!(out, "\n  {:<46}{:>10}  {:>8}", "", "wall", "peak RSS");
    let _ = writeln!(out, "load {count} rules");
    let loads = [
        ("autoblock block -f FILE", "load autoblock"),
        (
            "iptables-nft-restore --noflush FILE",
            "load iptables-restore",
        ),
        ("nft -f FILE", "load nft"),
    ];
    for (shown, label) in loads {
        let _ = writeln!(out, "{}", row(shown, find(label)));
    }
    let _ = writeln!(out, "remove one rule (median of {UNBLOCKS} addresses; max)");
    let a_un = unblocks("unblock autoblock");
    let b_un = unblocks("unblock iptables");
    for (shown, runs) in [
        ("autoblock unblock ADDR", &a_un),
        ("iptables-nft -D INPUT-AUTO -s ADDR -j DROP", &b_un),
    ] {
        let _ = writeln!(out, "{}", median_row(shown, runs));
    }
    let _ = writeln!(out, "setup (not compared)");
    let _ = writeln!(out, "{}", row("autoblock init", find("autoblock init")));

    let _ = writeln!(out, "ratios");
    let wall = |label: &str| find(label).and_then(StepResult::wall);
    let rss = |label: &str| find(label).and_then(StepResult::rss);
    let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    };
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let kb = |k: Option<u64>| k.map(|k| k as f64);
    let load_vs_restore = ratio(
        secs(wall("load autoblock")),
        secs(wall("load iptables-restore")),
    );
    let _ = writeln!(
        out,
        "  load wall, autoblock / iptables-restore: {} (target ≤ {LOAD_TARGET}: {})",
        show_ratio(load_vs_restore),
        verdict(load_vs_restore.map(|r| r <= LOAD_TARGET))
    );
    let _ = writeln!(
        out,
        "  load wall, autoblock / nft -f:           {}",
        show_ratio(ratio(secs(wall("load autoblock")), secs(wall("load nft"))))
    );
    let _ = writeln!(
        out,
        "  load peak RSS, autoblock / iptables-restore: {}; autoblock / nft -f: {}",
        show_ratio(ratio(
            kb(rss("load autoblock")),
            kb(rss("load iptables-restore"))
        )),
        show_ratio(ratio(kb(rss("load autoblock")), kb(rss("load nft"))))
    );
    let a_median = median(&a_un);
    let b_median = median(&b_un);
    let _ = writeln!(
        out,
        "  unblock, autoblock median: {} (target ≤ {}: {}); iptables -D / autoblock: {}",
        a_median.map_or("-".to_owned(), show_duration),
        show_duration(UNBLOCK_TARGET),
        verdict(a_median.map(|m| m <= UNBLOCK_TARGET)),
        show_ratio(ratio(secs(b_median), secs(a_median)))
    );
    out
}

/// The median wall time of successful runs, if every run succeeded.
fn median(runs: &[&StepResult]) -> Option<Duration> {
    let mut walls: Vec<Duration> = runs.iter().map(|r| r.wall()).collect::<Option<_>>()?;
    walls.sort_unstable();
    walls.get(walls.len() / 2).copied()
}

fn median_row(label: &str, runs: &[&StepResult]) -> String {
    if let Some(failed) = runs.iter().find(|r| r.measured.is_err()) {
        return row(label, Some(failed));
    }
    let Some(med) = median(runs) else {
        return row(label, None);
    };
    let max = runs.iter().filter_map(|r| r.wall()).max().unwrap_or(med);
    let rss = runs.iter().filter_map(|r| r.rss()).max().unwrap_or(0);
    format!(
        "  {label:<46}{:>10}  {:>8}   (max {})",
        show_duration(med),
        show_kb(rss),
        show_duration(max)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_and_targets_spread() {
        let addrs = addresses(1000);
        assert_eq!(addrs[0], Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(addrs[999], Ipv4Addr::new(10, 0, 3, 232));
        let targets = unblock_targets(&addrs);
        assert_eq!(
            targets,
            [
                "10.0.1.245",
                "10.0.0.1",
                "10.0.3.232",
                "10.0.0.251",
                "10.0.2.239"
            ]
        );
    }

    #[test]
    fn inputs_describe_the_same_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_inputs(dir.path(), &addresses(3)).expect("write");
        let read = |p: &str| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(&files.autoblock), "10.0.0.1\n10.0.0.2\n10.0.0.3\n");
        assert_eq!(
            read(&files.iptables),
            "*filter\n-A INPUT-AUTO -s 10.0.0.1/32 -j DROP\n\
             -A INPUT-AUTO -s 10.0.0.2/32 -j DROP\n-A INPUT-AUTO -s 10.0.0.3/32 -j DROP\nCOMMIT\n"
        );
        assert!(read(&files.nft).contains("    ip saddr 10.0.0.3 counter drop\n"));
    }
}
