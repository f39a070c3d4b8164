//! The VM lab: a private network namespace holding libvirtd (and its NAT
//! bridge, dnsmasq and firewall rules), vagrant driving it, and ssh into
//! the guest.
//!
//! libvirtd runs with a private copy of `/etc/libvirt` (bind-mounted in its
//! own mount namespace, with `user = "root"` in qemu.conf so defining a
//! domain does not re-probe QEMU), so neither this machine's network nor
//! its libvirt configuration is touched. [`Lab`]'s `Drop` destroys the VM
//! and stops everything it started, by pid, unless `--keep` was given; a
//! lab left over by an interrupted run is torn down at the next start.
//!
//! It deliberately knows nothing about what runs in the guest.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{Cache, Payload};
use crate::util::workspace_root;

/// The lab's network namespace (named, so `--keep` leaves a way in).
pub const NETNS: &str = "autoblock-vm";

/// How long a boot or a reboot may take before it counts as failed.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// The guest's serial console, written to a file in the cache (the box's
/// kernel logs to ttyS0, and so does systemd at boot and shutdown): read
/// when a boot or a reboot does not finish.
pub const SERIAL_LOG: &str = "serial.log";

/// The running lab; dropping it tears it down (unless kept).
#[derive(Debug)]
pub struct Lab {
    cache: Cache,
    machine: String,
    keep: bool,
}

