//! `autoblock scan`: runs a log file (or standard input) through a detection filter and
//! prints each failure it finds, or with `--simulate`, each ban a jail would have decided.
//!
//! Output: one line per detection on stdout (`--json`: one object per line,
//! `{"line": N, "host": "ADDR", "filter": "NAME", "kind": "KIND", "time": "RFC 3339" | null}`,
//! N the 1-based input line; a successful login that forgives earlier failures of the same
//! connection is `"kind": "forgive"` with an extra `"count"`). A summary (lines, failures,
//! distinct hosts, lines skipped and why) goes to stderr. `--simulate` replays the failures
//! through the jail's policy with the lines' own timestamps and prints
//! `{"line": N, "ban": "NET", "time": ..., "bantime_s": S | null, "offence": K}` per ban.
//!
//! It only reads: no kernel, no state directory, no program run. Deliberately not here:
//! following a growing file (the daemon's sources do that), parsing (the detection crate).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use autoblock_daemon::source::{LineSplitter, Piece};
use autoblock_daemon::Config as DaemonConfig;
use autoblock_detect::{
    AllowList, Detection, Event, Filter, Jail, Mode, PolicyState, Scanner, Simulator, Timestamp,
    YearContext, MAX_LINE,
};
use clap::{Args, ValueEnum};

use crate::input::parse_duration;
use crate::BadInput;

/// Options of `autoblock scan`.
#[derive(Debug, Args)]
#[command(after_help = "\
Syslog timestamps without a year get the year that puts them closest before the reference
time (--now; by default the file's modification time, or now for standard input), read in
the local time zone (TZ) unless --utc.

Exit codes:
  0  the input was scanned (whether or not it held failures)
  1  the input could not be read
  2  bad input: an unknown filter, a bad option, or a bad config file")]
pub struct ScanArgs {
    /// The log file to read ('-' = standard input).
    #[arg(value_name = "FILE|-")]
    input: String,
    /// The filter: sshd, mysqld-auth (default: the jail's with --jail, else sshd).
    #[arg(long)]
    filter: Option<String>,
    /// The filter's mode (sshd).
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Replay through a jail's policy and print the bans it would have decided.
    #[arg(long)]
    simulate: bool,
    /// Daemon configuration to take the jail (filter and policy) from.
    #[arg(long, value_name = "FILE", requires = "jail")]
    config: Option<PathBuf>,
    /// The jail of --config to use.
    #[arg(long, value_name = "NAME", requires = "config")]
    jail: Option<String>,
    /// Failures that trigger a ban (--simulate; overrides the jail's).
    #[arg(long)]
    maxretry: Option<u32>,
    /// The window the failures must fall in, e.g. 10m (--simulate).
    #[arg(long, value_parser = parse_duration)]
    findtime: Option<Duration>,
    /// The first ban's duration, e.g. 1h (--simulate).
    #[arg(long, value_parser = parse_duration)]
    bantime: Option<Duration>,
    /// Reference time for years missing from timestamps (RFC 3339).
    #[arg(long, value_name = "TIME")]
    now: Option<String>,
    /// Read timestamps without an offset as UTC instead of local time.
    #[arg(long)]
    utc: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Normal,
    Aggressive,
}

/// Counts for the summary.
#[derive(Debug, Default)]
struct Tally {
    hosts: HashSet<IpAddr>,
    too_long: u64,
    bans: u64,
    banned: HashSet<String>,
}

/// Runs `autoblock scan`.
pub fn run(a: &ScanArgs, out: &mut impl Write) -> Result<()> {
    let out = &mut std::io::BufWriter::with_capacity(256 * 1024, out);
    let (filter, jail, allow) = setup(a)?;
    let reference = match &a.now {
        Some(t) => t
            .parse::<Timestamp>()
            .map_err(|e| BadInput(format!("--now {t:?}: not an RFC 3339 time: {e}")))?,
        None if a.input == "-" => Timestamp::now(),
        None => std::fs::metadata(&a.input)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| Timestamp::try_from(t).ok())
            .unwrap_or_else(Timestamp::now),
    };
    let ctx = if a.utc {
        YearContext::utc(reference)
    } else {
        YearContext::new(reference, jiff::tz::TimeZone::system())
    };
    let filter_name = filter.name().to_owned();
    let mut scanner = Scanner::new(filter, ctx);
    let mut sim = if a.simulate {
        let state = PolicyState::new(jail, allow).map_err(|e| BadInput(e.to_string()))?;
        Some(Simulator::new(state, reference))
    } else {
        None
    };
    let mut reader: Box<dyn Read> = if a.input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(&a.input).with_context(|| format!("cannot open {}", a.input))?)
    };
    let mut tally = Tally::default();
    let mut splitter = LineSplitter::new(MAX_LINE);
    let mut buf = vec![0u8; 256 * 1024];
    let mut line_no = 0u64;
    let mut handle = |p: Piece<'_>, out: &mut dyn Write, tally: &mut Tally| {
        line_no += 1;
        let line = match p {
            Piece::Line(l) => l,
            Piece::TooLong { .. } => {
                tally.too_long += 1;
                return Ok(());
            }
        };
        let Some(d) = scanner.feed(line_no, line) else {
            return Ok(());
        };
        match sim.as_mut() {
            Some(sim) => print_ban(sim, &d, a.json, out, tally),
            None => print_detection(&d, &filter_name, a.json, out, tally),
        }
    };
    let mut werr: Option<std::io::Error> = None;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", a.input)),
        };
        splitter.push(&buf[..n], |p, _| {
            if let Err(e) = handle(p, out, &mut tally) {
                werr.get_or_insert(e);
            }
        });
        if let Some(e) = werr.take() {
            return Err(e.into());
        }
    }
    splitter.finish(|p, _| {
        if let Err(e) = handle(p, out, &mut tally) {
            werr.get_or_insert(e);
        }
    });
    if let Some(e) = werr.take() {
        return Err(e.into());
    }
    out.flush()?;
    summary(scanner.stats(), &tally, a.simulate);
    Ok(())
}

