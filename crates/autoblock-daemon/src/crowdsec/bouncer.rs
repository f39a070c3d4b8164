//! The bouncer thread: polls the Local API's `/v1/decisions/stream` (first with
//! `startup=true` for the full state, then for deltas every `poll`), and applies each answer
//! through its own [`Controller`] while the body is still being received.
//!
//! Any failure (the Local API unreachable or restarting, an HTTP error, a broken answer, a
//! kernel error) makes the next poll a start-up poll again, so the bouncer resyncs by itself.
//! A start-up load replaces timeout and comment of entries already in the sets, so expiry is
//! refreshed on every kernel. The daemon's own bans coming back in the stream are skipped
//! ([`OwnBans`]). It owns no configuration parsing and never logs the API key (the header is
//! marked sensitive and no message includes it).

use std::collections::HashSet;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use autoblock::Controller;
use reqwest::header::{HeaderMap, HeaderValue};
use tracing::{debug, info, warn};

use super::apply::{self, Applied};
use super::own::OwnBans;
use super::{read_secret, CrowdsecConfig, CrowdsecError, LapiUrl};

/// Longest time one start-up answer may take to arrive and be applied.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest time one delta answer may take.
const DELTA_TIMEOUT: Duration = Duration::from_secs(60);

/// What the bouncer has done so far.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BouncerStatus {
    /// Answers applied (start-up and deltas).
    pub polls: u64,
    /// Start-up (full state) answers applied.
    pub startups: u64,
    /// Bans sent to the kernel in total.
    pub blocked: u64,
    /// Decisions that were the daemon's own bans coming back (not applied again).
    pub own: u64,
    /// Unblocks sent in total.
    pub unblocked: u64,
    /// When the last answer was applied.
    pub last_applied: Option<SystemTime>,
    /// The last error, if the last poll failed.
    pub last_error: Option<String>,
}

enum Cmd {
    Resync,
    Stop,
}

/// A running bouncer; dropping it stops the thread (bans stay in the kernel).
#[derive(Debug)]
pub struct Bouncer {
    tx: mpsc::Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
    status: Arc<Mutex<BouncerStatus>>,
}

impl Bouncer {
    /// Reads the API key and starts the polling thread, which opens its own controller with
    /// `ctl` in the calling thread's network namespace.
    pub fn start(cfg: &CrowdsecConfig, ctl: autoblock::Config) -> Result<Bouncer, CrowdsecError> {
        Bouncer::start_with_own(cfg, ctl, None)
    }

