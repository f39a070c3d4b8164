//! The stateful scanner: envelope → filter → per-connection correlation →
//! [`Detection`]s, with counters of what was skipped and why.
//!
//! Correlation (sshd only) follows the lines of one sshd process (pid):
//! the lines that log one attempt (`Invalid user`, a PAM module's failure,
//! sshd's `PAM: Authentication failure`, `Failed password`) count once; a
//! success for the same user after failures in the same connection forgives
//! those failures (a typo), unless the address just failed as *other* users,
//! in which case the success itself counts as a failure. A success never
//! forgives failures of other connections.
//!
//! Memory is bounded: per-connection and per-address correlation state lives
//! in two-generation maps that drop the older generation when the newer one
//! fills up. Deliberately not here: reading files, counting towards bans.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;

use crate::addr::{parse_host, HostToken};
use crate::envelope::{Envelope, YearContext};
use crate::filter::{Failure, FailureKind, Filter, Mode};
use crate::mysqld;
use crate::regex_filter::RegexMatch;
use crate::sshd::{self, Evidence, SshdEvent};

/// Lines longer than this are skipped unread (counted as `too_long`): no
/// syslog transport carries them, and a filter never needs them.
pub const MAX_LINE: usize = 64 * 1024;

/// What a line produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// One failed attempt; counts towards a ban.
    Failure(Failure<'a>),
    /// A successful login forgave `count` failures that this scanner reported
    /// earlier for `host` from the same connection (a typo).
    Forgive {
        /// The address whose failures are forgiven.
        host: IpAddr,
        /// How many of its failures.
        count: u32,
    },
}

/// One result of [`Scanner::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection<'a> {
    /// The caller's line number (1-based by convention).
    pub line_no: u64,
    /// The line's own timestamp, if its envelope had one.
    pub time: Option<Timestamp>,
    /// What happened.
    pub event: Event<'a>,
}

/// Counters of everything the scanner saw, for summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanStats {
    /// Lines fed.
    pub lines: u64,
    /// Failures reported.
    pub failures: u64,
    /// Forgive events reported.
    pub forgiven: u64,
    /// Lines from another program than the filter's.
    pub other_program: u64,
    /// Lines of the program that report nothing of interest.
    pub not_matched: u64,
    /// Lines that name a host name instead of an address (never resolved).
    pub hostname: u64,
    /// Lines whose address field is neither an address nor a host name.
    pub bad_address: u64,
    /// Failure lines that carry no address at all.
    pub no_address: u64,
    /// Lines that could be read in more than one way (attacker text at both ends).
    pub ambiguous: u64,
    /// Lines matched by an ignore pattern.
    pub ignored: u64,
    /// Lines longer than [`MAX_LINE`].
    pub too_long: u64,
    /// Further lines of an attempt already counted.
    pub correlated: u64,
    /// Aggressive-mode lines seen in normal mode.
    pub aggressive_only: u64,
}

impl ScanStats {
    /// The skip reasons with their counts, for a summary line.
    pub fn skipped(&self) -> [(&'static str, u64); 10] {
        [
            ("other-program", self.other_program),
            ("not-matched", self.not_matched),
            ("hostname", self.hostname),
            ("bad-address", self.bad_address),
            ("no-address", self.no_address),
            ("ambiguous", self.ambiguous),
            ("ignored", self.ignored),
            ("too-long", self.too_long),
            ("correlated", self.correlated),
            ("aggressive-only", self.aggressive_only),
        ]
    }
}

/// Tuning of the scanner's correlation memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScannerConfig {
    /// How long failures for other user names make a later success from the
    /// same address count as a failure.
    pub guess_window: Duration,
    /// Upper bound on tracked connections and addresses (each map holds at
    /// most this many entries across its two generations).
    pub max_tracked: usize,
}

impl Default for ScannerConfig {
    fn default() -> Self {
        ScannerConfig {
            guess_window: Duration::from_secs(3600),
            max_tracked: 200_000,
        }
    }
}

