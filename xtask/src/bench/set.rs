//! `cargo xtask bench set`: bulk loads into the set layout against the tools
//! it replaces and against the kernel floor, side by side in one run.
//!
//! Three workloads, every tool given the same addresses, the same timeout
//! (1 h per element) and the same set definition (the set layout's:
//! table `inet autoblock`, one `flags timeout` hash set per family and
//! prefix length, size `max(2 × n, 65536)`, GC interval 30 s above 262,144
//! slots):
//!
//! * N (default 1,000,000) IPv4 addresses: `autoblock --layout set
//!   --no-mirror block --timeout 1h -f FILE` (release build), `nft -f` of a
//!   file creating the same table, sets, chain and rules and adding every
//!   element, `ipset restore` (`hash:ip`, `timeout`, `maxelem` = the set
//!   size, `hashsize` = n rounded up to a power of two) and the kernel floor
//!   (example `raw_floor` of autoblock-netlink: table, set and all elements
//!   in one raw batch, no validation);
//! * N/10 IPv6 addresses and N/10 mixed prefixes (IPv4 /32 and /24, IPv6
//!   /128, /64 and /48), the same four tools (`ipset` uses `hash:net` for
//!   the prefixes).
//!
//! Each load runs in a fresh network namespace and is verified afterwards
//! (unmeasured): the kernel's element count (`raw_floor count`, or `ipset
//! list -t`) must equal the number of entries, so a fast failure can never
//! pass for a fast load. Printed: wall, user and system CPU, peak RSS, the
//! ratios and the targets (1M IPv4: wall ≤ 1.15 × floor, ≥ 2.5× faster than
//! `nft -f`, ≥ 1.5× faster than `ipset restore`, peak RSS ≤ 48 MB).
//!
//! It deliberately measures whole commands from spawn to reap, file
//! reading included, and does not tune any tool beyond the shared set
//! definition.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{load_average, merge_rounds, show_ratio, verdict, Check, Scenario, Step, StepResult};
use crate::util::{
    build_autoblock, cargo, find_program, require_root, show_duration, show_kb, Flags,
};

/// The timeout every tool gives every element.
const TIMEOUT_SECS: u64 = 3600;
/// Target: autoblock's wall time as a multiple of the floor's.
const FLOOR_TARGET: f64 = 1.15;
/// Target: how many times faster than `nft -f` autoblock must be.
const NFT_TARGET: f64 = 2.5;
/// Target: how many times faster than `ipset restore` autoblock must be.
const IPSET_TARGET: f64 = 1.5;
/// Target: autoblock's peak RSS for the big load, in kilobytes.
const RSS_TARGET_KB: u64 = 48 * 1024;

/// Runs `cargo xtask bench set [--count N] [--rounds R]`.
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
        None => 1_000_000,
    };
    if !(100..=4_000_000).contains(&count) {
        bail!("--count must be between 100 and 4000000");
    }
    require_root("cargo xtask bench set")?;
    ensure_ipset()?;
    let autoblock = build_autoblock(true)?.to_string_lossy().into_owned();
    let floor = build_floor()?.to_string_lossy().into_owned();

    let dir = tempfile::Builder::new()
        .prefix("autoblock-bench-set-")
        .tempdir()
        .context("temporary directory")?;
    let workloads = [
        Workload::new(
            "ipv4",
            format!("{} timed IPv4 bans", thousands(count)),
            ipv4(count),
        ),
        Workload::new(
            "ipv6",
            format!("{} timed IPv6 bans", thousands(count / 10)),
            ipv6(count / 10),
        ),
        Workload::new(
            "mixed",
            format!(
                "{} timed mixed prefixes (v4 /32 /24, v6 /128 /64 /48)",
                thousands(count / 10)
            ),
            mixed(count / 10),
        ),
    ];
    let tools = Tools {
        autoblock: &autoblock,
        floor: &floor,
    };
    let mut scenarios = Vec::new();
    for w in &workloads {
        let files = w.write(dir.path())?;
        scenarios.extend(w.scenarios(&tools, &files));
    }

    println!(
        "bench set: bulk loads into timed sets, same addresses and set definition, each tool in a fresh network namespace"
    );
    let load_before = load_average();
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
    for (i, w) in workloads.iter().enumerate() {
        print!("{}", w.report(&results, i == 0));
    }
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

