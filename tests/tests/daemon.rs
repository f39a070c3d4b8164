//! End-to-end tests of the daemon (`autoblock run`), each in a fresh test bed: a daemon
//! follows a log file in a temporary directory; sshd failure lines (from the project's own
//! recording of Debian 12's sshd, with the test bed's addresses) get a source banned in the
//! kernel and its packets dropped; fewer than `maxretry` do not; bans survive a restart and a
//! kill -9; `nft flush ruleset` and an `iptables-restore` of an empty filter table are repaired
//! within a second; `config check` reports file:line:col.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use autoblock_tests::{
    addr, autoblock_bin, iptables, nft, output_text, sshd_failure_lines, tool_with_input,
    write_daemon_config, Netns, RunningDaemon, TestBed,
};

/// How long a ban may take from the line being written to the element being in the kernel.
const BAN_BOUND: Duration = Duration::from_secs(2);
/// How long a repair may take after another program removed the daemon's state.
const HEAL_BOUND: Duration = Duration::from_secs(1);

struct Daemon {
    run: RunningDaemon,
    dir: PathBuf,
}

impl Daemon {
    /// Starts `autoblock run` in `ns` and waits until its control socket answers.
    fn start(ns: &Netns, dir: &Path) -> Daemon {
        let sock = dir.join("control.sock");
        // A daemon killed with -9 leaves its socket file behind: wait for the new one's word.
        let run = RunningDaemon::start(
            ns,
            &dir.join("autoblock.toml"),
            dir.join(format!("daemon-{}.log", unique())),
            "info,autoblock_daemon=debug",
            Duration::from_secs(10),
            || sock.exists(),
        );
        Daemon {
            run,
            dir: dir.to_owned(),
        }
    }

    fn log_text(&self) -> String {
        self.run.log_text()
    }

    fn signal(&mut self, sig: libc::c_int) {
        let mut child = self.run.take_child();
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid this test spawned and still owns (not yet reaped).
        let r = unsafe { libc::kill(pid, sig) };
        assert_eq!(r, 0, "kill {pid}");
        let st = child.wait().unwrap();
        if sig == libc::SIGTERM {
            assert!(
                st.success(),
                "daemon exit after SIGTERM: {st:?}\n{}",
                self.log_text()
            );
        }
    }

