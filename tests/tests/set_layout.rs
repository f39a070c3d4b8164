//! End-to-end tests of the `set` layout through the library, each in fresh network
//! namespaces: what `nft list` shows, kernel expiry, packet drops for addresses and prefixes,
//! timeout refresh on both kernel paths, growth past the initial set size, iptables-save
//! staying untouched, and a list → fresh namespace → block round trip.
//!
//! These tests do not run the `autoblock` binary and never touch this machine's own
//! namespace.

use std::net::IpAddr;
use std::time::Duration;

use autoblock::config::SetHook;
use autoblock::{Action, Config, Controller, Entry, Layout, Listed, Net};
use autoblock_tests::{addr, ip6tables_save, iptables_save, nft, Netns, TestBed};

fn cfg() -> Config {
    Config::default().layout(Layout::Set)
}

fn net(s: &str) -> Net {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Runs `f` with a set-layout controller opened inside `ns`.
fn with_ctl<R: Send + 'static>(
    ns: &Netns,
    cfg: Config,
    f: impl FnOnce(&mut Controller) -> R + Send + 'static,
) -> R {
    ns.run(move || {
        let mut c = Controller::open(cfg).unwrap_or_else(|e| panic!("open: {e}"));
        f(&mut c)
    })
}

fn list(ns: &Netns, cfg: Config) -> Vec<Listed> {
    let mut l = with_ctl(ns, cfg, |c| {
        c.list().unwrap_or_else(|e| panic!("list: {e}"))
    });
    l.sort_by_key(|x| x.net);
    l
}

#[test]
fn entries_show_in_nft_with_timeouts_and_comments() {
    let ns = Netns::new();
    let report = with_ctl(&ns, cfg(), |c| {
        c.block(&[
            Entry::new(net("198.51.100.9"))
                .with_comment("ssh brute force")
                .with_timeout(Duration::from_secs(3600)),
            Entry::new(net("2001:db8:1::9")),
            Entry::new(net("203.0.113.0/24")).with_timeout(Duration::from_secs(600)),
        ])
        .unwrap_or_else(|e| panic!("block: {e}"))
    });
    assert_eq!(report.changed.len(), 3, "{report:?}");
    // One commit: the capability probes ran before the generation was read.
    assert_eq!(report.retries, 0, "{report:?}");
    let addr4 = nft(&ns, &["list", "set", "inet", "autoblock", "addr4"]);
    assert!(addr4.contains("type ipv4_addr"), "{addr4}");
    assert!(addr4.contains("flags timeout"), "{addr4}");
    assert_eq!(
        addr4.contains("size 65536"),
        autoblock_tests::kernel_at_least(6, 5),
        "sets carry a size only where the kernel can grow them: {addr4}"
    );
    // Older kernels keep timeouts in jiffies: 1h may read back as 59m59s988ms.
    let timeout = addr4
        .split("198.51.100.9 timeout ")
        .nth(1)
        .unwrap_or_else(|| panic!("no timeout for 198.51.100.9:\n{addr4}"));
    assert!(
        timeout.starts_with("1h expires 59m5")
            || timeout.starts_with("1h expires 1h")
            || timeout.starts_with("59m59s9"),
        "{addr4}"
    );
    assert!(addr4.contains("comment \"ssh brute force\""), "{addr4}");
    let addr6 = nft(&ns, &["list", "set", "inet", "autoblock", "addr6"]);
    assert!(addr6.contains("2001:db8:1::9"), "{addr6}");
    assert!(
        !addr6.contains("2001:db8:1::9 timeout"),
        "permanent: {addr6}"
    );
    let net24 = nft(&ns, &["list", "set", "inet", "autoblock", "net4_24"]);
    // 10m, or 9m59s988ms where the kernel keeps timeouts in jiffies.
    assert!(
        net24.contains("203.0.113.0 timeout 10m") || net24.contains("203.0.113.0 timeout 9m59s9"),
        "{net24}"
    );
    let chain = nft(&ns, &["list", "chain", "inet", "autoblock", "input"]);
    assert!(chain.contains("hook input priority filter - 1"), "{chain}");
    assert!(
        chain.contains("ip saddr @addr4 counter packets 0 bytes 0 drop"),
        "{chain}"
    );
    assert!(chain.contains("ip6 saddr @addr6 counter"), "{chain}");
    assert!(
        chain.contains("ip saddr & 255.255.255.0 @net4_24")
            || chain.contains("ip saddr & 255.255.255.0 == @net4_24"),
        "{chain}"
    );
    // Idempotent: the same block changes nothing, and the rules keep their handles.
    let before = nft(&ns, &["-a", "list", "chain", "inet", "autoblock", "input"]);
    let again = with_ctl(&ns, cfg(), |c| {
        c.block(&[Entry::new(net("2001:db8:1::9"))])
            .unwrap_or_else(|e| panic!("block: {e}"))
    });
    assert_eq!(again.unchanged, vec![net("2001:db8:1::9")], "{again:?}");
    assert_eq!(
        before,
        nft(&ns, &["-a", "list", "chain", "inet", "autoblock", "input"])
    );
    // The layout never writes into iptables' tables.
    assert_eq!(iptables_save(&ns).trim(), "");
    assert_eq!(ip6tables_save(&ns).trim(), "");
    // List reads the entries back.
    let l = list(&ns, cfg());
    let nets: Vec<Net> = l.iter().map(|x| x.net).collect();
    assert_eq!(
        nets,
        vec![
            net("198.51.100.9"),
            net("203.0.113.0/24"),
            net("2001:db8:1::9")
        ]
    );
    assert_eq!(l[0].comment.as_deref(), Some("ssh brute force"));
    assert!(l[0].expires.is_some() && l[2].expires.is_none());
    // Unblock, flush and remove.
    let r = with_ctl(&ns, cfg(), |c| {
        c.unblock(&[net("198.51.100.9"), net("192.0.2.1")])
            .unwrap_or_else(|e| panic!("unblock: {e}"))
    });
    assert_eq!(r.changed, vec![net("198.51.100.9")]);
    assert_eq!(r.unchanged, vec![net("192.0.2.1")]);
    let n = with_ctl(&ns, cfg(), |c| {
        c.flush().unwrap_or_else(|e| panic!("flush: {e}"))
    });
    assert_eq!(n, 2);
    assert!(list(&ns, cfg()).is_empty());
    with_ctl(&ns, cfg(), |c| {
        c.remove().unwrap_or_else(|e| panic!("remove: {e}"))
    });
    assert_eq!(nft(&ns, &["list", "ruleset"]).trim(), "");
}

