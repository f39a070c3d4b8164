//! One-line table of messages of the OpenSSH releases that matter here —
//! 8.0 (RHEL 8), 8.7 (RHEL 9), 9.2 (Debian 12), 9.8+ (`sshd-session`) and
//! older 7.x lines still found in archives — written from the format strings
//! in OpenSSH's source, plus MySQL/MariaDB lines. Each row is scanned by a
//! fresh scanner.

mod common;

use autoblock_detect::{Filter, Mode};
use common::scan_with;

const N: Mode = Mode::Normal;
const A: Mode = Mode::Aggressive;

/// (framed line, mode, expected (host, kind) or None).
/// A message, the mode it is tested in, and the (kind, address) expected from it.
type Row = (&'static str, Mode, Option<(&'static str, &'static str)>);

const SSHD: &[Row] = &[
    // Authentication failures (auth.c auth_log, all versions).
    ("sshd[10]: Failed password for root from 203.0.113.5 port 4242 ssh2", N, Some(("203.0.113.5", "failed-password"))),
    ("sshd[10]: Failed password for invalid user admin from 203.0.113.5 port 4242 ssh2", N, Some(("203.0.113.5", "failed-password"))),
    ("sshd[10]: Failed publickey for root from 203.0.113.5 port 4242 ssh2: RSA SHA256:Wnq0u1AZpYTxR1Fm7v7Yj1q9k0m4Cw7m7h0T0G3K7zQ", N, Some(("203.0.113.5", "failed-publickey"))),
    ("sshd[10]: Failed publickey for git from 203.0.113.5 port 4242 ssh2: ED25519-CERT SHA256:abc ID build-7 (serial 9) CA ED25519 SHA256:def", N, Some(("203.0.113.5", "failed-publickey"))),
    ("sshd[10]: Failed keyboard-interactive/pam for invalid user test from 2001:db8::7 port 4242 ssh2", N, Some(("2001:db8::7", "failed-keyboard-interactive"))),
    ("sshd[10]: Failed hostbased for bob from 203.0.113.5 port 4242 ssh2: ECDSA SHA256:xyz, client user \"bob\", client host \"h\"", N, Some(("203.0.113.5", "failed-publickey"))),
    ("sshd[10]: Failed gssapi-with-mic for bob from 203.0.113.5 port 4242 ssh2", N, Some(("203.0.113.5", "failed-other"))),
    ("sshd[10]: Failed none for invalid user admin from 203.0.113.5 port 4242 ssh2", N, None),
    ("sshd[10]: Failed password for root from ::ffff:203.0.113.5 port 4242 ssh2", N, Some(("203.0.113.5", "failed-password"))),
    ("sshd[10]: Failed password for root from 2001:DB8:0:0::7 port 4242 ssh2", N, Some(("2001:db8::7", "failed-password"))),
    // Invalid and refused users (auth.c getpwnamallow, allowed_user).
    ("sshd[10]: Invalid user admin from 203.0.113.5 port 4242", N, Some(("203.0.113.5", "invalid-user"))),
    ("sshd[10]: User bob from 203.0.113.5 not allowed because listed in DenyUsers", N, Some(("203.0.113.5", "user-not-allowed"))),
    ("sshd[10]: User bob from 203.0.113.5 not allowed because not listed in AllowUsers", N, Some(("203.0.113.5", "user-not-allowed"))),
    ("sshd[10]: User bob from 203.0.113.5 not allowed because not in any group", N, Some(("203.0.113.5", "user-not-allowed"))),
    ("sshd[10]: User bob from 203.0.113.5 not allowed because a group is listed in DenyGroups", N, Some(("203.0.113.5", "user-not-allowed"))),
    ("sshd[10]: User bob from 203.0.113.5 not allowed because none of user's groups are listed in AllowGroups", N, Some(("203.0.113.5", "user-not-allowed"))),
    ("sshd[10]: User bob not allowed because account is locked", N, None),
    ("sshd[10]: User bob not allowed because shell /bin/nologin does not exist", N, None),
    ("sshd[10]: ROOT LOGIN REFUSED FROM 203.0.113.5 port 4242", N, Some(("203.0.113.5", "root-refused"))),
    // PAM (pam_unix, pam_sss on RHEL) and sshd's own PAM error.
    ("sshd[10]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.5  user=root", N, Some(("203.0.113.5", "pam-failure"))),
    ("sshd[10]: pam_sss(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.5 user=bob", N, Some(("203.0.113.5", "pam-failure"))),
    ("sshd[10]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=", N, None),
    ("sshd[10]: PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.5  user=root", N, None),
    ("sshd[10]: error: PAM: Authentication failure for root from 203.0.113.5", N, Some(("203.0.113.5", "failed-keyboard-interactive"))),
    ("sshd[10]: error: maximum authentication attempts exceeded for root from 203.0.113.5 port 4242 ssh2 [preauth]", N, Some(("203.0.113.5", "max-auth-tries"))),
    ("sshd[10]: error: maximum authentication attempts exceeded for invalid user admin from 203.0.113.5 port 4242 ssh2 [preauth]", N, Some(("203.0.113.5", "max-auth-tries"))),
    ("sshd[10]: Disconnecting authenticating user root 203.0.113.5 port 4242: Too many authentication failures [preauth]", A, None),
    ("sshd[10]: Accepted password for bob from 203.0.113.5 port 4242 ssh2", A, None),
    ("sshd[10]: Accepted publickey for bob from 203.0.113.5 port 4242 ssh2: ED25519 SHA256:abc", A, None),
    // 9.8+: per-connection sshd-session, 10.0: sshd-auth.
    ("sshd-session[77]: Failed password for root from 203.0.113.5 port 4242 ssh2", N, Some(("203.0.113.5", "failed-password"))),
    ("sshd-session[77]: Invalid user oracle from 2001:db8::99 port 4242", N, Some(("2001:db8::99", "invalid-user"))),
    ("sshd-session[77]: Connection closed by invalid user oracle 203.0.113.5 port 4242 [preauth]", A, Some(("203.0.113.5", "preauth-disconnect"))),
    ("sshd-auth[78]: Failed password for root from 203.0.113.5 port 4242 ssh2", N, Some(("203.0.113.5", "failed-password"))),
    ("sshd[1]: drop connection #3 from [203.0.113.5]:4242 on [198.51.100.1]:22 penalty: failed authentication", A, Some(("203.0.113.5", "connection-dropped"))),
    ("sshd[1]: drop connection #10 from [2001:db8::5]:4242 on [2001:db8::1]:22 past MaxStartups", A, Some(("2001:db8::5", "connection-dropped"))),
    // 9.8 and later releases disagree on the order of the two addresses here.
    ("sshd[1]: Timeout before authentication for connection from 198.51.100.1 to 203.0.113.5, pid = 1234", A, None),
    // Pre-authentication ends (packet.c sshpkt_vfatal, kex.c), aggressive only.
    ("sshd[10]: Connection closed by authenticating user root 203.0.113.5 port 4242 [preauth]", A, Some(("203.0.113.5", "preauth-disconnect"))),
    ("sshd[10]: Connection closed by authenticating user root 203.0.113.5 port 4242 [preauth]", N, None),
    ("sshd[10]: Connection closed by 203.0.113.5 port 4242 [preauth]", A, Some(("203.0.113.5", "preauth-disconnect"))),
    ("sshd[10]: Connection reset by 203.0.113.5 port 4242 [preauth]", A, Some(("203.0.113.5", "preauth-disconnect"))),
    ("sshd[10]: Disconnected from invalid user admin 203.0.113.5 port 4242 [preauth]", A, Some(("203.0.113.5", "preauth-disconnect"))),
    ("sshd[10]: Disconnected from user bob 203.0.113.5 port 4242", A, None),
    ("sshd[10]: Received disconnect from 203.0.113.5 port 4242:11: Bye Bye [preauth]", A, Some(("203.0.113.5", "preauth-disconnect"))),
    ("sshd[10]: Received disconnect from 203.0.113.5 port 4242:11: disconnected by user", A, None),
    ("sshd[10]: Unable to negotiate with 203.0.113.5 port 4242: no matching key exchange method found. Their offer: diffie-hellman-group1-sha1 [preauth]", A, Some(("203.0.113.5", "kex-failure"))),
    ("sshd[10]: Unable to negotiate with 203.0.113.5 port 4242: no matching key exchange method found. Their offer: diffie-hellman-group1-sha1 [preauth]", N, None),
    ("sshd[10]: banner exchange: Connection from 203.0.113.5 port 4242: invalid format", A, Some(("203.0.113.5", "banner-garbage"))),
    ("sshd[10]: error: kex_exchange_identification: client sent invalid protocol identifier \"GET / HTTP/1.1\"", A, None),
    ("sshd[10]: Bad protocol version identification 'GET / HTTP/1.1' from 203.0.113.5 port 4242", A, Some(("203.0.113.5", "banner-garbage"))),
    ("sshd[10]: Did not receive identification string from 203.0.113.5 port 4242", A, Some(("203.0.113.5", "scanner"))),
    ("sshd[10]: Did not receive identification string from 203.0.113.5", A, Some(("203.0.113.5", "scanner"))),
    ("sshd[10]: fatal: Timeout before authentication for 203.0.113.5 port 4242", A, Some(("203.0.113.5", "preauth-timeout"))),
    ("sshd[10]: ssh_dispatch_run_fatal: Connection from 203.0.113.5 port 4242: message authentication code incorrect [preauth]", A, Some(("203.0.113.5", "protocol-error"))),
    ("sshd[10]: Connection closed by 203.0.113.5 port 4242", A, None),
    // Host names (UseDNS yes) are never resolved.
    ("sshd[10]: Failed password for root from attacker.example.net port 4242 ssh2", N, None),
    ("sshd[10]: User bob from attacker.example.net not allowed because not listed in AllowUsers", N, None),
    ("sshd[10]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=attacker.example.net  user=root", N, None),
    ("sshd[10]: Server listening on 0.0.0.0 port 22.", A, None),
];

#[test]
fn sshd_messages_of_all_versions() {
    for (line, mode, want) in SSHD {
        let (rows, s) = scan_with(Filter::Sshd(*mode), line.as_bytes());
        let got: Vec<(String, String)> = rows.iter().map(|r| (r.1.clone(), r.2.clone())).collect();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(h, k)| ((*h).to_owned(), (*k).to_owned()))
            .collect();
        assert_eq!(got, want, "{line} ({mode:?})");
        assert_eq!(s.stats().lines, 1);
    }
}

