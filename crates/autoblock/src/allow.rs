//! The allowlist: networks autoblock refuses to block, so that a bad ban cannot lock the
//! administrator out. Loopback and the host's own addresses are always on it.
//!
//! It only answers "may this entry be blocked"; it does not read configuration files.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::entry::Net;
use crate::error::InputError;

/// Why a network is on the allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Loopback.
    Loopback,
    /// An address of this host.
    HostAddress,
    /// Configured by the administrator.
    Configured,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Loopback => "loopback",
            Reason::HostAddress => "an address of this host",
            Reason::Configured => "configured allowlist",
        }
    }
}

/// Networks that must never be blocked.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    nets: Vec<(Net, Reason)>,
}

impl Allowlist {
    /// Loopback only.
    pub fn loopback() -> Self {
        let mut a = Allowlist::default();
        a.add(
            Net::new_masked(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8).expect("valid"),
            Reason::Loopback,
        );
        a.add(Net::host(IpAddr::V6(Ipv6Addr::LOCALHOST)), Reason::Loopback);
        a
    }

    /// Loopback, the given host addresses and configured networks.
    pub fn new(host: &[IpAddr], configured: &[Net]) -> Self {
        let mut a = Allowlist::loopback();
        for h in host {
            if !h.is_loopback() {
                a.add(Net::host(*h), Reason::HostAddress);
            }
        }
        for n in configured {
            a.add(*n, Reason::Configured);
        }
        a
    }

    /// Adds a network.
    pub fn add(&mut self, net: Net, why: Reason) {
        self.nets.push((net, why));
    }

    /// Refuses `net` if it overlaps any allowlisted network.
    pub fn check(&self, net: &Net) -> Result<(), InputError> {
        for (a, why) in &self.nets {
            if a.overlaps(net) {
                return Err(InputError::Allowlisted {
                    entry: net.to_string(),
                    allowed: a.to_string(),
                    why: why.as_str(),
                });
            }
        }
        Ok(())
    }

    /// The networks and why each is listed.
    pub fn iter(&self) -> impl Iterator<Item = (&Net, &'static str)> {
        self.nets.iter().map(|(n, r)| (n, r.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_overlaps_in_both_directions() {
        let a = Allowlist::new(
            &["10.200.0.1".parse().unwrap()],
            &["192.0.2.0/24".parse().unwrap()],
        );
        assert!(a.check(&"127.0.0.1".parse().unwrap()).is_err());
        assert!(a.check(&"::1".parse().unwrap()).is_err());
        assert!(a.check(&"10.0.0.0/8".parse().unwrap()).is_err());
        let e = a.check(&"192.0.2.7".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("192.0.2.7/32"), "{e}");
        assert!(e.to_string().contains("192.0.2.0/24"), "{e}");
        assert!(a.check(&"198.51.100.9".parse().unwrap()).is_ok());
        assert!(a.check(&"0.0.0.0/0".parse().unwrap()).is_err());
    }
}
