//! The mirror on real files in temporary directories: creation of a
//! missing file, refusal of malformed files, atomic replacement with
//! mode/owner/SELinux label, the lock, detection of concurrent writers, and
//! 1,000 block/unblock cycles that must leave unrelated rules alone.
//! Crash safety (SIGKILL while mirroring) is in `crash.rs`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use autoblock_sysconfig::{
    AutoRule, AutoTarget, Family, Mirror, MirrorError, Outcome, RulesetFile,
};

const CHAIN: &str = "INPUT-AUTO";

fn data(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rule(source: &str, comment: &str) -> AutoRule {
    AutoRule {
        source: source.into(),
        comment: Some(comment.into()),
        target: AutoTarget::Drop,
    }
}

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Root is needed to chown and to set `security.*` attributes. Without it
/// the test cannot run: loud failure under CI, loud notice otherwise.
fn require_root(what: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} needs root (CI=true, so this is a failure, not a skip)");
    }
    eprintln!("!!! NOT RUN: {what} needs root; run the tests as root to cover it");
    false
}

fn setup(content: Option<&[u8]>) -> (tempfile::TempDir, Mirror) {
    let dir = tempfile::tempdir().unwrap();
    if let Some(content) = content {
        fs::write(dir.path().join("iptables"), content).unwrap();
    }
    let mirror = Mirror::new(dir.path(), CHAIN).unwrap();
    (dir, mirror)
}

#[test]
fn missing_file_is_created_minimal_with_mode_0600() {
    let (_dir, mirror) = setup(None);
    let prepared = mirror.prepare(Family::V4).unwrap();
    assert!(!prepared.existed());
    assert!(prepared.file().is_empty());
    assert_eq!(
        prepared
            .commit(&[rule("192.0.2.9", "expires 2030-01-01T00:00:00Z")])
            .unwrap(),
        Outcome::Written
    );
    let path = mirror.path(Family::V4);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :INPUT-AUTO - [0:0]\n-A INPUT -j INPUT-AUTO\n\
         -A INPUT-AUTO -s 192.0.2.9/32 -m comment --comment \"expires 2030-01-01T00:00:00Z\" -j DROP\n\
         COMMIT\n"
    );
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    // The IPv6 file is separate and still missing.
    assert!(!mirror.path(Family::V6).exists());
    // Removing from a missing file writes nothing.
    let p6 = mirror.prepare(Family::V6).unwrap();
    assert_eq!(p6.commit_removal().unwrap(), Outcome::Unchanged);
    assert!(!mirror.path(Family::V6).exists());
}

#[test]
fn malformed_file_is_never_overwritten() {
    let text = b"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                 -A INPUT -i lo -j ACCEPT\n-A FOO -j ACCEPT\nCOMMIT\n";
    let (_dir, mirror) = setup(Some(text));
    let path = mirror.path(Family::V4);
    let before = fs::metadata(&path).unwrap();
    let err = mirror.prepare(Family::V4).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:6: rule for chain \"FOO\" which is not declared in table filter",
            path.display()
        )
    );
    match &err {
        MirrorError::Parse { path: p, source } => {
            assert_eq!(p, &path);
            assert_eq!(source.line, 6);
            assert_eq!(source.text, "-A FOO -j ACCEPT");
        }
        other => panic!("{other:?}"),
    }
    let after = fs::metadata(&path).unwrap();
    assert_eq!(fs::read(&path).unwrap(), text);
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );
}

#[test]
fn crlf_file_is_refused_with_the_line() {
    let (_dir, mirror) = setup(Some(&data("crlf.rules")));
    let err = mirror.prepare(Family::V4).unwrap_err();
    assert!(matches!(err, MirrorError::CrLf { line: 1, .. }), "{err}");
    assert!(
        err.to_string().contains("iptables:1: line ends in CR LF"),
        "{err}"
    );
}

#[test]
fn foreign_rule_in_the_chain_is_refused() {
    let text = b"*filter\n:INPUT ACCEPT [0:0]\n:INPUT-AUTO - [0:0]\n-A INPUT -j INPUT-AUTO\n\
                 -A INPUT-AUTO -p tcp -j ACCEPT\nCOMMIT\n";
    let (_dir, mirror) = setup(Some(text));
    let err = mirror.prepare(Family::V4).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("line 5: rule in chain \"INPUT-AUTO\" is not one autoblock writes: -A INPUT-AUTO -p tcp -j ACCEPT"),
        "{err}"
    );
}

