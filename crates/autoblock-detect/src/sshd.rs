//! Classification of single OpenSSH sshd messages (8.0 on RHEL 8, 8.7 on
//! RHEL 9, 9.2 on Debian 12, 9.8+ logging as `sshd-session`) into events.
//!
//! Every address is taken from a position that sshd itself wrote: either
//! right after a fixed prefix at the start of the message, or anchored at the
//! end (`from ADDR port N ssh2`), because user names (and certificate key ids)
//! are attacker-controlled text that may contain anything, including a fake
//! `from 192.0.2.9 port 1 ssh2`. Where both ends hold attacker text and the
//! line could be read two ways, the line yields [`SshdEvent::Ambiguous`].
//!
//! Deliberately not here: correlation of lines of one connection and
//! normal/aggressive selection (the scanner does both).

use memchr::memmem;

use crate::filter::FailureKind;

/// A piece of evidence of one authentication attempt. One attempt may be
/// logged by several lines; the scanner counts each attempt once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Evidence {
    /// `Invalid user`, `User ... not allowed`, `ROOT LOGIN REFUSED`.
    Open = 1,
    /// A PAM module's `authentication failure` line.
    Pam = 2,
    /// sshd's `error: PAM: Authentication failure for ...`.
    PamErr = 4,
    /// `Failed <method> for ...`.
    Failed = 8,
}

/// What one sshd message means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SshdEvent<'a> {
    /// Evidence of an authentication attempt.
    Attempt {
        ev: Evidence,
        kind: FailureKind,
        host: &'a [u8],
        user: Option<&'a [u8]>,
    },
    /// `maximum authentication attempts exceeded`.
    MaxAuth { host: &'a [u8], user: &'a [u8] },
    /// `Accepted <method> for USER from ADDR ...`.
    Accepted { host: &'a [u8], user: &'a [u8] },
    /// Only counted in aggressive mode.
    Aggressive {
        kind: FailureKind,
        host: &'a [u8],
        user: Option<&'a [u8]>,
    },
    /// `kex_exchange_identification: ...`: the next plain `Connection closed
    /// by ADDR port N` of this process is a scanner.
    BannerError,
    /// `Connection closed by ADDR port N` without `[preauth]`.
    ClosedPlain { host: &'a [u8] },
    /// A failure line that names no address.
    NoAddress,
    /// A failure line that can be read in more than one way.
    Ambiguous,
    /// Nothing of interest.
    Irrelevant,
}

