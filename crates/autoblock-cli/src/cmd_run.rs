//! `autoblock run`: the daemon (see the autoblock-daemon crate), and the CLI's side of its
//! control socket — while a daemon runs, `block`, `unblock`, `list` and `status` go to it so
//! that its store, the kernel and the mirror never disagree.
//!
//! This file is glue: a tokio runtime, the sysconfig mirror as the daemon's after-change hook
//! (chain layout), and the translation of commands into control requests. The daemon's
//! decisions live in the library.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result};
use autoblock_daemon::config::LayoutName;
use autoblock_daemon::control::{self, BlockEntry, Request};
use clap::Args;

use crate::{BadInput, Command};

/// Environment variable naming the control socket the CLI looks for.
pub const SOCKET_ENV: &str = "AUTOBLOCK_CONTROL_SOCKET";

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (re-read on SIGHUP).
    #[arg(long, default_value = autoblock_daemon::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Decide and log bans, but change neither the ban store nor the kernel.
    #[arg(long)]
    dry_run: bool,
}

/// Runs the daemon until SIGTERM.
pub fn run(a: &RunArgs) -> Result<()> {
    let cfg = autoblock_daemon::Config::load(&a.config).map_err(|e| BadInput(e.to_string()))?;
    let mut opts = autoblock_daemon::daemon::Options::new(&a.config).dry_run(a.dry_run);
    if cfg.layout == LayoutName::Chain && cfg.mirror && !a.dry_run {
        let dir = cfg.sysconfig_dir.display().to_string();
        let chain = cfg.chain.clone();
        let ctl_cfg = cfg.controller_config();
        // Refuse to start on a sysconfig file that does not parse, as the CLI does.
        crate::mirror::prepare(&dir, &chain, true)?;
        opts = opts.after_change(Arc::new(move || {
            let write = || -> Result<()> {
                if let Some(g) = crate::mirror::prepare(&dir, &chain, true)? {
                    let mut ctl = autoblock::Controller::open(ctl_cfg.clone())?;
                    g.write(&mut ctl, false)?;
                }
                Ok(())
            };
            write().map_err(|e| format!("sysconfig mirror: {e:#}"))
        }));
    }
    opts = opts.lifecycle(lifecycle_hook());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(autoblock_daemon::daemon::run(
        opts,
        Some(autoblock_daemon::monitor::start),
    ))?;
    Ok(())
}

/// The daemon's lifecycle as systemd notifications (no-ops outside systemd): READY=1 once
/// it is up, RELOADING=1/READY=1 around a SIGHUP reload, STOPPING=1, and a watchdog
/// keep-alive every half `WatchdogSec=` when the unit asks for one. A failed notification
/// is logged, never fatal.
fn lifecycle_hook() -> autoblock_daemon::daemon::LifecycleHook {
    use autoblock_daemon::daemon::Lifecycle;
    use std::sync::Mutex;
    use std::time::Instant;
    let interval = crate::notify::watchdog_interval();
    let last_ping: Mutex<Option<Instant>> = Mutex::new(None);
    Arc::new(move |event, status| {
        let sent = match event {
            Lifecycle::Ready | Lifecycle::Reloaded => crate::notify::ready(status),
            Lifecycle::Reloading => crate::notify::reloading(),
            Lifecycle::Stopping => crate::notify::stopping(),
            Lifecycle::Alive => {
                let Some(every) = interval else { return };
                let mut last = last_ping.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_some_and(|t| t.elapsed() < every) {
                    return;
                }
                *last = Some(Instant::now());
                crate::notify::watchdog()
            }
            _ => return,
        };
        if let Err(e) = sent {
            tracing::warn!("systemd notification ({event:?}) failed: {e}");
        }
    })
}

