//! Line envelopes: the syslog/journal framing around a program's message.
//!
//! Recognised per line, without configuration: RFC 3164 (`Nov 25 10:00:00 host
//! sshd[123]: msg`, also with a `<PRI>` prefix, without a host as glibc's
//! `syslog(3)` sends it, and with fractional seconds as `journalctl -o
//! short-precise` prints it), ISO 8601 / RFC 3339 timestamps (rsyslog's
//! high-precision format, `journalctl -o short-iso`, MariaDB's `YYYY-MM-DD
//! HH:MM:SS`), RFC 5424, the journal's short format without a timestamp
//! (`host sshd[123]: msg`, `sshd[123]: msg`) and a bare program message.
//!
//! Deliberately not here: deciding what a message means (that is the
//! filters' job) and any I/O — the time zone and the current time come from the
//! caller in a [`YearContext`], so parsing never reads `/etc/localtime`.

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::{Span, Timestamp};

/// Which framing a line was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EnvelopeFormat {
    /// BSD syslog: `Mmm dd hh:mm:ss`, no year, local time.
    Rfc3164,
    /// A line that starts with an ISO 8601 / RFC 3339 timestamp.
    Iso8601,
    /// RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`).
    Rfc5424,
    /// The journal's short format without a timestamp: `[host ]prog[pid]: msg`.
    Tagged,
    /// A journal entry's fields (see [`crate::JournalTrust`]).
    Journal,
    /// No framing at all: the whole line is the message.
    Bare,
}

/// The time context for timestamps that lack a year or a zone.
///
/// RFC 3164 timestamps have no year and no zone: the year is the one that puts
/// the line closest before `now` (allowing two days of clock skew into the
/// future), so a log that runs from December into January read in January puts
/// the December lines in the previous year; a `Feb 29` goes back to the last
/// leap year. Zone-less timestamps are read in `tz`.
#[derive(Debug, Clone)]
pub struct YearContext {
    now: Timestamp,
    now_civil: DateTime,
    tz: TimeZone,
    fixed: Option<Offset>,
}

impl YearContext {
    /// A context for lines written up to `now`, in time zone `tz` (the caller
    /// obtains it, e.g. with `jiff::tz::TimeZone::system()`).
    pub fn new(now: Timestamp, tz: TimeZone) -> Self {
        let fixed = tz.to_fixed_offset().ok();
        let now_civil = tz.to_datetime(now);
        YearContext {
            now,
            now_civil,
            tz,
            fixed,
        }
    }

    /// A context in UTC.
    pub fn utc(now: Timestamp) -> Self {
        Self::new(now, TimeZone::UTC)
    }

    /// Moves the reference time (a long-running reader calls this now and then).
    pub fn set_now(&mut self, now: Timestamp) {
        self.now = now;
        self.now_civil = self.tz.to_datetime(now);
    }

    /// The reference time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The zone used for timestamps without an offset.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    fn local_to_timestamp(&self, dt: DateTime) -> Option<Timestamp> {
        match self.fixed {
            Some(off) => off.to_timestamp(dt).ok(),
            None => self.tz.to_ambiguous_timestamp(dt).compatible().ok(),
        }
    }

    /// Chooses the year for a year-less local date and time.
    fn infer(&self, month: i8, day: i8, h: i8, m: i8, s: i8, ns: i32) -> Option<Timestamp> {
        let limit = self.now_civil.checked_add(Span::new().days(2)).ok()?;
        let this_year = self.now_civil.year();
        // Eight years back always reaches a leap year for `Feb 29`.
        for year in (this_year - 8..=this_year).rev() {
            let Ok(dt) = DateTime::new(year, month, day, h, m, s, ns) else {
                continue;
            };
            if dt <= limit {
                return self.local_to_timestamp(dt);
            }
        }
        None
    }
}

