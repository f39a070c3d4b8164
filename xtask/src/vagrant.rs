//! `cargo xtask vagrant box` and `cargo xtask vagrant [--box NAME] [--keep]
//! [--scenarios-only]`:
//! the end-to-end suite and the reboot scenarios inside a real virtual
//! machine (vagrant + libvirt), so a real boot runs the firewall services.
//!
//! This file owns the two commands: the host packages they need, the
//! debian12 box (built by `vagrant/box/build.sh`, cached under a key of its
//! inputs so a second run skips debootstrap), and the run itself — build on
//! the host, copy into the guest, one PASS/FAIL line per step. The lab
//! (private network namespace, libvirtd, vagrant, ssh) lives in
//! [`lab`]; the reboot scenarios in [`scenarios`].
//!
//! It deliberately holds no test logic of its own beyond the reboot
//! scenarios: the suite is the project's test binaries, run unchanged as
//! root in the guest. Nothing here touches this machine's own network or
//! firewall: libvirtd, its NAT bridge, dnsmasq and every vagrant and ssh
//! command live in the lab's network namespace.

mod lab;
mod scenarios;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util::{build_autoblock, cargo, find_program, require_root, workspace_root, Flags};

pub use lab::Lab;

/// The box name the Vagrantfile's debian12 machine uses.
pub const DEBIAN_BOX: &str = "autoblock/debian12";

/// Host programs the VM stage needs, and the Debian package of each.
const HOST_TOOLS: [(&str, &str); 11] = [
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("debootstrap", "debootstrap"),
    ("mkfs.ext4", "e2fsprogs"),
    ("ssh", "openssh-client"),
    ("vagrant", "vagrant"),
    ("libvirtd", "libvirt-daemon-system"),
    ("virsh", "libvirt-clients"),
    ("dnsmasq", "dnsmasq-base"),
    ("unshare", "util-linux"),
    ("strip", "binutils"),
];