    fn append(&self, lines: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("auth.log"))
            .unwrap();
        f.write_all(lines.as_bytes()).unwrap();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Polls `f` until it is true or `bound` has passed; returns the time it took.
fn within(bound: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > bound {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn set_has(ns: &Netns, ip: IpAddr) -> bool {
    let set = if ip.is_ipv4() { "addr4" } else { "addr6" };
    let out = ns.cmd(&["nft", "list", "set", "inet", "autoblock", set]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&ip.to_string())
}

fn chain_has(ns: &Netns, ip: IpAddr) -> bool {
    let out = ns.cmd(&["iptables", "-w", "-S", "INPUT-AUTO"]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&format!("-s {ip}/32"))
}

#[test]
fn set_layout_bans_from_a_followed_log_and_heals_a_flush() {
    let bed = TestBed::new();
    let ns = bed.host();
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(dir.path(), "set", "");
    let attacker = IpAddr::V4(addr::V4_BLOCKED);
    let below = IpAddr::V4(addr::V4_OTHER_24);
    let mut d = Daemon::start(ns, dir.path());
    assert!(
        bed.send_udp(attacker, 0),
        "the attacker reaches the host before any ban"
    );

    // Two failures of another source: below maxretry, never banned.
    d.append(&sshd_failure_lines(below, 2, 2000));
    d.append(&sshd_failure_lines(attacker, 3, 1000));
    let took = within(BAN_BOUND, || set_has(ns, attacker))
        .unwrap_or_else(|| panic!("not banned within {BAN_BOUND:?}:\n{}", d.log_text()));
    eprintln!("line written -> ban in the kernel: {took:?}");
    assert!(
        !bed.send_udp(attacker, 0),
        "a packet from the banned source is dropped"
    );
    assert!(!set_has(ns, below), "two failures are below maxretry = 3");
    assert!(
        bed.send_udp(below, 0),
        "the source below maxretry still gets through"
    );

    // Status through the control socket.
    let st = ns.autoblock_env(
        &["status", "--json"],
        &[(
            "AUTOBLOCK_CONTROL_SOCKET",
            dir.path().join("control.sock").to_str().unwrap(),
        )],
    );
    assert!(st.status.success(), "{}", output_text(&st));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["jails"][0]["failures"], 5, "{v}");
    assert_eq!(v["jails"][0]["bans_active"], 1, "{v}");
    assert_eq!(v["jails"][0]["tracked"], 1, "{v}");

    // Another program flushes the whole ruleset: repaired within a second, logged with who.
    nft(ns, &["flush", "ruleset"]);
    let took = within(HEAL_BOUND, || set_has(ns, attacker))
        .unwrap_or_else(|| panic!("not healed within {HEAL_BOUND:?}:\n{}", d.log_text()));
    eprintln!("nft flush ruleset -> healed: {took:?}");
    assert!(!bed.send_udp(attacker, 0), "dropped again after the repair");
    let st = ns.autoblock_env(
        &["status", "--json"],
        &[(
            "AUTOBLOCK_CONTROL_SOCKET",
            dir.path().join("control.sock").to_str().unwrap(),
        )],
    );
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let by = v["daemon"]["last_heal"]["by"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(by.starts_with("nft["), "the kernel names the process: {v}");
    d.signal(libc::SIGTERM);
    assert!(d.log_text().contains("self-heal"), "{}", d.log_text());
    assert!(
        set_has(ns, attacker),
        "bans stay in the kernel after SIGTERM"
    );
}

#[test]
fn restart_and_kill_9_keep_every_ban_reported_applied() {
    let bed = TestBed::new();
    let ns = bed.host();
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(dir.path(), "set", "");
    let a = IpAddr::V4(addr::V4_BLOCKED);
    let b = IpAddr::V6(addr::V6_BLOCKED);
    let mut d = Daemon::start(ns, dir.path());
    d.append(&sshd_failure_lines(a, 3, 1000));
    within(BAN_BOUND, || set_has(ns, a)).expect("banned");
    // Clean stop, the ruleset lost meanwhile (a reboot), start: the store puts it back.
    d.signal(libc::SIGTERM);
    nft(ns, &["flush", "ruleset"]);
    let mut d = Daemon::start(ns, dir.path());
    assert!(set_has(ns, a), "restored at start:\n{}", d.log_text());
    assert!(!bed.send_udp(a, 0));

    // kill -9 right after the daemon reported the ban applied.
    d.append(&sshd_failure_lines(b, 3, 3000));
    within(BAN_BOUND, || {
        d.log_text().contains(&format!("net={b}/128")) && d.log_text().contains("banned")
    })
    .unwrap_or_else(|| panic!("no ban reported:\n{}", d.log_text()));
    d.signal(libc::SIGKILL);
    nft(ns, &["flush", "ruleset"]);
    let d = Daemon::start(ns, dir.path());
    assert!(set_has(ns, a) && set_has(ns, b), "{}", d.log_text());
    assert!(!bed.send_udp(b, 0));
    // The restored offence history keeps the jail from banning the same source twice.
    assert!(
        d.log_text().contains("kernel reconciled"),
        "{}",
        d.log_text()
    );
}

#[test]
fn chain_layout_heals_an_empty_iptables_restore_and_mirrors() {
    let bed = TestBed::new();
    let ns = bed.host();
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(dir.path(), "chain", "mirror = true");
    let a = IpAddr::V4(addr::V4_BLOCKED);
    let d = Daemon::start(ns, dir.path());
    d.append(&sshd_failure_lines(a, 3, 1000));
    within(BAN_BOUND, || chain_has(ns, a))
        .unwrap_or_else(|| panic!("not banned:\n{}", d.log_text()));
    assert!(!bed.send_udp(a, 0));
    let mirrored = within(Duration::from_secs(2), || {
        std::fs::read_to_string(dir.path().join("sysconfig/iptables"))
            .is_ok_and(|t| t.contains(&format!("-s {a}/32")))
    });
    assert!(
        mirrored.is_some(),
        "the sysconfig mirror holds the ban:\n{}",
        d.log_text()
    );

    // An administrator restores an old, empty filter table.
    tool_with_input(
        ns,
        &["iptables-restore"],
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
    );
    let took = within(HEAL_BOUND, || chain_has(ns, a))
        .unwrap_or_else(|| panic!("not healed within {HEAL_BOUND:?}:\n{}", d.log_text()));
    eprintln!("iptables-restore -> healed: {took:?}");
    assert!(iptables(ns, &["-S", "INPUT"]).contains("-j INPUT-AUTO"));
    assert!(!bed.send_udp(a, 0), "dropped again after the repair");
}

#[test]
fn config_check_exit_codes_and_positions() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(dir.path(), "set", "");
    let good = dir.path().join("autoblock.toml");
    let out = ns.autoblock_raw(&["config".as_ref(), "check".as_ref(), good.as_os_str()]);
    assert!(out.status.success(), "{}", output_text(&out));
    let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/autoblock.toml");
    let out = ns.autoblock_raw(&["config".as_ref(), "check".as_ref(), packaged.as_os_str()]);
    assert!(out.status.success(), "{}", output_text(&out));

    let cases = [
        ("layout = \"set\"\nbantme = \"1h\"\n", ":2:1:", "unknown field"),
        ("[[jail]]\nname = \"a\"\nfiles = [\"/x\"]\nbantime = \"soon\"\n", ":4:11:", "bad duration"),
        ("allow = [\"192.0.2.300\"]\n", ":1:9:", "192.0.2.300"),
        (
            "[[jail]]\nname = \"a\"\nfilter = \"regex\"\nfiles = [\"/x\"]\nregex = ['from (?P<ip>\\S+)']\n",
            ":5:",
            "named group `host`",
        ),
    ];
    for (text, pos, why) in cases {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let out = ns.autoblock_raw(&["config".as_ref(), "check".as_ref(), bad.as_os_str()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {}", output_text(&out));
        assert!(err.contains(&format!("bad.toml{pos}")), "{text}: {err}");
        assert!(err.contains(why), "{text}: {err}");
    }
}

#[test]
fn cli_block_goes_through_the_daemon_and_its_socket_is_0600() {
    use std::os::unix::fs::PermissionsExt;
    let ns = &Netns::new();
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(dir.path(), "set", "");
    let mut d = Daemon::start(ns, dir.path());
    let sock = dir.path().join("control.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let env = [("AUTOBLOCK_CONTROL_SOCKET", sock.to_str().unwrap())];
    let out = ns.autoblock_env(&["block", "203.0.113.77", "--timeout", "1h"], &env);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("through the running daemon"));
    assert!(set_has(ns, "203.0.113.77".parse().unwrap()));
    let out = ns.autoblock_env(&["list", "--json"], &env);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("\"jail\":\"manual\""), "{text}");
    // The daemon owns the ban: after a restart with the kernel emptied it is back.
    d.signal(libc::SIGTERM);
    nft(ns, &["flush", "ruleset"]);
    let _d = Daemon::start(ns, dir.path());
    assert!(set_has(ns, "203.0.113.77".parse().unwrap()));
    let out = ns.autoblock_env(&["unblock", "203.0.113.77"], &env);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(!set_has(ns, "203.0.113.77".parse().unwrap()));
}

/// Runs `ssh` from `src` in the outside namespace to the host's sshd with a wrong password
/// and returns its combined output.
fn ssh_attempt(bed: &TestBed, src: IpAddr, work: &Path) -> String {
    let host = addr::host_for(src).to_string();
    let src_s = src.to_string();
    let known = work.join("known_hosts");
    // A ban can land while a connection is open (its replies are then dropped): keep-alives
    // and an overall bound end such a session instead of waiting forever.
    let out = bed.outside().cmd(&[
        "timeout",
        "20",
        "sshpass",
        "-p",
        "wrong-password",
        "ssh",
        "-F",
        "/dev/null",
        "-b",
        &src_s,
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        &format!("UserKnownHostsFile={}", known.display()),
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-o",
        "ConnectTimeout=2",
        "-o",
        "ServerAliveInterval=1",
        "-o",
        "ServerAliveCountMax=3",
        &format!("nosuchuser@{host}"),
        "true",
    ]);
    output_text(&out)
}

#[test]
fn live_sshd_brute_force_is_banned_end_to_end_set_layout() {
    live_sshd_brute_force("set", set_has);
}

#[test]
fn live_sshd_brute_force_is_banned_end_to_end_chain_layout() {
    live_sshd_brute_force("chain", chain_has);
}

/// A real sshd in the host namespace, failed password logins over the veth from the
/// outside namespace: the attacker is banned (`banned` reads the layout's kernel state)
/// after maxretry, then cannot reach sshd; a source below maxretry still can.
fn live_sshd_brute_force(layout: &str, banned: fn(&Netns, IpAddr) -> bool) {
    let bed = TestBed::new();
    let ns = bed.host();
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(dir.path(), layout, "");
    let work = dir.path();
    let key = work.join("host_ed25519");
    let kg = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(kg.status.success(), "{}", output_text(&kg));
    std::fs::create_dir_all("/run/sshd").unwrap();
    let cfg = work.join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "ListenAddress {}\nPort 22\nHostKey {}\nPidFile {}/sshd.pid\nUsePAM no\n\
             PasswordAuthentication yes\nKbdInteractiveAuthentication no\nMaxAuthTries 3\n\
             LogLevel INFO\n",
            addr::HOST_V4,
            key.display(),
            work.display()
        ),
    )
    .unwrap();
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(work.join("auth.log"))
        .unwrap();
    let mut sshd_cmd = Command::new("/usr/sbin/sshd");
    sshd_cmd
        .args(["-D", "-e", "-f"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let mut sshd = ns
        .spawn(sshd_cmd)
        .expect("spawn sshd (openssh-server is needed)");
    struct Reap<'a>(&'a mut Child);
    impl Drop for Reap<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _reap = Reap(&mut sshd);
    let d = Daemon::start(ns, dir.path());

    let attacker = IpAddr::V4(addr::V4_BLOCKED);
    let other = IpAddr::V4(addr::V4_OTHER_24);
    // The second address fails once: below maxretry.
    let first = ssh_attempt(&bed, other, work);
    assert!(
        first.contains("Permission denied"),
        "sshd answered: {first}"
    );
    let mut tries = 0;
    while !banned(ns, attacker) {
        tries += 1;
        assert!(
            tries <= 5,
            "not banned after {tries} failed logins:\n{}\nsshd log:\n{}",
            d.log_text(),
            std::fs::read_to_string(work.join("auth.log")).unwrap_or_default()
        );
        let out = ssh_attempt(&bed, attacker, work);
        assert!(
            out.contains("Permission denied") || banned(ns, attacker),
            "{out}"
        );
        within(Duration::from_millis(500), || banned(ns, attacker));
    }
    eprintln!("banned after {tries} failed ssh logins");
    let out = ssh_attempt(&bed, attacker, work);
    assert!(
        !out.contains("Permission denied") && out.contains("timed out"),
        "the banned source must not reach sshd: {out}"
    );
    assert!(!banned(ns, other));
    let out = ssh_attempt(&bed, other, work);
    assert!(
        out.contains("Permission denied"),
        "the other source still connects: {out}"
    );
}

#[test]
fn chain_layout_expiry_is_enforced_by_the_daemon() {
    let ns = &Netns::new();
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(dir.path(), "chain", "mirror = false");
    let text = std::fs::read_to_string(dir.path().join("autoblock.toml")).unwrap();
    std::fs::write(
        dir.path().join("autoblock.toml"),
        text.replace("bantime = \"1h\"", "bantime = \"2s\""),
    )
    .unwrap();
    let d = Daemon::start(ns, dir.path());
    let a = IpAddr::V4(addr::V4_BLOCKED);
    d.append(&sshd_failure_lines(a, 3, 1000));
    within(BAN_BOUND, || chain_has(ns, a))
        .unwrap_or_else(|| panic!("not banned:\n{}", d.log_text()));
    let gone = within(Duration::from_secs(5), || !chain_has(ns, a));
    assert!(
        gone.is_some(),
        "a 2 s ban still in the chain after 5 s:\n{}",
        d.log_text()
    );
    assert!(d.log_text().contains("ban expired"), "{}", d.log_text());
}

#[test]
fn sighup_reloads_the_jails_and_keeps_the_bans() {
    let ns = &Netns::new();
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(dir.path(), "set", "");
    let mut d = Daemon::start(ns, dir.path());
    let a = IpAddr::V4(addr::V4_BLOCKED);
    let b = IpAddr::V4(addr::V4_OTHER_24);
    d.append(&sshd_failure_lines(a, 3, 1000));
    within(BAN_BOUND, || set_has(ns, a)).expect("banned with maxretry = 3");
    let text = std::fs::read_to_string(dir.path().join("autoblock.toml")).unwrap();
    std::fs::write(
        dir.path().join("autoblock.toml"),
        text.replace("maxretry = 3", "maxretry = 1"),
    )
    .unwrap();
    let pid = d.run.pid() as libc::pid_t;
    // SAFETY: kill(2) on the daemon this test spawned and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    within(Duration::from_secs(2), || {
        d.log_text().contains("configuration reloaded")
    })
    .unwrap_or_else(|| panic!("no reload:\n{}", d.log_text()));
    d.append(&sshd_failure_lines(b, 1, 2000));
    within(BAN_BOUND, || set_has(ns, b))
        .unwrap_or_else(|| panic!("maxretry = 1 after the reload:\n{}", d.log_text()));
    assert!(set_has(ns, a), "the earlier ban stays");
    d.signal(libc::SIGTERM);
}

