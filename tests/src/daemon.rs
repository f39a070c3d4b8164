//! What the daemon's end-to-end tests share: a running `autoblock run` ([`RunningDaemon`]),
//! sshd failure lines made from the project's own recording of Debian 12's sshd, and the
//! `[[jail]]` block they configure.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{autoblock_bin, Netns};

/// `autoblock run --config CONFIG` spawned in a namespace, its stderr in a log file; killed
/// on drop.
#[derive(Debug)]
pub struct RunningDaemon {
    child: Option<Child>,
    log: PathBuf,
}

impl RunningDaemon {
    /// Spawns the daemon in `ns` with `AUTOBLOCK_LOG=filter`, its stderr into `log`, and
    /// waits until it has logged "autoblock daemon running" and `ready()` holds.
    ///
    /// # Panics
    ///
    /// When it cannot be spawned, exits first, or is not ready within `within` (with its
    /// log in the message).
    pub fn start(
        ns: &Netns,
        config: &Path,
        log: PathBuf,
        filter: &str,
        within: Duration,
        ready: impl Fn() -> bool,
    ) -> RunningDaemon {
        let err = std::fs::File::create(&log).expect("create the daemon's log file");
        let mut cmd = Command::new(autoblock_bin());
        cmd.args(["run", "--config"])
            .arg(config)
            .env("AUTOBLOCK_LOG", filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        let mut d = RunningDaemon {
            child: Some(ns.spawn(cmd).expect("spawn autoblock run")),
            log,
        };
        let started = Instant::now();
        while !(d.log_text().contains("autoblock daemon running") && ready()) {
            if let Some(Ok(Some(st))) = d.child.as_mut().map(Child::try_wait) {
                panic!("the daemon exited at start ({st:?}):\n{}", d.log_text());
            }
            assert!(
                started.elapsed() < within,
                "the daemon was not ready within {within:?}:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// What the daemon has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    ///
    /// # Panics
    ///
    /// When the process was taken with [`RunningDaemon::take_child`].
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon is running").id()
    }

    /// The running process, taken (the caller signals and reaps it).
    ///
    /// # Panics
    ///
    /// When it was taken before.
    pub fn take_child(&mut self) -> Child {
        self.child.take().expect("the daemon is running")
    }
}

impl Drop for RunningDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The project's own recording of Debian 12's sshd (OpenSSH 9.2).
const RECORDING: &[u8] =
    include_bytes!("../../crates/autoblock-detect/tests/data/debian12-openssh-9.2.syslog.raw");
/// The address the recording's client had.
const RECORDED_CLIENT: &str = "10.77.0.2";

/// `n` "Failed password" lines of the recording, rewritten to come from `src`, each with its
/// own sshd pid from `pid_base` on (so that each is one attempt), in the file envelope
/// syslog writes.
pub fn sshd_failure_lines(src: IpAddr, n: usize, pid_base: u32) -> String {
    let text = String::from_utf8_lossy(RECORDING);
    let msgs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once("]: ").map(|(_, m)| m))
        .filter(|m| m.starts_with("Failed password for ") && m.contains(RECORDED_CLIENT))
        .collect();
    assert!(msgs.len() >= 3, "the recording has too few failures");
    (0..n)
        .map(|i| {
            let m = msgs[i % msgs.len()].replace(RECORDED_CLIENT, &src.to_string());
            format!(
                "Nov 25 10:29:{:02} bastion sshd[{}]: {m}\n",
                i % 60,
                pid_base + i as u32
            )
        })
        .collect()
}

/// The `[[jail]]` block of the daemon tests: filter `sshd` following `DIR/auth.log`,
/// banned for 1 h after 3 failures within 10 min.
pub fn sshd_jail(dir: &Path) -> String {
    format!(
        r#"[[jail]]
name = "sshd"
filter = "sshd"
files = ["{d}/auth.log"]
maxretry = 3
findtime = "10m"
bantime = "1h"
"#,
        d = dir.display()
    )
}

/// Writes the daemon tests' `DIR/autoblock.toml`: `layout`, state, control socket and
/// sysconfig files inside `dir`, then `extra`, then [`sshd_jail`]; creates the empty
/// `DIR/auth.log` the jail follows and the sysconfig directory.
pub fn write_daemon_config(dir: &Path, layout: &str, extra: &str) {
    std::fs::write(dir.join("auth.log"), "").expect("create auth.log");
    let text = format!(
        r#"layout = "{layout}"
state_dir = "{d}/state"
control_socket = "{d}/control.sock"
sysconfig_dir = "{d}/sysconfig"
{extra}
{jail}"#,
        d = dir.display(),
        jail = sshd_jail(dir)
    );
    std::fs::create_dir_all(dir.join("sysconfig")).expect("create the sysconfig directory");
    std::fs::write(dir.join("autoblock.toml"), text).expect("write autoblock.toml");
}