/// Runs `cargo xtask vagrant …`.
pub fn run(args: &[String]) -> Result<ExitCode> {
    require_root("cargo xtask vagrant")?;
    if args.first().map(String::as_str) == Some("box") {
        let flags = Flags::parse(&args[1..], &["--rebuild"], &[])?;
        ensure_host_tools()?;
        let cache = Cache::new()?;
        let started = Instant::now();
        let (path, built) = build_box(&cache, flags.has("--rebuild"))?;
        register_box(&cache, &path)?;
        println!(
            "vagrant box: {} {} in {:.0} s",
            path.display(),
            if built { "built" } else { "from cache" },
            started.elapsed().as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.first().map(String::as_str) == Some("clean") {
        Flags::parse(&args[1..], &[], &[])?;
        let cache = Cache::new()?;
        lab::teardown(&cache, true);
        return Ok(ExitCode::SUCCESS);
    }
    let flags = Flags::parse(args, &["--keep", "--scenarios-only"], &["--box"])?;
    let machine = flags.value("--box").unwrap_or("debian12");
    let suite = !flags.has("--scenarios-only");
    if !suite && crate::util::is_ci() {
        bail!(
            "--scenarios-only leaves out the suite, which CI never does: run `cargo xtask vagrant`"
        );
    }
    let report = run_vm_with(machine, flags.has("--keep"), suite)?;
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The whole VM run (what `cargo xtask test` calls as its last stage):
/// box, lab, up, suite, reboot scenarios, tear-down. An `Err` means the VM
/// could not be built or booted; test failures are in the report.
pub fn run_vm(machine: &str, keep: bool) -> Result<Report> {
    run_vm_with(machine, keep, true)
}

/// [`run_vm`], with the suite left out unless `with_suite` (`--scenarios-only`,
/// for working on the scenarios; refused under CI).
fn run_vm_with(machine: &str, keep: bool, with_suite: bool) -> Result<Report> {
    if !["debian12", "alma9", "alma8"].contains(&machine) {
        bail!("unknown machine `{machine}` (debian12, alma9 or alma8)");
    }
    let started = Instant::now();
    let mut report = Report::default();
    ensure_host_tools()?;
    let cache = Cache::new()?;
    if machine == "debian12" {
        let t = Instant::now();
        let (path, built) = build_box(&cache, false)?;
        register_box(&cache, &path)?;
        report.note(
            "box debian12",
            if built { "built" } else { "cached" },
            t.elapsed(),
        );
    }
    // Built before the VM boots: nothing waits on a compile with a VM up.
    let payload = if machine == "debian12" {
        Some(host_payload(&cache, with_suite)?)
    } else {
        None
    };

    let lab = Lab::start(&cache, machine, keep)?;
    let t = Instant::now();
    lab.up()?;
    report.note("vagrant up", "ok", t.elapsed());
    let guest = lab.guest()?;
    let t = Instant::now();
    match &payload {
        Some(payload) => {
            guest.install_payload(payload)?;
            guest.copy_source(&workspace_root())?;
        }
        None => guest.build_inside(&workspace_root())?,
    }
    report.note("copy in", "ok", t.elapsed());

    // The host-only suites are not copied into the debian12 guest (see
    // host_payload), and skipped in a guest that built them: said either way.
    if !with_suite {
        report.note("suite", "not run (--scenarios-only)", Duration::ZERO);
    }
    for suite in HOST_ONLY_SUITES.iter().filter(|_| with_suite) {
        report.step(
            &format!("suite {suite}"),
            Ok(StepResult::OnHost(HOST_ONLY_WHY.to_owned())),
            Duration::ZERO,
        );
    }
    for bin in guest.test_binaries()?.into_iter().filter(|_| with_suite) {
        let t = Instant::now();
        let suite = suite_name(bin.rsplit('/').next().unwrap_or(&bin));
        if HOST_ONLY_SUITES.contains(&suite) {
            continue;
        }
        let outcome = guest.run_test_binary(&bin);
        report.step(&format!("suite {suite}"), outcome, t.elapsed());
    }
    let deb = payload.as_ref().map(|p| (p.deb.clone(), p.version.clone()));
    scenarios::run_all(&lab, &guest, deb, &mut report);
    report.total = started.elapsed();
    report.print(machine);
    drop(lab);
    Ok(report)
}

/// Test binaries of package autoblock-tests that cannot run in the guest:
/// `packaging` runs `cargo xtask package` (cargo and the source tree).
const HOST_ONLY_SUITES: [&str; 1] = ["packaging"];

/// Why a [`HOST_ONLY_SUITES`] binary is not run in the guest.
const HOST_ONLY_WHY: &str = "runs on the host only (it builds the packages with `cargo xtask \
     package` and inspects them: cargo and the source are not in the guest); the guest \
     installs the .deb in its own scenario";

/// `chain_layout-0123abcd` → `chain_layout` (cargo's hash suffix).
fn suite_name(file: &str) -> &str {
    file.rsplit_once('-').map_or(file, |(n, _)| n)
}

/// What the host builds for the Debian guest (same glibc): the release
/// `autoblock` binary, the executables of package autoblock-tests and the
/// .deb (`cargo xtask package`; its error, if it could not be built, is
/// the .deb scenario's failure).
#[derive(Debug)]
pub struct Payload {
    autoblock: PathBuf,
    tests: Vec<PathBuf>,
    deb: Result<PathBuf, String>,
    /// `autoblock --version` of the host build (the .deb packs the same).
    version: String,
}

/// `cargo xtask package --out DIR` (into the cache): the path of the .deb.
/// After the host suite's packaging test, which builds the same release
/// binary in the same target directory, this is only the packing.
fn build_deb(cache: &Cache) -> Result<PathBuf> {
    let out = cache.path("package");
    let _ = fs::remove_dir_all(&out);
    println!("xtask: cargo xtask package --out {}", out.display());
    let output = cargo()
        .args(["xtask", "package", "--out"])
        .arg(&out)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo xtask package")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "cargo xtask package failed ({}): {}",
            output.status,
            text.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        );
    }
    let deb = text
        .lines()
        .find_map(|l| l.strip_prefix("deb: "))
        .map(|p| PathBuf::from(p.trim()))
        .with_context(|| format!("cargo xtask package printed no `deb:` line:\n{text}"))?;
    if !deb.is_file() {
        bail!(
            "cargo xtask package reported {}, which is not a file",
            deb.display()
        );
    }
    Ok(deb)
}

fn host_payload(cache: &Cache, suite: bool) -> Result<Payload> {
    let autoblock = build_autoblock(true)?;
    let tests = if suite { test_binaries()? } else { Vec::new() };
    let version = Command::new(&autoblock)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {} --version", autoblock.display()))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let t = Instant::now();
    let deb = build_deb(cache).map_err(|e| format!("{e:#}"));
    println!("xtask: .deb in {:.1} s", t.elapsed().as_secs_f64());
    Ok(Payload {
        autoblock,
        tests,
        deb,
        version,
    })
}

/// Builds the executables of package autoblock-tests but the host-only
/// ones (`cargo test --no-run`) and returns their paths.
fn test_binaries() -> Result<Vec<PathBuf>> {
    println!("xtask: cargo test -p autoblock-tests --no-run");
    let output = cargo()
        .args(["test", "-p", "autoblock-tests", "--no-run"])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo test --no-run")?;
    if !output.status.success() {
        bail!("building the test binaries failed ({})", output.status);
    }
    let mut tests = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["profile"]["test"] == true
            && message["package_id"]
                .as_str()
                .is_some_and(|id| id.contains("autoblock-tests") || id.contains("/tests#"))
        {
            if let Some(exe) = message["executable"].as_str() {
                let exe = PathBuf::from(exe);
                let file = exe.file_name().unwrap_or_default().to_string_lossy();
                if !HOST_ONLY_SUITES.contains(&suite_name(&file)) {
                    tests.push(exe);
                }
            }
        }
    }
    if tests.is_empty() {
        bail!("cargo reported no test executables for package autoblock-tests");
    }
    Ok(tests)
}