/// The paths of the programs under test.
#[derive(Debug)]
struct Tools<'a> {
    autoblock: &'a str,
    floor: &'a str,
}

/// Installs the `ipset` Debian package unless `ipset` is there.
fn ensure_ipset() -> Result<()> {
    if find_program("ipset").is_some() {
        return Ok(());
    }
    let apt = |args: &[&str]| -> Result<bool> {
        println!("xtask: apt-get {}", args.join(" "));
        Ok(Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("cannot run apt-get")?
            .success())
    };
    let install = ["install", "-y", "--no-install-recommends", "ipset"];
    let installed = apt(&install)? || (apt(&["update"])? && apt(&install)?);
    if !installed {
        bail!("apt-get install ipset failed");
    }
    if find_program("ipset").is_none() {
        bail!("ipset is still missing after installing the package");
    }
    Ok(())
}

/// Builds the `raw_floor` example (release) and returns its path.
pub fn build_floor() -> Result<PathBuf> {
    println!("xtask: cargo build --release -p autoblock-netlink --example raw_floor");
    let output = cargo()
        .args(["build", "--release", "--package", "autoblock-netlink"])
        .args(["--example", "raw_floor"])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    if !output.status.success() {
        bail!("building the raw_floor example failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact" && message["target"]["name"] == "raw_floor" {
            if let Some(exe) = message["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("cargo built autoblock-netlink but reported no `raw_floor` executable")
}

/// `1000000` → `1,000,000`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One entry: an address or network (host bits clear) and its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    V4(Ipv4Addr, u8),
    V6(Ipv6Addr, u8),
}

impl Entry {
    /// The set-layout set this entry belongs to.
    fn set(self) -> String {
        match self {
            Entry::V4(_, 32) => "addr4".to_owned(),
            Entry::V6(_, 128) => "addr6".to_owned(),
            Entry::V4(_, len) => format!("net4_{len}"),
            Entry::V6(_, len) => format!("net6_{len}"),
        }
    }

    fn is_v4(self) -> bool {
        matches!(self, Entry::V4(..))
    }

    fn len(self) -> u8 {
        match self {
            Entry::V4(_, l) | Entry::V6(_, l) => l,
        }
    }

    /// `ADDR` for a host, `ADDR/LEN` for a network.
    fn text(self) -> String {
        match self {
            Entry::V4(a, 32) => a.to_string(),
            Entry::V6(a, 128) => a.to_string(),
            Entry::V4(a, l) => format!("{a}/{l}"),
            Entry::V6(a, l) => format!("{a}/{l}"),
        }
    }

    /// The element as `nft` writes it into a set of network addresses.
    fn addr_text(self) -> String {
        match self {
            Entry::V4(a, _) => a.to_string(),
            Entry::V6(a, _) => a.to_string(),
        }
    }
}

/// `count` IPv4 addresses from 10.0.0.1 on.
fn ipv4(count: usize) -> Vec<Entry> {
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    (1..=count as u32)
        .map(|i| Entry::V4(Ipv4Addr::from(base + i), 32))
        .collect()
}

/// `count` IPv6 addresses from 2001:db8::1 on, spread over the low 64 bits.
fn ipv6(count: usize) -> Vec<Entry> {
    let base = u128::from(
        "2001:db8::"
            .parse::<Ipv6Addr>()
            .unwrap_or(Ipv6Addr::LOCALHOST),
    );
    (1..=count as u128)
        .map(|i| Entry::V6(Ipv6Addr::from(base + i * 0x1_0001), 128))
        .collect()
}

/// `count` entries cycling through five prefix lengths, all distinct:
/// IPv4 /32 (from 10.0.0.1), /24 (from 20.0.0.0), IPv6 /128 (in
/// 2001:db8::/64), /64 (in 2001:db8:1::/48) and /48 (in 2001:db9::/32).
fn mixed(count: usize) -> Vec<Entry> {
    let v6 = |s: &str| u128::from(s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::LOCALHOST));
    let (a128, a64, a48) = (v6("2001:db8::"), v6("2001:db8:1::"), v6("2001:db9::"));
    (0..count)
        .map(|i| {
            let j = (i / 5) as u32;
            match i % 5 {
                0 => Entry::V4(Ipv4Addr::from(0x0a00_0001 + j), 32),
                1 => Entry::V4(Ipv4Addr::from(0x1400_0000 + (j << 8)), 24),
                2 => Entry::V6(Ipv6Addr::from(a128 + u128::from(j) + 1), 128),
                3 => Entry::V6(Ipv6Addr::from(a64 + (u128::from(j) << 64)), 64),
                _ => Entry::V6(Ipv6Addr::from(a48 + (u128::from(j) << 80)), 48),
            }
        })
        .collect()
}

/// The set size every tool is given for `n` elements (the set layout's).
fn set_size(n: usize) -> usize {
    (n * 2).max(65_536)
}

/// The GC interval of a set of `size` slots (the set layout's).
fn gc_interval(size: usize) -> &'static str {
    if size > 262_144 {
        "30s"
    } else {
        "10s"
    }
}

/// The mask of a prefix length, as nft writes it.
fn mask_text(entry: Entry) -> String {
    match entry {
        Entry::V4(_, l) => {
            Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(l)).unwrap_or(0)).to_string()
        }
        Entry::V6(_, l) => {
            Ipv6Addr::from(u128::MAX.checked_shl(128 - u32::from(l)).unwrap_or(0)).to_string()
        }
    }
}

