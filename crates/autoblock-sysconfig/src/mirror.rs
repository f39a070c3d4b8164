//! The mirror: keeps autoblock's chain in `/etc/sysconfig/iptables` and
//! `/etc/sysconfig/ip6tables` (or any other directory) in step with the
//! kernel, so that the `iptables` service restores it at boot.
//!
//! Protocol: [`Mirror::prepare`] takes an advisory lock, reads and parses the
//! file BEFORE the caller changes the kernel (a malformed file stops
//! everything); [`Prepared::commit`] writes the new version atomically
//! (temp file in the same directory, write, fsync, owner / mode 0600 /
//! SELinux label, rename, fsync of the directory) and releases the lock.
//! It never talks to the kernel and never runs `iptables-restore`.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use xattr::FileExt;

use crate::auto::check_auto_chain;
use crate::error::{ModelError, ParseError};
use crate::{AutoRule, Family, RulesetFile};

/// Name of the lock file in the mirrored directory.
pub const LOCK_FILE: &str = ".autoblock.lock";

/// Extended attribute holding the SELinux label.
const SELINUX_XATTR: &str = "security.selinux";

/// Linux `EOPNOTSUPP`: the file system does not support extended attributes.
const EOPNOTSUPP: i32 = 95;

/// Mode of the written files (what the `iptables-services` package ships).
const MODE: u32 = 0o600;

