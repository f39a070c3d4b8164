//! `cargo xtask bench packet`: what autoblock's rules cost every packet.
//!
//! Six cases, each in a fresh network namespace of its own, all alive at
//! once: no rules; an empty `inet` base chain on the input hook (what the
//! hook alone costs); the set layout holding 1 and 1,000,000 timed IPv4 bans
//! (the first shows what the layout's chain and rule cost, the second what
//! the set's size adds); the chain layout holding 1,000 and 10,000 `/32` DROP
//! rules (loaded with the release `autoblock`, verified by counting). In each
//! namespace this process sends UDP datagrams from one socket bound to
//! 127.0.0.1 to another and receives each before sending the next, so one
//! iteration is one packet through the output and input hooks and the whole
//! ruleset: the source is not banned (loopback is never blocked), so no rule
//! matches and every packet is delivered. A datagram that does not arrive
//! within a second ends the run with an error.
//!
//! `--count N` packets (default 100,000) per repetition, `--rounds R`
//! (default 9) repetitions per case, interleaved across the cases so that a
//! burst of load elsewhere hits all of them alike. The cost of a packet is
//! the CPU time of the sending thread (`CLOCK_THREAD_CPUTIME_ID`): loopback
//! delivery, hooks and rules included, since the kernel runs them in the
//! sender's context, and time the thread spends preempted by other work on
//! the machine excluded. A kernel built with `CONFIG_IRQ_TIME_ACCOUNTING`
//! would book that softirq work elsewhere: the bench says so when
//! `/proc/config.gz` shows it, and prints the wall time next to the CPU
//! time either way. Printed: the median µs/packet, the
//! fastest and slowest repetition and their spread, and the ratio of each
//! case to no rules (target: set layout at 1M within 5 %).
//!
//! It deliberately measures the round trip of one datagram (two syscalls and
//! the loopback path included), not the ruleset alone: the difference
//! between the cases is the ruleset's cost.

use std::fmt::Write as _;
use std::net::UdpSocket;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{load_average, show_ratio, verdict};
use crate::netns::Netns;
use crate::util::{build_autoblock, require_root, Flags};

/// Entries in the set layout case.
const SET_ENTRIES: usize = 1_000_000;
/// Rules in the chain layout cases.
const CHAIN_RULES: [usize; 2] = [1_000, 10_000];
/// Target: the set layout's cost per packet relative to no rules.
const SET_TARGET: f64 = 1.05;
/// Packets sent before measuring, per case and repetition.
const WARMUP: usize = 1_000;

