//! Log sources: where the daemon's lines come from.
//!
//! Every source runs on its own OS thread and hands its output to the async
//! daemon through a bounded `tokio::sync::mpsc` channel of [`SourceEvent`]s
//! (the thread uses `blocking_send`, so a slow consumer slows the reader down
//! instead of growing memory). Starting a source returns a [`SourceHandle`]
//! and the receiving end; dropping the handle (or calling
//! [`SourceHandle::stop`]) ends the thread, and so does dropping the receiver.
//!
//! ```no_run
//! # async fn demo() -> Result<(), autoblock_daemon::source::SourceError> {
//! use autoblock_daemon::source::{follow_file, FileConfig, ReadFrom, SourceEvent};
//! let (handle, mut rx) = follow_file(FileConfig::new("/var/log/secure").read_from(ReadFrom::End))?;
//! while let Some(ev) = rx.recv().await {
//!     match ev {
//!         SourceEvent::Line(line) => { /* scanner.feed(line.pos.line_no, &line.bytes) */ }
//!         SourceEvent::TooLong { .. } => { /* count it */ }
//!         SourceEvent::Entry(_) => unreachable!("only the journal source sends entries"),
//!         other => tracing::info!(?other, "source"),
//!     }
//! }
//! # drop(handle); Ok(()) }
//! ```
//!
//! - [`follow_file`]: a file followed with inotify (see [`file`] for the
//!   rotation rules: create mode, copytruncate, a file that does not exist
//!   yet). Lines are sent without their `\n`; a partial last line is held
//!   until its newline arrives; lines longer than the cap are dropped and
//!   reported as [`SourceEvent::TooLong`].
//! - [`read_stdin`]: standard input until end of file, then
//!   [`SourceEvent::Eof`].
//! - `follow_journal` (cargo feature `journal`, on by default): the systemd
//!   journal read from its files, each entry a [`SourceEvent::Entry`] with its
//!   trusted fields (see `journal` for why this reader).
//!
//! Deliberately not here: parsing lines (the detection crate does that),
//! remembering positions across restarts (the store does; every line carries
//! the [`Position`] to resume after it), and running any program.

pub mod file;
#[cfg(feature = "journal")]
pub mod journal;
pub mod lines;
pub mod stdin;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use file::{follow_file, FileConfig, ReadFrom};
#[cfg(feature = "journal")]
pub use journal::{follow_journal, JournalSourceConfig, DEFAULT_JOURNAL_DIRS};
pub use lines::{LineSplitter, Piece};
pub use stdin::{read_reader, read_stdin};

/// The default cap on a line's length: the detection crate's own limit.
pub const DEFAULT_MAX_LINE: usize = autoblock_detect::MAX_LINE;

/// The default capacity of a source's channel, in events.
pub const DEFAULT_CHANNEL: usize = 4096;

/// Where a line was read, and where to resume after it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Position {
    /// A regular file.
    File {
        /// The inode of the file the line was read from (a rotated file
        /// keeps its inode under its new name).
        inode: u64,
        /// The byte offset just past the line's newline.
        offset: u64,
        /// The 1-based number of the line in this file (counted from where
        /// reading started).
        line_no: u64,
    },
    /// Standard input (or another stream).
    Stream {
        /// The byte offset just past the line's newline.
        offset: u64,
        /// The 1-based number of the line.
        line_no: u64,
    },
}

impl Position {
    /// The 1-based line number within its source.
    pub fn line_no(&self) -> u64 {
        match self {
            Position::File { line_no, .. } | Position::Stream { line_no, .. } => *line_no,
        }
    }

    /// The byte offset just past the line.
    pub fn offset(&self) -> u64 {
        match self {
            Position::File { offset, .. } | Position::Stream { offset, .. } => *offset,
        }
    }
}

/// One line of a source, without its `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The bytes as read (any bytes; not necessarily UTF-8).
    pub bytes: Vec<u8>,
    /// Where it was read.
    pub pos: Position,
}

/// One journal entry: its fields by name, values as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JournalEntry {
    /// `(name, value)` pairs in the entry's order, trusted fields included.
    pub fields: Vec<(String, Vec<u8>)>,
}

impl JournalEntry {
    /// The first value of field `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// How a followed file changed under its reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rotation {
    /// The path now names another file (logrotate's create mode, or the file
    /// was deleted and created again); the new one is read from its start.
    Replaced,
    /// The file shrank (logrotate's copytruncate mode); read again from 0.
    Truncated,
    /// The file appeared (it did not exist when following started).
    Created,
    /// The path no longer names a file; the old file is read on until a new
    /// one appears.
    Removed,
}

/// What a source sends.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SourceEvent {
    /// A complete line.
    Line(Line),
    /// A journal entry (journal sources only).
    Entry(JournalEntry),
    /// A line longer than the cap was dropped.
    TooLong {
        /// Where it ended.
        pos: Position,
        /// Its length in bytes, without the `\n`.
        len: u64,
    },
    /// A followed file was rotated, truncated, created or removed.
    Rotated {
        /// The path followed.
        path: PathBuf,
        /// What happened.
        what: Rotation,
    },
    /// A recoverable error; the source carries on (a file source retries at
    /// the next change of the file).
    Error(Arc<SourceError>),
    /// The source has ended (standard input closed). Followed files never end.
    Eof,
}

/// Errors of the sources; each carries the path it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// inotify could not be set up or watched.
    #[error("{path}: cannot watch with inotify: {source}")]
    Watch {
        /// The path (file or directory) concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Opening, reading or inspecting a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The path has no file name or no parent directory.
    #[error("{path}: not a file path that can be followed")]
    BadPath {
        /// The path given.
        path: PathBuf,
    },
    /// The journal could not be opened or read.
    #[error("journal in {dirs:?}: {reason}")]
    Journal {
        /// The directories searched.
        dirs: Vec<PathBuf>,
        /// What the reader reported.
        reason: String,
    },
    /// The reader thread could not be started.
    #[error("cannot start the reader thread for {what}: {source}")]
    Thread {
        /// Which source.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Owns a running source's thread; dropping it stops the source.
#[derive(Debug)]
pub struct SourceHandle {
    stop: Arc<AtomicBool>,
    wake: Option<Box<dyn Waker>>,
    thread: Option<JoinHandle<()>>,
}

/// Something that wakes a source thread out of a blocking wait.
trait Waker: std::fmt::Debug + Send {
    fn wake(&mut self);
}

impl SourceHandle {
    fn new(stop: Arc<AtomicBool>, wake: Option<Box<dyn Waker>>, thread: JoinHandle<()>) -> Self {
        SourceHandle {
            stop,
            wake,
            thread: Some(thread),
        }
    }

    /// Stops the source and waits for its thread to end.
    ///
    /// A file follower ends at once. A stream source blocked in a read of
    /// its input ends at its next line or end of file; `stop` then does not
    /// wait for it.
    pub fn stop(mut self) {
        self.shutdown(true);
    }

    /// Whether the source's thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    fn shutdown(&mut self, join: bool) {
        self.stop.store(true, Ordering::SeqCst);
        let wakeable = self.wake.is_some();
        if let Some(w) = self.wake.as_mut() {
            w.wake();
        }
        if let Some(t) = self.thread.take() {
            if join && wakeable {
                let _ = t.join();
            }
        }
    }
}

impl Drop for SourceHandle {
    fn drop(&mut self) {
        self.shutdown(false);
    }
}
