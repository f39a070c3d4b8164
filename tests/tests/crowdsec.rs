//! End-to-end tests of CrowdSec bouncer mode against a real CrowdSec Local API (Debian's
//! `crowdsec` package, `crowdsec -no-cs -no-capi` with a scratch configuration in a temp
//! dir), run inside the test bed's host namespace next to a pure-bouncer `autoblock run`:
//! decisions added with `cscli` (an address, a range, an `::ffff:` mapped address, an IPv6
//! range) are enforced — packets dropped — with their durations; a deleted decision is
//! unblocked; after a Local API restart the daemon reconnects and resyncs; 100,000 imported
//! decisions are all enforced by one start-up transaction.
//!
//! These tests need root and the `crowdsec` package: without them they fail, naming what is
//! missing (never skipped).

use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use autoblock::{Controller, Listed, Net};
use autoblock_tests::{addr, autoblock_bin, output_text, require_root, Netns, TestBed};

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

/// A pure-bouncer `autoblock run` (a `[crowdsec]` section, no jails).
struct Bouncer {
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Bouncer {
    fn start(ns: &Netns, key_file: &Path) -> Bouncer {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("sysconfig")).unwrap();
        std::fs::write(
            d.join("autoblock.toml"),
            format!(
                r#"state_dir = "{d}/state"
control_socket = "{d}/control.sock"
sysconfig_dir = "{d}/sysconfig"

[crowdsec]
url = "http://127.0.0.1:{PORT}/"
api_key_file = "{key}"
poll = "{poll}ms"
"#,
                d = d.display(),
                key = key_file.display(),
                poll = POLL.as_millis()
            ),
        )
        .unwrap();
        let log = d.join("daemon.log");
        let mut cmd = Command::new(autoblock_bin());
        cmd.args(["run", "--config"])
            .arg(d.join("autoblock.toml"))
            .env("AUTOBLOCK_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = ns.spawn(cmd).expect("spawn autoblock run");
        Bouncer {
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The set layout's entries in `ns`.
fn listed(ns: &Netns) -> Vec<Listed> {
    ns.run(|| {
        let mut ctl = Controller::open(autoblock::Config::default().layout(autoblock::Layout::Set))
            .expect("open a controller");
        ctl.list().unwrap_or_default()
    })
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
