//! `autoblock check`: compares what the kernel holds with what would be restored.
//!
//! Chain layout: the kernel's chain (both families) against the sysconfig files — entries
//! missing on either side, a different action, comment or expiry, the jump missing or not
//! first (in the kernel or in the file), a malformed file (with file:line). With `--file`,
//! either layout: the live bans against a ban file written by `save --file`.
//!
//! It only reads: it takes no lock, writes no file and changes nothing in the kernel. The
//! exit status says the verdict (0 in step, 1 different, 2 bad input).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use autoblock::{Config, Controller, IpFamily, Layout, Net};
use autoblock_sysconfig::{AutoRule, AutoTarget, Family, Mirror, RulesetFile};
use clap::Args;

use crate::setfile;

/// Options of `autoblock check`.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit codes:
  0  the kernel and the files are in step
  1  they differ (every difference is printed), a file is malformed, or a runtime error
  2  bad input (an option)")]
pub struct CheckArgs {
    /// Machine-readable output: one JSON object with every difference.
    #[arg(long)]
    pub json: bool,
    /// Compare the live bans with this ban file (written by `save --file`) instead of the
    /// sysconfig files. Expiry times may differ by up to 2 s (the file keeps whole seconds),
    /// plus the time the listing of a large set takes.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

/// The kernel and the files differ (exit status 1).
#[derive(Debug)]
pub struct Differ(pub usize);

impl std::fmt::Display for Differ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} difference(s) between the kernel and the saved state (run `autoblock save` to write the kernel's state, or `autoblock restore` to apply the file's)",
            self.0
        )
    }
}

impl std::error::Error for Differ {}

/// One difference.
#[derive(Debug, serde::Serialize)]
struct Finding {
    /// `ipv4`, `ipv6` or `-`.
    family: &'static str,
    /// Stable name of the kind of difference.
    kind: &'static str,
    /// The entry concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<String>,
    /// The file concerned.
    file: String,
    /// Human explanation.
    detail: String,
}

fn fam_name(f: IpFamily) -> &'static str {
    match f {
        IpFamily::V4 => "ipv4",
        IpFamily::V6 => "ipv6",
    }
}

/// `autoblock check`.
pub fn run(cfg: Config, g: &crate::Global, args: &CheckArgs, out: &mut impl Write) -> Result<()> {
    let findings = match (&args.file, cfg.layout) {
        (Some(path), _) => check_ban_file(cfg, path)?,
        (None, Layout::Set) => {
            let msg = "the set layout has no sysconfig mirror: its bans persist through `autoblock save --file PATH` and `restore --file PATH`; compare the kernel with such a file with `autoblock --layout set check --file PATH`";
            if args.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"layout": "set", "in_step": null, "note": msg})
                )?;
            } else {
                writeln!(out, "{msg}")?;
            }
            return Ok(());
        }
        (None, _) => check_chain(cfg, &g.sysconfig_dir, &g.chain)?,
    };
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "layout": if args.file.is_some() { "file" } else { "chain" },
                "in_step": findings.is_empty(),
                "differences": findings,
            })
        )?;
    } else if findings.is_empty() {
        writeln!(out, "in step: the kernel holds what the files hold")?;
    } else {
        for f in &findings {
            match &f.entry {
                Some(e) => writeln!(out, "{} {} {}: {}", f.family, f.kind, e, f.detail)?,
                None => writeln!(out, "{} {}: {}", f.family, f.kind, f.detail)?,
            }
        }
    }
    out.flush()?;
    if findings.is_empty() {
        Ok(())
    } else {
        Err(Differ(findings.len()).into())
    }
}

/// An entry as rules describe it: action words and the comment.
#[derive(Debug, Default, PartialEq, Eq)]
struct Group {
    targets: Vec<String>,
    comment: Option<String>,
}

fn target_text(t: &AutoTarget) -> String {
    match t {
        AutoTarget::Drop => "DROP".into(),
        AutoTarget::Reject => "REJECT".into(),
        AutoTarget::Log { prefix } => format!("LOG {prefix:?}"),
    }
}

