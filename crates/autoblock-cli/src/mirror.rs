//! Glue between the controller and the sysconfig mirror (chain layout): lock and parse
//! `iptables`/`ip6tables` before the kernel is changed, write them after it succeeded.
//!
//! A file that does not parse stops the command before anything reaches the kernel. If the
//! kernel change succeeds but a write fails, the error says exactly that.

use anyhow::{Context, Result};
use autoblock::chain::{ParsedRule, RuleKind};
use autoblock::{Controller, IpFamily};
use autoblock_sysconfig::{AutoRule, AutoTarget, Family, Mirror, Prepared};

/// Both files, parsed and locked.
pub struct Guard {
    prepared: Vec<Prepared>,
}

/// Locks and parses both files. `Ok(None)` when mirroring is off.
pub fn prepare(dir: &str, chain: &str, enabled: bool) -> Result<Option<Guard>> {
    if !enabled {
        return Ok(None);
    }
    let mirror = Mirror::new(dir, chain).context("sysconfig mirror")?;
    let prepared = mirror.prepare_all(&[Family::V4, Family::V6]).context(
        "the sysconfig file cannot be used, so nothing was applied (fix it, or pass --no-mirror)",
    )?;
    Ok(Some(Guard { prepared }))
}

fn family_of(p: &Prepared) -> IpFamily {
    // By the family, not the path: a symlinked file may have any name.
    match p.family() {
        Family::V4 => IpFamily::V4,
        Family::V6 => IpFamily::V6,
    }
}

/// A kernel rule as the mirror writes it.
pub fn to_auto(r: &ParsedRule) -> AutoRule {
    AutoRule {
        source: r.net.to_string(),
        comment: r.comment.clone(),
        target: match &r.kind {
            RuleKind::Drop => AutoTarget::Drop,
            RuleKind::Reject => AutoTarget::Reject,
            RuleKind::Log { prefix } => AutoTarget::Log {
                prefix: prefix.clone(),
            },
        },
    }
}

impl Guard {
    /// Whether at least one of the two files exists.
    pub fn any_file_exists(&self) -> bool {
        self.prepared.iter().any(Prepared::existed)
    }

    /// autoblock's rules as each file has them now: (family, file, rules).
    pub fn file_rules(&self) -> Result<Vec<(IpFamily, std::path::PathBuf, Vec<AutoRule>)>> {
        self.prepared
            .iter()
            .map(|p| {
                let fam = family_of(p);
                Ok((fam, p.path().to_owned(), p.rules()?))
            })
            .collect()
    }

    /// Writes what the kernel now holds into both files (or removes the chain from them).
    pub fn write(self, ctl: &mut Controller, removal: bool) -> Result<()> {
        let rules = if removal {
            Vec::new()
        } else {
            ctl.chain_rules()?
        };
        for p in self.prepared {
            let path = p.path().display().to_string();
            let result = if removal {
                p.commit_removal()
            } else {
                let fam = family_of(&p);
                let mine: Vec<AutoRule> = rules
                    .iter()
                    .filter(|(f, _)| *f == fam)
                    .map(|(_, r)| to_auto(r))
                    .collect();
                p.commit(&mine)
            };
            result.with_context(|| {
                format!("the kernel change WAS applied, but mirroring it to {path} failed; run `autoblock save` to write the file again")
            })?;
        }
        Ok(())
    }
}
