//! The `mysqld-auth` filter: MySQL's and MariaDB's `Access denied for user
//! 'USER'@'HOST' (using password: YES|NO)`.
//!
//! The user name is client text and may contain quotes and `@`, so the host
//! is read backwards from the server's fixed ` (using password: ` suffix.
//! Deliberately not matched: `Access denied for user ... to database ...`,
//! which follows a successful login.

use memchr::memmem;

/// Returns (user, host) of an `Access denied` message, or `None`.
pub(crate) fn access_denied(msg: &[u8]) -> Option<(&[u8], &[u8])> {
    let start = memmem::find(msg, b"Access denied for user '")?;
    let body = &msg[start + 24..];
    let end = memmem::rfind(body, b"' (using password: ")?;
    let suffix = &body[end + 19..];
    if !(suffix.starts_with(b"YES)") || suffix.starts_with(b"NO)")) {
        return None;
    }
    let inner = &body[..end];
    let at = memmem::rfind(inner, b"'@'")?;
    Some((&inner[..at], &inner[at + 3..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line and the (user, address) the filter must find in it.
    type Case<'a> = (&'a [u8], Option<(&'a [u8], &'a [u8])>);

    #[test]
    fn table() {
        let cases: &[Case<'_>] = &[
            (
                b"Access denied for user 'root'@'192.0.2.4' (using password: YES)",
                Some((b"root", b"192.0.2.4")),
            ),
            (
                b"2026-11-25T10:00:00.123456Z 8 [Note] [MY-010926] [Server] Access denied for user 'app'@'2001:db8::5' (using password: NO)",
                Some((b"app", b"2001:db8::5")),
            ),
            (
                b"Access denied for user 'x'@'192.0.2.9'@'198.51.100.3' (using password: YES)",
                Some((b"x'@'192.0.2.9", b"198.51.100.3")),
            ),
            (b"Access denied for user 'u'@'h' to database 'db'", None),
            (b"Access denied for user 'u'@'h' (using password: MAYBE)", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                access_denied(line),
                *want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