/// Classifies one sshd message (the envelope already removed).
pub(crate) fn classify(msg: &[u8]) -> SshdEvent<'_> {
    let (msg, preauth) = match msg.strip_suffix(b" [preauth]") {
        Some(m) => (m, true),
        None => (msg, false),
    };
    let msg = strip_any(msg, &[b"error: ", b"fatal: "]);
    match msg.first() {
        Some(b'F') => failed(msg),
        Some(b'I') => invalid_user(msg),
        Some(b'U') => {
            if let Some(r) = msg.strip_prefix(b"User ") {
                not_allowed(r)
            } else if let Some(r) = msg.strip_prefix(b"Unable to negotiate with ") {
                start_host(r, FailureKind::KexFailure)
            } else {
                SshdEvent::Irrelevant
            }
        }
        Some(b'A') => accepted(msg),
        Some(b'P') => pam_err(msg),
        Some(b'p') => pam_module(msg),
        Some(b'm') => max_auth(msg),
        Some(b'R') => {
            if let Some(r) = msg.strip_prefix(b"ROOT LOGIN REFUSED FROM ") {
                let host = r.split(|&b| b == b' ').next().unwrap_or(r);
                attempt(Evidence::Open, FailureKind::RootRefused, host, None)
            } else if let Some(r) = msg.strip_prefix(b"Received disconnect from ") {
                if preauth {
                    start_host(r, FailureKind::PreauthDisconnect)
                } else {
                    SshdEvent::Irrelevant
                }
            } else {
                SshdEvent::Irrelevant
            }
        }
        Some(b'C') => connection(msg, preauth),
        Some(b'D') => {
            if let Some(r) = msg.strip_prefix(b"Disconnected from ") {
                if preauth {
                    preamble_host(r, FailureKind::PreauthDisconnect)
                } else {
                    SshdEvent::Irrelevant
                }
            } else if let Some(r) = msg.strip_prefix(b"Did not receive identification string from ")
            {
                start_host(r, FailureKind::Scanner)
            } else {
                SshdEvent::Irrelevant
            }
        }
        Some(b'b') => match msg.strip_prefix(b"banner exchange: Connection from ") {
            Some(r) => start_host(r, FailureKind::BannerGarbage),
            None => SshdEvent::Irrelevant,
        },
        Some(b'B') => match msg.strip_prefix(b"Bad protocol version identification ") {
            Some(r) => match end_from_port(r) {
                Some((_, host)) => aggressive(FailureKind::BannerGarbage, host, None),
                None => SshdEvent::NoAddress,
            },
            None => SshdEvent::Irrelevant,
        },
        Some(b'k') => {
            if msg.starts_with(b"kex_exchange_identification: ") {
                SshdEvent::BannerError
            } else {
                SshdEvent::Irrelevant
            }
        }
        Some(b's') => match msg.strip_prefix(b"ssh_dispatch_run_fatal: Connection from ") {
            Some(r) if preauth => start_host(r, FailureKind::ProtocolError),
            _ => SshdEvent::Irrelevant,
        },
        Some(b'T') => match msg.strip_prefix(b"Timeout before authentication for ") {
            // 8.x: `for ADDR port N`. 9.8+ logs `for connection from A to B,
            // pid = N` from the listener, and 9.8 and later releases disagree
            // on which of A and B is the client, so those lines yield nothing.
            Some(r) if !r.starts_with(b"connection ") => start_host(r, FailureKind::PreauthTimeout),
            _ => SshdEvent::Irrelevant,
        },
        Some(b'd') => match msg.strip_prefix(b"drop connection #") {
            Some(r) => drop_connection(r),
            None => SshdEvent::Irrelevant,
        },
        _ => SshdEvent::Irrelevant,
    }
}

fn strip_any<'a>(msg: &'a [u8], prefixes: &[&[u8]]) -> &'a [u8] {
    for p in prefixes {
        if let Some(r) = msg.strip_prefix(*p) {
            return r;
        }
    }
    msg
}

fn attempt<'a>(
    ev: Evidence,
    kind: FailureKind,
    host: &'a [u8],
    user: Option<&'a [u8]>,
) -> SshdEvent<'a> {
    if host.is_empty() {
        return SshdEvent::NoAddress;
    }
    SshdEvent::Attempt {
        ev,
        kind,
        host,
        user,
    }
}

fn aggressive<'a>(kind: FailureKind, host: &'a [u8], user: Option<&'a [u8]>) -> SshdEvent<'a> {
    if host.is_empty() {
        return SshdEvent::NoAddress;
    }
    SshdEvent::Aggressive { kind, host, user }
}

fn all_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.len() <= 5 && s.iter().all(u8::is_ascii_digit)
}

/// `... from ADDR port N` at the very end: returns (text before ` from `, ADDR).
fn end_from_port(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let (before, host) = end_host_port(s)?;
    let text = before.strip_suffix(b" from ")?;
    Some((text, host))
}

/// `... ADDR port N` at the very end: returns (text before ADDR including its
/// separating space, ADDR).
fn end_host_port(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let p = memmem::rfind(s, b" port ")?;
    if !all_digits(&s[p + 6..]) {
        return None;
    }
    let head = &s[..p];
    let sp = memchr::memrchr(b' ', head).map_or(0, |i| i + 1);
    Some((&head[..sp], &head[sp..]))
}

