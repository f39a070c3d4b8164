//! The watcher side: bans the daemon's jails decide are pushed to the CrowdSec Local API as
//! alerts with one `ban` decision each, so every other bouncer of the fleet applies them.
//!
//! One thread with a blocking rustls `reqwest` client logs in as a machine
//! (`POST /v1/watchers/login` → a JWT, renewed before it expires and whenever the Local API
//! answers 401) and sends batches of alerts (`POST /v1/alerts`). The daemon only appends to a
//! bounded in-memory queue ([`Pusher::push`] never waits for the network): when the Local API
//! cannot be reached or refuses the login, the queue keeps the newest bans and is retried with
//! a growing delay; failures are logged once, then at most once a minute. Bans that ended
//! while waiting are not sent. Each pushed ban is recorded in [`OwnBans`] so the bouncer does
//! not apply it again when it comes back in the decisions stream.
//!
//! It owns the alert format. It does not decide bans, touch the kernel or the store, and it
//! never logs the password or the token (both go only into request bodies and sensitive
//! headers).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use autoblock::Net;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;
use tracing::{debug, error, info, warn};

use super::bouncer::without_url;
use super::own::OwnBans;
use super::{CrowdsecConfig, CrowdsecError, LapiUrl};
use crate::store::BanRecord;

/// Bans waiting to be pushed; beyond, the oldest are dropped (and counted).
pub const MAX_PENDING: usize = 10_000;
/// Alerts per request.
const BATCH: usize = 100;
/// First and longest delay between retries.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// While pushing keeps failing, at most one warning per this interval.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Longest time one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// When the login answer's expiry cannot be read, the token is renewed after this long (the
/// Local API's tokens last an hour).
const TOKEN_FALLBACK: Duration = Duration::from_secs(20 * 60);
/// The decision's origin: that of decisions a watcher's own scenarios raise. The Local API
/// stores any origin, but `cscli decisions list` of CrowdSec 1.4 (Debian 12) shows only
/// `crowdsec` and `cscli` ones without `--all`.
pub const ORIGIN: &str = "crowdsec";
/// The duration pushed for a permanent ban (ten years).
const PERMANENT: Duration = Duration::from_secs(10 * 365 * 86400);

/// What the pusher has done so far.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PushStatus {
    /// Bans the Local API accepted.
    pub pushed: u64,
    /// Bans waiting (queued or being sent).
    pub pending: usize,
    /// Bans dropped because the queue was full.
    pub dropped: u64,
    /// Bans the Local API refused as invalid (not retried).
    pub rejected: u64,
    /// Bans that ended before they could be pushed.
    pub ended: u64,
    /// Successful logins.
    pub logins: u64,
    /// The last error, while pushing fails.
    pub last_error: Option<String>,
}

/// One ban to push.
#[derive(Debug, Clone)]
struct Ban {
    net: Net,
    jail: String,
    reason: String,
    since: SystemTime,
    until: Option<SystemTime>,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Ban>,
    in_flight: usize,
    stop: bool,
    status: PushStatus,
}

struct Shared {
    q: Mutex<Queue>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.q.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Stops the thread when the last [`Pusher`] clone is dropped.
struct Life(Arc<Shared>);

impl Drop for Life {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.cv.notify_all();
    }
}

/// A running pusher. Clones share it; when the last one is dropped the thread stops (bans
/// still queued are not pushed).
#[derive(Clone)]
pub struct Pusher {
    shared: Arc<Shared>,
    own: OwnBans,
    _life: Arc<Life>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher").finish_non_exhaustive()
    }
}

/// What a pusher needs (the `[crowdsec]` section's machine credentials).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PushConfig {
    /// The Local API.
    pub url: LapiUrl,
    /// The machine id (`cscli machines add ID`).
    pub machine_id: String,
    /// The file holding its password.
    pub password_file: PathBuf,
    /// The scenarios the watcher announces at login (`autoblock/<jail>`).
    pub scenarios: Vec<String>,
}

impl PushConfig {
    /// The pusher's configuration from `[crowdsec]`, if it has machine credentials.
    pub fn from_section(cs: &CrowdsecConfig, jails: &[String]) -> Option<PushConfig> {
        Some(PushConfig {
            url: cs.url.clone(),
            machine_id: cs.machine_id.clone()?,
            password_file: cs.password_file.clone()?,
            scenarios: jails.iter().map(|j| scenario(j)).collect(),
        })
    }
}