#[test]
fn self_heal_is_rate_limited_and_says_so() {
    let ns = &Netns::new();
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(dir.path(), "set", "heal_per_minute = 2");
    let d = Daemon::start(ns, dir.path());
    let a = IpAddr::V4(addr::V4_BLOCKED);
    d.append(&sshd_failure_lines(a, 3, 1000));
    within(BAN_BOUND, || set_has(ns, a)).expect("banned");
    for round in 1..=2 {
        nft(ns, &["flush", "ruleset"]);
        within(HEAL_BOUND, || set_has(ns, a))
            .unwrap_or_else(|| panic!("repair {round} missing:\n{}", d.log_text()));
    }
    // A third removal within the minute: the daemon stops fighting and says so.
    nft(ns, &["flush", "ruleset"]);
    let said = within(Duration::from_secs(2), || {
        d.log_text().contains("stops fighting")
    });
    assert!(said.is_some(), "{}", d.log_text());
    assert!(!set_has(ns, a), "no third repair within the minute");
}

#[test]
fn journal_entries_count_only_when_journald_says_sshd_wrote_them() {
    let ns = &Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let d_ = dir.path();
    // Three failures by sshd itself, three forged with `logger -t sshd` by a user.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let mut export = String::new();
    for i in 0..6u128 {
        let (trusted, src) = if i < 3 {
            (
                "_UID=0\n_COMM=sshd\n_EXE=/usr/sbin/sshd\n_SYSTEMD_UNIT=ssh.service\n",
                addr::V4_BLOCKED,
            )
        } else {
            (
                "_UID=1000\n_COMM=logger\nSYSLOG_IDENTIFIER=sshd\n",
                addr::V4_OTHER_24,
            )
        };
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n\
             _BOOT_ID=0123456789abcdef0123456789abcdef\n_PID={}\n{trusted}\
             MESSAGE=Failed password for root from {src} port {} ssh2\n\n",
            now + i,
            i + 1,
            700 + i,
            40000 + i
        ));
    }
    std::fs::create_dir_all(d_.join("journal")).unwrap();
    let mut jr = std::process::Command::new("/lib/systemd/systemd-journal-remote")
        .arg("-o")
        .arg(d_.join("journal/test.journal"))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-journal-remote (package systemd-journal-remote) is needed");
    jr.stdin
        .take()
        .unwrap()
        .write_all(export.as_bytes())
        .unwrap();
    let out = jr.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    std::fs::write(
        d_.join("autoblock.toml"),
        format!(
            r#"layout = "set"
state_dir = "{d}/state"
control_socket = "{d}/control.sock"
[[jail]]
name = "sshd-journal"
filter = "sshd"
journal = true
journal_dirs = ["{d}/journal"]
read_from = "start"
maxretry = 3
findtime = "10m"
bantime = "1h"
"#,
            d = d_.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(ns, d_);
    within(BAN_BOUND, || set_has(ns, IpAddr::V4(addr::V4_BLOCKED)))
        .unwrap_or_else(|| panic!("sshd's own entries ban:\n{}", d.log_text()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !set_has(ns, IpAddr::V4(addr::V4_OTHER_24)),
        "entries forged by an unprivileged logger frame no one:\n{}",
        d.log_text()
    );
    assert!(
        d.log_text().contains("journal entry not trusted"),
        "the forged entries were read and refused:\n{}",
        d.log_text()
    );
}

#[test]
fn the_daemon_executes_no_program() {
    let ns = &Netns::new();
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(dir.path(), "set", "");
    let trace = dir.path().join("trace");
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=execve,execveat", "-o"])
        .arg(&trace)
        .arg(autoblock_bin())
        .args(["run", "--config"])
        .arg(dir.path().join("autoblock.toml"))
        .env("AUTOBLOCK_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let mut child = ns.spawn(cmd).expect("strace is needed");
    let sock = dir.path().join("control.sock");
    within(Duration::from_secs(10), || sock.exists()).expect("the daemon started");
    let a = IpAddr::V4(addr::V4_BLOCKED);
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("auth.log"))
        .unwrap()
        .write_all(sshd_failure_lines(a, 3, 1000).as_bytes())
        .unwrap();
    within(BAN_BOUND, || set_has(ns, a)).expect("banned under strace");
    nft(ns, &["flush", "ruleset"]);
    within(Duration::from_secs(2), || set_has(ns, a)).expect("healed under strace");
    // The daemon reports its own pid (strace's child, in this namespace).
    let st = ns.autoblock_env(
        &["status", "--json"],
        &[("AUTOBLOCK_CONTROL_SOCKET", sock.to_str().unwrap())],
    );
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let pid = v["daemon"]["pid"].as_i64().expect("daemon pid") as libc::pid_t;
    // SAFETY: kill(2) on the daemon this test started (under strace) and still waits for.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let _ = child.wait();
    let text = std::fs::read_to_string(&trace).unwrap();
    let execs: Vec<&str> = text.lines().filter(|l| l.contains("execve")).collect();
    assert_eq!(execs.len(), 1, "only the daemon's own exec:\n{text}");
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    // SAFETY: sysconf with a valid name has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis((f[0] + f[1]) * 1000 / hz)
}

/// Under systemd (`Type=notify`, `WatchdogSec=`): READY=1 once the daemon is up, watchdog
/// keep-alives, RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 at SIGTERM — read from
/// a notify socket of the test's own, as systemd would. And an idle daemon sleeps: its
/// threads (the ruleset change monitor included) use almost no CPU while nothing happens.
#[test]
fn systemd_notifications_and_an_idle_daemon_sleeps() {
    use std::os::unix::net::UnixDatagram;
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    write_daemon_config(dir.path(), "set", "");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let log = dir.path().join("daemon.log");
    let mut cmd = Command::new(autoblock_bin());
    cmd.args(["run", "--config"])
        .arg(dir.path().join("autoblock.toml"))
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "2000000")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = ns.spawn(cmd).expect("spawn autoblock run");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let next = |what: &str| -> String {
        let mut buf = vec![0u8; 4096];
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification ({what} expected): {e}\n{}", log_text()));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // Skip keep-alives until the message that starts with `prefix`.
    let until = |prefix: &str| -> String {
        loop {
            let m = next(prefix);
            if m.starts_with(prefix) {
                return m;
            }
            assert_eq!(m, "WATCHDOG=1\n", "unexpected notification before {prefix}");
        }
    };
    let ready = until("READY=1");
    assert!(
        ready.contains("STATUS=1 jail(s), 0 ban(s), set layout"),
        "{ready}"
    );
    assert_eq!(until("WATCHDOG=1"), "WATCHDOG=1\n");

    let pid = child.id();
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(3));
    let idle = cpu_time(pid) - before;
    assert!(
        idle < Duration::from_millis(300),
        "an idle daemon used {idle:?} of CPU in 3 s"
    );

    // SAFETY: kill(2) on the child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) }, 0);
    assert!(until("RELOADING=1").contains("MONOTONIC_USEC="));
    assert!(until("READY=1").contains("STATUS="));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    assert_eq!(until("STOPPING=1"), "STOPPING=1\n");
    let st = child.wait().unwrap();
    assert!(st.success(), "{st:?}\n{}", log_text());
}
