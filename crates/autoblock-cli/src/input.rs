//! Reading entries from the command line and from bulk files (`-f FILE` / `-f -`).
//!
//! Line format: `ADDR[/LEN] [timeout=DURATION] [comment=TEXT…]`; blank lines and lines
//! starting with `#` are ignored. Every bad line is reported with its number; nothing is
//! applied unless the caller asked to skip invalid lines. [`EntryStream`] reads a file line
//! by line for the set layout's streamed load; [`from_file`] collects it (chain layout).
//! It does not talk to the kernel.

use std::io::{BufRead, Write};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use autoblock::controller::{BadEntry, BulkError, BulkOptions};
use autoblock::{Entry, Net};

/// Defaults applied to entries that do not say otherwise.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub comment: Option<String>,
    pub timeout: Option<Duration>,
    pub mask: bool,
}

/// A bad line of a bulk file.
#[derive(Debug)]
pub struct BadLine {
    pub line: usize,
    pub text: String,
    pub reason: String,
}

pub fn parse_duration(s: &str) -> Result<Duration> {
    humantime::parse_duration(s)
        .with_context(|| format!("{s:?} is not a duration (examples: 90s, 10m, 1h, 7d)"))
}

fn entry(
    net: Net,
    d: &Defaults,
    now: SystemTime,
    timeout: Option<Duration>,
    comment: Option<String>,
) -> Entry {
    let mut e = Entry::new(net);
    e.comment = comment.or_else(|| d.comment.clone());
    if let Some(t) = timeout.or(d.timeout) {
        e.expires = Some(now + t);
    }
    e
}

/// Parses addresses given as arguments.
pub fn from_args(args: &[String], d: &Defaults) -> Result<Vec<Entry>> {
    let now = SystemTime::now();
    args.iter()
        .map(|a| {
            let net = Net::parse(a, d.mask)?;
            Ok(entry(net, d, now, None, None))
        })
        .collect()
}

/// Parses one line of a bulk file; `Ok(None)` for blank and comment lines.
pub fn parse_line(
    line: &str,
    d: &Defaults,
    now: SystemTime,
) -> std::result::Result<Option<Entry>, String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(None);
    }
    let (addr, mut rest) = match t.split_once(char::is_whitespace) {
        Some((a, r)) => (a, r.trim_start()),
        None => (t, ""),
    };
    // A plain address (the common bulk line) needs no prefix checks; anything else, and
    // every error message, goes through `Net::parse`.
    let plain = if addr.contains('/') {
        None
    } else {
        addr.parse::<std::net::IpAddr>().ok().map(Net::host)
    };
    let net = match plain {
        Some(n) => n,
        None => Net::parse(addr, d.mask).map_err(|e| e.to_string())?,
    };
    let mut timeout = None;
    let mut comment = None;
    while !rest.is_empty() {
        if let Some(c) = rest.strip_prefix("comment=") {
            comment = Some(c.trim_end().to_owned());
            break;
        }
        let (word, r) = match rest.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim_start()),
            None => (rest, ""),
        };
        match word.strip_prefix("timeout=") {
            Some(v) => {
                timeout =
                    Some(humantime::parse_duration(v).map_err(|_| {
                        format!("{v:?} is not a duration (examples: 90s, 10m, 1h, 7d)")
                    })?)
            }
            None if word.starts_with('#') => break,
            None => {
                return Err(format!(
                    "unexpected {word:?} (expected timeout=DURATION or comment=TEXT)"
                ))
            }
        }
        rest = r;
    }
    Ok(Some(entry(net, d, now, timeout, comment)))
}