/// The filter, the jail policy and the allowlist from the options.
fn setup(a: &ScanArgs) -> Result<(Filter, Jail, AllowList)> {
    let mode = a.mode.map(|m| match m {
        ModeArg::Normal => Mode::Normal,
        ModeArg::Aggressive => Mode::Aggressive,
    });
    let mut allow = AllowList::new();
    let (mut filter, mut jail) = (None, Jail::default());
    if let (Some(path), Some(name)) = (&a.config, &a.jail) {
        let cfg = DaemonConfig::load(path).map_err(|e| BadInput(e.to_string()))?;
        let Some(jc) = cfg.jails.iter().find(|j| &j.name == name) else {
            let names: Vec<&str> = cfg.jails.iter().map(|j| j.name.as_str()).collect();
            return Err(BadInput(format!(
                "{}: no jail named {name:?} (jails: {})",
                path.display(),
                names.join(", ")
            ))
            .into());
        };
        let mut jc = jc.clone();
        if let Some(m) = a.mode {
            jc.mode = Some(
                match m {
                    ModeArg::Normal => "normal",
                    ModeArg::Aggressive => "aggressive",
                }
                .to_owned(),
            );
        }
        if a.filter.is_none() {
            filter = Some(
                jc.build_filter()
                    .map_err(|e| BadInput(format!("{}: jail {name}: {e}", path.display())))?,
            );
        }
        jail = jc
            .policy()
            .map_err(|e| BadInput(format!("{}: jail {name}: {e}", path.display())))?;
        for n in cfg.allow.iter().chain(jc.allow.iter()) {
            allow.add(n.0);
        }
    }
    let filter = match filter {
        Some(f) => f,
        None => {
            let name = a.filter.as_deref().unwrap_or("sshd");
            Filter::builtin(name, mode.unwrap_or_default()).ok_or_else(|| {
                BadInput(format!(
                    "--filter {name:?}: unknown filter (built in: sshd, mysqld-auth)"
                ))
            })?
        }
    };
    if let Some(n) = a.maxretry {
        jail.maxretry = n;
    }
    if let Some(d) = a.findtime {
        jail.findtime = d;
    }
    if let Some(d) = a.bantime {
        jail.bantime = d;
    }
    jail.validate().map_err(|e| BadInput(e.to_string()))?;
    Ok((filter, jail, allow))
}

