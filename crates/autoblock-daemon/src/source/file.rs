//! Following a log file with inotify, across rotations.
//!
//! The follower watches the file's *directory* (one inotify watch: it sees
//! the file being written, renamed away, deleted and created again) and, at
//! every wake-up, compares what the path names with what it has open, by
//! inode. Events only wake it; the decisions come from `stat`, so a lost or
//! coalesced event (inotify queue overflow) changes nothing. There is no
//! timer and no polling while the directory exists: a write wakes the thread
//! at once.
//!
//! - **start**: [`ReadFrom::End`] (the default) skips what the file holds
//!   when following starts; [`ReadFrom::Start`] replays it. A file that
//!   appears later (missing at start, or the new file after a rotation) is
//!   always read from its beginning.
//! - **create mode** (rename + new file): the renamed file keeps being read
//!   until the writer has moved to the new file (the new file has data);
//!   then it is read to its end one last time and closed, a partial last line
//!   in it is sent as a line. Nothing written to the old file before the
//!   writer switched is lost.
//! - **copytruncate**: the file shrank below the read offset, so it is read
//!   again from 0 and a held partial line is dropped (its rest was copied
//!   away). Lines written between the last read and the copy are in the copy,
//!   not in the file: copytruncate itself can lose them, the follower keeps
//!   that window to the time between a write and its inotify wake-up.
//! - **missing file**: waits for it to appear. If the directory itself does
//!   not exist, it is looked for once a second until it does.
//! - a partial last line is held until its newline; lines longer than the
//!   cap are dropped and reported ([`SourceEvent::TooLong`]).
//!
//! Deliberately not here: globbing several files, and positions that
//! survive a restart (a [`Position`] tells the caller where each line ended;
//! resuming there is the caller's business).

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::mpsc;

use super::lines::{LineSplitter, Piece};
use super::{
    Line, Position, Rotation, SourceError, SourceEvent, SourceHandle, Waker, DEFAULT_CHANNEL,
    DEFAULT_MAX_LINE,
};

/// Where to start reading the file that exists when following starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadFrom {
    /// Only what is written from now on.
    #[default]
    End,
    /// Everything the file holds, then what is written.
    Start,
}

/// How to follow one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// The path to follow.
    pub path: PathBuf,
    /// Where to start in the file that exists now.
    pub read_from: ReadFrom,
    /// The cap on a line's length in bytes.
    pub max_line: usize,
    /// The capacity of the channel, in events.
    pub channel: usize,
}

impl FileConfig {
    /// Follows `path` from its end, with the default cap and channel size.
    pub fn new(path: impl Into<PathBuf>) -> FileConfig {
        FileConfig {
            path: path.into(),
            read_from: ReadFrom::End,
            max_line: DEFAULT_MAX_LINE,
            channel: DEFAULT_CHANNEL,
        }
    }

    /// Sets where to start.
    pub fn read_from(mut self, r: ReadFrom) -> Self {
        self.read_from = r;
        self
    }

    /// Sets the cap on a line's length.
    pub fn max_line(mut self, n: usize) -> Self {
        self.max_line = n.max(1);
        self
    }

    /// Sets the channel capacity.
    pub fn channel(mut self, n: usize) -> Self {
        self.channel = n.max(1);
        self
    }
}

/// Starts following a file; see the module docs.
///
/// Fails only if the path cannot name a file or inotify cannot be set up.
/// The file may be missing; what exists of it is opened before this returns,
/// so with [`ReadFrom::End`] every line written after the call is sent.
pub fn follow_file(
    config: FileConfig,
) -> Result<(SourceHandle, mpsc::Receiver<SourceEvent>), SourceError> {
    let path = config.path.clone();
    let dir = match (path.parent(), path.file_name()) {
        (Some(d), Some(_)) => {
            let d = if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            };
            d.to_path_buf()
        }
        _ => return Err(SourceError::BadPath { path }),
    };
    let inotify = Inotify::init().map_err(|source| SourceError::Watch {
        path: dir.clone(),
        source,
    })?;
    let watches = inotify.watches();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel(config.channel);
    let mut f = Follower {
        path,
        dir,
        inotify,
        watches: watches.clone(),
        wd: None,
        max_line: config.max_line,
        current: None,
        old: None,
        tx,
        stop: stop.clone(),
    };
    f.try_watch();
    f.open_initial(config.read_from);
    let wd_slot = Arc::new(std::sync::Mutex::new(f.wd.clone()));
    let shared = wd_slot.clone();
    let thread = std::thread::Builder::new()
        .name("autoblock-file".into())
        .spawn(move || f.run(&shared))
        .map_err(|source| SourceError::Thread {
            what: config.path.display().to_string(),
            source,
        })?;
    let waker = InotifyWaker {
        watches,
        wd: wd_slot,
    };
    Ok((SourceHandle::new(stop, Some(Box::new(waker)), thread), rx))
}

