//! Trust decisions for systemd journal entries.
//!
//! Any local user can write `sshd[1]: Failed password for root from VICTIM
//! port 22 ssh2` to syslog (`logger -t sshd ...`): the program name and pid
//! in a syslog line are whatever the sender claims. The journal, however,
//! records *trusted* fields that the sender cannot set (those starting with
//! `_`): `_UID`, `_COMM`, `_EXE`, `_SYSTEMD_UNIT`, `_PID`. A journal entry
//! counts only if those fields say it comes from the server itself.
//!
//! File sources (`/var/log/secure`, `/var/log/auth.log`) cannot promise this:
//! rsyslog writes the claimed tag, so a local user can frame an address there.
//! Only the journal source (or a syslog daemon configured to write trusted
//! properties) protects against local forgery.
//!
//! Deliberately not here: reading the journal (the daemon's source does that
//! and hands the fields of each entry in).

use jiff::Timestamp;

use crate::envelope::{Envelope, EnvelopeFormat};

/// Which journal entries may speak for a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalTrust {
    /// Allowed `_UID` values; empty means any.
    pub uids: Vec<u32>,
    /// Allowed `_COMM` values (the kernel's process name).
    pub comms: Vec<String>,
    /// Allowed `_EXE` paths.
    pub exes: Vec<String>,
    /// Allowed `_SYSTEMD_UNIT` values; a single `*` matches any text
    /// (`sshd@*.service` for socket-activated instances).
    pub units: Vec<String>,
}

/// Why a journal entry was not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Untrusted {
    /// The entry has no `MESSAGE`.
    #[error("journal entry has no MESSAGE field")]
    NoMessage,
    /// `_UID` is missing or not allowed.
    #[error("journal entry from _UID={uid:?} is not from an allowed user")]
    Uid {
        /// The `_UID` field as found.
        uid: Option<String>,
    },
    /// Neither `_COMM`, `_EXE` nor `_SYSTEMD_UNIT` names the server.
    #[error("journal entry from _COMM={comm:?} _EXE={exe:?} _SYSTEMD_UNIT={unit:?} is not from the server")]
    Origin {
        /// The `_COMM` field as found.
        comm: Option<String>,
        /// The `_EXE` field as found.
        exe: Option<String>,
        /// The `_SYSTEMD_UNIT` field as found.
        unit: Option<String>,
    },
}

impl JournalTrust {
    /// OpenSSH: root-owned `sshd`, `sshd-session` (9.8+) or `sshd-auth`
    /// processes, or the ssh units of Debian and RHEL. All of sshd's
    /// authentication messages are logged by its root-owned monitor process.
    pub fn sshd() -> JournalTrust {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect();
        JournalTrust {
            uids: vec![0],
            comms: s(&["sshd", "sshd-session", "sshd-auth"]),
            exes: s(&[
                "/usr/sbin/sshd",
                "/usr/lib/openssh/sshd-session",
                "/usr/lib/openssh/sshd-auth",
                "/usr/libexec/openssh/sshd-session",
                "/usr/libexec/openssh/sshd-auth",
                "/usr/libexec/sshd-session",
                "/usr/libexec/sshd-auth",
            ]),
            units: s(&[
                "ssh.service",
                "sshd.service",
                "ssh@*.service",
                "sshd@*.service",
            ]),
        }
    }

    /// MySQL / MariaDB: only the service units, because the server runs as an
    /// unprivileged user and any user may start their own copy of the
    /// binary (MariaDB's proxy protocol support would let such a copy log any
    /// client address).
    pub fn mysqld() -> JournalTrust {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect();
        JournalTrust {
            uids: Vec::new(),
            comms: Vec::new(),
            exes: Vec::new(),
            units: s(&[
                "mysqld.service",
                "mysql.service",
                "mariadb.service",
                "mariadb@*.service",
            ]),
        }
    }

    /// Decides whether the entry whose fields `get` returns (by name, e.g.
    /// `"_UID"`) comes from the server. If so, returns its message as an
    /// [`Envelope`] with the trusted `_COMM` as program, `_PID` as pid and
    /// `__REALTIME_TIMESTAMP` (or `_SOURCE_REALTIME_TIMESTAMP`) as time.
    pub fn judge<'a, F>(&self, get: F) -> Result<Envelope<'a>, Untrusted>
    where
        F: Fn(&str) -> Option<&'a [u8]>,
    {
        let message = get("MESSAGE").ok_or(Untrusted::NoMessage)?;
        let text = |v: Option<&[u8]>| v.map(|b| String::from_utf8_lossy(b).into_owned());
        if !self.uids.is_empty() {
            let uid = get("_UID");
            let ok = uid
                .and_then(|u| std::str::from_utf8(u).ok())
                .and_then(|u| u.parse::<u32>().ok())
                .is_some_and(|u| self.uids.contains(&u));
            if !ok {
                return Err(Untrusted::Uid { uid: text(uid) });
            }
        }
        let comm = get("_COMM");
        let exe = get("_EXE");
        let unit = get("_SYSTEMD_UNIT");
        let listed = |v: Option<&[u8]>, list: &[String]| {
            v.is_some_and(|v| list.iter().any(|x| x.as_bytes() == v))
        };
        let unit_ok = unit.is_some_and(|u| self.units.iter().any(|p| glob1(p.as_bytes(), u)));
        if !(listed(comm, &self.comms) || listed(exe, &self.exes) || unit_ok) {
            return Err(Untrusted::Origin {
                comm: text(comm),
                exe: text(exe),
                unit: text(unit),
            });
        }
        let pid = get("_PID")
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|p| p.parse::<u32>().ok());
        let micros = |name: &str| {
            get(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(|us| Timestamp::from_microsecond(us).ok())
        };
        let time = micros("_SOURCE_REALTIME_TIMESTAMP").or_else(|| micros("__REALTIME_TIMESTAMP"));
        Ok(Envelope {
            format: EnvelopeFormat::Journal,
            time,
            host: get("_HOSTNAME"),
            program: comm,
            pid,
            message,
        })
    }
}