/// An error of the mirror. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// An I/O operation failed.
    #[error("{path}: {action}: {source}", path = .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done, e.g. "reading".
        action: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid restore file; it is left alone.
    #[error("{path}:{line}: {kind}", path = .path.display(), line = .source.line, kind = .source.kind)]
    Parse {
        /// The file.
        path: PathBuf,
        /// Line number, reason and text.
        #[source]
        source: Box<ParseError>,
    },
    /// The file uses CR LF line endings, which `iptables-restore` rejects.
    #[error("{path}:{line}: line ends in CR LF; iptables-restore rejects carriage returns, so this file cannot be restored at boot (convert it to LF line endings)", path = .path.display())]
    CrLf {
        /// The file.
        path: PathBuf,
        /// First such line.
        line: usize,
    },
    /// A rule cannot be written, or autoblock's chain holds a line autoblock
    /// did not write.
    #[error("{path}: {source}", path = .path.display())]
    Model {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: Box<ModelError>,
    },
    /// The chain name given to [`Mirror::new`] is unusable.
    #[error("{0}")]
    Chain(#[source] Box<ModelError>),
    /// The file changed between [`Mirror::prepare`] and the commit (someone
    /// wrote it without taking the lock); it is not overwritten.
    #[error("{path}: changed since it was read (written by another program?); not overwritten", path = .path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> MirrorError + 'a {
    move |source| MirrorError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

/// Keeps autoblock's chain in the `iptables` / `ip6tables` files of one
/// directory.
///
/// ```
/// use autoblock_sysconfig::{AutoRule, AutoTarget, Family, Mirror};
///
/// let dir = tempfile::tempdir()?;
/// let mirror = Mirror::new(dir.path(), "INPUT-AUTO")?;
///
/// // 1. Lock, read and parse the file before touching the kernel.
/// let prepared = mirror.prepare(Family::V4)?;
/// assert!(prepared.rules()?.is_empty());
/// // 2. ... change the kernel; on failure just drop `prepared` ...
/// // 3. Write the new state of the chain.
/// let rule = AutoRule {
///     source: "192.0.2.9/32".into(),
///     comment: Some("expires 2030-01-01T00:00:00Z".into()),
///     target: AutoTarget::Drop,
/// };
/// prepared.commit(&[rule])?;
///
/// let text = std::fs::read_to_string(mirror.path(Family::V4))?;
/// assert!(text.contains("-A INPUT -j INPUT-AUTO\n"));
/// assert!(text.contains(
///     "-A INPUT-AUTO -s 192.0.2.9/32 -m comment --comment \"expires 2030-01-01T00:00:00Z\" -j DROP\n"
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Mirror {
    dir: PathBuf,
    chain: String,
}

impl Mirror {
    /// A mirror of `chain` into the files in `dir` (normally
    /// `/etc/sysconfig`). Fails if the chain name is unusable.
    pub fn new(dir: impl Into<PathBuf>, chain: impl Into<String>) -> Result<Self, MirrorError> {
        let chain = chain.into();
        check_auto_chain(&chain).map_err(|e| MirrorError::Chain(Box::new(e)))?;
        Ok(Mirror {
            dir: dir.into(),
            chain,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The chain.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// `dir/iptables` or `dir/ip6tables`.
    pub fn path(&self, family: Family) -> PathBuf {
        self.dir.join(family.file_name())
    }

    /// The lock file, `dir/.autoblock.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }

    /// Takes the lock (waiting for another autoblock process to finish),
    /// reads and parses the file, and checks that autoblock's chain holds
    /// only rules autoblock writes. A missing file counts as empty: the
    /// commit creates it with a minimal `*filter` section.
    ///
    /// Nothing is written here. On error the caller must not change the
    /// kernel either.
    pub fn prepare(&self, family: Family) -> Result<Prepared, MirrorError> {
        let lock = self.lock()?;
        self.prepare_locked(family, lock)
    }

    /// Like [`Mirror::prepare`] for several families under one lock (the lock is a
    /// `flock` on one file: taking it twice from one process would wait forever).
    pub fn prepare_all(&self, families: &[Family]) -> Result<Vec<Prepared>, MirrorError> {
        let lock = self.lock()?;
        families
            .iter()
            .map(|f| self.prepare_locked(*f, Arc::clone(&lock)))
            .collect()
    }

    fn lock(&self) -> Result<Arc<File>, MirrorError> {
        let lock_path = self.lock_path();
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(MODE)
            .open(&lock_path)
            .map_err(io_err(&lock_path, "opening the lock file"))?;
        lock.lock()
            .map_err(io_err(&lock_path, "locking the lock file"))?;
        Ok(Arc::new(lock))
    }

    fn prepare_locked(&self, family: Family, lock: Arc<File>) -> Result<Prepared, MirrorError> {
        remove_stale_temp_files(&self.dir);

        // An admin's symlink stays a symlink: the file it points to is
        // what gets replaced (temp file next to it, rename over it).
        let path = resolve_symlink(self.path(family))?;
        let dir = match path.parent() {
            Some(parent) if parent != self.dir => {
                remove_stale_temp_files(parent);
                parent.to_owned()
            }
            _ => self.dir.clone(),
        };
        let original = match fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&path, "reading")(e)),
        };
        let file = match &original {
            Some(bytes) => RulesetFile::parse(bytes).map_err(|source| MirrorError::Parse {
                path: path.clone(),
                source: Box::new(source),
            })?,
            None => RulesetFile::empty(),
        };
        if let Some(line) = file.crlf_line() {
            return Err(MirrorError::CrLf { path, line });
        }
        file.auto_rules(&self.chain, family)
            .map_err(|source| MirrorError::Model {
                path: path.clone(),
                source: Box::new(source),
            })?;
        Ok(Prepared {
            _lock: lock,
            dir,
            path,
            chain: self.chain.clone(),
            family,
            original,
            file,
        })
    }
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new version of the file was written.
    Written,
    /// The file already had exactly these bytes; nothing was written.
    Unchanged,
}

/// A parsed file with the mirror's lock held (released on drop).
#[derive(Debug)]
pub struct Prepared {
    /// Held only for its lock; closing the last reference releases the lock.
    _lock: Arc<File>,
    dir: PathBuf,
    path: PathBuf,
    chain: String,
    family: Family,
    /// The bytes read, `None` if the file did not exist.
    original: Option<Vec<u8>>,
    file: RulesetFile,
}

impl Prepared {
    /// The file being mirrored.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which file of the pair this is.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The parsed file as read.
    pub fn file(&self) -> &RulesetFile {
        &self.file
    }

    /// Whether the file existed.
    pub fn existed(&self) -> bool {
        self.original.is_some()
    }

    /// autoblock's rules as the file has them now.
    pub fn rules(&self) -> Result<Vec<AutoRule>, MirrorError> {
        self.file
            .auto_rules(&self.chain, self.family)
            .map_err(|source| MirrorError::Model {
                path: self.path.clone(),
                source: Box::new(source),
            })
    }

    /// Writes the file with autoblock's chain holding exactly `rules`
    /// (see [`RulesetFile::set_auto_chain`]), then releases the lock.
    pub fn commit(self, rules: &[AutoRule]) -> Result<Outcome, MirrorError> {
        let mut file = self.file.clone();
        file.set_auto_chain(&self.chain, self.family, rules)
            .map_err(|source| MirrorError::Model {
                path: self.path.clone(),
                source: Box::new(source),
            })?;
        self.write(file)
    }

    /// Writes the file without autoblock's chain (see
    /// [`RulesetFile::remove_auto_chain`]), then releases the lock. A
    /// missing file stays missing.
    pub fn commit_removal(self) -> Result<Outcome, MirrorError> {
        if self.original.is_none() {
            return Ok(Outcome::Unchanged);
        }
        let mut file = self.file.clone();
        file.remove_auto_chain(&self.chain);
        self.write(file)
    }

    fn write(self, file: RulesetFile) -> Result<Outcome, MirrorError> {
        let bytes = file.to_bytes();
        // The file may have been replaced by a program that does not take
        // our lock (an admin's editor, `service iptables save`).
        let now = match fs::read(&self.path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&self.path, "re-reading")(e)),
        };
        if now != self.original {
            return Err(MirrorError::Changed { path: self.path });
        }
        if self.original.as_deref() == Some(bytes.as_slice()) {
            return Ok(Outcome::Unchanged);
        }
        atomic_write(&self.dir, &self.path, &bytes, self.family)?;
        Ok(Outcome::Written)
    }
}

