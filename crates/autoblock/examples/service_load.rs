//! The async service under load, the way a program that links autoblock uses it: 64 tasks
//! (say, one per connection handler of a proxy) each ban and later pardon addresses for a few
//! seconds, sharing one [`autoblock::Service`] started by [`autoblock::service::run`]; Ctrl-C
//! or the end of the run shuts it down, and everything already queued is still applied.
//!
//! Needs root and changes the ruleset of the network namespace it runs in: try it in a
//! throwaway one, e.g. `unshare -n cargo run --release --features tokio --example
//! service_load`. For the measured benchmark see `cargo xtask bench churn`.
//!
//! ```text
//! service_load [SECONDS]
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use autoblock::service::run;
use autoblock::{Config, Entry, Layout, Net, ServiceOptions};

const TASKS: u32 = 64;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = match std::env::args().nth(1) {
        Some(s) => s.parse().map_err(|e| format!("SECONDS {s:?}: {e}"))?,
        None => 3,
    };
    let done = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stop = async move {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
            _ = tokio::signal::ctrl_c() => eprintln!("interrupted: flushing what is queued"),
        }
    };
    let (d, r) = (done.clone(), refused.clone());
    run(
        Config::default().layout(Layout::Set),
        ServiceOptions::default().queue(1024),
        stop,
        move |svc| {
            for t in 0..TASKS {
                let (svc, d, r) = (svc.clone(), d.clone(), r.clone());
                tokio::spawn(async move {
                    for k in 0u32.. {
                        // 192.0.2.0/24 is documentation space: task t owns 192.0.2.(4t) to (4t + 3).
                        let a = Ipv4Addr::from(0xC000_0200 | ((t & 0x3F) << 2) | (k & 0x3));
                        let net = Net::host(IpAddr::V4(a));
                        let out = if k % 2 == 0 {
                            let e = Entry::new(net)
                                .with_comment(format!("task {t}"))
                                .with_timeout(Duration::from_secs(60));
                            svc.block(vec![e]).await
                        } else {
                            svc.unblock(vec![net]).await
                        };
                        match out {
                            Ok(o) => {
                                d.fetch_add(1, Ordering::Relaxed);
                                for (n, e) in o.failed {
                                    eprintln!("{n}: {e}");
                                    r.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            // Shut down: stop this task.
                            Err(_) => break,
                        }
                    }
                });
            }
        },
    )
    .await?;
    let n = done.load(Ordering::Relaxed);
    println!(
        "{n} requests answered in {:.1} s ({:.0}/s), {} entries refused",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64(),
        refused.load(Ordering::Relaxed)
    );
    Ok(())
}