/// The input files of one workload.
#[derive(Debug)]
struct Files {
    /// `ADDR[/LEN]` lines, for autoblock and the floor.
    plain: String,
    /// An `nft -f` file.
    nft: String,
    /// An `ipset restore` file.
    ipset: String,
}

/// One workload: a name, a title and its entries.
#[derive(Debug)]
struct Workload {
    name: &'static str,
    title: String,
    entries: Vec<Entry>,
}

impl Workload {
    fn new(name: &'static str, title: String, entries: Vec<Entry>) -> Workload {
        Workload {
            name,
            title,
            entries,
        }
    }

    /// The entries grouped by set, in first-seen order.
    fn sets(&self) -> Vec<(String, Vec<Entry>)> {
        let mut sets: Vec<(String, Vec<Entry>)> = Vec::new();
        for &e in &self.entries {
            let name = e.set();
            match sets.iter_mut().find(|(n, _)| *n == name) {
                Some((_, list)) => list.push(e),
                None => sets.push((name, vec![e])),
            }
        }
        sets
    }

    fn write(&self, dir: &Path) -> Result<Files> {
        let sets = self.sets();
        let mut plain = String::new();
        for e in &self.entries {
            let _ = writeln!(plain, "{}", e.text());
        }

        let mut nft = String::from("table inet autoblock {\n");
        for (name, list) in &sets {
            let size = set_size(list.len());
            let ty = if list[0].is_v4() {
                "ipv4_addr"
            } else {
                "ipv6_addr"
            };
            let _ = writeln!(
                nft,
                "  set {name} {{\n    type {ty}\n    flags timeout\n    size {size}\n    gc-interval {}\n  }}",
                gc_interval(size)
            );
        }
        nft.push_str("  chain input {\n    type filter hook input priority -1; policy accept;\n");
        for (name, list) in &sets {
            let first = list[0];
            let proto = if first.is_v4() { "ip" } else { "ip6" };
            let full = if first.is_v4() { 32 } else { 128 };
            let mask = if first.len() < full {
                format!(" & {}", mask_text(first))
            } else {
                String::new()
            };
            let _ = writeln!(nft, "    {proto} saddr{mask} @{name} counter drop");
        }
        nft.push_str("  }\n}\n");
        for (name, list) in &sets {
            let _ = writeln!(nft, "add element inet autoblock {name} {{");
            for (i, e) in list.iter().enumerate() {
                let sep = if i + 1 < list.len() { "," } else { "" };
                let _ = writeln!(nft, "  {} timeout {TIMEOUT_SECS}s{sep}", e.addr_text());
            }
            nft.push_str("}\n");
        }

        // ipset: one hash:ip set per family for addresses only, one hash:net
        // set per family as soon as there is a prefix.
        let mut ipset = String::new();
        for v4 in [true, false] {
            let list: Vec<&Entry> = self.entries.iter().filter(|e| e.is_v4() == v4).collect();
            if list.is_empty() {
                continue;
            }
            let full = if v4 { 32 } else { 128 };
            let kind = if list.iter().all(|e| e.len() == full) {
                "ip"
            } else {
                "net"
            };
            let (name, family) = if v4 {
                ("bans4", "inet")
            } else {
                ("bans6", "inet6")
            };
            let _ = writeln!(
                ipset,
                "create {name} hash:{kind} family {family} hashsize {} maxelem {} timeout {TIMEOUT_SECS}",
                list.len().next_power_of_two().max(1024),
                set_size(list.len())
            );
            for e in list {
                let _ = writeln!(ipset, "add {name} {} timeout {TIMEOUT_SECS}", e.text());
            }
        }

        let save = |suffix: &str, text: &str| -> Result<String> {
            let path = dir.join(format!("{}.{suffix}", self.name));
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Ok(path.to_string_lossy().into_owned())
        };
        Ok(Files {
            plain: save("txt", &plain)?,
            nft: save("nft", &nft)?,
            ipset: save("ipset", &ipset)?,
        })
    }

