//! [`TestBed`]: two namespaces joined by a veth pair, for packet tests.
//!
//! The "host" namespace runs autoblock; the "outside" namespace owns the
//! source addresses that get blocked and sends UDP to the host
//! ([`TestBed::send_udp`]). Neighbour entries are static on both sides, so
//! blocking a source can never block ARP or neighbour discovery, and IPv6
//! duplicate address detection is off, so every address works at once.
//!
//! It deliberately does not load any firewall rule, and sends traffic only
//! between the two namespaces it created.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::netns::Netns;
use crate::tools::tool_with_input;

/// The addresses of the test bed: all from documentation ranges, except the
/// veth link between the two namespaces.
///
/// Conventions, so that tests read alike: block `*_BLOCKED`; the `*_SAME_*`
/// addresses share its prefix (for prefix blocks); `*_OTHER_*` sit in
/// another prefix; `*_UNBLOCKED` is never blocked by any test and proves the
/// host still receives traffic.
pub mod addr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// The host's IPv4 address (on its veth; allowlisted by autoblock as one
    /// of the host's own addresses, so it is never a source to block).
    pub const HOST_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    /// The host's IPv6 address.
    pub const HOST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);
    /// The outside namespace's link address: the host's gateway to every
    /// source below.
    pub const OUTSIDE_LINK_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
    /// The outside namespace's IPv6 link address.
    pub const OUTSIDE_LINK_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 2);
    /// Prefix length of the veth link (IPv4).
    pub const LINK_PREFIX_V4: u8 = 24;
    /// Prefix length of the veth link (IPv6).
    pub const LINK_PREFIX_V6: u8 = 64;

    /// The usual IPv4 source to block: 198.51.100.9.
    pub const V4_BLOCKED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
    /// Same /24 as [`V4_BLOCKED`]: 198.51.100.10.
    pub const V4_SAME_24: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    /// Same /24 as [`V4_BLOCKED`]: 198.51.100.11.
    pub const V4_SAME_24_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
    /// Another /24: 203.0.113.9.
    pub const V4_OTHER_24: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
    /// Same /24 as [`V4_OTHER_24`]: 203.0.113.10.
    pub const V4_OTHER_24_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    /// Never blocked by convention: 192.0.2.9.
    pub const V4_UNBLOCKED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);

    /// The usual IPv6 source to block: 2001:db8:1::9.
    pub const V6_BLOCKED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 9);
    /// Same /64 (and /48) as [`V6_BLOCKED`]: 2001:db8:1::10.
    pub const V6_SAME_64: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
    /// Same /48 as [`V6_BLOCKED`], another /64: 2001:db8:1:ff::9.
    pub const V6_SAME_48: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0xff, 0, 0, 0, 9);
    /// Another /48: 2001:db8:2::9.
    pub const V6_OTHER_48: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 9);
    /// Same /48 as [`V6_OTHER_48`]: 2001:db8:2::10.
    pub const V6_OTHER_48_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10);
    /// Never blocked by convention: 2001:db8:3::9.
    pub const V6_UNBLOCKED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 9);

    /// Every IPv4 source the outside namespace owns.
    pub const SOURCES_V4: [Ipv4Addr; 6] = [
        V4_BLOCKED,
        V4_SAME_24,
        V4_SAME_24_B,
        V4_OTHER_24,
        V4_OTHER_24_B,
        V4_UNBLOCKED,
    ];
    /// Every IPv6 source the outside namespace owns.
    pub const SOURCES_V6: [Ipv6Addr; 6] = [
        V6_BLOCKED,
        V6_SAME_64,
        V6_SAME_48,
        V6_OTHER_48,
        V6_OTHER_48_B,
        V6_UNBLOCKED,
    ];
    /// The networks the host routes through the outside namespace: every
    /// source above lies in one of them.
    pub const ROUTED: [&str; 4] = [
        "198.51.100.0/24",
        "203.0.113.0/24",
        "192.0.2.0/24",
        "2001:db8::/32",
    ];

    /// Every source the outside namespace owns, IPv4 first.
    pub fn sources() -> Vec<IpAddr> {
        SOURCES_V4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(SOURCES_V6.iter().map(|a| IpAddr::V6(*a)))
            .collect()
    }

    /// The host address a packet from `src` is sent to (same family).
    pub fn host_for(src: IpAddr) -> IpAddr {
        match src {
            IpAddr::V4(_) => IpAddr::V4(HOST_V4),
            IpAddr::V6(_) => IpAddr::V6(HOST_V6),
        }
    }
}

