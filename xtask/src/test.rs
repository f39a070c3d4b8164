//! `cargo xtask test`: the project's one test command (CI runs it).
//!
//! Stages: tool prerequisites, `cargo fmt --check`, `cargo clippy -D
//! warnings`, `cargo build` of everything (which builds the `autoblock`
//! binary the end-to-end tests run) and `cargo test --workspace`. Every
//! stage runs even when an earlier one failed (except the tests after a
//! failed build), so one run shows every problem; the summary lists each
//! stage and the last line totals the tests as `tests: N passed, M failed`.
//!
//! The VM stage (`cargo xtask vagrant` on the debian12 box: the end-to-end
//! suite and the reboot scenarios in a real guest) runs last unless
//! `--no-vm`; a VM that cannot be built or booted fails the stage.
//!
//! It deliberately does not hide anything under CI: `--quick` is refused
//! there.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util::{cargo, ensure_tools, find_program, is_ci, require_root, show_duration, Flags};

#[derive(Debug)]
enum Outcome {
    Ok,
    Failed(String),
    Skipped(&'static str),
}

#[derive(Debug)]
struct Stage {
    name: &'static str,
    outcome: Outcome,
    took: Duration,
}

/// Totals from the `test result:` lines of `cargo test`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// Runs `cargo xtask test [--no-vm] [--quick]`.
pub fn run(args: &[String]) -> Result<ExitCode> {
    let flags = Flags::parse(args, &["--no-vm", "--quick"], &[])?;
    let quick = flags.has("--quick");
    if quick && is_ci() {
        bail!("--quick skips fmt and clippy, which CI never skips: run `cargo xtask test`");
    }
    require_root("cargo xtask test")?;

    let mut stages = Vec::new();
    let mut totals = Totals::default();
    stage(
        &mut stages,
        "tools (firewall tools, sshd, journal-remote, rpm, crowdsec)",
        || {
            ensure_tools()?;
            crate::bench::install_crowdsec()?;
            show_versions();
            Ok(())
        },
    );
    if quick {
        for name in ["cargo fmt --all --check", "cargo clippy -D warnings"] {
            println!("\n==> {name}: SKIPPED (--quick)");
        }
    } else {
        stage(&mut stages, "cargo fmt --all --check", || {
            status(cargo().args(["fmt", "--all", "--check"]))
        });
        stage(&mut stages, "cargo clippy -D warnings", || {
            status(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        });
    }
    let built = stage(&mut stages, "cargo build --workspace --all-targets", || {
        status(cargo().args(["build", "--workspace", "--all-targets"]))
    });
    const TESTS: &str = "cargo test --workspace --no-fail-fast";
    if built {
        stage(&mut stages, TESTS, || {
            let ok;
            (totals, ok) = cargo_test()?;
            if !ok {
                bail!("some tests failed");
            }
            Ok(())
        });
    } else {
        stages.push(Stage {
            name: TESTS,
            outcome: Outcome::Skipped("the build failed"),
            took: Duration::ZERO,
        });
    }
    const VM: &str = "VM (end-to-end suite + reboot scenarios in a guest)";
    if flags.has("--no-vm") || !built {
        stages.push(Stage {
            name: VM,
            outcome: Outcome::Skipped(if built { "--no-vm" } else { "the build failed" }),
            took: Duration::ZERO,
        });
    } else {
        // Last, as it is the slowest; a VM that cannot be built or booted
        // is a failure, never a skip.
        stage(&mut stages, VM, || {
            let report = crate::vagrant::run_vm("debian12", false)?;
            if report.failed() > 0 {
                bail!("{}", report.summary());
            }
            Ok(())
        });
    }

    println!("\n==> summary");
    if quick {
        println!("  SKIPPED  cargo fmt, cargo clippy (--quick)");
    }
    let mut failed = false;
    for stage in &stages {
        match &stage.outcome {
            Outcome::Ok => println!("  ok       {} ({})", stage.name, show_duration(stage.took)),
            Outcome::Failed(why) => {
                failed = true;
                println!(
                    "  FAILED   {} ({}): {why}",
                    stage.name,
                    show_duration(stage.took)
                );
            }
            Outcome::Skipped(why) => println!("  SKIPPED  {}: {why}", stage.name),
        }
    }
    if totals.ignored > 0 {
        println!("  note: {} tests are #[ignore]d", totals.ignored);
    }
    println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs one stage, announcing it and recording its outcome and duration;
/// returns whether it succeeded.
fn stage(stages: &mut Vec<Stage>, name: &'static str, f: impl FnOnce() -> Result<()>) -> bool {
    println!("\n==> {name}");
    let started = Instant::now();
    let outcome = match f() {
        Ok(()) => Outcome::Ok,
        Err(e) => Outcome::Failed(format!("{e:#}")),
    };
    let ok = matches!(outcome, Outcome::Ok);
    stages.push(Stage {
        name,
        outcome,
        took: started.elapsed(),
    });
    ok
}

/// Prints the kernel and tool versions the tests run against (their
/// behaviour is what the end-to-end tests compare with).
fn show_versions() {
    for argv in [
        &["uname", "-r"][..],
        &["iptables-nft", "--version"],
        &["nft", "--version"],
        &["ip", "-V"],
    ] {
        let program = find_program(argv[0]).unwrap_or_else(|| argv[0].into());
        let text = Command::new(program)
            .args(&argv[1..])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|e| format!("cannot run: {e}"));
        println!("  {}: {text}", argv[0]);
    }
}

/// Runs a command with inherited output; fails unless it succeeds.
fn status(command: &mut Command) -> Result<()> {
    let status = command.status().context("cannot start cargo")?;
    if !status.success() {
        bail!("exited with {status}");
    }
    Ok(())
}

/// Runs `cargo test --workspace --no-fail-fast` (every test binary runs,
/// so one failure does not hide another), echoing its stdout while totalling its
/// `test result:` lines. Returns the totals and whether it succeeded.
fn cargo_test() -> Result<(Totals, bool)> {
    let mut child = cargo()
        .args(["test", "--workspace", "--no-fail-fast"])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo test")?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let mut totals = Totals::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        add_result_line(&mut totals, &line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    Ok((totals, status.success()))
}

/// Adds the counts of one `test result: ok. 3 passed; 0 failed; 1 ignored;
/// …` line (any other line is ignored).
fn add_result_line(totals: &mut Totals, line: &str) {
    let Some(rest) = line.trim().strip_prefix("test result: ") else {
        return;
    };
    for part in rest.split(';') {
        let words: Vec<&str> = part.split_whitespace().collect();
        let (count, what) = match words.as_slice() {
            [.., count, what] => (count.parse::<u64>(), *what),
            _ => continue,
        };
        let Ok(count) = count else { continue };
        match what {
            "passed" => totals.passed += count,
            "failed" => totals.failed += count,
            "ignored" => totals.ignored += count,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_totalled() {
        let mut totals = Totals::default();
        for line in [
            "test result: ok. 14 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.78s",
            "running 3 tests",
            "test result: FAILED. 2 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "test something ... ok",
        ] {
            add_result_line(&mut totals, line);
        }
        assert_eq!(
            totals,
            Totals {
                passed: 16,
                failed: 1,
                ignored: 2
            }
        );
    }
}
