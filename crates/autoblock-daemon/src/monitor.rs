//! Self-healing's eyes: a thread that reads the kernel's nf_tables change notifications and
//! reports, as [`Tampering`], every transaction by another process that removed something.
//!
//! The daemon's own transactions are recognised by the pid the kernel reports and ignored.
//! Whether a removal touched autoblock's state is left to the daemon's re-sync (it is
//! idempotent and finds nothing to do for unrelated changes). Netlink decoding lives in
//! `autoblock_netlink::monitor`; this module only filters and forwards.

use autoblock::netlink::conn::PROBE_TABLE_PREFIX;
use autoblock::netlink::{ChangeKind, Monitor};
use tokio::sync::mpsc;

use crate::daemon::Tampering;

/// Opens the monitor in the calling thread's network namespace and starts its reader thread.
pub fn start() -> Result<mpsc::Receiver<Tampering>, String> {
    let mut mon = Monitor::open().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(256);
    let own = std::process::id();
    std::thread::Builder::new()
        .name("nft-monitor".into())
        .spawn(move || loop {
            let t = match mon.next(None) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!("ruleset change monitor: {e}");
                    return;
                }
            };
            // The kernel names the committing thread: any thread of this process is its own.
            let ours = t.pid.is_some_and(|p| {
                p == own || std::path::Path::new(&format!("/proc/self/task/{p}")).exists()
            });
            if ours && !t.overrun {
                continue;
            }
            let removed: Vec<String> = t
                .changes
                .iter()
                .filter(|c| c.kind.is_removal())
                // A controller's capability probes (this daemon's threads that have ended
                // by now included) create and delete scratch tables: never tampering.
                .filter(|c| {
                    !c.table
                        .as_deref()
                        .is_some_and(|t| t.starts_with(PROBE_TABLE_PREFIX))
                })
                .map(|c| match (&c.table, c.kind) {
                    (Some(table), ChangeKind::DelTable) => format!("table {table}"),
                    (Some(table), _) => format!("{} in table {table}", c.kind.object()),
                    (None, _) => c.kind.object().to_owned(),
                })
                .collect();
            if removed.is_empty() && !t.overrun {
                continue;
            }
            let mut what: Vec<String> = Vec::new();
            for r in removed {
                if !what.contains(&r) {
                    what.push(r);
                }
            }
            if t.overrun {
                what.push("unknown (notifications were lost)".into());
            }
            let report = Tampering {
                what: what.join(", "),
                by: t.who(),
            };
            // A full queue already holds a pending repair; dropping this one loses nothing.
            if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(report) {
                return;
            }
        })
        .map_err(|e| format!("cannot start the monitor thread: {e}"))?;
    Ok(rx)
}
