//! `cargo xtask demo`: autoblock's main job, shown step by step in two
//! throwaway network namespaces ("host" runs autoblock, "outside" sends
//! packets from the addresses that get blocked).
//!
//! The namespaces are anonymous and owned by threads of this process (see
//! `netns.rs`), so the kernel removes them whenever xtask ends: normally, on
//! an error, or on Ctrl-C. The demo runs autoblock with `--no-mirror`, so it
//! writes no file either. It deliberately touches nothing of this machine's
//! own firewall or network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::netns::Netns;
use crate::util::{build_autoblock, require_root, Flags};

const HOST_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const HOST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);
const BLOCKED_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
const BLOCKED_NET_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);
const CLEAN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
const BLOCKED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 9);
const CLEAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 9);
const PORT: u16 = 5353;
const SOURCES: [IpAddr; 5] = [
    IpAddr::V4(BLOCKED_V4),
    IpAddr::V4(BLOCKED_NET_V4),
    IpAddr::V4(CLEAN_V4),
    IpAddr::V6(BLOCKED_V6),
    IpAddr::V6(CLEAN_V6),
];

/// Runs `cargo xtask demo`.
pub fn run(args: &[String]) -> Result<ExitCode> {
    Flags::parse(args, &[], &[])?;
    require_root("cargo xtask demo")?;
    let bin = build_autoblock(true)?;
    let bin = bin.to_string_lossy().into_owned();
    let demo = Demo::new(bin)?;
    demo.show()?;
    if demo.failures.get() > 0 {
        println!(
            "\n{} step(s) failed; the namespaces are gone all the same.",
            demo.failures.get()
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("\nDone: both namespaces are gone, nothing on this machine was changed.");
    Ok(ExitCode::SUCCESS)
}

struct Demo {
    bin: String,
    host: Netns,
    outside: Netns,
    failures: std::cell::Cell<u32>,
    step: std::cell::Cell<u32>,
}

impl Demo {
    fn new(bin: String) -> Result<Demo> {
        let host = Netns::new()?;
        let outside = Netns::new()?;
        let tid = outside.tid().to_string();
        let link = format!(
            "link add ab-host address 02:ab:00:00:00:01 type veth \
             peer name ab-out address 02:ab:00:00:00:02 netns {tid}\n\
             link set ab-host up\n\
             addr add {HOST_V4}/24 dev ab-host\n\
             addr add {HOST_V6}/64 dev ab-host nodad\n\
             neigh replace 10.200.0.2 lladdr 02:ab:00:00:00:02 dev ab-host nud permanent\n\
             neigh replace fd00:200::2 lladdr 02:ab:00:00:00:02 dev ab-host nud permanent\n\
             route add 198.51.100.0/24 via 10.200.0.2\n\
             route add 203.0.113.0/24 via 10.200.0.2\n\
             route add 192.0.2.0/24 via 10.200.0.2\n\
             route add 2001:db8::/32 via fd00:200::2\n"
        );
        host.check(&["ip", "-batch", "-"], &link)
            .context("setting up the host namespace")?;
        let outside_batch = format!(
            "link set ab-out up\n\
             addr add 10.200.0.2/24 dev ab-out\n\
             addr add fd00:200::2/64 dev ab-out nodad\n\
             neigh replace {HOST_V4} lladdr 02:ab:00:00:00:01 dev ab-out nud permanent\n\
             neigh replace {HOST_V6} lladdr 02:ab:00:00:00:01 dev ab-out nud permanent\n\
             addr add {BLOCKED_V4}/32 dev ab-out\n\
             addr add {BLOCKED_NET_V4}/32 dev ab-out\n\
             addr add {CLEAN_V4}/32 dev ab-out\n\
             addr add {BLOCKED_V6}/128 dev ab-out nodad\n\
             addr add {CLEAN_V6}/128 dev ab-out nodad\n"
        );
        outside
            .check(&["ip", "-batch", "-"], &outside_batch)
            .context("setting up the outside namespace")?;
        let demo = Demo {
            bin,
            host,
            outside,
            failures: std::cell::Cell::new(0),
            step: std::cell::Cell::new(0),
        };
        demo.wait_until_ready()?;
        Ok(demo)
    }

    fn show(&self) -> Result<()> {
        println!(
            "Two throwaway network namespaces joined by a veth pair:\n  \
             host    {HOST_V4}, {HOST_V6} (runs autoblock)\n  \
             outside {BLOCKED_V4}, {BLOCKED_NET_V4}, {CLEAN_V4}, {BLOCKED_V6}, {CLEAN_V6}\n\
             Every autoblock command below runs with --no-mirror: the demo writes no file."
        );

        self.heading("Create the structure: INPUT-AUTO chains and the INPUT jump (ip and ip6)");
        self.autoblock(&["init"]);
        self.host_cmd(&["iptables-nft", "-S"]);

        self.heading("Block an address, a /24 and an IPv6 /48");
        self.autoblock(&[
            "block",
            "198.51.100.9",
            "203.0.113.0/24",
            "2001:db8:1::/48",
            "--comment",
            "demo",
        ]);

        self.heading("What autoblock has blocked");
        self.autoblock(&["list"]);

        self.heading("The same, as iptables sees it");
        self.host_cmd(&["iptables-nft", "-L", "INPUT-AUTO", "-n", "-v"]);
        self.host_cmd(&["ip6tables-nft", "-L", "INPUT-AUTO", "-n", "-v"]);

        self.heading("Packets from the outside namespace to the host");
        for src in SOURCES {
            self.packet(src)?;
        }
        println!("\nThe counters moved:");
        self.host_cmd(&["iptables-nft", "-L", "INPUT-AUTO", "-n", "-v"]);
        self.host_cmd(&["ip6tables-nft", "-L", "INPUT-AUTO", "-n", "-v"]);

        self.heading("Unblock the single address");
        self.autoblock(&["unblock", "198.51.100.9"]);
        self.packet(IpAddr::V4(BLOCKED_V4))?;
        self.autoblock(&["list"]);

        self.heading("Remove everything autoblock created");
        self.autoblock(&["remove"]);
        self.host_cmd(&["iptables-nft", "-S"]);
        self.host_cmd(&["ip6tables-nft", "-S"]);
        self.packet(IpAddr::V6(BLOCKED_V6))?;
        Ok(())
    }

    fn heading(&self, text: &str) {
        let n = self.step.get() + 1;
        self.step.set(n);
        println!("\n=== {n}. {text} ===");
    }

    fn autoblock(&self, args: &[&str]) {
        let mut argv = vec![self.bin.clone(), "--no-mirror".to_owned()];
        argv.extend(args.iter().map(|s| s.to_string()));
        println!("[host]$ autoblock {}", args.join(" "));
        self.run_shown(argv);
    }

    fn host_cmd(&self, argv: &[&str]) {
        println!("[host]$ {}", argv.join(" "));
        self.run_shown(argv.iter().map(|s| s.to_string()).collect());
    }

    fn run_shown(&self, argv: Vec<String>) {
        match self.host.output(&argv, Vec::new()) {
            Ok(output) => {
                print!("{}", String::from_utf8_lossy(&output.stdout));
                print!("{}", String::from_utf8_lossy(&output.stderr));
                if !output.status.success() {
                    println!("  -> FAILED ({})", output.status);
                    self.failures.set(self.failures.get() + 1);
                }
            }
            Err(e) => {
                println!("  -> FAILED: {e:#}");
                self.failures.set(self.failures.get() + 1);
            }
        }
    }

    /// Sends one UDP datagram from `src` (outside) to the host and says
    /// whether it arrived.
    fn packet(&self, src: IpAddr) -> Result<()> {
        let to = SocketAddr::new(host_for(src), PORT);
        let arrived = self.deliver(src, Duration::from_millis(300))?;
        println!(
            "[outside] UDP {src} -> {to}: {}",
            if arrived {
                "delivered"
            } else {
                "DROPPED (no datagram within 300 ms)"
            }
        );
        Ok(())
    }

    /// Waits (up to 10 s) until a datagram from every source arrives,
    /// before any rule exists: a new veth pair can lose its very first
    /// IPv6 datagram while the kernel finishes bringing the link up.
    fn wait_until_ready(&self) -> Result<()> {
        let started = Instant::now();
        for src in SOURCES {
            while !self.deliver(src, Duration::from_millis(50))? {
                if started.elapsed() > Duration::from_secs(10) {
                    anyhow::bail!("the namespaces carry no UDP from {src} 10 s after set-up");
                }
            }
        }
        Ok(())
    }

    /// Sends one UDP datagram from `src` to the host; whether it arrived
    /// within `timeout`.
    fn deliver(&self, src: IpAddr, timeout: Duration) -> Result<bool> {
        let to = SocketAddr::new(host_for(src), PORT);
        let listener = self
            .host
            .run(move || UdpSocket::bind(to))
            .with_context(|| format!("binding {to} in the host"))?;
        let payload = format!("autoblock demo from {src}");
        let sent = payload.clone();
        self.outside
            .run(move || -> std::io::Result<usize> {
                UdpSocket::bind(SocketAddr::new(src, 0))?.send_to(sent.as_bytes(), to)
            })
            .with_context(|| format!("sending from {src}"))?;
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 128];
        let arrived = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            listener.set_read_timeout(Some(left))?;
            match listener.recv_from(&mut buf) {
                Ok((n, from)) if from.ip() == src && &buf[..n] == payload.as_bytes() => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        Ok(arrived)
    }
}

/// The host address a datagram from `src` goes to.
fn host_for(src: IpAddr) -> IpAddr {
    match src {
        IpAddr::V4(_) => HOST_V4.into(),
        IpAddr::V6(_) => HOST_V6.into(),
    }
}
