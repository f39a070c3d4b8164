//! `cargo xtask bench detect [--lines N] [--peer-lines M] [--attacks K]`: log scanning speed of
//! `autoblock scan` side by side with fail2ban's `fail2ban-regex` and sshguard's parser, on
//! the same generated log.
//!
//! It writes a realistic syslog-format auth log (deterministic, seeded): sshd noise
//! (accepted keys, session open/close, disconnects, cron and systemd lines) and failures from
//! 100,000 distinct addresses (IPv4 and IPv6; failed passwords, invalid users with their PAM
//! lines, AllowUsers refusals, too many attempts). `autoblock scan` (release build) reads
//! all N lines (default 2,000,000); the peers read the first M (default 200,000) of the same
//! file, because they are much slower. Every command runs inside one fresh, empty network
//! namespace (sshguard resolves host names; neither peer must see this machine's network),
//! its output thrown away; lines/s = lines / CPU time (user + sys) of the whole process
//! (the machine is shared; wall times are printed beside).
//!
//! The peers are the Debian packages `fail2ban` and `sshguard`; if missing they are
//! installed with `apt-get` while a `/usr/sbin/policy-rc.d` that exits 101 is in place, so
//! that neither service starts (a running one would firewall this machine); whatever
//! policy-rc.d was there before is put back.
//!
//! Then the daemon (`autoblock run`, set layout, one jail following a file, in a second
//! fresh namespace): **burst**, 100,000 addresses each failing 3 times appended at once,
//! time from the last line written until the daemon reports all banned; **latency**, 100
//! (`--attacks K`) single attacks with those bans held, line written -> ban in the kernel (p50/p99). The
//! burst is observed with `autoblock --layout set list --count --json` (element counts, no
//! dump), polled without pause. Each latency is the time until the kernel announces the
//! transaction that added the ban (an nf_tables change monitor in the namespace: NEWSETELEM
//! in table `autoblock`, ended by NEWGEN), checked afterwards (unmeasured) against the
//! element count; a poll would add its own 10-20 ms per look. If the daemon part fails it
//! prints `-` and says why. The last line printed is
//! `detect: <n> lines/s (fail2ban-regex <n> lines/s, sshguard <n> lines/s) burst <s> s
//! latency p99 <ms> ms`.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{load_average, verdict};
use crate::netns::{Measured, Netns};
use crate::util::{build_autoblock, find_program, require_root, show_duration, Flags};

/// Target: lines per second of `autoblock scan` on one core.
const LINES_TARGET: f64 = 1_000_000.0;
/// Target: how many times faster than fail2ban-regex.
const RATIO_TARGET: f64 = 50.0;
/// Target: seconds from the burst's last line until all its addresses are banned.
const BURST_TARGET_S: f64 = 2.0;
/// Target: p99 of line written -> ban in the kernel, in milliseconds.
const P99_TARGET_MS: f64 = 10.0;
/// Distinct attacking addresses in the generated log.
const ATTACKERS: u32 = 100_000;
const SSHG_PARSER: &str = "/usr/libexec/sshguard/sshg-parser";

