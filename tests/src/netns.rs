//! [`Netns`]: a fresh network namespace owned by one dedicated OS thread.
//!
//! A network namespace belongs to a thread, not to a process: the thread
//! calls `unshare(CLONE_NEWNET)` and from then on every socket it opens and
//! every child process it spawns lives in the new namespace. [`Netns`] keeps
//! such a thread alive, runs closures on it ([`Netns::run`]) and spawns
//! programs from it ([`Netns::cmd`], [`Netns::output`], [`Netns::spawn`]).
//! Dropping the [`Netns`] ends the thread, and with it the namespace (unless
//! something the caller kept still holds it: a child process still running, a
//! socket returned from a closure).
//!
//! It deliberately does not name the namespace (nothing appears under
//! `/run/netns`, so nothing can be left behind when a test crashes), does not
//! configure anything but the loopback interface, and never enters this
//! machine's own namespace.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

/// The message every kernel test prints when it cannot run.
const NEED_ROOT: &str = "kernel tests need root: run `cargo xtask test` as root";

/// Panics unless the process runs as root (effective uid 0).
///
/// Kernel tests cannot run without root, and a test that cannot run must not
/// pass, so this panics whether or not `CI=true` is set; under CI the message
/// says so explicitly.
pub fn require_root() {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{NEED_ROOT} (CI=true: kernel tests are never skipped; euid is {euid})");
        }
        panic!("{NEED_ROOT} (euid is {euid})");
    }
}

/// A job sent to the namespace thread.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fresh network namespace, alive as long as this value (see the module
/// docs for what else can keep it alive).
///
/// Each namespace also owns a temporary directory that [`Netns::autoblock`]
/// passes as `--sysconfig-dir`, so the sysconfig mirror of a namespace never
/// lands in this machine's `/etc/sysconfig`.
#[derive(Debug)]
pub struct Netns {
    /// Sends jobs to the namespace thread; `None` only during drop.
    jobs: Option<mpsc::Sender<Job>>,
    /// The namespace thread; `None` only during drop.
    thread: Option<JoinHandle<()>>,
    /// The thread's kernel thread id, usable wherever `ip` wants a PID.
    tid: libc::pid_t,
    /// The namespace's inode number (its identity while it lives).
    inode: u64,
    /// The per-namespace sysconfig directory for the autoblock mirror.
    sysconfig: tempfile::TempDir,
    /// The per-namespace runtime directory (`AUTOBLOCK_RUNTIME_DIR` of every program run
    /// here), so no test writes to this machine's `/run/autoblock`.
    runtime: tempfile::TempDir,
}