/// The cache directory (`AUTOBLOCK_VM_CACHE`, default
/// `/var/cache/autoblock-vm`): boxes by key, VAGRANT_HOME, storage pool.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    fn new() -> Result<Cache> {
        let dir = std::env::var_os("AUTOBLOCK_VM_CACHE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/autoblock-vm"));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Cache { dir })
    }

    /// A path inside the cache.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Installs the host packages that are missing (`apt-get`). qemu-utils is
/// pinned to qemu-system-x86's version (a newer one may be installed, and
/// the two must match).
fn ensure_host_tools() -> Result<()> {
    let mut missing: Vec<&str> = HOST_TOOLS
        .iter()
        .filter(|(program, _)| find_program(program).is_none())
        .map(|(_, package)| *package)
        .collect();
    if find_program("vagrant").is_some()
        && !Command::new("vagrant")
            .args(["plugin", "list"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("vagrant-libvirt"))
    {
        missing.push("vagrant-libvirt");
    }
    if missing.is_empty() {
        return Ok(());
    }
    missing.extend(["vagrant-libvirt", "libvirt-daemon-driver-qemu"]);
    missing.sort_unstable();
    missing.dedup();
    let mut packages: Vec<String> = missing
        .iter()
        .filter(|p| **p != "qemu-utils")
        .map(|p| (*p).to_owned())
        .collect();
    let refresh = Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get update")?;
    if !refresh.success() {
        bail!("apt-get update failed ({refresh})");
    }
    let policy = Command::new("apt-cache")
        .args(["policy", "qemu-system-x86"])
        .output()
        .context("cannot run apt-cache")?;
    let policy = String::from_utf8_lossy(&policy.stdout);
    if let Some(version) = policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: "))
    {
        packages.push("qemu-system-x86".to_owned());
        packages.push(format!("qemu-utils={version}"));
    }
    // Start-up refused: libvirtd must never run in this machine's own
    // namespace (its default network would add firewall rules here).
    let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
    crate::util::apt_install(&packages, false)
}

/// The Debian mirror apt is configured with.
fn debian_mirror() -> String {
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list.d/debian.sources") {
        if let Some(uri) = text
            .lines()
            .find_map(|l| l.strip_prefix("URIs:"))
            .and_then(|u| u.split_whitespace().next())
        {
            return uri.to_owned();
        }
    }
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        if let Some(uri) = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("deb "))
            .find_map(|l| l.split_whitespace().find(|w| w.contains("://")))
        {
            return uri.to_owned();
        }
    }
    "http://deb.debian.org/debian".to_owned()
}