/// Runs `cargo xtask bench detect`.
pub fn run(args: &[String]) -> Result<ExitCode> {
    let flags = Flags::parse(args, &[], &["--lines", "--peer-lines", "--attacks"])?;
    let count = |key: &str, default: u64| -> Result<u64> {
        match flags.value(key) {
            Some(v) => v.parse().with_context(|| format!("{key} {v}")),
            None => Ok(default),
        }
    };
    let lines = count("--lines", 2_000_000)?;
    let peer_lines = count("--peer-lines", 200_000)?.min(lines);
    let attacks = count("--attacks", ATTACKS)?;
    if !(1..=10_000).contains(&attacks) {
        bail!("--attacks must be between 1 and 10000");
    }
    if lines < 1000 {
        bail!("--lines must be at least 1000");
    }
    require_root("cargo xtask bench detect")?;
    install_peers()?;
    let bin = build_autoblock(true)?;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let full = dir.path().join("auth.log");
    let sample = dir.path().join("auth-sample.log");
    let (lines, failures) = generate(&full, &sample, lines, peer_lines)?;
    println!(
        "bench detect: {lines} syslog lines ({failures} of them about failures from {ATTACKERS} \
         addresses); peers read the first {peer_lines}; one fresh, empty network namespace; \
         load {}",
        load_average()
    );
    let ns = Netns::new()?;
    let sh = |cmd: String| vec!["sh".to_owned(), "-c".to_owned(), cmd];
    let q = |p: &Path| format!("'{}'", p.display());

    let ours = ns.measure(&sh(format!(
        "{} scan --filter sshd --json --utc {} >/dev/null",
        q(&bin),
        q(&full)
    )))?;
    let ours_rate = rate("autoblock scan", &ours, lines)?;
    let summary = ours.stderr.lines().last().unwrap_or("").to_owned();
    let ours_small = ns.measure(&sh(format!(
        "{} scan --filter sshd --json --utc {} >/dev/null",
        q(&bin),
        q(&sample)
    )))?;
    let ours_small_rate = rate("autoblock scan (sample)", &ours_small, peer_lines)?;

    let f2b = ns.measure(&sh(format!(
        "fail2ban-regex --print-no-missed --print-no-ignored {} sshd",
        q(&sample)
    )))?;
    let f2b_rate = rate("fail2ban-regex", &f2b, peer_lines).ok();
    let f2b_matched = f2b
        .stdout
        .lines()
        .find(|l| l.starts_with("Lines:"))
        .unwrap_or("")
        .to_owned();
    let sshg = ns.measure(&sh(format!("{SSHG_PARSER} < {} | wc -l", q(&sample))))?;
    let sshg_rate = rate("sshg-parser", &sshg, peer_lines).ok();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "  autoblock scan     {:>10.0} lines/s  ({lines} lines in {} CPU, {} wall; {summary})",
        ours_rate,
        show_duration(cpu(&ours)),
        show_duration(ours.wall)
    );
    let _ = writeln!(
        out,
        "  autoblock scan     {:>10.0} lines/s  (the {peer_lines}-line sample in {} CPU, {} wall)",
        ours_small_rate,
        show_duration(cpu(&ours_small)),
        show_duration(ours_small.wall)
    );
    let _ = writeln!(
        out,
        "  fail2ban-regex     {:>10.0} lines/s  ({peer_lines} lines in {} CPU, {} wall; {})",
        f2b_rate.unwrap_or(0.0),
        show_duration(cpu(&f2b)),
        show_duration(f2b.wall),
        f2b_matched.trim()
    );
    let _ = writeln!(
        out,
        "  sshguard parser    {:>10.0} lines/s  ({peer_lines} lines in {} CPU, {} wall; {} attacks)",
        sshg_rate.unwrap_or(0.0),
        show_duration(cpu(&sshg)),
        show_duration(sshg.wall),
        sshg.stdout.trim()
    );
    print!("{out}");
    let ratio = f2b_rate.map(|f| ours_rate / f);
    println!(
        "targets: >= {LINES_TARGET:.0} lines/s on one core: {}; >= {RATIO_TARGET}x fail2ban-regex: {} ({})",
        verdict(Some(ours_rate >= LINES_TARGET)),
        verdict(ratio.map(|r| r >= RATIO_TARGET)),
        ratio.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.0}x"))
    );
    drop(ns);
    let (burst, p99) = match daemon_part(&bin, dir.path(), attacks) {
        Ok(v) => v,
        Err(e) => {
            println!("burst and latency: not measured: {e:#}");
            (None, None)
        }
    };
    println!(
        "targets: burst fully banned <= {BURST_TARGET_S} s after the last line: {}; latency p99 <= {P99_TARGET_MS} ms: {}",
        verdict(burst.map(|b| b <= BURST_TARGET_S)),
        verdict(p99.map(|p| p <= P99_TARGET_MS))
    );
    let show = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.0}"));
    println!(
        "detect: {ours_rate:.0} lines/s (fail2ban-regex {} lines/s, sshguard {} lines/s) burst {} s latency p99 {} ms",
        show(f2b_rate),
        show(sshg_rate),
        burst.map_or_else(|| "-".to_owned(), |b| format!("{b:.2}")),
        p99.map_or_else(|| "-".to_owned(), |p| format!("{p:.1}"))
    );
    Ok(ExitCode::SUCCESS)
}