impl Netns {
    /// Creates a fresh network namespace with the loopback interface up.
    ///
    /// # Panics
    ///
    /// Without root (see [`require_root`]), or when the kernel refuses the
    /// new namespace; the message says why.
    #[allow(clippy::new_without_default)] // a namespace is created, never defaulted
    pub fn new() -> Netns {
        require_root();
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(libc::pid_t, u64), String>>();
        let thread = thread::Builder::new()
            .name("netns".to_owned())
            .spawn(move || {
                let entered = enter_fresh_netns();
                let ok = entered.is_ok();
                if ready_tx.send(entered).is_err() || !ok {
                    return;
                }
                // The loop ends when the Netns drops its sender.
                for job in job_rx {
                    job();
                }
            })
            .unwrap_or_else(|e| panic!("cannot start a namespace thread: {e}"));
        let (tid, inode) = match ready_rx.recv() {
            Ok(Ok(info)) => info,
            Ok(Err(reason)) => panic!("cannot create a network namespace: {reason}"),
            Err(_) => panic!("the namespace thread died before reporting"),
        };
        let sysconfig = tempfile::Builder::new()
            .prefix("autoblock-sysconfig-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary sysconfig directory: {e}"));
        let runtime = tempfile::Builder::new()
            .prefix("autoblock-run-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary runtime directory: {e}"));
        Netns {
            jobs: Some(jobs),
            thread: Some(thread),
            tid,
            inode,
            sysconfig,
            runtime,
        }
    }

    /// Runs `f` on the namespace thread and returns its result.
    ///
    /// Sockets `f` opens belong to this namespace even after they are
    /// returned to the caller. A panic inside `f` is re-raised in the caller
    /// (and the namespace stays usable).
    pub fn run<R, F>(&self, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (result_tx, result_rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let result = panic::catch_unwind(AssertUnwindSafe(f));
            // The caller waits for this; if it is gone there is no one to tell.
            let _ = result_tx.send(result);
        });
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .unwrap_or_else(|| panic!("the namespace thread {} is gone", self.tid));
        match result_rx.recv() {
            Ok(Ok(value)) => value,
            Ok(Err(payload)) => panic::resume_unwind(payload),
            Err(_) => panic!("the namespace thread {} died while running a job", self.tid),
        }
    }

    /// Runs `command` to completion inside the namespace and collects its
    /// output (stdin is closed unless the command says otherwise).
    pub fn output(&self, mut command: Command) -> io::Result<Output> {
        self.run(move || command.output())
    }

    /// Spawns `command` inside the namespace and returns the running child
    /// (for daemons). The child keeps the namespace alive until it exits.
    pub fn spawn(&self, mut command: Command) -> io::Result<Child> {
        self.run(move || command.spawn())
    }

    /// Runs `argv` (program and arguments) inside the namespace and returns
    /// its output, successful or not.
    ///
    /// # Panics
    ///
    /// When the program cannot be started at all (for example it is not
    /// installed), naming the program.
    pub fn cmd<S: AsRef<OsStr>>(&self, argv: &[S]) -> Output {
        self.cmd_with_input(argv, Vec::new())
    }

    /// Like [`Netns::cmd`], with `input` written to the program's stdin.
    pub fn cmd_with_input<S: AsRef<OsStr>>(&self, argv: &[S], input: impl Into<Vec<u8>>) -> Output {
        self.cmd_full(argv, input, &[])
    }

    /// Like [`Netns::cmd_with_input`], with extra environment variables.
    fn cmd_full<S: AsRef<OsStr>>(
        &self,
        argv: &[S],
        input: impl Into<Vec<u8>>,
        env: &[(&str, &str)],
    ) -> Output {
        let Some((program, args)) = argv.split_first() else {
            panic!("Netns::cmd needs at least a program name");
        };
        let mut command = Command::new(program);
        command.args(args);
        command.env("AUTOBLOCK_RUNTIME_DIR", self.runtime.path());
        command.envs(env.iter().copied());
        let shown = show_argv(argv);
        let input = input.into();
        self.run(move || run_with_input(command, &input))
            .unwrap_or_else(|e| panic!("cannot run `{shown}` in the test namespace: {e}"))
    }

    /// Runs the `autoblock` binary ([`autoblock_bin`](crate::autoblock_bin))
    /// inside the namespace.
    ///
    /// Unless `args` already contain `--no-mirror` or `--sysconfig-dir`, it
    /// puts `--sysconfig-dir DIR` first, where DIR is this namespace's own
    /// temporary directory ([`Netns::sysconfig_dir`]): a test never writes
    /// this machine's `/etc/sysconfig`. Use [`Netns::autoblock_raw`] to pass
    /// the arguments exactly as given.
    pub fn autoblock<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.autoblock_with_input(args, Vec::new())
    }

    /// Like [`Netns::autoblock`], with `input` on stdin (for `-f -`).
    pub fn autoblock_with_input<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        input: impl Into<Vec<u8>>,
    ) -> Output {
        let mut argv: Vec<&OsStr> = vec![OsStr::new("")];
        let explicit = args
            .iter()
            .any(|a| a.as_ref() == "--no-mirror" || a.as_ref() == "--sysconfig-dir");
        if !explicit {
            argv.push(OsStr::new("--sysconfig-dir"));
            argv.push(self.sysconfig.path().as_os_str());
        }
        argv.extend(args.iter().map(AsRef::as_ref));
        let bin = crate::autoblock_bin();
        argv[0] = bin.as_os_str();
        self.cmd_with_input(&argv, input)
    }

    /// Runs the `autoblock` binary with exactly `args` (like [`Netns::autoblock_raw`]) and
    /// extra environment variables (they win over the namespace's own
    /// `AUTOBLOCK_RUNTIME_DIR`).
    pub fn autoblock_env<S: AsRef<OsStr>>(&self, args: &[S], env: &[(&str, &str)]) -> Output {
        let bin = crate::autoblock_bin();
        let mut argv: Vec<&OsStr> = vec![bin.as_os_str()];
        argv.extend(args.iter().map(AsRef::as_ref));
        self.cmd_full(&argv, Vec::new(), env)
    }

    /// Like [`Netns::autoblock`], and returns stdout.
    ///
    /// # Panics
    ///
    /// Unless autoblock exits successfully, with its status, stdout and
    /// stderr.
    pub fn autoblock_ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let output = self.autoblock(args);
        if !output.status.success() {
            panic!(
                "`autoblock {}` failed in the test namespace\n{}",
                show_argv(args),
                crate::output_text(&output)
            );
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs the `autoblock` binary with exactly `args`.
    pub fn autoblock_raw<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let bin = crate::autoblock_bin();
        let mut argv: Vec<&OsStr> = vec![bin.as_os_str()];
        argv.extend(args.iter().map(AsRef::as_ref));
        self.cmd(&argv)
    }

    /// The namespace's own sysconfig directory (empty at first), removed
    /// when the namespace is dropped.
    pub fn sysconfig_dir(&self) -> &Path {
        self.sysconfig.path()
    }

    /// The kernel thread id of the namespace thread. `ip` accepts it where
    /// it asks for a PID: `ip link set X netns TID`.
    pub fn tid(&self) -> libc::pid_t {
        self.tid
    }

    /// The namespace file of the namespace thread,
    /// `/proc/PID/task/TID/ns/net` (valid while the namespace lives).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/task/{}/ns/net",
            std::process::id(),
            self.tid
        ))
    }

    /// The namespace's inode number: two live namespaces are the same
    /// namespace exactly when their inode numbers are equal.
    pub fn inode(&self) -> u64 {
        self.inode
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Closing the channel ends the job loop; joining makes sure the
        // thread, and so its hold on the namespace, is gone before we return.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Moves the calling thread into a new network namespace and brings its
/// loopback interface up. Returns the thread id and the namespace inode.
fn enter_fresh_netns() -> Result<(libc::pid_t, u64), String> {
    // SAFETY: unshare takes a flag word and touches no memory of ours; with
    // CLONE_NEWNET alone it only changes this thread's network namespace,
    // which is allowed in a multi-threaded process.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let err = io::Error::last_os_error();
        return Err(format!("unshare(CLONE_NEWNET) failed: {err} ({NEED_ROOT})"));
    }
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    let inode = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|e| format!("cannot stat /proc/thread-self/ns/net: {e}"))?
        .ino();
    loopback_up().map_err(|e| format!("cannot bring the loopback interface up: {e}"))?;
    Ok((tid, inode))
}