/// The well-known insecure public key that vagrant ships (it replaces it
/// with a fresh key pair on the first `vagrant up`).
fn vagrant_pubkey() -> Result<PathBuf> {
    let output = Command::new("sh")
        .args([
            "-c",
            "ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
             /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1",
        ])
        .output()
        .context("cannot look for vagrant's public key")?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if path.is_empty() {
        bail!("vagrant's insecure public key (keys/vagrant.pub) was not found");
    }
    Ok(PathBuf::from(path))
}

/// The box's cache key: a hash of everything that goes into it (the
/// package lists, the build script, its files, the mirror). With
/// `tree_only`, of what the debootstrap tree depends on (packages, mirror).
fn box_key(mirror: &str, tree_only: bool) -> Result<String> {
    let dir = workspace_root().join("vagrant/box");
    let mut input = Vec::new();
    let mut files = vec![dir.join("packages.txt"), dir.join("packages-apt.txt")];
    if !tree_only {
        files.push(dir.join("build.sh"));
        let mut extra: Vec<PathBuf> = fs::read_dir(dir.join("files"))
            .with_context(|| format!("cannot list {}", dir.join("files").display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        extra.sort();
        files.extend(extra);
    }
    for file in files {
        input.extend(file.file_name().unwrap_or_default().as_encoded_bytes());
        input.push(0);
        input.extend(fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?);
        input.push(0);
    }
    input.extend(mirror.as_bytes());
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run sha256sum")?;
    child
        .stdin
        .take()
        .context("sha256sum stdin")?
        .write_all(&input)
        .context("writing to sha256sum")?;
    let output = child.wait_with_output().context("waiting for sha256sum")?;
    let hex = String::from_utf8_lossy(&output.stdout);
    Ok(hex.chars().take(16).collect())
}

/// Deletes every entry of `dir` but `keep` (old boxes and trees are about
/// 1 GB each).
fn prune(dir: &Path, keep: &str) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name() != keep {
                let path = entry.path();
                let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
            }
        }
    }
}

/// Builds the debian12 box unless the cache holds one with the same key;
/// returns its path and whether it was built now.
fn build_box(cache: &Cache, rebuild: bool) -> Result<(PathBuf, bool)> {
    let mirror = debian_mirror();
    let key = box_key(&mirror, false)?;
    let tree = format!("{}.tar", box_key(&mirror, true)?);
    let path = cache.path(&format!("boxes/{key}/debian12.box"));
    if path.is_file() && !rebuild {
        println!(
            "xtask: debian12 box {key} from the cache: {}",
            path.display()
        );
        return Ok((path, false));
    }
    println!("xtask: building the debian12 box {key} (debootstrap from {mirror})");
    let work = cache.path(&format!("work-{key}"));
    let status = Command::new("bash")
        .arg(workspace_root().join("vagrant/box/build.sh"))
        .arg(&work)
        .arg(&path)
        .env("MIRROR", &mirror)
        .env("VAGRANT_PUBKEY", vagrant_pubkey()?)
        .env("TREE_CACHE", cache.path("trees").join(&tree))
        .status()
        .context("cannot run vagrant/box/build.sh")?;
    if !status.success() {
        let _ = fs::remove_dir_all(&work);
        bail!("building the debian12 box failed ({status})");
    }
    prune(&cache.path("boxes"), &key);
    prune(&cache.path("trees"), &tree);
    Ok((path, true))
}