/// Follows `path` if it is a symbolic link (to any depth); a dangling link
/// resolves to its target path, so the file is created there.
fn resolve_symlink(path: PathBuf) -> Result<PathBuf, MirrorError> {
    let mut path = path;
    for _ in 0..40 {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&path).map_err(io_err(&path, "reading the symlink"))?;
                path = match path.parent() {
                    Some(parent) => parent.join(target),
                    None => target,
                };
            }
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(path),
            Err(e) => return Err(io_err(&path, "reading metadata")(e)),
        }
    }
    Err(MirrorError::Io {
        source: io::Error::other("too many levels of symbolic links"),
        action: "following symlinks",
        path,
    })
}

/// Prefix of the temporary files, e.g. `.iptables.autoblock-XXXXXX`.
fn temp_prefix(family: Family) -> String {
    format!(".{}.autoblock-", family.file_name())
}

/// Removes temp files a killed autoblock left behind. Runs under the lock,
/// so no live writer owns them. Failures are ignored: a leftover temp file
/// is harmless.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefixes = [temp_prefix(Family::V4), temp_prefix(Family::V6)];
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Temp file in `dir`, write, mode 0600, owner and SELinux label of the
/// file being replaced, fsync, rename over `path`, fsync `dir`.
fn atomic_write(dir: &Path, path: &Path, bytes: &[u8], family: Family) -> Result<(), MirrorError> {
    write_atomically(dir, path, &temp_prefix(family), |w| w.write_all(bytes))
}

/// SELinux label given to a *new* rules file when SELinux is active: what
/// the policy assigns to `/etc/sysconfig/ip6?tables.*` (`files.fc`). A file
/// created by a process outside the `iptables_t` domain under a temporary
/// name would otherwise get the directory's `etc_t`, and `rename` keeps it.
pub const NEW_FILE_LABEL: &[u8] = b"system_u:object_r:system_conf_t:s0";

/// Files next to a new rules file whose label is copied when the rules file
/// itself does not exist yet (the packaged files carry `system_conf_t`).
const LABEL_DONORS: [&str; 4] = [
    "iptables",
    "ip6tables",
    "iptables-config",
    "ip6tables-config",
];