/// `ADDR port N...` right after a fixed prefix.
fn start_host(r: &[u8], kind: FailureKind) -> SshdEvent<'_> {
    let end = memchr::memchr(b' ', r).unwrap_or(r.len());
    let host = &r[..end];
    let host = host.strip_suffix(b",").unwrap_or(host);
    let host = host.strip_suffix(b":").unwrap_or(host);
    aggressive(kind, host, None)
}

/// `[authenticating user U |invalid user U |user U ]ADDR port N` (the
/// connection id of `sshpkt_fatal`), anchored at the end.
fn preamble_host(r: &[u8], kind: FailureKind) -> SshdEvent<'_> {
    let Some((before, host)) = end_host_port(r) else {
        return SshdEvent::NoAddress;
    };
    let user = before
        .strip_prefix(b"authenticating user ")
        .or_else(|| before.strip_prefix(b"invalid user "))
        .or_else(|| before.strip_prefix(b"user "))
        .map(|u| u.strip_suffix(b" ").unwrap_or(u));
    if before.is_empty() || user.is_some() {
        aggressive(kind, host, user)
    } else {
        SshdEvent::Ambiguous
    }
}

fn connection(msg: &[u8], preauth: bool) -> SshdEvent<'_> {
    let (r, kind) = if let Some(r) = msg.strip_prefix(b"Connection closed by ") {
        (r, FailureKind::PreauthDisconnect)
    } else if let Some(r) = msg.strip_prefix(b"Connection reset by ") {
        (r, FailureKind::PreauthDisconnect)
    } else {
        return SshdEvent::Irrelevant;
    };
    if preauth {
        return preamble_host(r, kind);
    }
    // Without [preauth] this is either the listener child right after a failed
    // banner exchange (a scanner) or the end of a normal session.
    match end_host_port(r) {
        Some((b"", host)) if msg.starts_with(b"Connection closed") => {
            SshdEvent::ClosedPlain { host }
        }
        _ => SshdEvent::Irrelevant,
    }
}

/// `Invalid user U from ADDR port N` (8.0 and later).
fn invalid_user(msg: &[u8]) -> SshdEvent<'_> {
    let Some(r) = msg.strip_prefix(b"Invalid user ") else {
        return SshdEvent::Irrelevant;
    };
    match end_from_port(r) {
        Some((user, host)) => attempt(Evidence::Open, FailureKind::InvalidUser, host, Some(user)),
        None => SshdEvent::NoAddress,
    }
}

const NOT_ALLOWED_REASONS: &[&[u8]] = &[
    b"listed in DenyUsers",
    b"not listed in AllowUsers",
    b"not in any group",
    b"a group is listed in DenyGroups",
    b"none of user's groups are listed in AllowGroups",
];

/// `User U from HOST not allowed because REASON` (the reason is one of
/// sshd's fixed texts, so the last ` not allowed because ` is sshd's own).
fn not_allowed(r: &[u8]) -> SshdEvent<'_> {
    let Some(p) = memmem::rfind(r, b" not allowed because ") else {
        return SshdEvent::Irrelevant;
    };
    let reason = &r[p + 21..];
    if !NOT_ALLOWED_REASONS.contains(&reason) {
        // `account is locked`, `shell ... does not exist`: no address; the
        // following `Failed ... for invalid user` line carries it.
        return SshdEvent::Irrelevant;
    }
    let head = &r[..p];
    let Some(f) = memmem::rfind(head, b" from ") else {
        return SshdEvent::NoAddress;
    };
    let host = &head[f + 6..];
    if memchr::memchr(b' ', host).is_some() {
        return SshdEvent::Ambiguous;
    }
    attempt(
        Evidence::Open,
        FailureKind::UserNotAllowed,
        host,
        Some(&head[..f]),
    )
}

