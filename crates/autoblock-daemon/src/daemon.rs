//! The daemon's event loop: sources → scanner → per-jail policy → store → service → kernel,
//! plus expiry, the control socket, reloads and self-healing.
//!
//! One task owns all state (jails, the desired ban set, counters), so nothing is locked:
//! sources, the control socket, the change monitor and the signals all send to it. The store
//! is written (durably) before the kernel is asked for a ban, so a ban reported applied
//! survives kill -9. The kernel work runs in the controller's service; the loop only awaits it
//! where the answer is needed, so line processing never waits for a transaction.
//!
//! Expiry: with the chain layout the daemon removes expired bans itself; with the set layout
//! the kernel's timeouts do, and the daemon only cleans its store (its unblock then finds
//! nothing to do). Deliberately not here: parsing lines (autoblock-detect), reading files
//! (`source`), the on-disk format (`store`), the wire format (`control`), netlink (monitor).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use autoblock::{Entry, Net, Service, ServiceOptions};
use autoblock_detect::{
    AllowList, BanDecision, Event, IpNetwork, JournalTrust, OffenceRecord, PolicyState, Scanner,
    Timestamp, YearContext,
};
use regex::bytes::RegexSet;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::config::{Config, ConfigError, JailConfig, LayoutName};
use crate::control::{self, BlockEntry, ControlError, Envelope, Request};
use crate::metrics::{JailLabels, LayoutLabels, Metrics, ReasonLabels};
use crate::source::{self, FileConfig, SourceEvent, SourceHandle};
use crate::store::{BanRecord, Offence, Store, StoreError};

/// Called (on a blocking thread) after the daemon changed the kernel, e.g. to mirror the
/// chain layout into the sysconfig files. An error is logged; it never stops the daemon.
pub type AfterChange = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A moment of the daemon's life a service manager wants to hear of (systemd's
/// `sd_notify`: `READY=1`, `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lifecycle {
    /// The first reconciliation is in the kernel, the jails and the control socket are up.
    Ready,
    /// A SIGHUP reload starts.
    Reloading,
    /// The reload is done (the daemon is ready again).
    Reloaded,
    /// The daemon is stopping (bans stay in the kernel).
    Stopping,
    /// The event loop is alive (once a second): a watchdog keep-alive.
    Alive,
}

/// Called with each [`Lifecycle`] event and a one-line status; must not block.
pub type LifecycleHook = Arc<dyn Fn(Lifecycle, &str) + Send + Sync>;

/// How to run the daemon.
#[derive(Clone)]
#[non_exhaustive]
pub struct Options {
    /// The configuration file (re-read on SIGHUP).
    pub config_path: PathBuf,
    /// Decide and log bans, change neither the store nor the kernel.
    pub dry_run: bool,
    /// Hook run after each kernel change.
    pub after_change: Option<AfterChange>,
    /// Hook told of readiness, reloads, stopping and liveness.
    pub lifecycle: Option<LifecycleHook>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("config_path", &self.config_path)
            .field("dry_run", &self.dry_run)
            .field("after_change", &self.after_change.is_some())
            .field("lifecycle", &self.lifecycle.is_some())
            .finish()
    }
}