/// The scenario name of a jail's bans.
pub fn scenario(jail: &str) -> String {
    format!("autoblock/{jail}")
}

/// Reads a machine password: the file's first line without its line end; the error names
/// the file, never the content.
pub fn read_password(file: &Path) -> Result<String, CrowdsecError> {
    super::read_secret_checked(file, |s| {
        s.chars()
            .any(char::is_control)
            .then_some("holds control characters")
    })
}

impl Pusher {
    /// Reads the password and starts the thread; nothing is sent before the first ban.
    pub fn start(cfg: PushConfig) -> Result<Pusher, CrowdsecError> {
        let password = read_password(&cfg.password_file)?;
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue::default()),
            cv: Condvar::new(),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let sh = shared.clone();
        // The blocking client runs its own runtime: built, used and dropped on this thread.
        std::thread::Builder::new()
            .name("crowdsec-push".into())
            .spawn(move || {
                let client = match super::http_client(reqwest::header::HeaderMap::new()) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                Worker {
                    client,
                    cfg,
                    password,
                    shared: sh,
                    token: None,
                }
                .run();
            })
            .map_err(|e| CrowdsecError::Start(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(CrowdsecError::Start(e)),
            Err(_) => return Err(CrowdsecError::Start("the push thread died".into())),
        }
        Ok(Pusher {
            _life: Arc::new(Life(shared.clone())),
            shared,
            own: OwnBans::default(),
        })
    }

    /// Starts the pusher a daemon configuration asks for (`[crowdsec]` with `machine_id` and
    /// `password_file`), unless `dry_run`.
    pub fn start_configured(
        cfg: &crate::config::Config,
        dry_run: bool,
    ) -> Result<Option<Pusher>, CrowdsecError> {
        let jails: Vec<String> = cfg
            .jails
            .iter()
            .filter(|j| j.enabled)
            .map(|j| j.name.clone())
            .collect();
        let Some(pc) = cfg
            .crowdsec
            .as_ref()
            .and_then(|cs| PushConfig::from_section(cs, &jails))
        else {
            return Ok(None);
        };
        if dry_run {
            info!("dry run: bans are not pushed to the CrowdSec Local API");
            return Ok(None);
        }
        info!(url = %pc.url.0, machine = %pc.machine_id, "CrowdSec: the daemon's own bans are pushed to the Local API");
        Pusher::start(pc).map(Some)
    }

    /// The daemon's own bans, for the bouncer.
    pub fn own(&self) -> OwnBans {
        self.own.clone()
    }

    /// Queues bans a jail decided (and the kernel applied) for pushing; never waits. When
    /// the queue is full the oldest waiting bans are dropped.
    pub fn push(&self, records: &[BanRecord]) {
        let bans: Vec<Ban> = records.iter().filter_map(|r| self.record(r)).collect();
        if bans.is_empty() {
            return;
        }
        let mut q = self.shared.lock();
        for b in bans {
            q.pending.push_back(b);
        }
        while q.pending.len() > MAX_PENDING {
            q.pending.pop_front();
            q.status.dropped += 1;
        }
        drop(q);
        self.shared.cv.notify_all();
    }

    /// Records bans the daemon holds without pushing them (its bans from before a restart:
    /// they were pushed then, or the Local API has forgotten them).
    pub fn remember(&self, records: &[BanRecord]) {
        for r in records {
            self.record(r);
        }
    }

    /// The daemon lifted its ban of these networks.
    pub fn forget(&self, nets: &[Net]) {
        for n in nets {
            self.own.remove(n);
        }
    }

    fn record(&self, r: &BanRecord) -> Option<Ban> {
        let net = Net::parse(&r.net, false).ok()?;
        let at = |s: i64| UNIX_EPOCH + Duration::from_secs(s.max(0) as u64);
        let until = r.until.map(at);
        self.own.insert(net, until);
        Some(Ban {
            net,
            jail: r.jail.clone(),
            reason: r.reason.clone(),
            since: at(r.since),
            until,
        })
    }