fn socket_path() -> PathBuf {
    std::env::var_os(SOCKET_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/autoblock/control.sock"))
}

fn ask(req: &Request) -> Result<Option<serde_json::Value>> {
    let path = socket_path();
    let Some(reply) = control::call(&path, req)? else {
        return Ok(None);
    };
    if reply["ok"] != true {
        let why = reply["error"].as_str().unwrap_or("unknown error");
        anyhow::bail!("the daemon ({}) refused: {why}", path.display());
    }
    Ok(Some(reply))
}

/// Sends `block`, `unblock`, `list` and `status` to a running daemon. Returns `true` when the
/// command was handled there (nothing more to do), `false` when no daemon runs (or, for
/// `status` in text, after printing the daemon's part).
pub fn via_daemon(cmd: &Command, out: &mut impl Write) -> Result<bool> {
    match cmd {
        Command::Block(a) => {
            let d = crate::input::Defaults {
                comment: a.comment.clone(),
                timeout: a.timeout,
                mask: a.mask,
            };
            if !socket_path().exists() {
                return Ok(false);
            }
            let entries = crate::entries_for(&a.addrs, a.file.as_deref(), a.skip_invalid, &d)?;
            let now = SystemTime::now();
            let req = Request::Block {
                entries: entries
                    .iter()
                    .map(|e| BlockEntry {
                        net: format!("{}/{}", e.net.addr(), e.net.prefix_len()),
                        timeout: e.remaining(now).map(|d| d.as_secs().max(1)),
                        comment: e.comment.clone(),
                    })
                    .collect(),
            };
            let Some(r) = ask(&req)? else {
                return Ok(false);
            };
            writeln!(
                out,
                "blocked {} new, {} already blocked (through the running daemon)",
                r["applied"], r["unchanged"]
            )?;
            Ok(true)
        }
        Command::Unblock(a) => {
            let d = crate::input::Defaults {
                mask: a.mask,
                ..crate::input::Defaults::default()
            };
            if !socket_path().exists() {
                return Ok(false);
            }
            let entries = crate::entries_for(&a.addrs, a.file.as_deref(), a.skip_invalid, &d)?;
            let req = Request::Unblock {
                nets: entries
                    .iter()
                    .map(|e| format!("{}/{}", e.net.addr(), e.net.prefix_len()))
                    .collect(),
            };
            let Some(r) = ask(&req)? else {
                return Ok(false);
            };
            writeln!(
                out,
                "unblocked {}, {} were not blocked (through the running daemon)",
                r["removed"], r["unchanged"]
            )?;
            Ok(true)
        }
        Command::List { json, count: false } => {
            let Some(r) = ask(&Request::List)? else {
                return Ok(false);
            };
            let empty = Vec::new();
            let entries = r["entries"].as_array().unwrap_or(&empty);
            for e in entries {
                if *json {
                    writeln!(out, "{e}")?;
                } else {
                    writeln!(
                        out,
                        "{:<43} {:<8} packets {:>10} bytes {:>12} expires {}",
                        e["net"].as_str().unwrap_or(""),
                        e["jail"].as_str().unwrap_or("-"),
                        e["packets"],
                        e["bytes"],
                        e["expires"]
                            .as_u64()
                            .map(|s| humantime::format_rfc3339_seconds(
                                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s)
                            )
                            .to_string())
                            .unwrap_or_else(|| "never".into())
                    )?;
                }
            }
            Ok(true)
        }
        Command::Status { json } => {
            let Some(r) = ask(&Request::Status)? else {
                return Ok(false);
            };
            if *json {
                writeln!(out, "{r}")?;
                return Ok(true);
            }
            let d = &r["daemon"];
            writeln!(
                out,
                "daemon: pid {} layout {} bans active {} (manual {}){}",
                d["pid"],
                d["layout"].as_str().unwrap_or("?"),
                d["bans_active"],
                d["bans_manual"],
                if d["dry_run"] == true { " DRY RUN" } else { "" }
            )?;
            match d["last_heal"].as_object() {
                Some(h) => writeln!(
                    out,
                    "self-heal: {} repair(s), last at {} after {} removed {} (restored {}){}",
                    d["heals"],
                    h["at"]
                        .as_u64()
                        .map(|s| humantime::format_rfc3339_seconds(
                            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s)
                        )
                        .to_string())
                        .unwrap_or_default(),
                    h["by"].as_str().unwrap_or("?"),
                    h["what"].as_str().unwrap_or("?"),
                    h["restored"],
                    if d["heals_suppressed"].as_u64().unwrap_or(0) > 0 {
                        format!(", {} suppressed by the rate limit", d["heals_suppressed"])
                    } else {
                        String::new()
                    }
                )?,
                None => writeln!(
                    out,
                    "self-heal: {}",
                    if d["self_heal"] == true {
                        "on, nothing repaired yet"
                    } else {
                        "off"
                    }
                )?,
            }
            let empty = Vec::new();
            for j in r["jails"].as_array().unwrap_or(&empty) {
                writeln!(
                    out,
                    "jail {}: filter {} lines {} failures {} tracked {} bans active {} (total {})",
                    j["name"].as_str().unwrap_or("?"),
                    j["filter"].as_str().unwrap_or("?"),
                    j["lines"],
                    j["failures"],
                    j["tracked"],
                    j["bans_active"],
                    j["bans_total"]
                )?;
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}