    fn label(&self, tool: &str) -> String {
        format!("{} {tool}", self.name)
    }

    fn scenarios(&self, tools: &Tools<'_>, files: &Files) -> Vec<Scenario> {
        let n = self.entries.len() as u64;
        let nft_count = || Check::Count {
            argv: vec![tools.floor.to_owned(), "count".to_owned()],
            parse: |out| out.trim().parse().ok(),
            expected: n,
        };
        let timeout = format!("{TIMEOUT_SECS}s");
        let ms = (TIMEOUT_SECS * 1000).to_string();
        let one = |tool: &str, step: Step| Scenario {
            name: format!("{}: {tool}", self.name),
            steps: vec![step],
        };
        vec![
            one(
                "autoblock",
                Step::new(
                    self.label("autoblock"),
                    &[
                        tools.autoblock,
                        "--layout",
                        "set",
                        "--no-mirror",
                        "block",
                        "--timeout",
                        &timeout,
                        "-f",
                        &files.plain,
                    ],
                )
                .checking(nft_count()),
            ),
            one(
                "nft -f",
                Step::new(self.label("nft"), &["nft", "-f", &files.nft]).checking(nft_count()),
            ),
            one(
                "ipset restore",
                Step::new(
                    self.label("ipset"),
                    &["ipset", "restore", "-file", &files.ipset],
                )
                .checking(Check::Count {
                    argv: ["ipset", "list", "-t"].map(String::from).to_vec(),
                    parse: ipset_entries,
                    expected: n,
                }),
            ),
            one(
                "floor",
                Step::new(
                    self.label("floor"),
                    &[tools.floor, "load", &files.plain, &ms],
                )
                .checking(nft_count()),
            ),
        ]
    }

