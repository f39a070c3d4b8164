//! The daemon's own bans as the CrowdSec side knows them: the pusher records each ban it
//! sends to the Local API, and the bouncer asks, for every decision of the stream, whether it
//! is one of those coming back. Such a decision is already enforced (with the daemon's own
//! comment and expiry), so the bouncer neither applies it again nor counts it as a new ban;
//! and a `deleted` decision for a network the daemon itself still bans does not lift that
//! ban (the store holds it; `autoblock unblock` lifts it).
//!
//! It owns only this map; it knows nothing of HTTP, the store or the kernel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use autoblock::Net;

/// A stream decision for an own ban may end this much later than the ban (it was pushed a
/// little after the ban began, and the Local API rounds nothing down).
const SLACK: Duration = Duration::from_secs(120);

/// Own bans: network → end (`None`: permanent). Cheap to clone; all clones share the map.
#[derive(Debug, Clone, Default)]
pub struct OwnBans(Arc<Mutex<HashMap<Net, Option<SystemTime>>>>);

impl OwnBans {
    /// Records that the daemon itself bans `net` until `until`.
    pub fn insert(&self, net: Net, until: Option<SystemTime>) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget ended bans now and then, so the map stays as large as the active bans.
        if m.len() >= 1024 && m.len().is_power_of_two() {
            let now = SystemTime::now();
            m.retain(|_, u| u.is_none_or(|u| u > now));
        }
        m.insert(net, until);
    }

    /// Whether a stream decision banning `net` until `expires` is one of the daemon's own
    /// bans coming back: an own ban of exactly that network is active at `now` and lasts at
    /// least as long (give or take the push's delay). A longer decision is someone else's
    /// and is applied.
    pub fn covers(&self, net: &Net, expires: Option<SystemTime>, now: SystemTime) -> bool {
        let m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match m.get(net) {
            None => false,
            Some(None) => true,
            Some(Some(until)) => *until > now && expires.is_some_and(|e| e <= *until + SLACK),
        }
    }

    /// Whether the daemon itself still bans exactly `net` at `now`.
    pub fn active(&self, net: &Net, now: SystemTime) -> bool {
        let m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        m.get(net).is_some_and(|u| u.is_none_or(|u| u > now))
    }

    /// Forgets `net` (the daemon lifted its ban).
    pub fn remove(&self, net: &Net) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(net);
    }

    /// How many bans are recorded (ended ones included until they are pruned).
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether none is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Net {
        Net::parse(s, false).unwrap()
    }

    #[test]
    fn own_bans_coming_back_are_recognised_and_longer_ones_are_not() {
        let own = OwnBans::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let until = now + Duration::from_secs(3600);
        own.insert(net("192.0.2.1"), Some(until));
        own.insert(net("2001:db8::/64"), None);
        // The decision pushed for it: ends a few seconds after the ban.
        assert!(own.covers(&net("192.0.2.1"), Some(until + Duration::from_secs(3)), now));
        assert!(own.covers(
            &net("192.0.2.1"),
            Some(until - Duration::from_secs(60)),
            now
        ));
        // Someone else's longer decision for the same address is applied.
        assert!(!own.covers(
            &net("192.0.2.1"),
            Some(until + Duration::from_secs(7200)),
            now
        ));
        // Another address, or the same one once the own ban ended.
        assert!(!own.covers(&net("192.0.2.2"), Some(until), now));
        assert!(!own.covers(
            &net("192.0.2.1"),
            Some(until),
            until + Duration::from_secs(1)
        ));
        // A permanent own ban covers every decision for that network.
        assert!(own.covers(
            &net("2001:db8::/64"),
            Some(until + Duration::from_secs(1 << 30)),
            now
        ));
        assert!(own.active(&net("192.0.2.1"), now));
        assert!(!own.active(&net("192.0.2.1"), until));
        own.remove(&net("192.0.2.1"));
        assert!(!own.active(&net("192.0.2.1"), now));
        assert_eq!(own.len(), 1);
    }

    #[test]
    fn ended_bans_are_pruned_as_the_map_grows() {
        let own = OwnBans::default();
        let past = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        for i in 0..1024u32 {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            own.insert(net(&a.to_string()), Some(past));
        }
        assert_eq!(own.len(), 1024);
        own.insert(net("192.0.2.1"), None);
        assert_eq!(own.len(), 1, "the ended bans were pruned");
    }
}
