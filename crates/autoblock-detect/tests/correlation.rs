//! Correlation rules across lines and connections, on hand-written logs in
//! the recorded format.

mod common;

use autoblock_detect::{Filter, Mode, Scanner, ScannerConfig};
use common::{hk, scan};

fn hk_of(text: &str) -> Vec<(String, String)> {
    hk(&scan(Mode::Normal, text.as_bytes()))
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn a_success_forgives_only_its_own_connection() {
    let log = "\
Nov 25 10:00:00 h sshd[100]: Failed password for bob from 203.0.113.5 port 1 ssh2
Nov 25 10:00:02 h sshd[100]: Failed password for bob from 203.0.113.5 port 1 ssh2
Nov 25 10:00:03 h sshd[200]: Failed password for bob from 203.0.113.5 port 2 ssh2
Nov 25 10:00:05 h sshd[200]: Accepted password for bob from 203.0.113.5 port 2 ssh2
";
    assert_eq!(
        hk_of(log),
        pairs(&[
            ("203.0.113.5", "failed-password"),
            ("203.0.113.5", "failed-password"),
            ("203.0.113.5", "failed-password"),
            ("203.0.113.5", "forgive:1"),
        ])
    );
}

#[test]
fn a_success_after_other_user_names_counts_as_a_failure() {
    let log = "\
Nov 25 10:00:00 h sshd[100]: Invalid user admin from 203.0.113.5 port 1
Nov 25 10:00:01 h sshd[100]: Failed password for invalid user admin from 203.0.113.5 port 1 ssh2
Nov 25 10:00:03 h sshd[200]: Failed password for bob from 203.0.113.5 port 2 ssh2
Nov 25 10:00:05 h sshd[200]: Accepted password for bob from 203.0.113.5 port 2 ssh2
";
    assert_eq!(
        hk_of(log),
        pairs(&[
            ("203.0.113.5", "invalid-user"),
            ("203.0.113.5", "failed-password"),
            ("203.0.113.5", "success-after-guessing"),
        ])
    );
}

#[test]
fn guessing_is_forgotten_after_the_window() {
    let log = b"\
Nov 25 09:00:00 h sshd[100]: Failed password for admin from 203.0.113.5 port 1 ssh2
Nov 25 10:00:03 h sshd[200]: Failed password for bob from 203.0.113.5 port 2 ssh2
Nov 25 10:00:05 h sshd[200]: Accepted password for bob from 203.0.113.5 port 2 ssh2
";
    let cfg = ScannerConfig::default().guess_window(std::time::Duration::from_secs(1800));
    let mut s = Scanner::with_config(Filter::Sshd(Mode::Normal), common::ctx(), cfg);
    let kinds: Vec<String> = log
        .split(|&b| b == b'\n')
        .enumerate()
        .filter_map(|(i, l)| s.feed(i as u64 + 1, l))
        .map(|d| match d.event {
            autoblock_detect::Event::Failure(f) => f.kind.as_str().to_owned(),
            autoblock_detect::Event::Forgive { count, .. } => format!("forgive:{count}"),
        })
        .collect();
    assert_eq!(kinds, ["failed-password", "failed-password", "forgive:1"]);
}

#[test]
fn a_success_from_another_address_forgives_nothing() {
    let log = "\
Nov 25 10:00:00 h sshd[100]: Failed password for bob from 203.0.113.5 port 1 ssh2
Nov 25 10:00:05 h sshd[100]: Accepted password for bob from 203.0.113.6 port 1 ssh2
";
    assert_eq!(hk_of(log), pairs(&[("203.0.113.5", "failed-password")]));
}

#[test]
fn state_stays_bounded_with_many_connections() {
    let cfg = ScannerConfig::default().max_tracked(1000);
    let mut s = Scanner::with_config(Filter::Sshd(Mode::Normal), common::ctx(), cfg);
    for i in 0..50_000u32 {
        let line = format!(
            "Nov 25 10:00:00 h sshd[{i}]: Failed password for root from 10.{}.{}.{} port 1 ssh2",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        );
        assert!(s.feed(u64::from(i), line.as_bytes()).is_some());
    }
    assert_eq!(s.stats().failures, 50_000);
}