#[test]
fn a_one_second_ban_expires() {
    let ns = Netns::new();
    with_ctl(&ns, cfg(), |c| {
        c.block(&[Entry::new(net("198.51.100.9")).with_timeout(Duration::from_secs(1))])
            .unwrap_or_else(|e| panic!("block: {e}"))
    });
    assert_eq!(list(&ns, cfg()).len(), 1);
    std::thread::sleep(Duration::from_millis(1600));
    assert!(list(&ns, cfg()).is_empty());
    let s = nft(&ns, &["list", "set", "inet", "autoblock", "addr4"]);
    assert!(!s.contains("198.51.100.9"), "{s}");
}

#[test]
fn packets_from_blocked_prefixes_are_dropped_and_counted() {
    let bed = TestBed::new();
    let src4: IpAddr = addr::V4_SAME_24.into();
    let src6: IpAddr = addr::V6_SAME_48.into();
    assert!(bed.send_udp(src4, 0));
    assert!(bed.send_udp(src6, 0));
    with_ctl(bed.host(), cfg(), |c| {
        c.block(&[
            Entry::new(net("198.51.100.0/24")),
            Entry::new(net("2001:db8:1::/48")),
        ])
        .unwrap_or_else(|e| panic!("block: {e}"))
    });
    assert!(!bed.send_udp(src4, 0), "inside the /24");
    assert!(!bed.send_udp(src6, 0), "inside the /48");
    assert!(bed.send_udp(addr::V4_UNBLOCKED.into(), 0));
    assert!(bed.send_udp(addr::V6_UNBLOCKED.into(), 0));
    let st = with_ctl(bed.host(), cfg(), |c| {
        c.status().unwrap_or_else(|e| panic!("status: {e}"))
    });
    for f in &st {
        assert!(f.packets >= 1, "{st:?}");
        assert_eq!(f.entries, 1, "{st:?}");
    }
    assert_eq!(
        st[0]
            .sets
            .iter()
            .find(|s| s.name == "net4_24")
            .map(|s| s.packets),
        Some(1)
    );
    assert_eq!(iptables_save(bed.host()).trim(), "");
}

