//! The ban file of the set layout (`autoblock save --file` / `autoblock restore --file`):
//! its format, its parser and its writer.
//!
//! It owns the text format only; it does not talk to the kernel and does not decide what a
//! restore does with the entries (see `cmd_restore`). Files are replaced atomically through
//! `autoblock_sysconfig::replace_file`.
//!
//! # Format, version 1
//!
//! ```text
//! autoblock-bans 1
//! # saved 2026-11-25T11:02:03Z; one ban per line: NET EXPIRES [COMMENT]
//! 198.51.100.9 1795000000 ssh brute force
//! 203.0.113.0/24 -
//! 2001:db8::/48 1795003600 scanner\x7f
//! ```
//!
//! * Line 1 is the header `autoblock-bans VERSION`; a reader refuses a version it does not
//!   know.
//! * Empty lines and lines starting with `#` are ignored.
//! * A ban is `NET SP EXPIRES`, optionally followed by `SP COMMENT`:
//!   - `NET`: an address (a single host) or `ADDRESS/LEN` without host bits;
//!   - `EXPIRES`: `-` for a permanent ban, else the absolute expiry time in whole seconds
//!     since the Unix epoch (UTC). Absolute, not remaining, so that the time a host spends
//!     down between save and restore counts against the ban;
//!   - `COMMENT`: the rest of the line, with `\\`, `\n`, `\r`, `\t` and `\xHH` (any other
//!     control byte) escaped, so a ban is always exactly one line.
//! * Lines end in `\n`. The file is UTF-8.

use std::fmt::Write as _;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use autoblock::controller::BadEntry;
use autoblock::{Entry, Net};

/// The header's format name.
pub const MAGIC: &str = "autoblock-bans";
/// The version this code writes and reads.
pub const VERSION: u32 = 1;

/// A problem with a ban file, with its path, line number and text.
#[derive(Debug)]
pub struct SetFileError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number (0 when the file as a whole is the problem).
    pub line: usize,
    /// The offending line (shortened).
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for SetFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.reason)
        } else {
            write!(
                f,
                "{}:{}: {} (line: {:?})",
                self.path.display(),
                self.line,
                self.reason,
                self.text
            )
        }
    }
}

impl std::error::Error for SetFileError {}

/// A parsed ban file.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Bans still in force at the time given to [`parse`].
    pub live: Vec<Entry>,
    /// Bans whose expiry had passed (dropped).
    pub expired: usize,
}

/// Parses a whole ban file. `now` decides which bans have expired. Any bad line makes the
/// whole file fail (the first bad line is reported).
pub fn parse(path: &Path, bytes: &[u8], now: SystemTime) -> Result<Loaded, SetFileError> {
    let mut out = Loaded::default();
    for item in Reader::new(path, bytes)? {
        let (_, e) = item.map_err(|b| SetFileError {
            path: path.to_owned(),
            line: usize::try_from(b.line).unwrap_or(usize::MAX),
            text: b.text,
            reason: b.reason,
        })?;
        match e.expires {
            Some(t) if t <= now => out.expired += 1,
            _ => out.live.push(e),
        }
    }
    Ok(out)
}

