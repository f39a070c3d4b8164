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
    // Sent once: the capability probes commit before the generation is read, so the
    // load is not refused as stale and sent again.
    assert_eq!(r.retries, 0, "{r:?}");
    assert_eq!(r.sets.len(), 1, "{r:?}");
    assert_eq!(r.sets[0].name, "addr4");
    assert_eq!(r.sets[0].before, 0);
    assert!(!r.sets[0].replaced);
    // The set was sized for the load before it was created (where the kernel can grow a
    // set later, Linux ≥ 6.5; before, sets have no size and no limit).
    let listed = nft(&ns, &["list", "set", "inet", "autoblock", "addr4"]);
    assert_eq!(
        listed.contains("size 400000"),
        autoblock_tests::kernel_at_least(6, 5),
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

/// A change monitor (what the daemon's self-healing reads) receives every notification of a
/// 100,000-element load: the kernel queues them all at the commit, and an overrun would read
/// as "anything may have changed" and trigger a full re-sync.
#[test]
fn a_change_monitor_hears_a_large_load_without_loss() {
    use autoblock_netlink::{ChangeKind, Monitor};
    let ns = Netns::new();
    let mut mon = ns.run(|| Monitor::open().unwrap_or_else(|e| panic!("monitor: {e}")));
    let n = 100_000u32;
    let items: Vec<Item> = (0..n)
        .map(|i| Ok((u64::from(i) + 1, Entry::new(v4(i)))))
        .collect();
    let r = load(&ns, cfg(), items, BulkOpts::default()).unwrap();
    assert_eq!(r.transactions, 1, "{r:?}");
    let mut added = 0usize;
    while added < n as usize {
        let t = mon
            .next(Some(10_000))
            .unwrap_or_else(|e| panic!("monitor: {e}"))
            .unwrap_or_else(|| panic!("no further notification after {added} elements"));
        assert!(!t.overrun, "notifications were lost after {added} elements");
        added += t
            .changes
            .iter()
            .filter(|c| c.kind == ChangeKind::NewSetElem && c.table.as_deref() == Some("autoblock"))
            .count();
    }
    assert_eq!(added, n as usize);
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
    assert_eq!(
        (r.sets[0].before, r.sets[0].after),
        (3, reports_counts().then_some(4)),
        "{r:?}"
    );
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
fn reloading_without_destroy_uses_add_delete_add() {
    let ns = Netns::new();
    let c = || cfg().use_destroy(false);
    let first: Vec<Item> = vec![Ok((1, Entry::new(v4(1)).with_comment("old")))];
    load(&ns, c(), first, BulkOpts::default()).unwrap();
    let second: Vec<Item> = vec![
        Ok((1, Entry::new(v4(1)).with_timeout(Duration::from_secs(600)))),
        Ok((2, Entry::new(v4(2)))),
    ];
    let r = load(&ns, c(), second, BulkOpts::default()).unwrap();
    assert!(r.sets[0].replaced, "{r:?}");
    let s = nft(&ns, &["list", "set", "inet", "autoblock", "addr4"]);
    assert!(
        s.contains("10.0.0.2 timeout 10m") || s.contains("10.0.0.2 timeout 9m59s"),
        "{s}"
    );
    assert!(!s.contains("old"), "{s}");
    assert_eq!(count_in(&ns, "addr4"), 2);
}

#[test]
fn a_stream_grows_a_set_before_it_would_fill() {
    let ns = Netns::new();
    let first: Vec<Item> = (0..60_000u32)
        .map(|i| Ok((u64::from(i) + 1, Entry::new(v4(i)))))
        .collect();
    load(&ns, cfg(), first, BulkOpts::default()).unwrap();
    let size = |ns: &Netns| {
        let s = nft(ns, &["list", "set", "inet", "autoblock", "addr4"]);
        s.lines()
            .find_map(|l| l.trim().strip_prefix("size "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Sets carry a size only where the kernel can raise it (Linux ≥ 6.5); without one
    // they cannot fill.
    let resizes = autoblock_tests::kernel_at_least(6, 5);
    assert_eq!(size(&ns), if resizes { 120_000 } else { 0 });
    // 60,000 + 100,000 would fill 120,000 slots past 80 %: the set grows first.
    let second: Vec<Item> = (60_000..160_000u32)
        .map(|i| Ok((u64::from(i) + 1, Entry::new(v4(i)))))
        .collect();
    let r = load(&ns, cfg(), second, BulkOpts::default()).unwrap();
    assert_eq!(
        (r.sets[0].before, r.sets[0].after),
        (60_000, reports_counts().then_some(160_000)),
        "{r:?}"
    );
    assert_eq!(size(&ns), if resizes { 320_000 } else { 0 });
    assert_eq!(count_in(&ns, "addr4"), 160_000);
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

// ---- through the `autoblock` binary ----

/// A file of `n` addresses (one per line) in a fresh temporary directory anyone can read.
fn address_file(n: u32, suffix: &str) -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("autoblock-bulk-")
        .tempdir()
        .unwrap_or_else(|e| panic!("tempdir: {e}"));
    let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
    let path = dir.path().join("bans.txt");
    let mut text = String::with_capacity(n as usize * 20);
    text.push_str("# generated\n\n");
    for i in 0..n {
        text.push_str(&v4(i).addr().to_string());
        text.push_str(suffix);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644));
    let p = path.to_string_lossy().into_owned();
    (dir, p)
}

#[test]
fn cli_block_file_streams_and_list_count_counts() {
    let ns = Netns::new();
    let n = 50_000;
    let (_dir, path) = address_file(n, " timeout=2h comment=feed");
    let out = ns.autoblock_ok(&["--layout", "set", "--no-mirror", "block", "-f", &path]);
    assert!(
        out.contains("blocked 50000 entries in 1 transaction(s)"),
        "{out}"
    );
    let counted = if reports_counts() { "50000" } else { "?" };
    assert!(out.contains(&format!("elements 0 -> {counted}")), "{out}");
    let count = ns.autoblock_ok(&["--layout", "set", "list", "--count"]);
    assert_eq!(count, "addr4 50000\ntotal 50000\n");
    let json = ns.autoblock_ok(&["--layout", "set", "list", "--count", "--json"]);
    assert!(json.contains("\"total\":50000"), "{json}");
    // The streamed list prints every entry once, after one header line.
    let list = ns.autoblock_ok(&["--layout", "set", "list"]);
    assert_eq!(list.lines().count(), n as usize + 1);
    assert!(
        list.lines().skip(1).all(|l| l.ends_with("feed")),
        "{}",
        &list[..400]
    );
}

#[test]
fn cli_bad_lines_are_numbered_and_change_nothing() {
    let ns = Netns::new();
    ns.autoblock_ok(&["--layout", "set", "--no-mirror", "block", "192.0.2.1"]);
    let before = nft(&ns, &["list", "ruleset"]);
    let input = "198.51.100.1\n198.51.100.300\n# fine\n198.51.100.1/24\n127.0.0.1\n";
    let out = ns.autoblock_with_input(
        &["--layout", "set", "--no-mirror", "block", "-f", "-"],
        input,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("3 invalid line(s)"), "{err}");
    assert!(
        err.contains("-:2:") && err.contains("-:4:") && err.contains("-:5:"),
        "{err}"
    );
    assert!(err.contains("did you mean 198.51.100.0/24"), "{err}");
    assert_eq!(nft(&ns, &["list", "ruleset"]), before);
    let out = ns.autoblock_with_input(
        &[
            "--layout",
            "set",
            "--no-mirror",
            "block",
            "--skip-invalid",
            "-f",
            "-",
        ],
        input,
    );
    assert!(
        out.status.success(),
        "{}",
        autoblock_tests::output_text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("skipped 3 invalid line(s)"), "{err}");
    let count = ns.autoblock_ok(&["--layout", "set", "list", "--count"]);
    assert_eq!(count, "addr4 2\ntotal 2\n");
}

#[test]
fn cli_hook_priority_and_max_entries_flags() {
    let ns = Netns::new();
    ns.autoblock_ok(&[
        "--layout",
        "set",
        "--hook",
        "prerouting",
        "--priority",
        "-150",
        "--max-entries",
        "1000",
        "block",
        "192.0.2.9",
    ]);
    let chain = nft(&ns, &["list", "chain", "inet", "autoblock", "prerouting"]);
    // nft names priority -150 "mangle".
    assert!(
        chain.contains("hook prerouting priority mangle;")
            || chain.contains("hook prerouting priority -150;"),
        "{chain}"
    );
    let set = nft(&ns, &["list", "set", "inet", "autoblock", "addr4"]);
    assert!(set.contains("size 1000"), "{set}");
    // A load that does not fit the hard limit fails whole.
    let (_dir, path) = address_file(1001, "");
    let out = ns.autoblock(&[
        "--layout",
        "set",
        "--hook",
        "prerouting",
        "--priority",
        "-150",
        "--max-entries",
        "1000",
        "block",
        "-f",
        &path,
    ]);
    assert!(
        !out.status.success(),
        "{}",
        autoblock_tests::output_text(&out)
    );
    let count = ns.autoblock_ok(&["--layout", "set", "--hook", "prerouting", "list", "--count"]);
    assert_eq!(count, "addr4 1\ntotal 1\n");
}

/// The constrained path: a user namespace (`unshare -rn` as an unprivileged user) cannot
/// raise its socket buffer past `net.core.wmem_max`, so a load larger than that is split
/// into several transactions, and the command says so.
#[test]
fn cli_load_in_a_user_namespace_is_split_and_says_so() {
    autoblock_tests::require_root();
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot read /proc/sys/net/core/wmem_max"));
    // Each line carries a 200-byte comment: about 232 bytes per element; make the load
    // about three times the largest datagram the user namespace can send (2 × wmem_max).
    let n = u32::try_from((wmem_max * 2 * 3 / 232).max(5_000)).unwrap_or(200_000);
    let comment = format!(" comment={}", "c".repeat(200));
    let (dir, path) = address_file(n, &comment);
    let bin = autoblock_tests::autoblock_bin();
    let script = format!(
        "{bin} --layout set --no-mirror block -f {path} && {bin} --layout set list --count",
        bin = bin.display()
    );
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["unshare", "--map-root-user", "--net", "sh", "-c", &script])
        // Not this machine's /run/autoblock: nothing of the host is used.
        .env("AUTOBLOCK_RUNTIME_DIR", dir.path())
        .env(
            "AUTOBLOCK_CONTROL_SOCKET",
            dir.path().join("no-daemon.sock"),
        )
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run setpriv/unshare (util-linux) for the user-namespace test: {e}")
        });
    let text = autoblock_tests::output_text(&out);
    assert!(
        out.status.success(),
        "the load in a user namespace failed (unprivileged user namespaces must be enabled for this test):\n{text}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("was not atomic") && stderr.contains("transactions"),
        "{text}"
    );
    let txns: u32 = stdout
        .split("in ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(txns >= 3, "{text}");
    assert!(
        stdout.contains(&format!("addr4 {n}\ntotal {n}\n")),
        "{text}"
    );
}

/// Whether the kernel reports a set's element count with the set (Linux ≥ 6.16); before,
/// a load cannot tell the count after it without a dump, and says so.
fn reports_counts() -> bool {
    autoblock_tests::kernel_at_least(6, 16)
}
