//! The journal source on real journal files, written by systemd's own
//! `systemd-journal-remote` from export-format text: replay from the start, the
//! trusted fields reaching the trust check, and live entries appended later.
//! Not here: the trust rules themselves (the detection crate tests those).
#![cfg(feature = "journal")]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use autoblock_daemon::source::{
    follow_journal, JournalEntry, JournalSourceConfig, ReadFrom, SourceEvent,
};
use autoblock_detect::{JournalTrust, Untrusted};
use tokio::sync::mpsc::Receiver;

const REMOTE: &str = "/lib/systemd/systemd-journal-remote";
const BOOT: &str = "0123456789abcdef0123456789abcdef";

/// Whether the writer exists; without it the test cannot run (a failure under CI).
fn have_writer() -> bool {
    if Path::new(REMOTE).exists() {
        return true;
    }
    let msg = format!("{REMOTE} is missing (Debian package systemd-journal-remote)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("not run: {msg}");
    false
}

/// One export-format entry.
fn entry(usec: u64, fields: &[(&str, &str)]) -> String {
    let mut s = format!(
        "__REALTIME_TIMESTAMP={usec}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={BOOT}\n",
        usec % 1_000_000_000
    );
    for (k, v) in fields {
        s.push_str(&format!("{k}={v}\n"));
    }
    s.push('\n');
    s
}

/// Appends entries to the journal file `out` with systemd-journal-remote.
fn write_journal(out: &Path, export: &str) {
    let mut child = Command::new(REMOTE)
        .arg("-o")
        .arg(out)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run systemd-journal-remote");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(export.as_bytes())
        .expect("write export");
    let o = child.wait_with_output().expect("wait");
    assert!(
        o.status.success(),
        "systemd-journal-remote failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

const SSHD: &[(&str, &str)] = &[
    (
        "MESSAGE",
        "Failed password for root from 192.0.2.7 port 50000 ssh2",
    ),
    ("SYSLOG_IDENTIFIER", "sshd"),
    ("_UID", "0"),
    ("_PID", "4242"),
    ("_COMM", "sshd"),
    ("_EXE", "/usr/sbin/sshd"),
    ("_SYSTEMD_UNIT", "ssh.service"),
    ("_HOSTNAME", "web"),
];

const FORGED: &[(&str, &str)] = &[
    (
        "MESSAGE",
        "Failed password for root from 192.0.2.66 port 22 ssh2",
    ),
    ("SYSLOG_IDENTIFIER", "sshd"),
    ("_UID", "1000"),
    ("_PID", "99"),
    ("_COMM", "logger"),
    ("_EXE", "/usr/bin/logger"),
    ("_SYSTEMD_UNIT", "session-3.scope"),
];

async fn next_entry(rx: &mut Receiver<SourceEvent>) -> JournalEntry {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an entry within 10 s")
            .expect("source still open")
        {
            SourceEvent::Entry(e) => return e,
            SourceEvent::Error(e) => panic!("journal error: {e}"),
            _ => {}
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn replays_a_real_journal_file_with_its_trusted_fields() {
    if !have_writer() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("remote.journal");
    let export = entry(1_795_608_000_000_000, SSHD) + &entry(1_795_608_001_000_000, FORGED);
    write_journal(&file, &export);
    rt().block_on(async {
        let cfg = JournalSourceConfig::dirs([dir.path()]).read_from(ReadFrom::Start);
        let (h, mut rx) = follow_journal(cfg).expect("open the journal");
        let first = next_entry(&mut rx).await;
        let second = next_entry(&mut rx).await;
        let trust = JournalTrust::sshd();
        let env = first.judge(&trust).expect("sshd's own entry is trusted");
        assert_eq!(env.message, SSHD[0].1.as_bytes());
        assert_eq!(env.pid, Some(4242));
        assert_eq!(env.program, Some(&b"sshd"[..]));
        assert_eq!(env.time.expect("time").as_second(), 1_795_608_000);
        assert!(first.cursor().is_some_and(|c| !c.is_empty()));
        assert!(matches!(
            second.judge(&trust),
            Err(Untrusted::Uid { uid: Some(ref u) }) if u == "1000"
        ));
        h.stop();
    });
}

#[test]
fn from_the_end_only_new_entries_arrive() {
    if !have_writer() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("remote.journal");
    write_journal(&file, &entry(1_795_608_000_000_000, FORGED));
    rt().block_on(async {
        let cfg = JournalSourceConfig::dirs([dir.path()]);
        let (h, mut rx) = follow_journal(cfg).expect("open the journal");
        write_journal(&file, &entry(1_795_608_005_000_000, SSHD));
        let e = next_entry(&mut rx).await;
        assert_eq!(e.get("_PID"), Some(&b"4242"[..]), "{e:?}");
        assert!(e.judge(&JournalTrust::sshd()).is_ok());
        h.stop();
    });
}