/// Name of the veth end in the host namespace.
pub const HOST_IF: &str = "ab-host";
/// Name of the veth end in the outside namespace.
pub const OUTSIDE_IF: &str = "ab-out";
/// Fixed MAC of the host's veth end (locally administered), so the static
/// neighbour entries can be written before the link exists.
const HOST_MAC: &str = "02:ab:00:00:00:01";
/// Fixed MAC of the outside veth end.
const OUTSIDE_MAC: &str = "02:ab:00:00:00:02";

/// How long [`TestBed::send_udp`] waits for a datagram to arrive: on a veth
/// pair delivery takes microseconds, so this only bounds the "dropped" case.
pub const DEFAULT_UDP_TIMEOUT: Duration = Duration::from_millis(300);

/// How long one readiness probe of a new bed waits.
const READY_PROBE_TIMEOUT: Duration = Duration::from_millis(50);
/// How long a new bed may take to carry traffic from every source.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// The two-namespace packet test bed (see the module docs).
#[derive(Debug)]
pub struct TestBed {
    host: Netns,
    outside: Netns,
}

impl TestBed {
    /// Creates both namespaces, the veth pair, addresses, routes and static
    /// neighbour entries. Takes a few milliseconds.
    ///
    /// # Panics
    ///
    /// Without root, or when `ip` fails (with its stderr).
    #[allow(clippy::new_without_default)] // a test bed is created, never defaulted
    pub fn new() -> TestBed {
        let host = Netns::new();
        let outside = Netns::new();
        let outside_tid = outside.tid().to_string();
        let link = format!(
            "link add {HOST_IF} address {HOST_MAC} type veth \
             peer name {OUTSIDE_IF} address {OUTSIDE_MAC} netns {outside_tid}\n"
        );
        tool_with_input(&host, &["ip", "-batch", "-"], &(link + &host_batch()));
        tool_with_input(&outside, &["ip", "-batch", "-"], &outside_batch());
        let bed = TestBed { host, outside };
        bed.wait_until_ready();
        bed
    }

    /// Waits until a datagram from every source reaches the host.
    ///
    /// A new veth pair is not always usable at once: the kernel finishes
    /// bringing a link up (carrier, queues, IPv6) in deferred work, which can
    /// wait behind other namespaces being created and destroyed. Seen here:
    /// the first IPv6 datagram of a new bed was lost in about one bed in
    /// twenty while other namespace tests ran, and the next one arrived.
    /// Probing before any rule exists keeps that start-up window out of
    /// every test's packet checks.
    fn wait_until_ready(&self) {
        let started = Instant::now();
        for src in addr::sources() {
            while !self.send_udp_timeout(src, 0, READY_PROBE_TIMEOUT) {
                assert!(
                    started.elapsed() < READY_DEADLINE,
                    "the test bed is not usable {READY_DEADLINE:?} after set-up: \
                     UDP from {src} never reached the host"
                );
            }
        }
    }

    /// The host namespace (where autoblock runs).
    pub fn host(&self) -> &Netns {
        &self.host
    }

    /// The outside namespace (where the sources live).
    pub fn outside(&self) -> &Netns {
        &self.outside
    }

    /// Sends one UDP datagram from `src` (one of [`addr::sources`]) in the
    /// outside namespace to the host's address of the same family on `port`
    /// (0: any free port), and reports whether the host received it within
    /// [`DEFAULT_UDP_TIMEOUT`].
    ///
    /// # Panics
    ///
    /// When the bed itself is broken: the host port cannot be bound, or the
    /// outside namespace cannot send (for example `src` is not one of its
    /// addresses).
    pub fn send_udp(&self, src: IpAddr, port: u16) -> bool {
        self.send_udp_timeout(src, port, DEFAULT_UDP_TIMEOUT)
    }

