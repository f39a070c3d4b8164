//! Envelope table: each supported framing, split into time, host, program,
//! pid and message.

mod common;

use autoblock_detect::{Envelope, EnvelopeFormat as F, YearContext};

type Row = (
    &'static str,
    F,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<u32>,
    &'static str,
);

const TABLE: &[Row] = &[
    // (line, format, time, host, program, pid, message)
    ("Nov 25 10:00:00 host sshd[123]: msg", F::Rfc3164, Some("2026-11-25T10:00:00Z"), Some("host"), Some("sshd"), Some(123), "msg"),
    ("Nov  5 09:08:07 host sshd[1]: a b", F::Rfc3164, Some("2026-11-05T09:08:07Z"), Some("host"), Some("sshd"), Some(1), "a b"),
    ("Nov 05 09:08:07 host kernel: x", F::Rfc3164, Some("2026-11-05T09:08:07Z"), Some("host"), Some("kernel"), None, "x"),
    ("<38>Nov 25 10:29:30 sshd[28419]: Server listening", F::Rfc3164, Some("2026-11-25T10:29:30Z"), None, Some("sshd"), Some(28419), "Server listening"),
    ("<85>Nov 25 10:31:02 sshd: pam_unix(sshd:auth): x", F::Rfc3164, Some("2026-11-25T10:31:02Z"), None, Some("sshd"), None, "pam_unix(sshd:auth): x"),
    ("Nov 25 10:00:00.123456 host sshd-session[9]: m", F::Rfc3164, Some("2026-11-25T10:00:00.123456Z"), Some("host"), Some("sshd-session"), Some(9), "m"),
    ("Dec 31 23:59:59 host sshd[1]: m", F::Rfc3164, Some("2025-12-31T23:59:59Z"), Some("host"), Some("sshd"), Some(1), "m"),
    ("2026-11-25T10:00:00.123456+01:00 host sshd[7]: m", F::Iso8601, Some("2026-11-25T09:00:00.123456Z"), Some("host"), Some("sshd"), Some(7), "m"),
    ("2026-11-25T10:00:00+0100 host sshd[7]: m", F::Iso8601, Some("2026-11-25T09:00:00Z"), Some("host"), Some("sshd"), Some(7), "m"),
    ("2026-11-25T10:00:00Z host sshd[7]: m", F::Iso8601, Some("2026-11-25T10:00:00Z"), Some("host"), Some("sshd"), Some(7), "m"),
    ("2026-11-25 10:00:00 8 [Warning] Access denied", F::Iso8601, Some("2026-11-25T10:00:00Z"), None, None, None, "8 [Warning] Access denied"),
    ("<34>1 2026-11-25T10:00:00.003Z mymachine.example.com su - ID47 - 'su root' failed", F::Rfc5424, Some("2026-11-25T10:00:00.003Z"), Some("mymachine.example.com"), Some("su"), None, "'su root' failed"),
    ("<165>1 2026-11-25T10:00:00-05:00 h app 42 ID [ex@1 a=\"x\\]y\" b=\"2\"][s@2] \u{feff}hello", F::Rfc5424, Some("2026-11-25T15:00:00Z"), Some("h"), Some("app"), Some(42), "hello"),
    ("<38>1 - - sshd - - -", F::Rfc5424, None, None, Some("sshd"), None, ""),
    ("host sshd[123]: msg", F::Tagged, None, Some("host"), Some("sshd"), Some(123), "msg"),
    ("sshd[123]: msg", F::Tagged, None, None, Some("sshd"), Some(123), "msg"),
    ("banner exchange: Connection from 1.2.3.4 port 5: invalid format", F::Bare, None, None, None, None, "banner exchange: Connection from 1.2.3.4 port 5: invalid format"),
    ("error: kex_exchange_identification: x", F::Bare, None, None, None, None, "error: kex_exchange_identification: x"),
    ("Failed password for root from 1.2.3.4 port 5 ssh2\r\n", F::Bare, None, None, None, None, "Failed password for root from 1.2.3.4 port 5 ssh2"),
    ("Nov 31 10:00:00 host sshd[1]: impossible date", F::Rfc3164, None, Some("host"), Some("sshd"), Some(1), "impossible date"),
    ("<999>Nov 25 10:00:00 x", F::Bare, None, None, None, None, "<999>Nov 25 10:00:00 x"),
];

#[test]
fn envelope_table() {
    let ctx = YearContext::utc("2026-11-25T12:00:00Z".parse().unwrap());
    for &(line, format, time, host, program, pid, message) in TABLE {
        let e = Envelope::parse(line.as_bytes(), &ctx);
        let s = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        assert_eq!(e.format, format, "{line}");
        assert_eq!(e.time.map(|t| t.to_string()).as_deref(), time, "{line}");
        assert_eq!(s(e.host).as_deref(), host, "{line}");
        assert_eq!(s(e.program).as_deref(), program, "{line}");
        assert_eq!(e.pid, pid, "{line}");
        assert_eq!(String::from_utf8_lossy(e.message), message, "{line}");
    }
}
