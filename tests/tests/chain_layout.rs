//! End-to-end tests of the chain layout, each in its own fresh network namespace: every rule
//! shape cross-checked against iptables-nft's own listing, save/restore round trips, real
//! packet drops over a veth pair, idempotency, the allowlist, bad input, a racing writer and
//! the pre-6.3 delete path.

use std::net::IpAddr;

use autoblock::{Action, Config, Controller, Entry, Net};
use autoblock_tests::{
    addr, assert_iptables_safe, ip6tables, ip6tables_save, iptables, iptables_restore_test,
    iptables_save, output_text, tool, Family, Netns, TestBed,
};

fn net(s: &str) -> Net {
    s.parse().unwrap()
}

fn ctl(cfg: Config) -> Controller {
    Controller::open(cfg).expect("open controller")
}

/// Rules of INPUT-AUTO as `iptables -S` prints them.
fn chain_rules(ns: &Netns, v6: bool) -> Vec<String> {
    let out = if v6 {
        ip6tables(ns, &["-S", "INPUT-AUTO"])
    } else {
        iptables(ns, &["-S", "INPUT-AUTO"])
    };
    out.lines()
        .filter(|l| l.starts_with("-A "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_rule_shape_matches_iptables_listing() {
    let ns = Netns::new();
    let cases: Vec<(&str, &str)> = vec![
        ("198.51.100.9", "-A INPUT-AUTO -s 198.51.100.9/32 -j DROP"),
        (
            "198.51.100.0/24",
            "-A INPUT-AUTO -s 198.51.100.0/24 -j DROP",
        ),
        ("10.99.0.0/20", "-A INPUT-AUTO -s 10.99.0.0/20 -j DROP"),
        ("10.98.0.0/16", "-A INPUT-AUTO -s 10.98.0.0/16 -j DROP"),
        ("2001:db8::1", "-A INPUT-AUTO -s 2001:db8::1/128 -j DROP"),
        (
            "2001:db8:1::/48",
            "-A INPUT-AUTO -s 2001:db8:1::/48 -j DROP",
        ),
        (
            "2001:db8:2::/60",
            "-A INPUT-AUTO -s 2001:db8:2::/60 -j DROP",
        ),
    ];
    let entries: Vec<Entry> = cases.iter().map(|(a, _)| Entry::new(net(a))).collect();
    ns.run(move || ctl(Config::default()).block(&entries).unwrap());
    let mut got = chain_rules(&ns, false);
    got.extend(chain_rules(&ns, true));
    let want: Vec<String> = cases.iter().map(|(_, r)| r.to_string()).collect();
    assert_eq!(got, want);
    // The jump is the first rule of INPUT in both families.
    for out in [
        iptables(&ns, &["-S", "INPUT"]),
        ip6tables(&ns, &["-S", "INPUT"]),
    ] {
        let first = out.lines().find(|l| l.starts_with("-A ")).unwrap();
        assert_eq!(first, "-A INPUT -j INPUT-AUTO");
    }
    assert_iptables_safe(&ns);
}

#[test]
fn comment_log_reject_and_log_drop_shapes_match_iptables() {
    let ns = Netns::new();
    ns.run(|| {
        let mut c = ctl(Config::default());
        c.block(&[Entry::new(net("198.51.100.9")).with_comment("ssh brute force")])
            .unwrap();
        let mut c = ctl(Config::default().action(Action::Log));
        c.block(&[Entry::new(net("203.0.113.0/24"))]).unwrap();
        let mut c = ctl(Config::default().action(Action::LogDrop));
        c.block(&[
            Entry::new(net("192.0.2.0/25")),
            Entry::new(net("2001:db8::/60")),
        ])
        .unwrap();
        let mut c = ctl(Config::default().action(Action::Reject));
        c.block(&[
            Entry::new(net("198.18.0.0/15")),
            Entry::new(net("2001:db8:5::1")),
        ])
        .unwrap();
    });
    assert_eq!(
        chain_rules(&ns, false),
        vec![
            "-A INPUT-AUTO -s 198.51.100.9/32 -m comment --comment \"ssh brute force\" -j DROP",
            "-A INPUT-AUTO -s 203.0.113.0/24 -j LOG --log-prefix \"autoblock: \"",
            "-A INPUT-AUTO -s 192.0.2.0/25 -j LOG --log-prefix \"autoblock: \"",
            "-A INPUT-AUTO -s 192.0.2.0/25 -j DROP",
            "-A INPUT-AUTO -s 198.18.0.0/15 -j REJECT --reject-with icmp-port-unreachable",
        ]
    );
    assert_eq!(
        chain_rules(&ns, true),
        vec![
            "-A INPUT-AUTO -s 2001:db8::/60 -j LOG --log-prefix \"autoblock: \"",
            "-A INPUT-AUTO -s 2001:db8::/60 -j DROP",
            "-A INPUT-AUTO -s 2001:db8:5::1/128 -j REJECT --reject-with icmp6-port-unreachable",
        ]
    );
    // What autoblock lists back is what it wrote.
    let listed = ns.run(|| ctl(Config::default()).list().unwrap());
    let shown: Vec<(String, &str, Option<String>)> = listed
        .iter()
        .map(|l| (l.net.to_string(), l.action.as_str(), l.comment.clone()))
        .collect();
    assert_eq!(
        shown,
        vec![
            (
                "198.51.100.9/32".into(),
                "drop",
                Some("ssh brute force".into())
            ),
            ("203.0.113.0/24".into(), "log", None),
            ("192.0.2.0/25".into(), "log-drop", None),
            ("198.18.0.0/15".into(), "reject", None),
            ("2001:db8::/60".into(), "log-drop", None),
            ("2001:db8:5::1/128".into(), "reject", None),
        ]
    );
    assert_iptables_safe(&ns);
}

#[test]
fn save_restore_round_trips_and_restored_rules_are_read_back() {
    let ns = Netns::new();
    ns.run(|| {
        ctl(Config::default())
            .block(&[
                Entry::new(net("198.51.100.9"))
                    .with_comment("a \"quoted\" comment")
                    .with_timeout(std::time::Duration::from_secs(3600)),
                Entry::new(net("2001:db8:1::/48")).with_comment("v6"),
            ])
            .unwrap()
    });
    let v4 = iptables_save(&ns);
    let v6 = ip6tables_save(&ns);
    iptables_restore_test(&ns, Family::V4, &v4);
    iptables_restore_test(&ns, Family::V6, &v6);
    // Restore into a new namespace, as the iptables service does at boot: the comment
    // becomes an xt comment match, which autoblock must read back with its expiry.
    let fresh = Netns::new();
    autoblock_tests::tool_with_input(&fresh, &["iptables-nft-restore"], &v4);
    autoblock_tests::tool_with_input(&fresh, &["ip6tables-nft-restore"], &v6);
    let before = ns.run(|| ctl(Config::default()).list().unwrap());
    let after = fresh.run(|| ctl(Config::default()).list().unwrap());
    assert_eq!(before.len(), 2);
    assert_eq!(before, after);
    assert!(after[0].expires.is_some());
    assert_eq!(after[0].comment.as_deref(), Some("a \"quoted\" comment"));
    // Blocking the same entries again on the restored rules changes nothing.
    let r = fresh.run(move || {
        let e: Vec<Entry> = before
            .iter()
            .map(|l| Entry {
                net: l.net,
                comment: l.comment.clone(),
                expires: l.expires,
            })
            .collect();
        ctl(Config::default()).block(&e).unwrap()
    });
    assert_eq!(r.unchanged.len(), 2, "{r:?}");
}

#[test]
fn packets_from_blocked_sources_are_dropped_and_counted() {
    let bed = TestBed::new();
    let blocked4: IpAddr = addr::V4_BLOCKED.into();
    let same24: IpAddr = addr::V4_SAME_24.into();
    let blocked6: IpAddr = addr::V6_BLOCKED.into();
    let same48: IpAddr = addr::V6_SAME_48.into();
    let free4: IpAddr = addr::V4_UNBLOCKED.into();
    let free6: IpAddr = addr::V6_UNBLOCKED.into();
    for src in [blocked4, same24, blocked6, same48, free4, free6] {
        assert!(bed.send_udp(src, 0), "bed broken before blocking: {src}");
    }
    bed.host().run(move || {
        ctl(Config::default())
            .block(&[
                Entry::new(Net::host(blocked4)),
                Entry::new(net("2001:db8:1::/48")),
            ])
            .unwrap()
    });
    assert!(
        !bed.send_udp(blocked4, 0),
        "blocked IPv4 source got through"
    );
    assert!(
        bed.send_udp(same24, 0),
        "an unblocked neighbour was dropped"
    );
    assert!(
        !bed.send_udp(blocked6, 0),
        "blocked IPv6 source got through"
    );
    assert!(
        !bed.send_udp(same48, 0),
        "a source inside the blocked /48 got through"
    );
    assert!(bed.send_udp(free4, 0));
    assert!(bed.send_udp(free6, 0));
    let listed = bed.host().run(|| ctl(Config::default()).list().unwrap());
    for l in &listed {
        assert!(l.packets >= 1, "counter did not move for {}: {l:?}", l.net);
    }
    let v6 = listed
        .iter()
        .find(|l| l.net == net("2001:db8:1::/48"))
        .unwrap();
    assert!(v6.packets >= 2, "{v6:?}");
    // Unblock: traffic flows again.
    bed.host().run(move || {
        ctl(Config::default())
            .unblock(&[Net::host(blocked4)])
            .unwrap()
    });
    assert!(bed.send_udp(blocked4, 0), "unblocked source still dropped");
    assert!(!bed.send_udp(blocked6, 0));
}

#[test]
fn block_and_unblock_are_idempotent() {
    let ns = Netns::new();
    let (a, b, c, d, e) = ns.run(|| {
        let mut c = ctl(Config::default());
        let e = [
            Entry::new(net("198.51.100.9")),
            Entry::new(net("198.51.100.9/32")),
        ];
        let a = c.block(&e).unwrap();
        let b = c.block(&e).unwrap();
        let cc = c.unblock(&[net("198.51.100.9")]).unwrap();
        let d = c.unblock(&[net("198.51.100.9")]).unwrap();
        let e = c.init().map(|_| c.status().unwrap());
        (a, b, cc, d, e)
    });
    assert_eq!(a.changed.len(), 1, "duplicates in one request are merged");
    assert!(b.changed.is_empty() && b.unchanged.len() == 1);
    assert_eq!(c.changed.len(), 1);
    assert!(d.changed.is_empty() && d.unchanged.len() == 1);
    let st = e.unwrap();
    assert!(st
        .iter()
        .all(|s| s.chain_exists && s.jump_first && s.entries == 0));
    assert!(chain_rules(&ns, false).is_empty());
}

#[test]
fn allowlisted_and_bad_input_change_nothing() {
    let ns = Netns::new();
    tool(&ns, &["ip", "addr", "add", "192.0.2.1/24", "dev", "lo"]);
    ns.run(|| {
        ctl(Config::default())
            .block(&[Entry::new(net("198.51.100.9"))])
            .unwrap()
    });
    let before = (iptables_save(&ns), ip6tables_save(&ns));
    let errs = ns.run(|| {
        let mut c = ctl(Config::default().allow([net("203.0.113.0/24")]));
        vec![
            c.block(&[
                Entry::new(net("198.51.100.10")),
                Entry::new(net("127.0.0.1")),
            ])
            .unwrap_err()
            .to_string(),
            c.block(&[Entry::new(net("192.0.2.0/24"))])
                .unwrap_err()
                .to_string(),
            c.block(&[Entry::new(net("203.0.113.7"))])
                .unwrap_err()
                .to_string(),
            c.block(&[Entry::new(net("::1"))]).unwrap_err().to_string(),
            c.block(&[Entry::new(net("198.51.100.11")).with_comment("two\nlines")])
                .unwrap_err()
                .to_string(),
        ]
    });
    assert!(errs[0].contains("127.0.0.1/32"), "{errs:?}");
    assert!(
        errs[1].contains("192.0.2.0/24") && errs[1].contains("host"),
        "{errs:?}"
    );
    assert!(errs[2].contains("203.0.113.7/32"), "{errs:?}");
    assert!(errs[3].contains("::1/128"), "{errs:?}");
    assert!(errs[4].contains("control"), "{errs:?}");
    assert_eq!(
        (iptables_save(&ns), ip6tables_save(&ns))
            .0
            .lines()
            .filter(|l| l.starts_with("-A"))
            .count(),
        before.0.lines().filter(|l| l.starts_with("-A")).count()
    );
    assert_eq!(
        chain_rules(&ns, false),
        vec!["-A INPUT-AUTO -s 198.51.100.9/32 -j DROP"]
    );

    // The CLI: exit code 2, the offending input named, the kernel unchanged.
    let out = ns.autoblock(&["block", "198.51.100.20", "198.51.100.1/24"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("198.51.100.0/24"));
    let out = ns.autoblock_with_input(
        &["block", "-f", "-"],
        "# list\n198.51.100.30\nnot-an-address\n198.51.100.31 timeout=soon\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-:3:") && err.contains("-:4:"), "{err}");
    assert_eq!(
        chain_rules(&ns, false),
        vec!["-A INPUT-AUTO -s 198.51.100.9/32 -j DROP"]
    );
    let out = ns.autoblock_with_input(
        &["block", "--skip-invalid", "-f", "-"],
        "198.51.100.30\nnot-an-address\n",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(chain_rules(&ns, false).len(), 2);
}

#[test]
fn a_racing_iptables_writer_loses_nothing() {
    let ns = Netns::new();
    ns.run(|| ctl(Config::default()).init().unwrap());
    // A large block in one thread of the namespace while iptables-nft appends rules to INPUT
    // from another process: generation checks make autoblock re-plan instead of clobbering.
    let entries: Vec<Entry> = (0..20_000u32)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            Entry::new(Net::host(ip.into()))
        })
        .collect();
    let writer = {
        let mut cmd = std::process::Command::new("sh");
        cmd.args([
            "-c",
            "for i in $(seq 1 40); do iptables-nft -A INPUT -s 172.16.0.$i -j ACCEPT || exit 1; done",
        ]);
        ns.spawn(cmd).unwrap()
    };
    let report = ns.run(move || ctl(Config::default()).block(&entries).unwrap());
    let status = writer.wait_with_output().unwrap();
    assert!(status.status.success());
    assert_eq!(report.changed.len(), 20_000);
    let input = iptables(&ns, &["-S", "INPUT"]);
    assert_eq!(
        input.lines().filter(|l| l.contains("-j ACCEPT")).count(),
        40,
        "{input}"
    );
    assert_eq!(
        input.lines().find(|l| l.starts_with("-A")),
        Some("-A INPUT -j INPUT-AUTO")
    );
    assert_eq!(chain_rules(&ns, false).len(), 20_000);
    assert_iptables_safe(&ns);
}

#[test]
fn the_pre_destroy_delete_path_works_on_this_kernel_too() {
    let ns = Netns::new();
    let (probed, r1, r2) = ns.run(|| {
        let probed = ctl(Config::default()).uses_destroy();
        let mut c = ctl(Config::default().use_destroy(false));
        assert!(!c.uses_destroy());
        c.block(&[
            Entry::new(net("198.51.100.9")),
            Entry::new(net("2001:db8::9")),
        ])
        .unwrap();
        let r1 = c
            .unblock(&[net("198.51.100.9"), net("2001:db8::9")])
            .unwrap();
        let r2 = c.unblock(&[net("198.51.100.9")]).unwrap();
        c.block(&[Entry::new(net("198.51.100.9"))]).unwrap();
        c.remove().unwrap();
        (probed, r1, r2)
    });
    assert_eq!(
        probed,
        autoblock_tests::kernel_at_least(6, 3),
        "DESTROY messages exist from Linux 6.3 on; the probe must say so on this kernel"
    );
    assert_eq!(r1.changed.len(), 2);
    assert_eq!(r2.unchanged.len(), 1);
    assert!(!iptables(&ns, &["-S"]).contains("INPUT-AUTO"));
}

#[test]
fn flush_keeps_structure_and_remove_takes_it_away() {
    let ns = Netns::new();
    tool(
        &ns,
        &[
            "iptables-nft",
            "-A",
            "INPUT",
            "-s",
            "10.32.1.0/24",
            "-j",
            "ACCEPT",
        ],
    );
    let (n, st) = ns.run(|| {
        let mut c = ctl(Config::default());
        c.block(&[
            Entry::new(net("198.51.100.9")),
            Entry::new(net("2001:db8::9")),
        ])
        .unwrap();
        let n = c.flush().unwrap();
        (n, c.status().unwrap())
    });
    assert_eq!(n, 2);
    assert!(st
        .iter()
        .all(|s| s.chain_exists && s.entries == 0 && s.jump_first));
    ns.run(|| ctl(Config::default()).remove().unwrap());
    let s = iptables(&ns, &["-S"]);
    assert!(!s.contains("INPUT-AUTO"), "{s}");
    assert!(
        s.contains("-A INPUT -s 10.32.1.0/24 -j ACCEPT"),
        "other rules stay: {s}"
    );
}
