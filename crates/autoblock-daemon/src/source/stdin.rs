//! Reading lines from standard input (or any other byte stream) until its end.
//!
//! The stream is read on its own thread in chunks, split by
//! [`LineSplitter`] (lines capped, a final line without `\n` still counts),
//! and each line is sent as [`SourceEvent::Line`] with a
//! [`Position::Stream`]; the end of the stream is sent as
//! [`SourceEvent::Eof`]. Deliberately not here: following a file that grows
//! (see [`super::file`]).

use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::lines::{LineSplitter, Piece};
use super::{Line, Position, SourceError, SourceEvent, SourceHandle};

/// Reads standard input; see the module docs.
pub fn read_stdin(
    max_line: usize,
    channel: usize,
) -> Result<(SourceHandle, mpsc::Receiver<SourceEvent>), SourceError> {
    read_reader("stdin", std::io::stdin(), max_line, channel)
}

/// Reads any byte stream, named `what` in errors; see the module docs.
pub fn read_reader<R: Read + Send + 'static>(
    what: &str,
    mut reader: R,
    max_line: usize,
    channel: usize,
) -> Result<(SourceHandle, mpsc::Receiver<SourceEvent>), SourceError> {
    let (tx, rx) = mpsc::channel(channel.max(1));
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let name = what.to_owned();
    let thread = std::thread::Builder::new()
        .name("autoblock-stream".into())
        .spawn(move || {
            let mut splitter = LineSplitter::new(max_line);
            let mut buf = vec![0u8; 64 * 1024];
            let mut line_no = 0u64;
            loop {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let n = match reader.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let err = SourceError::Io {
                            path: name.clone().into(),
                            source: e,
                        };
                        let _ = tx.blocking_send(SourceEvent::Error(Arc::new(err)));
                        0
                    }
                };
                let mut out = Vec::new();
                let mut emit = |p: Piece<'_>, end: u64| {
                    line_no += 1;
                    let pos = Position::Stream {
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
                if n == 0 {
                    splitter.finish(&mut emit);
                    out.push(SourceEvent::Eof);
                } else {
                    splitter.push(&buf[..n], &mut emit);
                }
                for ev in out {
                    if tx.blocking_send(ev).is_err() {
                        return;
                    }
                }
                if n == 0 {
                    return;
                }
            }
        })
        .map_err(|source| SourceError::Thread {
            what: what.to_owned(),
            source,
        })?;
    Ok((SourceHandle::new(stop, None, thread), rx))
}