/// Reads a bulk file (`-` = standard input). Returns the entries and the bad lines.
pub fn from_file(path: &str, d: &Defaults) -> Result<(Vec<Entry>, Vec<BadLine>)> {
    let reader: Box<dyn BufRead> = if path == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
        Box::new(std::io::BufReader::with_capacity(1 << 20, f))
    };
    let now = SystemTime::now();
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    let mut buf = String::new();
    let mut reader = reader;
    let mut n = 0;
    loop {
        buf.clear();
        let read = reader
            .read_line(&mut buf)
            .with_context(|| format!("reading {path} at line {}", n + 1))?;
        if read == 0 {
            break;
        }
        n += 1;
        match parse_line(&buf, d, now) {
            Ok(Some(e)) => entries.push(e),
            Ok(None) => {}
            Err(reason) => bad.push(BadLine {
                line: n,
                text: buf.trim_end().to_owned(),
                reason,
            }),
        }
    }
    Ok((entries, bad))
}

/// Entries of a bulk file read one line at a time, for [`autoblock::Controller::block_stream`]:
/// one reused line buffer, no list of entries. Blank and comment lines are skipped; a bad
/// line is an `Err` with its number; a read error ends the stream with a fatal entry (the
/// load is then refused as a whole).
pub struct EntryStream {
    reader: Box<dyn BufRead>,
    path: String,
    d: Defaults,
    now: SystemTime,
    buf: Vec<u8>,
    line: u64,
    bytes: u64,
    done: bool,
    progress: crate::progress::Progress,
}

impl std::fmt::Debug for EntryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryStream")
            .field("path", &self.path)
            .field("line", &self.line)
            .finish()
    }
}

/// Lines between two progress updates.
const PROGRESS_LINES: u64 = 16_384;

impl EntryStream {
    /// Opens `path` (`-` = standard input).
    pub fn open(path: &str, d: &Defaults, progress: crate::progress::Progress) -> Result<Self> {
        let reader: Box<dyn BufRead> = if path == "-" {
            Box::new(std::io::BufReader::with_capacity(1 << 20, std::io::stdin()))
        } else {
            let f = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
            Box::new(std::io::BufReader::with_capacity(1 << 20, f))
        };
        Ok(EntryStream::from_reader(reader, path, d, progress))
    }

    /// Reads from `reader`; `name` is what messages call it.
    pub fn from_reader(
        reader: Box<dyn BufRead>,
        name: &str,
        d: &Defaults,
        progress: crate::progress::Progress,
    ) -> Self {
        EntryStream {
            reader,
            path: name.to_owned(),
            d: d.clone(),
            now: SystemTime::now(),
            buf: Vec::with_capacity(256),
            line: 0,
            bytes: 0,
            done: false,
            progress,
        }
    }
}

impl Iterator for EntryStream {
    type Item = std::result::Result<(u64, Entry), BadEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            let read = match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Err(BadEntry::fatal(
                        self.line + 1,
                        self.path.clone(),
                        format!("cannot read {}: {e}", self.path),
                    )));
                }
            };
            if read == 0 {
                self.done = true;
                self.progress.set_read(self.bytes, self.line);
                break;
            }
            self.line += 1;
            self.bytes += read as u64;
            if self.line % PROGRESS_LINES == 0 {
                self.progress.set_read(self.bytes, self.line);
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t,
                Err(_) => {
                    return Some(Err(BadEntry::new(
                        self.line,
                        String::from_utf8_lossy(&self.buf).trim_end().to_owned(),
                        "not UTF-8 text",
                    )))
                }
            };
            match parse_line(text, &self.d, self.now) {
                Ok(None) => continue,
                Ok(Some(e)) => return Some(Ok((self.line, e))),
                Err(reason) => {
                    return Some(Err(BadEntry::new(
                        self.line,
                        text.trim_end().to_owned(),
                        reason,
                    )))
                }
            }
        }
        None
    }
}

/// Formats bulk-load bad entries like [`describe_bad`].
pub fn describe_bad_entries(path: &str, bad: &[BadEntry], total: u64) -> String {
    let mut s = String::new();
    for b in bad.iter().take(10) {
        s.push_str(&format!("{path}:{}: {}: {:?}\n", b.line, b.reason, b.text));
    }
    if total > 10 {
        s.push_str(&format!("… and {} more bad lines\n", total - 10));
    }
    s
}