/// Reads a file's SELinux label; `None` when it has none or the file system
/// has no extended attributes.
fn read_label(path: &Path) -> Result<Option<Vec<u8>>, io::Error> {
    match xattr::get(path, SELINUX_XATTR) {
        Ok(label) => Ok(label),
        Err(e) if e.raw_os_error() == Some(EOPNOTSUPP) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The label a new file in `dir` should get, following the RHEL policy: the
/// label of a packaged sibling (`iptables`, `ip6tables`, `iptables-config`,
/// `ip6tables-config`) if one carries a label, else [`NEW_FILE_LABEL`] when
/// the directory itself is labelled (SELinux is active), else none.
pub fn new_file_label(dir: &Path) -> Option<Vec<u8>> {
    for name in LABEL_DONORS {
        if let Ok(Some(label)) = read_label(&dir.join(name)) {
            return Some(label);
        }
    }
    match read_label(dir) {
        Ok(Some(_)) => Some(NEW_FILE_LABEL.to_vec()),
        _ => None,
    }
}

/// Replaces `path` atomically with what `write` produces: a temporary file
/// in the same directory (name `.NAME.autoblock-XXXXXX`), mode 0600, the
/// owner and SELinux label of the file being replaced (a new file gets the
/// label [`new_file_label`] finds for its directory), fsync, rename over
/// `path`, fsync of the directory. Readers see the old or the new file,
/// never a partial one; on error the old file is untouched and the
/// temporary file is removed.
///
/// Used by the mirror, and by callers that keep other state files (such as
/// a saved list of bans) with the same guarantees. It takes no lock.
pub fn replace_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), MirrorError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    write_atomically(&dir, path, &format!(".{name}.autoblock-"), write)
}

fn write_atomically(
    dir: &Path,
    path: &Path,
    prefix: &str,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), MirrorError> {
    let old_meta = match fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(path, "reading metadata")(e)),
    };
    let label = if old_meta.is_some() {
        read_label(path).map_err(io_err(path, "reading the SELinux label"))?
    } else {
        None
    };

    let mut tmp = tempfile::Builder::new()
        .prefix(prefix)
        .permissions(Permissions::from_mode(MODE))
        .tempfile_in(dir)
        .map_err(io_err(dir, "creating a temporary file"))?;
    let tmp_path = tmp.path().to_owned();
    {
        let mut w = io::BufWriter::with_capacity(1 << 16, tmp.as_file_mut());
        write(&mut w).map_err(io_err(&tmp_path, "writing"))?;
        w.flush().map_err(io_err(&tmp_path, "writing"))?;
    }
    let f = tmp.as_file_mut();
    // Explicitly, in case a umask or default ACL interfered.
    f.set_permissions(Permissions::from_mode(MODE))
        .map_err(io_err(&tmp_path, "setting mode 0600"))?;
    if let Some(meta) = &old_meta {
        let mine = f
            .metadata()
            .map_err(io_err(&tmp_path, "reading metadata"))?;
        if (mine.uid(), mine.gid()) != (meta.uid(), meta.gid()) {
            std::os::unix::fs::fchown(&*f, Some(meta.uid()), Some(meta.gid()))
                .map_err(io_err(&tmp_path, "copying the owner"))?;
        }
    }
    match &label {
        Some(label) => {
            let current = f.get_xattr(SELINUX_XATTR).ok().flatten();
            if current.as_deref() != Some(label.as_slice()) {
                f.set_xattr(SELINUX_XATTR, label)
                    .map_err(io_err(&tmp_path, "copying the SELinux label"))?;
            }
        }
        None if old_meta.is_none() => {
            // A new file: give it the policy's label for rules files rather
            // than the directory's. Best effort: if the label cannot be set
            // the file keeps the directory's default, which `restorecon`
            // corrects; the write itself must not fail over it.
            if let Some(want) = new_file_label(dir) {
                let current = f.get_xattr(SELINUX_XATTR).ok().flatten();
                if current.as_deref() != Some(want.as_slice()) {
                    let _ = f.set_xattr(SELINUX_XATTR, &want);
                }
            }
        }
        None => {}
    }
    f.sync_all().map_err(io_err(&tmp_path, "fsync"))?;
    tmp.persist(path)
        .map_err(|e| io_err(path, "renaming the temporary file")(e.error))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync of the directory"))?;
    Ok(())
}