/// Groups rules by network (source text when it does not parse).
fn group(rules: &[AutoRule]) -> BTreeMap<String, Group> {
    let mut out: BTreeMap<String, Group> = BTreeMap::new();
    for r in rules {
        let key = Net::parse(&r.source, false)
            .map(|n| n.to_string())
            .unwrap_or_else(|_| r.source.clone());
        let g = out.entry(key).or_default();
        g.targets.push(target_text(&r.target));
        if g.comment.is_none() {
            g.comment = r.comment.clone();
        }
    }
    for g in out.values_mut() {
        g.targets.sort();
    }
    out
}

fn show_expiry(t: Option<SystemTime>) -> String {
    t.map(autoblock::meta::rfc3339)
        .unwrap_or_else(|| "never".into())
}

fn check_chain(cfg: Config, dir: &str, chain: &str) -> Result<Vec<Finding>> {
    let mirror = Mirror::new(dir, chain).context("sysconfig files")?;
    let mut ctl = Controller::open(cfg)?;
    let status = ctl.status()?;
    let kernel_rules = ctl.chain_rules()?;
    let mut findings = Vec::new();
    for (family, ipf) in [(Family::V4, IpFamily::V4), (Family::V6, IpFamily::V6)] {
        let fam = fam_name(ipf);
        let path = mirror.path(family);
        let file = path.display().to_string();
        let st = status.iter().find(|s| s.family == ipf);
        let chain_in_kernel = st.is_some_and(|s| s.chain_exists);
        let mut push = |kind: &'static str, entry: Option<String>, detail: String| {
            findings.push(Finding {
                family: fam,
                kind,
                entry,
                file: file.clone(),
                detail,
            })
        };
        let kernel: Vec<AutoRule> = kernel_rules
            .iter()
            .filter(|(f, _)| *f == ipf)
            .map(|(_, r)| crate::mirror::to_auto(r))
            .collect();
        if let Some(s) = st {
            if s.foreign_rules > 0 {
                push(
                    "foreign-rules-in-kernel",
                    None,
                    format!(
                        "the kernel's chain holds {} rule(s) autoblock does not write; they are not mirrored",
                        s.foreign_rules
                    ),
                );
            }
        }
        // The file.
        let parsed = match read_rules_file(&path) {
            Ok(p) => p,
            Err(detail) => {
                push("file-malformed", None, detail);
                continue;
            }
        };
        let Some(parsed) = parsed else {
            if chain_in_kernel {
                push(
                    "file-missing",
                    None,
                    format!("{file} does not exist, but the kernel has the chain {chain}"),
                );
            }
            continue;
        };
        let rules = match parsed.auto_rules(chain, family) {
            Ok(r) => r,
            Err(e) => {
                push("file-malformed", None, format!("{file}: {e}"));
                continue;
            }
        };
        let jump = parsed.auto_jump(chain);
        // An empty chain declared only in the file changes nothing a restore would block
        // (the mirror declares the chain in both files), so it is not a difference.
        if chain_in_kernel || !rules.is_empty() {
            if !chain_in_kernel {
                push(
                    "chain-missing-in-kernel",
                    None,
                    format!("{file} declares {chain}, the kernel has no such chain"),
                );
            }
            if !jump.declared {
                push(
                    "chain-missing-in-file",
                    None,
                    format!("the kernel has {chain}, {file} does not declare it"),
                );
            }
            match st {
                Some(s) if chain_in_kernel && !s.jump_first => push(
                    "jump-not-first-in-kernel",
                    None,
                    format!("the kernel's INPUT does not start with -j {chain}"),
                ),
                _ => {}
            }
            if !jump.jump {
                push(
                    "jump-missing-in-file",
                    None,
                    format!("{file} has no `-A INPUT -j {chain}`"),
                );
            } else if !jump.jump_first {
                push(
                    "jump-not-first-in-file",
                    None,
                    format!("`-A INPUT -j {chain}` is not the first INPUT rule in {file}"),
                );
            }
        }
        let k = group(&kernel);
        let f = group(&rules);
        for (net, kg) in &k {
            match f.get(net) {
                None => push(
                    "missing-in-file",
                    Some(net.clone()),
                    format!("in the kernel, not in {file}"),
                ),
                Some(fg) => {
                    if kg.targets != fg.targets {
                        push(
                            "action-differs",
                            Some(net.clone()),
                            format!(
                                "kernel: {}, file: {}",
                                kg.targets.join(" + "),
                                fg.targets.join(" + ")
                            ),
                        );
                    }
                    if kg.comment != fg.comment {
                        let dec = |c: &Option<String>| match c {
                            Some(c) => autoblock::meta::decode(c),
                            None => (None, None),
                        };
                        let (ke, kt) = dec(&kg.comment);
                        let (fe, ft) = dec(&fg.comment);
                        if ke != fe {
                            push(
                                "expiry-differs",
                                Some(net.clone()),
                                format!("kernel: {}, file: {}", show_expiry(ke), show_expiry(fe)),
                            );
                        }
                        if kt != ft {
                            push(
                                "comment-differs",
                                Some(net.clone()),
                                format!("kernel: {kt:?}, file: {ft:?}"),
                            );
                        }
                    }
                }
            }
        }
        for net in f.keys().filter(|n| !k.contains_key(*n)) {
            push(
                "missing-in-kernel",
                Some(net.clone()),
                format!("in {file}, not in the kernel"),
            );
        }
    }
    Ok(findings)
}

