//! End-to-end tests of CrowdSec bouncer mode against a real CrowdSec Local API (Debian's
//! `crowdsec` package, `crowdsec -no-cs -no-capi` with a scratch configuration in a temp
//! dir), run inside the test bed's host namespace next to a pure-bouncer `autoblock run`:
//! decisions added with `cscli` (an address, a range, an `::ffff:` mapped address, an IPv6
//! range) are enforced — packets dropped — with their durations; a deleted decision is
//! unblocked; after a Local API restart the daemon reconnects and resyncs; 100,000 imported
//! decisions are all enforced by one start-up transaction. The other way: a daemon with a
//! jail and machine credentials pushes its own sshd ban to the Local API, where `cscli
//! decisions list` shows it and another bouncer enforces it, while the ban coming back in the
//! daemon's own stream is neither applied again nor pushed again; with a wrong password the
//! ban is still enforced locally and the daemon says that pushing failed.
//!
//! These tests need root and the `crowdsec` package: without them they fail, naming what is
//! missing (never skipped).

use std::io::Write;
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use autoblock::{Controller, Listed, Net};
use autoblock_tests::{addr, output_text, require_root, Netns, RunningDaemon, TestBed};

/// The Local API's port inside the test namespace.
const PORT: u16 = 8080;
/// The bouncer's polling interval in these tests.
const POLL: Duration = Duration::from_secs(1);
/// How long a change may take to reach the kernel: one poll, plus the Local API's answer
/// and the transaction on a busy machine.
const BOUND: Duration = Duration::from_secs(8);

/// Panics (naming the package) unless the CrowdSec binaries are installed.
fn require_crowdsec() {
    require_root();
    for bin in ["/usr/bin/crowdsec", "/usr/bin/cscli"] {
        if !Path::new(bin).exists() {
            panic!(
                "{bin} is missing: these tests need Debian's `crowdsec` package (create a \
                 non-empty /etc/crowdsec/online_api_credentials.yaml and a policy-rc.d that \
                 exits 101 first; `cargo xtask test` installs it)"
            );
        }
    }
}