/// A log line split into its framing and the program's message.
///
/// All byte slices borrow from the line. `program` and `pid` come from the
/// framing only, never from the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// How the line was framed.
    pub format: EnvelopeFormat,
    /// When the line was written, if the framing says so.
    pub time: Option<Timestamp>,
    /// The host name field of the framing (never used as an address).
    pub host: Option<&'a [u8]>,
    /// The program name (syslog tag / APP-NAME).
    pub program: Option<&'a [u8]>,
    /// The process id from the framing.
    pub pid: Option<u32>,
    /// The program's own message.
    pub message: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Splits `line` (with or without its line terminator). Never fails: a line
    /// that matches no framing is a [`EnvelopeFormat::Bare`] message.
    pub fn parse(line: &'a [u8], ctx: &YearContext) -> Envelope<'a> {
        let line = trim_eol(line);
        let (pri, rest) = strip_pri(line);
        if pri {
            if let Some(after) = rest.strip_prefix(b"1 ") {
                if let Some(env) = parse_5424(after, ctx) {
                    return env;
                }
            }
        }
        if let Some((time, after)) = parse_3164_time(rest, ctx) {
            return tagged_after_time(EnvelopeFormat::Rfc3164, time, after);
        }
        if let Some((time, after)) = parse_iso(rest, ctx) {
            return tagged_after_time(EnvelopeFormat::Iso8601, time, after);
        }
        if let Some((host, program, pid, message)) = parse_tagged(rest, true) {
            return Envelope {
                format: EnvelopeFormat::Tagged,
                time: None,
                host,
                program: Some(program),
                pid,
                message,
            };
        }
        Envelope {
            format: EnvelopeFormat::Bare,
            time: None,
            host: None,
            program: None,
            pid: None,
            message: rest,
        }
    }
}

fn trim_eol(mut line: &[u8]) -> &[u8] {
    while let [head @ .., b'\n' | b'\r' | b'\0'] = line {
        line = head;
    }
    line
}

/// Strips an optional `<PRI>` prefix (1 to 3 digits).
fn strip_pri(line: &[u8]) -> (bool, &[u8]) {
    if line.first() != Some(&b'<') {
        return (false, line);
    }
    let digits = line[1..]
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    // PRI is facility * 8 + severity: at most 23 * 8 + 7 = 191.
    let value = line[1..1 + digits.min(3)]
        .iter()
        .fold(0u32, |v, &b| v * 10 + u32::from(b - b'0'));
    if (1..=3).contains(&digits) && value <= 191 && line.get(1 + digits) == Some(&b'>') {
        (true, &line[2 + digits..])
    } else {
        (false, line)
    }
}

fn tagged_after_time(
    format: EnvelopeFormat,
    time: Option<Timestamp>,
    after: &[u8],
) -> Envelope<'_> {
    match parse_tagged(after, false) {
        Some((host, program, pid, message)) => Envelope {
            format,
            time,
            host,
            program: Some(program),
            pid,
            message,
        },
        None => Envelope {
            format,
            time,
            host: None,
            program: None,
            pid: None,
            message: after,
        },
    }
}

type Tagged<'a> = (Option<&'a [u8]>, &'a [u8], Option<u32>, &'a [u8]);

/// `[host ]prog[pid]: msg`. Without a timestamp in front, a tag must carry a
/// pid, so that messages such as `banner exchange: Connection from ...` are
/// not mistaken for `host prog: msg`.
fn parse_tagged(s: &[u8], need_pid: bool) -> Option<Tagged<'_>> {
    let (t1, rest1) = split_token(s);
    if let Some((prog, pid, msg)) = parse_tag(t1, rest1) {
        if pid.is_some() || !need_pid {
            return Some((None, prog, pid, msg));
        }
        return None;
    }
    if t1.is_empty() || t1.len() > 255 || t1.last() == Some(&b':') {
        return None;
    }
    let (t2, rest2) = split_token(rest1);
    let (prog, pid, msg) = parse_tag(t2, rest2)?;
    if pid.is_none() && need_pid {
        return None;
    }
    Some((Some(t1), prog, pid, msg))
}

/// Splits at the first space; the rest starts after it.
fn split_token(s: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b' ', s) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