/// Streams the bans of a ban file, numbered by line, without keeping them: what
/// `Controller::block_stream` takes. The header is checked when the reader is made;
/// a bad line comes out as a `BadEntry` (with its line number), so a load refuses the
/// file before anything reaches the kernel. Expired bans are passed on (the load counts
/// and drops them).
#[derive(Debug)]
pub struct Reader<R> {
    input: R,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<'a> Reader<&'a [u8]> {
    /// A reader of a file held in memory.
    pub fn new(path: &Path, bytes: &'a [u8]) -> Result<Self, SetFileError> {
        Reader::from_read(path, bytes)
    }
}

impl<R: BufRead> Reader<R> {
    /// Reads and checks the header line of `input`.
    pub fn from_read(path: &Path, mut input: R) -> Result<Self, SetFileError> {
        let err = |line: usize, text: &[u8], reason: String| SetFileError {
            path: path.to_owned(),
            line,
            text: shorten(text),
            reason,
        };
        let mut header = Vec::new();
        input
            .read_until(b'\n', &mut header)
            .map_err(|e| err(0, b"", format!("reading: {e}")))?;
        if header.is_empty() {
            return Err(err(
                0,
                b"",
                format!("empty file; a ban file starts with `{MAGIC} {VERSION}`"),
            ));
        }
        let complete = header.last() == Some(&b'\n');
        if complete {
            header.pop();
        }
        check_header(&header).map_err(|reason| err(1, &header, reason))?;
        Ok(Reader {
            input,
            line: 1,
            buf: Vec::with_capacity(256),
            done: !complete,
        })
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<(u64, Entry), BadEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            self.line += 1;
            match self.input.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(BadEntry::new(self.line, "", format!("reading: {e}"))));
                }
            }
            if self.buf.pop() != Some(b'\n') {
                self.done = true;
                return Some(Err(BadEntry::new(
                    self.line,
                    shorten(&self.buf),
                    "the last line has no newline: the file is truncated",
                )));
            }
            match parse_line(&self.buf) {
                Ok(None) => continue,
                Ok(Some(e)) => return Some(Ok((self.line, e))),
                Err(reason) => {
                    return Some(Err(BadEntry::new(self.line, shorten(&self.buf), reason)))
                }
            }
        }
    }
}

/// One line without its newline: `Ok(None)` for blank and `#` lines.
fn parse_line(raw: &[u8]) -> Result<Option<Entry>, String> {
    if raw.is_empty() || raw[0] == b'#' {
        return Ok(None);
    }
    let line = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_owned())?;
    let (net, rest) = line
        .split_once(' ')
        .ok_or_else(|| "expected `NET EXPIRES [COMMENT]`".to_owned())?;
    let (exp, comment) = match rest.split_once(' ') {
        Some((e, c)) => (e, Some(c)),
        None => (rest, None),
    };
    let net = Net::parse(net, false).map_err(|e| e.to_string())?;
    let expires = match exp {
        "-" => None,
        t if !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()) => {
            Some(t.parse::<u64>().map_err(|e| e.to_string())?)
        }
        _ => {
            return Err(format!(
                "bad expiry {exp:?}: `-` or seconds since the epoch"
            ))
        }
    };
    let comment = match comment {
        Some(c) => Some(unescape(c)?),
        None => None,
    };
    Ok(Some(Entry {
        net,
        comment,
        expires: expires.map(|t| UNIX_EPOCH + Duration::from_secs(t)),
    }))
}

fn check_header(header: &[u8]) -> Result<(), String> {
    let h = std::str::from_utf8(header).unwrap_or("");
    let Some(v) = h.strip_prefix(MAGIC).and_then(|r| r.strip_prefix(' ')) else {
        return Err(format!(
            "not an autoblock ban file: the first line must be `{MAGIC} {VERSION}`"
        ));
    };
    match v.parse::<u32>() {
        Ok(VERSION) => Ok(()),
        Ok(other) => Err(format!(
            "ban file format version {other}; this autoblock reads version {VERSION}"
        )),
        Err(_) => Err(format!("bad version {v:?} in the header")),
    }
}

fn shorten(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(text);
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s.into_owned()
    }
}

fn unescape(s: &str) -> Result<String, String> {
    if !s.contains('\\') {
        if s.chars().any(char::is_control) {
            return Err("unescaped control character in the comment".into());
        }
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c.is_control() {
            return Err("unescaped control character in the comment".into());
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('x') => {
                let h: String = chars.by_ref().take(2).collect();
                let b = u8::from_str_radix(&h, 16)
                    .ok()
                    .filter(|b| b.is_ascii() && h.len() == 2)
                    .ok_or_else(|| format!("bad escape \\x{h} in the comment"))?;
                out.push(char::from(b));
            }
            other => {
                return Err(format!(
                    "bad escape \\{} in the comment",
                    other.map(String::from).unwrap_or_default()
                ))
            }
        }
    }
    Ok(out)
}

fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() => {
                // Non-ASCII control characters: written as their UTF-8 bytes would break
                // the one-line rule in some terminals only; keep them readable instead.
                out.push('\u{fffd}');
            }
            c => out.push(c),
        }
    }
}

/// Writes the header and a comment line saying when the file was saved.
pub fn write_header(w: &mut dyn Write, now: SystemTime) -> io::Result<()> {
    writeln!(
        w,
        "{MAGIC} {VERSION}\n# saved {}; one ban per line: NET EXPIRES(- or unix seconds) [COMMENT]",
        autoblock::meta::rfc3339(now)
    )
}

/// Writes one ban. An expiry is rounded up to the next whole second.
pub fn write_entry(
    w: &mut dyn Write,
    buf: &mut String,
    net: Net,
    expires: Option<SystemTime>,
    comment: Option<&str>,
) -> io::Result<()> {
    buf.clear();
    if net.is_host() {
        let _ = write!(buf, "{}", net.addr());
    } else {
        let _ = write!(buf, "{net}");
    }
    match expires {
        None => buf.push_str(" -"),
        Some(t) => {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            let _ = write!(buf, " {secs}");
        }
    }
    if let Some(c) = comment.filter(|c| !c.is_empty()) {
        buf.push(' ');
        escape_into(c, buf);
    }
    buf.push('\n');
    w.write_all(buf.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn write(entries: &[(&str, Option<u64>, Option<&str>)]) -> Vec<u8> {
        let mut v = Vec::new();
        write_header(&mut v, at(1_000)).unwrap();
        let mut buf = String::new();
        for (n, e, c) in entries {
            write_entry(&mut v, &mut buf, n.parse().unwrap(), e.map(at), *c).unwrap();
        }
        v
    }

    #[test]
    fn round_trip_drops_expired() {
        let bytes = write(&[
            ("198.51.100.9", Some(2_000), Some("ssh brute force")),
            ("203.0.113.0/24", None, None),
            ("2001:db8::/48", Some(1_500), Some("a\\b\tc\nd\u{7}")),
            ("2001:db8::1", Some(500), None),
        ]);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("autoblock-bans 1\n# saved 1970-01-01T00:16:40Z"));
        assert!(
            text.contains("\n198.51.100.9 2000 ssh brute force\n"),
            "{text}"
        );
        assert!(text.contains("\n203.0.113.0/24 -\n"), "{text}");
        assert!(
            text.contains("\n2001:db8::/48 1500 a\\\\b\\tc\\nd\\x07\n"),
            "{text}"
        );
        let l = parse(Path::new("f"), &bytes, at(1_000)).unwrap();
        assert_eq!(l.expired, 1);
        assert_eq!(l.live.len(), 3);
        assert_eq!(l.live[0].net.to_string(), "198.51.100.9/32");
        assert_eq!(l.live[0].expires, Some(at(2_000)));
        assert_eq!(l.live[0].comment.as_deref(), Some("ssh brute force"));
        assert_eq!(l.live[1].expires, None);
        assert_eq!(l.live[1].comment, None);
        assert_eq!(l.live[2].comment.as_deref(), Some("a\\b\tc\nd\u{7}"));
        // At 1,500 exactly the third ban has expired too.
        assert_eq!(parse(Path::new("f"), &bytes, at(1_500)).unwrap().expired, 2);
    }

    #[test]
    fn subsecond_expiry_rounds_up() {
        let mut v = Vec::new();
        let mut buf = String::new();
        let t = at(10) + Duration::from_millis(1);
        write_entry(
            &mut v,
            &mut buf,
            "192.0.2.1".parse().unwrap(),
            Some(t),
            None,
        )
        .unwrap();
        assert_eq!(v, b"192.0.2.1 11\n");
    }

    #[test]
    fn bad_files_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "empty file"),
            ("iptables\n", 1, "not an autoblock ban file"),
            ("autoblock-bans 2\n", 1, "version 2"),
            ("autoblock-bans x\n", 1, "bad version"),
            ("autoblock-bans 1\n192.0.2.1 -\n192.0.2.2\n", 3, "expected"),
            ("autoblock-bans 1\n# c\n192.0.2.300 -\n", 3, "192.0.2.300"),
            ("autoblock-bans 1\n192.0.2.1/24 -\n", 2, "192.0.2.0/24"),
            ("autoblock-bans 1\n192.0.2.1 soon\n", 2, "bad expiry"),
            ("autoblock-bans 1\n192.0.2.1 -5\n", 2, "bad expiry"),
            (
                "autoblock-bans 1\n192.0.2.1 9999999999999\n",
                2,
                "bad expiry",
            ),
            ("autoblock-bans 1\n192.0.2.1 - a\\qb\n", 2, "bad escape \\q"),
            ("autoblock-bans 1\n192.0.2.1 - a\\x4\n", 2, "bad escape"),
            (
                "autoblock-bans 1\n192.0.2.1 - a\tb\n",
                2,
                "control character",
            ),
            ("autoblock-bans 1\n 192.0.2.1 -\n", 2, "is not"),
            ("autoblock-bans 1\n192.0.2.1 -\n192.0.2.2 -", 3, "truncated"),
            ("autoblock-bans 1\n\u{0}\n", 2, "expected"),
        ];
        for (text, line, want) in cases {
            let e = parse(Path::new("/x/bans"), text.as_bytes(), at(0)).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            let msg = e.to_string();
            assert!(msg.contains(want), "{text:?}: {msg}");
            assert!(msg.starts_with("/x/bans"), "{msg}");
        }
        let e = parse(Path::new("f"), b"autoblock-bans 1\n\xff -\n", at(0)).unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn blank_and_comment_lines_are_skipped() {
        let l = parse(
            Path::new("f"),
            b"autoblock-bans 1\n\n# x\n192.0.2.1 -\n",
            at(0),
        )
        .unwrap();
        assert_eq!(l.live.len(), 1);
    }

    #[test]
    fn every_ascii_comment_round_trips() {
        let mut comments: Vec<String> = (0u8..=127)
            .map(|b| format!("x{}y", char::from(b)))
            .collect();
        comments.push(" leading and trailing ".into());
        comments.push("\\x41 is not an escape".into());
        comments.push("üñí €".into());
        // Pseudo-random ASCII strings.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..500 {
            let mut s = String::new();
            for _ in 0..(seed % 30) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push(char::from((seed % 128) as u8));
            }
            comments.push(s);
        }
        for c in comments {
            let mut v = Vec::new();
            write_header(&mut v, at(0)).unwrap();
            let mut buf = String::new();
            write_entry(
                &mut v,
                &mut buf,
                "192.0.2.1".parse().unwrap(),
                None,
                Some(&c),
            )
            .unwrap();
            assert_eq!(v.iter().filter(|&&b| b == b'\n').count(), 3, "{c:?}");
            let l = parse(Path::new("f"), &v, at(0)).unwrap();
            let want = if c.is_empty() { None } else { Some(c.clone()) };
            assert_eq!(l.live[0].comment, want);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut v = b"autoblock-bans 1\n".to_vec();
            for _ in 0..(seed % 60) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                const ALPHABET: &[u8] = b" -/0123456789abcdef:.\\x\n#";
                v.push(ALPHABET[(seed % ALPHABET.len() as u64) as usize]);
            }
            let _ = parse(Path::new("f"), &v, at(0));
        }
    }
}
