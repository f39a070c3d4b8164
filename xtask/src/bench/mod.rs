//! `cargo xtask bench …` and `cargo xtask measure`: the benchmark frame.
//!
//! A benchmark is a list of [`Scenario`]s; a scenario is a script of
//! [`Step`]s run one after another in ONE fresh network namespace of its own
//! (setup, the measured command, checks), each step timed and its peak RSS
//! taken from `wait4`. A new benchmark (`bench set`, `bench packet`, `bench
//! churn`, `bench detect`) is a module that builds scenarios and prints a
//! comparison from their [`StepResult`]s.
//!
//! It deliberately measures whole commands from outside (spawn to reap), the
//! way an administrator experiences them, and never runs anything in this
//! machine's own namespace.

mod chain;
mod churn;
mod crowdsec;
mod detect;
mod packet;
mod set;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

pub use crowdsec::install_packages as install_crowdsec;

use crate::netns::{measure, Measured, Netns};
use crate::util::{require_root, show_duration, show_kb};

/// Runs `cargo xtask bench <name> …`.
pub fn run(args: &[String]) -> Result<ExitCode> {
    let Some((name, rest)) = args.split_first() else {
        bail!("usage: cargo xtask bench chain|set|packet [--count N] [--rounds R]");
    };
    match name.as_str() {
        "chain" => chain::run(rest),
        "churn" => churn::run(rest),
        "crowdsec" => crowdsec::run(rest),
        "detect" => detect::run(rest),
        "set" => set::run(rest),
        "packet" => packet::run(rest),
        other => bail!(
            "unknown benchmark `{other}` (available: chain, set, packet, churn, detect, crowdsec)"
        ),
    }
}

/// Runs `cargo xtask measure [--netns] -- CMD…`: prints wall time and peak
/// RSS of one command, optionally inside a fresh network namespace.
pub fn measure_command(args: &[String]) -> Result<ExitCode> {
    let (flags, argv) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (&[][..], args),
    };
    let in_netns = match flags {
        [] => false,
        [flag] if flag == "--netns" => true,
        _ => bail!("usage: cargo xtask measure [--netns] -- CMD [ARGS…]"),
    };
    if argv.is_empty() {
        bail!("usage: cargo xtask measure [--netns] -- CMD [ARGS…]");
    }
    let measured = if in_netns {
        require_root("measure --netns")?;
        Netns::new()?.measure(argv)?
    } else {
        measure(argv)?
    };
    print!("{}", measured.stdout);
    eprint!("{}", measured.stderr);
    eprintln!(
        "measure: {} wall, {} user, {} sys, {} peak RSS, {}",
        show_duration(measured.wall),
        show_duration(measured.user),
        show_duration(measured.sys),
        show_kb(measured.max_rss_kb),
        measured.status
    );
    Ok(if measured.status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What must hold after a step's command succeeded, checked by an
/// unmeasured command; a step whose check fails counts as failed, so a fast
/// failure can never pass for a fast result.
#[derive(Debug, Clone)]
pub enum Check {
    /// Only that the command exits successfully.
    Success,
    /// That `argv` succeeds and prints exactly `rules` lines starting with
    /// `-A ` (an `iptables -S CHAIN` listing with that many rules).
    RuleCount {
        /// The listing command.
        argv: Vec<String>,
        /// The expected number of rules.
        rules: usize,
    },
    /// That `argv` succeeds and `parse` reads exactly `expected` from its
    /// stdout (an element count, say).
    Count {
        /// The counting command.
        argv: Vec<String>,
        /// Reads the count from the command's stdout.
        parse: fn(&str) -> Option<u64>,
        /// The expected count.
        expected: u64,
    },
}

impl Check {
    /// `iptables-nft -S CHAIN` must list exactly `rules` rules.
    pub fn iptables_rules(chain: &str, rules: usize) -> Check {
        Check::RuleCount {
            argv: ["iptables-nft", "-S", chain].map(String::from).to_vec(),
            rules,
        }
    }
}

/// One command of a scenario.
#[derive(Debug)]
pub struct Step {
    /// Label in the report.
    pub label: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// What must hold afterwards.
    pub check: Check,
}

impl Step {
    /// A step that must succeed.
    pub fn new(label: impl Into<String>, argv: &[&str]) -> Step {
        Step {
            label: label.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            check: Check::Success,
        }
    }

    /// The same step with another check.
    pub fn checking(mut self, check: Check) -> Step {
        self.check = check;
        self
    }
}

/// A script of steps run in one fresh network namespace.
#[derive(Debug)]
pub struct Scenario {
    /// Name in the report.
    pub name: String,
    /// The steps, in order; the first failing step ends the scenario.
    pub steps: Vec<Step>,
}

/// The outcome of one step.
#[derive(Debug)]
pub struct StepResult {
    /// The step's label.
    pub label: String,
    /// The measurement, or why the step failed or did not run.
    pub measured: Result<Measured, String>,
}

impl StepResult {
    /// Wall time, if the step succeeded.
    pub fn wall(&self) -> Option<Duration> {
        self.measured.as_ref().ok().map(|m| m.wall)
    }

    /// Peak RSS in kilobytes, if the step succeeded.
    pub fn rss(&self) -> Option<u64> {
        self.measured.as_ref().ok().map(|m| m.max_rss_kb)
    }
}

impl Scenario {
    /// Runs every step in a fresh namespace; after a failure the remaining
    /// steps are reported as not run. The ruleset is flushed (unmeasured)
    /// before the namespace goes, so its teardown cannot slow the next
    /// scenario.
    pub fn run(&self) -> Result<Vec<StepResult>> {
        println!("  {} …", self.name);
        let ns = Netns::new()?;
        let mut results = Vec::new();
        let mut failed = false;
        for step in &self.steps {
            if failed {
                results.push(StepResult {
                    label: step.label.clone(),
                    measured: Err("not run (an earlier step failed)".to_owned()),
                });
                continue;
            }
            let measured = run_step(&ns, step);
            if let Err(why) = &measured {
                println!("    {}: FAILED: {why}", step.label);
                failed = true;
            }
            results.push(StepResult {
                label: step.label.clone(),
                measured,
            });
        }
        let _ = ns.check(&["nft", "flush", "ruleset"], "");
        Ok(results)
    }
}

fn run_step(ns: &Netns, step: &Step) -> Result<Measured, String> {
    let measured = ns
        .measure(&step.argv)
        .map_err(|e| format!("`{}`: {e:#}", short(&step.argv)))?;
    if !measured.status.success() {
        let stderr = measured.stderr.trim();
        let first: String = stderr.lines().take(3).collect::<Vec<_>>().join(" / ");
        return Err(format!(
            "`{}` {}: {first}",
            short(&step.argv),
            measured.status
        ));
    }
    if let Check::RuleCount { argv, rules } = &step.check {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let listing = ns
            .check(&argv, "")
            .map_err(|e| format!("check after the step: {e:#}"))?;
        let got = listing.lines().filter(|l| l.starts_with("-A ")).count();
        if got != *rules {
            return Err(format!(
                "check after the step: `{}` lists {got} rules, expected {rules}",
                argv.join(" ")
            ));
        }
    }
    if let Check::Count {
        argv,
        parse,
        expected,
    } = &step.check
    {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let output = ns
            .check(&argv, "")
            .map_err(|e| format!("check after the step: {e:#}"))?;
        let got = parse(&output);
        if got != Some(*expected) {
            return Err(format!(
                "check after the step: `{}` counts {}, expected {expected}",
                argv.join(" "),
                got.map_or_else(
                    || format!("nothing ({:?})", output.trim()),
                    |n| n.to_string()
                )
            ));
        }
    }
    Ok(measured)
}

/// A command line shortened for messages (long paths stay, but at most a
/// few arguments).
fn short(argv: &[String]) -> String {
    let mut text = argv.iter().take(8).cloned().collect::<Vec<_>>().join(" ");
    if argv.len() > 8 {
        text.push_str(" …");
    }
    text
}

/// Folds the results of several rounds of the same scenarios into one
/// result per step label: the median wall time and the highest peak RSS, or
/// the first failure of any round.
pub fn merge_rounds(rounds: &[Vec<StepResult>]) -> Vec<StepResult> {
    let Some(first) = rounds.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|step| {
            let same: Vec<&StepResult> = rounds
                .iter()
                .flat_map(|round| round.iter().filter(|r| r.label == step.label))
                .collect();
            if let Some(failed) = same.iter().find_map(|r| r.measured.as_ref().err()) {
                return StepResult {
                    label: step.label.clone(),
                    measured: Err(failed.clone()),
                };
            }
            let mut ok: Vec<&Measured> = same
                .iter()
                .filter_map(|r| r.measured.as_ref().ok())
                .collect();
            ok.sort_by_key(|m| m.wall);
            let max_rss_kb = ok.iter().map(|m| m.max_rss_kb).max().unwrap_or(0);
            let measured = ok.get(ok.len() / 2).map(|median| Measured {
                max_rss_kb,
                ..(*median).clone()
            });
            StepResult {
                label: step.label.clone(),
                measured: measured.ok_or_else(|| "no result".to_owned()),
            }
        })
        .collect()
}