/// Failures per attacker in the burst and latency parts (the jail's maxretry).
const MAXRETRY: u32 = 3;
/// Single attacks timed in the latency part by default (`--attacks`; with 100, p99 is the
/// slowest one).
const ATTACKS: u64 = 100;
/// The longest the latency part may take.
const LATENCY_BUDGET: Duration = Duration::from_secs(90);

/// The daemon in a fresh namespace following a file (set layout): the burst of
/// [`ATTACKERS`] addresses, then `attacks` single attacks with the burst's bans held.
/// Bans are observed in the kernel: `autoblock --layout set list --count --json` (the
/// sets' element counts, no dump), polled without pause.
fn daemon_part(bin: &Path, dir: &Path, attacks: u64) -> Result<(Option<f64>, Option<f64>)> {
    use std::time::Instant;
    let log = dir.join("daemon-auth.log");
    let sock = dir.join("control.sock");
    let cfg = dir.join("autoblock.toml");
    std::fs::write(&log, "")?;
    std::fs::write(
        &cfg,
        format!(
            "layout = \"set\"\nstate_dir = \"{}\"\ncontrol_socket = \"{}\"\n\
             [[jail]]\nname = \"sshd\"\nfilter = \"sshd\"\nfiles = [\"{}\"]\n\
             maxretry = {MAXRETRY}\nfindtime = \"10m\"\nbantime = \"1h\"\n",
            dir.join("state").display(),
            sock.display(),
            log.display()
        ),
    )?;
    let ns = Netns::new()?;
    let (b, c) = (bin.to_path_buf(), cfg.clone());
    let mut daemon = ns
        .run(move || {
            std::process::Command::new(&b)
                .args(["run", "--config"])
                .arg(&c)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
        })
        .context("starting autoblock run")?;
    let result = (|| -> Result<(Option<f64>, Option<f64>)> {
        let status_argv = vec![
            "env".to_owned(),
            format!("AUTOBLOCK_CONTROL_SOCKET={}", sock.display()),
            bin.display().to_string(),
            "status".to_owned(),
            "--json".to_owned(),
        ];
        let up = |ns: &Netns| -> bool {
            ns.output(&status_argv, Vec::new())
                .is_ok_and(|o| o.status.success())
        };
        // What the kernel holds: the set layout's element counts, read directly.
        let count_argv = vec![
            "env".to_owned(),
            "-u".to_owned(),
            "AUTOBLOCK_CONTROL_SOCKET".to_owned(),
            bin.display().to_string(),
            "--layout".to_owned(),
            "set".to_owned(),
            "list".to_owned(),
            "--count".to_owned(),
            "--json".to_owned(),
        ];
        let bans = |ns: &Netns| -> Option<u64> {
            let out = ns.output(&count_argv, Vec::new()).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            v["total"].as_u64()
        };
        let start = Instant::now();
        while !up(&ns) {
            if start.elapsed() > Duration::from_secs(30) || daemon.try_wait()?.is_some() {
                bail!("the daemon did not answer on its control socket within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The burst: every address fails MAXRETRY times, written as fast as possible.
        let mut text = String::with_capacity(ATTACKERS as usize * 3 * 90);
        for k in 0..MAXRETRY {
            for i in 0..ATTACKERS {
                let _ = writeln!(
                    text,
                    "Nov 25 11:00:0{k} web1 sshd[{}]: Failed password for root from {} port {} ssh2",
                    100_000 + i * 4 + k,
                    attacker(i),
                    40_000 + k
                );
            }
        }
        let mut f = std::fs::OpenOptions::new().append(true).open(&log)?;
        f.write_all(text.as_bytes())?;
        f.flush()?;
        let written = Instant::now();
        let burst = loop {
            let n = bans(&ns).unwrap_or(0);
            if n >= u64::from(ATTACKERS) {
                break written.elapsed();
            }
            if written.elapsed() > Duration::from_secs(300) {
                bail!("only {n} of {ATTACKERS} bans after 300 s");
            }
        };
        println!(
            "  burst: {ATTACKERS} addresses x {MAXRETRY} failures appended -> all banned {} after the last line",
            show_duration(burst)
        );
        // Latency: one new attacker at a time, with the burst's bans held (after a
        // moment for the daemon to finish the burst's bookkeeping). Opened after the
        // burst, so that its 100,000 notifications are not read here.
        std::thread::sleep(Duration::from_secs(2));
        let mut mon = ns
            .run(autoblock_netlink::Monitor::open)
            .context("opening an nf_tables change monitor in the namespace")?;
        let mut lat = Vec::new();
        let mut held = bans(&ns).unwrap_or(0);
        let phase = Instant::now();
        for a in 0..attacks {
            if phase.elapsed() > LATENCY_BUDGET {
                println!(
                    "  latency: stopped after {a} attacks ({} budget)",
                    show_duration(LATENCY_BUDGET)
                );
                break;
            }
            let ip = format!("198.18.{}.{}", a / 250, a % 250 + 1);
            let mut t = String::new();
            for k in 0..MAXRETRY {
                let _ = writeln!(
                    t,
                    "Nov 25 11:10:0{k} web1 sshd[{}]: Failed password for root from {ip} port {} ssh2",
                    900_000 + a * 4 + u64::from(k),
                    50_000 + k
                );
            }
            // Whatever the kernel announced before this attack is not its ban.
            while mon.next(Some(0))?.is_some() {}
            f.write_all(t.as_bytes())?;
            f.flush()?;
            let t0 = Instant::now();
            let banned = loop {
                let left = Duration::from_secs(30).saturating_sub(t0.elapsed());
                if left.is_zero() {
                    break None;
                }
                match mon.next(Some(left.as_millis() as u64))? {
                    None => break None,
                    Some(tx) if tx.overrun => bail!("the change monitor lost notifications"),
                    Some(tx) => {
                        let added = tx.changes.iter().any(|c| {
                            c.kind == autoblock_netlink::ChangeKind::NewSetElem
                                && c.table.as_deref() == Some("autoblock")
                        });
                        if added {
                            break Some(t0.elapsed());
                        }
                    }
                }
            };
            let Some(took) = banned else {
                println!("  latency: attack {a} ({ip}) not banned within 30 s");
                return Ok((Some(burst.as_secs_f64()), None));
            };
            // The announced transaction must have been this ban: one more element.
            let n = bans(&ns).unwrap_or(0);
            if n != held + 1 {
                bail!(
                    "after attack {a} ({ip}) the kernel holds {n} bans, expected {}",
                    held + 1
                );
            }
            held = n;
            lat.push(took);
        }
        if lat.is_empty() {
            return Ok((Some(burst.as_secs_f64()), None));
        }
        lat.sort();
        let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)].as_secs_f64() * 1000.0;
        println!(
            "  latency of single attacks with {ATTACKERS} bans held: p50 {:.1} ms, p99 {:.1} ms, \
             max {:.1} ms ({} attacks; line written -> the kernel's NEWGEN of the ban)",
            pct(50),
            pct(99),
            pct(100),
            lat.len()
        );
        Ok((Some(burst.as_secs_f64()), Some(pct(99))))
    })();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = ns.check(&["nft", "flush", "ruleset"], "");
    result
}

fn rate(what: &str, m: &Measured, lines: u64) -> Result<f64> {
    if !m.status.success() {
        bail!(
            "{what} failed ({}): {}",
            m.status,
            m.stderr.lines().last().unwrap_or("")
        );
    }
    Ok(lines as f64 / cpu(m).as_secs_f64())
}

/// CPU time (user + sys) of a measured command: the machine is shared, so its
/// wall time says as much about the neighbours as about the program.
fn cpu(m: &Measured) -> Duration {
    (m.user + m.sys).max(Duration::from_micros(1))
}

/// Installs fail2ban and sshguard if missing, with service start-up prevented.
fn install_peers() -> Result<()> {
    let have = find_program("fail2ban-regex").is_some() && Path::new(SSHG_PARSER).exists();
    if have {
        return Ok(());
    }
    let policy = PathBuf::from("/usr/sbin/policy-rc.d");
    let before = std::fs::read(&policy).ok();
    let restore = |before: &Option<Vec<u8>>| -> Result<()> {
        match before {
            Some(b) => std::fs::write(&policy, b).context("restoring /usr/sbin/policy-rc.d"),
            None => std::fs::remove_file(&policy).context("removing /usr/sbin/policy-rc.d"),
        }
    };
    std::fs::write(&policy, "#!/bin/sh\nexit 101\n").context("writing policy-rc.d")?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o755))
            .context("chmod policy-rc.d")?;
    }
    println!("xtask: apt-get install fail2ban sshguard (services kept from starting)");
    let status = std::process::Command::new("apt-get")
        .args(["install", "-y", "-q", "fail2ban", "sshguard"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    restore(&before)?;
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("apt-get install fail2ban sshguard failed ({s}); run apt-get update first?"),
        Err(e) => bail!("cannot run apt-get: {e}"),
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn attacker(i: u32) -> String {
    if i % 10 == 9 {
        format!("2001:db8:{:x}:{:x}::{:x}", i >> 16, i & 0xffff, i % 251 + 1)
    } else {
        // 100.64.0.0/10 (shared address space) has room for all of them.
        let n = (100u32 << 24) | (64 << 16) | i;
        std::net::Ipv4Addr::from(n).to_string()
    }
}

const USERS: &[&str] = &[
    "admin", "test", "oracle", "ubuntu", "postgres", "git", "user", "ftpuser", "guest", "pi",
];

/// Writes at least `lines` lines to `full` (the last attack is written whole) and the
/// first `sample` of them to `sample_path`; returns how many lines were written and how
/// many of them are about a failure.
fn generate(full: &Path, sample_path: &Path, lines: u64, sample: u64) -> Result<(u64, u64)> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(full)?);
    let mut small = BufWriter::with_capacity(1 << 20, std::fs::File::create(sample_path)?);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut failures = 0u64;
    let mut written = 0u64;
    let mut pid = 10_000u32;
    let mut next_attacker = 0u32;
    let mut buf = String::new();
    let months = ["Nov"];
    let mut emit = |buf: &mut String, written: &mut u64| -> Result<()> {
        out.write_all(buf.as_bytes())?;
        if *written < sample {
            small.write_all(buf.as_bytes())?;
        }
        *written += 1;
        buf.clear();
        Ok(())
    };
    while written < lines {
        let secs = written * 86_000 / lines;
        let stamp = format!(
            "{} 25 {:02}:{:02}:{:02} web1",
            months[0],
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        pid = pid.wrapping_add(1 + rng.below(7) as u32);
        let port = 1024 + rng.below(64_000);
        let roll = rng.below(100);
        if roll < 45 {
            // An attack: every address fails several times over the log.
            let ip = attacker(if next_attacker < ATTACKERS {
                next_attacker += 1;
                next_attacker - 1
            } else {
                rng.below(u64::from(ATTACKERS)) as u32
            });
            let user = USERS[rng.below(USERS.len() as u64) as usize];
            match rng.below(4) {
                0 => {
                    let _ = writeln!(
                        buf,
                        "{stamp} sshd[{pid}]: Failed password for root from {ip} port {port} ssh2"
                    );
                    emit(&mut buf, &mut written)?;
                    failures += 1;
                }
                1 => {
                    let _ = writeln!(
                        buf,
                        "{stamp} sshd[{pid}]: Invalid user {user} from {ip} port {port}"
                    );
                    emit(&mut buf, &mut written)?;
                    let _ = writeln!(
                        buf,
                        "{stamp} sshd[{pid}]: pam_unix(sshd:auth): check pass; user unknown"
                    );
                    emit(&mut buf, &mut written)?;
                    let _ = writeln!(buf, "{stamp} sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}");
                    emit(&mut buf, &mut written)?;
                    let _ = writeln!(buf, "{stamp} sshd[{pid}]: Failed password for invalid user {user} from {ip} port {port} ssh2");
                    emit(&mut buf, &mut written)?;
                    failures += 4;
                }
                2 => {
                    let _ = writeln!(buf, "{stamp} sshd[{pid}]: User {user} from {ip} not allowed because not listed in AllowUsers");
                    emit(&mut buf, &mut written)?;
                    failures += 1;
                }
                _ => {
                    let _ = writeln!(buf, "{stamp} sshd[{pid}]: error: maximum authentication attempts exceeded for root from {ip} port {port} ssh2 [preauth]");
                    emit(&mut buf, &mut written)?;
                    failures += 1;
                }
            }
            let _ = writeln!(buf, "{stamp} sshd[{pid}]: Connection closed by authenticating user root {ip} port {port} [preauth]");
            emit(&mut buf, &mut written)?;
        } else if roll < 75 {
            let ip = format!("198.51.100.{}", 1 + rng.below(250));
            let _ = writeln!(buf, "{stamp} sshd[{pid}]: Accepted publickey for deploy from {ip} port {port} ssh2: ED25519 SHA256:q0e5Uk3bT8uGJmWcXkR2mVxQ0W1yN7m4aZ8dE6fH2sQ");
            emit(&mut buf, &mut written)?;
            let _ = writeln!(buf, "{stamp} sshd[{pid}]: pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)");
            emit(&mut buf, &mut written)?;
            let _ = writeln!(buf, "{stamp} sshd[{pid}]: Received disconnect from {ip} port {port}:11: disconnected by user");
            emit(&mut buf, &mut written)?;
            let _ = writeln!(
                buf,
                "{stamp} sshd[{pid}]: pam_unix(sshd:session): session closed for user deploy"
            );
            emit(&mut buf, &mut written)?;
        } else if roll < 90 {
            let _ = writeln!(buf, "{stamp} CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)");
            emit(&mut buf, &mut written)?;
            let _ = writeln!(buf, "{stamp} CRON[{}]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)", pid + 1);
            emit(&mut buf, &mut written)?;
        } else {
            let _ = writeln!(
                buf,
                "{stamp} systemd-logind[412]: New session {pid} of user deploy."
            );
            emit(&mut buf, &mut written)?;
        }
    }
    out.flush()?;
    small.flush()?;
    Ok((written, failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_log_is_deterministic_and_names_attackers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let (written, n) = generate(&a, &b, 400_000, 1000).expect("generate");
        let text = std::fs::read_to_string(&a).expect("read");
        assert_eq!(text.lines().count() as u64, written);
        assert!(written >= 400_000);
        assert_eq!(
            std::fs::read_to_string(&b).expect("read").lines().count(),
            1000
        );
        assert!(n > 100_000, "{n} failure lines");
        assert!(text.contains(&format!(" {} ", attacker(1000))));
        let (c, d) = (dir.path().join("c"), dir.path().join("d"));
        generate(&c, &d, 400_000, 1000).expect("generate");
        assert_eq!(std::fs::read(&c).expect("read"), text.as_bytes());
    }
}