fn time_json(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "null".to_owned(), |t| format!("\"{t}\""))
}

fn print_detection(
    d: &Detection<'_>,
    filter: &str,
    json: bool,
    out: &mut dyn Write,
    tally: &mut Tally,
) -> std::io::Result<()> {
    let filter_json = serde_json::Value::from(filter);
    match d.event {
        Event::Failure(f) => {
            tally.hosts.insert(f.host);
            if json {
                writeln!(
                    out,
                    "{{\"line\":{},\"host\":\"{}\",\"filter\":{filter_json},\"kind\":\"{}\",\"time\":{}}}",
                    d.line_no,
                    f.host,
                    f.kind.as_str(),
                    time_json(d.time)
                )
            } else {
                let user = f
                    .user_lossy()
                    .map(|u| format!(" user={}", serde_json::Value::from(u.as_ref())))
                    .unwrap_or_default();
                let time = d.time.map(|t| format!(" {t}")).unwrap_or_default();
                writeln!(
                    out,
                    "{} {} {}{user}{time}",
                    d.line_no,
                    f.host,
                    f.kind.as_str()
                )
            }
        }
        Event::Forgive { host, count } => {
            if json {
                writeln!(
                    out,
                    "{{\"line\":{},\"host\":\"{host}\",\"filter\":{filter_json},\"kind\":\"forgive\",\"count\":{count},\"time\":{}}}",
                    d.line_no,
                    time_json(d.time)
                )
            } else {
                writeln!(out, "{} {host} forgive {count}", d.line_no)
            }
        }
    }
}

fn print_ban(
    sim: &mut Simulator,
    d: &Detection<'_>,
    json: bool,
    out: &mut dyn Write,
    tally: &mut Tally,
) -> std::io::Result<()> {
    if let Event::Failure(f) = d.event {
        tally.hosts.insert(f.host);
    }
    let Some(ev) = sim.push(d) else {
        return Ok(());
    };
    let b = ev.ban;
    tally.bans += 1;
    tally.banned.insert(b.net.to_string());
    if json {
        let secs = b
            .duration
            .map_or_else(|| "null".to_owned(), |d| d.as_secs().to_string());
        writeln!(
            out,
            "{{\"line\":{},\"ban\":\"{}\",\"time\":\"{}\",\"bantime_s\":{secs},\"offence\":{}}}",
            ev.line_no, b.net, b.at, b.offence_no
        )
    } else {
        let dur = b.duration.map_or_else(
            || "permanently".to_owned(),
            |d| format!("for {}", humantime::format_duration(d)),
        );
        writeln!(
            out,
            "{} ban {} at {} {dur} (offence {})",
            ev.line_no, b.net, b.at, b.offence_no
        )
    }
}

fn summary(s: &autoblock_detect::ScanStats, t: &Tally, simulate: bool) {
    let mut skipped: Vec<String> = s
        .skipped()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if t.too_long > 0 {
        skipped.insert(0, format!("too-long {}", t.too_long));
    }
    let skipped = if skipped.is_empty() {
        "none".to_owned()
    } else {
        skipped.join(", ")
    };
    let mut msg = format!(
        "scan: {} lines, {} failures from {} distinct hosts, {} forgiven; skipped: {skipped}",
        s.lines + t.too_long,
        s.failures,
        t.hosts.len(),
        s.forgiven
    );
    if simulate {
        msg.push_str(&format!("; {} bans of {} sources", t.bans, t.banned.len()));
    }
    eprintln!("{msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_rfc3339_or_null() {
        assert_eq!(time_json(None), "null");
        let t: Timestamp = "2026-11-25T10:00:00Z".parse().expect("time");
        assert_eq!(time_json(Some(t)), "\"2026-11-25T10:00:00Z\"");
    }

    #[test]
    fn missing_file_is_an_error() {
        let a = ScanArgs {
            input: "/nonexistent/autoblock-scan-test".into(),
            filter: None,
            mode: None,
            json: false,
            simulate: false,
            config: None,
            jail: None,
            maxretry: None,
            findtime: None,
            bantime: None,
            now: None,
            utc: true,
        };
        let mut out = Vec::new();
        assert!(run(&a, &mut out).is_err());
    }
}
