//! Shared helpers of the integration tests: scanning text and describing the
//! detections as comparable tuples.
#![allow(dead_code)]

use autoblock_detect::{Event, Filter, Mode, Scanner, YearContext};

/// The time the recordings were made in (their syslog timestamps lack a year).
pub fn ctx() -> YearContext {
    YearContext::utc("2026-11-25T12:00:00Z".parse().unwrap())
}

/// One detection as (line, host, kind or "forgive:N", user).
pub type Row = (u64, String, String, Option<String>);

pub fn scan_with(filter: Filter, text: &[u8]) -> (Vec<Row>, Scanner) {
    let mut s = Scanner::new(filter, ctx());
    let mut rows = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(d) = s.feed(i as u64 + 1, line) {
            rows.push(match d.event {
                Event::Failure(f) => (
                    d.line_no,
                    f.host.to_string(),
                    f.kind.as_str().to_owned(),
                    f.user_lossy().map(|u| u.into_owned()),
                ),
                Event::Forgive { host, count } => (
                    d.line_no,
                    host.to_string(),
                    format!("forgive:{count}"),
                    None,
                ),
            });
        }
    }
    (rows, s)
}

pub fn scan(mode: Mode, text: &[u8]) -> Vec<Row> {
    scan_with(Filter::Sshd(mode), text).0
}

/// Only (host, kind) of each row.
pub fn hk(rows: &[Row]) -> Vec<(String, String)> {
    rows.iter().map(|r| (r.1.clone(), r.2.clone())).collect()
}

pub fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The first part of the syslog recording: sshd logging through syslog.
pub fn syslog_recording() -> Vec<u8> {
    let raw = data("debian12-openssh-9.2.syslog.raw");
    let text = String::from_utf8(raw).unwrap();
    let end = text.find("--- sshd -e ---").unwrap();
    text.as_bytes()[..end].to_vec()
}