#[test]
fn unchanged_content_is_not_rewritten() {
    let (_dir, mirror) = setup(None);
    let rules = [rule("192.0.2.1", "a"), rule("192.0.2.2", "b")];
    mirror.prepare(Family::V4).unwrap().commit(&rules).unwrap();
    let path = mirror.path(Family::V4);
    let ino = fs::metadata(&path).unwrap().ino();
    let prepared = mirror.prepare(Family::V4).unwrap();
    assert_eq!(
        prepared.rules().unwrap(),
        [rule("192.0.2.1/32", "a"), rule("192.0.2.2/32", "b")]
    );
    assert_eq!(prepared.commit(&rules).unwrap(), Outcome::Unchanged);
    assert_eq!(
        fs::metadata(&path).unwrap().ino(),
        ino,
        "no rename happened"
    );
    // A real change renames a new inode into place.
    mirror
        .prepare(Family::V4)
        .unwrap()
        .commit(&rules[..1])
        .unwrap();
    assert_ne!(fs::metadata(&path).unwrap().ino(), ino);
}

#[test]
fn mode_is_forced_to_0600() {
    let (_dir, mirror) = setup(Some(&data("rhel-default-v4.rules")));
    let path = mirror.path(Family::V4);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    mirror
        .prepare(Family::V4)
        .unwrap()
        .commit(&[rule("192.0.2.1", "x")])
        .unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
        0o600
    );
}

#[test]
fn owner_and_selinux_label_are_copied() {
    if !require_root("copying owner and security.selinux") {
        return;
    }
    let (_dir, mirror) = setup(Some(&data("rhel-default-v4.rules")));
    let path = mirror.path(Family::V4);
    std::os::unix::fs::chown(&path, Some(4321), Some(4322)).unwrap();
    let label = b"system_u:object_r:system_conf_t:s0\0";
    xattr::set(&path, "security.selinux", label).unwrap();
    mirror
        .prepare(Family::V4)
        .unwrap()
        .commit(&[rule("192.0.2.1", "x")])
        .unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (4321, 4322));
    assert_eq!(
        xattr::get(&path, "security.selinux").unwrap().as_deref(),
        Some(&label[..])
    );
    assert!(fs::read_to_string(&path)
        .unwrap()
        .contains("-A INPUT-AUTO -s 192.0.2.1/32"));
}

#[test]
fn symlinked_file_is_replaced_behind_the_link() {
    let (dir, mirror) = setup(None);
    let real_dir = dir.path().join("real");
    fs::create_dir(&real_dir).unwrap();
    let real = real_dir.join("iptables.rules");
    fs::write(&real, data("rhel-default-v4.rules")).unwrap();
    std::os::unix::fs::symlink("real/iptables.rules", mirror.path(Family::V4)).unwrap();
    let prepared = mirror.prepare(Family::V4).unwrap();
    assert_eq!(prepared.path(), real);
    prepared.commit(&[rule("192.0.2.1", "x")]).unwrap();
    let link = fs::symlink_metadata(mirror.path(Family::V4)).unwrap();
    assert!(link.file_type().is_symlink(), "the link is still a link");
    assert!(fs::read_to_string(&real)
        .unwrap()
        .contains("-A INPUT-AUTO -s 192.0.2.1/32"));
    let leftovers = fs::read_dir(&real_dir).unwrap().count();
    assert_eq!(leftovers, 1, "no temp file left next to the target");
}

#[test]
fn concurrent_writer_is_detected() {
    let (_dir, mirror) = setup(Some(&data("rhel-default-v4.rules")));
    let path = mirror.path(Family::V4);
    let prepared = mirror.prepare(Family::V4).unwrap();
    // Someone saves the firewall without our lock in between.
    let theirs = b"*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n";
    fs::write(&path, theirs).unwrap();
    let err = prepared.commit(&[rule("192.0.2.1", "x")]).unwrap_err();
    assert!(matches!(err, MirrorError::Changed { .. }), "{err}");
    assert_eq!(fs::read(&path).unwrap(), theirs);
}

