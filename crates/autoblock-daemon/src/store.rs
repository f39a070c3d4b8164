//! The durable ban store in `state_dir`: active bans (with expiry, jail and reason) and each
//! jail's offence history for escalation.
//!
//! Why redb: it is a well-kept embedded store written in pure Rust (no C library to build or
//! link, unlike SQLite), with ACID write transactions that are fsynced on commit
//! (copy-on-write B-trees, so a crash — kill -9, power loss — leaves either the old or the new
//! state, never a torn one). The daemon's data is a few small key/value tables, which is
//! exactly its model; SQL would buy nothing here.
//!
//! Write-ahead rule: the daemon records a ban here (commit returned) BEFORE it asks the kernel
//! for it, so every ban it ever reported as applied survives a crash. This module knows nothing
//! of the kernel, of jails' counting, or of time sources: callers pass `now`.

// redb's own error type is large; the closures below return it only to `write`, which boxes
// it into `StoreError` at once.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Active bans: key = network text (`203.0.113.9/32`), value = JSON of [`BanRecord`].
const BANS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("bans");
/// Offence history: key = `jail` NUL `network`, value = JSON of [`Offence`].
const OFFENCES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("offences");

/// The store's file name inside `state_dir`.
pub const FILE_NAME: &str = "bans.redb";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The state directory could not be created.
    #[error("{path}: cannot create the state directory: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// redb reported an error.
    #[error("{path}: {source}")]
    Db {
        /// The store file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// A record does not decode.
    #[error("{path}: record `{key}` does not decode: {reason}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// The record's key.
        key: String,
        /// The decoder's reason.
        reason: String,
    },
}

/// One active ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanRecord {
    /// The banned network (`ADDR/LEN`).
    pub net: String,
    /// The jail that banned it (`manual` for the control socket).
    pub jail: String,
    /// Why (filter name, failure count, or the operator's comment).
    pub reason: String,
    /// When the ban started (Unix seconds).
    pub since: i64,
    /// When it ends (Unix seconds); `None` = permanent.
    pub until: Option<i64>,
}

impl BanRecord {
    /// Whether the ban has ended at `now` (Unix seconds).
    pub fn expired(&self, now: i64) -> bool {
        self.until.is_some_and(|u| u <= now)
    }
}

/// One entry of a jail's offence history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offence {
    /// The network.
    pub net: String,
    /// Number of bans so far.
    pub count: u32,
    /// Start of the last ban (Unix seconds).
    pub last_ban: i64,
    /// End of the last ban (Unix seconds), `None` = permanent.
    pub until: Option<i64>,
}

/// Inserts (or replaces) a jail's offence entries inside a write transaction.
fn insert_offences(
    tx: &redb::WriteTransaction,
    jail: &str,
    list: &[Offence],
) -> Result<(), redb::Error> {
    let mut t = tx.open_table(OFFENCES)?;
    for o in list {
        let key = format!("{jail}\0{}", o.net);
        let v = serde_json::to_vec(o).unwrap_or_default();
        t.insert(key.as_str(), v.as_slice())?;
    }
    Ok(())
}

/// The open store.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Dir {
            path: state_dir.to_owned(),
            source,
        })?;
        let path = state_dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| db_err(&path, e))?;
        let s = Store { db, path };
        // Create both tables so that readers never meet a missing table.
        s.write(|tx| {
            tx.open_table(BANS)?;
            tx.open_table(OFFENCES)?;
            Ok(())
        })?;
        Ok(s)
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| db_err(&self.path, e))?;
        f(&tx).map_err(|e| db_err(&self.path, e))?;
        tx.commit().map_err(|e| db_err(&self.path, e))
    }

    /// Records bans (inserting or replacing by network) in one durable transaction.
    pub fn put_bans(&self, bans: &[BanRecord]) -> Result<(), StoreError> {
        self.put_bans_and_offences(bans, &[])
    }

    /// Records bans and the jails' offence entries that led to them in ONE durable
    /// transaction: one commit (one round of fsyncs) instead of one per table and jail, and
    /// a crash can never keep a ban without its offence count or the other way round.
    pub fn put_bans_and_offences(
        &self,
        bans: &[BanRecord],
        offences: &[(&str, &[Offence])],
    ) -> Result<(), StoreError> {
        if bans.is_empty() && offences.iter().all(|(_, l)| l.is_empty()) {
            return Ok(());
        }
        self.write(|tx| {
            if !bans.is_empty() {
                let mut t = tx.open_table(BANS)?;
                for b in bans {
                    let v = serde_json::to_vec(b).unwrap_or_default();
                    t.insert(b.net.as_str(), v.as_slice())?;
                }
            }
            for (jail, list) in offences {
                insert_offences(tx, jail, list)?;
            }
            Ok(())
        })
    }

    /// Removes bans by network in one durable transaction; returns how many existed.
    pub fn remove_bans<S: AsRef<str>>(&self, nets: &[S]) -> Result<usize, StoreError> {
        let mut n = 0;
        self.write(|tx| {
            let mut t = tx.open_table(BANS)?;
            for net in nets {
                if t.remove(net.as_ref())?.is_some() {
                    n += 1;
                }
            }
            Ok(())
        })?;
        Ok(n)
    }

    /// Every recorded ban, ordered by network text.
    pub fn bans(&self) -> Result<Vec<BanRecord>, StoreError> {
        self.read_all(BANS, |_, v| serde_json::from_slice::<BanRecord>(v))
    }

    /// Records a jail's offence history entries (inserting or replacing).
    pub fn put_offences(&self, jail: &str, list: &[Offence]) -> Result<(), StoreError> {
        if list.is_empty() {
            return Ok(());
        }
        self.write(|tx| insert_offences(tx, jail, list))
    }

    /// A jail's offence history.
    pub fn offences(&self, jail: &str) -> Result<Vec<Offence>, StoreError> {
        let prefix = format!("{jail}\0");
        let all = self.read_all(OFFENCES, |k, v| {
            if k.starts_with(&prefix) {
                serde_json::from_slice::<Offence>(v).map(Some)
            } else {
                Ok(None)
            }
        })?;
        Ok(all.into_iter().flatten().collect())
    }

    /// Drops offence history entries whose last ban ended before `cutoff` (Unix seconds).
    pub fn forget_offences_before(&self, cutoff: i64) -> Result<usize, StoreError> {
        let old = self.read_all(OFFENCES, |k, v| {
            serde_json::from_slice::<Offence>(v).map(|o| {
                let end = o.until.unwrap_or(i64::MAX);
                (end < cutoff).then(|| k.to_owned())
            })
        })?;
        let keys: Vec<String> = old.into_iter().flatten().collect();
        self.write(|tx| {
            let mut t = tx.open_table(OFFENCES)?;
            for k in &keys {
                t.remove(k.as_str())?;
            }
            Ok(())
        })?;
        Ok(keys.len())
    }

    fn read_all<T>(
        &self,
        table: TableDefinition<'_, &str, &[u8]>,
        decode: impl Fn(&str, &[u8]) -> Result<T, serde_json::Error>,
    ) -> Result<Vec<T>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| db_err(&self.path, e))?;
        let t = tx.open_table(table).map_err(|e| db_err(&self.path, e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| db_err(&self.path, e))? {
            let (k, v) = row.map_err(|e| db_err(&self.path, e))?;
            let key = k.value();
            let item = decode(key, v.value()).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                key: key.replace('\0', "/"),
                reason: e.to_string(),
            })?;
            out.push(item);
        }
        Ok(out)
    }
}