    fn report(&self, results: &[StepResult], targets: bool) -> String {
        let find = |tool: &str| results.iter().find(|r| r.label == self.label(tool));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{}\n  {:<38}{:>10}{:>10}{:>10}{:>10}{:>9}",
            self.title, "", "wall", "user", "sys", "peak RSS", "÷floor"
        );
        let floor = find("floor").and_then(StepResult::wall);
        let rows = [
            ("autoblock block -f FILE", "autoblock"),
            ("nft -f FILE", "nft"),
            ("ipset restore", "ipset"),
            ("kernel floor (one raw batch)", "floor"),
        ];
        for (shown, tool) in rows {
            let _ = writeln!(out, "{}", cpu_row(shown, find(tool), floor));
        }
        // The floor's own breakdown (how much of it is the kernel's commit).
        if let Some(line) = find("floor")
            .and_then(|r| r.measured.as_ref().ok())
            .and_then(|m| m.stderr.lines().rfind(|l| l.starts_with("raw_floor:")))
        {
            let _ = writeln!(out, "  {line}");
        }
        let wall = |tool: &str| {
            find(tool)
                .and_then(StepResult::wall)
                .map(|d| d.as_secs_f64())
        };
        let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) if y > 0.0 => Some(x / y),
            _ => None,
        };
        let vs_floor = ratio(wall("autoblock"), wall("floor"));
        let nft_x = ratio(wall("nft"), wall("autoblock"));
        let ipset_x = ratio(wall("ipset"), wall("autoblock"));
        let rss = find("autoblock").and_then(StepResult::rss);
        let cpu = |tool: &str| {
            find(tool)
                .and_then(|r| r.measured.as_ref().ok())
                .map(|m| (m.user + m.sys).as_secs_f64())
        };
        if targets {
            let _ = writeln!(
                out,
                "  autoblock wall / floor: {} (target ≤ {FLOOR_TARGET}: {})",
                show_ratio(vs_floor),
                verdict(vs_floor.map(|r| r <= FLOOR_TARGET))
            );
            let _ = writeln!(
                out,
                "  nft -f wall / autoblock: {} (target ≥ {NFT_TARGET}: {})",
                show_ratio(nft_x),
                verdict(nft_x.map(|r| r >= NFT_TARGET))
            );
            let _ = writeln!(
                out,
                "  ipset restore wall / autoblock: {} (target ≥ {IPSET_TARGET}: {})",
                show_ratio(ipset_x),
                verdict(ipset_x.map(|r| r >= IPSET_TARGET))
            );
            let _ = writeln!(
                out,
                "  autoblock peak RSS: {} (target ≤ {}: {})",
                rss.map_or("-".to_owned(), show_kb),
                show_kb(RSS_TARGET_KB),
                verdict(rss.map(|r| r <= RSS_TARGET_KB))
            );
        } else {
            let _ = writeln!(
                out,
                "  autoblock wall / floor: {}; nft -f / autoblock: {}; ipset restore / autoblock: {}",
                show_ratio(vs_floor),
                show_ratio(nft_x),
                show_ratio(ipset_x)
            );
        }
        // On a busy machine wall times include waiting for a core; CPU
        // times are what each tool itself cost.
        let _ = writeln!(
            out,
            "  CPU (user+sys): autoblock / floor: {}; nft -f / autoblock: {}; ipset restore / autoblock: {}",
            show_ratio(ratio(cpu("autoblock"), cpu("floor"))),
            show_ratio(ratio(cpu("nft"), cpu("autoblock"))),
            show_ratio(ratio(cpu("ipset"), cpu("autoblock")))
        );
        out
    }
}

/// The sum of `Number of entries:` over an `ipset list -t` listing.
fn ipset_entries(listing: &str) -> Option<u64> {
    let counts: Vec<u64> = listing
        .lines()
        .filter_map(|l| l.strip_prefix("Number of entries:"))
        .map(|n| n.trim().parse().ok())
        .collect::<Option<_>>()?;
    (!counts.is_empty()).then(|| counts.iter().sum())
}

