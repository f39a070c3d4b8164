//! Throwaway network namespaces for the demo and the benchmarks, and the
//! per-command measurement (wall time, user/sys CPU, peak RSS).
//!
//! A [`Netns`] is a thread that called `unshare(CLONE_NEWNET)`; programs are
//! spawned from that thread, so they run inside the namespace. The namespace
//! has no name: nothing is created under `/run/netns`, and the kernel frees
//! it when the thread and its children are gone, whether xtask returns, fails
//! or is interrupted with Ctrl-C. So cleanup cannot be forgotten.
//!
//! It deliberately does not share code with the test harness (package
//! autoblock-tests): xtask must build even while the libraries it would pull
//! in are being changed.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fresh network namespace with `lo` up, alive while this value lives.
#[derive(Debug)]
pub struct Netns {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    tid: libc::pid_t,
}

impl Netns {
    /// Creates the namespace (needs root).
    pub fn new() -> Result<Netns> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<libc::pid_t>>();
        let thread = thread::Builder::new()
            .name("netns".to_owned())
            .spawn(move || {
                let entered = enter_fresh_netns();
                let ok = entered.is_ok();
                if ready_tx.send(entered).is_err() || !ok {
                    return;
                }
                for job in job_rx {
                    job();
                }
            })
            .context("cannot start a namespace thread")?;
        let tid = ready_rx
            .recv()
            .map_err(|_| anyhow!("the namespace thread died"))?
            .context("cannot create a network namespace (unshare(CLONE_NEWNET))")?;
        Ok(Netns {
            jobs: Some(jobs),
            thread: Some(thread),
            tid,
        })
    }

    /// Runs `f` inside the namespace; a panic in `f` is re-raised here.
    pub fn run<R, F>(&self, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)));
        });
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(job).is_ok());
        assert!(sent == Some(true), "the namespace thread is gone");
        match rx.recv() {
            Ok(Ok(value)) => value,
            Ok(Err(payload)) => panic::resume_unwind(payload),
            Err(_) => panic!("the namespace thread died while running a job"),
        }
    }

    /// The namespace thread's id (for `ip link … netns TID`).
    pub fn tid(&self) -> libc::pid_t {
        self.tid
    }

    /// Runs `argv` inside the namespace with `input` on stdin and collects
    /// its output, successful or not.
    pub fn output(&self, argv: &[String], input: Vec<u8>) -> Result<Output> {
        let Some((program, args)) = argv.split_first() else {
            bail!("empty command");
        };
        let mut command = Command::new(program);
        command.args(args);
        let shown = argv.join(" ");
        self.run(move || run_with_input(command, &input))
            .with_context(|| format!("cannot run `{shown}`"))
    }

    /// Runs `argv` and returns its stdout, failing with its stderr unless it
    /// succeeds.
    pub fn check(&self, argv: &[&str], input: &str) -> Result<String> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let output = self.output(&argv, input.as_bytes().to_vec())?;
        if !output.status.success() {
            bail!(
                "`{}` failed ({}): {}",
                argv.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs `argv` inside the namespace and measures it ([`measure`]).
    pub fn measure(&self, argv: &[String]) -> Result<Measured> {
        let argv = argv.to_vec();
        self.run(move || measure(&argv))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn enter_fresh_netns() -> io::Result<libc::pid_t> {
    // SAFETY: unshare takes a flag word and touches no memory of ours; with
    // CLONE_NEWNET alone it changes only this thread's network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    loopback_up()?;
    // SAFETY: gettid takes no arguments and cannot fail.
    Ok(unsafe { libc::gettid() })
}

/// Sets IFF_UP on `lo` (SIOCSIFFLAGS) in the calling thread's namespace.
fn loopback_up() -> io::Result<()> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: ifreq is plain C data; all-zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: a live socket fd we own and a valid, exclusively borrowed
    // ifreq with a NUL-terminated name; the kernel writes only the flags.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS just initialised the flags member.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `request`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn run_with_input(mut command: Command, input: &[u8]) -> io::Result<Output> {
    use std::io::Write;
    if input.is_empty() {
        return command.stdin(Stdio::null()).output();
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin was requested as a pipe");
    let input = input.to_vec();
    let writer = thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output()?;
    match writer.join() {
        Ok(Err(e)) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(output),
    }
}

/// What [`measure`] saw of one command.
#[derive(Debug, Clone)]
pub struct Measured {
    /// From just before the spawn to the reaping of the process.
    pub wall: Duration,
    /// Peak resident set size of the process (and of any children it
    /// waited for), from `wait4`'s `ru_maxrss`, in kilobytes.
    pub max_rss_kb: u64,
    /// CPU time spent in user mode (`ru_utime`, same scope as the RSS).
    pub user: Duration,
    /// CPU time spent in the kernel on its behalf (`ru_stime`).
    pub sys: Duration,
    /// How it ended.
    pub status: ExitStatus,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// The hidden subcommand of the measuring wrapper.
pub const WRAPPER: &str = "__measure";

/// Runs `argv` (stdin closed, output captured in temporary files so no pipe
/// can stall it) and measures it.
///
/// The command is started by a fresh, small xtask process (`xtask
/// __measure RESULT -- argv…`, see [`wrapper_main`]) rather than by this
/// one: at `execve` Linux records the peak RSS of the memory the new
/// program replaces into the child's `ru_maxrss`, and a child spawned with
/// `vfork` semantics replaces its parent's memory. Measured directly, every
/// command would "use" at least as much memory as xtask itself.
pub fn measure(argv: &[String]) -> Result<Measured> {
    let exe = std::env::current_exe().context("cannot find the xtask executable")?;
    let result = tempfile::NamedTempFile::new().context("temporary result file")?;
    let mut out = tempfile::tempfile().context("temporary stdout file")?;
    let mut err = tempfile::tempfile().context("temporary stderr file")?;
    let status = Command::new(exe)
        .arg(WRAPPER)
        .arg(result.path())
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .status()
        .context("cannot start the measuring wrapper")?;
    let report = std::fs::read_to_string(result.path()).unwrap_or_default();
    let stdout = read_back(&mut out)?;
    let stderr = read_back(&mut err)?;
    let fields: Vec<u64> = report
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [wall_ns, max_rss_kb, raw_status, user_us, sys_us] = fields[..] else {
        bail!(
            "`{}` could not be measured ({status}): {}",
            argv.join(" "),
            stderr.trim()
        );
    };
    Ok(Measured {
        wall: Duration::from_nanos(wall_ns),
        max_rss_kb,
        user: Duration::from_micros(user_us),
        sys: Duration::from_micros(sys_us),
        status: ExitStatus::from_raw(i32::try_from(raw_status).unwrap_or(i32::MAX)),
        stdout,
        stderr,
    })
}

fn read_back(file: &mut std::fs::File) -> Result<String> {
    use std::io::{Read, Seek};
    file.seek(io::SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `xtask __measure RESULT -- CMD…`: spawns CMD with this process's stdio,
/// reaps it with `wait4` (which reports the rusage of exactly that child)
/// and writes `WALL_NS MAX_RSS_KB WAIT_STATUS USER_US SYS_US` to RESULT.
pub fn wrapper_main(args: &[String]) -> Result<()> {
    let [result, dashes, program, rest @ ..] = args else {
        bail!("usage: xtask {WRAPPER} RESULT -- CMD [ARGS…]");
    };
    if dashes != "--" {
        bail!("usage: xtask {WRAPPER} RESULT -- CMD [ARGS…]");
    }
    let started = Instant::now();
    let child = Command::new(program)
        .args(rest)
        .spawn()
        .with_context(|| format!("cannot start `{program}`"))?;
    let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain C data; all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child (std's Child never reaps
        // on its own); `status` and `usage` are valid, exclusively borrowed
        // out-parameters for the duration of the call.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error).context("wait4 failed");
        }
    }
    let wall = started.elapsed();
    drop(child);
    // ru_maxrss is in kilobytes on Linux.
    let micros = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0)
    };
    let report = format!(
        "{} {} {} {} {}\n",
        wall.as_nanos(),
        usage.ru_maxrss,
        status,
        micros(usage.ru_utime),
        micros(usage.ru_stime)
    );
    std::fs::write(result, report).with_context(|| format!("writing {result}"))?;
    Ok(())
}
