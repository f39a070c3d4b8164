//! What the daemon's end-to-end tests share: sshd failure lines made from the project's own
//! recording of Debian 12's sshd, and the `[[jail]]` block they configure.

use std::net::IpAddr;
use std::path::Path;

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