    /// Like [`Bouncer::start`]; decisions `own` recognises as the daemon's own bans are not
    /// applied again.
    pub fn start_with_own(
        cfg: &CrowdsecConfig,
        ctl: autoblock::Config,
        own: Option<OwnBans>,
    ) -> Result<Bouncer, CrowdsecError> {
        let key = read_secret(&cfg.api_key_file)?;
        let mut value = HeaderValue::from_str(&key).map_err(|_| CrowdsecError::Secret {
            file: cfg.api_key_file.clone(),
            reason: "holds characters that cannot go into an HTTP header".into(),
        })?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("X-Api-Key", value);
        let (tx, rx) = mpsc::channel();
        let status = Arc::new(Mutex::new(BouncerStatus::default()));
        let (url, poll, st) = (
            cfg.url.clone(),
            cfg.poll.0.max(Duration::from_millis(100)),
            status.clone(),
        );
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        // The blocking client runs its own runtime: it is built, used and dropped on this
        // thread, never inside the daemon's async tasks.
        let thread = std::thread::Builder::new()
            .name("crowdsec".into())
            .spawn(move || {
                let client = match super::http_client(headers) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let worker = Worker {
                    client,
                    url,
                    poll,
                    ctl_cfg: ctl,
                    ctl: None,
                    status: st,
                    seen: HashSet::new(),
                    own,
                };
                worker.run(&rx);
            })
            .map_err(|e| CrowdsecError::Start(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(CrowdsecError::Start(e)),
            Err(_) => return Err(CrowdsecError::Start("the bouncer thread died".into())),
        }
        Ok(Bouncer {
            tx,
            thread: Some(thread),
            status,
        })
    }

    /// Starts the bouncer a daemon configuration asks for (`[crowdsec]`), unless `dry_run`;
    /// `own` (from the [`Pusher`](super::Pusher)) names the daemon's own bans.
    pub fn start_configured(
        cfg: &crate::config::Config,
        dry_run: bool,
        own: Option<OwnBans>,
    ) -> Result<Option<Bouncer>, CrowdsecError> {
        let Some(cs) = &cfg.crowdsec else {
            return Ok(None);
        };
        if dry_run {
            info!("dry run: the CrowdSec bouncer is not started");
            return Ok(None);
        }
        info!(url = %cs.url.0, poll = ?cs.poll.0, "CrowdSec bouncer starting");
        Bouncer::start_with_own(cs, cfg.controller_config(), own).map(Some)
    }

    /// Makes the next poll a start-up poll, at once (after another program or a repair
    /// replaced the sets' content).
    pub fn resync(&self) {
        let _ = self.tx.send(Cmd::Resync);
    }

    /// What the bouncer has done so far.
    pub fn status(&self) -> BouncerStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the thread and waits for it (an answer being applied is finished first).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    client: reqwest::blocking::Client,
    url: LapiUrl,
    poll: Duration,
    ctl_cfg: autoblock::Config,
    ctl: Option<Controller>,
    status: Arc<Mutex<BouncerStatus>>,
    /// Ids of deleted decisions already applied.
    seen: HashSet<i64>,
    /// The daemon's own bans.
    own: Option<OwnBans>,
}

impl Worker {
    fn run(mut self, rx: &mpsc::Receiver<Cmd>) {
        let mut startup = true;
        let mut failing = false;
        loop {
            let started = Instant::now();
            match self.poll_once(startup) {
                Ok(a) => {
                    if failing {
                        info!(url = %self.url.0, "CrowdSec Local API reachable again; resynced");
                    }
                    failing = false;
                    self.record(startup, &a, started.elapsed());
                    startup = false;
                }
                Err(e) => {
                    if !failing {
                        warn!(url = %self.url.0, "CrowdSec bouncer: {e}; retrying with a full resync every {:?}", self.poll);
                    } else {
                        debug!(url = %self.url.0, "CrowdSec bouncer: {e}");
                    }
                    failing = true;
                    startup = true;
                    self.status
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .last_error = Some(e);
                }
            }
            match rx.recv_timeout(self.poll) {
                Ok(Cmd::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Cmd::Resync) => startup = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn record(&self, startup: bool, a: &Applied, took: Duration) {
        let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        st.polls += 1;
        st.startups += u64::from(startup);
        st.blocked += a.blocked;
        st.own += a.own;
        st.unblocked += a.unblocked;
        st.last_applied = Some(SystemTime::now());
        st.last_error = None;
        drop(st);
        for b in a.bad.iter().take(5) {
            warn!(
                "CrowdSec decision {} not enforced: {}: {:?}",
                b.line, b.reason, b.text
            );
        }
        for w in &a.warnings {
            warn!("CrowdSec bouncer: {w}");
        }
        if startup {
            info!(
                bans = a.blocked,
                unblocked = a.unblocked,
                ignored = a.ignored,
                own = a.own,
                invalid = a.invalid,
                transactions = a.transactions,
                ms = took.as_millis() as u64,
                "CrowdSec start-up stream applied"
            );
        } else if a.blocked + a.unblocked + a.invalid > 0 {
            info!(
                bans = a.blocked,
                unblocked = a.unblocked,
                ignored = a.ignored,
                own = a.own,
                invalid = a.invalid,
                "CrowdSec decisions applied"
            );
        } else if a.own > 0 {
            debug!(
                own = a.own,
                "CrowdSec: own bans came back in the stream; already enforced"
            );
        }
    }

    fn poll_once(&mut self, startup: bool) -> Result<Applied, String> {
        if self.ctl.is_none() {
            let c = Controller::open(self.ctl_cfg.clone())
                .map_err(|e| format!("cannot open the controller: {e}"))?;
            self.ctl = Some(c);
        }
        let mut url = self.url.join("v1/decisions/stream");
        if startup {
            url.set_query(Some("startup=true"));
        }
        let resp = self
            .client
            .get(url)
            .timeout(if startup {
                STARTUP_TIMEOUT
            } else {
                DELTA_TIMEOUT.max(self.poll)
            })
            .send()
            .map_err(|e| format!("cannot reach the Local API: {}", without_url(&e)))?;
        let code = resp.status();
        if !code.is_success() {
            let mut body = resp.text().unwrap_or_default();
            body.truncate(200);
            let hint = if code.as_u16() == 403 {
                " (is the API key registered with `cscli bouncers add`?)"
            } else {
                ""
            };
            return Err(format!(
                "the Local API answered {code}{hint}: {}",
                body.trim()
            ));
        }
        let Some(ctl) = self.ctl.as_mut() else {
            return Err("no controller".into());
        };
        match apply::apply(ctl, resp, &mut self.seen, self.own.as_ref()) {
            Ok(a) => Ok(a),
            Err(e @ apply::ApplyError::Kernel(_)) => {
                // Reopen: the namespace or the socket may be gone.
                self.ctl = None;
                Err(e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A reqwest error's text with its causes (the URL is logged separately; it holds no key).
pub(super) fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.without_url_ref();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let kind = if self.is_connect() {
            "connection failed"
        } else if self.is_timeout() {
            "timed out"
        } else if self.is_body() || self.is_decode() {
            "the answer broke off"
        } else {
            "request failed"
        };
        kind.to_owned()
    }
}
