//! The `NETLINK_NETFILTER` socket: the only place in autoblock with `unsafe` code.
//!
//! It opens, configures and reads/writes the socket with plain `libc` calls and exposes a
//! safe [`Transport`](crate::Transport) implementation. It knows nothing about messages: the
//! codec and the transaction logic live elsewhere and are tested without a kernel.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::conn::Transport;
use crate::consts::*;
use crate::error::Error;

/// A bound `NETLINK_NETFILTER` socket with extended acks and capped acks enabled.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    portid: u32,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Socket {
    /// Opens and binds a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, Error> {
        // SAFETY: plain socket(2) call with constant arguments; the returned descriptor is
        // checked and immediately owned by an OwnedFd.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        })
        .map_err(|e| Error::io("socket", e))?;
        // SAFETY: `raw` is a freshly created, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value (nl_pid 0 lets the
        // kernel assign the port id).
        let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let addr_len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_nl and `addr_len` is its exact size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                addr_len,
            )
        })
        .map_err(|e| Error::io("bind", e))?;

        let mut bound = addr;
        let mut len = addr_len;
        // SAFETY: `bound` and `len` are valid for writes of a sockaddr_nl.
        cvt(unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut bound as *mut libc::sockaddr_nl).cast(),
                &mut len,
            )
        })
        .map_err(|e| Error::io("getsockname", e))?;

        let s = Socket {
            fd,
            portid: bound.nl_pid,
        };
        // Extended acks carry the kernel's error text and the offending attribute offset;
        // capped acks keep error replies small (the request is not copied back).
        s.setsockopt_int(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            .map_err(|e| Error::io("setsockopt(NETLINK_EXT_ACK)", e))?;
        s.setsockopt_int(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            .map_err(|e| Error::io("setsockopt(NETLINK_CAP_ACK)", e))?;
        Ok(s)
    }

    fn setsockopt_int(&self, level: i32, name: i32, value: i32) -> io::Result<()> {
        // SAFETY: the option value is a valid c_int and the length matches it.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&value as *const i32).cast(),
                mem::size_of::<i32>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    fn getsockopt_int(&self, level: i32, name: i32) -> io::Result<i32> {
        let mut value: i32 = 0;
        let mut len = mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: `value`/`len` are valid for writes of a c_int.
        cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&mut value as *mut i32).cast(),
                &mut len,
            )
        })?;
        Ok(value)
    }

    /// The network namespace's cookie (`SO_NETNS_COOKIE`, Linux ≥ 5.14): a number no other
    /// namespace gets until the machine reboots, unlike the namespace's inode number. `None`
    /// on kernels without it.
    pub fn netns_cookie(&self) -> Option<u64> {
        const SO_NETNS_COOKIE: i32 = 71;
        let mut value: u64 = 0;
        let mut len = mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: `value`/`len` are valid for writes of a u64.
        cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_NETNS_COOKIE,
                (&mut value as *mut u64).cast(),
                &mut len,
            )
        })
        .ok()?;
        (len as usize == mem::size_of::<u64>()).then_some(value)
    }

    /// Joins a multicast group (`NFNLGRP_NFTABLES` = 7 for ruleset change events).
    pub fn subscribe(&self, group: u32) -> Result<(), Error> {
        self.setsockopt_int(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group as i32)
            .map_err(|e| Error::io("setsockopt(NETLINK_ADD_MEMBERSHIP)", e))
    }

    /// Current send buffer limit (`sk_sndbuf`, already doubled by the kernel).
    pub fn send_buffer(&self) -> usize {
        self.getsockopt_int(libc::SOL_SOCKET, libc::SO_SNDBUF)
            .map(|v| v.max(0) as usize)
            .unwrap_or(0)
    }

    /// Current receive buffer limit.
    pub fn recv_buffer(&self) -> usize {
        self.getsockopt_int(libc::SOL_SOCKET, libc::SO_RCVBUF)
            .map(|v| v.max(0) as usize)
            .unwrap_or(0)
    }

    /// Raises a buffer: first the privileged `*FORCE` option, then the plain one (clamped
    /// by `net.core.[rw]mem_max`). Returns the limit in force afterwards.
    fn raise(&self, force: i32, plain: i32, want: usize) -> usize {
        let half = want.div_ceil(2).min(i32::MAX as usize) as i32;
        if self.setsockopt_int(libc::SOL_SOCKET, force, half).is_err() {
            let _ = self.setsockopt_int(libc::SOL_SOCKET, plain, half);
        }
        self.getsockopt_int(libc::SOL_SOCKET, plain)
            .map(|v| v.max(0) as usize)
            .unwrap_or(0)
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Netlink refuses datagrams longer than `sk_sndbuf - 32` (`netlink_sendmsg`).
const SNDBUF_SLACK: usize = 32;

impl Transport for Socket {
    fn portid(&self) -> u32 {
        self.portid
    }

    fn reserve_send(&mut self, len: usize) -> Result<(), usize> {
        let need = len + SNDBUF_SLACK;
        if self.send_buffer() >= need {
            return Ok(());
        }
        let got = self.raise(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, need + 4096);
        if got >= need {
            Ok(())
        } else {
            Err(got.saturating_sub(SNDBUF_SLACK))
        }
    }

    fn reserve_recv(&mut self, len: usize) -> usize {
        let cur = self.recv_buffer();
        if cur >= len {
            return cur;
        }
        self.raise(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, len)
    }

    fn send(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let iov: Vec<libc::iovec> = parts
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        // SAFETY: sockaddr_nl is plain old data; zero = the kernel (nl_pid 0).
        let mut dst: libc::sockaddr_nl = unsafe { mem::zeroed() };
        dst.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: msghdr is plain old data; every pointer field is set below.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = (&mut dst as *mut libc::sockaddr_nl).cast();
        msg.msg_namelen = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len() as _;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        loop {
            // SAFETY: `msg` points at `dst` and at `iov`, whose entries borrow `parts`; all
            // outlive the call, and the kernel only reads them.
            let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // Netlink datagrams are sent whole or not at all.
            if n as usize != total {
                return Err(io::Error::other("netlink datagram was sent partially"));
            }
            return Ok(());
        }
    }

    fn recv(&mut self, buf: &mut [u8], wait_ms: Option<u64>) -> io::Result<Option<usize>> {
        if let Some(ms) = wait_ms {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let timeout = ms.min(i32::MAX as u64) as i32;
            loop {
                // SAFETY: `pfd` is one valid pollfd.
                let r = unsafe { libc::poll(&mut pfd, 1, timeout) };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                if r == 0 {
                    return Ok(None);
                }
                break;
            }
        }
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain old data; the iovec is set below.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        loop {
            // SAFETY: `msg` points at `iov`, which describes `buf` exactly; both are valid
            // for writes for the duration of the call.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(None),
                    _ => return Err(e),
                }
            }
            if msg.msg_flags & libc::MSG_TRUNC != 0 {
                return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
            }
            return Ok(Some(n as usize));
        }
    }
}

/// The IP addresses configured on this network namespace's interfaces (`getifaddrs`), used
/// to keep the host's own addresses off the block list.
pub fn local_addresses() -> io::Result<Vec<std::net::IpAddr>> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `head`; it is freed below exactly once.
    cvt(unsafe { libc::getifaddrs(&mut head) })?;
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list returned by getifaddrs, which stays
        // valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr is non-null and points at a sockaddr whose family says which
            // concrete sockaddr type it is.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: family AF_INET guarantees a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            } else if family == libc::AF_INET6 {
                // SAFETY: family AF_INET6 guarantees a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    Ok(out)
}
