//! The filters against real sshd 9.2 output recorded on Debian 12 (see
//! tests/data/README.md), and the same messages in every envelope format.

mod common;

use autoblock_detect::Mode;
use common::*;

const C: &str = "10.77.0.2";
const C6: &str = "fd00:77::2";

fn row(line: u64, host: &str, kind: &str, user: Option<&str>) -> Row {
    (
        line,
        host.to_owned(),
        kind.to_owned(),
        user.map(str::to_owned),
    )
}

/// What normal mode must report for the syslog recording, line by line.
/// Every provoked attempt counts once; the recording's client is one
/// address that guesses several user names, so its later successful logins
/// count as failures too.
fn expected_normal() -> Vec<Row> {
    vec![
        row(3, C, "pam-failure", Some("abt_alice")), // wrong password (PAM line first)
        row(6, C, "pam-failure", Some("abt_alice")), // two tries in one connection
        row(8, C, "failed-password", Some("abt_alice")),
        row(11, C, "invalid-user", Some("nosuchuser")),
        row(16, C, "user-not-allowed", Some("abt_carol")), // AllowUsers
        row(20, C, "user-not-allowed", Some("abt_denied")), // DenyUsers
        row(24, C, "user-not-allowed", Some("abt_nogroup")), // AllowGroups
        row(28, C, "pam-failure", Some("root")),           // PermitRootLogin no
        row(31, C, "pam-failure", Some("abt_alice")),      // MaxAuthTries: four tries...
        row(33, C, "failed-password", Some("abt_alice")),
        row(34, C, "failed-password", Some("abt_alice")),
        row(35, C, "failed-password", Some("abt_alice")), // ...the exceeded line adds none
        row(40, C, "invalid-user", Some("nosuchuser2")),
        row(45, C, "failed-password", Some("nosuchuser2")),
        row(47, C, "failed-password", Some("nosuchuser2")),
        row(49, C, "failed-password", Some("nosuchuser2")),
        row(54, C, "pam-failure", Some("abt_alice")), // keyboard-interactive, PAM helper pid
        row(57, C, "invalid-user", Some("nosuchuser3")),
        row(64, C, "max-auth-tries", Some("abt_alice")), // four unknown keys: the only line
        row(66, C, "invalid-user", Some("nosuchuser4")),
        row(68, C, "pam-failure", Some("abt_bob")), // typo...
        row(70, C, "success-after-guessing", Some("abt_bob")), // ...but this address guessed others
        row(79, C, "invalid-user", Some("guess_a")),
        row(84, C, "invalid-user", Some("guess_b")),
        row(89, C, "success-after-guessing", Some("abt_bob")),
        row(109, C6, "pam-failure", Some("abt_alice")),
        row(112, C6, "invalid-user", Some("nosuchuser6")),
        row(117, C, "invalid-user", Some("x from 192.0.2.9 port 1 ssh2")),
        row(122, C, "invalid-user", Some("y rhost=192.0.2.8")),
        row(129, C, "success-after-guessing", Some("abt_alice")),
    ]
}

#[test]
fn syslog_recording_normal_mode() {
    let rows = scan(Mode::Normal, &syslog_recording());
    assert_eq!(rows, expected_normal());
}

#[test]
fn syslog_recording_aggressive_mode_adds_preauth_lines() {
    let rows = scan(Mode::Aggressive, &syslog_recording());
    let extra: Vec<Row> = rows
        .iter()
        .filter(|r| !expected_normal().contains(r))
        .cloned()
        .collect();
    assert_eq!(
        extra,
        vec![
            row(98, C, "preauth-disconnect", Some("abt_alice")), // gave up at the prompt
            row(99, C, "kex-failure", None),                     // key exchange
            row(100, C, "kex-failure", None),                    // cipher
            row(101, C, "kex-failure", None),                    // host key type
            row(103, C, "banner-garbage", None),                 // HTTP request
            row(105, C, "scanner", None),                        // connect and close
            row(106, C, "preauth-disconnect", None),             // banner, then close
            row(108, C, "banner-garbage", None),                 // TLS bytes
        ]
    );
    assert_eq!(rows.len(), expected_normal().len() + extra.len());
}

