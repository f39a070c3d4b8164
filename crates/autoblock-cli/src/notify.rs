//! The systemd service-manager protocol (`sd_notify`) for `autoblock run` under
//! `Type=notify`: readiness, reloading, stopping, status text and watchdog keep-alives.
//!
//! A thin wrapper over the `sd-notify` crate. Outside systemd (`NOTIFY_SOCKET` unset) every
//! call is a no-op that returns `Ok`. It does not decide *when* to notify — `autoblock run`
//! calls [`ready`] once its first ruleset is in place, [`reloading`]/[`ready`] around a
//! SIGHUP reload, [`stopping`] on shutdown, and [`watchdog`] every [`watchdog_interval`].

use std::io;
use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the service is up (`READY=1`), with a status line.
pub(crate) fn ready(status: &str) -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)])
}

/// Tells systemd a reload (SIGHUP) started; follow it with [`ready`] when done.
pub(crate) fn reloading() -> io::Result<()> {
    let now = NotifyState::monotonic_usec_now()?;
    sd_notify::notify(&[NotifyState::Reloading, now])
}

/// Tells systemd the service is shutting down (`STOPPING=1`).
pub(crate) fn stopping() -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Stopping])
}

/// Sends one watchdog keep-alive (`WATCHDOG=1`).
pub(crate) fn watchdog() -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Watchdog])
}

/// How often to call [`watchdog`]: half the unit's `WatchdogSec=`, or `None` when the
/// watchdog is off for this process.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    // The only test in this binary that touches NOTIFY_SOCKET / WATCHDOG_*; one test so the
    // environment is never changed concurrently.
    #[test]
    fn messages_reach_the_notify_socket_and_are_silent_without_it() {
        std::env::remove_var("NOTIFY_SOCKET");
        ready("no manager").unwrap();
        stopping().unwrap();
        assert_eq!(watchdog_interval(), None);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        let recv = || {
            let mut buf = [0u8; 512];
            let n = sock.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        ready("watching 2 jails").unwrap();
        assert_eq!(recv(), "READY=1\nSTATUS=watching 2 jails\n");
        reloading().unwrap();
        let msg = recv();
        assert!(msg.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{msg}");
        watchdog().unwrap();
        assert_eq!(recv(), "WATCHDOG=1\n");
        stopping().unwrap();
        assert_eq!(recv(), "STOPPING=1\n");

        std::env::set_var("WATCHDOG_USEC", "60000000");
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        assert_eq!(watchdog_interval(), Some(Duration::from_secs(30)));
        std::env::remove_var("WATCHDOG_USEC");
        std::env::remove_var("WATCHDOG_PID");
        std::env::remove_var("NOTIFY_SOCKET");
    }
}