#[test]
fn reject_log_and_prerouting_hook_work() {
    let bed = TestBed::new();
    let c = cfg()
        .action(Action::LogDrop)
        .set_hook(SetHook::Prerouting, None);
    with_ctl(bed.host(), c.clone(), |c| {
        c.block(&[Entry::new(net("198.51.100.9"))])
            .unwrap_or_else(|e| panic!("block: {e}"))
    });
    assert!(!bed.send_udp(addr::V4_BLOCKED.into(), 0));
    let chain = nft(
        bed.host(),
        &["list", "chain", "inet", "autoblock", "prerouting"],
    );
    assert!(chain.contains("hook prerouting priority raw"), "{chain}");
    assert!(chain.contains("log prefix \"autoblock: \" drop"), "{chain}");
    // Switching the action converts the rules in place; switching the hook moves the chain.
    with_ctl(bed.host(), cfg().action(Action::Log), |c| {
        c.block(&[Entry::new(net("198.51.100.9"))])
            .unwrap_or_else(|e| panic!("block: {e}"))
    });
    assert!(bed.send_udp(addr::V4_BLOCKED.into(), 0), "log only");
    let rs = nft(bed.host(), &["list", "table", "inet", "autoblock"]);
    assert!(!rs.contains("prerouting"), "{rs}");
    with_ctl(bed.host(), cfg().action(Action::Reject), |c| {
        c.block(&[Entry::new(net("198.51.100.9"))])
            .unwrap_or_else(|e| panic!("block: {e}"))
    });
    assert!(!bed.send_udp(addr::V4_BLOCKED.into(), 0));
    let chain = nft(bed.host(), &["list", "chain", "inet", "autoblock", "input"]);
    assert!(chain.contains("reject"), "{chain}");
}

fn remaining(ns: &Netns, n: Net) -> Duration {
    list(ns, cfg())
        .into_iter()
        .find(|l| l.net == n)
        .and_then(|l| l.expires)
        .and_then(|e| e.duration_since(std::time::SystemTime::now()).ok())
        .unwrap_or_else(|| panic!("{n} is not listed with an expiry"))
}

fn refresh_extends_a_ban(c: Config) {
    let ns = Netns::new();
    let n = net("198.51.100.9");
    with_ctl(&ns, c.clone(), move |ctl| {
        ctl.block(&[Entry::new(n)
            .with_comment("first")
            .with_timeout(Duration::from_secs(60))])
            .unwrap_or_else(|e| panic!("block: {e}"))
    });
    assert!(remaining(&ns, n) <= Duration::from_secs(60));
    let r = with_ctl(&ns, c.clone(), move |ctl| {
        ctl.block(&[Entry::new(n)
            .with_comment("first")
            .with_timeout(Duration::from_secs(7200))])
            .unwrap_or_else(|e| panic!("block: {e}"))
    });
    assert_eq!(r.updated, vec![n], "{r:?}");
    let left = remaining(&ns, n);
    assert!(left > Duration::from_secs(7000), "{left:?}");
    // A new comment replaces the element; the expiry follows the entry.
    with_ctl(&ns, c, move |ctl| {
        ctl.block(&[Entry::new(n)
            .with_comment("second")
            .with_timeout(Duration::from_secs(300))])
            .unwrap_or_else(|e| panic!("block: {e}"))
    });
    let l = list(&ns, cfg());
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].comment.as_deref(), Some("second"));
    assert!(remaining(&ns, n) <= Duration::from_secs(300));
}

#[test]
fn refresh_extends_a_ban_in_place() {
    refresh_extends_a_ban(cfg());
}

#[test]
fn refresh_extends_a_ban_with_destroy_and_add() {
    refresh_extends_a_ban(cfg().refresh_timeouts(false));
}

#[test]
fn refresh_extends_a_ban_without_destroy() {
    refresh_extends_a_ban(cfg().refresh_timeouts(false).use_destroy(false));
}