/// Matches `pattern` with at most one `*` against `s`.
fn glob1(pattern: &[u8], s: &[u8]) -> bool {
    match memchr::memchr(b'*', pattern) {
        None => pattern == s,
        Some(i) => {
            let (pre, post) = (&pattern[..i], &pattern[i + 1..]);
            s.len() >= pre.len() + post.len() && s.starts_with(pre) && s.ends_with(post)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(fields: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a [u8]> + 'a {
        move |name| {
            fields
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_bytes())
        }
    }

    const FORGED: &str = "Failed password for root from 192.0.2.66 port 22 ssh2";

    #[test]
    fn logger_as_unprivileged_user_is_not_trusted() {
        let f = [
            ("MESSAGE", FORGED),
            ("SYSLOG_IDENTIFIER", "sshd"),
            ("_UID", "1000"),
            ("_COMM", "logger"),
            ("_EXE", "/usr/bin/logger"),
            ("_SYSTEMD_UNIT", "session-3.scope"),
        ];
        assert!(matches!(
            JournalTrust::sshd().judge(entry(&f)),
            Err(Untrusted::Uid { .. })
        ));
    }

    #[test]
    fn renamed_process_of_a_user_is_not_trusted() {
        // prctl(PR_SET_NAME, "sshd") changes _COMM, but not _UID.
        let f = [
            ("MESSAGE", FORGED),
            ("_UID", "1000"),
            ("_COMM", "sshd"),
            ("_PID", "9"),
        ];
        assert!(JournalTrust::sshd().judge(entry(&f)).is_err());
    }

    #[test]
    fn root_logger_outside_the_unit_is_not_trusted() {
        let f = [
            ("MESSAGE", FORGED),
            ("_UID", "0"),
            ("_COMM", "logger"),
            ("_EXE", "/usr/bin/logger"),
            ("_SYSTEMD_UNIT", "cron.service"),
        ];
        assert!(matches!(
            JournalTrust::sshd().judge(entry(&f)),
            Err(Untrusted::Origin { .. })
        ));
    }

    #[test]
    fn sshd_session_is_trusted() {
        let f = [
            ("MESSAGE", FORGED),
            ("_UID", "0"),
            ("_COMM", "sshd-session"),
            ("_EXE", "/usr/lib/openssh/sshd-session"),
            ("_SYSTEMD_UNIT", "ssh.service"),
            ("_PID", "4242"),
            ("__REALTIME_TIMESTAMP", "1795608000000000"),
        ];
        let env = JournalTrust::sshd().judge(entry(&f)).unwrap();
        assert_eq!(env.program, Some(&b"sshd-session"[..]));
        assert_eq!(env.pid, Some(4242));
        assert_eq!(env.message, FORGED.as_bytes());
        assert_eq!(env.time.unwrap().as_second(), 1_795_608_000);
    }

    #[test]
    fn socket_activated_unit_is_trusted() {
        let f = [
            ("MESSAGE", FORGED),
            ("_UID", "0"),
            ("_COMM", "sshd"),
            (
                "_SYSTEMD_UNIT",
                "sshd@3-10.0.0.1:22-192.0.2.66:50000.service",
            ),
        ];
        assert!(JournalTrust::sshd().judge(entry(&f)).is_ok());
        assert!(glob1(b"sshd@*.service", b"sshd@x.service"));
        assert!(!glob1(b"sshd@*.service", b"sshd@.servic"));
    }

    #[test]
    fn mysqld_only_by_unit() {
        let msg = "Access denied for user 'root'@'192.0.2.66' (using password: YES)";
        let own = [
            ("MESSAGE", msg),
            ("_UID", "1000"),
            ("_EXE", "/usr/sbin/mariadbd"),
            ("_COMM", "mariadbd"),
        ];
        assert!(JournalTrust::mysqld().judge(entry(&own)).is_err());
        let svc = [
            ("MESSAGE", msg),
            ("_UID", "108"),
            ("_SYSTEMD_UNIT", "mariadb.service"),
        ];
        assert!(JournalTrust::mysqld().judge(entry(&svc)).is_ok());
        assert_eq!(
            JournalTrust::mysqld().judge(entry(&[])),
            Err(Untrusted::NoMessage)
        );
    }
}
