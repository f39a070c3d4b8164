//! Reading entries from the command line and from bulk files (`-f FILE` / `-f -`).
//!
//! Line format: `ADDR[/LEN] [timeout=DURATION] [comment=TEXT…]`; blank lines and lines
//! starting with `#` are ignored. Every bad line is reported with its number; nothing is
//! applied unless the caller asked to skip invalid lines.

use std::io::BufRead;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
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
    let net = Net::parse(addr, d.mask).map_err(|e| e.to_string())?;
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
    }
}