/// Registers the box with `vagrant box add` in the cache's VAGRANT_HOME,
/// unless that very file is already registered.
fn register_box(cache: &Cache, path: &Path) -> Result<()> {
    let marker = cache.path("vagrant.d/autoblock-debian12.registered");
    let wanted = path.display().to_string();
    if fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return Ok(());
    }
    println!("xtask: vagrant box add {DEBIAN_BOX}");
    let status = Command::new("vagrant")
        .args(["box", "add", "--force", "--name", DEBIAN_BOX])
        .arg(path)
        .env("VAGRANT_HOME", cache.path("vagrant.d"))
        .status()
        .context("cannot run vagrant box add")?;
    if !status.success() {
        bail!("vagrant box add failed ({status})");
    }
    // vagrant-libvirt uploads each box once into the storage pool, named by
    // the box's timestamp: the volumes of earlier boxes are dead weight.
    if let Ok(entries) = fs::read_dir(cache.path("pool")) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .contains("_vagrant_box_image_")
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    fs::write(&marker, wanted).with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(())
}

/// The result of one step in the guest.
#[derive(Debug)]
pub enum StepResult {
    /// It passed.
    Pass,
    /// It failed, with the reason.
    Fail(String),
    /// It cannot run yet, with the reason (never counted as passed).
    NotPossible(String),
    /// It runs on the host, not in the guest, with the reason (never
    /// counted as passed).
    OnHost(String),
}

/// Every step's line, and the totals.
#[derive(Debug, Default)]
pub struct Report {
    lines: Vec<(String, StepResult, Duration)>,
    notes: Vec<(String, String, Duration)>,
    /// Wall time of the whole run.
    pub total: Duration,
}

impl Report {
    /// Records a timing that is not a test (box, up, copy).
    pub fn note(&mut self, what: &str, how: &str, took: Duration) {
        println!("vm: {what}: {how} ({:.1} s)", took.as_secs_f64());
        self.notes.push((what.to_owned(), how.to_owned(), took));
    }

    /// Records a step and prints its PASS/FAIL line at once.
    pub fn step(&mut self, name: &str, result: Result<StepResult>, took: Duration) {
        let result = result.unwrap_or_else(|e| StepResult::Fail(format!("{e:#}")));
        println!("{}", line(name, &result, took));
        self.lines.push((name.to_owned(), result, took));
    }

    /// How many steps failed.
    pub fn failed(&self) -> usize {
        self.lines
            .iter()
            .filter(|(_, r, _)| matches!(r, StepResult::Fail(_)))
            .count()
    }

    fn print(&self, machine: &str) {
        println!("\n==> VM {machine}: summary");
        for (what, how, took) in &self.notes {
            println!("  {what}: {how} ({:.1} s)", took.as_secs_f64());
        }
        for (name, result, took) in &self.lines {
            println!("  {}", line(name, result, *took));
        }
        let passed = self
            .lines
            .iter()
            .filter(|(_, r, _)| matches!(r, StepResult::Pass))
            .count();
        let on_host = self
            .lines
            .iter()
            .filter(|(_, r, _)| matches!(r, StepResult::OnHost(_)))
            .count();
        println!(
            "vm steps: {passed} passed, {} failed, {} not yet possible, {on_host} run on the \
             host only; {:.0} s in all",
            self.failed(),
            self.lines.len() - passed - self.failed() - on_host,
            self.total.as_secs_f64()
        );
    }

    /// One line of the summary of `cargo xtask test`.
    pub fn summary(&self) -> String {
        let passed = self
            .lines
            .iter()
            .filter(|(_, r, _)| matches!(r, StepResult::Pass))
            .count();
        let failed: Vec<&str> = self
            .lines
            .iter()
            .filter(|(_, r, _)| matches!(r, StepResult::Fail(_)))
            .map(|(n, _, _)| n.as_str())
            .collect();
        let mut text = format!("{passed} steps passed");
        if !failed.is_empty() {
            text.push_str(&format!(", failed: {}", failed.join(", ")));
        }
        text
    }
}

fn line(name: &str, result: &StepResult, took: Duration) -> String {
    let secs = took.as_secs_f64();
    match result {
        StepResult::Pass => format!("PASS  {name} ({secs:.1} s)"),
        StepResult::Fail(why) => format!("FAIL  {name} ({secs:.1} s): {why}"),
        StepResult::NotPossible(why) => format!("N/A   {name}: not yet possible: {why}"),
        StepResult::OnHost(why) => format!("HOST  {name}: not run in the guest: {why}"),
    }
}
