//! Self-tests of the test harness: namespaces are fresh, isolated and gone
//! after drop; the packet test bed delivers UDP for both families and sees
//! a drop; the tool helpers and the HARD SAFETY RULE check catch failures.
//!
//! These tests do not run the `autoblock` binary; the end-to-end tests of
//! the binary live in their own files.

use std::net::{IpAddr, UdpSocket};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use autoblock_tests::{
    addr, assert_iptables_safe, bare_verdict_rules, iptables, iptables_save, locate_autoblock, nft,
    nft_json, normalize_save, tool, tool_with_input, try_tool, Netns, TestBed,
};

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = panic::catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        String::from("<non-string panic>")
    }
}

fn own_netns_inode() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .expect("stat own netns")
        .ino()
}

#[test]
fn namespace_is_fresh_and_empty() {
    let ns = Netns::new();
    assert_eq!(nft(&ns, &["list", "ruleset"]).trim(), "");
    assert_eq!(iptables_save(&ns).trim(), "");
    let links = tool(&ns, &["ip", "-o", "link", "show"]);
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(str::trim))
        .collect();
    assert_eq!(names, ["lo"], "a fresh namespace has only lo:\n{links}");
    assert!(links.contains("UP"), "lo must be up:\n{links}");
}

#[test]
fn namespaces_are_distinct_and_closures_run_inside() {
    let a = Netns::new();
    let b = Netns::new();
    assert_ne!(a.inode(), b.inode());
    assert_ne!(a.inode(), own_netns_inode());
    assert_ne!(b.inode(), own_netns_inode());
    assert_eq!(a.run(own_netns_inode), a.inode());
    assert_eq!(b.run(own_netns_inode), b.inode());
    // A child process inherits the namespace of the thread that spawned it.
    let link = tool(&a, &["readlink", "/proc/self/ns/net"]);
    assert_eq!(link.trim(), format!("net:[{}]", a.inode()));
    let path = std::fs::read_link(a.path()).expect("readlink of Netns::path");
    assert_eq!(path.to_string_lossy(), format!("net:[{}]", a.inode()));
}

#[test]
fn loopback_carries_udp_inside_a_namespace() {
    let ns = Netns::new();
    let got = ns.run(|| {
        let rx = UdpSocket::bind("127.0.0.1:0")?;
        rx.set_read_timeout(Some(Duration::from_secs(2)))?;
        let tx = UdpSocket::bind("127.0.0.1:0")?;
        tx.send_to(b"ping", rx.local_addr()?)?;
        let mut buf = [0u8; 8];
        let (n, _) = rx.recv_from(&mut buf)?;
        Ok::<_, std::io::Error>(buf[..n].to_vec())
    });
    assert_eq!(got.expect("UDP over lo"), b"ping");
}

#[test]
fn panics_in_closures_reach_the_caller_and_the_namespace_survives() {
    let ns = Netns::new();
    let msg = panic_message(|| ns.run(|| panic!("boom inside")));
    assert!(msg.contains("boom inside"), "{msg}");
    assert_eq!(ns.run(|| 41 + 1), 42);
}

