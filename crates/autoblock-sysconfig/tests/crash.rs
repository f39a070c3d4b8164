//! Crash safety of the mirror: a child process (this test binary run again
//! with `AUTOBLOCK_CRASH_CHILD` set) mirrors in an endless loop; the parent
//! SIGKILLs it at random moments, 200 times. After every kill the file
//! must parse and be exactly one of the versions the child writes (or the
//! original), never a mix or a truncated file, and the lock must be free.
//!
//! Runs without the libtest harness (`harness = false`) so that `main` can
//! tell parent from child.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use autoblock_sysconfig::{AutoRule, AutoTarget, Family, Mirror, RulesetFile};

const CHAIN: &str = "INPUT-AUTO";
const CHILD_ENV: &str = "AUTOBLOCK_CRASH_CHILD";
const KILLS: usize = 200;
const VERSIONS: usize = 7;
const TIME_LIMIT: Duration = Duration::from_secs(20);

/// Version `k` of the chain: `k * 40` rules (0 for k = 0), so files differ
/// in size and a partial write would show.
fn version(k: usize) -> Vec<AutoRule> {
    (0..k * 40)
        .map(|i| AutoRule {
            source: format!("198.51.{}.{}/32", k, i),
            comment: Some(format!("version {k} rule {i} expires 2030-01-01T00:00:00Z")),
            target: if i % 2 == 0 {
                AutoTarget::Drop
            } else {
                AutoTarget::Reject
            },
        })
        .collect()
}

fn child(dir: &Path) -> ! {
    let mirror = Mirror::new(dir, CHAIN).expect("valid chain");
    let mut i = 0usize;
    loop {
        let prepared = match mirror.prepare(Family::V4) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("child: prepare failed: {e}");
                std::process::exit(3);
            }
        };
        if let Err(e) = prepared.commit(&version(i % VERSIONS)) {
            eprintln!("child: commit failed: {e}");
            std::process::exit(4);
        }
        i += 1;
    }
}

/// xorshift64*: enough randomness for kill timing, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
    }
    let started = Instant::now();
    let original = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/custom-chains-db.rules"),
    )
    .expect("fixture");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("iptables");
    std::fs::write(&path, &original).expect("write original");

    // Every content the file may legitimately have: the original and each
    // version as the child produces it (simulated twice round, since the
    // edit depends on the previous content).
    let mut allowed: HashSet<Vec<u8>> = HashSet::from([original.clone()]);
    let mut sim = RulesetFile::parse(&original).expect("fixture parses");
    for i in 0..2 * VERSIONS {
        sim.set_auto_chain(CHAIN, Family::V4, &version(i % VERSIONS))
            .expect("valid rules");
        allowed.insert(sim.to_bytes());
    }

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("crash test: seed {seed:#x}");
    let mut rng = Rng(seed);
    let exe = std::env::current_exe().expect("own executable");
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut kills = 0;
    while kills < KILLS {
        assert!(
            started.elapsed() < TIME_LIMIT,
            "only {kills} kills in {TIME_LIMIT:?}"
        );
        let mut proc = Command::new(&exe)
            .env(CHILD_ENV, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn child");
        let wait = Duration::from_micros(1_000 + rng.next() % 25_000);
        std::thread::sleep(wait);
        if let Some(status) = proc.try_wait().expect("try_wait") {
            panic!("child exited by itself: {status}");
        }
        proc.kill().expect("SIGKILL child");
        proc.wait().expect("reap child");
        kills += 1;

        let now = std::fs::read(&path).expect("file still exists");
        if let Err(e) = RulesetFile::parse(&now) {
            panic!("after kill {kills} ({wait:?}) the file does not parse: {e}");
        }
        assert!(
            allowed.contains(&now),
            "after kill {kills} ({wait:?}) the file is none of the written versions:\n{}",
            String::from_utf8_lossy(&now)
        );
        seen.insert(now);
    }

    // The lock died with the last child: taking it must not hang.
    let (tx, rx) = std::sync::mpsc::channel();
    let lock_dir = dir.path().to_owned();
    std::thread::spawn(move || {
        let mirror = Mirror::new(&lock_dir, CHAIN).expect("valid chain");
        let ok = mirror.prepare(Family::V4).is_ok();
        let _ = tx.send(ok);
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)),
        Ok(true),
        "lock still held after the child was killed"
    );
    // Stale temp files were cleaned up by that prepare.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".autoblock-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    // Kills landed at different points of the loop.
    assert!(
        seen.len() >= 3,
        "only {} distinct file versions observed in {kills} kills",
        seen.len()
    );
    println!(
        "crash test: {kills} kills, {} distinct versions seen, {:?}",
        seen.len(),
        started.elapsed()
    );
    println!("1 passed, 0 failed");
}