impl ScannerConfig {
    /// Sets [`ScannerConfig::guess_window`].
    pub fn guess_window(mut self, d: Duration) -> Self {
        self.guess_window = d;
        self
    }

    /// Sets [`ScannerConfig::max_tracked`] (at least 2).
    pub fn max_tracked(mut self, n: usize) -> Self {
        self.max_tracked = n.max(2);
        self
    }
}

/// A map that forgets its older half when the newer half is full.
#[derive(Debug)]
struct GenMap<K, V> {
    cur: HashMap<K, V>,
    old: HashMap<K, V>,
    half: usize,
}

impl<K: Hash + Eq + Copy, V> GenMap<K, V> {
    fn new(cap: usize) -> Self {
        GenMap {
            cur: HashMap::new(),
            old: HashMap::new(),
            half: (cap / 2).max(1),
        }
    }

    fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        if !self.cur.contains_key(k) {
            let v = self.old.remove(k)?;
            self.insert(*k, v);
        }
        self.cur.get_mut(k)
    }

    fn insert(&mut self, k: K, v: V) {
        if self.cur.len() >= self.half && !self.cur.contains_key(&k) {
            self.old = std::mem::take(&mut self.cur);
        }
        self.cur.insert(k, v);
    }

    fn remove(&mut self, k: &K) -> Option<V> {
        self.cur.remove(k).or_else(|| self.old.remove(k))
    }

    fn entry_or_default(&mut self, k: K) -> &mut V
    where
        V: Default,
    {
        if !self.cur.contains_key(&k) {
            let v = self.old.remove(&k).unwrap_or_default();
            self.insert(k, v);
        }
        self.cur.entry(k).or_default()
    }
}

/// The correlation key: an sshd process, or "no pid" for envelopes without one.
type ConnKey = u64;
const NO_PID: ConnKey = u64::MAX;

#[derive(Debug, Default)]
struct ConnState {
    host: Option<IpAddr>,
    /// Evidence bits of the attempt in progress.
    evidence: u8,
    /// Whether the attempt in progress was counted through a PAM line that
    /// left a per-address credit behind.
    pam_credit: bool,
    /// Failures reported for this connection.
    emitted: u32,
    user: Option<u64>,
    mixed_users: bool,
    banner_error: bool,
    aggressive_done: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct GuessMemo {
    set: bool,
    at: Option<i64>,
    user: u64,
    multi: bool,
}

/// Feeds lines through one filter and reports failures.
///
/// ```
/// use autoblock_detect::{Event, Filter, Mode, Scanner, YearContext};
/// let ctx = YearContext::utc("2026-11-25T12:00:00Z".parse().unwrap());
/// let mut s = Scanner::new(Filter::Sshd(Mode::Normal), ctx);
/// let d = s
///     .feed(1, b"Nov 25 10:00:00 web sshd[42]: Failed password for root from 192.0.2.7 port 50000 ssh2")
///     .unwrap();
/// let Event::Failure(f) = d.event else { panic!() };
/// assert_eq!(f.host.to_string(), "192.0.2.7");
/// assert_eq!(f.kind.as_str(), "failed-password");
/// assert_eq!(s.stats().failures, 1);
/// ```
#[derive(Debug)]
pub struct Scanner {
    filter: Filter,
    ctx: YearContext,
    config: ScannerConfig,
    stats: ScanStats,
    conns: GenMap<ConnKey, ConnState>,
    pam_credits: GenMap<IpAddr, u32>,
    open_conn: GenMap<IpAddr, ConnKey>,
    guesses: GenMap<IpAddr, GuessMemo>,
}

impl Scanner {
    /// A scanner with default [`ScannerConfig`].
    pub fn new(filter: Filter, ctx: YearContext) -> Scanner {
        Self::with_config(filter, ctx, ScannerConfig::default())
    }

