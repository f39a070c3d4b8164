//! `cargo xtask package [--out DIR]`: the Debian and RPM packages of autoblock.
//!
//! Steps: install the packagers once per machine (`cargo install --locked` of pinned
//! cargo-deb and cargo-generate-rpm) when missing, build the release binary, let it write
//! its own manual pages and shell completions (`autoblock gen …`) into
//! `<target>/release/package-assets/`, stage the default configuration there, then run
//! cargo-deb and cargo-generate-rpm, whose file lists live in
//! `crates/autoblock-cli/Cargo.toml`. The last two lines printed are `deb: PATH` and
//! `rpm: PATH`.
//!
//! It deliberately installs nothing on this machine but the two cargo subcommands, and
//! never writes into the source tree (the default configuration `packaging/autoblock.toml`
//! is only read).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::util::{cargo, find_program, show_duration, workspace_root, Flags};

/// The packagers, pinned so every machine builds the same packages.
const PACKAGERS: [(&str, &str); 2] = [
    ("deb", "cargo-deb@3.8.0"),
    ("generate-rpm", "cargo-generate-rpm@0.21.1"),
];

/// Runs `cargo xtask package [--out DIR]`.
pub fn run(args: &[String]) -> Result<ExitCode> {
    let flags = Flags::parse(args, &[], &["--out"])?;
    ensure_packagers()?;
    let exe = build_release()?;
    let release = exe
        .parent()
        .context("the binary has no directory")?
        .to_path_buf();
    let target = release
        .parent()
        .context("the release directory has no parent")?
        .to_path_buf();
    stage_assets(&exe, &release.join("package-assets"))?;
    let out = match flags.value("--out") {
        Some(dir) => absolute(Path::new(dir)),
        None => target.join("package"),
    };
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    remove_old_packages(&out)?;
    let deb = cargo_deb(&target, &out)?;
    let rpm = cargo_rpm(&target, &out)?;
    println!("deb: {}", deb.display());
    println!("rpm: {}", rpm.display());
    Ok(ExitCode::SUCCESS)
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    }
}