/// Splits `METHOD for [invalid user ]USER from ADDR port N ssh2[: EXTRA]`.
/// Returns method, user, host; `None` host means no address, `Err` ambiguous.
#[allow(clippy::type_complexity)]
fn auth_log(r: &[u8]) -> Result<Option<(&[u8], &[u8], &[u8])>, ()> {
    let Some(sp) = memchr::memchr(b' ', r) else {
        return Ok(None);
    };
    let method = &r[..sp];
    let Some(rest) = r[sp..].strip_prefix(b" for ") else {
        return Ok(None);
    };
    let rest = rest.strip_prefix(b"invalid user ").unwrap_or(rest);
    let keyed = matches!(method, b"publickey" | b"hostbased");
    let mut strict = None;
    let mut strict_n = 0;
    let mut loose = None;
    let mut loose_n = 0;
    for f in memmem::find_iter(rest, b" from ") {
        let tail = &rest[f + 6..];
        let Some(sp) = memchr::memchr(b' ', tail) else {
            continue;
        };
        let host = &tail[..sp];
        let Some(after) = tail[sp..].strip_prefix(b" port ") else {
            continue;
        };
        let nd = after.iter().take_while(|b| b.is_ascii_digit()).count();
        if !all_digits(&after[..nd]) {
            continue;
        }
        let Some(extra) = after[nd..].strip_prefix(b" ssh2") else {
            continue;
        };
        let cand = (&rest[..f], host);
        match key_extra(extra, keyed) {
            Extra::Strict => {
                strict = Some(cand);
                strict_n += 1;
            }
            Extra::Loose => {
                loose = Some(cand);
                loose_n += 1;
            }
            Extra::Invalid => {}
        }
    }
    let pick = match (strict_n, loose_n) {
        (1, _) => strict,
        (0, 1) => loose,
        (0, 0) => return Ok(None),
        _ => return Err(()),
    };
    Ok(pick.map(|(user, host)| (method, user, host)))
}

enum Extra {
    Strict,
    Loose,
    Invalid,
}

/// The text sshd appends after `ssh2`: nothing, or for key methods
/// `: TYPE FINGERPRINT[, info]` — or, for certificates, `... ID KEYID (serial
/// N) CA ...` where KEYID is chosen by whoever signed the certificate.
fn key_extra(extra: &[u8], keyed: bool) -> Extra {
    if extra.is_empty() {
        return Extra::Strict;
    }
    if !keyed {
        return Extra::Invalid;
    }
    let Some(e) = extra.strip_prefix(b": ") else {
        return Extra::Invalid;
    };
    let Some(sp) = memchr::memchr(b' ', e) else {
        return Extra::Invalid;
    };
    let ktype = &e[..sp];
    if ktype.is_empty()
        || !ktype
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'@' | b'.'))
    {
        return Extra::Invalid;
    }
    let fp = &e[sp + 1..];
    let fp_len = fp
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b':'))
        .count();
    if fp_len == 0
        || !(fp.starts_with(b"SHA256:") || fp.starts_with(b"MD5:") || fp.starts_with(b"(null)"))
    {
        return Extra::Invalid;
    }
    let after = &fp[fp_len..];
    if after.is_empty() {
        Extra::Strict
    } else if after.starts_with(b" ID ") || after.starts_with(b", ") {
        Extra::Loose
    } else {
        Extra::Invalid
    }
}

fn failed(msg: &[u8]) -> SshdEvent<'_> {
    let Some(r) = msg.strip_prefix(b"Failed ") else {
        return SshdEvent::Irrelevant;
    };
    match auth_log(r) {
        Err(()) => SshdEvent::Ambiguous,
        Ok(None) => SshdEvent::NoAddress,
        Ok(Some((method, user, host))) => {
            let kind = match method {
                b"password" => FailureKind::FailedPassword,
                b"publickey" | b"hostbased" => FailureKind::FailedPublickey,
                m if m.starts_with(b"keyboard-interactive") => {
                    FailureKind::FailedKeyboardInteractive
                }
                // `none` is the method probe every client sends first; the
                // attempt is counted by its `Invalid user` line, if any.
                b"none" => return SshdEvent::Irrelevant,
                _ => FailureKind::FailedOther,
            };
            attempt(Evidence::Failed, kind, host, Some(user))
        }
    }
}

