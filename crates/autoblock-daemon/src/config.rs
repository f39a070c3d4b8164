//! The daemon's configuration file (TOML): parsing, validation, and errors that point at the
//! offending spot as `file:line:col: reason`.
//!
//! Unknown keys are rejected, durations are humantime text (`10m`, `1h 30m`, `7d`), addresses
//! and networks are validated, user regular expressions must compile and carry a named `host`
//! group. Values are checked while they are read, so every error carries the position of the
//! value in the file. This module only reads text: it opens no log file and touches no kernel.

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use autoblock_detect::{Filter, IpNetwork, Jail, Mode, RegexFilter};
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Where the daemon looks for its configuration by default.
pub const DEFAULT_PATH: &str = "/etc/autoblock/autoblock.toml";

/// Why a configuration file was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or a value is invalid.
    #[error("{file}:{line}:{col}: {reason}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column (in characters) of the offending text.
        col: usize,
        /// What is wrong.
        reason: String,
        /// The offending line's text.
        text: String,
    },
}

/// Ruleset layout the daemon writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutName {
    /// nf_tables sets with kernel timeouts (table `inet autoblock`).
    Set,
    /// iptables-compatible chain `INPUT-AUTO`; the daemon enforces expiry.
    Chain,
}

/// What to do with packets from banned sources (`log` = test mode: nothing is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionName {
    /// Drop packets.
    Drop,
    /// Reject packets.
    Reject,
    /// Only log packets.
    Log,
    /// Log, then drop.
    LogDrop,
}

/// Where a followed file is read from when the daemon starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// Only lines appended after start (the default).
    #[default]
    End,
    /// Replay the whole file.
    Start,
}

/// A duration written as humantime text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(Dur)
            .map_err(|e| de::Error::custom(format!("bad duration `{s}`: {e}")))
    }
}

/// A maximum ban time: a duration or `"permanent"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxBan {
    /// Cap escalation at this duration.
    Cap(Duration),
    /// Beyond the previous step, ban permanently.
    Permanent,
}

impl<'de> Deserialize<'de> for MaxBan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim() == "permanent" {
            return Ok(MaxBan::Permanent);
        }
        humantime::parse_duration(s.trim())
            .map(MaxBan::Cap)
            .map_err(|e| {
                de::Error::custom(format!("bad duration `{s}`: {e} (or write \"permanent\")"))
            })
    }
}

/// An address or network (`192.0.2.1`, `2001:db8::/32`), host bits refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetValue(pub IpNetwork);

impl<'de> Deserialize<'de> for NetValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_net(&s).map(NetValue).map_err(de::Error::custom)
    }
}

fn parse_net(s: &str) -> Result<IpNetwork, String> {
    let t = s.trim();
    if let Ok(ip) = IpAddr::from_str(t) {
        return Ok(IpNetwork::from(ip));
    }
    let net = IpNetwork::from_str(t).map_err(|e| format!("bad address or network `{s}`: {e}"))?;
    if net.network() != net.ip() {
        return Err(format!(
            "bad network `{s}`: host bits are set (did you mean {}/{}?)",
            net.network(),
            net.prefix()
        ));
    }
    Ok(net)
}

/// The metrics endpoint's address (`127.0.0.1:9641`, `[::1]:9641`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub std::net::SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        std::net::SocketAddr::from_str(s.trim())
            .map(ListenAddr)
            .map_err(|_| {
                de::Error::custom(format!(
                    "bad listen address `{s}`: expected IP:PORT, e.g. \"127.0.0.1:9641\" or \"[::1]:9641\""
                ))
            })
    }
}

/// A regular expression (`regex` crate syntax) checked at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(pub String);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::bytes::Regex::new(&s)
            .map_err(|e| de::Error::custom(format!("bad regular expression: {e}")))?;
        Ok(Pattern(s))
    }
}