impl Lab {
    /// Creates the namespace and starts virtlogd and libvirtd inside it.
    pub fn start(cache: &Cache, machine: &str, keep: bool) -> Result<Lab> {
        teardown(cache, true);
        let lab = Lab {
            cache: cache.clone(),
            machine: machine.to_owned(),
            keep,
        };
        run_ok(Command::new("ip").args(["netns", "add", NETNS]))?;
        run_ok(Command::new("ip").args(["-n", NETNS, "link", "set", "lo", "up"]))?;

        let etc = cache.path("etc-libvirt");
        let _ = fs::remove_dir_all(&etc);
        run_ok(Command::new("cp").arg("-a").arg("/etc/libvirt").arg(&etc))?;
        let _ = fs::remove_dir_all(etc.join("qemu/networks/autostart"));
        let qemu_conf = etc.join("qemu.conf");
        let mut conf = fs::read_to_string(&qemu_conf).unwrap_or_default();
        conf.push_str("\n# autoblock VM lab: no per-domain QEMU re-probe.\nuser = \"root\"\ngroup = \"root\"\n");
        fs::write(&qemu_conf, conf).context("cannot write the lab's qemu.conf")?;

        let run_dir = cache.path("run");
        fs::create_dir_all(&run_dir)?;
        let script = format!(
            "set -e; mount --bind '{etc}' /etc/libvirt; \
             virtlogd -d -p '{run}/virtlogd.pid'; \
             libvirtd -d -p '{run}/libvirtd.pid'",
            etc = etc.display(),
            run = run_dir.display()
        );
        run_ok(Command::new("ip").args([
            "netns",
            "exec",
            NETNS,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ]))?;
        let started = Instant::now();
        loop {
            let ok = Command::new("virsh")
                .args(["-c", "qemu:///system", "version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("libvirtd did not answer within 60 s");
            }
            thread::sleep(Duration::from_millis(300));
        }
        Ok(lab)
    }

    /// A `vagrant` command for this lab: in the namespace, with the cache's
    /// VAGRANT_HOME and storage pool, from the repository's `vagrant/`.
    pub fn vagrant(&self) -> Command {
        vagrant_command(&self.cache)
    }

    /// `vagrant up` of the machine (provisioning included).
    pub fn up(&self) -> Result<()> {
        println!("xtask: vagrant up {}", self.machine);
        let mut child = self
            .vagrant()
            .args(["up", &self.machine, "--provider", "libvirt"])
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot run vagrant up")?;
        // Vagrant redraws an upload progress bar thousands of times: keep
        // every other line.
        let stdout = child.stdout.take().context("vagrant stdout")?;
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = Vec::new();
        while std::io::BufRead::read_until(&mut reader, b'\n', &mut line)? > 0 {
            let text = String::from_utf8_lossy(&line);
            for part in text.split('\r') {
                let part = part.replace("\x1b[K", "");
                if !part.trim().is_empty() && !part.contains("Progress:") {
                    print!(
                        "{}",
                        if part.ends_with('\n') {
                            part
                        } else {
                            part + "\n"
                        }
                    );
                }
            }
            line.clear();
        }
        let status = child.wait().context("waiting for vagrant up")?;
        if !status.success() {
            bail!("vagrant up {} failed ({status})", self.machine);
        }
        Ok(())
    }

    /// The guest's ssh access (from `vagrant ssh-config`).
    pub fn guest(&self) -> Result<Guest> {
        let output = self
            .vagrant()
            .args(["ssh-config", &self.machine])
            .output()
            .context("cannot run vagrant ssh-config")?;
        if !output.status.success() {
            bail!(
                "vagrant ssh-config failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let config = self.cache.path("ssh-config");
        fs::write(&config, &output.stdout).context("cannot write the ssh config")?;
        Ok(Guest {
            config,
            host: self.machine.clone(),
            logs: self.cache.path("logs"),
            serial: self.cache.path(SERIAL_LOG),
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            println!(
                "\nxtask: --keep: the VM is still running. Reach it with\n  \
                 ip netns exec {NETNS} env VAGRANT_HOME={} VAGRANT_CWD={} \
                 VAGRANT_DOTFILE_PATH={} vagrant ssh {}\n\
                 and tear it all down with `cargo xtask vagrant clean`.",
                self.cache.path("vagrant.d").display(),
                workspace_root().join("vagrant").display(),
                self.cache.path("dotfile").display(),
                self.machine
            );
            return;
        }
        teardown(&self.cache, false);
    }
}

fn vagrant_command(cache: &Cache) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", NETNS, "vagrant"])
        .current_dir(workspace_root().join("vagrant"))
        .env("VAGRANT_HOME", cache.path("vagrant.d"))
        .env("VAGRANT_CWD", workspace_root().join("vagrant"))
        .env("VAGRANT_DOTFILE_PATH", cache.path("dotfile"))
        .env("VAGRANT_DEFAULT_PROVIDER", "libvirt")
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .env("AUTOBLOCK_VM_POOL", cache.path("pool"))
        .env("AUTOBLOCK_VM_SERIAL_LOG", cache.path(SERIAL_LOG))
        .env("LIBVIRT_DEFAULT_URI", "qemu:///system");
    command
}

/// Destroys every VM of the Vagrantfile, the libvirt network and pool definitions, stops
/// libvirtd and virtlogd by their pids and deletes the namespace. Quiet
/// when `stale` (nothing may be there).
pub fn teardown(cache: &Cache, stale: bool) {
    let netns_exists = Path::new("/run/netns").join(NETNS).exists();
    if stale && !netns_exists {
        return;
    }
    if stale {
        println!("xtask: tearing down a VM lab left by an earlier run");
    }
    let libvirtd_up = read_pid(&cache.path("run/libvirtd.pid")).is_some();
    if libvirtd_up && netns_exists {
        let t = Instant::now();
        let _ = vagrant_command(cache)
            .args(["destroy", "-f"])
            .stdout(Stdio::null())
            .status();
        println!(
            "xtask: vagrant destroy ({:.1} s)",
            t.elapsed().as_secs_f64()
        );
        let virsh = |args: &[&str]| {
            let _ = Command::new("virsh")
                .args(["-c", "qemu:///system"])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        for net in ["vagrant-libvirt", "default"] {
            virsh(&["net-destroy", net]);
            virsh(&["net-undefine", net]);
        }
        for pool in ["default", "pool"] {
            virsh(&["pool-destroy", pool]);
            virsh(&["pool-undefine", pool]);
        }
    }
    for name in ["libvirtd", "virtlogd"] {
        let pidfile = cache.path(&format!("run/{name}.pid"));
        if let Some(pid) = read_pid(&pidfile) {
            stop_pid(pid, name);
        }
        let _ = fs::remove_file(pidfile);
    }
    if netns_exists {
        let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
    }
}

fn read_pid(path: &Path) -> Option<libc::pid_t> {
    let pid: libc::pid_t = fs::read_to_string(path).ok()?.trim().parse().ok()?;
    // Only a live process of the expected kind counts.
    fs::metadata(format!("/proc/{pid}")).ok()?;
    Some(pid)
}

/// SIGTERM, then SIGKILL after 10 s, to one process started by the lab
/// (checked by its command name).
fn stop_pid(pid: libc::pid_t, name: &str) {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != name {
        return;
    }
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let started = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn run_ok(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// ssh access to the running guest (plain ssh with vagrant's ssh config:
/// much faster than `vagrant ssh -c`).
#[derive(Debug)]
pub struct Guest {
    config: PathBuf,
    host: String,
    logs: PathBuf,
    serial: PathBuf,
}

/// How long one test binary may run in the guest (seconds) before it is
/// killed and counted as failed: a hang must not stall CI.
const TEST_TIMEOUT: u32 = 1200;

/// Where the test binaries live in the guest.
const GUEST_TESTS: &str = "/opt/autoblock-tests";

impl Guest {
    fn ssh(&self, timeout: u32) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", NETNS, "ssh", "-F"])
            .arg(&self.config)
            .args([
                "-o",
                &format!("ConnectTimeout={timeout}"),
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                &self.host,
            ]);
        command
    }

    /// Runs a shell script as root in the guest, returning its output.
    pub fn root_output(&self, script: &str) -> Result<Output> {
        let mut child = self
            .ssh(20)
            .args(["sudo", "sh", "-s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start ssh")?;
        child
            .stdin
            .take()
            .context("ssh stdin")?
            .write_all(script.as_bytes())
            .context("writing the script to ssh")?;
        child.wait_with_output().context("waiting for ssh")
    }

    /// Runs a shell script as root; fails (with its output) unless it
    /// exits 0; returns its stdout.
    pub fn root(&self, script: &str) -> Result<String> {
        let output = self.root_output(script)?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "exited with {}: {}{}",
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(stdout)
    }

    /// Copies local files into a guest directory (owned by the vagrant user).
    pub fn copy_in(&self, files: &[&Path], dir: &str) -> Result<()> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", NETNS, "scp", "-q", "-F"])
            .arg(&self.config)
            .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR"])
            .args(files)
            .arg(format!("{}:{dir}/", self.host));
        run_ok(&mut command)
    }

    /// The kernel's boot id (changes with every boot).
    pub fn boot_id(&self) -> Result<String> {
        let output = self
            .ssh(5)
            .args(["cat", "/proc/sys/kernel/random/boot_id"])
            .stdin(Stdio::null())
            .output()
            .context("cannot run ssh")?;
        if !output.status.success() {
            bail!("ssh failed ({})", output.status);
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The last `n` lines of the guest's serial console, or why there are none.
    pub fn serial_tail(&self, n: usize) -> String {
        match fs::read(&self.serial) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(n)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.serial.display()),
        }
    }

    /// Reboots the guest (`systemctl reboot`) and waits until ssh answers
    /// with a new boot id, at most [`BOOT_TIMEOUT`]; returns how long it took.
    pub fn reboot(&self) -> Result<Duration> {
        let before = self
            .boot_id()
            .context("reading boot_id before the reboot")?;
        let started = Instant::now();
        // The connection may drop before ssh reports anything: not an error.
        let _ = self
            .ssh(10)
            .args(["sudo", "systemctl", "reboot"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        loop {
            match self.boot_id() {
                Ok(now) if !now.is_empty() && now != before => return Ok(started.elapsed()),
                _ => {}
            }
            if started.elapsed() > BOOT_TIMEOUT {
                bail!(
                    "no new boot_id within {} s of `systemctl reboot`; the guest's serial \
                     console ({}) ends:\n{}",
                    BOOT_TIMEOUT.as_secs(),
                    self.serial.display(),
                    self.serial_tail(40)
                );
            }
            thread::sleep(Duration::from_secs(2));
        }
    }

    /// Installs the host-built payload: `autoblock` into /usr/local/bin, the
    /// test binaries into /opt/autoblock-tests.
    pub fn install_payload(&self, payload: &Payload) -> Result<()> {
        self.root("rm -rf /tmp/payload && install -d -o vagrant /tmp/payload")?;
        // Without debug info the files are a fraction of the size, and
        // ssh in an emulated guest is slow.
        let stripped = tempfile::tempdir().context("cannot create a temporary directory")?;
        let mut files = Vec::new();
        for file in std::iter::once(&payload.autoblock).chain(&payload.tests) {
            let name = file.file_name().context("a payload file without a name")?;
            let out = stripped.path().join(name);
            run_ok(
                Command::new("strip")
                    .arg("--strip-debug")
                    .arg("-o")
                    .arg(&out)
                    .arg(file),
            )?;
            files.push(out);
        }
        let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        self.copy_in(&files, "/tmp/payload")?;
        let mut script = format!(
            "set -e; install -m 755 /tmp/payload/autoblock /usr/local/bin/autoblock; \
             rm -rf {GUEST_TESTS}; install -d {GUEST_TESTS};"
        );
        for test in &payload.tests {
            let name = test
                .file_name()
                .context("a test executable without a name")?
                .to_string_lossy();
            script.push_str(&format!(
                " install -m 755 '/tmp/payload/{name}' {GUEST_TESTS}/;"
            ));
        }
        script.push_str(" rm -rf /tmp/payload");
        self.root(&script).map(|_| ())
    }

    /// Copies the tracked files of the source tree into the guest at the
    /// same absolute path: test binaries find their data files through
    /// the path they were compiled at.
    pub fn copy_source(&self, root: &Path) -> Result<()> {
        let tar = std::env::temp_dir().join("autoblock-src.tar");
        let files = Command::new("git")
            .args(["ls-files", "-z"])
            .current_dir(root)
            .output()
            .context("cannot run git ls-files")?;
        if !files.status.success() {
            bail!(
                "`git ls-files` failed in {}: the VM stage needs a git checkout",
                root.display()
            );
        }
        let mut child = Command::new("tar")
            .args(["-c", "-f"])
            .arg(&tar)
            .args(["--null", "--ignore-failed-read", "-T", "-"])
            .current_dir(root)
            .stdin(Stdio::piped())
            .spawn()
            .context("cannot run tar")?;
        child
            .stdin
            .take()
            .context("tar stdin")?
            .write_all(&files.stdout)?;
        if !child.wait()?.success() {
            bail!("tar of the source tree failed");
        }
        self.copy_in(&[tar.as_path()], "/tmp")?;
        let _ = fs::remove_file(&tar);
        let dir = root.display();
        self.root(&format!(
            "set -e; rm -rf '{dir}'; mkdir -p '{dir}'; tar -C '{dir}' -xf /tmp/autoblock-src.tar; \
             rm -f /tmp/autoblock-src.tar"
        ))
        .map(|_| ())
    }

    /// For the Alma machines: copies the source tree in and builds the CLI
    /// and the test binaries inside the guest (its own glibc).
    pub fn build_inside(&self, root: &Path) -> Result<()> {
        self.copy_source(root)?;
        let dir = root.display();
        let script = format!(
            "set -e; cd '{dir}'; \
             cargo build --release -p autoblock-cli; \
             install -m 755 target/release/autoblock /usr/local/bin/autoblock; \
             rm -rf {GUEST_TESTS}; install -d {GUEST_TESTS}; \
             cargo test -p autoblock-tests --no-run --message-format=json \
               | grep -o '\"executable\":\"[^\"]*\"' | cut -d'\"' -f4 \
               | while read -r exe; do install -m 755 \"$exe\" {GUEST_TESTS}/; done"
        );
        self.root(&script).map(|_| ())
    }

    /// The test executables installed in the guest.
    pub fn test_binaries(&self) -> Result<Vec<String>> {
        let out = self.root(&format!("ls -1 {GUEST_TESTS}"))?;
        Ok(out
            .lines()
            .map(|l| format!("{GUEST_TESTS}/{}", l.trim()))
            .collect())
    }

    /// Runs one test executable as root (CI=true: nothing may skip);
    /// its output goes to the cache's `logs/`, and the end of it into the
    /// failure reason.
    pub fn run_test_binary(&self, bin: &str) -> Result<super::StepResult> {
        let output = self.root_output(&format!(
            "cd /tmp && CI=true AUTOBLOCK_BIN=/usr/local/bin/autoblock \
             timeout {TEST_TIMEOUT} {bin} 2>&1"
        ))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let _ = fs::create_dir_all(&self.logs);
        let name = bin.rsplit('/').next().unwrap_or(bin);
        let log = self.logs.join(format!("{name}.log"));
        let _ = fs::write(&log, &text);
        if output.status.success() {
            return Ok(super::StepResult::Pass);
        }
        let failures: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("test ") && l.ends_with("FAILED"))
            .collect();
        Ok(super::StepResult::Fail(format!(
            "{} ({}; log: {})",
            output.status,
            if failures.is_empty() {
                text.lines().last().unwrap_or("").to_owned()
            } else {
                failures.join("; ")
            },
            log.display()
        )))
    }
}
