//! Arbitrary input never panics: random bytes, invalid UTF-8, NUL bytes and
//! a 10 MB line, through every envelope format and filter.

mod common;

use autoblock_detect::{Envelope, Filter, Mode, RegexFilter, Scanner, MAX_LINE};
use proptest::prelude::*;

fn filters() -> Vec<Filter> {
    vec![
        Filter::Sshd(Mode::Normal),
        Filter::Sshd(Mode::Aggressive),
        Filter::MysqldAuth,
        Filter::Regex(RegexFilter::new([r"from (?P<host>\S+)"], [r"ignore me"]).unwrap()),
    ]
}

/// Prefixes that steer random tails into each parser.
const PREFIXES: &[&[u8]] = &[
    b"",
    b"<38>",
    b"<38>1 ",
    b"Nov 25 10:00:00 ",
    b"Feb 29 10:00:00.5 h sshd[1]: ",
    b"2026-11-25T10:00:00.1+01:00 h sshd[2]: ",
    b"<38>1 2026-11-25T10:00:00Z h sshd 3 - [a b=\"",
    b"h sshd[4]: ",
    b"sshd[5]: Failed password for ",
    b"sshd[5]: Invalid user ",
    b"sshd[5]: pam_unix(sshd:auth): authentication failure; logname= rhost=",
    b"sshd[5]: User x from ",
    b"sshd[5]: Connection closed by ",
    b"sshd[5]: drop connection #1 from [",
    b"mysqld[6]: Access denied for user '",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn never_panics(prefix in 0..PREFIXES.len(), tail in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut line = PREFIXES[prefix].to_vec();
        line.extend_from_slice(&tail);
        let ctx = common::ctx();
        let _ = Envelope::parse(&line, &ctx);
        for f in filters() {
            let mut s = Scanner::new(f, ctx.clone());
            for n in 0..3 {
                let _ = s.feed(n, &line);
            }
            prop_assert_eq!(s.stats().lines, 3);
        }
    }
}

#[test]
fn invalid_utf8_and_nul_are_tolerated() {
    let line = b"Nov 25 10:00:00 web sshd[9]: Failed password for \xff\xfe\x00root from 203.0.113.8 port 1 ssh2\n";
    let (rows, _) = common::scan_with(Filter::Sshd(Mode::Normal), line);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, "203.0.113.8");
    assert_eq!(rows[0].3.as_deref(), Some("\u{fffd}\u{fffd}\u{0}root"));
    let (rows, _) = common::scan_with(Filter::Sshd(Mode::Normal), b"\0\0\0\n\xff\n\n");
    assert!(rows.is_empty());
}

#[test]
fn ten_megabyte_line_is_skipped_quickly() {
    let mut line = b"Nov 25 10:00:00 web sshd[9]: Failed password for ".to_vec();
    line.resize(10 * 1024 * 1024, b'a');
    line.extend_from_slice(b" from 203.0.113.8 port 1 ssh2");
    for f in filters() {
        let mut s = Scanner::new(f, common::ctx());
        let t = std::time::Instant::now();
        assert!(s.feed(1, &line).is_none());
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(s.stats().too_long, 1);
    }
    // Envelope parsing itself only looks at the front of a line.
    let env = Envelope::parse(&line, &common::ctx());
    assert_eq!(env.pid, Some(9));
    assert!(env.message.len() > MAX_LINE);
    // Just under the limit is still read.
    let mut ok = b"Nov 25 10:00:00 web sshd[9]: Failed password for ".to_vec();
    ok.resize(MAX_LINE - 40, b'a');
    ok.extend_from_slice(b" from 203.0.113.8 port 1 ssh2");
    let (rows, _) = common::scan_with(Filter::Sshd(Mode::Normal), &ok);
    assert_eq!(rows.len(), 1);
}
