//! Hands the chain layout's known state from one `autoblock` process to the next, so that
//! unblocking one address of a 100,000-rule chain does not re-read the whole chain.
//!
//! The file lives in a runtime directory (`/run/autoblock`, or `AUTOBLOCK_RUNTIME_DIR`), one
//! per network namespace and chain. Its content is the controller's own encoding; the
//! controller refuses it unless it names this namespace and the ruleset generation shows no
//! change since it was written, so a stale or foreign file costs one re-read and nothing
//! else. Failing to read or write the file never fails a command.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::PathBuf;

use autoblock::{Config, Controller, Layout};
use tracing::debug;

fn path(cfg: &Config) -> Option<PathBuf> {
    if cfg.layout != Layout::Chain {
        return None;
    }
    let dir = std::env::var_os("AUTOBLOCK_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/autoblock"));
    let ns = std::fs::metadata("/proc/self/ns/net").ok()?.ino();
    let chain: String = cfg
        .chain
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(dir.join(format!("chain-state-{ns}-{chain}")))
}

/// Opens a controller and hands it the state an earlier process left, if any.
pub fn open(cfg: Config) -> anyhow::Result<Controller> {
    let file = path(&cfg);
    let mut ctl = Controller::open(cfg)?;
    if let Some(p) = file {
        if let Ok(bytes) = std::fs::read(&p) {
            let used = ctl.use_chain_state(&bytes);
            debug!(path = %p.display(), used, "chain state from an earlier run");
        }
    }
    Ok(ctl)
}

/// Leaves the state this process's last change created for the next one (or removes a file
/// that would now be stale).
pub fn keep(ctl: &Controller) {
    let Some(p) = path(ctl.config()) else {
        return;
    };
    let result = match ctl.chain_state() {
        Some(bytes) => write(&p, &bytes),
        None => match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    };
    if let Err(e) = result {
        debug!(path = %p.display(), error = %e, "chain state not kept");
    }
}

fn write(p: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = p.parent().unwrap_or(std::path::Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(p).map_err(|e| e.error)?;
    Ok(())
}