/// A failure pattern: a regular expression with a named group `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(pub String);

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let re = regex::bytes::Regex::new(&s)
            .map_err(|e| de::Error::custom(format!("bad regular expression: {e}")))?;
        if !re.capture_names().any(|n| n == Some("host")) {
            return Err(de::Error::custom(format!(
                "regular expression `{s}` has no named group `host` (write (?P<host>...))"
            )));
        }
        Ok(HostPattern(s))
    }
}

fn default_layout() -> LayoutName {
    LayoutName::Set
}
fn default_action() -> ActionName {
    ActionName::Drop
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/autoblock")
}
fn default_socket() -> PathBuf {
    PathBuf::from("/run/autoblock/control.sock")
}
fn default_sysconfig() -> PathBuf {
    PathBuf::from("/etc/sysconfig")
}
fn default_true() -> bool {
    true
}
fn default_chain() -> String {
    "INPUT-AUTO".to_owned()
}
fn default_table() -> String {
    "autoblock".to_owned()
}
fn default_heal_limit() -> u32 {
    10
}
fn default_filter() -> String {
    "sshd".to_owned()
}
fn default_maxretry() -> u32 {
    5
}
fn default_findtime() -> Dur {
    Dur(Duration::from_secs(600))
}
fn default_bantime() -> Dur {
    Dur(Duration::from_secs(3600))
}
fn default_factor() -> f64 {
    1.0
}
fn default_v6_prefix() -> u8 {
    128
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// `set` (default) or `chain`.
    #[serde(default = "default_layout")]
    pub layout: LayoutName,
    /// `drop` (default), `reject`, `log` or `log-drop`.
    #[serde(default = "default_action")]
    pub action: ActionName,
    /// Never ban these addresses and networks (loopback and the host's own always).
    #[serde(default)]
    pub allow: Vec<NetValue>,
    /// Directory of the durable ban store.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The control socket (created 0600).
    #[serde(default = "default_socket")]
    pub control_socket: PathBuf,
    /// Chain layout: keep the sysconfig files in step with the kernel.
    #[serde(default = "default_true")]
    pub mirror: bool,
    /// Directory of the `iptables`/`ip6tables` files (chain layout mirror).
    #[serde(default = "default_sysconfig")]
    pub sysconfig_dir: PathBuf,
    /// Chain name (chain layout).
    #[serde(default = "default_chain")]
    pub chain: String,
    /// Table name (set layout).
    #[serde(default = "default_table")]
    pub table: String,
    /// Repair what other programs remove from the ruleset.
    #[serde(default = "default_true")]
    pub self_heal: bool,
    /// At most this many repairs per minute; beyond, the daemon stops fighting and says so.
    #[serde(default = "default_heal_limit")]
    pub heal_per_minute: u32,
    /// The jails.
    #[serde(default, rename = "jail")]
    pub jails: Vec<JailConfig>,
    /// Serve Prometheus metrics (`GET /metrics`) on this address; off when absent.
    #[serde(default)]
    pub metrics: Option<ListenAddr>,
    /// `[crowdsec]`: enforce a CrowdSec Local API's decisions (bouncer mode).
    #[serde(default)]
    pub crowdsec: Option<crate::crowdsec::CrowdsecConfig>,
}