#[test]
fn namespace_is_gone_after_drop() {
    let keeper = Netns::new();
    let doomed = Netns::new();
    let tid = doomed.tid();
    // One veth end in each: destroying a namespace destroys its end, and a
    // veth pair dies with either end, so the keeper's end vanishing proves
    // the doomed namespace was really freed by the kernel.
    tool(
        &keeper,
        &[
            "ip",
            "link",
            "add",
            "ab-keep",
            "type",
            "veth",
            "peer",
            "name",
            "ab-doom",
            "netns",
            &tid.to_string(),
        ],
    );
    tool(&doomed, &["ip", "link", "show", "ab-doom"]);
    tool(&keeper, &["ip", "link", "show", "ab-keep"]);
    let task = format!("/proc/{}/task/{tid}", std::process::id());
    assert!(Path::new(&task).exists());
    drop(doomed);
    assert!(
        !Path::new(&task).exists(),
        "the namespace thread must have ended"
    );
    // Namespace cleanup runs in a kernel work queue, slower when many tests
    // create and destroy namespaces at once: poll, with a generous bound.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = try_tool(&keeper, &["ip", "link", "show", "ab-keep"]);
        if !out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the veth end in the keeper still exists 30 s after the peer namespace was dropped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn test_bed_delivers_udp_from_every_source() {
    let bed = TestBed::new();
    for src in addr::sources() {
        assert!(
            bed.send_udp(src, 0),
            "UDP from {src} did not reach the host"
        );
    }
    // A fixed port works too, and twice in a row.
    assert!(bed.send_udp(addr::V4_BLOCKED.into(), 4242));
    assert!(bed.send_udp(addr::V6_BLOCKED.into(), 4242));
}

#[test]
fn test_bed_sees_a_drop_of_one_source() {
    let bed = TestBed::new();
    let ruleset = format!(
        "table inet harness {{\n\
           chain input {{\n\
             type filter hook input priority 0; policy accept;\n\
             ip saddr {} counter drop\n\
             ip6 saddr {} counter drop\n\
           }}\n\
         }}\n",
        addr::V4_BLOCKED,
        addr::V6_BLOCKED
    );
    tool_with_input(bed.host(), &["nft", "-f", "-"], &ruleset);

    let started = Instant::now();
    assert!(
        !bed.send_udp(addr::V4_BLOCKED.into(), 0),
        "dropped v4 source got through"
    );
    assert!(
        !bed.send_udp(addr::V6_BLOCKED.into(), 0),
        "dropped v6 source got through"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "drops must time out quickly"
    );
    for src in [
        IpAddr::V4(addr::V4_SAME_24),
        IpAddr::V4(addr::V4_UNBLOCKED),
        IpAddr::V6(addr::V6_SAME_64),
        IpAddr::V6(addr::V6_UNBLOCKED),
    ] {
        assert!(bed.send_udp(src, 0), "{src} must still reach the host");
    }

    // Both drop rules counted exactly the one packet each.
    let json = nft_json(bed.host(), &["list", "chain", "inet", "harness", "input"]);
    let packets: Vec<u64> = json["nftables"]
        .as_array()
        .expect("nftables array")
        .iter()
        .filter_map(|item| item.get("rule"))
        .flat_map(|rule| rule["expr"].as_array().cloned().unwrap_or_default())
        .filter_map(|expr| expr.get("counter").and_then(|c| c["packets"].as_u64()))
        .collect();
    assert_eq!(packets, [1, 1], "{json}");
    // And the outside namespace saw nothing of this.
    assert_eq!(nft(bed.outside(), &["list", "ruleset"]).trim(), "");
}

#[test]
fn tool_failure_fails_the_test_with_stderr() {
    let ns = Netns::new();
    let out = try_tool(&ns, &["iptables-nft", "-S", "NO-SUCH-CHAIN"]);
    assert!(!out.status.success());
    let msg = panic_message(|| {
        iptables(&ns, &["-S", "NO-SUCH-CHAIN"]);
    });
    assert!(msg.contains("iptables-nft -S NO-SUCH-CHAIN"), "{msg}");
    assert!(msg.contains("stderr:"), "{msg}");
    let msg = panic_message(|| {
        tool(&ns, &["autoblock-no-such-program"]);
    });
    assert!(
        msg.contains("cannot run `autoblock-no-such-program`"),
        "{msg}"
    );
}

#[test]
fn safety_check_accepts_the_rhel_recipe() {
    let ns = Netns::new();
    iptables(&ns, &["-N", "INPUT-AUTO"]);
    iptables(&ns, &["-I", "INPUT", "1", "-j", "INPUT-AUTO"]);
    iptables(
        &ns,
        &["-A", "INPUT-AUTO", "-s", "198.51.100.9", "-j", "DROP"],
    );
    iptables(
        &ns,
        &[
            "-A",
            "INPUT-AUTO",
            "-s",
            "203.0.113.0/24",
            "-m",
            "comment",
            "--comment",
            "a b",
            "-j",
            "DROP",
        ],
    );
    tool(&ns, &["ip6tables-nft", "-N", "INPUT-AUTO"]);
    tool(
        &ns,
        &[
            "ip6tables-nft",
            "-A",
            "INPUT-AUTO",
            "-s",
            "2001:db8:1::/48",
            "-j",
            "DROP",
        ],
    );
    let rules = iptables(&ns, &["-S", "INPUT-AUTO"]);
    assert!(
        rules.contains("-A INPUT-AUTO -s 198.51.100.9/32 -j DROP"),
        "{rules}"
    );
    assert_iptables_safe(&ns);
}

#[test]
fn safety_check_rejects_a_bare_drop() {
    let ns = Netns::new();
    iptables(&ns, &["-N", "INPUT-AUTO"]);
    iptables(&ns, &["-A", "INPUT-AUTO", "-j", "DROP"]);
    let msg = panic_message(|| assert_iptables_safe(&ns));
    assert!(msg.contains("-A INPUT-AUTO -j DROP"), "{msg}");
}

#[test]
fn safety_check_rejects_a_set_lookup_in_an_iptables_table() {
    // DESIGN's measured hazard: an nft set lookup inside `ip filter`, which
    // iptables-nft cannot represent.
    let ns = Netns::new();
    iptables(&ns, &["-N", "INPUT-AUTO"]);
    tool_with_input(
        &ns,
        &["nft", "-f", "-"],
        "add set ip filter bad { type ipv4_addr; elements = { 198.51.100.9 } }\n\
         add rule ip filter INPUT-AUTO ip saddr @bad drop\n",
    );
    let msg = panic_message(|| assert_iptables_safe(&ns));
    assert!(msg.contains("-A INPUT-AUTO -j DROP"), "{msg}");
}

#[test]
fn bare_verdicts_are_recognised() {
    let text = "*filter\n\
        :INPUT ACCEPT [0:0]\n\
        -A INPUT -j INPUT-AUTO\n\
        -A INPUT-AUTO -j DROP\n\
        -A INPUT-AUTO -m comment --comment \"only -s a comment\" -j REJECT\n\
        -A INPUT-AUTO -s 198.51.100.9/32 -j DROP\n\
        -A INPUT-AUTO -s 198.51.100.9/32 -m comment --comment \"x\" -j DROP\n\
        -A INPUT -i lo -j ACCEPT\n\
        COMMIT\n";
    assert_eq!(
        bare_verdict_rules(text),
        [
            "-A INPUT-AUTO -j DROP",
            "-A INPUT-AUTO -m comment --comment \"only -s a comment\" -j REJECT",
        ]
    );
}

#[test]
fn save_text_is_normalized() {
    let text = "# Generated by iptables-nft-save v1.8.9 on Mon\n\
        *filter\n\
        :INPUT ACCEPT [12:345]\n\
        :INPUT-AUTO - [0:0]\n\
        -A INPUT -j INPUT-AUTO\n\
        COMMIT\n\
        # Completed on Mon\n";
    assert_eq!(
        normalize_save(text),
        [
            "*filter",
            ":INPUT ACCEPT",
            ":INPUT-AUTO -",
            "-A INPUT -j INPUT-AUTO",
            "COMMIT"
        ]
    );
}

#[test]
fn autoblock_binary_is_located_next_to_the_profile() {
    let exe = Path::new("/w/target/debug/deps/harness-0123abcd");
    assert_eq!(
        locate_autoblock(None, exe),
        Path::new("/w/target/debug/autoblock")
    );
    assert_eq!(
        locate_autoblock(Some("".into()), exe),
        Path::new("/w/target/debug/autoblock")
    );
    assert_eq!(
        locate_autoblock(Some("/opt/ab".into()), exe),
        Path::new("/opt/ab")
    );
    assert_eq!(
        locate_autoblock(None, Path::new("/w/target/release/xyz")),
        Path::new("/w/target/release/autoblock")
    );
}

#[test]
fn autoblock_runs_inside_the_namespace_with_its_own_mirror_dir() {
    // Uses the real binary: `cargo xtask test` builds it before the tests.
    let ns = Netns::new();
    ns.autoblock_ok(&["block", "198.51.100.9"]);
    let rules = iptables(&ns, &["-S", "INPUT-AUTO"]);
    assert!(
        rules.contains("-A INPUT-AUTO -s 198.51.100.9/32"),
        "{rules}"
    );
    // The mirror went to the namespace's own directory, nowhere else.
    assert!(ns.sysconfig_dir().exists());
    let other = Netns::new();
    assert_ne!(ns.sysconfig_dir(), other.sysconfig_dir());
    assert!(!iptables(&other, &["-S"]).contains("INPUT-AUTO"));
    let msg = panic_message(|| {
        ns.autoblock_ok(&["block", "not-an-address"]);
    });
    assert!(msg.contains("exit status: 2"), "{msg}");
    assert!(msg.contains("not-an-address"), "{msg}");
}

#[test]
fn spawned_children_live_in_the_namespace() {
    use std::os::unix::fs::MetadataExt;
    let ns = Netns::new();
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("30");
    let mut child = ns.spawn(cmd).expect("spawn sleep in the namespace");
    let inode = std::fs::metadata(format!("/proc/{}/ns/net", child.id())).map(|m| m.ino());
    child.kill().expect("kill the child");
    child.wait().expect("reap the child");
    assert_eq!(inode.expect("stat the child's netns"), ns.inode());
}