/// Installs cargo-deb / cargo-generate-rpm when `cargo deb --version` (etc.) fails.
fn ensure_packagers() -> Result<()> {
    for (sub, krate) in PACKAGERS {
        let present = cargo()
            .args([sub, "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if present {
            continue;
        }
        println!("xtask: cargo install --locked --debug {krate} (once per machine)");
        let started = Instant::now();
        // A debug build of a packager compiles in about half the time and packs a few
        // megabytes just as well; one target directory shares what the two have in common.
        let status = cargo()
            .args(["install", "--locked", "--debug", "--target-dir"])
            .arg(crate::util::workspace_root().join("target/packagers"))
            .arg(krate)
            .status()
            .context("cannot run cargo install")?;
        if !status.success() {
            bail!("cargo install --locked {krate} failed ({status})");
        }
        println!(
            "xtask: installed {krate} in {}",
            show_duration(started.elapsed())
        );
    }
    Ok(())
}

/// `cargo build --release -p autoblock-cli`; returns the binary's path.
fn build_release() -> Result<PathBuf> {
    println!("xtask: cargo build --release -p autoblock-cli");
    let output = cargo()
        .args([
            "build",
            "--release",
            "--package",
            "autoblock-cli",
            "--bin",
            "autoblock",
        ])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    if !output.status.success() {
        bail!("the release build failed ({})", output.status);
    }
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(m) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if m["reason"] == "compiler-artifact" && m["target"]["name"] == "autoblock" {
            if let Some(exe) = m["executable"].as_str() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("cargo built autoblock-cli but reported no `autoblock` executable")
}

fn run_ok(command: &mut Command, what: &str) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Writes man pages (plain, and gzipped for the packages), completions, the default configuration and a
/// stripped binary copy into `dir` (recreated).
fn stage_assets(exe: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let man = dir.join("man");
    let man_gz = dir.join("man-gz");
    let completions = dir.join("completions");
    fs::create_dir_all(&man_gz).with_context(|| format!("creating {}", man_gz.display()))?;
    run_ok(
        Command::new(exe).args(["gen", "man", "--out"]).arg(&man),
        "autoblock gen man",
    )?;
    run_ok(
        Command::new(exe)
            .args(["gen", "completions", "--out"])
            .arg(&completions),
        "autoblock gen completions",
    )?;
    // Both packages carry gzipped pages (neither packager compresses these).
    for entry in fs::read_dir(&man).with_context(|| format!("reading {}", man.display()))? {
        let page = entry?.path();
        let name = page
            .file_name()
            .context("a page without a name")?
            .to_owned();
        let gz = man_gz.join(format!("{}.gz", name.to_string_lossy()));
        let output = Command::new("gzip")
            .args(["-9", "-n", "-c"])
            .arg(&page)
            .output()
            .context("cannot run gzip")?;
        if !output.status.success() {
            bail!("gzip {} failed ({})", page.display(), output.status);
        }
        let bytes = output.stdout;
        fs::write(&gz, bytes).with_context(|| format!("writing {}", gz.display()))?;
    }
    // The default configuration belongs to the daemon; until it exists the package
    // carries a stub that only points at the manual.
    let config = workspace_root().join("packaging/autoblock.toml");
    let staged = dir.join("autoblock.toml");
    if config.is_file() {
        fs::copy(&config, &staged).with_context(|| format!("copying {}", config.display()))?;
    } else {
        println!(
            "xtask: warning: {} is missing; packaging a stub configuration",
            config.display()
        );
        fs::write(
            &staged,
            "# autoblock configuration. See autoblock(8) and autoblock-run(8).\n",
        )
        .with_context(|| format!("writing {}", staged.display()))?;
    }
    // Both packages carry this stripped copy (with --no-build neither packager strips).
    let bin = dir.join("autoblock");
    fs::copy(exe, &bin).with_context(|| format!("copying {}", exe.display()))?;
    if let Some(strip) = find_program("strip") {
        run_ok(Command::new(strip).arg(&bin), "strip")?;
    }
    Ok(())
}

/// The last line of the packager's output that ends in `suffix` and names a file.
fn reported_path(text: &str, suffix: &str) -> Option<PathBuf> {
    text.lines()
        .rev()
        .flat_map(|l| l.split_whitespace().rev())
        .find(|w| w.ends_with(suffix) && Path::new(w).is_file())
        .map(PathBuf::from)
}

/// Removes earlier autoblock packages from `out`, so the newest file is this run's.
fn remove_old_packages(out: &Path) -> Result<()> {
    for entry in fs::read_dir(out).with_context(|| format!("reading {}", out.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let ours = (name.starts_with("autoblock_") && name.ends_with(".deb"))
            || (name.starts_with("autoblock-") && name.ends_with(".rpm"));
        if ours && path.is_file() {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

fn newest_with_suffix(dir: &Path, suffix: &str) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .max_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
}

fn cargo_deb(target: &Path, out: &Path) -> Result<PathBuf> {
    println!("xtask: cargo deb");
    let text = run_ok(
        cargo()
            .env("CARGO_TARGET_DIR", target)
            .args([
                "deb",
                "--package",
                "autoblock-cli",
                "--no-build",
                "--output",
            ])
            .arg(out),
        "cargo deb",
    )?;
    reported_path(&text, ".deb")
        .or_else(|| newest_with_suffix(out, ".deb"))
        .context("cargo deb reported no .deb")
}

fn cargo_rpm(target: &Path, out: &Path) -> Result<PathBuf> {
    println!("xtask: cargo generate-rpm");
    run_ok(
        cargo()
            .env("CARGO_TARGET_DIR", target)
            .args(["generate-rpm", "-p", "crates/autoblock-cli", "--target-dir"])
            .arg(target)
            .arg("-o")
            .arg(out),
        "cargo generate-rpm",
    )?;
    newest_with_suffix(out, ".rpm").context("cargo generate-rpm wrote no .rpm")
}
