//! Bounded memory: failure state for 1,000,000 distinct attacking addresses
//! within findtime fits in 150 MB. The worst case is IPv6 (16-byte keys).
//! This file holds a single test so that the process's peak RSS is its own.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use autoblock_detect::{AllowList, Jail, PolicyState, Timestamp};

const LIMIT: usize = 150 * 1024 * 1024;

fn peak_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn one_million_ipv6_sources_fit_in_150_mb() {
    let before = peak_rss();
    let jail = Jail {
        maxretry: 5,
        findtime: Duration::from_secs(3600),
        ..Jail::default()
    };
    let mut p = PolicyState::new(jail, AllowList::new()).unwrap();
    let t0: Timestamp = "2026-11-25T00:00:00Z".parse().unwrap();
    let base = u128::from("2001:db8::".parse::<Ipv6Addr>().unwrap());
    for i in 0..1_000_000u128 {
        // Spread over distinct /64s too, and over 20 minutes.
        let ip = IpAddr::V6(Ipv6Addr::from(base + (i << 64) + i));
        let at = t0 + Duration::from_micros(u64::try_from(i).unwrap() * 1200);
        assert!(p.record_host(ip, at).is_none());
    }
    assert_eq!(p.tracked(), 1_000_000);
    let est = p.memory_bytes();
    assert!(est <= LIMIT, "estimated {} MB", est >> 20);
    if let (Some(b), Some(a)) = (before, peak_rss()) {
        let grown = a.saturating_sub(b);
        eprintln!(
            "1M IPv6 sources: estimate {} MB, peak RSS growth {} MB",
            est >> 20,
            grown >> 20
        );
        assert!(grown <= LIMIT, "peak RSS grew by {} MB", grown >> 20);
    }
    // Time eviction frees it all once findtime has passed.
    p.evict(t0 + Duration::from_secs(1200 + 3601));
    assert_eq!(p.tracked(), 0);
}
