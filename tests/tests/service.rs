//! End-to-end tests of `autoblock::Service` against the real kernel, each in a fresh network
//! namespace: hundreds of concurrent tasks leave exactly the expected set, a poisoned entry in
//! a coalesced batch fails only its caller, and shutdown loses no accepted request.
//!
//! The runtime is built inside the namespace's thread, so its threads (and the controller's
//! socket) live in the namespace. These tests do not run the `autoblock` binary and never
//! touch this machine's own namespace.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::time::Duration;

use autoblock::{
    Config, Controller, Entry, Error, InputError, Layout, Net, Outcome, Service, ServiceError,
    ServiceOptions,
};
use autoblock_tests::{nft, Netns};

fn cfg() -> Config {
    Config::default().layout(Layout::Set)
}

/// Runs `f` on a two-thread tokio runtime created inside `ns`.
fn in_runtime<R, F, Fut>(ns: &Netns, f: F) -> R
where
    R: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = R>,
{
    ns.run(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
        rt.block_on(f())
    })
}

/// Address `k` of task `t`: 198.18.0.0/15 split per task (IPv4), or 2001:db8:t::k (IPv6).
fn addr(t: u32, k: u32, v6: bool) -> Net {
    if v6 {
        let a = (0x2001_0db8u128 << 96) | (u128::from(t) << 64) | u128::from(k);
        Net::host(IpAddr::V6(Ipv6Addr::from(a)))
    } else {
        Net::host(IpAddr::V4(Ipv4Addr::from(0xC612_0000 | (t << 7) | k)))
    }
}

/// What the kernel holds, read with a fresh controller (its own socket).
fn kernel_set() -> BTreeSet<Net> {
    let mut c = Controller::open(cfg()).unwrap_or_else(|e| panic!("open: {e}"));
    c.list()
        .unwrap_or_else(|e| panic!("list: {e}"))
        .into_iter()
        .map(|l| l.net)
        .collect()
}

/// A service whose queue holds `queue` requests.
fn start(queue: usize) -> (Service, tokio::task::JoinHandle<Result<(), Error>>) {
    let ctl = Controller::open(cfg()).unwrap_or_else(|e| panic!("open: {e}"));
    Service::start(ctl, ServiceOptions::default().queue(queue))
}

