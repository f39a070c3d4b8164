//! End-to-end tests of the set layout's streamed bulk path ([`Controller::block_stream`]),
//! each in a fresh network namespace: a 200,000-entry load arrives exactly, bad input leaves
//! the kernel unchanged, skipped entries are counted, reloading replaces timeouts and
//! comments, and a load split into several transactions arrives whole.
//!
//! The CLI side (`block -f`, `list --count`, the user-namespace split) is tested at the end
//! of this file through the `autoblock` binary. Nothing here touches this machine's own
//! namespace.

use std::time::{Duration, SystemTime};

use autoblock::controller::{BadEntry, BulkError, BulkOptions, BulkReport};
use autoblock::{Config, Controller, Entry, Layout, Net};
use autoblock_tests::{nft, Netns};

fn cfg() -> Config {
    Config::default().layout(Layout::Set)
}

/// The `i`-th address of a deterministic sequence inside 10.0.0.0/8 (never .0 or .255).
fn v4(i: u32) -> Net {
    let a = 0x0a00_0000 | ((i / 254) << 8) | (i % 254 + 1);
    Net::host(std::net::IpAddr::V4(a.into()))
}

type Item = Result<(u64, Entry), BadEntry>;

fn load(ns: &Netns, cfg: Config, items: Vec<Item>, opts: BulkOpts) -> Result<BulkReport, String> {
    ns.run(move || {
        let mut c = Controller::open(cfg).unwrap_or_else(|e| panic!("open: {e}"));
        let mut o = BulkOptions::default().skip_invalid(opts.skip_invalid);
        if let Some(m) = opts.max_transaction {
            o = o.max_transaction(m);
        }
        c.block_stream(items, o).map_err(|e| match e {
            BulkError::Invalid { count, bad } => format!("invalid {count}: {bad:?}"),
            e => format!("error: {e}"),
        })
    })
}

#[derive(Debug, Default, Clone, Copy)]
struct BulkOpts {
    skip_invalid: bool,
    max_transaction: Option<usize>,
}

/// Elements of a set as `nft` counts them (`nft -j list set`).
fn nft_elements(ns: &Netns, set: &str) -> Vec<serde_json::Value> {
    let v = autoblock_tests::nft_json(ns, &["list", "set", "inet", "autoblock", set]);
    v["nftables"]
        .as_array()
        .and_then(|a| a.iter().find_map(|o| o.get("set")))
        .and_then(|s| s.get("elem"))
        .and_then(|e| e.as_array())
        .cloned()
        .unwrap_or_default()
}

fn count_in(ns: &Netns, set: &str) -> usize {
    ns.run({
        let set = set.to_owned();
        move || {
            let mut c = Controller::open(cfg()).unwrap_or_else(|e| panic!("open: {e}"));
            let st = c.status().unwrap_or_else(|e| panic!("status: {e}"));
            st.iter()
                .flat_map(|f| f.sets.iter())
                .find(|s| s.name == set)
                .map_or(0, |s| s.elements as usize)
        }
    })
}