impl Options {
    /// Options for the configuration at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Options {
        Options {
            config_path: path.into(),
            dry_run: false,
            after_change: None,
            lifecycle: None,
        }
    }

    /// Sets dry-run mode.
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }

    /// Sets the after-change hook.
    pub fn after_change(mut self, hook: AfterChange) -> Self {
        self.after_change = Some(hook);
        self
    }

    /// Sets the lifecycle hook (e.g. systemd notifications).
    pub fn lifecycle(mut self, hook: LifecycleHook) -> Self {
        self.lifecycle = Some(hook);
        self
    }
}

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The ban store failed.
    #[error("ban store: {0}")]
    Store(#[from] StoreError),
    /// The control socket failed.
    #[error("control socket: {0}")]
    Control(#[from] ControlError),
    /// The controller could not be opened or the start-up reconciliation failed.
    #[error("kernel: {0}")]
    Kernel(String),
    /// A log source could not be started.
    #[error("jail {jail}: {source}")]
    Source {
        /// The jail.
        jail: String,
        /// The source's error.
        #[source]
        source: source::SourceError,
    },
    /// Installing a signal handler failed.
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    /// The metrics endpoint could not listen on its address.
    #[error("metrics: cannot listen on {addr}: {source}")]
    Metrics {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The CrowdSec bouncer could not be started.
    #[error("crowdsec: {0}")]
    Crowdsec(#[from] crate::crowdsec::CrowdsecError),
}

/// What the change monitor reports: another process changed the ruleset in a way that may
/// have removed some of the daemon's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tampering {
    /// What was removed (`table`, `chain`, `rule`, `set element`...).
    pub what: String,
    /// The process that did it, as the kernel reports it (`nft[1234]`), if known.
    pub by: String,
}

/// Starts the change monitor: returns a receiver of [`Tampering`] reports, or a reason why
/// self-healing is not available (then the daemon runs without it and says so).
pub type MonitorStart = fn() -> Result<mpsc::Receiver<Tampering>, String>;

struct JailRt {
    cfg: JailConfig,
    scanner: Scanner,
    policy: PolicyState,
    ignore: Option<RegexSet>,
    lines: u64,
    failures: u64,
    bans: u64,
    generation: u64,
    sources: Vec<SourceHandle>,
    /// Which journal entries may speak for this jail's server (journal jails).
    trust: Option<JournalTrust>,
    /// Journal entries read (their sequence numbers for the scanner).
    entries: u64,
    /// The jail's `autoblock_log_lines_total` series.
    lines_metric: prometheus_client::metrics::counter::Counter,
    /// The jail's `autoblock_failures_total` series.
    failures_metric: prometheus_client::metrics::counter::Counter,
}

#[derive(Debug, Clone, Default)]
struct HealInfo {
    last_at: Option<i64>,
    last_by: String,
    last_what: String,
    last_restored: usize,
    total: u64,
    suppressed: u64,
}

enum Internal {
    /// The kernel refused these bans: forget them.
    Refused(Vec<(String, String)>),
    /// A heal round finished.
    Healed {
        tampering: Tampering,
        restored: usize,
    },
}

struct Daemon {
    opts: Options,
    cfg: Config,
    store: Arc<Store>,
    svc: Service,
    jails: Vec<JailRt>,
    desired: BTreeMap<String, BanRecord>,
    lines_tx: mpsc::Sender<(u64, usize, SourceEvent)>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    generation: u64,
    heal: HealInfo,
    heal_times: VecDeque<Instant>,
    heal_due: Option<(Instant, Tampering)>,
    started: i64,
    /// Pushes the jails' bans to a CrowdSec Local API (`[crowdsec]` machine credentials).
    pusher: Option<crate::crowdsec::Pusher>,
    /// What `GET /metrics` shows (updated whether or not the endpoint is configured).
    metrics: Arc<Metrics>,
    /// A read of the kernel's drop counters is under way.
    counters_busy: Arc<AtomicBool>,
}

/// How often the kernel's packet/byte counters and the store size are read for the metrics.
const COUNTERS_EVERY: Duration = Duration::from_secs(5);

/// Records one kernel request the daemon made: `entries` entries, sent at `sent`.
fn observe_tx(m: &Metrics, entries: usize, sent: Instant) {
    m.transactions.inc();
    m.transaction_size.observe(entries as f64);
    m.transaction_seconds.observe(sent.elapsed().as_secs_f64());
}

fn reason(r: &str) -> ReasonLabels {
    ReasonLabels {
        reason: r.to_owned(),
    }
}

/// Binds the metrics endpoint (before anything else starts, so a taken port fails the start).
fn bind_metrics(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, DaemonError> {
    let bad = |source| DaemonError::Metrics { addr, source };
    let l = std::net::TcpListener::bind(addr).map_err(bad)?;
    l.set_nonblocking(true).map_err(bad)?;
    tokio::net::TcpListener::from_std(l).map_err(bad)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn net_key(n: &IpNetwork) -> String {
    format!("{}/{}", n.network(), n.prefix())
}

fn to_entry(b: &BanRecord) -> Option<Entry> {
    let net = Net::parse(&b.net, false).ok()?;
    let mut e = Entry::new(net).with_comment(format!("autoblock {}", b.jail));
    if let Some(u) = b.until {
        e = e.with_expiry(UNIX_EPOCH + Duration::from_secs(u.max(0) as u64));
    }
    Some(e)
}

fn stamp(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Runs the daemon until SIGTERM or SIGINT. Bans stay in the kernel when it stops.
pub async fn run(opts: Options, monitor: Option<MonitorStart>) -> Result<(), DaemonError> {
    let cfg = Config::load(&opts.config_path)?;
    let metrics = Arc::new(Metrics::new());
    let metrics_server = match cfg.metrics {
        Some(addr) => {
            let listener = bind_metrics(addr.0)?;
            info!(addr = %addr.0, "metrics: serving GET /metrics");
            Some(tokio::spawn(crate::metrics::serve(
                listener,
                Arc::clone(&metrics),
            )))
        }
        None => None,
    };
    let store = Arc::new(Store::open(&cfg.state_dir)?);
    let ctl = autoblock::Controller::open(cfg.controller_config())
        .map_err(|e| DaemonError::Kernel(e.to_string()))?;
    let (svc, worker) = Service::start(ctl, ServiceOptions::default());
    let (lines_tx, mut lines_rx) = mpsc::channel(source::DEFAULT_CHANNEL);
    let (internal_tx, mut internal_rx) = mpsc::unbounded_channel();
    let mut d = Daemon {
        opts,
        cfg,
        store,
        svc: svc.clone(),
        jails: Vec::new(),
        desired: BTreeMap::new(),
        lines_tx,
        internal_tx,
        generation: 0,
        heal: HealInfo::default(),
        heal_times: VecDeque::new(),
        heal_due: None,
        started: unix_now(),
        pusher: None,
        metrics,
        counters_busy: Arc::new(AtomicBool::new(false)),
    };
    d.reconcile().await?;
    d.pusher = crate::crowdsec::Pusher::start_configured(&d.cfg, d.opts.dry_run)?;
    if let Some(p) = &d.pusher {
        let own: Vec<BanRecord> = d
            .desired
            .values()
            .filter(|b| b.jail != "manual")
            .cloned()
            .collect();
        p.remember(&own);
    }
    // Bouncer mode starts after the reconciliation, whose sync would remove its bans.
    let _bouncer = crate::crowdsec::Bouncer::start_configured(
        &d.cfg,
        d.opts.dry_run,
        d.pusher.as_ref().map(crate::crowdsec::Pusher::own),
    )?;
    d.build_jails(Vec::new())?;

    let listener = control::bind(&d.cfg.control_socket)?;
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Envelope>(64);
    let server = tokio::spawn(control::serve(listener, ctl_tx));

    let mut tamper_rx = match (d.cfg.self_heal, monitor) {
        (true, Some(start)) => match start() {
            Ok(rx) => Some(rx),
            Err(e) => {
                warn!("self-healing is off: the ruleset change monitor failed: {e}");
                None
            }
        },
        (true, None) => {
            warn!("self-healing is off: no change monitor in this build");
            None
        }
        (false, _) => None,
    };

    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut evict_at = Instant::now() + Duration::from_secs(60);
    let mut counters_at = Instant::now();
    info!(
        layout = %d.cfg.layout,
        jails = d.jails.len(),
        bans = d.desired.len(),
        dry_run = d.opts.dry_run,
        socket = %d.cfg.control_socket.display(),
        "autoblock daemon running"
    );
    d.tell(Lifecycle::Ready);

    loop {
        let heal_sleep = async {
            match &d.heal_due {
                Some((at, _)) => tokio::time::sleep_until((*at).into()).await,
                None => std::future::pending().await,
            }
        };
        let tamper = async {
            match tamper_rx.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((generation, j, ev)) = lines_rx.recv() => {
                let mut pending = Vec::new();
                d.on_source(generation, j, ev, &mut pending);
                // Take what else is already waiting, so that a burst becomes one store commit
                // and one kernel transaction.
                while pending.len() < 16_384 {
                    match lines_rx.try_recv() {
                        Ok((g, j, ev)) => d.on_source(g, j, ev, &mut pending),
                        Err(_) => break,
                    }
                }
                if !pending.is_empty() {
                    d.apply_bans(pending).await;
                }
            }
            Some(env) = ctl_rx.recv() => d.on_control(env).await,
            Some(msg) = internal_rx.recv() => d.on_internal(msg).await,
            t = tamper => match t {
                Some(t) => d.on_tampering(t),
                None => {
                    warn!("self-healing stopped: the ruleset change monitor ended");
                    tamper_rx = None;
                }
            },
            () = heal_sleep => d.heal_now(),
            _ = tick.tick() => {
                d.tell(Lifecycle::Alive);
                d.expire().await;
                d.update_active_bans();
                if Instant::now() >= counters_at {
                    d.read_counters();
                    counters_at = Instant::now() + COUNTERS_EVERY;
                }
                if Instant::now() >= evict_at {
                    let now = Timestamp::now();
                    for j in &mut d.jails {
                        j.policy.evict(now);
                    }
                    evict_at = Instant::now() + Duration::from_secs(60);
                }
            }
            _ = hup.recv() => {
                d.tell(Lifecycle::Reloading);
                d.reload();
                d.tell(Lifecycle::Reloaded);
            }
            _ = term.recv() => { info!("SIGTERM: stopping; bans stay in the kernel"); break; }
            _ = int.recv() => { info!("SIGINT: stopping; bans stay in the kernel"); break; }
        }
    }
    d.tell(Lifecycle::Stopping);
    server.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    for j in &mut d.jails {
        for h in j.sources.drain(..) {
            h.stop();
        }
    }
    let socket = d.cfg.control_socket.clone();
    svc.shutdown().await;
    drop(d);
    let _ = worker.await;
    // Best effort: a stale socket is replaced at the next start anyway.
    let _ = std::fs::remove_file(socket);
    Ok(())
}

impl Daemon {
    /// Sets `autoblock_active_bans` from the desired bans (both families, so a family
    /// with none shows 0).
    fn update_active_bans(&self) {
        let v6 = self.desired.keys().filter(|n| n.contains(':')).count();
        let v4 = self.desired.len() - v6;
        let layout = self.cfg.layout.to_string();
        for (family, n) in [("ipv4", v4), ("ipv6", v6)] {
            self.metrics
                .active_bans
                .get_or_create(&LayoutLabels {
                    layout: layout.clone(),
                    family: family.to_owned(),
                })
                .set(n as i64);
        }
    }

    /// Reads the store size and, in the background, the kernel's packet/byte counters of
    /// the drop rules (one at a time: a slow read is never stacked; bans never wait for it).
    fn read_counters(&self) {
        if let Ok(meta) = std::fs::metadata(self.cfg.state_dir.join(crate::store::FILE_NAME)) {
            self.metrics.store_bytes.set(meta.len() as i64);
        }
        if self.opts.dry_run || self.counters_busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let svc = self.svc.clone();
        let metrics = Arc::clone(&self.metrics);
        let busy = Arc::clone(&self.counters_busy);
        let layout = self.cfg.layout.to_string();
        tokio::spawn(async move {
            match svc.status().await {
                Ok(families) => {
                    for f in families {
                        let labels = LayoutLabels {
                            layout: layout.clone(),
                            family: match f.family {
                                autoblock::IpFamily::V4 => "ipv4",
                                autoblock::IpFamily::V6 => "ipv6",
                            }
                            .to_owned(),
                        };
                        metrics
                            .dropped_packets
                            .get_or_create(&labels)
                            .set(i64::try_from(f.packets).unwrap_or(i64::MAX));
                        metrics
                            .dropped_bytes
                            .get_or_create(&labels)
                            .set(i64::try_from(f.bytes).unwrap_or(i64::MAX));
                    }
                }
                Err(e) => debug!("metrics: reading the kernel's counters failed: {e}"),
            }
            busy.store(false, Ordering::Release);
        });
    }

    /// Tells the lifecycle hook, if any, of `event` with a status line.
    fn tell(&self, event: Lifecycle) {
        if let Some(hook) = &self.opts.lifecycle {
            let status = match event {
                Lifecycle::Stopping => "stopping; bans stay in the kernel".to_owned(),
                _ => format!(
                    "{} jail(s), {} ban(s), {} layout",
                    self.jails.len(),
                    self.desired.len(),
                    self.cfg.layout
                ),
            };
            hook(event, &status);
        }
    }

    /// Loads the store, forgets expired bans and makes the kernel hold exactly the rest, in
    /// one transaction.
    async fn reconcile(&mut self) -> Result<(), DaemonError> {
        let now = unix_now();
        let all = self.store.bans()?;
        let (expired, live): (Vec<_>, Vec<_>) = all.into_iter().partition(|b| b.expired(now));
        if !expired.is_empty() {
            let nets: Vec<&str> = expired.iter().map(|b| b.net.as_str()).collect();
            self.store.remove_bans(&nets)?;
        }
        self.store
            .forget_offences_before(now - 30 * 86400)
            .map_err(DaemonError::Store)?;
        self.desired = live.into_iter().map(|b| (b.net.clone(), b)).collect();
        if self.opts.dry_run {
            info!(
                bans = self.desired.len(),
                "dry run: the kernel is not reconciled"
            );
            return Ok(());
        }
        let entries: Vec<Entry> = self.desired.values().filter_map(to_entry).collect();
        let (n, sent) = (entries.len(), Instant::now());
        let r = self
            .svc
            .sync(entries)
            .await
            .map_err(|e| DaemonError::Kernel(format!("start-up reconciliation: {e}")))?;
        observe_tx(&self.metrics, n, sent);
        self.update_active_bans();
        info!(
            bans = self.desired.len(),
            added = r.changed.len(),
            removed = r.removed.len(),
            expired = expired.len(),
            "kernel reconciled with the ban store"
        );
        self.after_change();
        Ok(())
    }

    /// (Re)builds the jails from the configuration; state of jails with the same name is kept.
    fn build_jails(&mut self, mut old: Vec<JailRt>) -> Result<(), DaemonError> {
        self.generation += 1;
        let generation = self.generation;
        let now = Timestamp::now();
        let mut global_allow: Vec<String> =
            self.cfg.allow.iter().map(|n| n.0.to_string()).collect();
        global_allow.sort();
        let mut jails = Vec::new();
        for jc in self.cfg.jails.iter().filter(|j| j.enabled) {
            let bad = |e: String| {
                DaemonError::Config(ConfigError::Invalid {
                    file: self.opts.config_path.clone(),
                    line: 1,
                    col: 1,
                    reason: format!("jail {}: {e}", jc.name),
                    text: String::new(),
                })
            };
            let filter = jc.build_filter().map_err(bad)?;
            let policy_cfg = jc.policy().map_err(bad)?;
            let mut allow_list: Vec<String> = global_allow.clone();
            allow_list.extend(jc.allow.iter().map(|n| n.0.to_string()));
            let allow = AllowList::parse(&allow_list).map_err(|e| bad(e.to_string()))?;
            let prev = old
                .iter()
                .position(|o| o.cfg.name == jc.name)
                .map(|i| old.swap_remove(i));
            let policy = match prev {
                Some(p) if p.policy.jail() == &policy_cfg && p.policy.allow_list() == &allow => {
                    p.policy
                }
                Some(p) => {
                    let mut n =
                        PolicyState::new(policy_cfg, allow).map_err(|e| bad(e.to_string()))?;
                    n.restore_offences(p.policy.offences());
                    n
                }
                None => {
                    let mut n =
                        PolicyState::new(policy_cfg, allow).map_err(|e| bad(e.to_string()))?;
                    let records = self.store.offences(&jc.name)?;
                    n.restore_offences(records.iter().filter_map(|o| {
                        Some(OffenceRecord {
                            net: o.net.parse().ok()?,
                            count: o.count,
                            last_ban: stamp(o.last_ban),
                            until: o.until.map(stamp),
                        })
                    }));
                    n
                }
            };
            let ignore = if jc.filter != "regex" && !jc.ignore.is_empty() {
                Some(
                    RegexSet::new(jc.ignore.iter().map(|p| p.0.as_str()))
                        .map_err(|e| bad(e.to_string()))?,
                )
            } else {
                None
            };
            let scanner = Scanner::new(filter, YearContext::utc(now));
            let labels = JailLabels {
                jail: jc.name.clone(),
                filter: scanner.filter().name().to_owned(),
            };
            let lines_metric = self.metrics.lines_read.get_or_create(&labels).clone();
            let failures_metric = self.metrics.failures.get_or_create(&labels).clone();
            let mut rt = JailRt {
                cfg: jc.clone(),
                scanner,
                policy,
                ignore,
                lines: 0,
                failures: 0,
                bans: 0,
                generation,
                sources: Vec::new(),
                trust: None,
                entries: 0,
                lines_metric,
                failures_metric,
            };
            if let Some(p) = old.iter().find(|o| o.cfg.name == jc.name) {
                rt.lines = p.lines;
            }
            let index = jails.len();
            if jc.journal {
                self.start_journal(jc, &mut rt, index, generation);
            }
            for path in &jc.files {
                let read_from = match jc.read_from {
                    crate::config::ReadFrom::End => source::ReadFrom::End,
                    crate::config::ReadFrom::Start => source::ReadFrom::Start,
                };
                let (handle, mut rx) = source::follow_file(
                    FileConfig::new(path).read_from(read_from),
                )
                .map_err(|e| DaemonError::Source {
                    jail: jc.name.clone(),
                    source: e,
                })?;
                let tx = self.lines_tx.clone();
                tokio::spawn(async move {
                    while let Some(ev) = rx.recv().await {
                        if tx.send((generation, index, ev)).await.is_err() {
                            break;
                        }
                    }
                });
                rt.sources.push(handle);
            }
            jails.push(rt);
        }
        for mut o in old {
            for h in o.sources.drain(..) {
                h.stop();
            }
        }
        for j in &mut self.jails {
            for h in j.sources.drain(..) {
                h.stop();
            }
        }
        self.jails = jails;
        Ok(())
    }

    #[cfg(feature = "journal")]
    fn start_journal(&self, jc: &JailConfig, rt: &mut JailRt, index: usize, generation: u64) {
        rt.trust = Some(if jc.filter == "mysqld-auth" {
            JournalTrust::mysqld()
        } else {
            JournalTrust::sshd()
        });
        let mut jcfg = if jc.journal_dirs.is_empty() {
            source::JournalSourceConfig::default()
        } else {
            source::JournalSourceConfig::dirs(jc.journal_dirs.clone())
        };
        jcfg = jcfg.read_from(match jc.read_from {
            crate::config::ReadFrom::End => source::ReadFrom::End,
            crate::config::ReadFrom::Start => source::ReadFrom::Start,
        });
        match source::follow_journal(jcfg) {
            Ok((handle, mut rx)) => {
                let tx = self.lines_tx.clone();
                tokio::spawn(async move {
                    while let Some(ev) = rx.recv().await {
                        if tx.send((generation, index, ev)).await.is_err() {
                            break;
                        }
                    }
                });
                rt.sources.push(handle);
            }
            Err(e) => {
                error!(jail = %jc.name, "the journal cannot be read, this jail reads only its files: {e}")
            }
        }
    }

    #[cfg(not(feature = "journal"))]
    fn start_journal(&self, jc: &JailConfig, _rt: &mut JailRt, _index: usize, _generation: u64) {
        error!(jail = %jc.name, "this build has no journal source (cargo feature `journal`); this jail reads only its files");
    }

    fn reload(&mut self) {
        info!(config = %self.opts.config_path.display(), "SIGHUP: reloading the configuration");
        let new = match Config::load(&self.opts.config_path) {
            Ok(c) => c,
            Err(e) => {
                error!("reload refused, the running configuration stays: {e}");
                return;
            }
        };
        if new.layout != self.cfg.layout
            || new.action != self.cfg.action
            || new.state_dir != self.cfg.state_dir
            || new.control_socket != self.cfg.control_socket
            || new.chain != self.cfg.chain
            || new.table != self.cfg.table
        {
            warn!("layout, action, chain, table, state_dir and control_socket change only with a restart; the other settings are reloaded");
        }
        let keep = (
            self.cfg.layout,
            self.cfg.action,
            self.cfg.state_dir.clone(),
            self.cfg.control_socket.clone(),
            self.cfg.chain.clone(),
            self.cfg.table.clone(),
        );
        let mut new = new;
        new.layout = keep.0;
        new.action = keep.1;
        new.state_dir = keep.2;
        new.control_socket = keep.3;
        new.chain = keep.4;
        new.table = keep.5;
        self.cfg = new;
        let old = std::mem::take(&mut self.jails);
        if let Err(e) = self.build_jails(old) {
            error!("reload: {e}; jails that could not start are off until the next reload");
        } else {
            info!(
                jails = self.jails.len(),
                "configuration reloaded; bans and counts kept"
            );
        }
    }

    fn on_source(
        &mut self,
        generation: u64,
        j: usize,
        ev: SourceEvent,
        pending: &mut Vec<(usize, BanDecision)>,
    ) {
        let Some(jr) = self.jails.get_mut(j) else {
            return;
        };
        if jr.generation != generation {
            return;
        }
        match ev {
            SourceEvent::Line(line) => {
                jr.lines += 1;
                jr.lines_metric.inc();
                if jr
                    .ignore
                    .as_ref()
                    .is_some_and(|ig| ig.is_match(&line.bytes))
                {
                    return;
                }
                let now = Timestamp::now();
                jr.scanner.year_context_mut().set_now(now);
                let Some(det) = jr.scanner.feed(line.pos.line_no(), &line.bytes) else {
                    return;
                };
                match det.event {
                    Event::Failure(f) => {
                        jr.failures += 1;
                        jr.failures_metric.inc();
                        debug!(jail = %jr.cfg.name, host = %f.host, kind = f.kind.as_str(), "failure");
                        if let Some(b) = jr.policy.record(&f, now) {
                            pending.push((j, b));
                        }
                    }
                    Event::Forgive { host, count } => jr.policy.forgive(host, count),
                }
            }
            SourceEvent::Entry(entry) => {
                jr.lines += 1;
                jr.lines_metric.inc();
                jr.entries += 1;
                let Some(trust) = &jr.trust else { return };
                let env = match trust.judge(|name| entry.get(name)) {
                    Ok(env) => env,
                    Err(why) => {
                        debug!(jail = %jr.cfg.name, ?why, "journal entry not trusted");
                        return;
                    }
                };
                let now = Timestamp::now();
                jr.scanner.year_context_mut().set_now(now);
                let Some(det) = jr.scanner.feed_envelope(jr.entries, &env) else {
                    return;
                };
                match det.event {
                    Event::Failure(f) => {
                        jr.failures += 1;
                        jr.failures_metric.inc();
                        if let Some(b) = jr.policy.record(&f, now) {
                            pending.push((j, b));
                        }
                    }
                    Event::Forgive { host, count } => jr.policy.forgive(host, count),
                }
            }
            SourceEvent::TooLong { pos, len } => {
                jr.lines += 1;
                jr.lines_metric.inc();
                debug!(jail = %jr.cfg.name, ?pos, len, "line too long, skipped");
            }
            SourceEvent::Rotated { path, what } => {
                info!(jail = %jr.cfg.name, path = %path.display(), ?what, "log file rotated");
            }
            SourceEvent::Error(e) => warn!(jail = %jr.cfg.name, "log source: {e}"),
            other => debug!(jail = %jr.cfg.name, ?other, "source event"),
        }
    }

    /// Records the bans durably, then asks the kernel for them.
    async fn apply_bans(&mut self, decisions: Vec<(usize, BanDecision)>) {
        let now = unix_now();
        let mut records = Vec::new();
        let mut offences: BTreeMap<String, Vec<Offence>> = BTreeMap::new();
        for (j, b) in decisions {
            let jr = &mut self.jails[j];
            jr.bans += 1;
            let until = b.duration.map(|d| now.saturating_add(d.as_secs() as i64));
            let net = net_key(&b.net);
            let rec = BanRecord {
                net: net.clone(),
                jail: jr.cfg.name.clone(),
                reason: format!(
                    "{}: {} failures within {}, offence {}",
                    jr.scanner.filter().name(),
                    jr.cfg.maxretry,
                    humantime::format_duration(jr.cfg.findtime.0),
                    b.offence_no
                ),
                since: now,
                until,
            };
            offences
                .entry(jr.cfg.name.clone())
                .or_default()
                .push(Offence {
                    net: net.clone(),
                    count: b.offence_no,
                    last_ban: now,
                    until,
                });
            records.push(rec);
        }
        if self.opts.dry_run {
            for r in &records {
                info!(net = %r.net, jail = %r.jail, until = ?r.until, reason = %r.reason, "dry run: would ban");
            }
            return;
        }
        let store = self.store.clone();
        let recs = records.clone();
        let stored = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let per_jail: Vec<(&str, &[Offence])> = offences
                .iter()
                .map(|(jail, list)| (jail.as_str(), list.as_slice()))
                .collect();
            store.put_bans_and_offences(&recs, &per_jail)
        })
        .await;
        match stored {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!("ban store: {e}; these bans are applied without being recorded");
            }
            Err(e) => error!("ban store task failed: {e}"),
        }
        for r in &records {
            self.desired.insert(r.net.clone(), r.clone());
        }
        let entries: Vec<Entry> = records.iter().filter_map(to_entry).collect();
        self.spawn_block(entries, records);
    }

    fn spawn_block(&self, entries: Vec<Entry>, records: Vec<BanRecord>) {
        let svc = self.svc.clone();
        let internal = self.internal_tx.clone();
        let hook = self.opts.after_change.clone();
        let pusher = self.pusher.clone();
        let metrics = Arc::clone(&self.metrics);
        tokio::spawn(async move {
            let (n, sent) = (entries.len(), Instant::now());
            match svc.block(entries).await {
                Ok(o) => {
                    observe_tx(&metrics, n, sent);
                    let mut banned = Vec::new();
                    for r in records {
                        if o.failed.iter().any(|(n, _)| n.to_string() == r.net || format!("{}/{}", n.addr(), n.prefix_len()) == r.net) {
                            continue;
                        }
                        info!(net = %r.net, jail = %r.jail, until = ?r.until, reason = %r.reason, "banned");
                        metrics.bans.get_or_create(&reason(&r.jail)).inc();
                        banned.push(r);
                    }
                    // Queued for the CrowdSec Local API; never waits for it.
                    if let Some(p) = &pusher {
                        p.push(&banned);
                    }
                    let refused: Vec<(String, String)> = o
                        .failed
                        .iter()
                        .map(|(n, e)| (format!("{}/{}", n.addr(), n.prefix_len()), e.to_string()))
                        .collect();
                    if !refused.is_empty() {
                        let _ = internal.send(Internal::Refused(refused));
                    }
                    if !o.applied.is_empty() {
                        run_hook(hook).await;
                    }
                }
                Err(e) => error!("applying {} ban(s) failed: {e}; they stay recorded and are retried at the next reconciliation", records.len()),
            }
        });
    }

    async fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Refused(list) => {
                let nets: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
                for (n, why) in &list {
                    warn!(net = %n, "the controller refused the ban: {why}");
                    self.desired.remove(n);
                }
                if let Err(e) = self.store.remove_bans(&nets) {
                    error!("ban store: {e}");
                }
            }
            Internal::Healed {
                tampering,
                restored,
            } => {
                if restored > 0 {
                    self.metrics.self_heals.inc();
                    self.heal.total += 1;
                    self.heal.last_at = Some(unix_now());
                    self.heal.last_by = tampering.by.clone();
                    self.heal.last_what = tampering.what.clone();
                    self.heal.last_restored = restored;
                    self.heal_times.push_back(Instant::now());
                    warn!(by = %tampering.by, what = %tampering.what, restored, "self-heal: put back what another process removed");
                }
            }
        }
    }

    fn on_tampering(&mut self, t: Tampering) {
        debug!(by = %t.by, what = %t.what, "ruleset changed by another process");
        if self.heal_due.is_none() {
            // Let the other program's burst of changes finish, then repair once.
            self.heal_due = Some((Instant::now() + Duration::from_millis(100), t));
        }
    }

    fn heal_now(&mut self) {
        let Some((_, t)) = self.heal_due.take() else {
            return;
        };
        if self.opts.dry_run {
            info!(by = %t.by, what = %t.what, "dry run: the ruleset was changed; not repairing");
            return;
        }
        let window = Duration::from_secs(60);
        while self
            .heal_times
            .front()
            .is_some_and(|at| at.elapsed() > window)
        {
            self.heal_times.pop_front();
        }
        let limit = self.cfg.heal_per_minute.max(1) as usize;
        if self.heal_times.len() >= limit {
            self.heal.suppressed += 1;
            let retry = self
                .heal_times
                .front()
                .map_or(window, |at| window.saturating_sub(at.elapsed()));
            warn!(
                by = %t.by,
                what = %t.what,
                "self-heal: {limit} repairs within a minute; another program keeps removing autoblock's rules, so the daemon stops fighting it and retries in {}s",
                retry.as_secs() + 1
            );
            self.heal_due = Some((Instant::now() + retry + Duration::from_millis(10), t));
            return;
        }
        let now = unix_now();
        let entries: Vec<Entry> = self
            .desired
            .values()
            .filter(|b| b.until.is_none_or(|u| u > now + 1))
            .filter_map(to_entry)
            .collect();
        let svc = self.svc.clone();
        let internal = self.internal_tx.clone();
        let hook = self.opts.after_change.clone();
        let metrics = Arc::clone(&self.metrics);
        tokio::spawn(async move {
            let (n, sent) = (entries.len(), Instant::now());
            match svc.sync(entries).await {
                Ok(r) => {
                    observe_tx(&metrics, n, sent);
                    let restored = r.changed.len() + r.updated.len();
                    let _ = internal.send(Internal::Healed {
                        tampering: t,
                        restored: restored.max(usize::from(!r.removed.is_empty())),
                    });
                    run_hook(hook).await;
                }
                Err(e) => error!(by = %t.by, "self-heal failed: {e}"),
            }
        });
    }

    async fn expire(&mut self) {
        let now = unix_now();
        let expired: Vec<String> = self
            .desired
            .values()
            .filter(|b| b.expired(now))
            .map(|b| b.net.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        for n in &expired {
            if let Some(b) = self.desired.remove(n) {
                info!(net = %n, jail = %b.jail, "ban expired");
            }
        }
        self.metrics
            .unbans
            .get_or_create(&reason("expired"))
            .inc_by(expired.len() as u64);
        if self.opts.dry_run {
            return;
        }
        let store = self.store.clone();
        let keys = expired.clone();
        match tokio::task::spawn_blocking(move || store.remove_bans(&keys)).await {
            Ok(Err(e)) => error!("ban store: {e}"),
            Err(e) => error!("ban store task failed: {e}"),
            Ok(Ok(_)) => {}
        }
        // Set layout: the kernel's timeout has removed them already (this finds nothing);
        // chain layout: this is what ends the ban.
        let nets: Vec<Net> = expired
            .iter()
            .filter_map(|n| Net::parse(n, false).ok())
            .collect();
        let svc = self.svc.clone();
        let hook = self.opts.after_change.clone();
        let layout = self.cfg.layout;
        let metrics = Arc::clone(&self.metrics);
        tokio::spawn(async move {
            let (n, sent) = (nets.len(), Instant::now());
            match svc.unblock(nets).await {
                Ok(o) => {
                    observe_tx(&metrics, n, sent);
                    if layout == LayoutName::Chain && !o.applied.is_empty() {
                        run_hook(hook).await;
                    }
                }
                Err(e) => error!("removing expired bans failed: {e}"),
            }
        });
    }

    async fn on_control(&mut self, env: Envelope) {
        let reply = match env.request {
            Request::Status => self.status_json(),
            Request::List => {
                let svc = self.svc.clone();
                let jails: BTreeMap<String, (String, String)> = self
                    .desired
                    .values()
                    .map(|b| (b.net.clone(), (b.jail.clone(), b.reason.clone())))
                    .collect();
                tokio::spawn(async move {
                    let reply = match svc.list().await {
                        Ok(list) => {
                            let entries: Vec<_> = list
                                .iter()
                                .map(|l| {
                                    let key = format!("{}/{}", l.net.addr(), l.net.prefix_len());
                                    let (jail, reason) = jails.get(&key).cloned().unzip();
                                    serde_json::json!({
                                        "net": key,
                                        "comment": l.comment,
                                        "expires": l.expires.and_then(|e| e.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()),
                                        "packets": l.packets,
                                        "bytes": l.bytes,
                                        "jail": jail,
                                        "reason": reason,
                                    })
                                })
                                .collect();
                            serde_json::json!({"ok": true, "entries": entries})
                        }
                        Err(e) => control::error_reply(&e.to_string()),
                    };
                    let _ = env.reply.send(reply);
                });
                return;
            }
            Request::Block { entries } => match self.manual_block(entries).await {
                Ok(r) => r,
                Err(e) => control::error_reply(&e),
            },
            Request::Unblock { nets } => match self.manual_unblock(nets).await {
                Ok(r) => r,
                Err(e) => control::error_reply(&e),
            },
        };
        let _ = env.reply.send(reply);
    }

    async fn manual_block(
        &mut self,
        entries: Vec<BlockEntry>,
    ) -> Result<serde_json::Value, String> {
        let now = unix_now();
        let mut records = Vec::new();
        for e in &entries {
            let net = Net::parse(&e.net, false).map_err(|x| x.to_string())?;
            records.push(BanRecord {
                net: format!("{}/{}", net.addr(), net.prefix_len()),
                jail: "manual".to_owned(),
                reason: e
                    .comment
                    .clone()
                    .unwrap_or_else(|| "blocked by the administrator".into()),
                since: now,
                until: e.timeout.map(|t| now.saturating_add(t as i64)),
            });
        }
        if self.opts.dry_run {
            return Ok(serde_json::json!({"ok": true, "dry_run": true, "applied": 0}));
        }
        self.store.put_bans(&records).map_err(|e| e.to_string())?;
        for r in &records {
            self.desired.insert(r.net.clone(), r.clone());
        }
        let list: Vec<Entry> = records.iter().filter_map(to_entry).collect();
        let (n, sent) = (list.len(), Instant::now());
        let o = self.svc.block(list).await.map_err(|e| e.to_string())?;
        observe_tx(&self.metrics, n, sent);
        self.metrics
            .bans
            .get_or_create(&reason("manual"))
            .inc_by(o.applied.len() as u64);
        let failed: Vec<(String, String)> = o
            .failed
            .iter()
            .map(|(n, e)| (format!("{}/{}", n.addr(), n.prefix_len()), e.to_string()))
            .collect();
        if !failed.is_empty() {
            self.on_internal(Internal::Refused(failed.clone())).await;
        }
        if !o.applied.is_empty() {
            run_hook(self.opts.after_change.clone()).await;
        }
        Ok(serde_json::json!({
            "ok": failed.is_empty(),
            "applied": o.applied.len(),
            "unchanged": o.unchanged.len(),
            "failed": failed.iter().map(|(n, e)| serde_json::json!({"net": n, "error": e})).collect::<Vec<_>>(),
            "error": (!failed.is_empty()).then(|| failed.iter().map(|(n, e)| format!("{n}: {e}")).collect::<Vec<_>>().join("; ")),
        }))
    }

    async fn manual_unblock(&mut self, nets: Vec<String>) -> Result<serde_json::Value, String> {
        let mut parsed = Vec::new();
        for n in &nets {
            parsed.push(Net::parse(n, false).map_err(|e| e.to_string())?);
        }
        let keys: Vec<String> = parsed
            .iter()
            .map(|n| format!("{}/{}", n.addr(), n.prefix_len()))
            .collect();
        if self.opts.dry_run {
            return Ok(serde_json::json!({"ok": true, "dry_run": true, "removed": 0}));
        }
        self.store.remove_bans(&keys).map_err(|e| e.to_string())?;
        for k in &keys {
            self.desired.remove(k);
        }
        if let Some(p) = &self.pusher {
            p.forget(&parsed);
        }
        let (n, sent) = (parsed.len(), Instant::now());
        let o = self.svc.unblock(parsed).await.map_err(|e| e.to_string())?;
        observe_tx(&self.metrics, n, sent);
        self.metrics
            .unbans
            .get_or_create(&reason("manual"))
            .inc_by(o.applied.len() as u64);
        if !o.applied.is_empty() {
            run_hook(self.opts.after_change.clone()).await;
        }
        Ok(
            serde_json::json!({"ok": true, "removed": o.applied.len(), "unchanged": o.unchanged.len()}),
        )
    }

    fn status_json(&self) -> serde_json::Value {
        let jails: Vec<_> = self
            .jails
            .iter()
            .map(|j| {
                let s = j.scanner.stats();
                serde_json::json!({
                    "name": j.cfg.name,
                    "filter": j.scanner.filter().name(),
                    "files": j.cfg.files,
                    "lines": j.lines,
                    "failures": j.failures,
                    "not_matched": s.not_matched,
                    "tracked": j.policy.tracked(),
                    "bans_total": j.bans,
                    "bans_active": self.desired.values().filter(|b| b.jail == j.cfg.name).count(),
                })
            })
            .collect();
        let manual = self.desired.values().filter(|b| b.jail == "manual").count();
        serde_json::json!({
            "ok": true,
            "daemon": {
                "pid": std::process::id(),
                "since": self.started,
                "layout": self.cfg.layout.to_string(),
                "dry_run": self.opts.dry_run,
                "bans_active": self.desired.len(),
                "bans_manual": manual,
                "self_heal": self.cfg.self_heal,
                "heals": self.heal.total,
                "heals_suppressed": self.heal.suppressed,
                "last_heal": self.heal.last_at.map(|at| serde_json::json!({
                    "at": at,
                    "by": self.heal.last_by,
                    "what": self.heal.last_what,
                    "restored": self.heal.last_restored,
                })),
            },
            "jails": jails,
        })
    }

    fn after_change(&self) {
        if let Some(h) = &self.opts.after_change {
            if let Err(e) = h() {
                error!("after a kernel change: {e}");
            }
        }
    }
}

async fn run_hook(hook: Option<AfterChange>) {
    if let Some(h) = hook {
        match tokio::task::spawn_blocking(move || h()).await {
            Ok(Err(e)) => error!("after a kernel change: {e}"),
            Err(e) => error!("after-change task failed: {e}"),
            Ok(Ok(())) => {}
        }
    }
}
