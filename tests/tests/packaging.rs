//! The packaging: the systemd units' sandbox and boot ordering, and the packages
//! `cargo xtask package` builds — what they hold (inspected with `dpkg-deb` and `rpm`) and
//! that the binary from the .deb, unpacked into a scratch root, runs.
//!
//! It does not install anything on this machine, start any unit (the units are only
//! analysed offline by `systemd-analyze`), or talk to the kernel.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use autoblock_tests::output_text;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn unit_path(name: &str) -> PathBuf {
    workspace().join("packaging").join(name)
}

const UNITS: [&str; 3] = [
    "autoblock.service",
    "autoblock-restore.service",
    "autoblock-chain-restore.service",
];

fn program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is needed and missing: apt-get install {package} (never skipped)")
        })
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", output_text(&out));
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("UTF-8 output")
}

/// The number after "Overall exposure level for UNIT:" in `systemd-analyze security`.
fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let after = line.rsplit_once(':')?.1;
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn exposure_parser_reads_the_summary_line() {
    let report = "✓ UMask=   Files created ...\n\n→ Overall exposure level for autoblock.service: 1.7 OK 🙂\n";
    assert_eq!(exposure(report), Some(1.7));
    assert_eq!(
        exposure("→ Overall exposure level for x.service: 9.6 UNSAFE 😨"),
        Some(9.6)
    );
    assert_eq!(exposure("nothing here"), None);
}

#[test]
fn every_unit_scores_at_most_2_in_the_offline_security_analysis() {
    let analyze = program("systemd-analyze", "systemd");
    for unit in UNITS {
        let report = stdout(
            Command::new(&analyze)
                .args(["security", "--offline=true", "--no-pager"])
                .arg(unit_path(unit)),
        );
        let score = exposure(&report)
            .unwrap_or_else(|| panic!("no overall exposure level for {unit}:\n{report}"));
        assert!(score <= 2.0, "{unit} scores {score} (> 2.0):\n{report}");
    }
}