#[test]
fn hundreds_of_tasks_leave_exactly_the_expected_set() {
    const TASKS: u32 = 300;
    let ns = Netns::new();
    let (expected, got, applied) = in_runtime(&ns, || async {
        let (svc, join) = start(64);
        let mut handles = Vec::new();
        for t in 0..TASKS {
            let svc = svc.clone();
            handles.push(tokio::spawn(async move {
                // Each task: block 12 addresses (timed and permanent, v4 and v6) in four
                // requests, unblock every third one, re-block one of those, and unblock one
                // address it never blocked.
                let v6 = t % 5 == 0;
                let mut mine = BTreeSet::new();
                let mut applied = 0usize;
                for chunk in 0..4u32 {
                    let entries: Vec<Entry> = (0..3)
                        .map(|i| {
                            let e = Entry::new(addr(t, chunk * 3 + i, v6));
                            if i == 0 {
                                e.with_timeout(Duration::from_secs(3600))
                            } else {
                                e.with_comment(format!("task {t}"))
                            }
                        })
                        .collect();
                    mine.extend(entries.iter().map(|e| e.net));
                    let o = svc.block(entries).await.unwrap_or_else(|e| panic!("{e}"));
                    assert!(o.failed.is_empty(), "task {t}: {:?}", o.failed);
                    assert_eq!(o.applied.len(), 3, "task {t}: {o:?}");
                    applied += o.applied.len();
                }
                let gone: Vec<Net> = (0..12).step_by(3).map(|k| addr(t, k, v6)).collect();
                let o = svc
                    .unblock(gone.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(o.applied, gone, "task {t}");
                for n in &gone {
                    mine.remove(n);
                }
                let back = Entry::new(addr(t, 3, v6));
                let o = svc
                    .block(vec![back.clone()])
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(o.applied, vec![back.net], "task {t}");
                mine.insert(back.net);
                let never = addr(t, 100, v6);
                let o = svc
                    .unblock(vec![never])
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(o.unchanged, vec![never], "task {t}");
                assert!(o.applied.is_empty());
                (mine, applied)
            }));
        }
        let mut expected = BTreeSet::new();
        let mut applied = 0;
        for h in handles {
            let (mine, n) = h.await.unwrap_or_else(|e| panic!("task: {e}"));
            expected.extend(mine);
            applied += n;
        }
        let listed: BTreeSet<Net> = svc
            .list()
            .await
            .unwrap_or_else(|e| panic!("list: {e}"))
            .into_iter()
            .map(|l| l.net)
            .collect();
        assert_eq!(listed, expected, "the service's own listing");
        drop(svc);
        join.await
            .unwrap_or_else(|e| panic!("worker: {e}"))
            .unwrap_or_else(|e| panic!("worker: {e}"));
        (expected, kernel_set(), applied)
    });
    assert_eq!(applied, TASKS as usize * 12);
    assert_eq!(expected.len(), TASKS as usize * 9);
    assert_eq!(
        got, expected,
        "the kernel holds exactly the expected entries"
    );
    // The kernel's own view agrees on one sample.
    let sample = addr(7, 1, false).addr().to_string();
    let text = nft(&ns, &["list", "set", "inet", "autoblock", "addr4"]);
    assert!(text.contains(&sample), "{sample} missing from:\n{text}");
}

#[test]
fn a_poisoned_entry_in_a_coalesced_batch_fails_only_its_caller() {
    let ns = Netns::new();
    let (results, got) = in_runtime(&ns, || async {
        let (svc, join) = start(64);
        // Keep the worker busy with one large request while the others queue behind it, so
        // they are merged into the following transactions.
        let big: Vec<Entry> = (0..2000u32)
            .map(|k| Entry::new(addr(1000 + k / 100, k % 100, false)))
            .collect();
        let head = tokio::spawn({
            let svc = svc.clone();
            async move { svc.block(big).await }
        });
        let mut handles = Vec::new();
        for t in 0..200u32 {
            let svc = svc.clone();
            handles.push(tokio::spawn(async move {
                let mut entries = vec![Entry::new(addr(t, 1, false))];
                match t {
                    // An allowlisted address next to a good one.
                    50 => entries.push(Entry::new("127.0.0.1".parse().unwrap())),
                    // A comment too long to store, next to a good entry.
                    120 => {
                        entries.push(Entry::new(addr(t, 2, false)).with_comment("x".repeat(300)))
                    }
                    _ => {}
                }
                (t, svc.block(entries).await)
            }));
        }
        let head = head.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(head.unwrap_or_else(|e| panic!("{e}")).applied.len(), 2000);
        let mut results = Vec::new();
        for h in handles {
            results.push(h.await.unwrap_or_else(|e| panic!("{e}")));
        }
        drop(svc);
        join.await
            .unwrap_or_else(|e| panic!("worker: {e}"))
            .unwrap_or_else(|e| panic!("worker: {e}"));
        (results, kernel_set())
    });
    for (t, r) in results {
        match t {
            50 => {
                let o = r.unwrap_or_else(|e| panic!("task 50: {e}"));
                assert_eq!(o.applied, vec![addr(50, 1, false)]);
                assert_eq!(o.failed.len(), 1, "{o:?}");
                assert_eq!(o.failed[0].0, "127.0.0.1".parse::<Net>().unwrap());
                assert!(
                    matches!(o.failed[0].1, Error::Input(InputError::Allowlisted { .. })),
                    "{:?}",
                    o.failed[0].1
                );
            }
            120 => {
                let o = r.unwrap_or_else(|e| panic!("task 120: {e}"));
                assert_eq!(o.applied, vec![addr(120, 1, false)]);
                assert_eq!(o.failed.len(), 1, "{o:?}");
                assert_eq!(o.failed[0].0, addr(120, 2, false));
                assert!(
                    matches!(o.failed[0].1, Error::Input(InputError::BadComment { .. })),
                    "{:?}",
                    o.failed[0].1
                );
            }
            _ => {
                let o = r.unwrap_or_else(|e| panic!("task {t}: {e}"));
                assert_eq!(o.applied, vec![addr(t, 1, false)], "task {t}");
                assert!(o.failed.is_empty() && o.unchanged.is_empty(), "task {t}");
            }
        }
    }
    assert!(!got.contains(&"127.0.0.1".parse::<Net>().unwrap()));
    assert!(!got.contains(&addr(120, 2, false)));
    assert_eq!(got.len(), 2000 + 200, "every other entry is in the kernel");
}

#[test]
fn shutdown_loses_no_accepted_request() {
    type Call = Pin<Box<dyn Future<Output = (Net, Result<Outcome, ServiceError>)> + Send>>;
    let ns = Netns::new();
    let (accepted, got) = in_runtime(&ns, || async {
        let (svc, join) = start(1024);
        // 300 requests are put in the queue (each call polled once: its send completes at
        // once, the queue has room), then the shutdown request goes in behind them.
        let mut calls: Vec<Call> = (0..300u32)
            .map(|t| {
                let (s, n) = (svc.clone(), addr(t, 5, t % 2 == 0));
                let call = async move { (n, s.block(vec![Entry::new(n)]).await) };
                Box::pin(tokio::task::unconstrained(call)) as Call
            })
            .collect();
        let mut done = Vec::new();
        let mut waiting = Vec::new();
        for mut c in calls.drain(..) {
            tokio::select! {
                biased;
                r = &mut c => done.push(r),
                _ = std::future::ready(()) => waiting.push(c),
            }
        }
        svc.shutdown().await;
        // Refused from now on, on every handle.
        let late = svc.clone();
        assert!(matches!(
            late.block(vec![Entry::new(addr(999, 1, false))]).await,
            Err(ServiceError::Closed)
        ));
        for c in waiting {
            done.push(c.await);
        }
        let mut accepted = BTreeSet::new();
        for (n, r) in done {
            let o = r.unwrap_or_else(|e| panic!("{n}: an accepted request failed: {e}"));
            assert_eq!(o.applied, vec![n]);
            accepted.insert(n);
        }
        join.await
            .unwrap_or_else(|e| panic!("worker: {e}"))
            .unwrap_or_else(|e| panic!("worker: {e}"));
        (accepted, kernel_set())
    });
    assert_eq!(accepted.len(), 300, "every queued request was answered");
    assert_eq!(got, accepted, "exactly the accepted requests were applied");
}
