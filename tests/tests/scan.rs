//! `autoblock scan` on the recorded OpenSSH logs of the detection crate: the JSON output
//! line by line, the summary, `--simulate`, standard input, exit codes. It runs the real
//! binary but needs no namespace and no root: scan reads files only.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use autoblock_tests::autoblock_bin;
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/autoblock-detect/tests/data")
        .join(name)
}

const SYSLOG: &str = "debian12-openssh-9.2.syslog.raw";
const STDERR_LOG: &str = "debian12-openssh-9.2.stderr.log";
/// The recording was made on this day; the log has no year.
const NOW: &str = "2026-11-25T12:00:00Z";

fn scan(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(autoblock_bin());
    cmd.arg("scan").args(args).env("TZ", "UTC");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run autoblock scan");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    }
    child.wait_with_output().expect("wait for autoblock scan")
}

fn scan_ok(args: &[&str]) -> (String, String) {
    let out = scan(args, None);
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
    assert!(out.status.success(), "scan {args:?} failed: {stderr}");
    (stdout, stderr)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

#[test]
fn json_output_of_the_recorded_syslog() {
    let path = data(SYSLOG);
    let path = path.to_str().expect("utf-8 path");
    let (out, err) = scan_ok(&["--filter", "sshd", "--json", "--now", NOW, path]);
    // The first eight failures, checked by hand against the recording: a PAM failure and
    // its `Failed password` count once (lines 3-4, 6-7); the second password of one
    // connection counts (8); `Invalid user` with its PAM and `Failed password` lines is one
    // attempt (11-14); AllowUsers, DenyUsers and AllowGroups refusals (16, 20, 24); root (28).
    let expected = [
        (3, "pam-failure", "2026-11-25T10:29:31Z"),
        (6, "pam-failure", "2026-11-25T10:29:34Z"),
        (8, "failed-password", "2026-11-25T10:29:40Z"),
        (11, "invalid-user", "2026-11-25T10:29:41Z"),
        (16, "user-not-allowed", "2026-11-25T10:29:45Z"),
        (20, "user-not-allowed", "2026-11-25T10:29:48Z"),
        (24, "user-not-allowed", "2026-11-25T10:29:50Z"),
        (28, "pam-failure", "2026-11-25T10:29:54Z"),
    ];
    let lines: Vec<&str> = out.lines().collect();
    for (i, (n, kind, time)) in expected.iter().enumerate() {
        assert_eq!(
            lines[i],
            format!(
                "{{\"line\":{n},\"host\":\"10.77.0.2\",\"filter\":\"sshd\",\"kind\":\"{kind}\",\"time\":\"{time}\"}}"
            )
        );
    }
    // Every object: exactly the documented keys, and it agrees with the input line it names.
    let raw = std::fs::read_to_string(data(SYSLOG)).expect("read the recording");
    let raw: Vec<&str> = raw.lines().collect();
    let objs = json_lines(&out);
    let mut hosts = BTreeSet::new();
    let mut failures = 0;
    for o in &objs {
        let m = o.as_object().expect("object");
        let kind = m["kind"].as_str().expect("kind");
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        if kind == "forgive" {
            assert_eq!(keys.len(), 6, "{o}");
        } else {
            failures += 1;
            assert_eq!(keys.len(), 5, "{o}");
        }
        let n = m["line"].as_u64().expect("line") as usize;
        let host = m["host"].as_str().expect("host");
        let line = raw[n - 1];
        assert!(
            line.contains(host),
            "line {n} {line:?} does not name {host}"
        );
        assert_eq!(m["filter"], "sshd");
        // Syslog `Nov 25 10:29:31` in UTC.
        let t = m["time"].as_str().expect("time");
        assert_eq!(
            &line[4..19],
            format!("Nov 25 {}", &t[11..19]),
            "time of line {n}"
        );
        assert!(t.starts_with("2026-11-25T") && t.ends_with('Z'));
        hosts.insert(host.to_owned());
    }
    // The two user names that imitate log text frame nobody.
    assert_eq!(
        hosts,
        BTreeSet::from(["10.77.0.2".to_owned(), "fd00:77::2".to_owned()])
    );
    // The summary counts what was printed.
    assert!(
        err.contains(&format!(
            "scan: {} lines, {failures} failures from 2 distinct hosts",
            raw.len()
        )),
        "{err}"
    );
    assert!(err.contains("skipped: "), "{err}");
}

#[test]
fn standard_input_gives_the_same_output() {
    let path = data(SYSLOG);
    let (from_file, _) = scan_ok(&["--json", "--now", NOW, path.to_str().expect("path")]);
    let bytes = std::fs::read(&path).expect("read");
    let out = scan(&["--json", "--now", NOW, "-"], Some(&bytes));
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).expect("utf-8"), from_file);
}