/// Runs `cargo xtask bench packet [--count N] [--rounds R]`.
pub fn run(args: &[String]) -> Result<ExitCode> {
    let flags = Flags::parse(args, &[], &["--count", "--rounds"])?;
    let rounds: usize = match flags.value("--rounds") {
        Some(v) => v.parse().with_context(|| format!("--rounds {v}"))?,
        None => 9,
    };
    if !(1..=50).contains(&rounds) {
        bail!("--rounds must be between 1 and 50");
    }
    let count: usize = match flags.value("--count") {
        Some(v) => v.parse().with_context(|| format!("--count {v}"))?,
        None => 100_000,
    };
    if !(100..=10_000_000).contains(&count) {
        bail!("--count must be between 100 and 10000000");
    }
    require_root("cargo xtask bench packet")?;
    let autoblock = build_autoblock(true)?.to_string_lossy().into_owned();
    let floor = super::set::build_floor()?.to_string_lossy().into_owned();
    let dir = tempfile::Builder::new()
        .prefix("autoblock-bench-packet-")
        .tempdir()
        .context("temporary directory")?;

    println!(
        "bench packet: UDP 127.0.0.1 → 127.0.0.1, {count} packets × {rounds} repetitions per case"
    );
    let mut cases = vec![Case::new("no rules")?];

    // What the hook alone costs: the set layout's base chain, without rules.
    let hook = Case::new("empty base chain (inet input)")?;
    hook.ns.check(
        &["nft", "-f", "-"],
        "table inet hookonly {\n  chain input {\n    type filter hook input priority -1; policy accept;\n  }\n}\n",
    )?;
    cases.push(hook);

    for entries in [1, SET_ENTRIES] {
        let file = write_addresses(dir.path(), &format!("set{entries}.txt"), entries)?;
        let set = Case::new(format!(
            "set layout, {} entr{}",
            thousands(entries),
            if entries == 1 { "y" } else { "ies" }
        ))?;
        println!("  loading {} …", set.name);
        set.ns.check(
            &[
                &autoblock,
                "--layout",
                "set",
                "--no-mirror",
                "block",
                "--timeout",
                "1h",
                "-f",
                &file,
            ],
            "",
        )?;
        let counted = set.ns.check(&[&floor, "count"], "")?;
        if counted.trim() != entries.to_string() {
            bail!(
                "the set layout holds {} elements, expected {entries}",
                counted.trim()
            );
        }
        cases.push(set);
    }

    for rules in CHAIN_RULES {
        let file = write_addresses(dir.path(), &format!("chain{rules}.txt"), rules)?;
        let case = Case::new(format!("chain layout, {} rules", thousands(rules)))?;
        println!("  loading {} …", case.name);
        case.ns.check(&[&autoblock, "--no-mirror", "init"], "")?;
        case.ns
            .check(&[&autoblock, "--no-mirror", "block", "-f", &file], "")?;
        let listing = case.ns.check(&["iptables-nft", "-S", "INPUT-AUTO"], "")?;
        let got = listing.lines().filter(|l| l.starts_with("-A ")).count();
        if got != rules {
            bail!("INPUT-AUTO holds {got} rules, expected {rules}");
        }
        cases.push(case);
    }

    if irq_time_accounting() {
        println!(
            "  note: this kernel accounts softirq time separately (CONFIG_IRQ_TIME_ACCOUNTING): the CPU column misses the rules' cost, read the wall column"
        );
    }
    let load_before = load_average();
    for round in 1..=rounds {
        print!("  repetition {round}/{rounds}:");
        for case in &mut cases {
            let (cpu, wall) = case.ns.run(move || round_trips(count))?;
            print!(" {:.2}", micros(cpu));
            case.samples.push(cpu);
            case.walls.push(wall);
        }
        println!(" µs CPU");
    }
    print!("{}", report(&cases));
    println!(
        "  load average before/after: {load_before} / {}  (2 cores; a busy machine slows every case)",
        load_average()
    );
    Ok(ExitCode::SUCCESS)
}

/// One measured case: its namespace (with the ruleset loaded) and the CPU
/// and wall time per packet of each repetition.
#[derive(Debug)]
struct Case {
    name: String,
    ns: Netns,
    samples: Vec<Duration>,
    walls: Vec<Duration>,
}

impl Case {
    fn new(name: impl Into<String>) -> Result<Case> {
        Ok(Case {
            name: name.into(),
            ns: Netns::new()?,
            samples: Vec::new(),
            walls: Vec::new(),
        })
    }

    fn stats(&self) -> Option<(Duration, Duration, Duration)> {
        stats(&self.samples)
    }
}

/// Median, fastest and slowest of some repetitions.
fn stats(samples: &[Duration]) -> Option<(Duration, Duration, Duration)> {
    let mut s = samples.to_vec();
    s.sort_unstable();
    Some((*s.get(s.len() / 2)?, *s.first()?, *s.last()?))
}

/// `count` addresses from 10.0.0.1 on, one per line.
fn write_addresses(dir: &std::path::Path, name: &str, count: usize) -> Result<String> {
    let base = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0));
    let mut text = String::with_capacity(count * 12);
    for i in 1..=count as u32 {
        let _ = writeln!(text, "{}", std::net::Ipv4Addr::from(base + i));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_string_lossy().into_owned())
}