/// `block -f FILE` for the set layout: `addrs` and the lines of `path` are streamed into the
/// kernel's batch by [`autoblock::Controller::block_stream`], with a progress bar on a
/// terminal; prints what the kernel counts afterwards.
pub fn block_file(
    cfg: autoblock::Config,
    addrs: &[String],
    path: &str,
    skip_invalid: bool,
    d: &Defaults,
    out: &mut impl Write,
) -> Result<()> {
    let args = from_args(addrs, d).map_err(|e| crate::BadInput(format!("{e:#}")))?;
    let progress = crate::progress::Progress::for_input(path);
    let stream = EntryStream::open(path, d, progress.clone())?;
    let mut ctl = autoblock::Controller::open(cfg)?;
    let mut on_progress = |p| progress.phase(p);
    let opts = BulkOptions::default()
        .skip_invalid(skip_invalid)
        .progress(&mut on_progress);
    let items = args.into_iter().map(|e| Ok((0, e))).chain(stream);
    let result = ctl.block_stream(items, opts);
    progress.finish();
    let r = match result {
        Ok(r) => r,
        Err(BulkError::Invalid { count, bad }) => {
            let fatal = bad.iter().find(|b| b.fatal);
            return Err(crate::BadInput(match fatal {
                Some(f) => format!("{}; nothing was applied", f.reason),
                None => format!(
                    "{count} invalid line(s) in {path}; nothing was applied (use --skip-invalid to skip them):\n{}",
                    describe_bad_entries(path, &bad, count).trim_end()
                ),
            })
            .into());
        }
        Err(BulkError::Controller(e)) => return Err(e.into()),
        Err(e) => return Err(anyhow::anyhow!("{e}")),
    };
    if r.invalid > 0 {
        eprintln!(
            "autoblock: skipped {} invalid line(s) of {path}:\n{}",
            r.invalid,
            describe_bad_entries(path, &r.bad, r.invalid).trim_end()
        );
    }
    for w in &r.warnings {
        eprintln!("autoblock: warning: {w}");
    }
    writeln!(
        out,
        "blocked {} entries in {} transaction(s)",
        r.entries, r.transactions
    )?;
    for s in &r.sets {
        writeln!(
            out,
            "  set {:<10} {:>9} sent, elements {} -> {}",
            s.name,
            s.sent,
            s.before,
            s.after.map_or_else(|| "?".to_owned(), |a| a.to_string())
        )?;
    }
    Ok(())
}

/// `list --count`: entries per set (set layout) or per family (chain layout), and the
/// total, from the kernel's counts (no dump of the set layout's sets on kernels >= 6.16).
pub fn print_counts(
    ctl: &mut autoblock::Controller,
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    let st = ctl.status()?;
    let set_layout = ctl.config().layout == autoblock::Layout::Set;
    let mut rows: Vec<(String, u64)> = Vec::new();
    for f in &st {
        if set_layout {
            rows.extend(f.sets.iter().map(|s| (s.name.clone(), s.elements)));
        } else {
            let fam = match f.family {
                autoblock::IpFamily::V4 => "ipv4",
                autoblock::IpFamily::V6 => "ipv6",
            };
            rows.push((fam.to_owned(), f.entries as u64));
        }
    }
    let total: u64 = rows.iter().map(|(_, n)| n).sum();
    if json {
        let per: serde_json::Map<String, serde_json::Value> = rows
            .into_iter()
            .map(|(k, n)| (k, serde_json::Value::from(n)))
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::json!({ "total": total, "counts": per })
        )?;
        return Ok(());
    }
    for (k, n) in &rows {
        writeln!(out, "{k} {n}")?;
    }
    writeln!(out, "total {total}")?;
    Ok(())
}

