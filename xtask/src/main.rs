//! `cargo xtask …`: the project's automation, as one small Rust binary
//! (the `xtask` alias lives in `.cargo/config.toml`).
//!
//! This file owns argument dispatch and the usage text. Each subcommand
//! lives in its own module and is a plain function taking the remaining
//! arguments, so a new one (`bench set`, `fuzz`, `package`, `vagrant`, …) is
//! one module plus one line in [`main`]. It deliberately uses no argument
//! parsing library: the subcommands take few flags, and xtask is rebuilt on
//! every fresh checkout.

mod bench;
mod demo;
mod fuzz;
mod netns;
mod package;
mod test;
mod util;
mod vagrant;

use std::process::ExitCode;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  test [--no-vm] [--quick]   as root: install missing tools, then fmt, clippy,
                             build and the whole test suite (CI runs this)
  demo                       show autoblock's main job in throwaway network
                             namespaces (nothing touches this machine's firewall)
  bench chain [--count N] [--rounds R]
                             autoblock vs iptables-restore vs nft -f: load N
                             (100000) /32 DROP rules, unblock one; R rounds
                             (1) report medians
  bench set [--count N] [--rounds R]
                             timed set loads, autoblock vs nft -f vs ipset
                             restore vs one raw batch: N (1000000) IPv4,
                             N/10 IPv6, N/10 mixed prefixes
  bench packet [--count N] [--rounds R]
                             µs per loopback UDP packet: no rules, set layout
                             at 1M, chain layout at 1k and 10k; N (100000)
                             packets per repetition, R (9) repetitions
  bench churn [--seconds S]  autoblock::Service under 1, 16, 256 tasks of timed
                             block/unblock, S (10) seconds each: ops/s, p50/p99/max
                             latency, vs an `nft add element` loop
  bench crowdsec [--count N] [--skip-peer]
                             CrowdSec bouncer: start to N (100000) LAPI decisions
                             enforced and peak RSS, vs crowdsec-firewall-bouncer
  bench detect [--lines N] [--peer-lines M] [--attacks K]
                             log lines/s: autoblock scan on N (2000000) generated
                             sshd lines vs fail2ban-regex and sshguard's parser on
                             the first M (200000); then burst and latency of
                             `autoblock run` (set layout) in a namespace
  fuzz [--seconds N] [TARGET…]
                             run the cargo-fuzz targets of fuzz/ (parse, edit)
                             N (60) seconds each and print their run counts
  measure [--netns] -- CMD…  run CMD, print its wall time and peak RSS
                             (--netns: inside a fresh network namespace)
  vagrant box [--rebuild]    build (or take from the cache) and register the
                             debian12 Vagrant box from Debian packages
  vagrant [--box debian12|alma9|alma8] [--keep] [--scenarios-only]
                             the end-to-end suite and the reboot scenarios in a
                             VM (libvirt in a private network namespace);
                             --scenarios-only skips the suite (refused under CI)
  vagrant clean              tear down a VM kept with --keep
  package [--out DIR]        the .deb and .rpm (cargo-deb, cargo-generate-rpm;
                             installed once if missing) with the release binary,
                             units, man pages, completions and default config
  help                       this text";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<ExitCode> {
    let Some((command, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    match command.as_str() {
        "test" => test::run(rest),
        "demo" => demo::run(rest),
        "fuzz" => fuzz::run(rest),
        "bench" => bench::run(rest),
        "measure" => bench::measure_command(rest),
        "package" => package::run(rest),
        "vagrant" => vagrant::run(rest),
        netns::WRAPPER => netns::wrapper_main(rest).map(|()| ExitCode::SUCCESS),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}
