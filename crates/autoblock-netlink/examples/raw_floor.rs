//! The kernel floor for bulk set loads, used by `cargo xtask bench set`.
//!
//! `raw_floor load FILE TIMEOUT_MS`: reads `ADDR[/LEN]` lines (blank lines and `#` comments
//! skipped, anything after the first word ignored) and, in ONE transaction, creates table
//! `inet autoblock` with one timed hash set per family and prefix length — named and sized
//! like the set layout's (`addr4`, `net4_24`, …; `flags timeout`, size `max(2 × n, 65536)`,
//! GC interval 30 s above 262,144 slots, else 10 s) — and adds every element with the
//! timeout. Prints the time spent reading, encoding and committing to stderr.
//!
//! `raw_floor count`: prints the number of elements the kernel counts in table
//! `inet autoblock` (`NFTA_SET_COUNT` on kernels ≥ 6.16, an element dump before).
//!
//! It deliberately does no validation beyond what parsing needs (no masking, no allowlist,
//! no duplicate or overlap checks, no reading of the existing ruleset) and creates no chain
//! or rule: it measures what the kernel costs, not what a careful tool costs.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use autoblock_netlink::consts::NFT_SET_TIMEOUT;
use autoblock_netlink::objects::{TYPE_IPV4_ADDR, TYPE_IPV6_ADDR};
use autoblock_netlink::{Batch, CommitOptions, Conn, ElemOp, ElemRef, Family, Set, Table};

const TABLE: &str = "autoblock";

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["load", file, timeout] => load(file, timeout.parse()?),
        ["count"] => count(),
        _ => Err("usage: raw_floor load FILE TIMEOUT_MS | raw_floor count".into()),
    }
}

/// The keys of one set: family (4 or 6) and prefix length → network-order key bytes.
type Keys = BTreeMap<(u8, u8), Vec<[u8; 16]>>;

fn parse(text: &str) -> Res<Keys> {
    let mut keys = Keys::new();
    for (n, line) in text.lines().enumerate() {
        let Some(word) = line.split_whitespace().next() else {
            continue;
        };
        if word.starts_with('#') {
            continue;
        }
        let (addr, len) = match word.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (word, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|e| format!("line {}: {word:?}: {e}", n + 1))?;
        let mut key = [0u8; 16];
        let fam = match addr {
            IpAddr::V4(a) => {
                key[..4].copy_from_slice(&a.octets());
                4
            }
            IpAddr::V6(a) => {
                key.copy_from_slice(&a.octets());
                6
            }
        };
        let full = if fam == 4 { 32 } else { 128 };
        let len = match len {
            Some(l) => l
                .parse::<u8>()
                .map_err(|e| format!("line {}: {word:?}: {e}", n + 1))?,
            None => full,
        };
        keys.entry((fam, len)).or_default().push(key);
    }
    Ok(keys)
}

fn load(file: &str, timeout_ms: u64) -> Res<()> {
    let started = Instant::now();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let keys = parse(&text)?;
    drop(text);
    let parsed = started.elapsed();

    let total: usize = keys.values().map(Vec::len).sum();
    let mut batch = Batch::with_capacity(total * 40 + 4096);
    batch.add_table(&Table::new(Family::Inet, TABLE));
    let names: Vec<String> = keys
        .keys()
        .map(|&(fam, len)| match (fam, len) {
            (4, 32) => "addr4".to_owned(),
            (6, 128) => "addr6".to_owned(),
            _ => format!("net{fam}_{len}"),
        })
        .collect();
    for (((fam, _), list), name) in keys.iter().zip(&names) {
        let (ty, key_len) = if *fam == 4 {
            (TYPE_IPV4_ADDR, 4)
        } else {
            (TYPE_IPV6_ADDR, 16)
        };
        let mut set = Set::new(Family::Inet, TABLE, name.as_str(), ty, key_len);
        let size = u32::try_from(list.len() * 2)
            .unwrap_or(u32::MAX)
            .max(65_536);
        set.flags = NFT_SET_TIMEOUT;
        set.size = Some(size);
        set.gc_interval = Some(if size > 262_144 { 30_000 } else { 10_000 });
        batch.add_set(&set);
    }
    for (((fam, _), list), name) in keys.iter().zip(&names) {
        let key_len = if *fam == 4 { 4 } else { 16 };
        let mut w = batch.elements(ElemOp::Add, Family::Inet, TABLE, name);
        for key in list {
            w.push(&ElemRef {
                key: &key[..key_len],
                timeout: Some(timeout_ms),
                ..ElemRef::default()
            });
        }
        w.finish();
    }
    drop(keys);
    let encoded = started.elapsed();

    let mut conn = Conn::open()?;
    conn.commit(&mut batch, CommitOptions::default())?;
    let done = started.elapsed();
    eprintln!(
        "raw_floor: {total} elements in {} sets, {} bytes in {} messages; read+parse {:.3} s, encode {:.3} s, commit {:.3} s",
        names.len(),
        batch.len(),
        batch.message_count(),
        parsed.as_secs_f64(),
        (encoded - parsed).as_secs_f64(),
        (done - encoded).as_secs_f64()
    );
    Ok(())
}

fn count() -> Res<()> {
    let mut conn = Conn::open()?;
    let sets = conn.list_sets(Family::Inet, Some(TABLE))?;
    let mut total = 0u64;
    for s in &sets.items {
        total += match s.count {
            Some(n) => u64::from(n),
            None => {
                // Kernels before 6.16 report no count: dump the set (slow
                // for large sets, but exact).
                let n = std::cell::Cell::new(0u64);
                conn.for_each_element(
                    Family::Inet,
                    TABLE,
                    &s.name,
                    || n.set(0),
                    |_| n.set(n.get() + 1),
                )?;
                n.get()
            }
        };
    }
    println!("{total}");
    Ok(())
}
