//! `autoblock save [--file PATH]` and `autoblock restore [--file PATH]`: putting saved bans
//! back into the kernel at boot, and saving them.
//!
//! * Chain layout, no `--file`: `restore` reads autoblock's chain from the sysconfig files
//!   (`iptables`, `ip6tables`) and makes the kernel chain hold exactly the file's unexpired
//!   entries, in ONE transaction (sync semantics: entries only the kernel has are removed,
//!   because the files are the persisted state the mirror keeps after every change). Entries
//!   whose expiry has passed are dropped from the kernel and from the files (atomic rewrite
//!   through the mirror). A malformed file stops everything before the kernel is touched.
//! * `--file PATH` (either layout, meant for the set layout): `save` writes the live bans in
//!   the ban file format (`setfile`), atomically; `restore` adds the file's unexpired bans in
//!   one transaction (merge semantics: bans already in the kernel stay — at boot there are
//!   none, and dumping a large set to find the extra ones would cost seconds).
//!
//! It does not define the file formats (`autoblock_sysconfig`, `setfile`) nor how entries
//! reach the kernel (the controller).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use autoblock::controller::{BulkError, BulkOptions};
use autoblock::{Action, Config, Controller, Entry, Layout, Net};
use autoblock_sysconfig::{AutoRule, AutoTarget};
use clap::Args;

use crate::mirror::Guard;
use crate::setfile;
use crate::BadInput;

/// Options of `autoblock save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write the live bans to this ban file (atomically) instead of the sysconfig files.
    /// Format: first line `autoblock-bans 1`, then `NET EXPIRES [COMMENT]` per line,
    /// EXPIRES being `-` or the expiry in seconds since the epoch.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

/// Options of `autoblock restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Load the bans of a ban file written by `save --file` (adds them; bans already in the
    /// kernel stay). Without it (chain layout), the chain is made to hold exactly the
    /// unexpired entries of the sysconfig files.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

/// `autoblock save --file PATH`.
pub fn save_file(cfg: Config, path: &Path, out: &mut impl Write) -> Result<()> {
    let started = Instant::now();
    let mut ctl = Controller::open(cfg)?;
    let now = SystemTime::now();
    let mut n = 0usize;
    let mut failure: Option<autoblock::Error> = None;
    autoblock_sysconfig::replace_file(path, |w| {
        setfile::write_header(w, now)?;
        let mut buf = String::with_capacity(128);
        let mut io_err: Option<std::io::Error> = None;
        let listed = ctl.for_each_listed(|l| {
            if io_err.is_some() {
                return;
            }
            if let Err(e) =
                setfile::write_entry(w, &mut buf, l.net, l.expires, l.comment.as_deref())
            {
                io_err = Some(e);
            }
            n += 1;
        });
        if let Some(e) = io_err {
            return Err(e);
        }
        if let Err(e) = listed {
            failure = Some(e);
            return Err(std::io::Error::other(
                "reading the bans from the kernel failed",
            ));
        }
        Ok(())
    })
    .map_err(|e| match failure.take() {
        Some(k) => anyhow::Error::new(k).context(format!(
            "{}: not written (the old file, if any, is unchanged)",
            path.display()
        )),
        None => anyhow::Error::new(e).context("the old file, if any, is unchanged"),
    })?;
    writeln!(
        out,
        "saved {n} ban(s) to {} in {:.2} s",
        path.display(),
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

/// `autoblock restore`.
pub fn restore(
    cfg: Config,
    args: &RestoreArgs,
    guard: Option<Guard>,
    out: &mut impl Write,
) -> Result<()> {
    match &args.file {
        Some(path) => restore_file(cfg, path, guard, out),
        None => match guard {
            Some(g) => restore_chain(cfg, g, out),
            None if cfg.layout == Layout::Set => Err(BadInput(
                "the set layout has no sysconfig files; restore a ban file with --file PATH (written by `save --file PATH`)".into(),
            )
            .into()),
            None => Err(BadInput(
                "restore without --file reads the sysconfig files; it cannot run with --no-mirror".into(),
            )
            .into()),
        },
    }
}

fn restore_file(
    cfg: Config,
    path: &Path,
    guard: Option<Guard>,
    out: &mut impl Write,
) -> Result<()> {
    let started = Instant::now();
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = setfile::Reader::from_read(path, std::io::BufReader::with_capacity(1 << 16, file))
        .map_err(|e| anyhow::anyhow!("{e}; nothing was applied"))?;
    let mut ctl = Controller::open(cfg)?;
    let report = match ctl.block_stream(reader, BulkOptions::default()) {
        Ok(r) => r,
        Err(BulkError::Invalid { count, bad }) => {
            let first = bad
                .first()
                .map(|b| {
                    format!(
                        "{}:{}: {} (line: {:?})",
                        path.display(),
                        b.line,
                        b.reason,
                        b.text
                    )
                })
                .unwrap_or_else(|| path.display().to_string());
            return Err(anyhow::anyhow!(
                "{first}; {count} bad line(s), nothing was applied"
            ));
        }
        Err(BulkError::Controller(e)) => {
            return Err(anyhow::Error::new(e)
                .context(format!("restoring {}: nothing was applied", path.display())))
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("restoring {}: nothing was applied", path.display())))
        }
    };
    if let Some(g) = guard {
        g.write(&mut ctl, false)?;
    }
    for w in &report.warnings {
        eprintln!("autoblock: warning: {w}");
    }
    if !report.is_atomic() {
        eprintln!(
            "autoblock: warning: the socket could not send the load as one transaction{}; it was applied in {} transactions",
            report
                .split_limit
                .map(|b| format!(" (largest: {b} bytes)"))
                .unwrap_or_default(),
            report.transactions
        );
    }
    writeln!(
        out,
        "restored {} ban(s) from {}; {} expired ban(s) dropped; {} transaction(s), {:.2} s",
        report.entries,
        path.display(),
        report.expired,
        report.transactions,
        started.elapsed().as_secs_f64(),
    )?;
    Ok(())
}