/// One `[[jail]]`: a log source, a filter and a ban policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JailConfig {
    /// Unique name (used in the store and in `status`).
    pub name: String,
    /// Switch a jail off without deleting it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `sshd`, `mysqld-auth`, or `regex` (then `regex` holds the patterns).
    #[serde(default = "default_filter")]
    pub filter: String,
    /// `normal` or `aggressive` (sshd).
    #[serde(default)]
    pub mode: Option<String>,
    /// Log files to follow.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Read the systemd journal (entries count only when journald's trusted fields say the
    /// server wrote them; filters `sshd` and `mysqld-auth`).
    #[serde(default)]
    pub journal: bool,
    /// Where the journal files are (default: /var/log/journal and /run/log/journal).
    #[serde(default)]
    pub journal_dirs: Vec<PathBuf>,
    /// Where followed files are read from at start.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Failures within `findtime` that trigger a ban.
    #[serde(default = "default_maxretry")]
    pub maxretry: u32,
    /// Counting window.
    #[serde(default = "default_findtime")]
    pub findtime: Dur,
    /// First ban's duration.
    #[serde(default = "default_bantime")]
    pub bantime: Dur,
    /// Repeat offences multiply the ban time by this.
    #[serde(default = "default_factor")]
    pub bantime_factor: f64,
    /// Escalation cap, or `"permanent"`.
    #[serde(default)]
    pub bantime_max: Option<MaxBan>,
    /// Count and ban IPv6 sources per prefix of this length.
    #[serde(default = "default_v6_prefix")]
    pub ipv6_prefix: u8,
    /// Lines matching any of these are skipped.
    #[serde(default)]
    pub ignore: Vec<Pattern>,
    /// Failure patterns (`filter = "regex"`), each with a named group `host`.
    #[serde(default)]
    pub regex: Vec<HostPattern>,
    /// Program names (from the line's envelope) a regex filter judges.
    #[serde(default)]
    pub programs: Vec<String>,
    /// Addresses never banned by this jail (besides the global `allow`).
    #[serde(default)]
    pub allow: Vec<NetValue>,
}

impl JailConfig {
    /// The detection filter this jail uses.
    pub fn build_filter(&self) -> Result<Filter, String> {
        let mode = match self.mode.as_deref() {
            None => Mode::Normal,
            Some(m) => Mode::from_name(m)
                .ok_or_else(|| format!("mode `{m}` is not normal or aggressive"))?,
        };
        if self.filter == "regex" {
            let ignore: Vec<&str> = self.ignore.iter().map(|p| p.0.as_str()).collect();
            let f = RegexFilter::new(self.regex.iter().map(|p| p.0.as_str()), ignore)
                .map_err(|e| e.to_string())?
                .with_name(self.name.clone())
                .with_programs(&self.programs);
            return Ok(Filter::Regex(f));
        }
        if !self.regex.is_empty() {
            return Err(format!(
                "`regex` patterns need filter = \"regex\" (this jail has filter = \"{}\")",
                self.filter
            ));
        }
        Filter::builtin(&self.filter, mode).ok_or_else(|| {
            format!(
                "unknown filter `{}` (built in: sshd, mysqld-auth; or \"regex\")",
                self.filter
            )
        })
    }

    /// The ban policy this jail uses.
    pub fn policy(&self) -> Result<Jail, String> {
        let (max_bantime, permanent) = match self.bantime_max {
            None if self.bantime_factor > 1.0 => (Some(Duration::from_secs(7 * 86400)), false),
            None => (None, false),
            Some(MaxBan::Cap(d)) => (Some(d), false),
            Some(MaxBan::Permanent) => (Some(self.bantime.0), true),
        };
        let j = Jail {
            maxretry: self.maxretry,
            findtime: self.findtime.0,
            bantime: self.bantime.0,
            factor: self.bantime_factor,
            max_bantime,
            permanent_beyond_max: permanent,
            ipv6_prefix: self.ipv6_prefix,
            ..Jail::default()
        };
        j.validate().map_err(|e| e.to_string())?;
        Ok(j)
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            invalid(text, path, span, e.message().to_owned())
        })?;
        cfg.validate(text, path)?;
        Ok(cfg)
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let err =
            |needle: &str, reason: String| invalid(text, path, find_span(text, needle), reason);
        let mut names = std::collections::HashSet::new();
        for j in &self.jails {
            let at = format!("\"{}\"", j.name);
            if j.name.is_empty()
                || !j
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                return Err(err(
                    &at,
                    format!(
                        "jail name `{}`: use letters, digits, '-', '_' or '.'",
                        j.name
                    ),
                ));
            }
            if !names.insert(j.name.clone()) {
                return Err(err(&at, format!("jail name `{}` is used twice", j.name)));
            }
            if j.files.is_empty() && !j.journal {
                return Err(err(
                    &at,
                    format!(
                        "jail `{}` reads nothing: give `files` or `journal = true`",
                        j.name
                    ),
                ));
            }
            if j.journal && j.filter == "regex" {
                return Err(err(
                    &at,
                    format!(
                        "jail `{}`: journal = true needs filter sshd or mysqld-auth (their trusted journal fields are known)",
                        j.name
                    ),
                ));
            }
            j.build_filter()
                .map_err(|e| err(&at, format!("jail `{}`: {e}", j.name)))?;
            j.policy()
                .map_err(|e| err(&at, format!("jail `{}`: {e}", j.name)))?;
        }
        let ctl = self.controller_config();
        ctl.validate()
            .map_err(|e| err(&self.chain, format!("{e}")))?;
        Ok(())
    }

    /// The controller configuration this file describes.
    pub fn controller_config(&self) -> autoblock::Config {
        let allow = self
            .allow
            .iter()
            .filter_map(|n| autoblock::Net::new(n.0.network(), n.0.prefix()).ok());
        autoblock::Config::default()
            .layout(match self.layout {
                LayoutName::Set => autoblock::Layout::Set,
                LayoutName::Chain => autoblock::Layout::Chain,
            })
            .action(match self.action {
                ActionName::Drop => autoblock::Action::Drop,
                ActionName::Reject => autoblock::Action::Reject,
                ActionName::Log => autoblock::Action::Log,
                ActionName::LogDrop => autoblock::Action::LogDrop,
            })
            .chain(self.chain.clone())
            .table(self.table.clone())
            .allow(allow)
    }
}