/// Whether the running kernel was built with `CONFIG_IRQ_TIME_ACCOUNTING`
/// (as far as `/proc/config.gz` tells; `false` when it cannot be read).
fn irq_time_accounting() -> bool {
    std::process::Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == "CONFIG_IRQ_TIME_ACCOUNTING=y")
        })
}

/// The calling thread's CPU time.
fn thread_cpu() -> Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec the call fills.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error()).context("clock_gettime");
    }
    Ok(Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    ))
}

/// Sends `count` datagrams one at a time from one loopback socket to
/// another (after a warm-up) and returns the thread CPU time and the wall
/// time per datagram.
fn round_trips(count: usize) -> Result<(Duration, Duration)> {
    let rx = UdpSocket::bind("127.0.0.1:0").context("binding the receiver")?;
    let tx = UdpSocket::bind("127.0.0.1:0").context("binding the sender")?;
    tx.connect(rx.local_addr()?)
        .context("connecting the sender")?;
    rx.set_read_timeout(Some(Duration::from_secs(1)))?;
    let payload = [0x5au8; 64];
    let mut buf = [0u8; 128];
    let mut one = |i: usize| -> Result<()> {
        tx.send(&payload).context("send")?;
        let n = rx
            .recv(&mut buf)
            .with_context(|| format!("datagram {i} did not arrive (dropped by a rule?)"))?;
        if n != payload.len() {
            bail!("datagram {i}: received {n} bytes, sent {}", payload.len());
        }
        Ok(())
    };
    for i in 0..WARMUP {
        one(i)?;
    }
    let cpu_before = thread_cpu()?;
    let started = Instant::now();
    for i in 0..count {
        one(i)?;
    }
    let wall = started.elapsed();
    let cpu = thread_cpu()?.saturating_sub(cpu_before);
    let n = u32::try_from(count).unwrap_or(u32::MAX);
    Ok((cpu / n, wall / n))
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `1000000` → `1,000,000`.
fn thousands(n: usize) -> String {
    super::set::thousands(n)
}

fn report(cases: &[Case]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n  {:<32}{:>12}{:>10}{:>10}{:>9}{:>11}{:>13}",
        "CPU µs per packet", "median", "fastest", "slowest", "spread", "÷no rules", "wall median"
    );
    let base = cases.first().and_then(Case::stats).map(|(m, ..)| m);
    let ratio = |m: Duration| {
        base.filter(|b| !b.is_zero())
            .map(|b| m.as_secs_f64() / b.as_secs_f64())
    };
    for case in cases {
        let Some((median, fastest, slowest)) = case.stats() else {
            let _ = writeln!(out, "  {:<32}(no result)", case.name);
            continue;
        };
        let spread = (slowest.as_secs_f64() - fastest.as_secs_f64()) / median.as_secs_f64();
        let wall = stats(&case.walls).map_or("-".to_owned(), |(m, ..)| format!("{:.3}", micros(m)));
        let _ = writeln!(
            out,
            "  {:<32}{:>12.3}{:>10.3}{:>10.3}{:>8.1}%{:>11}{:>13}",
            case.name,
            micros(median),
            micros(fastest),
            micros(slowest),
            spread * 100.0,
            show_ratio(ratio(median)),
            wall
        );
    }
    let set = cases
        .iter()
        .find(|c| c.name == format!("set layout, {} entries", thousands(SET_ENTRIES)))
        .and_then(Case::stats)
        .and_then(|(m, ..)| ratio(m));
    let _ = writeln!(
        out,
        "  set layout at {} / no rules: {} (target ≤ {SET_TARGET}: {})",
        thousands(SET_ENTRIES),
        show_ratio(set),
        verdict(set.map(|r| r <= SET_TARGET))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_median_fastest_slowest() {
        let us = Duration::from_micros;
        assert_eq!(stats(&[us(5), us(1), us(3)]), Some((us(3), us(1), us(5))));
        assert_eq!(stats(&[us(2)]), Some((us(2), us(2), us(2))));
        assert_eq!(stats(&[]), None);
    }
}