    /// [`TestBed::send_udp`] with an explicit timeout.
    pub fn send_udp_timeout(&self, src: IpAddr, port: u16, timeout: Duration) -> bool {
        let dst = addr::host_for(src);
        let listener = self
            .host
            .run(move || UdpSocket::bind(SocketAddr::new(dst, port)))
            .unwrap_or_else(|e| panic!("cannot bind UDP {dst} port {port} in the host: {e}"));
        let to = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("UDP listener has no local address: {e}"));
        let token = unique_token();
        let payload = token.clone();
        self.outside
            .run(move || {
                let socket = UdpSocket::bind(SocketAddr::new(src, 0))?;
                socket.send_to(&payload, to)
            })
            .unwrap_or_else(|e| panic!("cannot send UDP from {src} to {to} (outside): {e}"));
        receive_token(&listener, &token, src, timeout)
    }
}

/// Waits until `listener` receives `token` from `src`, ignoring anything
/// else (a stray datagram cannot make a dropped packet look delivered).
fn receive_token(listener: &UdpSocket, token: &[u8], src: IpAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 128];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        if let Err(e) = listener.set_read_timeout(Some(left)) {
            panic!("cannot set a UDP read timeout: {e}");
        }
        match listener.recv_from(&mut buf) {
            Ok((n, from)) if &buf[..n] == token && from.ip() == src => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // An ICMP error queued on the socket says nothing about `src`.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(e) => panic!("receiving UDP in the host failed: {e}"),
        }
    }
}

/// A payload no other datagram of this process carries.
fn unique_token() -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("autoblock-test {} {n}", std::process::id()).into_bytes()
}

/// `ip -batch` commands for the host end (after the link exists).
fn host_batch() -> String {
    let mut batch = format!(
        "link set {HOST_IF} up\n\
         addr add {}/{} dev {HOST_IF}\n\
         addr add {}/{} dev {HOST_IF} nodad\n\
         neigh replace {} lladdr {OUTSIDE_MAC} dev {HOST_IF} nud permanent\n\
         neigh replace {} lladdr {OUTSIDE_MAC} dev {HOST_IF} nud permanent\n",
        addr::HOST_V4,
        addr::LINK_PREFIX_V4,
        addr::HOST_V6,
        addr::LINK_PREFIX_V6,
        addr::OUTSIDE_LINK_V4,
        addr::OUTSIDE_LINK_V6,
    );
    for net in addr::ROUTED {
        let via = if net.contains(':') {
            addr::OUTSIDE_LINK_V6.to_string()
        } else {
            addr::OUTSIDE_LINK_V4.to_string()
        };
        batch.push_str(&format!("route add {net} via {via} dev {HOST_IF}\n"));
    }
    batch
}

/// `ip -batch` commands for the outside end.
fn outside_batch() -> String {
    let mut batch = format!(
        "link set {OUTSIDE_IF} up\n\
         addr add {}/{} dev {OUTSIDE_IF}\n\
         addr add {}/{} dev {OUTSIDE_IF} nodad\n\
         neigh replace {} lladdr {HOST_MAC} dev {OUTSIDE_IF} nud permanent\n\
         neigh replace {} lladdr {HOST_MAC} dev {OUTSIDE_IF} nud permanent\n",
        addr::OUTSIDE_LINK_V4,
        addr::LINK_PREFIX_V4,
        addr::OUTSIDE_LINK_V6,
        addr::LINK_PREFIX_V6,
        addr::HOST_V4,
        addr::HOST_V6,
    );
    for a in addr::SOURCES_V4 {
        batch.push_str(&format!("addr add {a}/32 dev {OUTSIDE_IF}\n"));
    }
    for a in addr::SOURCES_V6 {
        batch.push_str(&format!("addr add {a}/128 dev {OUTSIDE_IF} nodad\n"));
    }
    batch
}
