//! The `autoblock` command: thin glue between the command line, the controller library and
//! (for the chain layout) the sysconfig mirror.
//!
//! It parses arguments and files, calls the controller, prints results, and maps errors to
//! exit codes. It never executes another program.

use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result};
use autoblock::{Action, Config, Controller, Layout, Listed, Net};
use clap::{Args, Parser, Subcommand, ValueEnum};

mod cmd_check;
mod cmd_config;
mod cmd_gen;
mod cmd_restore;
mod cmd_run;
mod cmd_scan;
mod input;
mod mirror;
mod notify;
mod progress;
mod setfile;
mod state;

const EXIT_HELP: &str = "\
Exit codes:
  0  success (also when there was nothing to change)
  1  runtime or kernel error (nothing was applied unless the message says otherwise)
  2  bad input: an invalid address, prefix, duration, file line or option";

/// Block abusive source addresses in nf_tables, directly over netlink.
#[derive(Debug, Parser)]
#[command(name = "autoblock", version, about, after_help = EXIT_HELP)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LayoutArg {
    /// iptables-compatible chain INPUT-AUTO in ip/ip6 filter.
    Chain,
    /// nf_tables sets with kernel timeouts in table inet autoblock.
    Set,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ActionArg {
    Drop,
    Reject,
    Log,
    LogDrop,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum HookArg {
    /// Traffic addressed to this host, just before iptables' filter table.
    Input,
    /// Before connection tracking (blocked sources cost no conntrack entry); also drops
    /// forwarded traffic.
    Prerouting,
}

#[derive(Debug, Args)]
struct Global {
    /// Ruleset layout.
    #[arg(long, global = true, value_enum, default_value = "chain")]
    layout: LayoutArg,
    /// Name of autoblock's chain (chain layout).
    #[arg(long, global = true, default_value = "INPUT-AUTO")]
    chain: String,
    /// What to do with packets from blocked sources.
    #[arg(long, global = true, value_enum, default_value = "drop")]
    action: ActionArg,
    /// Prefix of log lines (log, log-drop).
    #[arg(long, global = true, default_value = "autoblock: ")]
    log_prefix: String,
    /// Never block these networks (in addition to loopback and this host's addresses).
    #[arg(long = "allow", global = true, value_name = "CIDR")]
    allow: Vec<String>,
    /// Do not mirror the chain into the sysconfig files.
    #[arg(long, global = true)]
    no_mirror: bool,
    /// Directory of the iptables/ip6tables files the chain layout is mirrored to.
    #[arg(long, global = true, default_value = "/etc/sysconfig")]
    sysconfig_dir: String,
    /// Do not use DESTROY messages even if the kernel has them (the path older kernels take).
    #[arg(long, global = true, hide = true)]
    no_destroy: bool,
    /// Hook of the set layout's base chain.
    #[arg(long, global = true, value_enum, default_value = "input")]
    hook: HookArg,
    /// Priority of the set layout's base chain (default: -1 for input, just before
    /// iptables' filter; -300, raw, for prerouting).
    #[arg(long, global = true, allow_hyphen_values = true, value_name = "N")]
    priority: Option<i32>,
    /// Hard limit of entries per set (set layout). Without it sets grow as needed; with it a
    /// block that does not fit fails and applies nothing.
    #[arg(long, global = true, value_name = "N")]
    max_entries: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the structure: chains and the jump at the head of INPUT (ip and ip6).
    Init,
    /// Block addresses or prefixes.
    Block(BlockArgs),
    /// Unblock addresses or prefixes.
    Unblock(UnblockArgs),
    /// List blocked entries with their packet/byte counters.
    ///
    /// The set layout streams the kernel's dump as it arrives, in constant memory; but the
    /// kernel's cost of a dump grows with the square of the set's size: 863,516 elements
    /// took 40 s and 1,000,000 about a minute on an idle 2-core host (Linux 6.18). Use
    /// --count for the numbers only: it reads the sets' element counts without dumping
    /// them (kernels >= 6.16; older kernels need the dump to count).
    List {
        /// Machine-readable output, one JSON object per entry.
        #[arg(long)]
        json: bool,
        /// Print only the number of entries, per set and in total (set layout: expired
        /// entries the kernel has not collected yet are counted).
        #[arg(long)]
        count: bool,
    },
    /// Remove every entry, keep the structure.
    Flush,
    /// Remove everything autoblock created.
    Remove,
    /// Write the chain as the kernel holds it into the sysconfig files (chain layout), or
    /// with --file the live bans into a ban file (either layout; the set layout's boot state).
    ///
    /// The set layout reads the bans with the kernel's set dump, whose cost grows with the
    /// square of the set's size: about a minute for 1,000,000 bans (see `list`).
    Save(cmd_restore::SaveArgs),
    /// Put saved bans back: the sysconfig files' chain in one transaction (chain layout), or
    /// a ban file written by `save --file` (--file). Expired entries are dropped.
    Restore(cmd_restore::RestoreArgs),
    /// Compare the kernel with the sysconfig files (or --file); exit 0 in step, 1 different.
    Check(cmd_check::CheckArgs),
    /// Find authentication failures in a log file (or what a jail would have banned).
    Scan(cmd_scan::ScanArgs),
    /// Run the daemon: follow logs, ban abusive sources, keep the kernel in step.
    Run(cmd_run::RunArgs),
    /// Daemon configuration files.
    Config {
        #[command(subcommand)]
        cmd: cmd_config::ConfigCmd,
    },
    /// Show what is in place.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write the manual pages or shell completions (used when packaging).
    #[command(hide = true)]
    Gen(cmd_gen::GenArgs),
}

#[derive(Debug, Args)]
struct BlockArgs {
    /// Addresses or prefixes (ADDR or ADDR/LEN).
    addrs: Vec<String>,
    /// Read entries from FILE ('-' = standard input), one per line:
    /// ADDR[/LEN] [timeout=DURATION] [comment=TEXT]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<String>,
    /// Comment stored with each entry (shown by iptables as -m comment).
    #[arg(long)]
    comment: Option<String>,
    /// Block for this long (e.g. 10m, 1h, 7d).
    #[arg(long, value_parser = input::parse_duration)]
    timeout: Option<std::time::Duration>,
    /// Clear host bits of prefixes instead of refusing them.
    #[arg(long)]
    mask: bool,
    /// Skip invalid lines of the file (they are counted) instead of refusing the whole file.
    #[arg(long)]
    skip_invalid: bool,
}

#[derive(Debug, Args)]
struct UnblockArgs {
    /// Addresses or prefixes.
    addrs: Vec<String>,
    /// Read entries from FILE ('-' = standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<String>,
    /// Clear host bits of prefixes instead of refusing them.
    #[arg(long)]
    mask: bool,
    /// Skip invalid lines of the file.
    #[arg(long)]
    skip_invalid: bool,
}

/// An error that is the user's input (exit code 2).
#[derive(Debug)]
struct BadInput(String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for BadInput {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon tells what it does; the other commands only warn.
    let default_log = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AUTOBLOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("autoblock: {e:#}");
            let input = e.downcast_ref::<BadInput>().is_some()
                || e.downcast_ref::<autoblock::InputError>().is_some()
                || e.downcast_ref::<autoblock::Error>()
                    .is_some_and(|x| x.is_input());
            ExitCode::from(if input { 2 } else { 1 })
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn config(g: &Global) -> Result<Config> {
    let mut allow = Vec::new();
    for a in &g.allow {
        allow.push(Net::parse(a, false).map_err(|e| BadInput(format!("--allow: {e}")))?);
    }
    let mut cfg = Config::default()
        .layout(match g.layout {
            LayoutArg::Chain => Layout::Chain,
            LayoutArg::Set => Layout::Set,
        })
        .chain(g.chain.clone())
        .action(match g.action {
            ActionArg::Drop => Action::Drop,
            ActionArg::Reject => Action::Reject,
            ActionArg::Log => Action::Log,
            ActionArg::LogDrop => Action::LogDrop,
        })
        .log_prefix(g.log_prefix.clone())
        .allow(allow);
    if g.no_destroy {
        cfg = cfg.use_destroy(false);
    }
    let hook = match g.hook {
        HookArg::Input => autoblock::config::SetHook::Input,
        HookArg::Prerouting => autoblock::config::SetHook::Prerouting,
    };
    cfg = cfg.set_hook(hook, g.priority);
    if let Some(n) = g.max_entries {
        cfg = cfg.max_entries(n);
    }
    cfg.validate().map_err(|e| BadInput(e.to_string()))?;
    Ok(cfg)
}

fn entries_for(
    addrs: &[String],
    file: Option<&str>,
    skip_invalid: bool,
    d: &input::Defaults,
) -> Result<Vec<autoblock::Entry>> {
    let mut entries = input::from_args(addrs, d).map_err(|e| BadInput(format!("{e:#}")))?;
    if let Some(path) = file {
        let (mut more, bad) = input::from_file(path, d)?;
        if !bad.is_empty() {
            if skip_invalid {
                eprintln!(
                    "autoblock: skipped {} invalid line(s) of {path}:\n{}",
                    bad.len(),
                    input::describe_bad(path, &bad)
                );
            } else {
                return Err(BadInput(format!(
                    "{} invalid line(s) in {path}; nothing was applied (use --skip-invalid to skip them):\n{}",
                    bad.len(),
                    input::describe_bad(path, &bad).trim_end()
                ))
                .into());
            }
        }
        entries.append(&mut more);
    }
    input::require_some(&entries).map_err(|e| BadInput(e.to_string()))?;
    Ok(entries)
}

fn run(cli: Cli) -> Result<()> {
    let cfg = config(&cli.global)?;
    let g = &cli.global;
    let mirrored = matches!(g.layout, LayoutArg::Chain) && !g.no_mirror;
    if cmd_run::via_daemon(&cli.command, &mut std::io::stdout().lock())? {
        return Ok(());
    }
    let guard = match cli.command {
        Command::Init
        | Command::Block(_)
        | Command::Unblock(_)
        | Command::Flush
        | Command::Remove
        | Command::Restore(_)
        | Command::Save(cmd_restore::SaveArgs { file: None }) => {
            mirror::prepare(&g.sysconfig_dir, &g.chain, mirrored)?
        }
        _ => None,
    };
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Init => {
            let mut ctl = Controller::open(cfg)?;
            ctl.init()?;
            if let Some(gd) = guard {
                gd.write(&mut ctl, false)?;
            }
            writeln!(out, "autoblock: structure in place")?;
        }
        Command::Block(a) => {
            let d = input::Defaults {
                comment: a.comment.clone(),
                timeout: a.timeout,
                mask: a.mask,
            };
            if let (LayoutArg::Set, Some(path)) = (g.layout, a.file.as_deref()) {
                // The set layout streams the file into the kernel's batch.
                input::block_file(cfg, &a.addrs, path, a.skip_invalid, &d, &mut out)?;
                out.flush().context("writing output")?;
                return Ok(());
            }
            let entries = entries_for(&a.addrs, a.file.as_deref(), a.skip_invalid, &d)?;
            let mut ctl = state::open(cfg)?;
            let r = ctl.block(&entries)?;
            if let Some(gd) = guard {
                gd.write(&mut ctl, false)?;
            }
            state::keep(&ctl);
            for w in &r.warnings {
                eprintln!("autoblock: warning: {w}");
            }
            writeln!(
                out,
                "blocked {} new, {} updated, {} already blocked",
                r.changed.len(),
                r.updated.len(),
                r.unchanged.len()
            )?;
        }
        Command::Unblock(a) => {
            let d = input::Defaults {
                mask: a.mask,
                ..input::Defaults::default()
            };
            let entries = entries_for(&a.addrs, a.file.as_deref(), a.skip_invalid, &d)?;
            let nets: Vec<Net> = entries.iter().map(|e| e.net).collect();
            let mut ctl = state::open(cfg)?;
            let r = ctl.unblock(&nets)?;
            if let Some(gd) = guard {
                gd.write(&mut ctl, false)?;
            }
            state::keep(&ctl);
            writeln!(
                out,
                "unblocked {}, {} were not blocked",
                r.changed.len(),
                r.unchanged.len()
            )?;
        }
        Command::List { json, count } => {
            let mut ctl = Controller::open(cfg)?;
            if count {
                input::print_counts(&mut ctl, json, &mut out)?;
            } else if matches!(g.layout, LayoutArg::Set) {
                if !json {
                    print_list(&mut out, &[], false)?;
                }
                let mut w = std::io::BufWriter::with_capacity(1 << 16, &mut out);
                let mut failed = None;
                ctl.for_each_listed(|l| {
                    if failed.is_none() {
                        failed = print_rows(&mut w, std::slice::from_ref(&l), json).err();
                        if failed.as_ref().is_some_and(is_broken_pipe) {
                            // Nobody reads any more: end now rather than finish the dump.
                            std::process::exit(0);
                        }
                    }
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
                w.flush().context("writing output")?;
            } else {
                let list = ctl.list()?;
                print_list(&mut out, &list, json)?;
            }
        }
        Command::Flush => {
            let mut ctl = Controller::open(cfg)?;
            let n = ctl.flush()?;
            state::keep(&ctl);
            if let Some(gd) = guard {
                gd.write(&mut ctl, false)?;
            }
            writeln!(out, "removed {n} rule(s); the chain and the jump stay")?;
        }
        Command::Remove => {
            let mut ctl = Controller::open(cfg)?;
            ctl.remove()?;
            state::keep(&ctl);
            if let Some(gd) = guard {
                gd.write(&mut ctl, true)?;
            }
            writeln!(out, "removed autoblock's chain and jump")?;
        }
        Command::Save(cmd_restore::SaveArgs { file: Some(path) }) => {
            cmd_restore::save_file(cfg, &path, &mut out)?
        }
        Command::Restore(a) => cmd_restore::restore(cfg, &a, guard, &mut out)?,
        Command::Check(a) => cmd_check::run(cfg, g, &a, &mut out)?,
        Command::Scan(a) => cmd_scan::run(&a, &mut out)?,
        Command::Save(_) => {
            let mut ctl = Controller::open(cfg)?;
            match guard {
                Some(gd) => {
                    gd.write(&mut ctl, false)?;
                    writeln!(out, "wrote the chain to {}/iptables and ip6tables", g.sysconfig_dir)?;
                }
                None => {
                    return Err(BadInput(
                        "save writes the chain layout's sysconfig files; it needs --layout chain and no --no-mirror".into(),
                    )
                    .into())
                }
            }
        }
        Command::Run(a) => cmd_run::run(&a)?,
        Command::Config { cmd } => cmd_config::run(&cmd, &mut out)?,
        Command::Status { json } => {
            let mut ctl = Controller::open(cfg)?;
            let st = ctl.status()?;
            if json {
                let v: Vec<_> = st
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "family": match s.family { autoblock::IpFamily::V4 => "ipv4", autoblock::IpFamily::V6 => "ipv6" },
                            "chain_exists": s.chain_exists,
                            "jump_first": s.jump_first,
                            "entries": s.entries,
                            "foreign_rules": s.foreign_rules,
                            "packets": s.packets,
                            "bytes": s.bytes,
                            "sets": s.sets.iter().map(|x| serde_json::json!({
                                "name": x.name,
                                "prefix_len": x.prefix_len,
                                "elements": x.elements,
                                "size": x.size,
                                "packets": x.packets,
                                "bytes": x.bytes,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({
                        "layout": match g.layout { LayoutArg::Chain => "chain", LayoutArg::Set => "set" },
                        "families": v,
                    })
                )?;
            } else {
                for s in st {
                    let fam = match s.family {
                        autoblock::IpFamily::V4 => "ipv4",
                        autoblock::IpFamily::V6 => "ipv6",
                    };
                    if matches!(g.layout, LayoutArg::Set) {
                        writeln!(
                            out,
                            "{fam}: table inet {} chain {} entries {} packets {} bytes {}",
                            g_table(g),
                            if s.chain_exists { "present" } else { "absent" },
                            s.entries,
                            s.packets,
                            s.bytes
                        )?;
                        for set in &s.sets {
                            writeln!(
                                out,
                                "  set {:<10} /{:<3} elements {:>9} size {:>9} rule {} packets {} bytes {}",
                                set.name,
                                set.prefix_len,
                                set.elements,
                                set.size.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                                if set.has_rule { "present" } else { "missing" },
                                set.packets,
                                set.bytes
                            )?;
                        }
                        continue;
                    }
                    writeln!(
                        out,
                        "{fam}: chain {} jump {} entries {} packets {} bytes {}{}",
                        if s.chain_exists { "present" } else { "absent" },
                        if s.jump_first {
                            "first-in-INPUT"
                        } else {
                            "missing"
                        },
                        s.entries,
                        s.packets,
                        s.bytes,
                        if s.foreign_rules > 0 {
                            format!(" (+{} rules autoblock does not manage)", s.foreign_rules)
                        } else {
                            String::new()
                        }
                    )?;
                }
            }
        }
        Command::Gen(a) => cmd_gen::run(&a, &mut out)?,
    }
    out.flush().context("writing output")?;
    Ok(())
}

/// The set layout's table name (fixed for now; the library makes it configurable).
fn g_table(_g: &Global) -> &'static str {
    "autoblock"
}

fn print_list(out: &mut impl Write, list: &[Listed], json: bool) -> Result<()> {
    if !json {
        writeln!(
            out,
            "{:<43} {:<8} {:>10} {:>12}  {:<22} COMMENT",
            "ENTRY", "ACTION", "PACKETS", "BYTES", "EXPIRES"
        )?;
    }
    print_rows(out, list, json)
}

/// The entries of `list`, without the header.
fn print_rows(out: &mut impl Write, list: &[Listed], json: bool) -> Result<()> {
    let now = SystemTime::now();
    if json {
        for l in list {
            let v = serde_json::json!({
                "net": l.net.to_string(),
                "action": l.action.as_str(),
                "packets": l.packets,
                "bytes": l.bytes,
                "expires": l.expires.map(autoblock::meta::rfc3339),
                "comment": l.comment,
            });
            writeln!(out, "{v}")?;
        }
        return Ok(());
    }
    for l in list {
        let exp = match l.expires {
            None => "never".to_owned(),
            Some(t) if t <= now => format!("{} (expired)", autoblock::meta::rfc3339(t)),
            Some(t) => autoblock::meta::rfc3339(t),
        };
        writeln!(
            out,
            "{:<43} {:<8} {:>10} {:>12}  {:<22} {}",
            l.net.to_string(),
            l.action.as_str(),
            l.packets,
            l.bytes,
            exp,
            l.comment.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}
