//! `cargo xtask fuzz [--seconds N] [TARGET…]`: runs the cargo-fuzz targets of `fuzz/`
//! (the sysconfig parser and editor) for N seconds each and prints how many inputs each
//! one ran.
//!
//! It installs cargo-fuzz when it is missing and sets `RUSTC_BOOTSTRAP=1` so the stable
//! toolchain accepts libFuzzer's sanitizer flags (as `fuzz/Cargo.toml` explains). It is not
//! part of `cargo xtask test`: fuzzing is open-ended and CPU-hungry. It does not define the
//! targets; new inputs go to the (git-ignored) `fuzz/corpus/TARGET`, crashes to
//! `fuzz/artifacts/TARGET`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::util;

/// Seconds per target unless `--seconds` says otherwise.
const DEFAULT_SECONDS: u64 = 60;

/// The outcome of one target.
struct Outcome {
    target: String,
    runs: Option<u64>,
    seconds: f64,
    ok: bool,
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut seconds = DEFAULT_SECONDS;
    let mut targets = Vec::new();
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        match a.as_str() {
            "--seconds" => {
                let v = iter.next().context("`--seconds` needs a value")?;
                seconds = v
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .with_context(|| format!("--seconds {v:?}: a positive whole number"))?;
            }
            s if s.starts_with('-') => {
                bail!("unknown flag `{s}` (fuzz takes --seconds N and target names)")
            }
            s => targets.push(s.to_owned()),
        }
    }
    let fuzz_dir = util::workspace_root().join("fuzz");
    let known = list_targets(&fuzz_dir)?;
    if targets.is_empty() {
        targets = known.clone();
    }
    for t in &targets {
        if !known.contains(t) {
            bail!("no fuzz target `{t}` (known: {})", known.join(", "));
        }
    }
    ensure_cargo_fuzz()?;
    let mut results = Vec::new();
    for t in &targets {
        println!("xtask fuzz: {t} for {seconds} s");
        results.push(run_target(&fuzz_dir, t, seconds)?);
    }
    println!(
        "\n{:<10} {:>8} {:>14} {:>12}  result",
        "target", "seconds", "runs", "runs/s"
    );
    for r in &results {
        let runs = r.runs.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
        let rate = r
            .runs
            .map(|n| format!("{:.0}", n as f64 / r.seconds.max(1.0)))
            .unwrap_or_else(|| "?".into());
        println!(
            "{:<10} {:>8.0} {:>14} {:>12}  {}",
            r.target,
            r.seconds,
            runs,
            rate,
            if r.ok {
                "ok".to_owned()
            } else {
                format!("FAILED (see fuzz/artifacts/{})", r.target)
            }
        );
    }
    Ok(if results.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The `[[bin]]` names of `fuzz/fuzz_targets/*.rs`.
fn list_targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    out.sort();
    Ok(out)
}

fn ensure_cargo_fuzz() -> Result<()> {
    let present = util::cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    println!("xtask fuzz: installing cargo-fuzz");
    let status = util::cargo()
        .args(["install", "--locked", "cargo-fuzz"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed ({status})");
    }
    Ok(())
}

fn run_target(fuzz_dir: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run"]);
    // The fuzz project is its own workspace; keep its build apart from the main one's.
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        cmd.env_remove("CARGO_TARGET_DIR")
            .arg("--target-dir")
            .arg(Path::new(&dir).join("fuzz"));
    }
    cmd.arg(target)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().context("running cargo fuzz")?;
    let mut runs = None;
    let mut fuzz_secs = None;
    let mut tail: Vec<String> = Vec::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines() {
            let line = line.unwrap_or_default();
            if let Some(n) = parse_runs(&line) {
                runs = Some(n);
            }
            if let Some(s) = parse_seconds(&line) {
                fuzz_secs = Some(s);
            }
            // Progress lines are many; keep the build output and the end.
            if line.starts_with('#') {
                tail.push(line);
                if tail.len() > 3 {
                    tail.remove(0);
                }
            } else {
                eprintln!("{line}");
            }
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    for l in &tail {
        eprintln!("{l}");
    }
    Ok(Outcome {
        target: target.to_owned(),
        runs,
        // libFuzzer's own figure excludes the build; the wall clock is the fallback.
        seconds: fuzz_secs.unwrap_or_else(|| started.elapsed().as_secs_f64()),
        ok: status.success(),
    })
}

/// libFuzzer's final counts: `Done N runs in S second(s)` or
/// `stat::number_of_executed_units: N`.
fn parse_runs(line: &str) -> Option<u64> {
    if let Some(rest) = line.strip_prefix("Done ") {
        return rest.split(' ').next()?.parse().ok();
    }
    line.strip_prefix("stat::number_of_executed_units:")?
        .trim()
        .parse()
        .ok()
}

/// The seconds of `Done N runs in S second(s)`.
fn parse_seconds(line: &str) -> Option<f64> {
    let rest = line.strip_prefix("Done ")?;
    rest.split(" in ").nth(1)?.split(' ').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{parse_runs, parse_seconds};

    #[test]
    fn final_counts_are_read() {
        assert_eq!(
            parse_runs("Done 1234567 runs in 61 second(s)"),
            Some(1_234_567)
        );
        assert_eq!(parse_runs("stat::number_of_executed_units: 42"), Some(42));
        assert_eq!(parse_runs("#1024 pulse cov: 10 ft: 20"), None);
        assert_eq!(
            parse_seconds("Done 1234567 runs in 61 second(s)"),
            Some(61.0)
        );
        assert_eq!(parse_seconds("stat::number_of_executed_units: 42"), None);
    }
}