/// Wakes the follower by removing its watch (the kernel then queues an
/// `IN_IGNORED` event, which ends the blocking read).
#[derive(Debug)]
struct InotifyWaker {
    watches: Watches,
    wd: Arc<std::sync::Mutex<Option<WatchDescriptor>>>,
}

impl Waker for InotifyWaker {
    fn wake(&mut self) {
        let wd = self.wd.lock().ok().and_then(|mut g| g.take());
        if let Some(wd) = wd {
            let _ = self.watches.remove(wd);
        }
    }
}

/// One open file and how far it has been read.
#[derive(Debug)]
struct Tail {
    file: File,
    inode: u64,
    dev: u64,
    splitter: LineSplitter,
    line_no: u64,
}

#[derive(Debug)]
struct Follower {
    path: PathBuf,
    dir: PathBuf,
    inotify: Inotify,
    watches: Watches,
    wd: Option<WatchDescriptor>,
    max_line: usize,
    current: Option<Tail>,
    /// A rotated-away file still being read until the writer moves on.
    old: Option<Tail>,
    tx: mpsc::Sender<SourceEvent>,
    stop: Arc<AtomicBool>,
}

/// The receiver is gone: stop.
struct Closed;

impl Follower {
    fn try_watch(&mut self) {
        if self.wd.is_some() {
            return;
        }
        let mask = WatchMask::MODIFY
            | WatchMask::CREATE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::DELETE
            | WatchMask::CLOSE_WRITE
            | WatchMask::ATTRIB
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF;
        if let Ok(wd) = self.watches.add(&self.dir, mask) {
            self.wd = Some(wd);
        }
    }

    fn open(&self, from_end: bool) -> Result<Option<Tail>, SourceError> {
        let io = |source| SourceError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let meta = file.metadata().map_err(io)?;
        let offset = if from_end {
            file.seek(SeekFrom::End(0)).map_err(io)?
        } else {
            0
        };
        Ok(Some(Tail {
            file,
            inode: meta.ino(),
            dev: meta.dev(),
            splitter: LineSplitter::at_offset(self.max_line, offset),
            line_no: 0,
        }))
    }

    fn open_initial(&mut self, from: ReadFrom) {
        match self.open(from == ReadFrom::End) {
            Ok(t) => self.current = t,
            Err(e) => {
                let _ = self.tx.try_send(SourceEvent::Error(Arc::new(e)));
            }
        }
    }

    fn send(&self, ev: SourceEvent) -> Result<(), Closed> {
        self.tx.blocking_send(ev).map_err(|_| Closed)
    }

