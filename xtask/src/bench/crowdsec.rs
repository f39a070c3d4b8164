//! `cargo xtask bench crowdsec [--count N]`: time from bouncer start to N (default 100,000)
//! decisions enforced, and the bouncer's peak RSS, for autoblock's bouncer mode (`autoblock
//! run` with only a `[crowdsec]` section, release build) side by side with Debian's
//! `crowdsec-firewall-bouncer` (nftables mode), against the same CrowdSec Local API.
//!
//! Everything runs in one fresh network namespace: `crowdsec -no-cs -no-capi` with a scratch
//! configuration in a temp dir, N decisions imported once with `cscli decisions import`,
//! one bouncer key per bouncer. Each bouncer is started cold and the kernel polled until it
//! holds N elements (autoblock: `autoblock --layout set list --count --json`; the peer:
//! the length of `nft -j list set ip crowdsec crowdsec-blacklists`); peak RSS is the
//! process's `VmHWM` just before it is stopped. The packages `crowdsec` and
//! `crowdsec-firewall-bouncer` are installed if missing, with a non-empty
//! `/etc/crowdsec/online_api_credentials.yaml` (without it the package's post-install step
//! fails) and a `/usr/sbin/policy-rc.d` that exits 101 (neither service may start here;
//! what was there before is put back). The last line printed is
//! `crowdsec: <N> decisions in <s> s, <MB> MB (cs-firewall-bouncer <s> s, <MB> MB)`.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::netns::Netns;
use crate::util::{build_autoblock, find_program, require_root, Flags};

/// The Local API's port inside the namespace.
const PORT: u16 = 8080;
/// The longest the peer bouncer is given.
const PEER_BUDGET: Duration = Duration::from_secs(900);
/// The longest autoblock is given.
const OWN_BUDGET: Duration = Duration::from_secs(300);

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<ExitCode> {
    let flags = Flags::parse(args, &["--skip-peer"], &["--count"])?;
    let count: u32 = match flags.value("--count") {
        Some(v) => v.parse().context("--count")?,
        None => 100_000,
    };
    require_root("bench crowdsec")?;
    install_packages()?;
    let bin = build_autoblock(true)?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let ns = Netns::new()?;
    let mut lapi = start_lapi(&ns, dir)?;
    let result = (|| -> Result<ExitCode> {
        let csv = dir.join("decisions.csv");
        let mut text = String::from("duration,scope,value\n");
        for i in 0..count {
            text.push_str(&format!(
                "4h,ip,10.{}.{}.{}\n",
                64 + i / 65536,
                (i / 256) % 256,
                i % 256
            ));
        }
        std::fs::write(&csv, text)?;
        let t = Instant::now();
        cscli(
            &ns,
            dir,
            &["decisions", "import", "-i", &csv.display().to_string()],
        )?;
        println!(
            "  cscli decisions import: {count} decisions in {:.1} s",
            t.elapsed().as_secs_f64()
        );

        let own = own_bouncer(&ns, dir, &bin, count)?;
        println!(
            "  autoblock run ([crowdsec] only): {count} enforced {:.2} s after start, peak RSS {:.1} MB",
            own.0, own.1
        );
        let peer = if flags.has("--skip-peer") {
            None
        } else {
            let p = peer_bouncer(&ns, dir, count)?;
            println!(
                "  crowdsec-firewall-bouncer (nftables): {count} enforced {:.1} s after start, peak RSS {:.1} MB",
                p.0, p.1
            );
            Some(p)
        };
        let (ps, pm) = peer.map_or(("-".to_owned(), "-".to_owned()), |(s, m)| {
            (format!("{s:.1}"), format!("{m:.0}"))
        });
        if let Some((s, m)) = peer {
            println!(
                "  autoblock: {:.1}x faster (target >= 20x), {:.1}x less peak memory (target >= 4x)",
                s / own.0,
                m / own.1
            );
        }
        println!(
            "crowdsec: {count} decisions in {:.2} s, {:.0} MB (cs-firewall-bouncer {ps} s, {pm} MB)",
            own.0, own.1
        );
        Ok(ExitCode::SUCCESS)
    })();
    stop(&mut lapi);
    result
}

