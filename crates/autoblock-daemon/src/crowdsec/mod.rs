//! CrowdSec fleet mode: the daemon follows a CrowdSec Local API's decisions stream and
//! enforces its `ban` decisions through the controller, so bans decided anywhere in a fleet
//! reach this host; with machine credentials it also pushes the bans its own jails decide to
//! the Local API, so every other bouncer of the fleet applies them.
//!
//! Parts: [`duration`] reads Go durations, [`stream`] reads the stream's JSON decision by
//! decision, [`apply`] feeds an answer into the bulk loader (the whole start-up stream in one
//! transaction), [`bouncer`] is the polling thread (HTTP, reconnect and resync), [`push`] is
//! the watcher thread that sends the daemon's own bans as alerts, and [`own`] is what both
//! share so that those bans, coming back in the stream, are not applied again. This module
//! owns the `[crowdsec]` configuration section. It does not own the daemon's own bans (the
//! store and jails), and it never logs the API key, the password or the token.

pub mod apply;
pub mod bouncer;
pub mod duration;
pub mod own;
pub mod push;
pub mod stream;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::config::Dur;

pub use bouncer::{Bouncer, BouncerStatus};
pub use own::OwnBans;
pub use push::{PushStatus, Pusher};

/// The `[crowdsec]` section of the daemon's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawCrowdsec")]
#[non_exhaustive]
pub struct CrowdsecConfig {
    /// The Local API, e.g. `http://127.0.0.1:8080/` (`https://` is verified with rustls).
    pub url: LapiUrl,
    /// A file holding the bouncer's API key (`cscli bouncers add NAME -o raw`).
    pub api_key_file: PathBuf,
    /// How often to ask for new and deleted decisions (default 10 s).
    #[serde(default = "default_poll")]
    pub poll: Dur,
    /// The machine id under which the daemon's own bans are pushed (with `password_file`).
    pub machine_id: Option<String>,
    /// A file holding that machine's password.
    pub password_file: Option<PathBuf>,
}

/// `[crowdsec]` as written, before the checks that involve several keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrowdsec {
    url: LapiUrl,
    api_key_file: PathBuf,
    #[serde(default = "default_poll")]
    poll: Dur,
    #[serde(default)]
    machine_id: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
}

impl TryFrom<RawCrowdsec> for CrowdsecConfig {
    type Error = String;

    fn try_from(r: RawCrowdsec) -> Result<Self, String> {
        match (&r.machine_id, &r.password_file) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(
                    "[crowdsec] machine_id and password_file go together: both to \
                     push this host's bans to the Local API, neither to only follow its \
                     decisions"
                        .into(),
                )
            }
            _ => {}
        }
        if let Some(id) = &r.machine_id {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "[crowdsec] machine_id {id:?} must be non-empty, without spaces or \
                     control characters (the name given to `cscli machines add`)"
                ));
            }
        }
        Ok(CrowdsecConfig {
            url: r.url,
            api_key_file: r.api_key_file,
            poll: r.poll,
            machine_id: r.machine_id,
            password_file: r.password_file,
        })
    }
}

fn default_poll() -> Dur {
    Dur(Duration::from_secs(10))
}

impl CrowdsecConfig {
    /// A configuration for the Local API at `url` with the key in `api_key_file`.
    pub fn new(url: LapiUrl, api_key_file: impl Into<PathBuf>) -> Self {
        CrowdsecConfig {
            url,
            api_key_file: api_key_file.into(),
            poll: default_poll(),
            machine_id: None,
            password_file: None,
        }
    }

    /// Sets the polling interval.
    pub fn poll(mut self, every: Duration) -> Self {
        self.poll = Dur(every);
        self
    }

    /// Sets the machine credentials under which the daemon's own bans are pushed.
    pub fn machine(mut self, id: impl Into<String>, password_file: impl Into<PathBuf>) -> Self {
        self.machine_id = Some(id.into());
        self.password_file = Some(password_file.into());
        self
    }
}

/// The Local API's base address: `http` or `https`, ending in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LapiUrl(pub reqwest::Url);

impl LapiUrl {
    /// Parses and checks a base address; the error names it.
    pub fn parse(s: &str) -> Result<LapiUrl, CrowdsecError> {
        let bad = |reason: String| CrowdsecError::Url {
            url: s.to_owned(),
            reason,
        };
        let mut u = reqwest::Url::parse(s.trim()).map_err(|e| bad(e.to_string()))?;
        if u.scheme() != "http" && u.scheme() != "https" {
            return Err(bad("only http:// and https:// are supported".into()));
        }
        if u.query().is_some() || u.fragment().is_some() {
            return Err(bad("a query or fragment is not allowed".into()));
        }
        if !u.path().ends_with('/') {
            let p = format!("{}/", u.path());
            u.set_path(&p);
        }
        Ok(LapiUrl(u))
    }