/// Reads and parses a rules file; `Ok(None)` when it does not exist, `Err(text)` naming
/// the file and line when it cannot be used.
fn read_rules_file(path: &Path) -> std::result::Result<Option<RulesetFile>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: reading: {e}", path.display())),
    };
    let parsed = RulesetFile::parse(&bytes)
        .map_err(|e| format!("{}:{}: {}", path.display(), e.line, e.kind))?;
    if let Some(line) = parsed.crlf_line() {
        return Err(format!(
            "{}:{line}: line ends in CR LF, which iptables-restore rejects",
            path.display()
        ));
    }
    Ok(Some(parsed))
}

/// Expiry times in a ban file are whole seconds.
const EXPIRY_SLACK_SECS: u64 = 2;

fn check_ban_file(cfg: Config, path: &Path) -> Result<Vec<Finding>> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("reading {file}"))?;
    let mut findings = Vec::new();
    let loaded = match setfile::parse(path, &bytes, SystemTime::now()) {
        Ok(l) => l,
        Err(e) => {
            findings.push(Finding {
                family: "-",
                kind: "file-malformed",
                entry: None,
                file,
                detail: e.to_string(),
            });
            return Ok(findings);
        }
    };
    let mut want: HashMap<Net, autoblock::Entry> =
        loaded.live.into_iter().map(|e| (e.net, e)).collect();
    let mut ctl = Controller::open(cfg)?;
    let mut kernel_only = Vec::new();
    // The listing turns the kernel's remaining time into an expiry with the time the dump
    // started, so on a large set (a dump of a million elements takes seconds) the expiries
    // come out early by up to the time the dump has run; allow for it.
    let started = std::time::Instant::now();
    ctl.for_each_listed(|l| {
        let slack = EXPIRY_SLACK_SECS + started.elapsed().as_secs();
        let fam = fam_name(l.net.family());
        match want.remove(&l.net) {
            None => kernel_only.push((fam, l.net)),
            Some(e) => {
                let near = match (l.expires, e.expires) {
                    (None, None) => true,
                    (Some(a), Some(b)) => {
                        let d = a.duration_since(b).or_else(|_| b.duration_since(a));
                        d.is_ok_and(|d| d.as_secs() <= slack)
                    }
                    _ => false,
                };
                if !near {
                    findings.push(Finding {
                        family: fam,
                        kind: "expiry-differs",
                        entry: Some(l.net.to_string()),
                        file: file.clone(),
                        detail: format!(
                            "kernel: {}, file: {}",
                            show_expiry(l.expires),
                            show_expiry(e.expires)
                        ),
                    });
                }
                if l.comment != e.comment {
                    findings.push(Finding {
                        family: fam,
                        kind: "comment-differs",
                        entry: Some(l.net.to_string()),
                        file: file.clone(),
                        detail: format!("kernel: {:?}, file: {:?}", l.comment, e.comment),
                    });
                }
            }
        }
    })?;
    for (fam, net) in kernel_only {
        findings.push(Finding {
            family: fam,
            kind: "missing-in-file",
            entry: Some(net.to_string()),
            file: file.clone(),
            detail: format!("in the kernel, not in {file}"),
        });
    }
    let mut rest: Vec<Net> = want.into_keys().collect();
    rest.sort();
    for net in rest {
        findings.push(Finding {
            family: fam_name(net.family()),
            kind: "missing-in-kernel",
            entry: Some(net.to_string()),
            file: file.clone(),
            detail: format!("in {file} (not expired), not in the kernel"),
        });
    }
    Ok(findings)
}
