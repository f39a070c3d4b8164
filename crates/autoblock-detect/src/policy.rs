//! Ban policy: per-jail failure counting (`maxretry` failures within
//! `findtime` → ban for `bantime`), escalation for repeat offenders
//! (`bantime × factor^n`, capped or permanent), optional IPv6 aggregation,
//! and the allowlist.
//!
//! The policy is pure: it takes failures with their times and returns
//! decisions; it never applies a ban, reads a clock or touches a file. Its
//! offence history is exposed ([`PolicyState::offences`]) so that the caller
//! can persist it and restore it after a restart.
//!
//! Memory is bounded and evicted by time: failure windows are 12 bytes plus
//! `maxretry` × 4 bytes per tracked address or prefix, in flat tables; state
//! older than `findtime` is dropped on [`PolicyState::evict`] and, amortised,
//! while recording. A hard cap on tracked entries drops the oldest windows
//! first instead of growing without bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;
use jiff::Timestamp;

use crate::addr::{mask, normalise};
use crate::filter::Failure;

/// Why a policy could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A jail setting is out of range.
    #[error("jail setting {setting} = {value} is invalid: {why}")]
    Setting {
        /// The setting's name (`maxretry`, `factor`, ...).
        setting: &'static str,
        /// Its value as given.
        value: String,
        /// What is required.
        why: &'static str,
    },
    /// An allowlist entry is neither an address nor a network.
    #[error("allowlist entry `{entry}` is not an address or network")]
    BadAllow {
        /// The offending entry.
        entry: String,
    },
}

/// One jail's counting and ban settings. Build it with struct update syntax
/// from [`Jail::default`].
#[derive(Debug, Clone, PartialEq)]
pub struct Jail {
    /// Failures that trigger a ban.
    pub maxretry: u32,
    /// The window in which `maxretry` failures must fall.
    pub findtime: Duration,
    /// The first ban's duration.
    pub bantime: Duration,
    /// Each further offence multiplies the ban by this (1.0 = no escalation).
    pub factor: f64,
    /// The longest ban escalation may reach (`None` = no limit).
    pub max_bantime: Option<Duration>,
    /// When escalation would exceed `max_bantime`, ban permanently instead
    /// of capping.
    pub permanent_beyond_max: bool,
    /// Count and ban IPv6 sources per prefix of this length (128 = per
    /// address; 64 bans the /64 a typical host gets).
    pub ipv6_prefix: u8,
    /// How long after its ban ended an offence still counts for escalation.
    pub offence_memory: Duration,
    /// Upper bound on tracked failure windows (memory cap).
    pub max_tracked: usize,
}

impl Default for Jail {
    fn default() -> Self {
        Jail {
            maxretry: 5,
            findtime: Duration::from_secs(600),
            bantime: Duration::from_secs(600),
            factor: 2.0,
            max_bantime: Some(Duration::from_secs(7 * 24 * 3600)),
            permanent_beyond_max: false,
            ipv6_prefix: 128,
            offence_memory: Duration::from_secs(30 * 24 * 3600),
            max_tracked: 2_000_000,
        }
    }
}

impl Jail {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |setting, value: String, why| {
            Err(PolicyError::Setting {
                setting,
                value,
                why,
            })
        };
        if self.maxretry == 0 || self.maxretry > u32::from(u16::MAX) {
            return bad(
                "maxretry",
                self.maxretry.to_string(),
                "must be between 1 and 65535",
            );
        }
        if self.findtime.is_zero() {
            return bad(
                "findtime",
                format!("{:?}", self.findtime),
                "must be positive",
            );
        }
        if self.bantime.is_zero() {
            return bad("bantime", format!("{:?}", self.bantime), "must be positive");
        }
        if !self.factor.is_finite() || self.factor < 1.0 {
            return bad(
                "factor",
                self.factor.to_string(),
                "must be a finite number >= 1",
            );
        }
        if self.ipv6_prefix == 0 || self.ipv6_prefix > 128 {
            return bad(
                "ipv6_prefix",
                self.ipv6_prefix.to_string(),
                "must be between 1 and 128",
            );
        }
        if self.max_tracked == 0 {
            return bad("max_tracked", "0".to_owned(), "must be positive");
        }
        Ok(())
    }

    /// The ban duration of offence number `n` (1-based); `None` = permanent.
    pub fn ban_duration(&self, n: u32) -> Option<Duration> {
        let exp = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.bantime.as_secs_f64() * self.factor.powi(exp);
        // A hundred years stands for "longer than anything meaningful".
        const CEILING: f64 = 100.0 * 365.0 * 86400.0;
        let secs = if secs.is_finite() {
            secs.min(CEILING)
        } else {
            CEILING
        };
        let d = Duration::from_secs_f64(secs);
        match self.max_bantime {
            Some(max) if d > max => {
                if self.permanent_beyond_max {
                    None
                } else {
                    Some(max)
                }
            }
            _ => Some(d),
        }
    }
}