    /// `path` (relative, e.g. `v1/decisions/stream`) under this base.
    pub fn join(&self, path: &str) -> reqwest::Url {
        // A relative path joined to a base ending in `/` always parses.
        self.0.join(path).unwrap_or_else(|_| self.0.clone())
    }
}

impl<'de> Deserialize<'de> for LapiUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LapiUrl::parse(&s).map_err(de::Error::custom)
    }
}

/// Errors of the bouncer's set-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrowdsecError {
    /// A secret file (API key, password) cannot be read or is empty.
    #[error("{file}: {reason}")]
    Secret {
        /// The file.
        file: PathBuf,
        /// What is wrong (never its content).
        reason: String,
    },
    /// The Local API address is invalid.
    #[error("bad CrowdSec Local API address {url:?}: {reason}")]
    Url {
        /// The address as written.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client or the bouncer thread could not be set up.
    #[error("cannot start the CrowdSec bouncer: {0}")]
    Start(String),
}

/// The blocking HTTP client of both directions (bouncer and pusher): autoblock's user agent,
/// a 5 s connect timeout, `headers` on every request. Built on the thread that uses it.
pub(crate) fn http_client(
    headers: reqwest::header::HeaderMap,
) -> reqwest::Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .user_agent(concat!("autoblock/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()
}

/// Reads a secret (first line, trimmed) from `file`; the error never shows the content.
pub fn read_secret(file: &Path) -> Result<String, CrowdsecError> {
    read_secret_checked(file, |s| {
        (!s.bytes().all(|b| b.is_ascii_graphic()))
            .then_some("holds characters that cannot go into an HTTP header")
    })
}

/// Reads the first line of `file`, trimmed, refused when empty or when `check` names what
/// is wrong with it; the error names the file, never the content.
pub(crate) fn read_secret_checked(
    file: &Path,
    check: fn(&str) -> Option<&'static str>,
) -> Result<String, CrowdsecError> {
    let bad = |reason: String| CrowdsecError::Secret {
        file: file.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|e| bad(format!("cannot read: {e}")))?;
    let s = text.lines().next().unwrap_or("").trim().to_owned();
    if s.is_empty() {
        return Err(bad("is empty".into()));
    }
    if let Some(why) = check(&s) {
        return Err(bad(why.into()));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = LapiUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            u.join("v1/decisions/stream").as_str(),
            "http://127.0.0.1:8080/v1/decisions/stream"
        );
        let u = LapiUrl::parse("https://lapi.example/crowdsec").unwrap();
        assert_eq!(
            u.join("v1/decisions/stream").as_str(),
            "https://lapi.example/crowdsec/v1/decisions/stream"
        );
        for bad in ["ftp://x/", "not a url", "http://x/?a=1"] {
            let e = LapiUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    fn section(body: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        let text =
            format!("[crowdsec]\nurl = \"http://127.0.0.1:8080/\"\napi_key_file = \"/k\"\n{body}");
        crate::config::Config::parse(&text, Path::new("t.toml"))
    }

    #[test]
    fn machine_credentials_go_together() {
        let c = section("machine_id = \"web-1\"\npassword_file = \"/p\"\n").unwrap();
        let cs = c.crowdsec.unwrap();
        assert_eq!(cs.machine_id.as_deref(), Some("web-1"));
        assert_eq!(cs.password_file.as_deref(), Some(Path::new("/p")));
        assert!(section("").unwrap().crowdsec.unwrap().machine_id.is_none());
        for body in ["machine_id = \"web-1\"\n", "password_file = \"/p\"\n"] {
            let e = section(body).unwrap_err().to_string();
            assert!(
                e.contains("t.toml:1:") && e.contains("machine_id and password_file go together"),
                "{e}"
            );
        }
        let e = section("machine_id = \"web 1\"\npassword_file = \"/p\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"web 1\""), "{e}");
        let e = section("machine = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `machine`"), "{e}");
    }

    #[test]
    fn secrets() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key");
        std::fs::write(&f, "  abc123  \nsecond line\n").unwrap();
        assert_eq!(read_secret(&f).unwrap(), "abc123");
        std::fs::write(&f, "\n").unwrap();
        assert!(read_secret(&f)
            .unwrap_err()
            .to_string()
            .contains("is empty"));
        std::fs::write(&f, "se cret").unwrap();
        let e = read_secret(&f).unwrap_err().to_string();
        assert!(!e.contains("se cret"), "{e}");
        assert!(read_secret(&dir.path().join("none")).is_err());
    }
}