/// A Local API in a temp dir, run in a test namespace.
struct Lapi {
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl Lapi {
    /// Writes a scratch configuration, registers a machine for `cscli`, and starts the LAPI.
    fn start(ns: &Netns) -> Lapi {
        require_crowdsec();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::fs::create_dir_all(d.join("log")).unwrap();
        let cfg = format!(
            r#"common:
  daemonize: false
  log_media: file
  log_level: info
  log_dir: {d}/log
config_paths:
  config_dir: {d}
  data_dir: {d}/data
  simulation_path: /etc/crowdsec/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub/
  index_path: /var/lib/crowdsec/hub/.index.json
  notification_dir: {d}/notifications
  plugin_dir: /usr/lib/crowdsec/plugins/
cscli:
  output: human
  color: "no"
db_config:
  log_level: info
  type: sqlite
  db_path: {d}/data/crowdsec.db
  use_wal: true
api:
  client:
    insecure_skip_verify: false
    credentials_path: {d}/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: 127.0.0.1:{PORT}
    profiles_path: /etc/crowdsec/profiles.yaml
    trusted_ips:
      - 127.0.0.1
      - ::1
prometheus:
  enabled: false
"#,
            d = d.display()
        );
        std::fs::write(d.join("config.yaml"), cfg).unwrap();
        let mut lapi = Lapi {
            dir,
            child: None,
            starts: 0,
        };
        let creds = lapi.path("local_api_credentials.yaml");
        lapi.cscli(
            ns,
            &[
                "machines",
                "add",
                "autoblock-test",
                "-a",
                "-f",
                creds.to_str().unwrap(),
            ],
        );
        lapi.run(ns);
        lapi
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `crowdsec -no-cs -no-capi` and waits until it accepts connections.
    fn run(&mut self, ns: &Netns) {
        self.starts += 1;
        let out = std::fs::File::create(self.path(&format!("lapi-{}.out", self.starts))).unwrap();
        let mut cmd = Command::new("crowdsec");
        cmd.args([
            "-c",
            self.path("config.yaml").to_str().unwrap(),
            "-no-cs",
            "-no-capi",
        ])
        .current_dir(self.dir.path())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
        self.child = Some(ns.spawn(cmd).expect("spawn crowdsec"));
        let started = Instant::now();
        while !ns.run(|| TcpStream::connect(("127.0.0.1", PORT)).is_ok()) {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                panic!("crowdsec exited at start ({st:?}):\n{}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the Local API did not listen within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        let out = std::fs::read_to_string(self.path(&format!("lapi-{}.out", self.starts)))
            .unwrap_or_default();
        let log = std::fs::read_to_string(self.path("log/crowdsec_api.log")).unwrap_or_default();
        format!("{out}\n{log}")
    }

    /// `cscli -c scratch.yaml ARGS`: stdout, or the test fails.
    fn cscli(&self, ns: &Netns, args: &[&str]) -> String {
        let mut cmd = Command::new("cscli");
        cmd.arg("-c")
            .arg(self.path("config.yaml"))
            .args(args)
            .current_dir(self.dir.path());
        let out = ns.output(cmd).expect("run cscli");
        assert!(
            out.status.success(),
            "cscli {args:?} failed\n{}",
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Registers a machine (a watcher) with `password` (its credentials file goes into the
    /// scratch dir, not over the system's) and writes `written` into a password file;
    /// returns that file.
    fn add_machine(&self, ns: &Netns, name: &str, password: &str, written: &str) -> PathBuf {
        let creds = self.path(&format!("{name}.yaml"));
        self.cscli(
            ns,
            &[
                "machines",
                "add",
                name,
                "--password",
                password,
                "-f",
                creds.to_str().unwrap(),
            ],
        );
        let file = self.path(&format!("{name}.password"));
        std::fs::write(&file, format!("{written}\n")).unwrap();
        file
    }

    /// `cscli decisions list -o json`: the active decisions as (value, scenario, origin,
    /// seconds left).
    fn decisions(&self, ns: &Netns) -> Vec<(String, String, String, f64)> {
        let out = self.cscli(ns, &["decisions", "list", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("cscli decisions list -o json: {e}:\n{out}"));
        let mut list = Vec::new();
        for alert in v.as_array().into_iter().flatten() {
            for d in alert["decisions"].as_array().into_iter().flatten() {
                let s = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
                list.push((
                    s("value"),
                    s("scenario"),
                    s("origin"),
                    go_secs(&s("duration")),
                ));
            }
        }
        list
    }

    /// Registers a bouncer and writes its key to a file; returns the file.
    fn add_bouncer(&self, ns: &Netns, name: &str) -> PathBuf {
        let key = self.cscli(ns, &["bouncers", "add", name, "-o", "raw"]);
        let key = key.trim();
        assert!(!key.is_empty(), "cscli printed no key");
        let file = self.path(&format!("{name}.key"));
        std::fs::write(&file, format!("{key}\n")).unwrap();
        file
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `autoblock run` with a `[crowdsec]` section: a pure bouncer (no jails), or with an sshd
/// jail following `auth.log` in its temp dir.
struct Bouncer {
    run: RunningDaemon,
    dir: tempfile::TempDir,
}

impl Bouncer {
    fn start(ns: &Netns, key_file: &Path) -> Bouncer {
        Bouncer::start_with(ns, key_file, "", "", false)
    }

    /// `top` goes before `[crowdsec]` (e.g. `table = ...`), `crowdsec` into it; `jail` adds
    /// an sshd jail (3 failures, banned 1 h). Waits until the daemon runs.
    fn start_with(ns: &Netns, key_file: &Path, top: &str, crowdsec: &str, jail: bool) -> Bouncer {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("sysconfig")).unwrap();
        std::fs::write(d.join("auth.log"), "").unwrap();
        let jail = if jail {
            format!("\n{}", autoblock_tests::sshd_jail(d))
        } else {
            String::new()
        };
        std::fs::write(
            d.join("autoblock.toml"),
            format!(
                r#"state_dir = "{d}/state"
control_socket = "{d}/control.sock"
sysconfig_dir = "{d}/sysconfig"
{top}
[crowdsec]
url = "http://127.0.0.1:{PORT}/"
api_key_file = "{key}"
poll = "{poll}ms"
{crowdsec}
{jail}"#,
                d = d.display(),
                key = key_file.display(),
                poll = POLL.as_millis()
            ),
        )
        .unwrap();
        let run = RunningDaemon::start(
            ns,
            &d.join("autoblock.toml"),
            d.join("daemon.log"),
            "info,autoblock_daemon::crowdsec=debug",
            Duration::from_secs(15),
            || true,
        );
        Bouncer { run, dir }
    }

    fn log(&self) -> String {
        self.run.log_text()
    }

    /// Appends `n` sshd "Failed password" lines from `src` to the jail's log.
    fn fail_logins(&self, src: IpAddr, n: u32) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("auth.log"))
            .unwrap();
        for i in 0..n {
            writeln!(
                f,
                "Dec  7 10:29:{i:02} web-1 sshd[{}]: Failed password for root from {src} port {} ssh2",
                4000 + i,
                50000 + i
            )
            .unwrap();
        }
    }
}

/// The set layout's entries in `ns`.
fn listed(ns: &Netns) -> Vec<Listed> {
    listed_in(ns, "autoblock")
}

/// The set layout's entries of table `table` in `ns`.
fn listed_in(ns: &Netns, table: &str) -> Vec<Listed> {
    let table = table.to_owned();
    ns.run(move || {
        let mut ctl = Controller::open(
            autoblock::Config::default()
                .layout(autoblock::Layout::Set)
                .table(table),
        )
        .expect("open a controller");
        ctl.list().unwrap_or_default()
    })
}

/// Seconds of a Go duration as `cscli` prints it (`59m58.123s`, `1h0m1s`); NaN if it is not
/// one.
fn go_secs(s: &str) -> f64 {
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('h', _) => 3600.0,
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => return f64::NAN,
        };
        total += num.parse::<f64>().unwrap_or(f64::NAN) * unit;
        num.clear();
    }
    if num.is_empty() && !s.is_empty() {
        total
    } else {
        f64::NAN
    }
}

/// Polls `f` until it holds or `bound` passes; false if it never held.
fn within(bound: Duration, mut f: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if f() {
            return true;
        }
        if started.elapsed() > bound {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn net(s: &str) -> Net {
    Net::parse(s, false).unwrap()
}

/// Waits until `f` holds for the listed entries, or fails with `what` and the logs.
fn wait_for(
    ns: &Netns,
    b: &Bouncer,
    lapi: &Lapi,
    bound: Duration,
    what: &str,
    f: impl Fn(&[Listed]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if f(&listed(ns)) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < bound,
            "{what}: not within {bound:?}\ndaemon log:\n{}\nLAPI log:\n{}",
            b.log(),
            lapi.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn has(l: &[Listed], n: &str) -> bool {
    let n = net(n);
    l.iter().any(|e| e.net == n)
}

#[test]
fn decisions_are_enforced_deleted_and_resynced_after_a_lapi_restart() {
    let bed = TestBed::new();
    let ns = bed.host();
    let mut lapi = Lapi::start(ns);
    let key = lapi.add_bouncer(ns, "autoblock");
    // Before the bouncer starts: these come with the start-up stream.
    lapi.cscli(
        ns,
        &[
            "decisions",
            "add",
            "--ip",
            &addr::V4_BLOCKED.to_string(),
            "-d",
            "1h",
        ],
    );
    lapi.cscli(
        ns,
        &["decisions", "add", "--range", "203.0.113.0/24", "-d", "2h"],
    );
    lapi.cscli(
        ns,
        &[
            "decisions",
            "add",
            "--ip",
            &format!("::ffff:{}", addr::V4_SAME_24),
            "-d",
            "3h",
        ],
    );
    lapi.cscli(
        ns,
        &["decisions", "add", "--range", "2001:db8:2::/48", "-d", "4h"],
    );
    // Not a ban: ignored.
    lapi.cscli(
        ns,
        &[
            "decisions",
            "add",
            "--ip",
            &addr::V4_SAME_24_B.to_string(),
            "-t",
            "captcha",
        ],
    );

    let b = Bouncer::start(ns, &key);
    wait_for(
        ns,
        &b,
        &lapi,
        Duration::from_secs(15),
        "start-up stream enforced",
        |l| {
            has(l, "198.51.100.9")
                && has(l, "203.0.113.0/24")
                && has(l, "198.51.100.10")
                && has(l, "2001:db8:2::/48")
        },
    );
    let l = listed(ns);
    assert!(
        !has(&l, "198.51.100.11"),
        "a captcha decision was enforced: {l:?}"
    );
    assert!(
        !l.iter().any(|e| e.net.to_string().starts_with("::ffff:")),
        "a mapped address was kept as IPv6: {l:?}"
    );
    // Durations: each entry expires when its decision does.
    let now = SystemTime::now();
    for (n, hours) in [
        ("198.51.100.9", 1),
        ("203.0.113.0/24", 2),
        ("198.51.100.10", 3),
        ("2001:db8:2::/48", 4),
    ] {
        let e = l.iter().find(|e| e.net == net(n)).unwrap();
        let left = e
            .expires
            .and_then(|t| t.duration_since(now).ok())
            .unwrap_or_else(|| panic!("{n} has no future expiry: {e:?}"));
        let want = Duration::from_secs(hours * 3600);
        assert!(
            left <= want && left > want - Duration::from_secs(120),
            "{n}: expires in {left:?}, the decision said {want:?}"
        );
        assert_eq!(e.comment.as_deref(), Some("crowdsec cscli"), "{n}");
    }
    let log = b.log();
    assert!(
        log.contains("CrowdSec start-up stream applied") && log.contains("transactions=1"),
        "{log}"
    );
    // Enforced: packets from banned sources are dropped, others pass.
    let src = |a| IpAddr::V4(a);
    assert!(
        !bed.send_udp(src(addr::V4_BLOCKED), 0),
        "an Ip decision was not enforced"
    );
    assert!(
        !bed.send_udp(src(addr::V4_OTHER_24), 0),
        "a Range decision was not enforced"
    );
    assert!(
        !bed.send_udp(src(addr::V4_OTHER_24_B), 0),
        "a Range decision was not enforced"
    );
    assert!(
        !bed.send_udp(src(addr::V4_SAME_24), 0),
        "a mapped decision was not enforced"
    );
    assert!(
        bed.send_udp(src(addr::V4_SAME_24_B), 0),
        "a captcha was enforced as a ban"
    );
    assert!(bed.send_udp(src(addr::V4_UNBLOCKED), 0));
    assert!(
        !bed.send_udp(IpAddr::V6(addr::V6_OTHER_48), 0),
        "an IPv6 range was not enforced"
    );
    assert!(bed.send_udp(IpAddr::V6(addr::V6_BLOCKED), 0));

    // A delta: a new decision is enforced within the polling interval.
    lapi.cscli(
        ns,
        &[
            "decisions",
            "add",
            "--ip",
            &addr::V4_UNBLOCKED.to_string(),
            "-d",
            "30m",
        ],
    );
    let took = wait_for(ns, &b, &lapi, BOUND, "a new decision enforced", |l| {
        has(l, "192.0.2.9")
    });
    eprintln!("new decision enforced after {took:?}");
    assert!(!bed.send_udp(src(addr::V4_UNBLOCKED), 0));

    // A deleted decision is unblocked.
    lapi.cscli(
        ns,
        &["decisions", "delete", "--ip", &addr::V4_BLOCKED.to_string()],
    );
    let took = wait_for(ns, &b, &lapi, BOUND, "a deleted decision unblocked", |l| {
        !has(l, "198.51.100.9")
    });
    eprintln!("deleted decision unblocked after {took:?}");
    assert!(
        bed.send_udp(src(addr::V4_BLOCKED), 0),
        "a deleted decision still drops"
    );
    lapi.cscli(ns, &["decisions", "delete", "--range", "2001:db8:2::/48"]);
    wait_for(ns, &b, &lapi, BOUND, "a deleted range unblocked", |l| {
        !has(l, "2001:db8:2::/48") && has(l, "203.0.113.0/24")
    });

    // The Local API restarts: the bouncer notices, reconnects and resyncs.
    lapi.stop();
    let started = Instant::now();
    while !b
        .log()
        .contains("CrowdSec bouncer: cannot reach the Local API")
    {
        assert!(
            started.elapsed() < BOUND,
            "the bouncer did not notice the Local API was gone:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!b
        .log()
        .contains(&std::fs::read_to_string(&key).unwrap().trim().to_owned()));
    lapi.run(ns);
    lapi.cscli(
        ns,
        &[
            "decisions",
            "add",
            "--ip",
            &addr::V4_BLOCKED.to_string(),
            "-d",
            "1h",
        ],
    );
    wait_for(ns, &b, &lapi, BOUND, "enforced after a LAPI restart", |l| {
        has(l, "198.51.100.9") && has(l, "192.0.2.9") && has(l, "203.0.113.0/24")
    });
    let log = b.log();
    assert!(log.contains("reachable again"), "{log}");
    assert_eq!(
        log.matches("CrowdSec start-up stream applied").count(),
        2,
        "no resync after the restart:\n{log}"
    );
    assert!(!bed.send_udp(src(addr::V4_BLOCKED), 0));
    // The API key never shows in the log.
    let k = std::fs::read_to_string(&key).unwrap();
    assert!(!log.contains(k.trim()), "the API key was logged");
}

#[test]
fn hundred_thousand_imported_decisions_are_all_enforced_in_one_transaction() {
    let ns = Netns::new();
    let lapi = Lapi::start(&ns);
    let key = lapi.add_bouncer(&ns, "autoblock");
    let csv = lapi.path("decisions.csv");
    let mut text = String::from("duration,scope,value\n");
    for i in 0..100_000u32 {
        text.push_str(&format!(
            "4h,ip,10.{}.{}.{}\n",
            100 + i / 65536,
            (i / 256) % 256,
            i % 256
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let started = Instant::now();
    lapi.cscli(&ns, &["decisions", "import", "-i", csv.to_str().unwrap()]);
    eprintln!("cscli decisions import: {:?}", started.elapsed());

    let b = Bouncer::start(&ns, &key);
    let started = Instant::now();
    while !b.log().contains("CrowdSec start-up stream applied") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the start-up stream was not applied within 120 s:\n{}\nLAPI log:\n{}",
            b.log(),
            lapi.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "100,000 decisions applied {:?} after the bouncer started",
        started.elapsed()
    );
    let l = listed(&ns);
    assert_eq!(l.len(), 100_000, "entries in the kernel");
    let lo = net("10.100.0.0").addr();
    let hi = net("10.101.134.159").addr();
    assert!(
        l.iter()
            .all(|e| e.net.is_host() && e.net.addr() >= lo && e.net.addr() <= hi),
        "an entry that was not imported"
    );
    let log = b.log();
    assert!(
        log.contains("bans=100000") && log.contains("transactions=1"),
        "not one transaction:\n{log}"
    );
}

#[test]
fn own_bans_are_pushed_applied_by_other_bouncers_and_do_not_loop() {
    let bed = TestBed::new();
    let ns = bed.host();
    let lapi = Lapi::start(ns);
    let key = lapi.add_bouncer(ns, "autoblock");
    let password = "Zq7-own-ban-pushing-password";
    let pw = lapi.add_machine(ns, "web-1", password, password);
    let b = Bouncer::start_with(
        ns,
        &key,
        "",
        &format!(
            "machine_id = \"web-1\"\npassword_file = \"{}\"",
            pw.display()
        ),
        true,
    );
    // Another host of the fleet: a pure bouncer of the same Local API (its own table here).
    let key2 = lapi.add_bouncer(ns, "other-host");
    let other = Bouncer::start_with(ns, &key2, "table = \"fleet2\"", "", false);

    let attacker = IpAddr::V4(addr::V4_BLOCKED);
    assert!(bed.send_udp(attacker, 0), "reachable before any ban");
    let started = Instant::now();
    b.fail_logins(attacker, 3);
    wait_for(ns, &b, &lapi, BOUND, "the jail's ban in the kernel", |l| {
        has(l, "198.51.100.9")
    });
    eprintln!("banned locally after {:?}", started.elapsed());
    assert!(!bed.send_udp(attacker, 0), "the local ban drops packets");

    // On the Local API: one ban decision for the address, with the jail's scenario and
    // about the ban time left.
    let mut found = Vec::new();
    let seen = within(BOUND, || {
        found = lapi
            .decisions(ns)
            .into_iter()
            .filter(|d| d.0 == "198.51.100.9")
            .collect();
        !found.is_empty()
    });
    assert!(
        seen,
        "the ban is not in `cscli decisions list`:\n{}\ndaemon log:\n{}\nLAPI log:\n{}",
        lapi.cscli(ns, &["decisions", "list", "-o", "json"]),
        b.log(),
        lapi.log()
    );
    eprintln!(
        "visible in cscli decisions list after {:?}",
        started.elapsed()
    );
    assert_eq!(found.len(), 1, "{found:?}");
    let (_, scenario, origin, left) = &found[0];
    assert_eq!(scenario, "autoblock/sshd");
    assert_eq!(origin, "crowdsec");
    assert!(
        *left <= 3600.0 && *left > 3600.0 - 120.0,
        "the decision lasts {left} s, the ban 1 h"
    );

    // The other host's bouncer enforces it.
    let started = Instant::now();
    let applied = within(BOUND, || {
        listed_in(ns, "fleet2")
            .iter()
            .any(|e| e.net == net("198.51.100.9"))
    });
    assert!(
        applied,
        "the other bouncer did not apply the pushed ban:\n{}",
        other.log()
    );
    eprintln!("applied by the other bouncer after {:?}", started.elapsed());
    let l = listed_in(ns, "fleet2");
    let e = l.iter().find(|e| e.net == net("198.51.100.9")).unwrap();
    assert_eq!(e.comment.as_deref(), Some("crowdsec crowdsec"));

    // No loop: the daemon's own stream brings the decision back a few times; it is not
    // applied again (the element keeps the jail's comment), not counted as a ban, not pushed
    // again.
    let came_back = within(BOUND, || {
        b.log()
            .contains("own bans came back in the stream; already enforced")
    });
    assert!(came_back, "the own decision never came back:\n{}", b.log());
    std::thread::sleep(POLL * 3);
    let log = b.log();
    let l = listed(ns);
    let e = l.iter().find(|e| e.net == net("198.51.100.9")).unwrap();
    assert_eq!(
        e.comment.as_deref(),
        Some("autoblock sshd"),
        "the own ban was applied again from the stream"
    );
    assert_eq!(
        log.matches("CrowdSec: bans pushed to the Local API")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches(" banned ").count() + log.matches(" banned\n").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("CrowdSec decisions applied"), "{log}");
    assert_eq!(
        lapi.decisions(ns)
            .iter()
            .filter(|d| d.0 == "198.51.100.9")
            .count(),
        1,
        "pushed more than once"
    );
    let st = ns.autoblock_env(
        &["status", "--json"],
        &[(
            "AUTOBLOCK_CONTROL_SOCKET",
            b.dir.path().join("control.sock").to_str().unwrap(),
        )],
    );
    assert!(st.status.success(), "{}", output_text(&st));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["jails"][0]["bans_total"], 1, "{v}");
    assert_eq!(v["daemon"]["bans_active"], 1, "{v}");
    // Neither the password nor the API key shows in the log.
    assert!(!log.contains(password), "the password was logged");
    let k = std::fs::read_to_string(&key).unwrap();
    assert!(!log.contains(k.trim()), "the API key was logged");
}

#[test]
fn a_wrong_machine_password_still_bans_locally_and_says_pushing_failed() {
    let bed = TestBed::new();
    let ns = bed.host();
    let lapi = Lapi::start(ns);
    let key = lapi.add_bouncer(ns, "autoblock");
    let wrong = "not-the-registered-password";
    let pw = lapi.add_machine(ns, "web-2", "the-registered-password", wrong);
    let b = Bouncer::start_with(
        ns,
        &key,
        "",
        &format!(
            "machine_id = \"web-2\"\npassword_file = \"{}\"",
            pw.display()
        ),
        true,
    );
    let attacker = IpAddr::V4(addr::V4_OTHER_24);
    b.fail_logins(attacker, 3);
    wait_for(ns, &b, &lapi, BOUND, "the jail's ban in the kernel", |l| {
        has(l, "203.0.113.9")
    });
    assert!(!bed.send_udp(attacker, 0), "the local ban drops packets");
    let said = within(BOUND, || {
        b.log()
            .contains("CrowdSec: pushing bans to the Local API failed: the Local API refused the login of machine \"web-2\"")
    });
    let log = b.log();
    assert!(said, "the daemon did not say pushing failed:\n{log}");
    assert!(
        log.contains(&pw.display().to_string()),
        "the message names the password file:\n{log}"
    );
    assert!(!log.contains(wrong), "the password was logged");
    assert!(
        !lapi.decisions(ns).iter().any(|d| d.0 == "203.0.113.9"),
        "a decision was created with a wrong password"
    );
    // Retries are not logged every time (one warning, then at most one a minute).
    std::thread::sleep(Duration::from_secs(4));
    let log = b.log();
    assert_eq!(
        log.matches("pushing bans to the Local API").count(),
        1,
        "the failure is not rate-limited:\n{log}"
    );
    assert!(!bed.send_udp(attacker, 0), "still banned locally");
}
