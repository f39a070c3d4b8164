//! Persistence through the binary, each test in fresh network namespaces: `check` against
//! the sysconfig files, `restore` of the chain from them (expired entries dropped from the
//! kernel and the file, a malformed file changing nothing), and the set layout's
//! `save --file` → fresh namespace → `restore --file` round trip.
//!
//! It never touches this machine's own namespace nor `/etc/sysconfig` (every command gets
//! the namespace's own sysconfig directory).

use std::process::Output;
use std::time::{Duration, SystemTime};

use autoblock_tests::{iptables, output_text, Netns};

fn run(ns: &Netns, args: &[&str]) -> Output {
    ns.autoblock(args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn check_json(ns: &Netns, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = extra.to_vec();
    args.extend_from_slice(&["check", "--json"]);
    let out = run(ns, &args);
    let v = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("check --json: {e}\n{}", output_text(&out)));
    (out.status.code(), v)
}

fn kinds(v: &serde_json::Value) -> Vec<String> {
    v["differences"]
        .as_array()
        .unwrap_or_else(|| panic!("no differences array: {v}"))
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["kind"].as_str().unwrap_or("?"),
                d["entry"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

#[test]
fn check_is_quiet_in_step_and_reports_an_out_of_band_delete() {
    let ns = Netns::new();
    ns.autoblock_ok(&[
        "block",
        "198.51.100.9",
        "203.0.113.0/24",
        "--comment",
        "ssh brute force",
        "--timeout",
        "1h",
    ]);
    ns.autoblock_ok(&["block", "2001:db8:1::/48"]);
    let out = run(&ns, &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(stdout(&out).contains("in step"), "{}", output_text(&out));
    let (code, v) = check_json(&ns, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(v["in_step"], true, "{v}");

    // Someone deletes a rule behind autoblock's back.
    let n = rule_number(&ns, "198.51.100.9/32");
    iptables(&ns, &["-D", "INPUT-AUTO", &n]);
    let out = run(&ns, &["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        stdout(&out).contains("ipv4 missing-in-kernel 198.51.100.9/32"),
        "{}",
        output_text(&out)
    );
    let (code, v) = check_json(&ns, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(v["in_step"], false);
    assert_eq!(kinds(&v), ["missing-in-kernel 198.51.100.9/32"], "{v}");

    // ... and the jump.
    iptables(&ns, &["-D", "INPUT", "-j", "INPUT-AUTO"]);
    let (_, v) = check_json(&ns, &[]);
    let k = kinds(&v);
    assert!(k.contains(&"jump-not-first-in-kernel -".to_owned()), "{v}");

    // A hand edit of the file: another comment, and a broken file.
    ns.autoblock_ok(&["restore"]);
    let (code, _) = check_json(&ns, &[]);
    assert_eq!(code, Some(0), "restore repaired the kernel");
    let path = ns.sysconfig_dir().join("iptables");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("ssh brute force", "edited")).unwrap();
    let (_, v) = check_json(&ns, &[]);
    assert_eq!(
        kinds(&v),
        [
            "comment-differs 198.51.100.9/32",
            "comment-differs 203.0.113.0/24"
        ],
        "{v}"
    );
    std::fs::write(
        &path,
        "*filter\n:INPUT ACCEPT [0:0]\n-A NOPE -j DROP\nCOMMIT\n",
    )
    .unwrap();
    let out = run(&ns, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("iptables:3"), "{}", output_text(&out));
}

/// The number `iptables -D CHAIN N` takes for the kernel's rule of `net`.
fn rule_number(ns: &Netns, net: &str) -> String {
    let rules = iptables(ns, &["-S", "INPUT-AUTO"]);
    // Line 0 is `-N INPUT-AUTO`, so the line index is the rule number.
    rules
        .lines()
        .position(|l| l.contains(net))
        .unwrap_or_else(|| panic!("{net} not in {rules}"))
        .to_string()
}

const FILE_HEAD: &str = "# admin's file\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:INPUT-AUTO - [0:0]\n-A INPUT -j INPUT-AUTO\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n";

#[test]
fn restore_applies_the_live_entries_and_drops_expired_ones_from_kernel_and_file() {
    let ns = Netns::new();
    let path = ns.sysconfig_dir().join("iptables");
    std::fs::write(
        &path,
        format!(
            "{FILE_HEAD}-A INPUT-AUTO -s 198.51.100.7/32 -m comment --comment \"expires=2020-01-01T00:00:00Z; old\" -j DROP\n\
             -A INPUT-AUTO -s 198.51.100.9/32 -m comment --comment \"expires=2099-01-01T00:00:00Z; live\" -j DROP\n\
             -A INPUT-AUTO -s 203.0.113.0/24 -j DROP\n\
             COMMIT\n"
        ),
    )
    .unwrap();
    let out = ns.autoblock_ok(&["restore"]);
    assert!(out.contains("1 expired entry dropped"), "{out}");
    let kernel = iptables(&ns, &["-S", "INPUT-AUTO"]);
    assert!(kernel.contains("198.51.100.9/32"), "{kernel}");
    assert!(
        kernel.contains("expires=2099-01-01T00:00:00Z; live"),
        "{kernel}"
    );
    assert!(kernel.contains("203.0.113.0/24"), "{kernel}");
    assert!(
        !kernel.contains("198.51.100.7"),
        "expired entry applied: {kernel}"
    );
    let input = iptables(&ns, &["-S", "INPUT"]);
    assert_eq!(
        input.lines().nth(1),
        Some("-A INPUT -j INPUT-AUTO"),
        "jump first: {input}"
    );
    let file = std::fs::read_to_string(&path).unwrap();
    assert!(
        !file.contains("198.51.100.7"),
        "expired entry kept in the file: {file}"
    );
    assert!(file.contains("198.51.100.9/32"), "{file}");
    assert!(
        file.starts_with(FILE_HEAD),
        "the rest of the file keeps its bytes: {file}"
    );
    let out = run(&ns, &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // Sync semantics: an entry only the kernel has goes.
    ns.autoblock_ok(&["--no-mirror", "block", "198.51.100.44"]);
    let out = ns.autoblock_ok(&["restore"]);
    assert!(out.contains("1 other entry removed"), "{out}");
    assert!(!iptables(&ns, &["-S", "INPUT-AUTO"]).contains("198.51.100.44"));
}

#[test]
fn restore_without_files_refuses_rather_than_emptying_the_chain() {
    let ns = Netns::new();
    ns.autoblock_ok(&["--no-mirror", "block", "198.51.100.9"]);
    let out = run(&ns, &["restore"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing was applied"),
        "{}",
        output_text(&out)
    );
    assert!(iptables(&ns, &["-S", "INPUT-AUTO"]).contains("198.51.100.9/32"));
}

#[test]
fn restore_of_a_malformed_file_changes_nothing() {
    let ns = Netns::new();
    ns.autoblock_ok(&["block", "198.51.100.9"]);
    let path = ns.sysconfig_dir().join("iptables");
    let bad =
        format!("{FILE_HEAD}-A INPUT-AUTO -s 203.0.113.0/24 -j DROP\n-A NOPE -j DROP\nCOMMIT\n");
    std::fs::write(&path, &bad).unwrap();
    let before = iptables(&ns, &["-S"]);
    let out = run(&ns, &["restore"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("iptables:10"), "file and line named: {err}");
    assert!(err.contains("nothing was applied"), "{err}");
    assert_eq!(iptables(&ns, &["-S"]), before, "kernel unchanged");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        bad,
        "file unchanged"
    );
}

fn listed(ns: &Netns) -> Vec<serde_json::Value> {
    let out = ns.autoblock_ok(&["--layout", "set", "list", "--json"]);
    let mut rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    rows.sort_by(|a, b| a["net"].as_str().cmp(&b["net"].as_str()));
    rows
}

fn expiry(v: &serde_json::Value) -> Option<SystemTime> {
    let s = v["expires"].as_str()?;
    autoblock::meta::decode(&format!("expires={s}")).0
}

#[test]
fn set_layout_bans_survive_save_and_restore_into_a_fresh_namespace() {
    let ns = Netns::new();
    let set = |args: &[&str]| {
        let mut a = vec!["--layout", "set"];
        a.extend_from_slice(args);
        ns.autoblock_ok(&a)
    };
    set(&[
        "block",
        "198.51.100.9",
        "--comment",
        "ssh brute force",
        "--timeout",
        "1h",
    ]);
    set(&["block", "198.51.100.10"]);
    set(&["block", "203.0.113.0/24", "--timeout", "10m"]);
    set(&[
        "block",
        "2001:db8:1::/48",
        "--comment",
        "scanner \"quoted\"",
        "--timeout",
        "2h",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bans.save");
    let file_s = file.to_str().unwrap();
    let out = set(&["save", "--file", file_s]);
    assert!(out.contains("saved 4 ban(s)"), "{out}");
    let mut text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("autoblock-bans 1\n"), "{text}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // An entry that expired while the host was down.
    text.push_str("198.51.100.77 1000000000 long gone\n");
    std::fs::write(&file, &text).unwrap();
    assert_eq!(
        run(&ns, &["--layout", "set", "check", "--file", file_s])
            .status
            .code(),
        Some(0),
        "expired entries of the file do not count"
    );
    let before = listed(&ns);
    assert_eq!(before.len(), 4, "{before:?}");

    let fresh = Netns::new();
    std::thread::sleep(Duration::from_millis(1200));
    let out = fresh.autoblock_ok(&["--layout", "set", "restore", "--file", file_s]);
    assert!(out.contains("restored 4 ban(s)"), "{out}");
    assert!(out.contains("1 expired ban(s) dropped"), "{out}");
    let after = listed(&fresh);
    assert_eq!(after.len(), before.len(), "{after:?}");
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a["net"], b["net"]);
        assert_eq!(a["comment"], b["comment"], "{a} {b}");
        match (expiry(a), expiry(b)) {
            (None, None) => {}
            (Some(x), Some(y)) => {
                let d = x
                    .duration_since(y)
                    .or_else(|_| y.duration_since(x))
                    .unwrap();
                assert!(d <= Duration::from_secs(2), "{a} vs {b}: {d:?}");
            }
            other => panic!("expiry differs: {other:?} for {a} / {b}"),
        }
    }
    assert!(after.iter().all(|r| r["net"] != "198.51.100.77/32"));
    assert_eq!(
        run(&fresh, &["--layout", "set", "check", "--file", file_s])
            .status
            .code(),
        Some(0)
    );
    // Without --file the set layout has nothing to compare with, and says so.
    let out = run(&fresh, &["--layout", "set", "check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("no sysconfig mirror"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn a_corrupt_ban_file_applies_nothing() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bans.save");
    std::fs::write(
        &file,
        "autoblock-bans 1\n198.51.100.9 -\n198.51.100.300 - typo\n",
    )
    .unwrap();
    let out = run(
        &ns,
        &[
            "--layout",
            "set",
            "restore",
            "--file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bans.save:3:"), "line named: {err}");
    assert!(err.contains("nothing was applied"), "{err}");
    let ruleset = autoblock_tests::nft(&ns, &["list", "ruleset"]);
    assert!(!ruleset.contains("198.51.100.9"), "{ruleset}");
    // A file of another version is refused the same way.
    std::fs::write(&file, "autoblock-bans 9\n").unwrap();
    let out = run(
        &ns,
        &[
            "--layout",
            "set",
            "restore",
            "--file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("version 9"));
}
