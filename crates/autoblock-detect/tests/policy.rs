//! The policy end to end: journal trust feeding the scanner, replays through
//! a jail with the lines' own timestamps, and forgiveness.

mod common;

use std::time::Duration;

use autoblock_detect::{
    simulate, AllowList, Event, Filter, Jail, JournalTrust, Mode, PolicyState, Scanner, Timestamp,
};

#[test]
fn forged_journal_entries_frame_no_one() {
    let trust = JournalTrust::sshd();
    let mut s = Scanner::new(Filter::Sshd(Mode::Normal), common::ctx());
    let msg = "Failed password for root from 192.0.2.66 port 22 ssh2";
    let forged = [
        ("MESSAGE", msg),
        ("SYSLOG_IDENTIFIER", "sshd"),
        ("_UID", "1000"),
        ("_COMM", "logger"),
    ];
    let real = [
        (
            "MESSAGE",
            "Failed password for root from 203.0.113.5 port 22 ssh2",
        ),
        ("_UID", "0"),
        ("_COMM", "sshd"),
        ("_EXE", "/usr/sbin/sshd"),
        ("_PID", "812"),
        ("__REALTIME_TIMESTAMP", "1795600000000000"),
    ];
    let get = |f: &'static [(&'static str, &'static str)]| {
        move |n: &str| f.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_bytes())
    };
    let forged: &'static [_] = Box::leak(Box::new(forged));
    let real: &'static [_] = Box::leak(Box::new(real));
    assert!(trust.judge(get(forged)).is_err());
    let env = trust.judge(get(real)).unwrap();
    let d = s.feed_envelope(1, &env).unwrap();
    let Event::Failure(f) = d.event else {
        panic!("{d:?}")
    };
    assert_eq!(f.host.to_string(), "203.0.113.5");
    assert_eq!(d.time.unwrap().as_second(), 1_795_600_000);
}

#[test]
fn replay_of_the_recording_bans_at_the_fifth_attempt() {
    let text = common::syslog_recording();
    let mut s = Scanner::new(Filter::Sshd(Mode::Normal), common::ctx());
    let detections: Vec<_> = text
        .split(|&b| b == b'\n')
        .enumerate()
        .filter_map(|(i, l)| s.feed(i as u64 + 1, l))
        .collect();
    let jail = Jail {
        maxretry: 5,
        findtime: Duration::from_secs(600),
        bantime: Duration::from_secs(30),
        factor: 2.0,
        ..Jail::default()
    };
    let state = PolicyState::new(jail, AllowList::new()).unwrap();
    let start: Timestamp = "2026-11-25T00:00:00Z".parse().unwrap();
    let (bans, state) = simulate(state, start, detections);
    // Attempts at lines 3, 6, 8, 11 and 16: banned at line 16 (10:29:45) for
    // 30 s, failures until 10:30:15 are not counted again; the five at lines
    // 47, 49, 54, 57 and 64 make the second offence, banned twice as long. The IPv6 source
    // fails only twice.
    let summary: Vec<(u64, String, Option<u64>, u32)> = bans
        .iter()
        .map(|e| {
            (
                e.line_no,
                e.ban.at.to_string(),
                e.ban.duration.map(|d| d.as_secs()),
                e.ban.offence_no,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (16, "2026-11-25T10:29:45Z".to_owned(), Some(30), 1),
            (64, "2026-11-25T10:30:26Z".to_owned(), Some(60), 2),
        ]
    );
    assert!(state.stats().while_banned > 0);
    let offences = state.offences();
    assert_eq!(offences.len(), 1);
    assert_eq!(
        (offences[0].net.to_string(), offences[0].count),
        ("10.77.0.2/32".to_owned(), 2)
    );
}

#[test]
fn loopback_and_host_addresses_are_never_banned() {
    let mut allow = AllowList::new();
    allow.add_addr("10.77.0.2".parse().unwrap());
    let jail = Jail {
        maxretry: 1,
        ..Jail::default()
    };
    let mut p = PolicyState::new(jail, allow).unwrap();
    let t: Timestamp = "2026-11-25T00:00:00Z".parse().unwrap();
    for a in [
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "10.77.0.2",
        "::ffff:127.0.0.1",
    ] {
        assert!(p.record_host(a.parse().unwrap(), t).is_none(), "{a}");
    }
    assert_eq!(p.stats().allowlisted, 5);
}
