//! The progress bar of large bulk loads (`block -f`): bytes read while the input is parsed,
//! then a spinner while the kernel takes the transaction(s).
//!
//! It draws only when standard error is a terminal and the input is large (a file of at
//! least 1 MiB, or standard input); otherwise every call is a no-op and nothing is printed.
//! It does not read input or talk to the kernel: the reader and the library report to it.

use std::io::IsTerminal;
use std::time::Duration;

use autoblock::controller::BulkProgress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Files smaller than this load too fast for a bar to help.
const MIN_BYTES: u64 = 1 << 20;

/// A progress display, or nothing.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar for reading `path` (`-` = standard input), if standard error is a terminal and
    /// the input is large.
    pub fn for_input(path: &str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::default();
        }
        let size = if path == "-" {
            None
        } else {
            match std::fs::metadata(path) {
                Ok(m) if m.is_file() => Some(m.len()),
                _ => None,
            }
        };
        if size.is_some_and(|s| s < MIN_BYTES) {
            return Progress::default();
        }
        let bar = match size {
            Some(len) => {
                let b = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
                b.set_style(
                    ProgressStyle::with_template(
                        "{msg:>10} [{bar:30}] {bytes}/{total_bytes} ({eta})",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b
            }
            None => {
                let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                b.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {bytes} read")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b
            }
        };
        bar.set_message("reading");
        Progress { bar: Some(bar) }
    }

    /// Input read so far.
    pub fn set_read(&self, bytes: u64, lines: u64) {
        if let Some(b) = &self.bar {
            b.set_position(bytes);
            if b.length().is_none() {
                b.set_message(format!("reading: {lines} lines,"));
            }
        }
    }

    /// What the library reports.
    pub fn phase(&self, p: BulkProgress) {
        let Some(b) = &self.bar else { return };
        match p {
            BulkProgress::Sending {
                entries,
                transactions,
            } => {
                b.set_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b.set_message(if transactions > 1 {
                    format!("sending {entries} entries in about {transactions} transactions")
                } else {
                    format!("sending {entries} entries to the kernel")
                });
                b.enable_steady_tick(Duration::from_millis(120));
            }
            BulkProgress::Committed { done, entries } => {
                b.set_message(format!(
                    "{done} transaction(s) committed, {entries} entries"
                ));
            }
            BulkProgress::Reading { .. } => {}
            _ => {}
        }
    }

    /// Removes the bar (before the result is printed).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