#[test]
fn grows_past_its_initial_size() {
    grows_past_its_initial_size_with(cfg(), autoblock_tests::kernel_at_least(6, 5));
}

#[test]
fn without_in_place_growth_sets_have_no_size_and_never_fill() {
    grows_past_its_initial_size_with(cfg().resize_sets(false), false);
}

/// 60,000 then 70,000 more entries: with in-place growth (Linux ≥ 6.5) the set is sized
/// 120,000 and grows past 260,000; without it (forced, or an older kernel) the set has no
/// size at all, so it cannot fill. Either way every entry is in.
fn grows_past_its_initial_size_with(config: Config, resizes: bool) {
    let ns = Netns::new();
    let first: Vec<Entry> = (0..60_000u32)
        .map(|i| Entry::new(Net::host(IpAddr::V4((0x0a00_0000 + i + 0x10_0000).into()))))
        .collect();
    let second: Vec<Entry> = (60_000..130_000u32)
        .map(|i| Entry::new(Net::host(IpAddr::V4((0x0a00_0000 + i + 0x10_0000).into()))))
        .collect();
    let st = with_ctl(&ns, config, move |c| {
        c.block(&first).unwrap_or_else(|e| panic!("block: {e}"));
        let size1 = c.status().unwrap_or_else(|e| panic!("status: {e}"))[0].sets[0].size;
        c.block(&second).unwrap_or_else(|e| panic!("block: {e}"));
        (size1, c.status().unwrap_or_else(|e| panic!("status: {e}")))
    });
    assert_eq!(st.1[0].entries, 130_000);
    if resizes {
        assert_eq!(st.0, Some(120_000));
        assert!(
            st.1[0].sets[0].size.is_some_and(|s| s >= 260_000),
            "{:?}",
            st.1
        );
    } else {
        assert_eq!(st.0, None);
        assert_eq!(st.1[0].sets[0].size, None, "{:?}", st.1);
    }
    let listed = nft(&ns, &["list", "set", "inet", "autoblock", "addr4"]);
    assert_eq!(listed.contains("size "), resizes, "{listed}");
}

#[test]
fn a_hard_limit_is_reported_against_the_entry() {
    let ns = Netns::new();
    let entries: Vec<Entry> = (1..=5u8)
        .map(|i| Entry::new(net(&format!("192.0.2.{i}"))))
        .collect();
    let err = with_ctl(&ns, cfg().max_entries(4), move |c| {
        c.block(&entries)
            .expect_err("the fifth entry does not fit")
            .to_string()
    });
    assert!(err.contains("192.0.2.5") && err.contains("full"), "{err}");
    assert!(list(&ns, cfg()).is_empty(), "nothing applied");
}

#[test]
fn list_then_block_in_a_fresh_namespace_restores_the_same_bans() {
    let a = Netns::new();
    with_ctl(&a, cfg(), |c| {
        c.block(&[
            Entry::new(net("198.51.100.9"))
                .with_comment("one")
                .with_timeout(Duration::from_secs(3600)),
            Entry::new(net("2001:db8:2::/48")).with_comment("two"),
            Entry::new(net("203.0.113.0/24")),
        ])
        .unwrap_or_else(|e| panic!("block: {e}"))
    });
    let saved = list(&a, cfg());
    let b = Netns::new();
    let entries: Vec<Entry> = saved
        .iter()
        .map(|l| {
            let mut e = Entry::new(l.net);
            e.comment = l.comment.clone();
            e.expires = l.expires;
            e
        })
        .collect();
    with_ctl(&b, cfg(), move |c| {
        c.block(&entries).unwrap_or_else(|e| panic!("block: {e}"))
    });
    let restored = list(&b, cfg());
    assert_eq!(restored.len(), saved.len());
    for (x, y) in saved.iter().zip(&restored) {
        assert_eq!((x.net, &x.comment, x.action), (y.net, &y.comment, y.action));
        match (x.expires, y.expires) {
            (None, None) => {}
            (Some(p), Some(q)) => {
                let d = p.duration_since(q).unwrap_or_else(|e| e.duration());
                assert!(d < Duration::from_secs(3), "{d:?}");
            }
            other => panic!("expiry differs: {other:?}"),
        }
    }
}