#[test]
fn lock_serialises_two_mirrors() {
    let (_dir, mirror) = setup(None);
    let first = mirror.prepare(Family::V4).unwrap();
    let (tx, rx) = mpsc::channel();
    let other = mirror.clone();
    let waiter = std::thread::spawn(move || {
        // Blocks until `first` is committed.
        let second = other.prepare(Family::V4).unwrap();
        tx.send(Instant::now()).unwrap();
        let rules = second.rules().unwrap();
        second.commit(&[]).unwrap();
        rules
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        rx.try_recv().is_err(),
        "second prepare did not wait for the lock"
    );
    let released = Instant::now();
    first.commit(&[rule("192.0.2.1", "first")]).unwrap();
    let got_lock = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(got_lock >= released);
    // The second one saw the first one's result, not the stale file.
    assert_eq!(waiter.join().unwrap(), [rule("192.0.2.1/32", "first")]);
}

#[test]
fn stale_temp_files_are_removed() {
    let (dir, mirror) = setup(None);
    let stale = dir.path().join(".iptables.autoblock-Ab12Cd");
    let stale6 = dir.path().join(".ip6tables.autoblock-Zz99Yy");
    let foreign = dir.path().join("iptables.save");
    for p in [&stale, &stale6, &foreign] {
        fs::write(p, b"partial").unwrap();
    }
    drop(mirror.prepare(Family::V4).unwrap());
    assert!(!stale.exists() && !stale6.exists());
    assert!(foreign.exists(), "other files are left alone");
}

#[test]
fn bad_chain_name_and_missing_directory() {
    assert!(matches!(
        Mirror::new("/tmp", "INPUT"),
        Err(MirrorError::Chain(_))
    ));
    let mirror = Mirror::new("/nonexistent/autoblock-test-dir", CHAIN).unwrap();
    let err = mirror.prepare(Family::V4).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/autoblock-test-dir/.autoblock.lock: opening the lock file:"),
        "{err}"
    );
}

/// Lines of `text` that are not autoblock's.
fn foreign_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.contains(CHAIN)).collect()
}

#[test]
fn unrelated_rules_survive_1000_block_unblock_cycles() {
    let original = data("custom-chains-db.rules");
    let original_text = String::from_utf8(original.clone()).unwrap();
    assert!(original_text.contains(
        "-A INPUT -m state --state NEW -m tcp -p tcp -s 10.32.1.0/24 --dport 3306 -j ACCEPT\n"
    ));
    let (_dir, mirror) = setup(Some(&original));
    let path = mirror.path(Family::V4);
    let start = Instant::now();
    let mut blocked: Vec<AutoRule> = Vec::new();
    for i in 0..1000u32 {
        // Block one more address, and every third cycle unblock the oldest.
        let [_, _, a, b] = i.to_be_bytes();
        blocked.push(rule(
            &format!("198.51.{a}.{b}"),
            &format!("expires 2030-01-01T00:00:{:02}Z", i % 60),
        ));
        if i % 3 == 2 {
            blocked.remove(0);
        }
        let prepared = mirror.prepare(Family::V4).unwrap();
        assert_eq!(prepared.commit(&blocked).unwrap(), Outcome::Written);

        let now = fs::read_to_string(&path).unwrap();
        assert_eq!(
            foreign_lines(&now),
            foreign_lines(&original_text),
            "cycle {i}"
        );
        if i % 100 == 0 {
            let file: RulesetFile = now.parse().unwrap();
            let canonical: Vec<AutoRule> = blocked
                .iter()
                .map(|r| r.canonical(Family::V4).unwrap())
                .collect();
            assert_eq!(file.auto_rules(CHAIN, Family::V4).unwrap(), canonical);
        }
    }
    // Unblock everything, then take the chain out: the original is back.
    mirror.prepare(Family::V4).unwrap().commit(&[]).unwrap();
    mirror
        .prepare(Family::V4)
        .unwrap()
        .commit_removal()
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), original);
    eprintln!("1,000 mirrored cycles took {:?}", start.elapsed());
}

