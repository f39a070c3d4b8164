//! The sysconfig mirror through the binary: the files carry exactly what `iptables-save`
//! prints for autoblock's chain, a restore of them in a new namespace (the boot, simulated)
//! brings the bans back, and a malformed file stops the command before the kernel changes.

use autoblock_tests::{addr, iptables, output_text, tool, tool_with_input, Netns, TestBed};

fn ok(ns: &Netns, args: &[&str]) {
    let out = ns.autoblock(args);
    assert!(out.status.success(), "{args:?}: {}", output_text(&out));
}

fn auto_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("INPUT-AUTO"))
        .map(|l| l.trim_end().to_owned())
        .collect()
}

#[test]
fn mirrored_files_match_iptables_save_and_survive_a_simulated_reboot() {
    let bed = TestBed::new();
    let ns = bed.host();
    let dir = ns.sysconfig_dir().to_owned();
    let mysql =
        "-A INPUT -s 10.32.1.0/24 -p tcp -m state --state NEW -m tcp --dport 3306 -j ACCEPT";
    std::fs::write(
        dir.join("iptables"),
        format!("# admin's file\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{mysql}\nCOMMIT\n"),
    )
    .unwrap();
    ok(
        ns,
        &[
            "block",
            "198.51.100.9",
            "203.0.113.0/24",
            "--comment",
            "ssh brute force",
            "--timeout",
            "1h",
        ],
    );
    ok(ns, &["--action", "log-drop", "block", "2001:db8:1::/48"]);
    let v4 = std::fs::read_to_string(dir.join("iptables")).unwrap();
    let v6 = std::fs::read_to_string(dir.join("ip6tables")).unwrap();
    assert!(v4.starts_with("# admin's file\n"), "{v4}");
    assert!(v4.contains(mysql), "{v4}");
    // Byte for byte what iptables-save prints for the chain, declaration and jump.
    assert_eq!(
        auto_lines(&v4),
        auto_lines(&tool(ns, &["iptables-nft-save"]))
    );
    assert_eq!(
        auto_lines(&v6),
        auto_lines(&tool(ns, &["ip6tables-nft-save"]))
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("iptables"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // The boot: a new namespace restores the files the way the iptables service does.
    let fresh = TestBed::new();
    tool_with_input(fresh.host(), &["iptables-nft-restore"], &v4);
    tool_with_input(fresh.host(), &["ip6tables-nft-restore"], &v6);
    let listed = fresh.host().autoblock(&["--no-mirror", "list", "--json"]);
    assert!(listed.status.success(), "{}", output_text(&listed));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["net"], "198.51.100.9/32");
    assert!(
        rows[0]["expires"].is_string(),
        "expiry survives the restore: {rows:?}"
    );
    assert_eq!(rows[0]["comment"], "ssh brute force");
    assert_eq!(rows[2]["action"], "log-drop");
    assert!(
        !fresh.send_udp(addr::V4_BLOCKED.into(), 0),
        "restored ban does not drop"
    );
    assert!(!fresh.send_udp(addr::V6_BLOCKED.into(), 0));
    assert!(fresh.send_udp(addr::V4_UNBLOCKED.into(), 0));

    // Unblocking rewrites only autoblock's lines.
    ok(ns, &["unblock", "198.51.100.9", "203.0.113.0/24"]);
    let v4 = std::fs::read_to_string(dir.join("iptables")).unwrap();
    assert!(v4.contains(mysql) && !v4.contains("198.51.100.9"), "{v4}");
}

#[test]
fn a_malformed_file_stops_the_command_before_the_kernel_changes() {
    let ns = Netns::new();
    let dir = ns.sysconfig_dir().to_owned();
    std::fs::write(
        dir.join("iptables"),
        "*filter\n:INPUT ACCEPT [0:0]\n-A NOPE -j DROP\nCOMMIT\n",
    )
    .unwrap();
    let before = std::fs::read(dir.join("iptables")).unwrap();
    let out = ns.autoblock(&["block", "198.51.100.9"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("iptables:3"), "file and line named: {err}");
    assert_eq!(
        std::fs::read(dir.join("iptables")).unwrap(),
        before,
        "file untouched"
    );
    let listing = tool(&ns, &["nft", "list", "ruleset"]);
    assert!(
        !listing.contains("198.51.100.9"),
        "kernel untouched: {listing}"
    );
    // --no-mirror bypasses the file on purpose.
    ok(&ns, &["--no-mirror", "block", "198.51.100.9"]);
    assert!(iptables(&ns, &["-S", "INPUT-AUTO"]).contains("198.51.100.9/32"));
}
