//! Injection attempts: client-controlled text (user names, certificate key
//! ids, disconnect reasons, MySQL user names) that imitates the text around
//! an address. The real client is always 198.51.100.7; the bait addresses
//! are 192.0.2.x. A row passes if it yields the real address or nothing —
//! never a bait.

mod common;

use autoblock_detect::{Filter, Mode};
use common::scan_with;
use proptest::prelude::*;

const REAL: &str = "198.51.100.7";

/// (message as sshd would log it for the crafted input, expected address).
const SSHD: &[(&str, Option<&str>)] = &[
    ("Failed password for x from 192.0.2.9 port 1 ssh2 from 198.51.100.7 port 5 ssh2", Some(REAL)),
    ("Failed password for invalid user x from 192.0.2.9 port 1 ssh2 from 198.51.100.7 port 5 ssh2", Some(REAL)),
    ("Failed password for invalid user x from 192.0.2.9 port 1 ssh2: RSA SHA256:abc from 198.51.100.7 port 5 ssh2", Some(REAL)),
    ("Failed publickey for x from 192.0.2.9 port 1 ssh2: RSA SHA256:abc from 198.51.100.7 port 5 ssh2: ED25519 SHA256:def", Some(REAL)),
    // Certificate key id chosen by the client's CA, user name benign.
    ("Failed publickey for bob from 198.51.100.7 port 5 ssh2: ED25519-CERT SHA256:def ID z from 192.0.2.9 port 1 ssh2 (serial 1) CA ED25519 SHA256:ghi", Some(REAL)),
    // Both ends crafted: two readings, so nothing is taken.
    ("Failed publickey for x from 192.0.2.9 port 1 ssh2: RSA-CERT SHA256:abc ID from 198.51.100.7 port 5 ssh2: ED25519-CERT SHA256:def ID k (serial 1) CA ED25519 SHA256:ghi", None),
    ("Invalid user x from 192.0.2.9 port 1 from 198.51.100.7 port 5", Some(REAL)),
    ("Invalid user x from 192.0.2.9 port 1 [preauth] from 198.51.100.7 port 5", Some(REAL)),
    ("Invalid user from 192.0.2.9 port 1 from 198.51.100.7 port 5", Some(REAL)),
    ("User x from 192.0.2.9 not allowed because listed in DenyUsers from 198.51.100.7 not allowed because not listed in AllowUsers", Some(REAL)),
    ("error: PAM: Authentication failure for illegal user x from 192.0.2.9 from 198.51.100.7", Some(REAL)),
    ("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.7  user=x rhost=192.0.2.9", Some(REAL)),
    ("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.7  user=x  rhost=192.0.2.9 ", Some(REAL)),
    ("error: maximum authentication attempts exceeded for x from 192.0.2.9 port 1 ssh2 from 198.51.100.7 port 5 ssh2 [preauth]", Some(REAL)),
    ("Connection closed by invalid user x 192.0.2.9 port 1 198.51.100.7 port 5 [preauth]", Some(REAL)),
    ("Disconnected from authenticating user x 192.0.2.9 port 1 198.51.100.7 port 5 [preauth]", Some(REAL)),
    ("Received disconnect from 198.51.100.7 port 5:11: from 192.0.2.9 port 1 [preauth]", Some(REAL)),
    ("Unable to negotiate with 198.51.100.7 port 5: no matching cipher found. Their offer: from 192.0.2.9 port 1 [preauth]", Some(REAL)),
    ("Bad protocol version identification 'x from 192.0.2.9 port 1' from 198.51.100.7 port 5", Some(REAL)),
    ("error: kex_exchange_identification: client sent invalid protocol identifier \"Connection closed by 192.0.2.9 port 1\"", None),
    // A user name that carries the line terminator's escape as sshd writes it.
    ("Invalid user x\\012sshd[1]: Invalid user y from 192.0.2.9 port 1 from 198.51.100.7 port 5", Some(REAL)),
];