/// `Key=value` lines of a unit file, in order (comments and sections skipped).
fn directives(unit: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(unit_path(unit)).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn values(d: &[(String, String)], key: &str) -> Vec<String> {
    d.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect()
}

fn words(d: &[(String, String)], key: &str) -> Vec<String> {
    values(d, key)
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

#[test]
fn the_daemon_unit_is_notify_reloads_with_sighup_and_keeps_only_what_it_needs() {
    let d = directives("autoblock.service");
    assert_eq!(values(&d, "Type"), ["notify"]);
    assert_eq!(values(&d, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert!(values(&d, "ExecStart")[0].starts_with("/usr/bin/autoblock run"));
    assert_eq!(
        words(&d, "CapabilityBoundingSet"),
        ["CAP_NET_ADMIN", "CAP_DAC_READ_SEARCH"]
    );
    assert_eq!(
        words(&d, "RestrictAddressFamilies"),
        ["AF_NETLINK", "AF_UNIX"]
    );
    assert_eq!(
        words(&d, "ReadWritePaths"),
        ["/var/lib/autoblock", "/run/autoblock", "/etc/sysconfig"]
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
    ] {
        assert_eq!(values(&d, key), [value], "{key}");
    }
    assert!(!values(&d, "SystemCallFilter").is_empty());
}

#[test]
fn the_boot_units_run_before_the_network_and_the_set_layout_is_saved_at_shutdown() {
    for unit in [
        "autoblock-restore.service",
        "autoblock-chain-restore.service",
    ] {
        let d = directives(unit);
        assert_eq!(values(&d, "Type"), ["oneshot"], "{unit}");
        assert!(
            words(&d, "Before").contains(&"network-pre.target".to_owned()),
            "{unit}"
        );
        assert!(
            words(&d, "Wants").contains(&"network-pre.target".to_owned()),
            "{unit}"
        );
        assert!(
            words(&d, "After").contains(&"local-fs.target".to_owned()),
            "{unit}"
        );
        assert!(
            words(&d, "Before").contains(&"autoblock.service".to_owned()),
            "{unit}"
        );
    }
    let set = directives("autoblock-restore.service");
    let start = values(&set, "ExecStart").join(" ");
    assert!(
        start.contains(
            "/usr/bin/autoblock --layout set restore --file /var/lib/autoblock/bans.save"
        ),
        "{start}"
    );
    assert_eq!(
        values(&set, "ExecStop"),
        ["/usr/bin/autoblock --layout set save --file /var/lib/autoblock/bans.save"]
    );
    let chain = directives("autoblock-chain-restore.service");
    assert_eq!(
        values(&chain, "ExecStart"),
        ["/usr/bin/autoblock --layout chain restore"]
    );
}

/// The packages, built once per test binary by `cargo xtask package` into a scratch
/// directory (cargo releases the build lock while tests run, so this nested build shares
/// the target directory and is incremental after the first run).
struct Packages {
    _dir: tempfile::TempDir,
    deb: PathBuf,
    rpm: PathBuf,
}

fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Packages> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let text = stdout(
            Command::new(cargo)
                .current_dir(workspace())
                .args(["xtask", "package", "--out"])
                .arg(dir.path()),
        );
        let path = |prefix: &str| {
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{text}"));
            let p = PathBuf::from(line.trim());
            assert!(p.is_file(), "{} is not a file", p.display());
            assert!(p.starts_with(dir.path()), "{} outside --out", p.display());
            p
        };
        let deb = path("deb: ");
        let rpm = path("rpm: ");
        Packages {
            _dir: dir,
            deb,
            rpm,
        }
    })
}

/// What every package must hold (paths without the leading `/` or `./`).
const COMMON: [&str; 10] = [
    "usr/bin/autoblock",
    "etc/autoblock/autoblock.toml",
    "usr/lib/tmpfiles.d/autoblock.conf",
    "usr/share/man/man8/autoblock.8.gz",
    "usr/share/man/man8/autoblock-block.8.gz",
    "usr/share/bash-completion/completions/autoblock",
    "usr/share/fish/vendor_completions.d/autoblock.fish",
    "autoblock.service",
    "autoblock-restore.service",
    "autoblock-chain-restore.service",
];

fn assert_lists_all(listing: &str, what: &str) {
    for path in COMMON {
        assert!(
            listing.lines().any(|l| l.trim_end().ends_with(path)),
            "{path} missing from the {what}:\n{listing}"
        );
    }
    assert!(
        listing.contains("LICENSE-MIT") && listing.contains("LICENSE-APACHE"),
        "{listing}"
    );
    assert!(
        listing.contains("_autoblock"),
        "zsh completion missing:\n{listing}"
    );
}

#[test]
fn the_deb_holds_binary_units_config_docs_and_completions_and_its_binary_runs() {
    let p = packages();
    let dpkg_deb = program("dpkg-deb", "dpkg");
    let listing = stdout(Command::new(&dpkg_deb).arg("-c").arg(&p.deb));
    assert_lists_all(&listing, ".deb");
    assert!(
        listing.contains("./lib/systemd/system/autoblock.service"),
        "{listing}"
    );
    let info = stdout(Command::new(&dpkg_deb).arg("-I").arg(&p.deb));
    assert!(info.contains("Package: autoblock"), "{info}");
    let ctrl = tempfile::tempdir().unwrap();
    run(Command::new(&dpkg_deb)
        .arg("-e")
        .arg(&p.deb)
        .arg(ctrl.path()));
    let conf = std::fs::read_to_string(ctrl.path().join("conffiles")).unwrap();
    assert!(
        conf.lines().any(|l| l == "/etc/autoblock/autoblock.toml"),
        "{conf}"
    );
    let postinst = std::fs::read_to_string(ctrl.path().join("postinst")).unwrap();
    assert!(
        postinst.contains("mkdir -p /var/lib/autoblock"),
        "{postinst}"
    );

    let root = tempfile::tempdir().unwrap();
    run(Command::new(&dpkg_deb)
        .arg("-x")
        .arg(&p.deb)
        .arg(root.path()));
    let bin = root.path().join("usr/bin/autoblock");
    let version = stdout(Command::new(&bin).arg("--version"));
    assert!(version.starts_with("autoblock "), "{version}");
    let number = version.trim().trim_start_matches("autoblock ");
    assert!(
        info.contains(&format!("Version: {number}-")),
        "{number}:\n{info}"
    );
    // The packaged default configuration is valid for the packaged binary.
    let config = root.path().join("etc/autoblock/autoblock.toml");
    let checked = stdout(Command::new(&bin).args(["config", "check"]).arg(&config));
    assert!(!checked.contains("error"), "{checked}");
    let shipped = std::fs::read_to_string(workspace().join("packaging/autoblock.toml")).unwrap();
    assert_eq!(std::fs::read_to_string(&config).unwrap(), shipped);
    // The packaged page is the binary's own, for the version it carries.
    let page = root.path().join("usr/share/man/man8/autoblock.8.gz");
    let text = stdout(Command::new("gzip").arg("-dc").arg(&page));
    assert!(text.contains(".TH autoblock 8"), "{text}");
    assert!(text.contains(number), "{text}");
}

#[test]
fn the_rpm_holds_the_same_files_the_config_noreplace_and_makes_the_state_dir() {
    let p = packages();
    let rpm = program("rpm", "rpm");
    let listing = stdout(Command::new(&rpm).arg("-qpl").arg(&p.rpm));
    assert_lists_all(&listing, ".rpm");
    // The state directory comes from the post-install scriptlet and tmpfiles.d.
    let scripts = stdout(Command::new(&rpm).arg("-qp").arg("--scripts").arg(&p.rpm));
    assert!(scripts.contains("mkdir -p /var/lib/autoblock"), "{scripts}");
    assert!(
        scripts.contains("chmod 0700 /var/lib/autoblock"),
        "{scripts}"
    );
    assert!(
        listing.contains("/usr/lib/systemd/system/autoblock.service"),
        "{listing}"
    );
    let config = stdout(Command::new(&rpm).args(["-qpc"]).arg(&p.rpm));
    assert_eq!(config.trim(), "/etc/autoblock/autoblock.toml");
    let flags = stdout(
        Command::new(&rpm)
            .args(["-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\\n]"])
            .arg(&p.rpm),
    );
    let line = flags
        .lines()
        .find(|l| l.starts_with("/etc/autoblock/autoblock.toml "))
        .unwrap_or_else(|| panic!("{flags}"));
    let fflags = line.rsplit(' ').next().unwrap_or_default();
    assert!(
        fflags.contains('c') && fflags.contains('n'),
        "not %config(noreplace): {line}"
    );
    let modes = stdout(
        Command::new(&rpm)
            .args(["-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\\n]"])
            .arg(&p.rpm),
    );
    assert!(
        modes.lines().any(|l| l == "-rwxr-xr-x /usr/bin/autoblock"),
        "{modes}"
    );
    let name = stdout(
        Command::new(&rpm)
            .args(["-qp", "--qf", "%{NAME} %{LICENSE}"])
            .arg(&p.rpm),
    );
    assert_eq!(name, "autoblock MIT OR Apache-2.0");
}