/// Installs `crowdsec` and `crowdsec-firewall-bouncer` if missing, safely (module docs);
/// `cargo xtask test` uses it too (the CrowdSec tests need a real Local API).
pub fn install_packages() -> Result<()> {
    if find_program("crowdsec").is_some()
        && find_program("cscli").is_some()
        && find_program("crowdsec-firewall-bouncer").is_some()
    {
        return Ok(());
    }
    let creds = Path::new("/etc/crowdsec/online_api_credentials.yaml");
    if std::fs::metadata(creds).map_or(true, |m| m.len() == 0) {
        std::fs::create_dir_all("/etc/crowdsec")?;
        std::fs::write(creds, "# no online API on this host\n")
            .context("writing /etc/crowdsec/online_api_credentials.yaml")?;
    }
    let t = Instant::now();
    crate::util::apt_install(&["crowdsec", "crowdsec-firewall-bouncer"], false)?;
    println!("xtask: installed in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn start_lapi(ns: &Netns, d: &Path) -> Result<Child> {
    std::fs::create_dir_all(d.join("data"))?;
    std::fs::create_dir_all(d.join("log"))?;
    std::fs::write(
        d.join("config.yaml"),
        format!(
            "common:\n  daemonize: false\n  log_media: file\n  log_level: info\n  log_dir: {d}/log\n\
             config_paths:\n  config_dir: {d}\n  data_dir: {d}/data\n  \
             simulation_path: /etc/crowdsec/simulation.yaml\n  hub_dir: /var/lib/crowdsec/hub/\n  \
             index_path: /var/lib/crowdsec/hub/.index.json\n  notification_dir: {d}/notifications\n  \
             plugin_dir: /usr/lib/crowdsec/plugins/\n\
             cscli:\n  output: human\n  color: \"no\"\n\
             db_config:\n  log_level: info\n  type: sqlite\n  db_path: {d}/data/crowdsec.db\n  use_wal: true\n\
             api:\n  client:\n    insecure_skip_verify: false\n    credentials_path: {d}/local_api_credentials.yaml\n  \
             server:\n    log_level: info\n    listen_uri: 127.0.0.1:{PORT}\n    \
             profiles_path: /etc/crowdsec/profiles.yaml\n    trusted_ips:\n      - 127.0.0.1\n      - ::1\n\
             prometheus:\n  enabled: false\n",
            d = d.display()
        ),
    )?;
    let creds = d.join("local_api_credentials.yaml").display().to_string();
    cscli(ns, d, &["machines", "add", "bench", "-a", "-f", &creds])?;
    let (cfg, dd) = (d.join("config.yaml"), d.to_path_buf());
    let out = std::fs::File::create(d.join("lapi.out"))?;
    let mut child = ns
        .run(move || {
            Command::new("crowdsec")
                .arg("-c")
                .arg(&cfg)
                .args(["-no-cs", "-no-capi"])
                .current_dir(&dd)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
        })
        .context("starting crowdsec -no-cs")?;
    let t = Instant::now();
    while !ns.run(|| TcpStream::connect(("127.0.0.1", PORT)).is_ok()) {
        if t.elapsed() > Duration::from_secs(30) || child.try_wait()?.is_some() {
            stop(&mut child);
            bail!(
                "the Local API did not listen within 30 s: {}",
                std::fs::read_to_string(d.join("lapi.out")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

fn cscli(ns: &Netns, d: &Path, args: &[&str]) -> Result<String> {
    let mut argv = vec![
        "cscli".to_owned(),
        "-c".to_owned(),
        d.join("config.yaml").display().to_string(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let out = ns.output(&argv, Vec::new())?;
    if !out.status.success() {
        bail!(
            "cscli {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Peak RSS of a running process, in MB.
fn peak_mb(child: &Child) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")?;
    Ok(kb / 1024.0)
}

/// Polls `count_of` until it reaches `count`; returns (seconds since `started`, peak MB).
fn wait_enforced(
    child: &mut Child,
    started: Instant,
    budget: Duration,
    count: u32,
    mut count_of: impl FnMut() -> Option<u64>,
) -> Result<(f64, f64)> {
    loop {
        let n = count_of().unwrap_or(0);
        if n >= u64::from(count) {
            let s = started.elapsed().as_secs_f64();
            let mb = peak_mb(child)?;
            return Ok((s, mb));
        }
        if let Some(st) = child.try_wait()? {
            bail!("the bouncer exited ({st}) with {n} of {count} decisions enforced");
        }
        if started.elapsed() > budget {
            bail!("only {n} of {count} decisions enforced after {budget:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn own_bouncer(ns: &Netns, d: &Path, bin: &Path, count: u32) -> Result<(f64, f64)> {
    let key = cscli(ns, d, &["bouncers", "add", "autoblock-bench", "-o", "raw"])?;
    let key_file = d.join("autoblock.key");
    std::fs::write(&key_file, key.trim())?;
    let own = d.join("own");
    std::fs::create_dir_all(&own)?;
    let cfg = own.join("autoblock.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{o}/state\"\ncontrol_socket = \"{o}/control.sock\"\n\
             [crowdsec]\nurl = \"http://127.0.0.1:{PORT}/\"\napi_key_file = \"{k}\"\npoll = \"10s\"\n",
            o = own.display(),
            k = key_file.display()
        ),
    )?;
    let log = std::fs::File::create(own.join("daemon.log"))?;
    let b = bin.to_path_buf();
    let started = Instant::now();
    let mut child = ns
        .run(move || {
            Command::new(&b)
                .args(["run", "--config"])
                .arg(&cfg)
                .env("AUTOBLOCK_LOG", "info")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
        })
        .context("starting autoblock run")?;
    let count_argv: Vec<String> = [
        "env",
        "-u",
        "AUTOBLOCK_CONTROL_SOCKET",
        &bin.display().to_string(),
        "--layout",
        "set",
        "list",
        "--count",
        "--json",
    ]
    .map(str::to_owned)
    .to_vec();
    let r = wait_enforced(&mut child, started, OWN_BUDGET, count, || {
        let out = ns.output(&count_argv, Vec::new()).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["total"].as_u64()
    });
    stop(&mut child);
    let text = std::fs::read_to_string(own.join("daemon.log")).unwrap_or_default();
    if let Some(line) = text.lines().find(|l| l.contains("start-up stream applied")) {
        println!("  autoblock: {}", line.trim());
    }
    r.with_context(|| format!("autoblock run; its log:\n{text}"))
}

fn peer_bouncer(ns: &Netns, d: &Path, count: u32) -> Result<(f64, f64)> {
    let key = cscli(ns, d, &["bouncers", "add", "peer-bench", "-o", "raw"])?;
    let peer = d.join("peer");
    std::fs::create_dir_all(&peer)?;
    let cfg = peer.join("crowdsec-firewall-bouncer.yaml");
    std::fs::write(
        &cfg,
        format!(
            "mode: nftables\npid_dir: {p}\nupdate_frequency: 10s\ndaemonize: false\n\
             log_mode: file\nlog_dir: {p}\nlog_level: info\n\
             api_url: http://127.0.0.1:{PORT}/\napi_key: {k}\ninsecure_skip_verify: false\n\
             disable_ipv6: false\ndeny_action: DROP\ndeny_log: false\n\
             supported_decisions_types:\n  - ban\n\
             blacklists_ipv4: crowdsec-blacklists\nblacklists_ipv6: crowdsec6-blacklists\n\
             nftables:\n  ipv4:\n    enabled: true\n    set-only: false\n    table: crowdsec\n    chain: crowdsec-chain\n  \
             ipv6:\n    enabled: true\n    set-only: false\n    table: crowdsec6\n    chain: crowdsec6-chain\n\
             prometheus:\n  enabled: false\n",
            p = peer.display(),
            k = key.trim()
        ),
    )?;
    let out = std::fs::File::create(peer.join("bouncer.out"))?;
    let started = Instant::now();
    let mut child = ns
        .run(move || {
            Command::new("crowdsec-firewall-bouncer")
                .arg("-c")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
        })
        .context("starting crowdsec-firewall-bouncer")?;
    let argv: Vec<String> = [
        "nft",
        "-j",
        "list",
        "set",
        "ip",
        "crowdsec",
        "crowdsec-blacklists",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut last = Instant::now() - Duration::from_secs(10);
    let r = wait_enforced(&mut child, started, PEER_BUDGET, count, || {
        // A full listing of a large set takes a while: look once a second at most.
        if last.elapsed() < Duration::from_secs(1) {
            return None;
        }
        last = Instant::now();
        let out = ns.output(&argv, Vec::new()).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let sets = v["nftables"].as_array()?;
        sets.iter()
            .find_map(|o| o["set"]["elem"].as_array().map(|e| e.len() as u64))
    });
    stop(&mut child);
    r.with_context(|| {
        format!(
            "crowdsec-firewall-bouncer; its output:\n{}",
            std::fs::read_to_string(peer.join("bouncer.out")).unwrap_or_default()
        )
    })
}