fn accepted(msg: &[u8]) -> SshdEvent<'_> {
    let Some(r) = msg.strip_prefix(b"Accepted ") else {
        return SshdEvent::Irrelevant;
    };
    match auth_log(r) {
        Ok(Some((_, user, host))) => SshdEvent::Accepted { host, user },
        // A success that cannot be read safely forgives nothing.
        _ => SshdEvent::Irrelevant,
    }
}

/// `PAM: Authentication failure for [illegal user ]U from HOST`.
fn pam_err(msg: &[u8]) -> SshdEvent<'_> {
    let Some(r) = msg.strip_prefix(b"PAM: Authentication failure for ") else {
        return SshdEvent::Irrelevant;
    };
    let Some(f) = memmem::rfind(r, b" from ") else {
        return SshdEvent::NoAddress;
    };
    let host = &r[f + 6..];
    if memchr::memchr(b' ', host).is_some() {
        return SshdEvent::NoAddress;
    }
    let user = &r[..f];
    let user = user.strip_prefix(b"illegal user ").unwrap_or(user);
    attempt(
        Evidence::PamErr,
        FailureKind::FailedKeyboardInteractive,
        host,
        Some(user),
    )
}

/// `MODULE(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh
/// ruser= rhost=ADDR  user=U`. The first `rhost=` is PAM_RHOST as sshd set
/// it; `user=` comes after it and is the only client-controlled part.
fn pam_module(msg: &[u8]) -> SshdEvent<'_> {
    let Some(p) = memmem::find(msg, b"(sshd:auth): authentication failure; ") else {
        return SshdEvent::Irrelevant;
    };
    let module = &msg[..p];
    if module.is_empty()
        || !module
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return SshdEvent::Irrelevant;
    }
    let fields = &msg[p + 37..];
    let Some(h) = memmem::find(fields, b" rhost=") else {
        return SshdEvent::NoAddress;
    };
    let tail = &fields[h + 7..];
    let end = memchr::memchr(b' ', tail).unwrap_or(tail.len());
    let host = &tail[..end];
    let user = memmem::find(&tail[end..], b" user=").map(|u| &tail[end + u + 6..]);
    attempt(Evidence::Pam, FailureKind::PamFailure, host, user)
}

/// `maximum authentication attempts exceeded for [invalid user ]U from ADDR port N ssh2`.
fn max_auth(msg: &[u8]) -> SshdEvent<'_> {
    let Some(r) = msg.strip_prefix(b"maximum authentication attempts exceeded for ") else {
        return SshdEvent::Irrelevant;
    };
    let Some(r) = r.strip_suffix(b" ssh2") else {
        return SshdEvent::NoAddress;
    };
    match end_from_port(r) {
        Some((user, host)) => {
            let user = user.strip_prefix(b"invalid user ").unwrap_or(user);
            if host.is_empty() {
                SshdEvent::NoAddress
            } else {
                SshdEvent::MaxAuth { host, user }
            }
        }
        None => SshdEvent::NoAddress,
    }
}

/// `N from [ADDR]:PORT on [ADDR]:PORT past MaxStartups` (and, 9.8+, penalty reasons).
fn drop_connection(r: &[u8]) -> SshdEvent<'_> {
    let Some(f) = memmem::find(r, b" from [") else {
        return SshdEvent::NoAddress;
    };
    let tail = &r[f + 7..];
    match memchr::memchr(b']', tail) {
        Some(e) => aggressive(FailureKind::ConnectionDropped, &tail[..e], None),
        None => SshdEvent::NoAddress,
    }
}