    /// What the pusher has done so far.
    pub fn status(&self) -> PushStatus {
        let q = self.shared.lock();
        let mut st = q.status.clone();
        st.pending = q.pending.len() + q.in_flight;
        st
    }
}

/// Why a request failed.
enum Failure {
    /// Worth retrying (network, login, server errors).
    Retry(String),
    /// The Local API refused these alerts as invalid: retrying would not help.
    Rejected(String),
}

struct Token {
    header: HeaderValue,
    renew_at: Instant,
}

struct Worker {
    client: reqwest::blocking::Client,
    cfg: PushConfig,
    password: String,
    shared: Arc<Shared>,
    token: Option<Token>,
}

/// Rate-limited reporting of a failure streak.
struct Streak {
    failures: u64,
    last_logged: Instant,
}

impl Worker {
    fn run(mut self) {
        let mut batch: Vec<Ban> = Vec::new();
        let mut backoff = MIN_BACKOFF;
        let mut streak: Option<Streak> = None;
        let mut rejected_logged: Option<Instant> = None;
        loop {
            if batch.is_empty() {
                let mut q = self.shared.lock();
                q.in_flight = 0;
                while q.pending.is_empty() && !q.stop {
                    q = self
                        .shared
                        .cv
                        .wait(q)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if q.stop {
                    if !q.pending.is_empty() {
                        info!(
                            bans = q.pending.len(),
                            "CrowdSec: stopping; bans not yet pushed are dropped"
                        );
                    }
                    return;
                }
                let n = q.pending.len().min(BATCH);
                batch.extend(q.pending.drain(..n));
                q.in_flight = batch.len();
            }
            let now = SystemTime::now();
            let before = batch.len();
            batch.retain(|b| b.until.is_none_or(|u| u > now + Duration::from_secs(1)));
            if batch.len() < before {
                self.shared.lock().status.ended += (before - batch.len()) as u64;
            }
            if batch.is_empty() {
                continue;
            }
            match self.send(&batch, now) {
                Ok(()) => {
                    if let Some(s) = streak.take() {
                        info!(
                            failures = s.failures,
                            "CrowdSec: pushing bans to the Local API works again"
                        );
                    }
                    for b in &batch {
                        debug!(net = %b.net, jail = %b.jail, "pushed to the CrowdSec Local API");
                    }
                    info!(bans = batch.len(), "CrowdSec: bans pushed to the Local API");
                    let mut q = self.shared.lock();
                    q.status.pushed += batch.len() as u64;
                    q.status.last_error = None;
                    drop(q);
                    batch.clear();
                    backoff = MIN_BACKOFF;
                }
                Err(Failure::Rejected(e)) => {
                    if rejected_logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                        error!(
                            bans = batch.len(),
                            "CrowdSec: the Local API refused the pushed bans: {e}; they are not retried"
                        );
                        rejected_logged = Some(Instant::now());
                    } else {
                        debug!("CrowdSec: the Local API refused the pushed bans: {e}");
                    }
                    let mut q = self.shared.lock();
                    q.status.rejected += batch.len() as u64;
                    q.status.last_error = Some(e);
                    drop(q);
                    batch.clear();
                }
                Err(Failure::Retry(e)) => {
                    let waiting = self.shared.lock().pending.len() + batch.len();
                    match &mut streak {
                        None => {
                            warn!(
                                url = %self.cfg.url.0,
                                "CrowdSec: pushing bans to the Local API failed: {e}; the bans stay applied here, and up to {MAX_PENDING} waiting bans are retried"
                            );
                            streak = Some(Streak {
                                failures: 1,
                                last_logged: Instant::now(),
                            });
                        }
                        Some(s) => {
                            s.failures += 1;
                            if s.last_logged.elapsed() >= LOG_EVERY {
                                let dropped = self.shared.lock().status.dropped;
                                warn!(
                                    failures = s.failures,
                                    waiting,
                                    dropped,
                                    "CrowdSec: pushing bans to the Local API still fails: {e}"
                                );
                                s.last_logged = Instant::now();
                            } else {
                                debug!("CrowdSec: pushing bans failed: {e}");
                            }
                        }
                    }
                    self.shared.lock().status.last_error = Some(e);
                    if !self.pause(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Waits `d` (new bans do not cut it short); false when the pusher was stopped.
    fn pause(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut q = self.shared.lock();
        loop {
            if q.stop {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            q = self
                .shared
                .cv
                .wait_timeout(q, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn send(&mut self, bans: &[Ban], now: SystemTime) -> Result<(), Failure> {
        let body = alerts_json(bans, &self.cfg.machine_id, now).to_string();
        for attempt in 0..2 {
            let token = self.token()?;
            let resp = self.post_json("v1/alerts", body.clone(), Some(token))?;
            let code = resp.status();
            if code.is_success() {
                return Ok(());
            }
            let text = short_body(resp);
            if code == StatusCode::UNAUTHORIZED && attempt == 0 {
                // The token expired or the Local API restarted with another secret.
                self.token = None;
                continue;
            }
            let msg = format!("the Local API answered {code} to the alerts: {text}");
            return Err(
                if code.is_client_error()
                    && code != StatusCode::UNAUTHORIZED
                    && code != StatusCode::FORBIDDEN
                    && code != StatusCode::TOO_MANY_REQUESTS
                {
                    Failure::Rejected(msg)
                } else {
                    Failure::Retry(msg)
                },
            );
        }
        Err(Failure::Retry(
            "the Local API refused a fresh token (401)".into(),
        ))
    }

    /// POSTs the JSON `body` to `path` of the Local API, with `auth` as its Authorization
    /// header when given; not reaching the Local API is worth a retry.
    fn post_json(
        &self,
        path: &str,
        body: String,
        auth: Option<HeaderValue>,
    ) -> Result<reqwest::blocking::Response, Failure> {
        let mut req = self
            .client
            .post(self.cfg.url.join(path))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(REQUEST_TIMEOUT);
        if let Some(token) = auth {
            req = req.header(AUTHORIZATION, token);
        }
        req.send()
            .map_err(|e| Failure::Retry(format!("cannot reach the Local API: {}", without_url(&e))))
    }

    /// A valid token: the current one, or a new login.
    fn token(&mut self) -> Result<HeaderValue, Failure> {
        if let Some(t) = &self.token {
            if Instant::now() < t.renew_at {
                return Ok(t.header.clone());
            }
        }
        self.token = None;
        let body = serde_json::json!({
            "machine_id": self.cfg.machine_id,
            "password": self.password,
            "scenarios": self.cfg.scenarios,
        })
        .to_string();
        let resp = self.post_json("v1/watchers/login", body, None)?;
        let code = resp.status();
        if !code.is_success() {
            let text = short_body(resp);
            let id = &self.cfg.machine_id;
            return Err(Failure::Retry(
                if code == StatusCode::UNAUTHORIZED || code == StatusCode::FORBIDDEN {
                    format!(
                        "the Local API refused the login of machine {id:?} ({code}: {text}); is \
                         it registered (`cscli machines add {id} --password ...`) and is the \
                         password in {} its password?",
                        self.cfg.password_file.display()
                    )
                } else {
                    format!("the Local API answered {code} to the login of machine {id:?}: {text}")
                },
            ));
        }
        let text = resp.text().map_err(|e| {
            Failure::Retry(format!("the login answer broke off: {}", without_url(&e)))
        })?;
        let answer: LoginAnswer = serde_json::from_str(&text).map_err(|e| {
            Failure::Retry(format!(
                "the login answer is not what the Local API sends: {e}"
            ))
        })?;
        let mut header = HeaderValue::from_str(&format!("Bearer {}", answer.token))
            .map_err(|_| Failure::Retry("the login answer holds an unusable token".into()))?;
        header.set_sensitive(true);
        let life = answer
            .expire
            .as_deref()
            .and_then(parse_rfc3339)
            .and_then(|e| e.duration_since(SystemTime::now()).ok())
            .map_or(TOKEN_FALLBACK, |left| {
                left.saturating_sub(Duration::from_secs(60))
                    .clamp(Duration::from_secs(30), 2 * TOKEN_FALLBACK)
            });
        self.token = Some(Token {
            header: header.clone(),
            renew_at: Instant::now() + life,
        });
        self.shared.lock().status.logins += 1;
        debug!(machine = %self.cfg.machine_id, renew_in = ?life, "CrowdSec: logged in");
        Ok(header)
    }
}

/// `POST /v1/watchers/login`'s answer (`code` is not needed).
#[derive(Deserialize)]
struct LoginAnswer {
    token: String,
    #[serde(default)]
    expire: Option<String>,
}

/// The first 200 characters of an error answer (the Local API's message; it never echoes
/// the password or the token).
fn short_body(resp: reqwest::blocking::Response) -> String {
    let mut s: String = resp
        .text()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if s.trim().is_empty() {
        s = "(no message)".into();
    }
    s.trim().to_owned()
}

/// An RFC 3339 time as Go writes it (`2026-12-07T15:24:04Z`, or with an offset `+01:00`).
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if s.ends_with('Z') || s.ends_with('z') {
        return humantime::parse_rfc3339_weak(&s[..s.len() - 1]).ok();
    }
    let b = s.as_bytes();
    if b.len() < 7 || b[b.len() - 3] != b':' {
        return None;
    }
    let sign = b[b.len() - 6];
    if sign != b'+' && sign != b'-' {
        return None;
    }
    let h: u64 = s.get(s.len() - 5..s.len() - 3)?.parse().ok()?;
    let m: u64 = s.get(s.len() - 2..)?.parse().ok()?;
    let local = humantime::parse_rfc3339_weak(&s[..s.len() - 6]).ok()?;
    let off = Duration::from_secs(h * 3600 + m * 60);
    if sign == b'+' {
        local.checked_sub(off)
    } else {
        local.checked_add(off)
    }
}

/// The `POST /v1/alerts` body for `bans`, read at `now`: one alert with one decision each.
/// Fields the Local API requires of an alert are all present (`cscli decisions add` sends
/// the same shape); the decision lasts as long as the ban has left.
fn alerts_json(bans: &[Ban], machine: &str, now: SystemTime) -> serde_json::Value {
    let stamp = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let alerts: Vec<serde_json::Value> = bans
        .iter()
        .map(|b| {
            let (scope, value) = if b.net.is_host() {
                ("Ip", b.net.addr().to_string())
            } else {
                ("Range", format!("{}/{}", b.net.addr(), b.net.prefix_len()))
            };
            let left = b.until.map_or(PERMANENT, |u| {
                u.duration_since(now)
                    .unwrap_or_default()
                    .max(Duration::from_secs(1))
            });
            let scenario = scenario(&b.jail);
            let message = format!("autoblock on {machine}: {}: {}", b.jail, b.reason);
            let mut source = serde_json::json!({"scope": scope, "value": value});
            source[if scope == "Ip" { "ip" } else { "range" }] = value.clone().into();
            serde_json::json!({
                "scenario": scenario,
                "scenario_hash": "",
                "scenario_version": "",
                "message": message,
                "events_count": 1,
                "start_at": stamp(b.since),
                "stop_at": stamp(now.max(b.since)),
                "capacity": 0,
                "leakspeed": "0",
                "simulated": false,
                "remediation": true,
                "events": [],
                "source": source,
                "decisions": [{
                    "origin": ORIGIN,
                    "type": "ban",
                    "scope": scope,
                    "value": value,
                    "duration": format!("{}s", left.as_secs()),
                    "scenario": scenario,
                }],
            })
        })
        .collect();
    serde_json::Value::Array(alerts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(net: &str, until: Option<u64>) -> Ban {
        Ban {
            net: Net::parse(net, false).unwrap(),
            jail: "sshd".into(),
            reason: "sshd: 3 failures within 10m, offence 1".into(),
            since: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            until: until.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
        }
    }

    #[test]
    fn alerts_carry_one_ban_decision_with_what_the_lapi_requires() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_010);
        let v = alerts_json(
            &[
                ban("192.0.2.7", Some(1_800_003_600)),
                ban("2001:db8:1::/64", None),
            ],
            "web-1",
            now,
        );
        let a = &v[0];
        for key in [
            "scenario",
            "scenario_hash",
            "scenario_version",
            "message",
            "events_count",
            "start_at",
            "stop_at",
            "capacity",
            "leakspeed",
            "simulated",
            "events",
            "source",
        ] {
            assert!(!a[key].is_null(), "required alert field {key} missing: {a}");
        }
        assert_eq!(a["scenario"], "autoblock/sshd");
        assert_eq!(a["start_at"], "2027-01-15T08:00:00Z");
        assert_eq!(a["stop_at"], "2027-01-15T08:00:10Z");
        assert_eq!(a["source"]["scope"], "Ip");
        assert_eq!(a["source"]["value"], "192.0.2.7");
        assert_eq!(a["source"]["ip"], "192.0.2.7");
        assert!(a["message"].as_str().unwrap().contains("web-1"));
        let d = &a["decisions"][0];
        assert_eq!(a["decisions"].as_array().unwrap().len(), 1);
        for key in ["duration", "origin", "scenario", "scope", "type", "value"] {
            assert!(d[key].is_string(), "required decision field {key}: {d}");
        }
        assert_eq!(d["type"], "ban");
        assert_eq!(d["origin"], ORIGIN);
        assert_eq!(d["scope"], "Ip");
        assert_eq!(d["value"], "192.0.2.7");
        // What is left of the ban, not its full length.
        assert_eq!(d["duration"], "3590s");
        let r = &v[1];
        assert_eq!(r["source"]["scope"], "Range");
        assert_eq!(r["source"]["range"], "2001:db8:1::/64");
        assert_eq!(r["decisions"][0]["scope"], "Range");
        assert_eq!(r["decisions"][0]["value"], "2001:db8:1::/64");
        assert_eq!(r["decisions"][0]["duration"], "315360000s");
        // The durations are Go durations the bouncer side reads back.
        assert_eq!(
            super::super::duration::parse("3590s").unwrap().remaining(),
            Some(Duration::from_secs(3590))
        );
    }

    #[test]
    fn go_rfc3339_times() {
        let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(parse_rfc3339("2027-01-15T08:00:00Z"), Some(t));
        assert_eq!(parse_rfc3339("2027-01-15T09:00:00+01:00"), Some(t));
        assert_eq!(parse_rfc3339("2027-01-15T02:30:00-05:30"), Some(t));
        assert_eq!(
            parse_rfc3339("2027-01-15T08:00:00.5Z"),
            Some(t + Duration::from_millis(500))
        );
        assert_eq!(parse_rfc3339("tomorrow"), None);
        assert_eq!(parse_rfc3339(""), None);
    }

    #[test]
    fn passwords_are_read_without_showing_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "pass word\n").unwrap();
        assert_eq!(read_password(&f).unwrap(), "pass word");
        std::fs::write(&f, "\n").unwrap();
        let e = read_password(&f).unwrap_err().to_string();
        assert!(e.contains("is empty") && e.contains("pw"), "{e}");
        std::fs::write(&f, "se\u{7}cret").unwrap();
        let e = read_password(&f).unwrap_err().to_string();
        assert!(!e.contains("se\u{7}cret"), "{e}");
        assert!(read_password(&dir.path().join("none")).is_err());
    }

    #[test]
    fn the_queue_is_bounded_and_push_never_waits() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "secret\n").unwrap();
        // Nothing listens on port 9 of this address: every push fails and is retried.
        let p = Pusher::start(PushConfig {
            url: LapiUrl::parse("http://127.0.0.1:9/").unwrap(),
            machine_id: "m".into(),
            password_file: pw,
            scenarios: vec![],
        })
        .unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let records: Vec<BanRecord> = (0..MAX_PENDING as u32 + 500)
            .map(|i| BanRecord {
                net: format!("{}/32", std::net::Ipv4Addr::from(0x0a00_0000 + i)),
                jail: "sshd".into(),
                reason: "test".into(),
                since: now,
                until: Some(now + 3600),
            })
            .collect();
        let started = Instant::now();
        p.push(&records);
        assert!(started.elapsed() < Duration::from_secs(1), "push waited");
        let st = p.status();
        assert!(st.pending <= MAX_PENDING + BATCH, "{st:?}");
        assert!(st.dropped >= 400, "{st:?}");
        assert_eq!(p.own().len(), MAX_PENDING + 500, "all are own bans");
        let started = Instant::now();
        while p.status().last_error.is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no failure reported"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let e = p.status().last_error.unwrap();
        assert!(e.contains("cannot reach the Local API"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
}
