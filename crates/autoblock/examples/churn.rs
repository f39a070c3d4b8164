//! High-churn load on the async service, the measured half of `cargo xtask bench churn`.
//!
//! N tasks (by default 1, 16 and 256, one after another) each issue timed block and unblock
//! requests of their own addresses against the set layout for S seconds: every task keeps a
//! window of blocked addresses and, once it is full, unblocks the oldest before blocking the
//! next, so blocks and unblocks alternate and the sets stay at a steady size. Every request's
//! latency (call to answer, which comes after its transaction committed) is recorded. Then a
//! shell-out peer runs `nft add element` once per request for the same time.
//!
//! It needs root and changes the ruleset of the network namespace it runs in: run it through
//! `cargo xtask bench churn`, which runs it in a fresh one. It does not check its own results
//! beyond the answers; the end-to-end tests do that.
//!
//! ```text
//! churn [--seconds S] [--tasks 1,16,256] [--window W] [--peer-seconds P]
//! ```
//! The last line printed is `churn: <ops> ops/s p99 <ms> ms (shell-out peer <ops> ops/s)`
//! for the largest task count.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use autoblock::{Config, Controller, Entry, Layout, Net, Service, ServiceOptions};

/// One run's figures.
struct Figures {
    tasks: usize,
    ops: u64,
    secs: f64,
    /// CPU time (user + system) this process used during the run.
    cpu: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("churn: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<(), Box<dyn std::error::Error>> {
    let mut seconds = 10.0f64;
    let mut tasks: Vec<usize> = vec![1, 16, 256];
    let mut window = 64usize;
    let mut peer_seconds: Option<f64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => seconds = value()?.parse()?,
            "--window" => window = value()?.parse()?,
            "--peer-seconds" => peer_seconds = Some(value()?.parse()?),
            "--tasks" => {
                tasks = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if tasks.is_empty() || tasks.iter().any(|&n| n == 0 || n > 4096) || window == 0 {
        return Err("--tasks wants 1 to 4096 tasks per run, --window at least 1".into());
    }
    let run_for = Duration::from_secs_f64(seconds.max(0.1));
    // No I/O or timer driver: the tasks only talk to the service, and parked workers are
    // woken without an eventfd.
    let rt = tokio::runtime::Builder::new_multi_thread().build()?;
    let mut all = Vec::new();
    for &n in &tasks {
        let f = rt.block_on(churn(n, window, run_for))?;
        println!(
            "churn {:>4} tasks: {:>9.0} ops/s  ({} ops in {:.1} s)  latency p50 {} p99 {} max {}  \
             cpu {:.2} s ({:.0}% of one core, {:.0} ops per cpu-second)",
            f.tasks,
            f.rate(),
            f.ops,
            f.secs,
            ms(f.p50),
            ms(f.p99),
            ms(f.max),
            f.cpu,
            100.0 * f.cpu / f.secs,
            f.ops as f64 / f.cpu.max(0.01)
        );
        all.push(f);
    }
    let peer_for = Duration::from_secs_f64(peer_seconds.unwrap_or(seconds.min(5.0)).max(0.1));
    let peer = shell_out_peer(peer_for)?;
    println!(
        "shell-out peer (one `nft add element` per request): {:>6.0} ops/s  ({} ops in {:.1} s)  latency p50 {} p99 {}",
        peer.rate(),
        peer.ops,
        peer.secs,
        ms(peer.p50),
        ms(peer.p99)
    );
    let last = all.iter().max_by_key(|f| f.tasks).ok_or("no run")?;
    println!(
        "churn: {:.0} ops/s p99 {:.2} ms (shell-out peer {:.0} ops/s)",
        last.rate(),
        last.p99.as_secs_f64() * 1e3,
        peer.rate()
    );
    Ok(())
}

/// User + system CPU time of this process so far, from `/proc/self/stat` (in the kernel's
/// fixed 100 Hz user-visible ticks); 0 if it cannot be read.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at field 3.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The address `k` of task `t`: 10.0.0.0/8 split into 4096 blocks of 4096 addresses.
fn addr(t: usize, k: usize) -> Net {
    let a = 0x0A00_0000u32 | ((t as u32 & 0xFFF) << 12) | (k as u32 & 0xFFF);
    Net::host(IpAddr::V4(Ipv4Addr::from(a)))
}

async fn churn(
    n: usize,
    window: usize,
    run_for: Duration,
) -> Result<Figures, Box<dyn std::error::Error>> {
    let cfg = Config::default().layout(Layout::Set).table("churn");
    let mut ctl = Controller::open(cfg)?;
    ctl.init()?;
    let (svc, join) = Service::start(ctl, ServiceOptions::default());
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let deadline = start + run_for;
    let mut handles = Vec::new();
    for t in 0..n {
        let svc = svc.clone();
        handles.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut next = 0usize;
            let mut oldest = 0usize;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let out = if next - oldest >= window {
                    oldest += 1;
                    svc.unblock(vec![addr(t, oldest - 1)]).await
                } else {
                    next += 1;
                    let e = Entry::new(addr(t, next - 1)).with_timeout(Duration::from_secs(600));
                    svc.block(vec![e]).await
                };
                let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                match out {
                    Ok(o) if o.is_ok() => lat.push(us),
                    Ok(o) => return Err(format!("task {t}: refused: {:?}", o.failed)),
                    Err(e) => return Err(format!("task {t}: {e}")),
                }
            }
            Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let status = svc.status().await?;
    svc.shutdown().await;
    drop(svc);
    join.await??;
    let held: usize = status.iter().map(|s| s.entries).sum();
    // Every task ends with between 0 and `window` addresses still blocked.
    if held > n * window {
        return Err(format!(
            "the sets hold {held} entries, expected at most {}",
            n * window
        )
        .into());
    }
    let mut ctl = Controller::open(Config::default().layout(Layout::Set).table("churn"))?;
    ctl.remove()?;
    lat.sort_unstable();
    let pct = |p: f64| {
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len().max(1)) - 1;
        Duration::from_micros(u64::from(lat.get(i).copied().unwrap_or(0)))
    };
    Ok(Figures {
        tasks: n,
        ops: lat.len() as u64,
        secs,
        cpu,
        p50: pct(0.50),
        p99: pct(0.99),
        max: pct(1.0),
    })
}

/// `nft add element` once per request, sequentially, into a timeout set of its own table.
fn shell_out_peer(run_for: Duration) -> Result<Figures, Box<dyn std::error::Error>> {
    let nft = |args: &[&str]| -> Result<(), Box<dyn std::error::Error>> {
        let st = Command::new("nft")
            .args(args)
            .stdout(Stdio::null())
            .status()?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("nft {} failed ({st})", args.join(" ")).into())
        }
    };
    nft(&["add", "table", "inet", "churnpeer"])?;
    nft(&[
        "add",
        "set",
        "inet",
        "churnpeer",
        "addr4",
        "{ type ipv4_addr; flags timeout; }",
    ])?;
    let start = Instant::now();
    let mut lat = Vec::new();
    let mut k = 0usize;
    while start.elapsed() < run_for {
        let a = addr(4095, k % 4096).addr();
        k += 1;
        let t0 = Instant::now();
        nft(&[
            "add",
            "element",
            "inet",
            "churnpeer",
            "addr4",
            &format!("{{ {a} timeout 10m }}"),
        ])?;
        lat.push(t0.elapsed());
    }
    let secs = start.elapsed().as_secs_f64();
    nft(&["delete", "table", "inet", "churnpeer"])?;
    lat.sort_unstable();
    let at = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    Ok(Figures {
        tasks: 1,
        ops: lat.len() as u64,
        secs,
        cpu: 0.0,
        p50: at(0.5),
        p99: at(0.99),
        max: at(1.0),
    })
}