    /// A scanner with explicit tuning.
    pub fn with_config(filter: Filter, ctx: YearContext, config: ScannerConfig) -> Scanner {
        let cap = config.max_tracked;
        Scanner {
            filter,
            ctx,
            config,
            stats: ScanStats::default(),
            conns: GenMap::new(cap),
            pam_credits: GenMap::new(cap),
            open_conn: GenMap::new(cap),
            guesses: GenMap::new(cap),
        }
    }

    /// The filter in use.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The counters so far.
    pub fn stats(&self) -> &ScanStats {
        &self.stats
    }

    /// The time context (e.g. to move its reference time forward).
    pub fn year_context_mut(&mut self) -> &mut YearContext {
        &mut self.ctx
    }

    /// Parses one raw line (any bytes; a trailing newline is ignored) and
    /// returns what it reported, if anything.
    pub fn feed<'l>(&mut self, line_no: u64, line: &'l [u8]) -> Option<Detection<'l>> {
        if line.len() > MAX_LINE {
            self.stats.lines += 1;
            self.stats.too_long += 1;
            return None;
        }
        let env = Envelope::parse(line, &self.ctx);
        self.feed_envelope(line_no, &env)
    }

    /// Judges an already split line, e.g. a journal entry that passed
    /// [`crate::JournalTrust::judge`].
    pub fn feed_envelope<'l>(&mut self, line_no: u64, env: &Envelope<'l>) -> Option<Detection<'l>> {
        self.stats.lines += 1;
        if env.message.len() > MAX_LINE {
            self.stats.too_long += 1;
            return None;
        }
        if !self.filter.accepts_program(env.program) {
            self.stats.other_program += 1;
            return None;
        }
        let event = match &self.filter {
            Filter::Sshd(mode) => {
                let mode = *mode;
                let key = env.pid.map_or(NO_PID, u64::from);
                self.sshd(key, env.time, mode, sshd::classify(env.message))
            }
            Filter::MysqldAuth => match mysqld::access_denied(env.message) {
                Some((user, host)) => self.simple(host, Some(user), FailureKind::AccessDenied),
                None => {
                    self.stats.not_matched += 1;
                    None
                }
            },
            Filter::Regex(r) => match r.matches(env.message) {
                RegexMatch::None => {
                    self.stats.not_matched += 1;
                    None
                }
                RegexMatch::Ignored => {
                    self.stats.ignored += 1;
                    None
                }
                RegexMatch::Hit { host, user } => self.simple(host, user, FailureKind::Custom),
            },
        };
        match &event {
            Some(Event::Failure(_)) => self.stats.failures += 1,
            Some(Event::Forgive { .. }) => self.stats.forgiven += 1,
            None => {}
        }
        event.map(|event| Detection {
            line_no,
            time: env.time,
            event,
        })
    }

    fn host(&mut self, token: &[u8]) -> Option<IpAddr> {
        match parse_host(token) {
            HostToken::Addr(ip) => Some(ip),
            HostToken::Hostname => {
                self.stats.hostname += 1;
                None
            }
            HostToken::Invalid => {
                self.stats.bad_address += 1;
                None
            }
        }
    }

    fn simple<'l>(
        &mut self,
        host: &'l [u8],
        user: Option<&'l [u8]>,
        kind: FailureKind,
    ) -> Option<Event<'l>> {
        let host = self.host(host)?;
        Some(Event::Failure(Failure { host, kind, user }))
    }

    fn sshd<'l>(
        &mut self,
        key: ConnKey,
        time: Option<Timestamp>,
        mode: Mode,
        ev: SshdEvent<'l>,
    ) -> Option<Event<'l>> {
        match ev {
            SshdEvent::Irrelevant => {
                self.stats.not_matched += 1;
                None
            }
            SshdEvent::NoAddress => {
                self.stats.no_address += 1;
                None
            }
            SshdEvent::Ambiguous => {
                self.stats.ambiguous += 1;
                None
            }
            SshdEvent::BannerError => {
                self.conns.entry_or_default(key).banner_error = true;
                self.stats.not_matched += 1;
                None
            }
            SshdEvent::ClosedPlain { host } => {
                let flagged = self.conns.get_mut(&key).is_some_and(|c| c.banner_error);
                if flagged {
                    self.aggressive(key, mode, FailureKind::Scanner, host, None)
                } else {
                    self.stats.not_matched += 1;
                    None
                }
            }
            SshdEvent::Aggressive { kind, host, user } => {
                self.aggressive(key, mode, kind, host, user)
            }
            SshdEvent::Attempt {
                ev,
                kind,
                host,
                user,
            } => {
                let ip = self.host(host)?;
                self.attempt(key, time, ev, kind, ip, user)
            }
            SshdEvent::MaxAuth { host, user } => {
                let ip = self.host(host)?;
                let st = self.conn(key, ip);
                // The attempts were counted already, unless lines of several
                // connections share one pid-less state and they were another user's.
                let counted = st.emitted > 0 && (key != NO_PID || st.user == Some(hash_user(user)));
                if counted {
                    self.stats.correlated += 1;
                    return None;
                }
                st.emitted += 1;
                self.note_guess(ip, time, Some(user));
                Some(Event::Failure(Failure {
                    host: ip,
                    kind: FailureKind::MaxAuthTries,
                    user: Some(user),
                }))
            }
            SshdEvent::Accepted { host, user } => {
                let ip = self.host(host)?;
                self.accepted(key, time, ip, user)
            }
        }
    }

    /// The state of connection `key`, reset if it was about another address.
    fn conn(&mut self, key: ConnKey, ip: IpAddr) -> &mut ConnState {
        let st = self.conns.entry_or_default(key);
        if st.host.is_some_and(|h| h != ip) {
            *st = ConnState::default();
        }
        st.host = Some(ip);
        st
    }

    fn aggressive<'l>(
        &mut self,
        key: ConnKey,
        mode: Mode,
        kind: FailureKind,
        host: &'l [u8],
        user: Option<&'l [u8]>,
    ) -> Option<Event<'l>> {
        if mode != Mode::Aggressive {
            self.stats.aggressive_only += 1;
            return None;
        }
        let ip = self.host(host)?;
        let st = self.conn(key, ip);
        let done = if key == NO_PID {
            // Without a pid, lines of many connections share one state: only
            // the close of the connection that just failed is a repeat.
            st.emitted > 0 && user.is_some() && user.map(hash_user) == st.user
        } else {
            st.emitted > 0 || st.aggressive_done
        };
        if done {
            self.stats.correlated += 1;
            return None;
        }
        st.aggressive_done = true;
        Some(Event::Failure(Failure {
            host: ip,
            kind,
            user,
        }))
    }

    fn attempt<'l>(
        &mut self,
        key: ConnKey,
        time: Option<Timestamp>,
        ev: Evidence,
        kind: FailureKind,
        ip: IpAddr,
        user: Option<&'l [u8]>,
    ) -> Option<Event<'l>> {
        let bit = ev as u8;
        let uh = user.map(hash_user);
        // A PAM module may log from a helper process (keyboard-interactive):
        // attach its line to the connection of this address whose attempt
        // was opened by `Invalid user` / `not allowed` and has no PAM line yet.
        let mut target = key;
        if ev == Evidence::Pam {
            let own = self.conns.get_mut(&key).is_some_and(|c| c.host == Some(ip));
            if !own {
                if let Some(k2) = self.open_conn.get_mut(&ip).map(|k| *k) {
                    let open = self.conns.get_mut(&k2).is_some_and(|c| {
                        c.host == Some(ip)
                            && c.evidence & (Evidence::Open as u8) != 0
                            && c.evidence & bit == 0
                    });
                    if open {
                        target = k2;
                    }
                }
            }
        }
        let st = self.conn(target, ip);
        if let (Some(u), Some(prev)) = (uh, st.user) {
            if u != prev {
                // A different user name: never part of the same attempt.
                st.mixed_users = true;
                st.evidence = 0;
            }
        }
        if uh.is_some() {
            st.user = uh;
        }
        let continues = st.evidence != 0 && st.evidence & bit == 0 && ev != Evidence::Open;
        if continues {
            st.evidence |= bit;
            if st.pam_credit && ev != Evidence::Pam {
                st.pam_credit = false;
                self.take_pam_credit(ip);
            }
            self.stats.correlated += 1;
            return None;
        }
        // A new attempt.
        st.evidence = bit;
        st.pam_credit = false;
        if matches!(ev, Evidence::Failed | Evidence::PamErr) && self.take_pam_credit(ip) {
            // Its PAM line came from a helper process and was counted already.
            let st = self.conn(target, ip);
            st.evidence |= Evidence::Pam as u8;
            st.emitted += 1;
            self.stats.correlated += 1;
            return None;
        }
        let st = self.conn(target, ip);
        st.emitted += 1;
        if ev == Evidence::Pam {
            st.pam_credit = true;
            *self.pam_credits.entry_or_default(ip) += 1;
        }
        if ev == Evidence::Open {
            self.open_conn.insert(ip, target);
        }
        self.note_guess(ip, time, user);
        Some(Event::Failure(Failure {
            host: ip,
            kind,
            user,
        }))
    }

    fn take_pam_credit(&mut self, ip: IpAddr) -> bool {
        match self.pam_credits.get_mut(&ip) {
            Some(n) if *n > 0 => {
                *n -= 1;
                if *n == 0 {
                    self.pam_credits.remove(&ip);
                }
                true
            }
            _ => false,
        }
    }

    /// Remembers which user names an address failed as.
    fn note_guess(&mut self, ip: IpAddr, time: Option<Timestamp>, user: Option<&[u8]>) {
        let Some(user) = user else { return };
        let uh = hash_user(user);
        let at = time.map(|t| t.as_second());
        let window = i64::try_from(self.config.guess_window.as_secs()).unwrap_or(i64::MAX);
        let m = self.guesses.entry_or_default(ip);
        if let (Some(prev), Some(now)) = (m.at, at) {
            if now.saturating_sub(prev) > window {
                // The earlier guesses are too old to matter: start afresh.
                *m = GuessMemo::default();
            }
        }
        if !m.set {
            m.set = true;
            m.user = uh;
        } else if m.user != uh {
            m.multi = true;
            m.user = uh;
        }
        m.at = at.or(m.at);
    }

    fn accepted<'l>(
        &mut self,
        key: ConnKey,
        time: Option<Timestamp>,
        ip: IpAddr,
        user: &'l [u8],
    ) -> Option<Event<'l>> {
        let uh = hash_user(user);
        let window = i64::try_from(self.config.guess_window.as_secs()).unwrap_or(i64::MAX);
        let guessed_others = self.guesses.get_mut(&ip).is_some_and(|m| {
            let fresh = match (m.at, time) {
                (Some(at), Some(now)) => now.as_second().saturating_sub(at) <= window,
                _ => true,
            };
            fresh && (m.multi || m.user != uh)
        });
        let st = self.conns.remove(&key).filter(|c| c.host == Some(ip));
        if guessed_others {
            self.guesses.remove(&ip);
            return Some(Event::Failure(Failure {
                host: ip,
                kind: FailureKind::SuccessAfterGuessing,
                user: Some(user),
            }));
        }
        match st {
            Some(c) if c.emitted > 0 && !c.mixed_users && c.user == Some(uh) => {
                Some(Event::Forgive {
                    host: ip,
                    count: c.emitted,
                })
            }
            _ => {
                self.stats.not_matched += 1;
                None
            }
        }
    }
}

fn hash_user(user: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    user.hash(&mut h);
    h.finish()
}