/// Span of the first occurrence of `needle` (the whole text's start when absent).
fn find_span(text: &str, needle: &str) -> Range<usize> {
    match text.find(needle) {
        Some(i) => i..i + needle.len(),
        None => 0..0,
    }
}

fn invalid(text: &str, path: &Path, span: Range<usize>, reason: String) -> ConfigError {
    let start = span.start.min(text.len());
    let before = &text[..floor_char(text, start)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("").to_owned();
    ConfigError::Invalid {
        file: path.to_owned(),
        line,
        col,
        reason: reason.trim().to_owned(),
        text: line_text,
    }
}

fn floor_char(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for LayoutName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayoutName::Set => "set",
            LayoutName::Chain => "chain",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, Path::new("t.toml"))
    }

    fn err(t: &str) -> (usize, usize, String) {
        match parse(t) {
            Err(ConfigError::Invalid {
                line, col, reason, ..
            }) => (line, col, reason),
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    const GOOD: &str = r#"
layout = "set"
action = "drop"
allow = ["192.0.2.0/24", "2001:db8::1"]
state_dir = "/var/lib/autoblock"
[[jail]]
name = "sshd"
filter = "sshd"
mode = "aggressive"
files = ["/var/log/secure"]
maxretry = 5
findtime = "10m"
bantime = "1h"
bantime_factor = 2.0
bantime_max = "1w"
ipv6_prefix = 64
"#;

    #[test]
    fn a_full_file_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.layout, LayoutName::Set);
        assert_eq!(c.allow.len(), 2);
        assert_eq!(c.jails[0].bantime.0, Duration::from_secs(3600));
        let p = c.jails[0].policy().unwrap();
        assert_eq!(p.ipv6_prefix, 64);
        assert_eq!(p.max_bantime, Some(Duration::from_secs(7 * 86400)));
        assert!(matches!(
            c.jails[0].build_filter().unwrap(),
            Filter::Sshd(Mode::Aggressive)
        ));
    }

    #[test]
    fn unknown_key_is_reported_at_its_line() {
        let (line, col, reason) = err("layout = \"set\"\nbantme = \"1h\"\n");
        assert_eq!((line, col), (2, 1));
        assert!(reason.contains("unknown field `bantme`"), "{reason}");
    }

    #[test]
    fn unknown_key_in_a_jail() {
        let (line, _, reason) = err("[[jail]]\nname = \"a\"\nfiles = [\"/x\"]\nmaxretries = 3\n");
        assert_eq!(line, 4);
        assert!(reason.contains("maxretries"), "{reason}");
    }

    #[test]
    fn bad_duration_points_at_the_value() {
        let (line, col, reason) =
            err("[[jail]]\nname = \"a\"\nfiles = [\"/x\"]\nbantime = \"1 fortnight\"\n");
        assert_eq!((line, col), (4, 11));
        assert!(reason.contains("bad duration"), "{reason}");
    }

    #[test]
    fn bad_address_points_at_the_value() {
        let (line, col, reason) = err("allow = [\"10.0.0.0/8\", \"300.1.2.3\"]\n");
        assert_eq!((line, col), (1, 9)); // toml spans the whole array
        assert!(reason.contains("300.1.2.3"), "{reason}");
        let (_, _, reason) = err("allow = [\"10.0.0.1/8\"]\n");
        assert!(reason.contains("host bits"), "{reason}");
    }

    #[test]
    fn regex_without_host_group() {
        let (line, _, reason) = err(
            "[[jail]]\nname = \"a\"\nfilter = \"regex\"\nfiles = [\"/x\"]\nregex = ['^fail from (?P<addr>\\S+)$']\n",
        );
        assert_eq!(line, 5);
        assert!(reason.contains("no named group `host`"), "{reason}");
    }

    #[test]
    fn regex_filter_builds() {
        let c = parse(
            "[[jail]]\nname = \"web\"\nfilter = \"regex\"\nfiles = [\"/x\"]\nregex = ['^bad login from (?P<host>\\S+)$']\nignore = ['^bad login from 10\\.']\n",
        )
        .unwrap();
        assert!(matches!(
            c.jails[0].build_filter().unwrap(),
            Filter::Regex(_)
        ));
    }

    #[test]
    fn semantic_errors_name_the_jail() {
        let (line, _, reason) = err("[[jail]]\nname = \"a\"\nfiles = [\"/x\"]\nmaxretry = 0\n");
        assert_eq!(line, 2);
        assert!(reason.contains("maxretry"), "{reason}");
        let (_, _, reason) = err("[[jail]]\nname = \"a\"\nfilter = \"nginx\"\nfiles = [\"/x\"]\n");
        assert!(reason.contains("unknown filter"), "{reason}");
        let (_, _, reason) = err("[[jail]]\nname = \"a\"\n");
        assert!(reason.contains("reads nothing"), "{reason}");
        let (_, _, reason) = err(
            "[[jail]]\nname = \"a\"\nfiles = [\"/x\"]\n[[jail]]\nname = \"a\"\nfiles = [\"/y\"]\n",
        );
        assert!(reason.contains("twice"), "{reason}");
    }

    #[test]
    fn bad_enum_value() {
        let (line, col, reason) = err("layout = \"tree\"\n");
        assert_eq!((line, col), (1, 10));
        assert!(reason.contains("unknown variant"), "{reason}");
    }

    #[test]
    fn the_packaged_default_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/autoblock.toml");
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.jails.is_empty());
    }

    #[test]
    fn error_display_is_file_line_col_reason() {
        let e = parse("x = 1\n").unwrap_err();
        assert!(e.to_string().starts_with("t.toml:1:1: "), "{e}");
    }

    #[test]
    fn metrics_is_off_by_default_and_a_bad_address_names_its_spot() {
        assert_eq!(parse("").unwrap().metrics, None);
        let c = parse("metrics = \"127.0.0.1:9641\"\n").unwrap();
        assert_eq!(
            c.metrics.map(|m| m.0),
            Some("127.0.0.1:9641".parse().unwrap())
        );
        let c = parse("metrics = \"[::1]:9641\"\n").unwrap();
        assert_eq!(c.metrics.map(|m| m.0), Some("[::1]:9641".parse().unwrap()));
        let (line, col, reason) = err("layout = \"set\"\nmetrics = \"localhost\"\n");
        assert_eq!((line, col), (2, 11), "{reason}");
        assert!(
            reason.contains("bad listen address `localhost`"),
            "{reason}"
        );
    }
}