/// Sets IFF_UP on `lo` of the calling thread's namespace (SIOCSIFFLAGS), so
/// a new namespace needs no `ip` binary to be usable.
fn loopback_up() -> io::Result<()> {
    // Any socket of the namespace serves as the handle for the ioctl.
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: ifreq is a plain C struct (a name array and a union of plain
    // data); all-zero bytes are a valid value of it.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the fd is a live socket we own; SIOCGIFFLAGS reads the
    // NUL-terminated name from `request` and writes only its flags field,
    // and `request` is a valid, exclusively borrowed ifreq for the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS just initialised the flags member of the union.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `request`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `command` with `input` on stdin (or a closed stdin when `input` is
/// empty) and collects its output.
fn run_with_input(mut command: Command, input: &[u8]) -> io::Result<Output> {
    if input.is_empty() {
        return command.stdin(Stdio::null()).output();
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin was requested as a pipe");
    // Write from another thread so a program that answers before reading all
    // of its input cannot deadlock us on a full pipe.
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        let result = stdin.write_all(&input);
        drop(stdin);
        result
    });
    let output = child.wait_with_output()?;
    match writer.join() {
        // A program may legitimately exit without reading all of its input.
        Ok(Err(e)) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(output),
    }
}

/// `argv` joined for messages.
pub(crate) fn show_argv<S: AsRef<OsStr>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