fn db_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db {
        path: path.to_owned(),
        source: Box::new(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(net: &str, until: Option<i64>) -> BanRecord {
        BanRecord {
            net: net.to_owned(),
            jail: "sshd".to_owned(),
            reason: "5 failures".to_owned(),
            since: 100,
            until,
        }
    }

    #[test]
    fn bans_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.put_bans(&[ban("192.0.2.1/32", Some(200)), ban("2001:db8::/64", None)])
                .unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let b = s.bans().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0], ban("192.0.2.1/32", Some(200)));
        assert!(b[0].expired(200));
        assert!(!b[0].expired(199));
        assert!(!b[1].expired(i64::MAX));
        assert_eq!(
            s.remove_bans(&["192.0.2.1/32", "198.51.100.1/32"]).unwrap(),
            1
        );
        assert_eq!(s.bans().unwrap().len(), 1);
    }

    #[test]
    fn replacing_a_ban_keeps_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put_bans(&[ban("192.0.2.1/32", Some(200))]).unwrap();
        s.put_bans(&[ban("192.0.2.1/32", Some(900))]).unwrap();
        let b = s.bans().unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].until, Some(900));
    }

    #[test]
    fn offences_are_per_jail_and_age_out() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let o = |net: &str, until| Offence {
            net: net.to_owned(),
            count: 2,
            last_ban: 10,
            until,
        };
        s.put_offences(
            "sshd",
            &[o("192.0.2.1/32", Some(50)), o("192.0.2.2/32", None)],
        )
        .unwrap();
        s.put_offences("mysql", &[o("192.0.2.3/32", Some(500))])
            .unwrap();
        assert_eq!(s.offences("sshd").unwrap().len(), 2);
        assert_eq!(s.offences("mysql").unwrap().len(), 1);
        assert_eq!(s.offences("ssh").unwrap().len(), 0);
        assert_eq!(s.forget_offences_before(100).unwrap(), 1);
        let left = s.offences("sshd").unwrap();
        assert_eq!(left, vec![o("192.0.2.2/32", None)]);
    }

    #[test]
    fn bans_and_their_offences_are_recorded_together() {
        let dir = tempfile::tempdir().unwrap();
        let o = |net: &str| Offence {
            net: net.to_owned(),
            count: 1,
            last_ban: 100,
            until: Some(200),
        };
        {
            let s = Store::open(dir.path()).unwrap();
            let sshd = [o("192.0.2.1/32")];
            let mysql = [o("192.0.2.2/32")];
            s.put_bans_and_offences(
                &[
                    ban("192.0.2.1/32", Some(200)),
                    ban("192.0.2.2/32", Some(200)),
                ],
                &[("sshd", &sshd), ("mysqld", &mysql)],
            )
            .unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.bans().unwrap().len(), 2);
        assert_eq!(s.offences("sshd").unwrap(), vec![o("192.0.2.1/32")]);
        assert_eq!(s.offences("mysqld").unwrap(), vec![o("192.0.2.2/32")]);
    }

    #[test]
    fn a_corrupt_record_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.write(|tx| {
            let mut t = tx.open_table(BANS)?;
            t.insert("192.0.2.9/32", b"not json".as_slice())?;
            Ok(())
        })
        .unwrap();
        let e = s.bans().unwrap_err();
        assert!(e.to_string().contains("192.0.2.9/32"), "{e}");
    }
}
