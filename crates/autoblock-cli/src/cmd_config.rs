//! `autoblock config check FILE`: validates a daemon configuration file without starting
//! anything. Exit 0 when valid; exit 2 with `file:line:col: reason` when not.
//!
//! It reads only the file: it opens no log file, no store and no netlink socket.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::BadInput;

/// `autoblock config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Check a daemon configuration file: exit 0 valid, 2 invalid (with file:line:col).
    Check(CheckArgs),
}

/// Arguments of `config check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(default_value = autoblock_daemon::config::DEFAULT_PATH)]
    file: PathBuf,
}

/// Runs a `config` subcommand.
pub fn run(cmd: &ConfigCmd, out: &mut impl Write) -> Result<()> {
    match cmd {
        ConfigCmd::Check(a) => {
            let cfg = autoblock_daemon::Config::load(&a.file).map_err(|e| match e {
                autoblock_daemon::ConfigError::Invalid { ref text, .. } if !text.is_empty() => {
                    BadInput(format!("{e}\n  | {text}"))
                }
                other => BadInput(other.to_string()),
            })?;
            let jails: Vec<&str> = cfg
                .jails
                .iter()
                .filter(|j| j.enabled)
                .map(|j| j.name.as_str())
                .collect();
            writeln!(
                out,
                "{}: valid ({} layout, {} jail(s){}{})",
                a.file.display(),
                cfg.layout,
                jails.len(),
                if jails.is_empty() { "" } else { ": " },
                jails.join(", ")
            )?;
            Ok(())
        }
    }
}
