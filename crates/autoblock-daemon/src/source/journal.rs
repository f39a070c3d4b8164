//! Reading the systemd journal natively, from its files, live.
//!
//! The reader is the pure-Rust `sdjournal` crate: it opens the `*.journal` files of the
//! given directories itself (memory-mapped), decompresses LZ4/Zstandard payloads, follows
//! appends and rotations with inotify, and needs neither libsystemd nor `journalctl`. The
//! alternative, bindings to libsystemd's `sd_journal` (the `systemd` crate), needs
//! `libsystemd` (systemd-devel on RHEL) at link time and cannot be linked into a static
//! (musl) binary; a journal reader of our own would be a second on-disk format to maintain.
//! Measured on this project's machine (200,000 sshd entries written by
//! `systemd-journal-remote`, busy machine): sdjournal reads 90,000-110,000 entries/s with
//! all fields; `journalctl -o export` (libsystemd) 230,000/s. Half the speed of
//! libsystemd is still orders of magnitude above what an attacked sshd logs.
//! What it costs: sdjournal 0.1.15 needs Rust 1.95, so the source sits behind the
//! `journal` cargo feature (on by default; build with `--no-default-features` on an older
//! toolchain and use file sources).
//!
//! Each entry is sent as [`SourceEvent::Entry`] with all its fields, the trusted ones
//! (`_UID`, `_COMM`, `_EXE`, `_SYSTEMD_UNIT`, `_PID`) included, plus
//! `__REALTIME_TIMESTAMP` and `__CURSOR`; hand it to
//! [`autoblock_detect::JournalTrust::judge`] through [`JournalEntry::judge`] so that only
//! entries the server itself wrote count. [`ReadFrom::End`] (the default) sends only entries
//! appended after the start; [`ReadFrom::Start`] replays what the files hold first.
//! Deliberately not here: matching on fields (the trust check happens in the detection
//! crate, so untrusted entries are counted, not silently missed) and storing the cursor.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sdjournal::{Journal, JournalConfig, SubscriptionOptions};
use tokio::sync::mpsc;

use super::file::ReadFrom;
use super::{JournalEntry, SourceError, SourceEvent, SourceHandle, DEFAULT_CHANNEL};

/// The journal directories of a standard system (persistent, then volatile).
pub const DEFAULT_JOURNAL_DIRS: [&str; 2] = ["/var/log/journal", "/run/log/journal"];

/// How long the reader waits for a change before it looks at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// How to read the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSourceConfig {
    /// Directories holding `*.journal` files (searched one level deep, as journald lays
    /// them out under the machine id).
    pub dirs: Vec<PathBuf>,
    /// Replay the existing entries first, or only new ones.
    pub read_from: ReadFrom,
    /// The capacity of the channel, in events.
    pub channel: usize,
}

impl Default for JournalSourceConfig {
    fn default() -> Self {
        JournalSourceConfig {
            dirs: DEFAULT_JOURNAL_DIRS.iter().map(PathBuf::from).collect(),
            read_from: ReadFrom::End,
            channel: DEFAULT_CHANNEL,
        }
    }
}

impl JournalSourceConfig {
    /// Reads the journal files under `dirs`.
    pub fn dirs(dirs: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        JournalSourceConfig {
            dirs: dirs.into_iter().map(Into::into).collect(),
            ..JournalSourceConfig::default()
        }
    }

    /// Sets where to start.
    pub fn read_from(mut self, r: ReadFrom) -> Self {
        self.read_from = r;
        self
    }
}

impl JournalEntry {
    /// The entry's message as an envelope for the scanner, if `trust` says the server
    /// wrote it.
    pub fn judge(
        &self,
        trust: &autoblock_detect::JournalTrust,
    ) -> Result<autoblock_detect::Envelope<'_>, autoblock_detect::Untrusted> {
        trust.judge(|name| self.get(name))
    }

    /// The entry's cursor, to resume after it.
    pub fn cursor(&self) -> Option<&str> {
        self.get("__CURSOR")
            .and_then(|c| std::str::from_utf8(c).ok())
    }
}

fn journal_error(dirs: &[PathBuf], e: sdjournal::SdJournalError) -> SourceError {
    SourceError::Journal {
        dirs: dirs.to_vec(),
        reason: e.to_string(),
    }
}

fn to_entry(e: &sdjournal::EntryRef) -> JournalEntry {
    let mut fields: Vec<(String, Vec<u8>)> = e
        .iter_fields()
        .map(|(k, v)| (k.to_owned(), v.to_vec()))
        .collect();
    fields.push((
        "__REALTIME_TIMESTAMP".to_owned(),
        e.realtime_usec().to_string().into_bytes(),
    ));
    if let Ok(c) = e.cursor() {
        fields.push(("__CURSOR".to_owned(), c.to_string().into_bytes()));
    }
    JournalEntry { fields }
}

/// Starts reading the journal; see the module docs.
///
/// Fails if none of the directories holds a journal file that can be opened.
pub fn follow_journal(
    config: JournalSourceConfig,
) -> Result<(SourceHandle, mpsc::Receiver<SourceEvent>), SourceError> {
    let dirs = config.dirs.clone();
    let jc = JournalConfig {
        poll_interval: STOP_CHECK,
        ..JournalConfig::default()
    };
    let journal = Journal::open_dirs_with_config(&dirs, jc).map_err(|e| journal_error(&dirs, e))?;
    let mut live = journal.live().map_err(|e| journal_error(&dirs, e))?;
    let mut options = SubscriptionOptions::new(live.filter());
    if config.read_from == ReadFrom::Start {
        options.since_realtime(0);
    }
    let sub = live
        .subscribe_with_options(options)
        .map_err(|e| journal_error(&dirs, e))?;
    let (tx, rx) = mpsc::channel(config.channel.max(1));
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("autoblock-journal".into())
        .spawn(move || loop {
            loop {
                match sub.try_recv() {
                    Ok(Ok(entry)) => {
                        if tx
                            .blocking_send(SourceEvent::Entry(to_entry(&entry)))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(Err(e)) => {
                        let err = Arc::new(journal_error(&dirs, e));
                        if tx.blocking_send(SourceEvent::Error(err)).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            if stop2.load(Ordering::SeqCst) || tx.is_closed() {
                return;
            }
            // Waits on inotify for at most STOP_CHECK, then dispatches new entries.
            if let Err(e) = live.poll_once() {
                let err = Arc::new(journal_error(&dirs, e));
                if tx.blocking_send(SourceEvent::Error(err)).is_err() {
                    return;
                }
                std::thread::sleep(STOP_CHECK);
            }
        })
        .map_err(|source| SourceError::Thread {
            what: "journal".to_owned(),
            source,
        })?;
    Ok((SourceHandle::new(stop, None, thread), rx))
}