/// One report row: wall, user, sys, peak RSS and wall as a multiple of
/// `floor`, or the failure.
fn cpu_row(label: &str, result: Option<&StepResult>, floor: Option<Duration>) -> String {
    let mut line = format!("  {label:<38}");
    match result.map(|r| &r.measured) {
        Some(Ok(m)) => {
            let times_floor = floor.filter(|f| !f.is_zero()).map_or("-".to_owned(), |f| {
                format!("{:.2}", m.wall.as_secs_f64() / f.as_secs_f64())
            });
            let _ = write!(
                line,
                "{:>10}{:>10}{:>10}{:>10}{:>9}",
                show_duration(m.wall),
                show_duration(m.user),
                show_duration(m.sys),
                show_kb(m.max_rss_kb),
                times_floor
            );
        }
        Some(Err(why)) => {
            let _ = write!(line, "FAILED: {why}");
        }
        None => line.push_str("(no result)"),
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_are_distinct_and_canonical() {
        let v4 = ipv4(3);
        assert_eq!(
            v4.iter().map(|e| e.text()).collect::<Vec<_>>(),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
        let v6 = ipv6(2);
        assert_eq!(v6[0].text(), "2001:db8::1:1");
        assert_eq!(v6[1].text(), "2001:db8::2:2");
        let m = mixed(10);
        let texts: Vec<String> = m.iter().map(|e| e.text()).collect();
        assert_eq!(
            texts[..5],
            [
                "10.0.0.1",
                "20.0.0.0/24",
                "2001:db8::1",
                "2001:db8:1::/64",
                "2001:db9::/48"
            ]
        );
        assert_eq!(
            texts[5..],
            [
                "10.0.0.2",
                "20.0.1.0/24",
                "2001:db8::2",
                "2001:db8:1:1::/64",
                "2001:db9:1::/48"
            ]
        );
        let mut sorted = mixed(5000).iter().map(|e| e.text()).collect::<Vec<_>>();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 5000);
    }

    #[test]
    fn the_three_files_describe_the_same_sets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Workload::new("mixed", "t".to_owned(), mixed(5));
        let files = w.write(dir.path()).expect("write");
        let read = |p: &str| std::fs::read_to_string(p).expect("read");
        assert_eq!(
            read(&files.plain),
            "10.0.0.1\n20.0.0.0/24\n2001:db8::1\n2001:db8:1::/64\n2001:db9::/48\n"
        );
        let nft = read(&files.nft);
        for expected in [
            "  set net4_24 {\n    type ipv4_addr\n    flags timeout\n    size 65536\n    gc-interval 10s\n  }",
            "    ip saddr @addr4 counter drop\n",
            "    ip saddr & 255.255.255.0 @net4_24 counter drop\n",
            "    ip6 saddr & ffff:ffff:ffff:: @net6_48 counter drop\n",
            "add element inet autoblock net6_64 {\n  2001:db8:1:: timeout 3600s\n}\n",
        ] {
            assert!(nft.contains(expected), "{expected:?} not in\n{nft}");
        }
        assert_eq!(
            read(&files.ipset),
            "create bans4 hash:net family inet hashsize 1024 maxelem 65536 timeout 3600\n\
             add bans4 10.0.0.1 timeout 3600\nadd bans4 20.0.0.0/24 timeout 3600\n\
             create bans6 hash:net family inet6 hashsize 1024 maxelem 65536 timeout 3600\n\
             add bans6 2001:db8::1 timeout 3600\nadd bans6 2001:db8:1::/64 timeout 3600\n\
             add bans6 2001:db9::/48 timeout 3600\n"
        );
    }

    #[test]
    fn sizes_match_the_set_layout() {
        assert_eq!(set_size(1_000_000), 2_000_000);
        assert_eq!(set_size(10), 65_536);
        assert_eq!(gc_interval(2_000_000), "30s");
        assert_eq!(gc_interval(200_000), "10s");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(100), "100");
    }

    #[test]
    fn ipset_listing_is_summed() {
        let listing =
            "Name: bans4\nType: hash:ip\nNumber of entries: 7\nName: bans6\nNumber of entries: 3\n";
        assert_eq!(ipset_entries(listing), Some(10));
        assert_eq!(ipset_entries("Name: x\n"), None);
        assert_eq!(ipset_entries("Number of entries: x\n"), None);
    }
}
