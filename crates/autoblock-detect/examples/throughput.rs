//! Measures scanner throughput on a synthetic auth log (sshd attack lines
//! with many addresses, PAM lines, and other programs' lines):
//! `cargo run --release -p autoblock-detect --example throughput [LINES]`.
//! Deliberately not a test: timings depend on the machine.

use std::time::Instant;

use autoblock_detect::{Filter, Mode, Scanner, Timestamp, YearContext};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let mut text = Vec::with_capacity(n * 110);
    for i in 0..n {
        let a = (i * 7919) % 250;
        let b = (i * 104_729) % 250;
        let pid = 1000 + (i / 4) % 30_000;
        let line = match i % 10 {
            0..=3 => format!("Nov 25 10:{:02}:{:02} web sshd[{pid}]: Failed password for invalid user admin from 203.0.{a}.{b} port {} ssh2\n", (i / 60) % 60, i % 60, 40000 + i % 20000),
            4 => format!("Nov 25 10:{:02}:{:02} web sshd[{pid}]: Invalid user oracle from 198.51.{a}.{b} port 4242\n", (i / 60) % 60, i % 60),
            5 => format!("Nov 25 10:{:02}:{:02} web sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.{a}.{b}  user=root\n", (i / 60) % 60, i % 60),
            6 => format!("Nov 25 10:{:02}:{:02} web sshd[{pid}]: Connection closed by authenticating user root 203.0.{a}.{b} port 4242 [preauth]\n", (i / 60) % 60, i % 60),
            7 => format!("Nov 25 10:{:02}:{:02} web CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)\n", (i / 60) % 60, i % 60),
            8 => format!("Nov 25 10:{:02}:{:02} web systemd[1]: Started session-{i}.scope - Session {i} of User root.\n", (i / 60) % 60, i % 60),
            _ => format!("Nov 25 10:{:02}:{:02} web sshd[{pid}]: Received disconnect from 203.0.{a}.{b} port 4242:11: Bye Bye [preauth]\n", (i / 60) % 60, i % 60),
        };
        text.extend_from_slice(line.as_bytes());
    }
    for mode in [Mode::Normal, Mode::Aggressive] {
        let mut s = Scanner::new(Filter::Sshd(mode), YearContext::utc(Timestamp::now()));
        let t = Instant::now();
        let mut found = 0u64;
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            if s.feed(i as u64 + 1, line).is_some() {
                found += 1;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{mode:?}: {n} lines ({} MB) in {secs:.3} s = {:.0} lines/s, {found} detections",
            text.len() >> 20,
            n as f64 / secs
        );
    }
}