/// `prog:` or `prog[pid]:` followed by the message.
fn parse_tag<'a>(tok: &'a [u8], rest: &'a [u8]) -> Option<(&'a [u8], Option<u32>, &'a [u8])> {
    let body = tok.strip_suffix(b":")?;
    let (prog, pid) = match body.strip_suffix(b"]") {
        Some(b) => {
            let open = memchr::memrchr(b'[', b)?;
            (&b[..open], Some(parse_u32(&b[open + 1..])?))
        }
        None => (body, None),
    };
    let ok = !prog.is_empty()
        && prog.len() <= 64
        && prog
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b'@'));
    ok.then_some((prog, pid, rest))
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    u32::try_from(v).ok()
}

fn digits<const N: usize>(s: &[u8], at: usize) -> Option<i32> {
    let d = s.get(at..at + N)?;
    let mut v = 0i32;
    for &b in d {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i32::from(b - b'0');
    }
    Some(v)
}

fn narrow(v: i32) -> Option<i8> {
    i8::try_from(v).ok()
}

/// `hh:mm:ss` at `at`, then optional `.fraction`; returns h, m, s, ns and the
/// position after it.
fn parse_clock(s: &[u8], at: usize) -> Option<(i8, i8, i8, i32, usize)> {
    let h = narrow(digits::<2>(s, at)?)?;
    let m = narrow(digits::<2>(s, at + 3)?)?;
    let sec = narrow(digits::<2>(s, at + 6)?)?;
    if s[at + 2] != b':' || s[at + 5] != b':' {
        return None;
    }
    let mut pos = at + 8;
    let mut ns = 0i32;
    if s.get(pos) == Some(&b'.') || s.get(pos) == Some(&b',') {
        pos += 1;
        let start = pos;
        while pos < s.len() && s[pos].is_ascii_digit() {
            if pos - start < 9 {
                ns = ns * 10 + i32::from(s[pos] - b'0');
            }
            pos += 1;
        }
        if pos == start {
            return None;
        }
        for _ in (pos - start)..9 {
            ns *= 10;
        }
    }
    // A leap second (":60") is folded into the last second of the minute.
    Some((h, m, sec.min(59), ns, pos))
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `Mmm dd hh:mm:ss[.frac] ` (day space- or zero-padded).
fn parse_3164_time<'a>(s: &'a [u8], ctx: &YearContext) -> Option<(Option<Timestamp>, &'a [u8])> {
    if s.len() < 16 || s[3] != b' ' {
        return None;
    }
    let mon = MONTHS.iter().position(|m| s[..3] == m[..])?;
    let day = match (s[4], s[5]) {
        (b' ', d) if d.is_ascii_digit() => i32::from(d - b'0'),
        (a, b) if a.is_ascii_digit() && b.is_ascii_digit() => {
            i32::from(a - b'0') * 10 + i32::from(b - b'0')
        }
        _ => return None,
    };
    if s[6] != b' ' {
        return None;
    }
    let (h, m, sec, ns, end) = parse_clock(s, 7)?;
    let rest = match s.get(end) {
        Some(b' ') => &s[end + 1..],
        None => &s[end..],
        _ => return None,
    };
    let month = narrow(i32::try_from(mon).ok()? + 1)?;
    let time = ctx.infer(month, narrow(day)?, h, m, sec, ns);
    Some((time, rest))
}

/// `YYYY-MM-DD(T| )hh:mm:ss[.frac][Z|±hh:mm|±hhmm] `.
fn parse_iso<'a>(s: &'a [u8], ctx: &YearContext) -> Option<(Option<Timestamp>, &'a [u8])> {
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || !(s[10] == b'T' || s[10] == b' ') {
        return None;
    }
    let year = i16::try_from(digits::<4>(s, 0)?).ok()?;
    let month = narrow(digits::<2>(s, 5)?)?;
    let day = narrow(digits::<2>(s, 8)?)?;
    let (h, m, sec, ns, mut pos) = parse_clock(s, 11)?;
    let mut offset: Option<i32> = None;
    match s.get(pos) {
        Some(b'Z' | b'z') => {
            offset = Some(0);
            pos += 1;
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits::<2>(s, pos + 1)?;
            let (om, len) = if s.get(pos + 3) == Some(&b':') {
                (digits::<2>(s, pos + 4)?, 6)
            } else {
                (
                    digits::<2>(s, pos + 3).unwrap_or(0),
                    if digits::<2>(s, pos + 3).is_some() {
                        5
                    } else {
                        3
                    },
                )
            };
            if oh > 25 || om > 59 {
                return None;
            }
            let secs = oh * 3600 + om * 60;
            offset = Some(if sign == b'-' { -secs } else { secs });
            pos += len;
        }
        _ => {}
    }
    let rest = match s.get(pos) {
        Some(b' ') => &s[pos + 1..],
        None => &s[pos..],
        _ => return None,
    };
    let time = DateTime::new(year, month, day, h, m, sec, ns)
        .ok()
        .and_then(|dt| match offset {
            Some(secs) => Offset::from_seconds(secs).ok()?.to_timestamp(dt).ok(),
            None => ctx.local_to_timestamp(dt),
        });
    Some((time, rest))
}