#[test]
fn large_chain_commit_time() {
    // 10,000 blocked addresses next to the RHEL default rules; then one
    // more ban and one unban, as the controller would do.
    let (_dir, mirror) = setup(Some(&data("rhel-default-v4.rules")));
    let mut rules: Vec<AutoRule> = (0..10_000u32)
        .map(|i| {
            let [_, _, a, b] = i.to_be_bytes();
            rule(&format!("203.0.{a}.{b}"), "expires 2030-01-01T00:00:00Z")
        })
        .collect();
    let start = Instant::now();
    mirror.prepare(Family::V4).unwrap().commit(&rules).unwrap();
    let first = start.elapsed();
    rules.push(rule("198.51.100.1", "one more"));
    let start = Instant::now();
    mirror.prepare(Family::V4).unwrap().commit(&rules).unwrap();
    let add = start.elapsed();
    rules.remove(5_000);
    let start = Instant::now();
    let prepared = mirror.prepare(Family::V4).unwrap();
    assert_eq!(prepared.rules().unwrap().len(), 10_001);
    prepared.commit(&rules).unwrap();
    let remove = start.elapsed();
    let text = fs::read_to_string(mirror.path(Family::V4)).unwrap();
    assert_eq!(text.matches("-A INPUT-AUTO ").count(), 10_000);
    eprintln!("10,000-rule chain: first write {first:?}, +1 rule {add:?}, -1 rule {remove:?}");
    // Generous bound for a debug build on a loaded 2-core machine.
    assert!(add.as_secs() < 10 && remove.as_secs() < 10);
}

#[test]
fn a_new_file_gets_the_label_of_rules_files_not_the_directorys() {
    if !require_root("setting security.selinux") {
        return;
    }
    // A labelled sibling (the packaged iptables-config) lends its label.
    let (dir, mirror) = setup(None);
    let sibling = b"system_u:object_r:system_conf_t:s0:c1\0";
    fs::write(dir.path().join("iptables-config"), "").unwrap();
    xattr::set(
        dir.path().join("iptables-config"),
        "security.selinux",
        sibling,
    )
    .unwrap();
    mirror
        .prepare(Family::V6)
        .unwrap()
        .commit(&[rule("2001:db8::1", "x")])
        .unwrap();
    assert_eq!(
        xattr::get(mirror.path(Family::V6), "security.selinux")
            .unwrap()
            .as_deref(),
        Some(&sibling[..])
    );

    // No labelled sibling, but a labelled directory: SELinux is on, so the
    // policy's label for /etc/sysconfig/ip6?tables.* is set.
    let (dir, mirror) = setup(None);
    xattr::set(
        dir.path(),
        "security.selinux",
        b"system_u:object_r:etc_t:s0\0",
    )
    .unwrap();
    assert_eq!(
        autoblock_sysconfig::new_file_label(dir.path()).as_deref(),
        Some(autoblock_sysconfig::NEW_FILE_LABEL)
    );
    mirror
        .prepare(Family::V4)
        .unwrap()
        .commit(&[rule("192.0.2.1", "x")])
        .unwrap();
    assert_eq!(
        xattr::get(mirror.path(Family::V4), "security.selinux")
            .unwrap()
            .as_deref(),
        Some(autoblock_sysconfig::NEW_FILE_LABEL)
    );
}

#[test]
fn without_labels_a_new_file_gets_none() {
    let dir = tempfile::tempdir().unwrap();
    if xattr::get(dir.path(), "security.selinux")
        .ok()
        .flatten()
        .is_some()
    {
        eprintln!("!!! NOT RUN: this machine labels files (SELinux is on)");
        return;
    }
    assert_eq!(autoblock_sysconfig::new_file_label(dir.path()), None);
}

#[test]
fn replace_file_is_atomic_and_keeps_the_old_file_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bans.save");
    autoblock_sysconfig::replace_file(&path, |w| w.write_all(b"one\n")).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"one\n");
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    let err = autoblock_sysconfig::replace_file(&path, |w| {
        w.write_all(b"half")?;
        Err(std::io::Error::other("the source failed"))
    })
    .unwrap_err();
    assert!(err.to_string().contains("bans.save"), "{err}");
    assert!(err.to_string().contains("the source failed"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"one\n", "old file kept");
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        [std::ffi::OsString::from("bans.save")],
        "no temp file left"
    );
    // A missing directory is an error naming it, not a panic.
    assert!(autoblock_sysconfig::replace_file(&dir.path().join("no/such"), |_| Ok(())).is_err());
}
