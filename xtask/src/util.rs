//! Small helpers shared by the subcommands: flag parsing, locating the
//! workspace, cargo and programs, the root check, the Debian tool
//! prerequisites, and building the `autoblock` binary.
//!
//! It deliberately holds no subcommand logic.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The flags a subcommand accepts, parsed from its arguments: boolean
/// `--flag`s and `--key VALUE` options. Anything else is an error naming it.
#[derive(Debug, Default)]
pub struct Flags {
    bools: Vec<String>,
    values: Vec<(String, String)>,
}

impl Flags {
    /// Parses `args` against the allowed boolean flags and value options.
    pub fn parse(args: &[String], bools: &[&str], values: &[&str]) -> Result<Flags> {
        let mut flags = Flags::default();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if bools.contains(&arg.as_str()) {
                flags.bools.push(arg.clone());
            } else if values.contains(&arg.as_str()) {
                let Some(value) = iter.next() else {
                    bail!("`{arg}` needs a value");
                };
                flags.values.push((arg.clone(), value.clone()));
            } else {
                bail!("unexpected argument `{arg}`");
            }
        }
        Ok(flags)
    }

    /// Whether the boolean flag was given.
    pub fn has(&self, flag: &str) -> bool {
        self.bools.iter().any(|b| b == flag)
    }

    /// The last value given for an option.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether this run is under CI (`CI=true`): then nothing is skipped.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Fails unless running as root, naming what needs it.
pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "{what} needs root (network namespaces and nf_tables): run it as root (euid is {euid})"
        );
    }
    Ok(())
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// A `cargo` command in the workspace root (the cargo that runs us, if
/// known).
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.current_dir(workspace_root());
    command
}

/// The path of `program` in `PATH`, `/usr/sbin` or `/sbin` (the firewall
/// tools live in sbin, which a non-login root shell may lack in `PATH`).
/// An absolute `program` is looked up as it is.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.starts_with('/') {
        return Some(PathBuf::from(program)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The programs the tests run, and the Debian package of each: the
/// firewall tools the kernel tests compare against, strace for the
/// no-exec tests, iproute2 for the namespace test bed, a real sshd and
/// client for the daemon's live tests, systemd-journal-remote to write real
/// journal files, rpm to inspect the RPM package.
pub const TOOLS: [(&str, &str); 12] = [
    ("nft", "nftables"),
    ("iptables-nft", "iptables"),
    ("ip6tables-nft", "iptables"),
    ("iptables-nft-save", "iptables"),
    ("iptables-nft-restore", "iptables"),
    ("strace", "strace"),
    ("ip", "iproute2"),
    ("sshd", "openssh-server"),
    ("ssh-keygen", "openssh-client"),
    ("sshpass", "sshpass"),
    (
        "/lib/systemd/systemd-journal-remote",
        "systemd-journal-remote",
    ),
    ("rpm", "rpm"),
];

/// Makes sure every program in [`TOOLS`] is installed. Missing ones are
/// installed with `apt-get update` + `apt-get install -y`; under CI the
/// packages are always passed to `apt-get install` (a no-op when present),
/// so CI never relies on what a machine happens to have.
pub fn ensure_tools() -> Result<()> {
    let missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(program, _)| find_program(program).is_none())
        .map(|(_, package)| *package)
        .collect();
    let mut packages: Vec<&str> = if is_ci() {
        TOOLS.iter().map(|(_, p)| *p).collect()
    } else {
        missing.clone()
    };
    packages.sort_unstable();
    packages.dedup();
    if packages.is_empty() {
        return Ok(());
    }
    // Package lists are only fetched when something is really missing, or
    // when installing from the current lists failed.
    if apt_install(&packages, !missing.is_empty()).is_err() {
        apt_install(&packages, true)?;
    }
    let still: Vec<&str> = TOOLS
        .iter()
        .filter(|(program, _)| find_program(program).is_none())
        .map(|(program, _)| *program)
        .collect();
    if !still.is_empty() {
        bail!(
            "still missing after installing packages: {}",
            still.join(", ")
        );
    }
    Ok(())
}

/// `apt-get install -y --no-install-recommends PACKAGES` (after `apt-get
/// update` when `update`), with every service start-up refused while it
/// runs: a `/usr/sbin/policy-rc.d` that exits 101 (the Debian convention),
/// put back as it was afterwards. Installing openssh-server or crowdsec for
/// the tests must never start a daemon on this machine.
pub fn apt_install(packages: &[&str], update: bool) -> Result<()> {
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let before = std::fs::read(policy).ok();
    std::fs::write(policy, "#!/bin/sh\nexit 101\n").context("writing /usr/sbin/policy-rc.d")?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755))
            .context("chmod /usr/sbin/policy-rc.d")?;
    }
    let result = (|| -> Result<()> {
        if update {
            println!("xtask: apt-get update");
            let status = Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .context("cannot run apt-get update")?;
            if !status.success() {
                bail!("apt-get update failed ({status})");
            }
        }
        println!(
            "xtask: apt-get install -y {} (service start-up refused)",
            packages.join(" ")
        );
        let status = Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .arg("--allow-downgrades") // qemu-utils pinned to qemu-system-x86's version
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("cannot run apt-get install")?;
        if !status.success() {
            bail!("apt-get install {} failed ({status})", packages.join(" "));
        }
        Ok(())
    })();
    match before {
        Some(b) => std::fs::write(policy, b).context("restoring /usr/sbin/policy-rc.d")?,
        None => std::fs::remove_file(policy).context("removing /usr/sbin/policy-rc.d")?,
    }
    result
}

/// Builds the `autoblock` binary (`release` or not) and returns its path,
/// or returns `AUTOBLOCK_BIN` when that is set.
pub fn build_autoblock(release: bool) -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("AUTOBLOCK_BIN").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    let mut command = cargo();
    command.args(["build", "--package", "autoblock-cli", "--bin", "autoblock"]);
    command.args(["--message-format", "json-render-diagnostics"]);
    if release {
        command.arg("--release");
    }
    println!(
        "xtask: cargo build -p autoblock-cli{}",
        if release { " --release" } else { "" }
    );
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    if !output.status.success() {
        bail!("building the autoblock binary failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact" && message["target"]["name"] == "autoblock" {
            if let Some(exe) = message["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("cargo built autoblock-cli but reported no `autoblock` executable")
}

/// Human-readable size of a kilobyte count.
pub fn show_kb(kb: u64) -> String {
    if kb >= 10 * 1024 {
        format!("{:.0} MB", kb as f64 / 1024.0)
    } else {
        format!("{:.1} MB", kb as f64 / 1024.0)
    }
}

/// Human-readable duration.
pub fn show_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 0.01 {
        format!("{:.0} ms", secs * 1e3)
    } else {
        format!("{:.2} ms", secs * 1e3)
    }
}
