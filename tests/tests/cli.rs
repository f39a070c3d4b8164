//! The `autoblock` binary run as a process inside fresh network namespaces: it executes no
//! other program, documents its exit codes, and its output is what the kernel holds.

use autoblock_tests::{autoblock_bin, iptables, output_text, tool, Netns};

#[test]
fn the_binary_executes_no_other_program() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let bin = autoblock_bin();
    let out = ns.cmd(&[
        "strace".as_ref(),
        "-f".as_ref(),
        "-qq".as_ref(),
        "-e".as_ref(),
        "trace=execve,execveat".as_ref(),
        "-o".as_ref(),
        trace.as_os_str(),
        bin.as_os_str(),
        "--no-mirror".as_ref(),
        "block".as_ref(),
        "198.51.100.9".as_ref(),
        "2001:db8::/48".as_ref(),
        "--comment".as_ref(),
        "strace".as_ref(),
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let text = std::fs::read_to_string(&trace).unwrap();
    let execs: Vec<&str> = text.lines().filter(|l| l.contains("execve")).collect();
    assert_eq!(
        execs.len(),
        1,
        "expected only the binary's own exec:\n{text}"
    );
    assert!(execs[0].contains(bin.to_str().unwrap()), "{text}");
    // And it did its job.
    assert!(iptables(&ns, &["-S", "INPUT-AUTO"]).contains("-s 198.51.100.9/32"));
}

#[test]
fn init_block_list_unblock_round_trip_with_json() {
    let ns = Netns::new();
    let run = |args: &[&str]| {
        let out = ns.autoblock(args);
        assert!(out.status.success(), "{args:?}: {}", output_text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["--no-mirror", "init"]);
    run(&[
        "--no-mirror",
        "block",
        "203.0.113.7",
        "198.51.100.0/24",
        "2001:db8::/48",
        "--comment",
        "ssh brute force",
        "--timeout",
        "1h",
    ]);
    let json = run(&["--no-mirror", "list", "--json"]);
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let nets: Vec<&str> = rows.iter().map(|r| r["net"].as_str().unwrap()).collect();
    assert_eq!(nets, ["203.0.113.7/32", "198.51.100.0/24", "2001:db8::/48"]);
    assert!(rows.iter().all(|r| r["comment"] == "ssh brute force"));
    assert!(rows.iter().all(|r| r["expires"].is_string()));
    let listed = iptables(&ns, &["-L", "INPUT-AUTO", "-n", "-v"]);
    assert!(
        listed.contains("203.0.113.7") && listed.contains("ssh brute force"),
        "{listed}"
    );
    run(&["--no-mirror", "unblock", "203.0.113.7"]);
    let human = run(&["--no-mirror", "list"]);
    assert!(!human.contains("203.0.113.7"), "{human}");
    let status = run(&["--no-mirror", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    assert_eq!(v["families"][0]["entries"], 1);
    assert_eq!(v["families"][1]["entries"], 1);
}

#[test]
fn help_documents_exit_codes_and_bad_usage_exits_2() {
    let ns = Netns::new();
    let out = ns.autoblock_raw(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Exit codes") && text.contains("2  bad input"),
        "{text}"
    );
    let out = ns.autoblock_raw(&["--no-mirror", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = ns.autoblock_raw(&["--no-mirror", "block", "--timeout", "soon", "192.0.2.1"]);
    assert_eq!(out.status.code(), Some(2));
    let out = ns.autoblock_raw(&["--no-mirror", "block"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    // Nothing reached the kernel.
    assert!(!tool(&ns, &["nft", "list", "ruleset"]).contains("INPUT-AUTO"));
}