/// Formats bad lines for an error message (the first few, and a count).
pub fn describe_bad(path: &str, bad: &[BadLine]) -> String {
    let mut s = String::new();
    for b in bad.iter().take(10) {
        s.push_str(&format!("{path}:{}: {}: {:?}\n", b.line, b.reason, b.text));
    }
    if bad.len() > 10 {
        s.push_str(&format!("… and {} more bad lines\n", bad.len() - 10));
    }
    s
}

pub fn require_some(entries: &[Entry]) -> Result<()> {
    if entries.is_empty() {
        bail!("no addresses given (pass ADDR… or -f FILE)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_table() {
        let d = Defaults::default();
        let now = SystemTime::UNIX_EPOCH;
        assert!(parse_line("", &d, now).unwrap().is_none());
        assert!(parse_line("  # note", &d, now).unwrap().is_none());
        let e = parse_line("192.0.2.1", &d, now).unwrap().unwrap();
        assert_eq!(e.net.to_string(), "192.0.2.1/32");
        let e = parse_line("2001:db8::/48 timeout=1h comment=ssh brute force", &d, now)
            .unwrap()
            .unwrap();
        assert_eq!(e.expires, Some(now + Duration::from_secs(3600)));
        assert_eq!(e.comment.as_deref(), Some("ssh brute force"));
        assert!(parse_line("192.0.2.1/24", &d, now)
            .unwrap_err()
            .contains("192.0.2.0/24"));
        assert!(parse_line("192.0.2.1 timeout=soon", &d, now)
            .unwrap_err()
            .contains("soon"));
        assert!(parse_line("192.0.2.1 bogus", &d, now)
            .unwrap_err()
            .contains("bogus"));
        assert!(parse_line("192.0.2.1 # trailing", &d, now)
            .unwrap()
            .is_some());
        // The plain-address fast path agrees with Net::parse.
        for a in [
            "::ffff:192.0.2.9",
            "2001:DB8::1",
            "0.0.0.0",
            "fe80::1%eth0",
            "1.2.3",
        ] {
            let fast = parse_line(a, &d, now).map(|e| e.map(|e| e.net));
            let slow = Net::parse(a, false).map(Some).map_err(|e| e.to_string());
            assert_eq!(fast, slow, "{a}");
        }
    }

    /// Reads `text` as a bulk file.
    fn stream(text: &[u8]) -> Vec<std::result::Result<(u64, Entry), BadEntry>> {
        let reader = Box::new(std::io::Cursor::new(text.to_vec()));
        EntryStream::from_reader(
            reader,
            "t",
            &Defaults::default(),
            crate::progress::Progress::default(),
        )
        .collect()
    }

    #[test]
    fn stream_numbers_lines_and_keeps_going_after_bad_ones() {
        let got = stream(b"# head\n192.0.2.1\n\nbad\n\xff\xfe\n2001:db8::/32 timeout=1h");
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[0].as_ref().map(|(l, e)| (*l, e.net.to_string())),
            Ok((2, "192.0.2.1/32".into()))
        );
        let bad: Vec<u64> = got
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|b| b.line)
            .collect();
        assert_eq!(bad, [4, 5]);
        assert!(got
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|b| !b.fatal));
        let last = got[3].as_ref().map(|(l, e)| (*l, e.expires.is_some()));
        assert_eq!(last, Ok((6, true)));
    }

    #[test]
    fn a_read_error_ends_the_stream_with_a_fatal_entry() {
        struct Broken;
        impl std::io::Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let reader = Box::new(std::io::BufReader::new(Broken));
        let got: Vec<_> = EntryStream::from_reader(
            reader,
            "t",
            &Defaults::default(),
            crate::progress::Progress::default(),
        )
        .collect();
        assert_eq!(got.len(), 1);
        let b = got[0].as_ref().unwrap_err();
        assert!(b.fatal && b.reason.contains("disk on fire"), "{b:?}");
    }
}
