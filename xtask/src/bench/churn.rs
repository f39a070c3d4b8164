//! `cargo xtask bench churn [--seconds S]`: the async service under high churn, side by side
//! with a shell-out peer, in one fresh network namespace.
//!
//! It builds the `churn` example of the `autoblock` crate (`--release --features tokio`) and
//! runs it inside a fresh namespace: N = 1, 16 and 256 concurrent tasks issue timed
//! block/unblock requests (one address each) against the set layout for S seconds each
//! (default 10), then `nft add element` runs once per request for min(S, 5) seconds. It prints
//! ops/s and p50/p99/max request→commit latency per N, the verdict against the targets
//! (≥ 250,000 ops/s, p99 ≤ 20 ms at 256 tasks), the load average, and as its very last line
//! `churn: <ops> ops/s p99 <ms> ms (shell-out peer <ops> ops/s)` for the 256-task case.
//!
//! It does not measure the load itself (the example does, from inside), and never runs
//! anything in this machine's own namespace.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::{load_average, verdict};
use crate::netns::Netns;
use crate::util::{cargo, require_root, Flags};

/// Target: operations per second at 256 tasks.
const OPS_TARGET: f64 = 250_000.0;
/// Target: p99 latency at 256 tasks, in milliseconds.
const P99_TARGET_MS: f64 = 20.0;

/// Runs `cargo xtask bench churn [--seconds S]`.
pub fn run(args: &[String]) -> Result<ExitCode> {
    let flags = Flags::parse(args, &[], &["--seconds"])?;
    let seconds: f64 = match flags.value("--seconds") {
        Some(v) => v.parse().with_context(|| format!("--seconds {v}"))?,
        None => 10.0,
    };
    if !(0.5..=600.0).contains(&seconds) {
        bail!("--seconds must be between 0.5 and 600");
    }
    require_root("cargo xtask bench churn")?;
    let exe = build_example()?;
    println!(
        "bench churn: 1, 16 and 256 tasks of timed block/unblock through autoblock::Service \
         (set layout), {seconds} s each, then an `nft add element` loop; one fresh network namespace"
    );
    let load_before = load_average();
    let ns = Netns::new()?;
    let argv = vec![
        exe.to_string_lossy().into_owned(),
        "--seconds".to_owned(),
        seconds.to_string(),
        "--tasks".to_owned(),
        "1,16,256".to_owned(),
    ];
    let out = ns.output(&argv, Vec::new())?;
    let _ = ns.check(&["nft", "flush", "ruleset"], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        print!("{stdout}");
        bail!(
            "the churn example failed ({}): {}",
            out.status,
            stderr.trim()
        );
    }
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("churn: "))
        .context("the churn example printed no summary line")?
        .to_owned();
    for line in stdout.lines().filter(|l| !l.starts_with("churn: ")) {
        println!("  {line}");
    }
    let (ops, p99) = parse_summary(&last)?;
    println!(
        "  target ≥ {OPS_TARGET:.0} ops/s: {}; target p99 ≤ {P99_TARGET_MS} ms: {}",
        verdict(Some(ops >= OPS_TARGET)),
        verdict(Some(p99 <= P99_TARGET_MS))
    );
    println!(
        "  load average before/after: {load_before} / {}  (2 cores; a busy machine slows every tool)",
        load_average()
    );
    println!("{last}");
    Ok(ExitCode::SUCCESS)
}

/// Builds `examples/churn.rs` in release mode and returns its path.
fn build_example() -> Result<PathBuf> {
    println!("xtask: cargo build --release -p autoblock --features tokio --example churn");
    let output = cargo()
        .args(["build", "--release", "--package", "autoblock"])
        .args(["--features", "tokio", "--example", "churn"])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    if !output.status.success() {
        bail!("building the churn example failed ({})", output.status);
    }
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact" && message["target"]["name"] == "churn" {
            if let Some(exe) = message["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("cargo built the churn example but reported no executable")
}

/// `(ops/s, p99 ms)` of `churn: <ops> ops/s p99 <ms> ms (shell-out peer <ops> ops/s)`.
fn parse_summary(line: &str) -> Result<(f64, f64)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["churn:", ops, "ops/s", "p99", p99, "ms", ..] => Ok((
            ops.parse().with_context(|| format!("ops in {line:?}"))?,
            p99.parse().with_context(|| format!("p99 in {line:?}"))?,
        )),
        _ => bail!("unexpected summary line {line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_is_read_back() {
        let (ops, p99) =
            parse_summary("churn: 251234 ops/s p99 3.25 ms (shell-out peer 540 ops/s)").unwrap();
        assert_eq!(ops, 251_234.0);
        assert_eq!(p99, 3.25);
        assert!(parse_summary("churn: fast").is_err());
    }
}