    fn run(mut self, wd_slot: &std::sync::Mutex<Option<WatchDescriptor>>) {
        let mut buf = vec![0u8; 4096];
        loop {
            if self.stop.load(Ordering::SeqCst) || self.tx.is_closed() {
                return;
            }
            if self.check().is_err() {
                return;
            }
            if self.wd.is_none() {
                // The directory does not exist (yet): look again shortly.
                std::thread::sleep(Duration::from_secs(1));
                self.try_watch();
                if let Ok(mut g) = wd_slot.lock() {
                    g.clone_from(&self.wd);
                }
                continue;
            }
            match self.inotify.read_events_blocking(&mut buf) {
                Ok(events) => {
                    for ev in events {
                        if ev.mask.contains(inotify::EventMask::IGNORED) {
                            // The directory went away, or we are being stopped.
                            self.wd = None;
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let err = SourceError::Watch {
                        path: self.dir.clone(),
                        source: e,
                    };
                    let _ = self.send(SourceEvent::Error(Arc::new(err)));
                    return;
                }
            }
        }
    }

    /// Brings everything up to date with what the path names now.
    fn check(&mut self) -> Result<(), Closed> {
        if let Some(mut old) = self.old.take() {
            self.drain(&mut old, false)?;
            self.old = Some(old);
        }
        match std::fs::metadata(&self.path) {
            Ok(meta) => {
                let same = self
                    .current
                    .as_ref()
                    .is_some_and(|t| t.inode == meta.ino() && t.dev == meta.dev());
                if !same {
                    let what = if self.current.is_some() {
                        Rotation::Replaced
                    } else {
                        Rotation::Created
                    };
                    if let Some(mut cur) = self.current.take() {
                        self.drain(&mut cur, false)?;
                        if let Some(mut older) = self.old.replace(cur) {
                            self.finish(&mut older)?;
                        }
                    }
                    match self.open(false) {
                        Ok(t) => {
                            self.current = t;
                            self.send(SourceEvent::Rotated {
                                path: self.path.clone(),
                                what,
                            })?;
                        }
                        Err(e) => self.send(SourceEvent::Error(Arc::new(e)))?,
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if let Some(cur) = self.current.take() {
                    if let Some(mut older) = self.old.replace(cur) {
                        self.finish(&mut older)?;
                    }
                    self.send(SourceEvent::Rotated {
                        path: self.path.clone(),
                        what: Rotation::Removed,
                    })?;
                }
            }
            Err(e) => {
                let err = SourceError::Io {
                    path: self.path.clone(),
                    source: e,
                };
                self.send(SourceEvent::Error(Arc::new(err)))?;
            }
        }
        if let Some(mut cur) = self.current.take() {
            // Data in the new file means the writer has moved to it: the old
            // one is done, and its last lines come before the new file's
            // first. Decided by what the read returns, not by an earlier
            // size check, which a write landing between the two would slip
            // past (the old file's partial last line would then wait for
            // the next rotation).
            let mut old = self.old.take();
            self.drain_after(&mut cur, true, &mut old)?;
            self.old = old;
            self.current = Some(cur);
        }
        Ok(())
    }

    /// Reads `t` to its end.
    fn drain(&self, t: &mut Tail, check_truncation: bool) -> Result<(), Closed> {
        self.drain_after(t, check_truncation, &mut None)
    }

    /// Reads `t` to its end; if it yields any data, `before` (the file it
    /// replaced) is finished first and taken.
    fn drain_after(
        &self,
        t: &mut Tail,
        check_truncation: bool,
        before: &mut Option<Tail>,
    ) -> Result<(), Closed> {
        if check_truncation {
            if let Ok(meta) = t.file.metadata() {
                if meta.len() < t.splitter.offset() {
                    if t.file.seek(SeekFrom::Start(0)).is_ok() {
                        t.splitter.reset(0);
                        t.line_no = 0;
                    }
                    self.send(SourceEvent::Rotated {
                        path: self.path.clone(),
                        what: Rotation::Truncated,
                    })?;
                }
            }
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match t.file.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    let err = SourceError::Io {
                        path: self.path.clone(),
                        source: e,
                    };
                    self.send(SourceEvent::Error(Arc::new(err)))?;
                    return Ok(());
                }
            };
            if let Some(mut done) = before.take() {
                self.finish(&mut done)?;
            }
            self.split(t, &buf[..n], false)?;
        }
    }

    /// Reads a file that is done with to its end, partial last line included.
    fn finish(&self, t: &mut Tail) -> Result<(), Closed> {
        self.drain(t, false)?;
        self.split(t, &[], true)
    }

    fn split(&self, t: &mut Tail, chunk: &[u8], finish: bool) -> Result<(), Closed> {
        let mut out = Vec::new();
        let inode = t.inode;
        let mut line_no = t.line_no;
        let mut emit = |p: Piece<'_>, end: u64| {
            line_no += 1;
            let pos = Position::File {
                inode,
                offset: end,
                line_no,
            };
            out.push(match p {
                Piece::Line(l) => SourceEvent::Line(Line {
                    bytes: l.to_vec(),
                    pos,
                }),
                Piece::TooLong { len } => SourceEvent::TooLong { pos, len },
            });
        };
        if finish {
            t.splitter.finish(&mut emit);
        } else {
            t.splitter.push(chunk, &mut emit);
        }
        t.line_no = line_no;
        for ev in out {
            self.send(ev)?;
        }
        Ok(())
    }
}