/// An entry of the files, with the action its rules implement.
struct FileEntry {
    entry: Entry,
    kinds: [bool; 3],
    log_prefix: Option<String>,
    place: String,
}

fn action_of(kinds: [bool; 3]) -> Action {
    // log, drop, reject — as `Controller::list` reads the kernel's rules.
    match kinds {
        [_, _, true] => Action::Reject,
        [true, true, _] => Action::LogDrop,
        [false, true, _] => Action::Drop,
        _ => Action::Log,
    }
}

/// Groups the files' rules into entries (several rules of one network are one entry).
fn file_entries(
    files: Vec<(autoblock::IpFamily, PathBuf, Vec<AutoRule>)>,
) -> Result<Vec<FileEntry>> {
    let mut out: Vec<FileEntry> = Vec::new();
    let mut pos: HashMap<Net, usize> = HashMap::new();
    for (_, path, rules) in files {
        for (i, r) in rules.into_iter().enumerate() {
            let net = Net::parse(&r.source, false).map_err(|e| {
                anyhow::anyhow!(
                    "{}: rule {} of the chain: {e}; nothing was applied",
                    path.display(),
                    i + 1
                )
            })?;
            let idx = *pos.entry(net).or_insert_with(|| {
                let (expires, text) = match &r.comment {
                    Some(c) => autoblock::meta::decode(c),
                    None => (None, None),
                };
                out.push(FileEntry {
                    entry: Entry {
                        net,
                        comment: text,
                        expires,
                    },
                    kinds: [false; 3],
                    log_prefix: None,
                    place: path.display().to_string(),
                });
                out.len() - 1
            });
            let fe = &mut out[idx];
            match r.target {
                AutoTarget::Log { prefix } => {
                    fe.kinds[0] = true;
                    fe.log_prefix = Some(prefix);
                }
                AutoTarget::Drop => fe.kinds[1] = true,
                AutoTarget::Reject => fe.kinds[2] = true,
            }
        }
    }
    Ok(out)
}

fn restore_chain(mut cfg: Config, guard: Guard, out: &mut impl Write) -> Result<()> {
    if !guard.any_file_exists() {
        // Restoring "nothing" would remove every entry of the chain: refuse instead (a
        // wrong --sysconfig-dir, or files removed by hand).
        return Err(anyhow::anyhow!(
            "neither iptables nor ip6tables exists in the sysconfig directory; nothing was applied"
        ));
    }
    let now = SystemTime::now();
    let entries = file_entries(guard.file_rules()?)?;
    let total = entries.len();
    let live: Vec<FileEntry> = entries
        .into_iter()
        .filter(|e| e.entry.expires.is_none_or(|t| t > now))
        .collect();
    let expired = total - live.len();
    // One transaction applies one action; take it (and the log prefix) from the files.
    if let Some(first) = live.first() {
        let action = action_of(first.kinds);
        if let Some(other) = live.iter().find(|e| action_of(e.kinds) != action) {
            return Err(anyhow::anyhow!(
                "the files mix actions ({} is {}, {} in {} is {}); restore applies one action, so nothing was applied (unblock one group and block it again with the other --action)",
                first.entry.net,
                action.as_str(),
                other.entry.net,
                other.place,
                action_of(other.kinds).as_str()
            ));
        }
        cfg.action = action;
        if let Some(p) = live.iter().find_map(|e| e.log_prefix.clone()) {
            cfg.log_prefix = p;
        }
    }
    let entries: Vec<Entry> = live.into_iter().map(|e| e.entry).collect();
    let mut ctl = Controller::open(cfg)?;
    let report = ctl
        .sync(&entries)
        .context("restoring the chain from the sysconfig files: nothing was applied")?;
    guard.write(&mut ctl, false)?;
    for w in &report.warnings {
        eprintln!("autoblock: warning: {w}");
    }
    writeln!(
        out,
        "restored {} entr{} from the sysconfig files ({} added, {} updated, {} already there); {} expired entr{} dropped from the kernel and the files; {} other entr{} removed from the kernel",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" },
        report.changed.len(),
        report.updated.len(),
        report.unchanged.len(),
        expired,
        if expired == 1 { "y" } else { "ies" },
        report.removed.len(),
        if report.removed.len() == 1 { "y" } else { "ies" },
    )?;
    Ok(())
}