#[test]
fn a_large_stream_loads_exactly() {
    let ns = Netns::new();
    let n = 200_000u32;
    let exp = SystemTime::now() + Duration::from_secs(3600);
    let items: Vec<Item> = (0..n)
        .map(|i| Ok((u64::from(i) + 1, Entry::new(v4(i)).with_expiry(exp))))
        .collect();
    let r = load(&ns, cfg(), items, BulkOpts::default()).unwrap();
    assert_eq!(r.entries, u64::from(n), "{r:?}");
    assert_eq!(r.transactions, 1, "{r:?}");
    assert_eq!(r.sets.len(), 1, "{r:?}");
    assert_eq!(r.sets[0].name, "addr4");
    assert_eq!(r.sets[0].before, 0);
    assert!(!r.sets[0].replaced);
    // The set was sized for the load before it was created.
    let listed = nft(&ns, &["list", "set", "inet", "autoblock", "addr4"]);
    assert!(
        listed.contains("size 400000"),
        "{}",
        &listed[..listed.len().min(400)]
    );
    assert_eq!(count_in(&ns, "addr4"), n as usize);
    // Every element is there, once, with a timeout of one hour.
    let elems = nft_elements(&ns, "addr4");
    assert_eq!(elems.len(), n as usize);
    let mut seen: Vec<String> = elems
        .iter()
        .map(|e| {
            let e = &e["elem"];
            let t = e["timeout"].as_u64().unwrap_or(0);
            assert!((3590..=3600).contains(&t), "{e}");
            e["val"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    seen.sort();
    let mut want: Vec<String> = (0..n).map(|i| v4(i).addr().to_string()).collect();
    want.sort();
    assert_eq!(seen, want);
}

#[test]
fn bad_input_leaves_the_kernel_unchanged() {
    let ns = Netns::new();
    // Something blocked before.
    load(
        &ns,
        cfg(),
        vec![Ok((1, Entry::new(v4(7)).with_comment("before")))],
        BulkOpts::default(),
    )
    .unwrap();
    let before = nft(&ns, &["list", "ruleset"]);
    let mut items: Vec<Item> = (0..1000u32)
        .map(|i| Ok((u64::from(i) + 1, Entry::new(v4(100 + i)))))
        .collect();
    items[10] = Err(BadEntry::new(11, "10.0.0.999", "not an address"));
    // Loopback is always allowlisted; a control character cannot be stored.
    items[500] = Ok((501, Entry::new("127.0.0.1".parse().unwrap())));
    items[700] = Ok((701, Entry::new(v4(5000)).with_comment("a\nb")));
    let e = load(&ns, cfg(), items, BulkOpts::default()).unwrap_err();
    assert!(e.starts_with("invalid 3"), "{e}");
    assert!(
        e.contains("line: 11") && e.contains("line: 501") && e.contains("line: 701"),
        "{e}"
    );
    assert_eq!(nft(&ns, &["list", "ruleset"]), before);
}

#[test]
fn skip_invalid_counts_and_loads_the_rest() {
    let ns = Netns::new();
    let items: Vec<Item> = vec![
        Ok((1, Entry::new(v4(1)))),
        Err(BadEntry::new(2, "bogus", "not an address")),
        Ok((3, Entry::new("::1".parse().unwrap()))),
        Ok((
            4,
            Entry::new("2001:db8::/48".parse().unwrap()).with_comment("v6 net"),
        )),
        Ok((
            5,
            Entry::new(v4(2)).with_expiry(SystemTime::now() - Duration::from_secs(5)),
        )),
    ];
    let r = load(
        &ns,
        cfg(),
        items,
        BulkOpts {
            skip_invalid: true,
            ..BulkOpts::default()
        },
    )
    .unwrap();
    assert_eq!((r.entries, r.invalid, r.expired), (2, 2, 1), "{r:?}");
    assert_eq!(r.bad.iter().map(|b| b.line).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(count_in(&ns, "addr4"), 1);
    let net = nft(&ns, &["list", "set", "inet", "autoblock", "net6_48"]);
    assert!(net.contains("2001:db8:: comment \"v6 net\""), "{net}");
}

#[test]
fn reloading_replaces_timeouts_comments_and_permanence() {
    let ns = Netns::new();
    let first: Vec<Item> = vec![
        Ok((1, Entry::new(v4(1)).with_timeout(Duration::from_secs(60)))),
        Ok((2, Entry::new(v4(2)).with_comment("old"))),
        Ok((3, Entry::new(v4(3)))),
    ];
    load(&ns, cfg(), first, BulkOpts::default()).unwrap();
    let second: Vec<Item> = vec![
        Ok((1, Entry::new(v4(1)).with_timeout(Duration::from_secs(7200)))),
        Ok((2, Entry::new(v4(2)).with_comment("new"))),
        Ok((3, Entry::new(v4(3)).with_timeout(Duration::from_secs(600)))),
        Ok((4, Entry::new(v4(4)))),
    ];
    let r = load(&ns, cfg(), second, BulkOpts::default()).unwrap();
    assert!(r.sets[0].replaced, "{r:?}");
    assert_eq!((r.sets[0].before, r.sets[0].after), (3, Some(4)), "{r:?}");
    let s = nft(&ns, &["list", "set", "inet", "autoblock", "addr4"]);
    assert!(
        s.contains("10.0.0.2 timeout 2h") || s.contains("10.0.0.2 timeout 1h59m"),
        "{s}"
    );
    assert!(s.contains("10.0.0.3 comment \"new\""), "{s}");
    assert!(
        s.contains("10.0.0.4 timeout 10m") || s.contains("10.0.0.4 timeout 9m59s"),
        "{s}"
    );
    assert!(!s.contains("old"), "{s}");
}

#[test]
fn a_split_load_arrives_whole_and_says_so() {
    let ns = Netns::new();
    let n = 20_000u32;
    let items: Vec<Item> = (0..n)
        .map(|i| {
            let e = Entry::new(v4(i)).with_timeout(Duration::from_secs(3600));
            Ok((
                u64::from(i) + 1,
                if i % 3 == 0 { e.with_comment("c") } else { e },
            ))
        })
        .chain(std::iter::once(Ok((
            u64::from(n) + 1,
            Entry::new("2001:db8::7".parse().unwrap()),
        ))))
        .collect();
    let r = load(
        &ns,
        cfg(),
        items,
        BulkOpts {
            max_transaction: Some(64 * 1024),
            ..BulkOpts::default()
        },
    )
    .unwrap();
    assert!(r.transactions > 5, "{r:?}");
    assert!(!r.is_atomic());
    assert!(
        r.warnings.iter().any(|w| w.contains("not atomic")),
        "{:?}",
        r.warnings
    );
    assert_eq!(count_in(&ns, "addr4"), n as usize);
    assert_eq!(count_in(&ns, "addr6"), 1);
}