#[test]
fn bare_messages_have_no_time() {
    let path = data(STDERR_LOG);
    let (out, err) = scan_ok(&["--filter", "sshd", "--json", path.to_str().expect("path")]);
    let objs = json_lines(&out);
    assert!(!objs.is_empty());
    assert!(objs.iter().all(|o| o["time"].is_null()), "{out}");
    // `Failed password` on line 3 of sshd's own stderr.
    assert_eq!(
        out.lines().next(),
        Some(
            "{\"line\":3,\"host\":\"10.77.0.2\",\"filter\":\"sshd\",\"kind\":\"failed-password\",\"time\":null}"
        )
    );
    assert!(err.starts_with("scan: "), "{err}");
}

#[test]
fn simulate_bans_on_the_third_failure() {
    let path = data(SYSLOG);
    let (out, err) = scan_ok(&[
        "--simulate",
        "--json",
        "--maxretry",
        "3",
        "--findtime",
        "10m",
        "--bantime",
        "1h",
        "--now",
        NOW,
        path.to_str().expect("path"),
    ]);
    // Failures on lines 3, 6 and 8 (see above): the ban is decided at line 8's time.
    assert_eq!(
        out.lines().next(),
        Some(
            "{\"line\":8,\"ban\":\"10.77.0.2/32\",\"time\":\"2026-11-25T10:29:40Z\",\"bantime_s\":3600,\"offence\":1}"
        )
    );
    let bans = json_lines(&out);
    let nets: BTreeSet<&str> = bans
        .iter()
        .map(|b| b["ban"].as_str().expect("ban"))
        .collect();
    assert!(nets.contains("fd00:77::2/128"), "{out}");
    assert!(err.contains(&format!("; {} bans of", bans.len())), "{err}");
}

#[test]
fn exit_codes() {
    let out = scan(&["--filter", "no-such-filter", "-"], Some(b""));
    assert_eq!(out.status.code(), Some(2));
    let out = scan(&["/nonexistent/autoblock/secure"], None);
    assert_eq!(out.status.code(), Some(1));
    let out = scan(&["--now", "yesterday", "-"], Some(b""));
    assert_eq!(out.status.code(), Some(2));
    let out = scan(&["-"], Some(b"no newline at the end"));
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("scan: 1 lines, 0 failures"));
}

#[test]
fn simulate_takes_the_jail_from_a_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("autoblock.toml");
    // The IPv6 client is allowed; the IPv4 one gets banned after 4 failures, for 2 h.
    std::fs::write(
        &cfg,
        r#"
layout = "set"
allow = ["fd00:77::/64"]
[[jail]]
name = "ssh"
filter = "sshd"
files = ["/var/log/auth.log"]
maxretry = 4
findtime = "10m"
bantime = "2h"
"#,
    )
    .expect("write config");
    let path = data(SYSLOG);
    let (out, _) = scan_ok(&[
        "--simulate",
        "--json",
        "--config",
        cfg.to_str().expect("path"),
        "--jail",
        "ssh",
        "--now",
        NOW,
        path.to_str().expect("path"),
    ]);
    // The fourth failure is line 11 (failures on 3, 6, 8, 11).
    assert_eq!(
        out.lines().next(),
        Some(
            "{\"line\":11,\"ban\":\"10.77.0.2/32\",\"time\":\"2026-11-25T10:29:41Z\",\"bantime_s\":7200,\"offence\":1}"
        )
    );
    assert!(!out.contains("fd00:77::2"), "allowed by the config: {out}");
    // An unknown jail is bad input.
    let out = scan(
        &[
            "--simulate",
            "--config",
            cfg.to_str().expect("path"),
            "--jail",
            "nope",
            "-",
        ],
        Some(b""),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no jail named \"nope\""));
}
