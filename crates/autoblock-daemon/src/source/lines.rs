//! Splitting a byte stream into lines with a hard cap on line length.
//!
//! [`LineSplitter`] owns the partial last line (held until its newline
//! arrives) and the cap: a line longer than the cap is never buffered, its
//! bytes are counted and dropped up to the next newline and it is reported as
//! [`Piece::TooLong`]. Memory use is therefore bounded by the cap whatever the
//! input. Deliberately not here: reading (callers push the chunks they read),
//! character sets (lines are bytes), and any interpretation of the lines.

/// One result of [`LineSplitter::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A complete line, without its `\n`.
    Line(&'a [u8]),
    /// A line longer than the cap, dropped; `len` bytes without the `\n`.
    TooLong {
        /// The length of the dropped line.
        len: u64,
    },
}

/// Splits pushed chunks into lines; see the module docs.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    partial: Vec<u8>,
    /// Bytes dropped of the current over-long line, if it is over-long.
    dropping: Option<u64>,
    /// Stream offset just past the last byte pushed.
    offset: u64,
}

impl LineSplitter {
    /// A splitter whose lines may be at most `max` bytes (at least 1).
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            max: max.max(1),
            partial: Vec::new(),
            dropping: None,
            offset: 0,
        }
    }

    /// A splitter that starts counting offsets at `offset` (e.g. the end of
    /// a file being followed).
    pub fn at_offset(max: usize, offset: u64) -> LineSplitter {
        let mut s = LineSplitter::new(max);
        s.offset = offset;
        s
    }

    /// The cap on a line's length.
    pub fn max_line(&self) -> usize {
        self.max
    }

    /// The stream offset just past the last byte pushed.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes of the held partial line (dropped bytes of an over-long one included).
    pub fn pending(&self) -> u64 {
        self.dropping.unwrap_or(self.partial.len() as u64)
    }

    /// Forgets the partial line and restarts offsets at `offset` (a truncated
    /// file, a new file).
    pub fn reset(&mut self, offset: u64) {
        self.partial.clear();
        self.partial.shrink_to(self.max.min(4096));
        self.dropping = None;
        self.offset = offset;
    }

    /// Splits `chunk`; calls `f` with each complete piece and the stream
    /// offset just past its newline (where reading would resume after it).
    pub fn push(&mut self, chunk: &[u8], mut f: impl FnMut(Piece<'_>, u64)) {
        let start = self.offset;
        self.offset += chunk.len() as u64;
        let mut rest = chunk;
        let mut consumed = 0u64;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let seg = &rest[..i];
            consumed += i as u64 + 1;
            let end = start + consumed;
            if let Some(dropped) = self.dropping.take() {
                f(
                    Piece::TooLong {
                        len: dropped + seg.len() as u64,
                    },
                    end,
                );
            } else if self.partial.is_empty() {
                if seg.len() > self.max {
                    f(
                        Piece::TooLong {
                            len: seg.len() as u64,
                        },
                        end,
                    );
                } else {
                    f(Piece::Line(seg), end);
                }
            } else if self.partial.len() + seg.len() > self.max {
                let len = (self.partial.len() + seg.len()) as u64;
                self.partial.clear();
                f(Piece::TooLong { len }, end);
            } else {
                self.partial.extend_from_slice(seg);
                f(Piece::Line(&self.partial), end);
                self.partial.clear();
            }
            rest = &rest[i + 1..];
        }
        if rest.is_empty() {
            return;
        }
        match &mut self.dropping {
            Some(d) => *d += rest.len() as u64,
            None if self.partial.len() + rest.len() > self.max => {
                self.dropping = Some((self.partial.len() + rest.len()) as u64);
                self.partial.clear();
                self.partial.shrink_to(self.max.min(4096));
            }
            None => self.partial.extend_from_slice(rest),
        }
    }

    /// Ends the stream: a held partial line is reported as a line (or as
    /// too long), since no newline will ever complete it.
    pub fn finish(&mut self, mut f: impl FnMut(Piece<'_>, u64)) {
        let end = self.offset;
        if let Some(len) = self.dropping.take() {
            f(Piece::TooLong { len }, end);
        } else if !self.partial.is_empty() {
            f(Piece::Line(&self.partial), end);
            self.partial.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(max: usize, chunks: &[&[u8]], finish: bool) -> Vec<(String, u64)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut f = |p: Piece<'_>, end: u64| {
            out.push(match p {
                Piece::Line(l) => (String::from_utf8_lossy(l).into_owned(), end),
                Piece::TooLong { len } => (format!("<{len}>"), end),
            })
        };
        for c in chunks {
            s.push(c, &mut f);
        }
        if finish {
            s.finish(&mut f);
        }
        out
    }

    #[test]
    fn splits_and_holds_partial() {
        let got = run(100, &[b"ab\ncd", b"e\n", b"f"], false);
        assert_eq!(got, vec![("ab".into(), 3), ("cde".into(), 7)]);
        let got = run(100, &[b"ab\ncd", b"e\n", b"f"], true);
        assert_eq!(got[2], ("f".into(), 8));
    }

    #[test]
    fn long_lines_are_dropped_and_counted() {
        let got = run(4, &[b"abcde\nxy", b"zzz", b"zz\nok\n"], false);
        assert_eq!(
            got,
            vec![("<5>".into(), 6), ("<7>".into(), 14), ("ok".into(), 17)]
        );
        // Exactly at the cap is a line.
        assert_eq!(run(4, &[b"abcd\n"], false), vec![("abcd".into(), 5)]);
        assert_eq!(run(4, &[b"ab", b"cd\n"], false), vec![("abcd".into(), 5)]);
        assert_eq!(run(4, &[b"ab", b"cde\n"], false), vec![("<5>".into(), 6)]);
    }

    #[test]
    fn ten_megabytes_in_pieces_stay_bounded() {
        let mut s = LineSplitter::new(64 * 1024);
        let chunk = vec![b'x'; 1 << 20];
        let mut seen = Vec::new();
        for _ in 0..10 {
            s.push(&chunk, |p, _| seen.push(format!("{p:?}")));
            assert!(s.partial.capacity() <= 64 * 1024 + 4096);
        }
        s.push(b"\nnext\n", |p, end| {
            seen.push(format!("{p:?}@{end}"));
        });
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[0],
            format!("TooLong {{ len: {} }}@{}", 10 << 20, (10 << 20) + 1)
        );
        assert!(seen[1].starts_with("Line([110, 101, 120, 116])"));
    }
}
