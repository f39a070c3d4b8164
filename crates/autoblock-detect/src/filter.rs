//! The filter vocabulary shared by all filters: [`Mode`], [`FailureKind`],
//! [`Failure`], and the [`Filter`] enum that names a built-in or user filter.
//!
//! Deliberately not here: correlation across lines (see `scanner`) and
//! counting towards bans (see `policy`).

use std::net::IpAddr;

use crate::regex_filter::RegexFilter;

/// How much of sshd's output counts as an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Authentication failures only: wrong passwords and keys, unknown and
    /// refused users, too many attempts.
    #[default]
    Normal,
    /// Also connections that end before authentication: pre-auth
    /// disconnects, key-exchange failures, banner garbage and port scanners.
    /// Legitimate but misconfigured clients can trip these.
    Aggressive,
}

impl Mode {
    /// Parses `normal` / `aggressive`.
    pub fn from_name(name: &str) -> Option<Mode> {
        match name {
            "normal" => Some(Mode::Normal),
            "aggressive" => Some(Mode::Aggressive),
            _ => None,
        }
    }
}

/// What kind of failure a line reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// `Failed password for ...`.
    FailedPassword,
    /// `Failed publickey for ...` (or hostbased).
    FailedPublickey,
    /// `Failed keyboard-interactive/pam for ...` or sshd's `PAM: Authentication failure`.
    FailedKeyboardInteractive,
    /// `Failed <other method> for ...`.
    FailedOther,
    /// `Invalid user ...`.
    InvalidUser,
    /// `User ... not allowed because ...` (AllowUsers, DenyUsers, AllowGroups, DenyGroups).
    UserNotAllowed,
    /// `ROOT LOGIN REFUSED FROM ...`.
    RootRefused,
    /// A PAM module's `authentication failure; ... rhost=...`.
    PamFailure,
    /// `maximum authentication attempts exceeded for ...`.
    MaxAuthTries,
    /// A successful login from an address that just failed as other users.
    SuccessAfterGuessing,
    /// A connection closed or reset before authentication (aggressive).
    PreauthDisconnect,
    /// No common key exchange, cipher, MAC or host key type (aggressive).
    KexFailure,
    /// Not an SSH protocol identification (aggressive).
    BannerGarbage,
    /// Connected and left without a protocol identification (aggressive).
    Scanner,
    /// A protocol violation before authentication (aggressive).
    ProtocolError,
    /// No authentication within LoginGraceTime (aggressive).
    PreauthTimeout,
    /// Dropped by MaxStartups or PerSourcePenalties (aggressive).
    ConnectionDropped,
    /// MySQL/MariaDB `Access denied for user ...`.
    AccessDenied,
    /// A user-defined regular expression matched.
    Custom,
}

impl FailureKind {
    /// A stable kebab-case name for output and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::FailedPassword => "failed-password",
            FailureKind::FailedPublickey => "failed-publickey",
            FailureKind::FailedKeyboardInteractive => "failed-keyboard-interactive",
            FailureKind::FailedOther => "failed-other",
            FailureKind::InvalidUser => "invalid-user",
            FailureKind::UserNotAllowed => "user-not-allowed",
            FailureKind::RootRefused => "root-refused",
            FailureKind::PamFailure => "pam-failure",
            FailureKind::MaxAuthTries => "max-auth-tries",
            FailureKind::SuccessAfterGuessing => "success-after-guessing",
            FailureKind::PreauthDisconnect => "preauth-disconnect",
            FailureKind::KexFailure => "kex-failure",
            FailureKind::BannerGarbage => "banner-garbage",
            FailureKind::Scanner => "scanner",
            FailureKind::ProtocolError => "protocol-error",
            FailureKind::PreauthTimeout => "preauth-timeout",
            FailureKind::ConnectionDropped => "connection-dropped",
            FailureKind::AccessDenied => "access-denied",
            FailureKind::Custom => "custom",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed attempt by `host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure<'a> {
    /// The normalised source address, taken from server-written text only.
    pub host: IpAddr,
    /// What failed.
    pub kind: FailureKind,
    /// The user name the client tried, as logged (attacker-controlled bytes).
    pub user: Option<&'a [u8]>,
}

impl Failure<'_> {
    /// The user name as text (invalid UTF-8 replaced).
    pub fn user_lossy(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.user.map(String::from_utf8_lossy)
    }
}

/// A filter: which messages count as failures.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Filter {
    /// OpenSSH's sshd (also `sshd-session`, `sshd-auth`).
    Sshd(Mode),
    /// MySQL / MariaDB `Access denied for user 'u'@'ADDR'`.
    MysqldAuth,
    /// User-defined regular expressions.
    Regex(RegexFilter),
}

impl Filter {
    /// A built-in filter by its configuration name (`sshd`, `mysqld-auth`).
    pub fn builtin(name: &str, mode: Mode) -> Option<Filter> {
        match name {
            "sshd" => Some(Filter::Sshd(mode)),
            "mysqld-auth" => Some(Filter::MysqldAuth),
            _ => None,
        }
    }

    /// The filter's name as used in output.
    pub fn name(&self) -> &str {
        match self {
            Filter::Sshd(_) => "sshd",
            Filter::MysqldAuth => "mysqld-auth",
            Filter::Regex(r) => r.name(),
        }
    }

    /// Whether a line from `program` (from the envelope) may be judged by this
    /// filter. Lines without a program name are always judged.
    pub fn accepts_program(&self, program: Option<&[u8]>) -> bool {
        let Some(p) = program else { return true };
        match self {
            Filter::Sshd(_) => matches!(p, b"sshd" | b"sshd-session" | b"sshd-auth"),
            Filter::MysqldAuth => matches!(p, b"mysqld" | b"mariadbd" | b"mariadb" | b"mysql"),
            Filter::Regex(r) => r.accepts_program(p),
        }
    }
}