/// Addresses and networks that are never banned. Loopback is always in it;
/// add the host's own addresses with [`AllowList::add_addr`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl AllowList {
    /// An allowlist with loopback (127.0.0.0/8, ::1) and the unspecified
    /// addresses.
    pub fn new() -> Self {
        let mut a = AllowList::default();
        for net in ["127.0.0.0/8", "0.0.0.0/32", "::1/128", "::/128"] {
            if let Ok(n) = net.parse() {
                a.add(n);
            }
        }
        a
    }

    /// Parses entries (`192.0.2.1`, `10.0.0.0/8`, `2001:db8::/32`) on top of
    /// [`AllowList::new`].
    pub fn parse<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> Result<Self, PolicyError> {
        let mut a = AllowList::new();
        for e in entries {
            let e = e.as_ref().trim();
            let net: IpNetwork = e.parse().map_err(|_| PolicyError::BadAllow {
                entry: e.to_owned(),
            })?;
            a.add(net);
        }
        Ok(a)
    }

    /// Adds a network.
    pub fn add(&mut self, net: IpNetwork) {
        match net {
            IpNetwork::V4(n) => {
                let p = u32::from(n.prefix());
                let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                self.v4.push((u32::from(n.ip()) & m, m));
            }
            IpNetwork::V6(n) => match n.ip().to_ipv4_mapped() {
                Some(v4) if n.prefix() >= 96 => {
                    if let Ok(n4) = ipnetwork::Ipv4Network::new(v4, n.prefix() - 96) {
                        self.add(IpNetwork::V4(n4));
                    }
                }
                _ => {
                    let p = u32::from(n.prefix());
                    let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                    self.v6.push((u128::from(n.ip()) & m, m));
                }
            },
        }
    }

    /// Adds one address (e.g. one of the host's own).
    pub fn add_addr(&mut self, ip: IpAddr) {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        if let Ok(n) = IpNetwork::new(normalise(ip), prefix) {
            self.add(n);
        }
    }

    /// Whether `ip` is allowed (never banned).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match normalise(ip) {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                self.v4.iter().any(|&(net, m)| a & m == net)
            }
            IpAddr::V6(v6) => {
                let a = u128::from(v6);
                self.v6.iter().any(|&(net, m)| a & m == net)
            }
        }
    }
}

/// A decision to ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanDecision {
    /// What to ban: the address, or its IPv6 prefix.
    pub net: IpNetwork,
    /// For how long; `None` = permanently.
    pub duration: Option<Duration>,
    /// Which offence of this source this is (1 = first).
    pub offence_no: u32,
    /// When the ban was decided (the time of the last failure).
    pub at: Timestamp,
}

/// A source's offence history, for persistence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffenceRecord {
    /// The banned address or prefix.
    pub net: IpNetwork,
    /// Offences so far.
    pub count: u32,
    /// When the last ban started.
    pub last_ban: Timestamp,
    /// When the last ban ends; `None` = permanent.
    pub until: Option<Timestamp>,
}

/// Counters of the policy's decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyStats {
    /// Failures counted.
    pub recorded: u64,
    /// Failures of allowlisted sources (ignored).
    pub allowlisted: u64,
    /// Failures of sources the policy already banned (ignored).
    pub while_banned: u64,
    /// Bans decided.
    pub bans: u64,
    /// Failure windows dropped by the memory cap before their time.
    pub pressure_evictions: u64,
}