#[test]
fn host_names_are_counted_not_resolved() {
    let text = SSHD
        .iter()
        .filter(|r| r.0.contains("attacker.example.net"))
        .map(|r| format!("{}\n", r.0))
        .collect::<String>();
    let (rows, s) = scan_with(Filter::Sshd(Mode::Aggressive), text.as_bytes());
    assert!(rows.is_empty());
    assert_eq!(s.stats().hostname, 3);
}

#[test]
fn mysqld_auth() {
    let table: &[(&str, Option<(&str, &str)>)] = &[
        ("2026-11-25T10:00:00.123456Z 8 [Note] [MY-010926] [Server] Access denied for user 'root'@'203.0.113.5' (using password: YES)", Some(("203.0.113.5", "root"))),
        ("2026-11-25 10:00:00 8 [Warning] Access denied for user 'admin'@'2001:db8::5' (using password: NO)", Some(("2001:db8::5", "admin"))),
        ("Nov 25 10:00:00 db mariadbd[900]: 2026-11-25 10:00:00 8 [Warning] Access denied for user 'u'@'::ffff:203.0.113.6' (using password: YES)", Some(("203.0.113.6", "u"))),
        ("Nov 25 10:00:00 db sshd[900]: Access denied for user 'u'@'203.0.113.6' (using password: YES)", None),
        ("2026-11-25 10:00:00 8 [Warning] Access denied for user 'u'@'db.example.org' (using password: YES)", None),
        ("2026-11-25 10:00:00 8 [Warning] Access denied for user 'u'@'%' to database 'x'", None),
    ];
    for (line, want) in table {
        let (rows, _) = scan_with(Filter::MysqldAuth, line.as_bytes());
        let got: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r.1.clone(), r.3.clone().unwrap_or_default()))
            .collect();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(h, u)| ((*h).to_owned(), (*u).to_owned()))
            .collect();
        assert_eq!(got, want, "{line}");
        assert!(rows.iter().all(|r| r.2 == "access-denied"));
    }
}

#[test]
fn user_regex_filter() {
    let f = autoblock_detect::RegexFilter::new(
        [r"^authentication failed for (?P<user>\S+) from (?P<host>\S+)$"],
        [r"from 192\.0\.2\."],
    )
    .unwrap()
    .with_name("myapp")
    .with_programs(["myapp"]);
    let text = b"Nov 25 10:00:00 h myapp[1]: authentication failed for bob from 203.0.113.5\n\
                 Nov 25 10:00:00 h myapp[1]: authentication failed for bob from 192.0.2.5\n\
                 Nov 25 10:00:00 h other[1]: authentication failed for bob from 203.0.113.5\n\
                 Nov 25 10:00:00 h myapp[1]: authentication failed for bob from host.example\n\
                 Nov 25 10:00:00 h myapp[1]: all good\n";
    let filter = Filter::Regex(f);
    assert_eq!(filter.name(), "myapp");
    let (rows, s) = scan_with(filter, text);
    assert_eq!(
        rows,
        vec![(1, "203.0.113.5".into(), "custom".into(), Some("bob".into()))]
    );
    let st = s.stats();
    assert_eq!(
        (st.ignored, st.other_program, st.hostname, st.not_matched),
        (1, 1, 1, 1)
    );
}