/// The 1-minute load average, for judging how busy the machine was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// A ratio with two decimals, or `-` when it could not be computed.
pub fn show_ratio(r: Option<f64>) -> String {
    r.map_or("-".to_owned(), |r| format!("{r:.2}"))
}

/// Whether a target was met, for the report.
pub fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    }
}

/// One row of a report table: label, wall, peak RSS (or the failure).
pub fn row(label: &str, result: Option<&StepResult>) -> String {
    let mut line = format!("  {label:<46}");
    match result.map(|r| &r.measured) {
        Some(Ok(m)) => {
            let _ = write!(
                line,
                "{:>10}  {:>8}",
                show_duration(m.wall),
                show_kb(m.max_rss_kb)
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
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn ok(label: &str, ms: u64, kb: u64) -> StepResult {
        StepResult {
            label: label.to_owned(),
            measured: Ok(Measured {
                wall: Duration::from_millis(ms),
                max_rss_kb: kb,
                user: Duration::ZERO,
                sys: Duration::ZERO,
                status: ExitStatus::from_raw(0),
                stdout: String::new(),
                stderr: String::new(),
            }),
        }
    }

    #[test]
    fn rounds_merge_to_median_wall_and_highest_rss_or_the_failure() {
        let failed = StepResult {
            label: "b".to_owned(),
            measured: Err("boom".to_owned()),
        };
        let rounds = vec![
            vec![ok("a", 30, 1), ok("b", 1, 1)],
            vec![ok("a", 10, 5), failed],
            vec![ok("a", 20, 2), ok("b", 1, 1)],
        ];
        let merged = merge_rounds(&rounds);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].wall(), Some(Duration::from_millis(20)));
        assert_eq!(merged[0].rss(), Some(5));
        assert_eq!(
            merged[1].measured.as_ref().err().map(String::as_str),
            Some("boom")
        );
    }
}