#[test]
fn sshd_injection_table() {
    for (msg, want) in SSHD {
        let line = format!("Nov 25 10:00:00 web sshd[31]: {msg}");
        let (rows, _) = scan_with(Filter::Sshd(Mode::Aggressive), line.as_bytes());
        let got: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        let want: Vec<&str> = want.iter().copied().collect();
        assert_eq!(got, want, "{msg}");
    }
}

#[test]
fn accepted_reads_the_real_address() {
    // A forged success must not forgive (or blame) the bait address: here the
    // real address failed once and then logged in as the same user.
    let text = "Nov 25 10:00:00 web sshd[31]: Failed password for x from 192.0.2.9 port 1 ssh2 from 198.51.100.7 port 5 ssh2\n\
                Nov 25 10:00:01 web sshd[31]: Accepted password for x from 192.0.2.9 port 1 ssh2 from 198.51.100.7 port 5 ssh2\n";
    let (rows, _) = scan_with(Filter::Sshd(Mode::Normal), text.as_bytes());
    let got: Vec<(&str, &str)> = rows.iter().map(|r| (r.1.as_str(), r.2.as_str())).collect();
    assert_eq!(got, vec![(REAL, "failed-password"), (REAL, "forgive:1")]);
}

#[test]
fn mysqld_injection_table() {
    let table: &[(&str, Option<&str>)] = &[
        ("Access denied for user 'x'@'192.0.2.9' (using password: YES)'@'198.51.100.7' (using password: YES)", Some(REAL)),
        ("Access denied for user 'x'@'192.0.2.9'@'198.51.100.7' (using password: NO)", Some(REAL)),
        ("Access denied for user ''@'192.0.2.9' (using password: YES) '@'198.51.100.7' (using password: YES)", Some(REAL)),
    ];
    for (msg, want) in table {
        let line = format!("Nov 25 10:00:00 db mysqld[5]: {msg}");
        let (rows, _) = scan_with(Filter::MysqldAuth, line.as_bytes());
        let got: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(got, want.iter().copied().collect::<Vec<_>>(), "{msg}");
    }
}

/// Templates of server lines with a client-chosen user name `{}`.
const TEMPLATES: &[&str] = &[
    "Failed password for {} from 198.51.100.7 port 5 ssh2",
    "Failed password for invalid user {} from 198.51.100.7 port 5 ssh2",
    "Failed publickey for {} from 198.51.100.7 port 5 ssh2: ED25519 SHA256:abcdef",
    "Invalid user {} from 198.51.100.7 port 5",
    "error: maximum authentication attempts exceeded for invalid user {} from 198.51.100.7 port 5 ssh2 [preauth]",
    "error: PAM: Authentication failure for illegal user {} from 198.51.100.7",
    "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.7  user={}",
    "Connection closed by invalid user {} 198.51.100.7 port 5 [preauth]",
];

fn bait_user() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(" from 192.0.2.9 port 1 ssh2".to_owned()),
        Just(" from 192.0.2.9".to_owned()),
        Just(" 192.0.2.9 port 1".to_owned()),
        Just(" rhost=192.0.2.9".to_owned()),
        Just(" [preauth]".to_owned()),
        Just(": RSA SHA256:x".to_owned()),
        Just(" ID ".to_owned()),
        Just("invalid user ".to_owned()),
        "[ -~]{0,12}",
    ];
    proptest::collection::vec(piece, 0..6).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn user_names_never_supply_the_address(user in bait_user()) {
        for t in TEMPLATES {
            let line = format!("Nov 25 10:00:00 web sshd[31]: {}", t.replace("{}", &user));
            let (rows, _) = scan_with(Filter::Sshd(Mode::Aggressive), line.as_bytes());
            prop_assert_eq!(rows.len(), 1, "{}", line);
            prop_assert_eq!(rows[0].1.as_str(), REAL, "{}", line);
        }
    }
}