/// Seconds since 2000-01-01 in a u32 (good until 2136): windows store these.
const EPOCH: i64 = 946_684_800;
const PERMANENT: u32 = u32::MAX;

fn secs(t: Timestamp) -> u32 {
    u32::try_from((t.as_second() - EPOCH).clamp(0, i64::from(u32::MAX - 1))).unwrap_or(0)
}

fn stamp(s: u32) -> Timestamp {
    Timestamp::from_second(EPOCH + i64::from(s)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A ring of the most recent failure times of one source, stored in the
/// shared arena at `slot * maxretry`.
#[derive(Debug, Clone, Copy)]
struct Window {
    slot: u32,
    head: u16,
    len: u16,
    newest: u32,
}

#[derive(Debug, Clone, Copy)]
struct Offence {
    count: u32,
    last_ban: u32,
    until: u32,
}

/// Slots of `maxretry` u32 each, in fixed-size chunks so that growth never
/// copies (or doubles) what is already there.
#[derive(Debug)]
struct Arena {
    width: usize,
    chunks: Vec<Box<[u32]>>,
    next: u32,
    free: Vec<u32>,
}

const CHUNK_SLOTS: usize = 4096;

impl Arena {
    fn alloc(&mut self) -> u32 {
        if let Some(s) = self.free.pop() {
            return s;
        }
        let s = self.next;
        if s as usize / CHUNK_SLOTS >= self.chunks.len() {
            self.chunks
                .push(vec![0u32; CHUNK_SLOTS * self.width].into_boxed_slice());
        }
        self.next += 1;
        s
    }

    fn release(&mut self, s: u32) {
        self.free.push(s);
    }

    fn get(&mut self, s: u32, i: usize) -> &mut u32 {
        let s = s as usize;
        let chunk = &mut self.chunks[s / CHUNK_SLOTS];
        &mut chunk[(s % CHUNK_SLOTS) * self.width + i]
    }

    fn bytes(&self) -> usize {
        self.chunks.len() * CHUNK_SLOTS * self.width * 4 + self.free.capacity() * 4
    }
}

/// The mutable state of one jail: failure windows and offence history.
///
/// ```
/// use std::time::Duration;
/// use autoblock_detect::{AllowList, Jail, PolicyState};
/// let jail = Jail { maxretry: 2, ..Jail::default() };
/// let mut p = PolicyState::new(jail, AllowList::new()).unwrap();
/// let t0: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
/// let ip = "192.0.2.7".parse().unwrap();
/// assert!(p.record_host(ip, t0).is_none());
/// let ban = p.record_host(ip, t0 + Duration::from_secs(5)).unwrap();
/// assert_eq!(ban.net.to_string(), "192.0.2.7/32");
/// assert_eq!(ban.duration, Some(Duration::from_secs(600)));
/// assert_eq!(ban.offence_no, 1);
/// ```
#[derive(Debug)]
pub struct PolicyState {
    jail: Jail,
    allow: AllowList,
    v4: HashMap<u32, Window>,
    v6: HashMap<u128, Window>,
    arena: Arena,
    offences: HashMap<IpAddr, Offence>,
    stats: PolicyStats,
    evict_at_len: usize,
}

impl PolicyState {
    /// A fresh state for `jail` (validated) with `allow`.
    pub fn new(jail: Jail, allow: AllowList) -> Result<PolicyState, PolicyError> {
        jail.validate()?;
        let width = jail.maxretry as usize;
        Ok(PolicyState {
            jail,
            allow,
            v4: HashMap::new(),
            v6: HashMap::new(),
            arena: Arena {
                width,
                chunks: Vec::new(),
                next: 0,
                free: Vec::new(),
            },
            offences: HashMap::new(),
            stats: PolicyStats::default(),
            evict_at_len: 1024,
        })
    }

    /// The jail settings.
    pub fn jail(&self) -> &Jail {
        &self.jail
    }

    /// The allowlist.
    pub fn allow_list(&self) -> &AllowList {
        &self.allow
    }

    /// Decision counters.
    pub fn stats(&self) -> &PolicyStats {
        &self.stats
    }

    /// Failure windows currently tracked.
    pub fn tracked(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// An estimate of the heap memory held, in bytes.
    pub fn memory_bytes(&self) -> usize {
        // hashbrown: one control byte per bucket plus the entry itself.
        let v4 = self.v4.capacity() * (std::mem::size_of::<(u32, Window)>() + 1);
        let v6 = self.v6.capacity() * (std::mem::size_of::<(u128, Window)>() + 1);
        let off = self.offences.capacity() * (std::mem::size_of::<(IpAddr, Offence)>() + 1);
        v4 + v6 + off + self.arena.bytes()
    }

    /// The source a failure of `ip` is counted against.
    pub fn source_of(&self, ip: IpAddr) -> IpNetwork {
        let ip = normalise(ip);
        let prefix = if ip.is_ipv4() {
            32
        } else {
            self.jail.ipv6_prefix
        };
        let net = mask(ip, prefix);
        IpNetwork::new(net, prefix).unwrap_or_else(|_| IpNetwork::from(net))
    }

    /// Records a failure at `at`; returns a ban when this one completes
    /// `maxretry` failures within `findtime`.
    pub fn record(&mut self, failure: &Failure<'_>, at: Timestamp) -> Option<BanDecision> {
        self.record_host(failure.host, at)
    }

    /// [`PolicyState::record`] by address.
    pub fn record_host(&mut self, host: IpAddr, at: Timestamp) -> Option<BanDecision> {
        let ip = normalise(host);
        if self.allow.contains(ip) {
            self.stats.allowlisted += 1;
            return None;
        }
        let net = self.source_of(ip);
        let now = secs(at);
        if let Some(o) = self.offences.get(&net.network()) {
            if o.until == PERMANENT || now < o.until {
                self.stats.while_banned += 1;
                return None;
            }
        }
        self.stats.recorded += 1;
        if self.tracked() >= self.evict_at_len {
            self.evict(at);
            if self.tracked() >= self.jail.max_tracked {
                self.pressure(now);
            }
            self.evict_at_len = (self.tracked() * 2).clamp(1024, self.jail.max_tracked);
        }
        let find = u32::try_from(self.jail.findtime.as_secs()).unwrap_or(u32::MAX);
        let width = self.jail.maxretry as usize;
        let win = match net.network() {
            IpAddr::V4(a) => self.v4.get(&u32::from(a)).copied(),
            IpAddr::V6(a) => self.v6.get(&u128::from(a)).copied(),
        };
        let mut w = match win {
            Some(w) => w,
            None => Window {
                slot: self.arena.alloc(),
                head: 0,
                len: 0,
                newest: now,
            },
        };
        // Drop failures that fell out of the window (oldest first).
        while w.len > 0 {
            let oldest = *self.arena.get(w.slot, usize::from(w.head));
            if now.saturating_sub(oldest) < find {
                break;
            }
            w.head = ((usize::from(w.head) + 1) % width) as u16;
            w.len -= 1;
        }
        let tail = (usize::from(w.head) + usize::from(w.len)) % width;
        *self.arena.get(w.slot, tail) = now;
        w.len += 1;
        w.newest = w.newest.max(now);
        if usize::from(w.len) >= width {
            self.remove_window(net.network());
            self.arena.release(w.slot);
            return Some(self.ban(net, now, at));
        }
        match net.network() {
            IpAddr::V4(a) => self.v4.insert(u32::from(a), w),
            IpAddr::V6(a) => self.v6.insert(u128::from(a), w),
        };
        None
    }

    fn remove_window(&mut self, net: IpAddr) {
        match net {
            IpAddr::V4(a) => self.v4.remove(&u32::from(a)),
            IpAddr::V6(a) => self.v6.remove(&u128::from(a)),
        };
    }

    fn ban(&mut self, net: IpNetwork, now: u32, at: Timestamp) -> BanDecision {
        let memory = u32::try_from(self.jail.offence_memory.as_secs()).unwrap_or(u32::MAX);
        let prev = self
            .offences
            .get(&net.network())
            .filter(|o| o.until == PERMANENT || now.saturating_sub(o.until) <= memory)
            .map_or(0, |o| o.count);
        let n = prev.saturating_add(1);
        let duration = self.jail.ban_duration(n);
        let until = match duration {
            None => PERMANENT,
            Some(d) => {
                let s = u32::try_from(d.as_secs()).unwrap_or(PERMANENT - 1);
                now.saturating_add(s).min(PERMANENT - 1)
            }
        };
        self.offences.insert(
            net.network(),
            Offence {
                count: n,
                last_ban: now,
                until,
            },
        );
        self.stats.bans += 1;
        BanDecision {
            net,
            duration,
            offence_no: n,
            at,
        }
    }

    /// Takes back `count` failures of `host` (a [`crate::Event::Forgive`]):
    /// the most recent ones of its window. A ban already decided stays.
    pub fn forgive(&mut self, host: IpAddr, count: u32) {
        let net = self.source_of(host).network();
        let width = self.jail.maxretry as usize;
        let found = match net {
            IpAddr::V4(a) => self.v4.get(&u32::from(a)).copied(),
            IpAddr::V6(a) => self.v6.get(&u128::from(a)).copied(),
        };
        let Some(mut w) = found else { return };
        let take = u16::try_from(count.min(u32::from(w.len))).unwrap_or(w.len);
        w.len -= take;
        if w.len == 0 {
            self.remove_window(net);
            self.arena.release(w.slot);
            return;
        }
        let newest = (usize::from(w.head) + usize::from(w.len) + width - 1) % width;
        w.newest = *self.arena.get(w.slot, newest);
        match net {
            IpAddr::V4(a) => self.v4.insert(u32::from(a), w),
            IpAddr::V6(a) => self.v6.insert(u128::from(a), w),
        };
    }

    /// Drops failure windows whose newest failure is older than `findtime`
    /// before `now`, and offences forgotten after `offence_memory`.
    pub fn evict(&mut self, now: Timestamp) {
        let now = secs(now);
        let find = u32::try_from(self.jail.findtime.as_secs()).unwrap_or(u32::MAX);
        self.evict_older(now.saturating_sub(find));
        let memory = u32::try_from(self.jail.offence_memory.as_secs()).unwrap_or(u32::MAX);
        self.offences
            .retain(|_, o| o.until == PERMANENT || now.saturating_sub(o.until) <= memory);
    }

    fn evict_older(&mut self, cutoff: u32) {
        let arena = &mut self.arena;
        self.v4.retain(|_, w| {
            let keep = w.newest >= cutoff;
            if !keep {
                arena.release(w.slot);
            }
            keep
        });
        self.v6.retain(|_, w| {
            let keep = w.newest >= cutoff;
            if !keep {
                arena.release(w.slot);
            }
            keep
        });
    }

    /// Over the cap even after time eviction: drop the oldest windows by
    /// halving the age limit until the table is back below 90 % of the cap.
    fn pressure(&mut self, now: u32) {
        let mut age = u32::try_from(self.jail.findtime.as_secs()).unwrap_or(u32::MAX);
        let target = self.jail.max_tracked / 10 * 9;
        while self.tracked() > target {
            let before = self.tracked();
            age /= 2;
            self.evict_older(now.saturating_sub(age));
            self.stats.pressure_evictions += (before - self.tracked()) as u64;
            if age == 0 {
                // Everything left is from this very second: start over.
                let all = self.tracked() as u64;
                let slots: Vec<u32> = self
                    .v4
                    .values()
                    .chain(self.v6.values())
                    .map(|w| w.slot)
                    .collect();
                for s in slots {
                    self.arena.release(s);
                }
                self.v4.clear();
                self.v6.clear();
                self.stats.pressure_evictions += all;
                break;
            }
        }
    }

    /// The offence history (for persistence).
    pub fn offences(&self) -> Vec<OffenceRecord> {
        let mut v: Vec<OffenceRecord> = self
            .offences
            .iter()
            .map(|(net, o)| OffenceRecord {
                net: self.source_of(*net),
                count: o.count,
                last_ban: stamp(o.last_ban),
                until: (o.until != PERMANENT).then(|| stamp(o.until)),
            })
            .collect();
        v.sort_by_key(|r| (r.net.network(), r.net.prefix()));
        v
    }

    /// Restores an offence history saved by [`PolicyState::offences`]
    /// (entries are re-keyed to this jail's IPv6 prefix; for the same source
    /// the record with more offences wins).
    pub fn restore_offences(&mut self, records: impl IntoIterator<Item = OffenceRecord>) {
        for r in records {
            let net = self.source_of(r.net.network()).network();
            let o = Offence {
                count: r.count,
                last_ban: secs(r.last_ban),
                until: r.until.map_or(PERMANENT, secs),
            };
            let e = self.offences.entry(net).or_insert(o);
            if o.count > e.count {
                *e = o;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_795_600_000 + s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn state(j: Jail) -> PolicyState {
        PolicyState::new(j, AllowList::new()).unwrap()
    }

    #[test]
    fn maxretry_within_findtime() {
        let mut p = state(Jail {
            maxretry: 3,
            findtime: Duration::from_secs(60),
            ..Jail::default()
        });
        let a = ip("192.0.2.1");
        assert!(p.record_host(a, t(0)).is_none());
        assert!(p.record_host(a, t(30)).is_none());
        // The first failure fell out of the window.
        assert!(p.record_host(a, t(61)).is_none());
        let ban = p.record_host(a, t(62)).expect("three within 60 s");
        assert_eq!(ban.offence_no, 1);
        // While banned, further failures are not counted again.
        assert!(p.record_host(a, t(63)).is_none());
        assert_eq!(p.stats().while_banned, 1);
        assert_eq!(p.tracked(), 0);
    }

    #[test]
    fn escalation_capped_or_permanent() {
        let j = Jail {
            bantime: Duration::from_secs(100),
            factor: 3.0,
            max_bantime: Some(Duration::from_secs(1000)),
            ..Jail::default()
        };
        assert_eq!(j.ban_duration(1), Some(Duration::from_secs(100)));
        assert_eq!(j.ban_duration(2), Some(Duration::from_secs(300)));
        assert_eq!(j.ban_duration(3), Some(Duration::from_secs(900)));
        assert_eq!(j.ban_duration(4), Some(Duration::from_secs(1000)));
        assert_eq!(j.ban_duration(u32::MAX), Some(Duration::from_secs(1000)));
        let p = Jail {
            permanent_beyond_max: true,
            ..j
        };
        assert_eq!(p.ban_duration(3), Some(Duration::from_secs(900)));
        assert_eq!(p.ban_duration(4), None);
    }

    #[test]
    fn repeat_offender_escalates_and_history_survives_restart() {
        let j = Jail {
            maxretry: 1,
            bantime: Duration::from_secs(100),
            factor: 2.0,
            ..Jail::default()
        };
        let mut p = state(j.clone());
        let a = ip("198.51.100.4");
        assert_eq!(
            p.record_host(a, t(0)).unwrap().duration,
            Some(Duration::from_secs(100))
        );
        assert!(p.record_host(a, t(50)).is_none(), "still banned");
        let second = p.record_host(a, t(101)).unwrap();
        assert_eq!(
            (second.offence_no, second.duration),
            (2, Some(Duration::from_secs(200)))
        );
        let saved = p.offences();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].count, 2);
        let mut q = state(j);
        q.restore_offences(saved);
        assert!(
            q.record_host(a, t(150)).is_none(),
            "ban still running after restart"
        );
        let third = q.record_host(a, t(302)).unwrap();
        assert_eq!(
            (third.offence_no, third.duration),
            (3, Some(Duration::from_secs(400)))
        );
    }

    #[test]
    fn offences_are_forgotten_after_memory() {
        let mut p = state(Jail {
            maxretry: 1,
            bantime: Duration::from_secs(10),
            offence_memory: Duration::from_secs(100),
            ..Jail::default()
        });
        let a = ip("198.51.100.5");
        p.record_host(a, t(0)).unwrap();
        assert_eq!(p.record_host(a, t(200)).unwrap().offence_no, 1);
        p.evict(t(1000));
        assert!(p.offences().is_empty());
    }

    #[test]
    fn ipv6_aggregation() {
        let mut p = state(Jail {
            maxretry: 2,
            ipv6_prefix: 64,
            ..Jail::default()
        });
        assert!(p.record_host(ip("2001:db8:1:2::1"), t(0)).is_none());
        let ban = p.record_host(ip("2001:db8:1:2:ffff::9"), t(1)).unwrap();
        assert_eq!(ban.net.to_string(), "2001:db8:1:2::/64");
        // IPv4 is per address, and mapped addresses are IPv4.
        assert!(p.record_host(ip("::ffff:192.0.2.1"), t(2)).is_none());
        assert_eq!(
            p.record_host(ip("192.0.2.1"), t(3))
                .unwrap()
                .net
                .to_string(),
            "192.0.2.1/32"
        );
    }

    #[test]
    fn allowlist() {
        let mut allow =
            AllowList::parse(["10.0.0.0/8", "2001:db8::/32", "::ffff:192.0.2.0/120"]).unwrap();
        allow.add_addr(ip("198.51.100.1"));
        for a in [
            "10.1.2.3",
            "127.0.0.1",
            "::1",
            "2001:db8::5",
            "198.51.100.1",
            "192.0.2.77",
            "::ffff:10.0.0.1",
        ] {
            assert!(allow.contains(ip(a)), "{a}");
        }
        for a in ["11.0.0.1", "198.51.100.2", "2001:db9::1", "::2"] {
            assert!(!allow.contains(ip(a)), "{a}");
        }
        assert_eq!(
            AllowList::parse(["10.0.0.0/33"]),
            Err(PolicyError::BadAllow {
                entry: "10.0.0.0/33".into()
            })
        );
        let mut p = PolicyState::new(
            Jail {
                maxretry: 1,
                ..Jail::default()
            },
            allow,
        )
        .unwrap();
        assert!(p.record_host(ip("127.0.0.1"), t(0)).is_none());
        assert!(p.record_host(ip("10.9.9.9"), t(0)).is_none());
        assert_eq!(p.stats().allowlisted, 2);
    }

    #[test]
    fn forgive_takes_back_recent_failures() {
        let mut p = state(Jail {
            maxretry: 3,
            ..Jail::default()
        });
        let a = ip("192.0.2.50");
        p.record_host(a, t(0));
        p.record_host(a, t(1));
        p.forgive(a, 2);
        assert_eq!(p.tracked(), 0);
        p.record_host(a, t(2));
        p.record_host(a, t(3));
        p.forgive(a, 1);
        assert!(
            p.record_host(a, t(4)).is_none(),
            "two failures left, not three"
        );
        assert!(p.record_host(a, t(5)).is_some());
        p.forgive(ip("192.0.2.99"), 5);
    }

    #[test]
    fn eviction_by_time_and_by_cap() {
        let mut p = state(Jail {
            maxretry: 3,
            findtime: Duration::from_secs(100),
            max_tracked: 5000,
            ..Jail::default()
        });
        for i in 0..3000u32 {
            p.record_host(IpAddr::V4((0x0A00_0000 + i + (1 << 24)).into()), t(0));
        }
        p.evict(t(50));
        assert_eq!(p.tracked(), 3000);
        p.evict(t(101));
        assert_eq!(p.tracked(), 0);
        for i in 0..20_000u32 {
            p.record_host(
                IpAddr::V4((0x0B00_0000 + i).into()),
                t(200 + i64::from(i / 100)),
            );
        }
        assert!(p.tracked() <= 5000, "{}", p.tracked());
        assert!(p.stats().pressure_evictions > 0);
    }

    #[test]
    fn invalid_settings_name_the_setting() {
        let e = PolicyState::new(
            Jail {
                factor: 0.5,
                ..Jail::default()
            },
            AllowList::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("factor = 0.5"), "{e}");
        assert!(Jail {
            maxretry: 0,
            ..Jail::default()
        }
        .validate()
        .is_err());
    }
}