#[test]
fn typo_then_success_is_forgiven_when_nothing_else_was_guessed() {
    // Only the lines of the typo connection (pid 30912), as a fresh address would log them.
    let text = String::from_utf8(syslog_recording()).unwrap();
    let conn: String = text
        .lines()
        .filter(|l| l.contains("sshd[30912]"))
        .map(|l| format!("{l}\n"))
        .collect();
    let rows = scan(Mode::Normal, conn.as_bytes());
    assert_eq!(
        hk(&rows),
        vec![
            (C.into(), "pam-failure".into()),
            (C.into(), "forgive:1".into())
        ]
    );
}

#[test]
fn stderr_recording_counts_the_same_attempts() {
    // `sshd -e` writes bare messages without pid, and PAM's lines went to
    // syslog instead, so each attempt has one line here.
    let rows = scan(Mode::Normal, &data("debian12-openssh-9.2.stderr.log"));
    let kinds: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(rows.len(), expected_normal().len(), "{kinds:?}");
    assert!(rows.iter().all(|r| r.1 == C || r.1 == C6));
    // The keyboard-interactive failure of a valid user is logged by sshd itself.
    assert!(kinds.contains(&"failed-keyboard-interactive"));
}

/// The syslog recording split into (time, pid, message), re-framed by `frame`.
fn reframed(frame: impl Fn(&str, &str, &str) -> String) -> Vec<u8> {
    let text = String::from_utf8(syslog_recording()).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        // `<PRI>Mmm dd hh:mm:ss sshd[PID]: message`
        let rest = &line[line.find('>').unwrap() + 1..];
        let (time, rest) = rest.split_at(15);
        let rest = rest.strip_prefix(" sshd[").unwrap();
        let (pid, msg) = rest.split_once("]: ").unwrap();
        out += &frame(time, pid, msg);
        out.push('\n');
    }
    out.into_bytes()
}

#[test]
fn every_envelope_gives_the_same_detections() {
    let reference = scan(Mode::Aggressive, &syslog_recording());
    assert_eq!(reference.len(), expected_normal().len() + 8);
    type Frame = Box<dyn Fn(&str, &str, &str) -> String>;
    let frames: Vec<(&str, Frame)> = vec![
        (
            "rfc3164",
            Box::new(|t, p, m| format!("{t} web sshd[{p}]: {m}")),
        ),
        (
            "rfc3164-pri",
            Box::new(|t, p, m| format!("<38>{t} web sshd[{p}]: {m}")),
        ),
        (
            "short-precise",
            Box::new(|t, p, m| format!("{t}.123456 web sshd[{p}]: {m}")),
        ),
        (
            "rsyslog-iso",
            Box::new(|_, p, m| format!("2026-11-25T10:00:00.123456+01:00 web sshd[{p}]: {m}")),
        ),
        (
            "short-iso",
            Box::new(|_, p, m| format!("2026-11-25T10:00:00+0100 web sshd[{p}]: {m}")),
        ),
        (
            "rfc5424",
            Box::new(|_, p, m| format!("<38>1 2026-11-25T10:00:00.003Z web sshd {p} - - {m}")),
        ),
        (
            "rfc5424-sd",
            Box::new(|_, p, m| {
                format!("<38>1 - web sshd-session {p} ID47 [x@1 a=\"b\\]c\"] \u{feff}{m}")
            }),
        ),
        (
            "journal-short",
            Box::new(|_, p, m| format!("web sshd[{p}]: {m}")),
        ),
        (
            "journal-no-host",
            Box::new(|_, p, m| format!("sshd-session[{p}]: {m}")),
        ),
    ];
    for (name, frame) in frames {
        let rows = scan(Mode::Aggressive, &reframed(frame));
        assert_eq!(hk(&rows), hk(&reference), "{name}");
    }
}

#[test]
fn other_programs_are_skipped() {
    let text =
        b"Nov 25 10:00:00 web sudo[1]: Failed password for root from 192.0.2.1 port 22 ssh2\n\
                 web cron[2]: Failed password for root from 192.0.2.1 port 22 ssh2\n";
    let (rows, s) = common::scan_with(autoblock_detect::Filter::Sshd(Mode::Normal), text);
    assert!(rows.is_empty());
    assert_eq!(s.stats().other_program, 2);
}