/// The part of RFC 5424 after `<PRI>1 `.
fn parse_5424<'a>(s: &'a [u8], ctx: &YearContext) -> Option<Envelope<'a>> {
    let (ts, rest) = split_token(s);
    let time = if ts == b"-" {
        None
    } else {
        let (t, tail) = parse_iso(ts, ctx)?;
        if !tail.is_empty() {
            return None;
        }
        t
    };
    let (host, rest) = split_token(rest);
    let (app, rest) = split_token(rest);
    let (procid, rest) = split_token(rest);
    let (_msgid, rest) = split_token(rest);
    let rest = skip_structured_data(rest)?;
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let message = rest.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(rest);
    let nil = |t: &'a [u8]| (t != b"-" && !t.is_empty()).then_some(t);
    Some(Envelope {
        format: EnvelopeFormat::Rfc5424,
        time,
        host: nil(host),
        program: nil(app),
        pid: nil(procid).and_then(parse_u32),
        message,
    })
}

/// Skips `-` or one or more `[id param="value" ...]` elements (with `\]`,
/// `\"` and `\\` escapes inside values).
fn skip_structured_data(s: &[u8]) -> Option<&[u8]> {
    if let Some(rest) = s.strip_prefix(b"-") {
        return Some(rest);
    }
    let mut i = 0;
    if s.first() != Some(&b'[') {
        return None;
    }
    while s.get(i) == Some(&b'[') {
        i += 1;
        let mut in_quotes = false;
        loop {
            match *s.get(i)? {
                b'\\' if in_quotes => i += 2,
                b'"' => {
                    in_quotes = !in_quotes;
                    i += 1;
                }
                b']' if !in_quotes => {
                    i += 1;
                    break;
                }
                _ => i += 1,
            }
        }
    }
    s.get(i..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> YearContext {
        YearContext::utc("2026-01-05T12:00:00Z".parse().unwrap())
    }

    #[test]
    fn year_inference_across_new_year() {
        let c = ctx();
        let e = Envelope::parse(b"Dec 31 23:59:59 h sshd[1]: x", &c);
        assert_eq!(e.time.unwrap().to_string(), "2025-12-31T23:59:59Z");
        let e = Envelope::parse(b"Jan  5 11:00:00 h sshd[1]: x", &c);
        assert_eq!(e.time.unwrap().to_string(), "2026-01-05T11:00:00Z");
        // Up to two days of skew into the future is still this year.
        let e = Envelope::parse(b"Jan  7 11:00:00 h sshd[1]: x", &c);
        assert_eq!(e.time.unwrap().to_string(), "2026-01-07T11:00:00Z");
        let e = Envelope::parse(b"Feb 29 01:02:03 h sshd[1]: x", &c);
        assert_eq!(e.time.unwrap().to_string(), "2024-02-29T01:02:03Z");
    }

    #[test]
    fn local_zone_applies_to_zoneless_times() {
        let tz = TimeZone::fixed(jiff::tz::offset(2));
        let c = YearContext::new("2026-06-01T00:00:00Z".parse().unwrap(), tz);
        let e = Envelope::parse(b"May 31 12:00:00 h sshd[1]: x", &c);
        assert_eq!(e.time.unwrap().to_string(), "2026-05-31T10:00:00Z");
    }
}
