//! The outbox: events waiting for the broker's acknowledgement, in an SQLite file of their own.
//!
//! Rows are only ever added (by `publish_event`) and deleted (when their PUBACK arrives);
//! `seq` is AUTOINCREMENT so it grows for the life of the file and gives the sending order,
//! also across restarts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};

use crate::error::Error;

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub seq: i64,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// How much an insert must survive before it counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Synced to disk (`synchronous = FULL`): survives power loss. For inserts.
    Full,
    /// Survives a crash of the process, maybe not of the machine. Enough for deletions,
    /// since a deletion that is lost only causes a duplicate.
    Normal,
}

pub(crate) struct Outbox {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA_VERSION: i64 = 1;

impl Outbox {
    /// Opens (creating the file and its folder when missing) the outbox at `path`.
    pub fn open(path: &Path, durability: Durability) -> Result<Outbox, Error> {
        let fail = |reason: String| Error::Input {
            path: path.to_path_buf(),
            reason: format!("outbox: {reason}"),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| fail(e.to_string()))?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        let setup = || -> rusqlite::Result<i64> {
            // The inserting and the sending connection use the file at the same time.
            conn.busy_timeout(Duration::from_secs(5))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", sync)?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS outbox (
                     seq        INTEGER PRIMARY KEY AUTOINCREMENT,
                     topic      TEXT    NOT NULL,
                     payload    BLOB    NOT NULL,
                     created_ms INTEGER NOT NULL
                 );",
            )?;
            let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if version == 0 {
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
                return Ok(SCHEMA_VERSION);
            }
            Ok(version)
        };
        let version = setup().map_err(|e| fail(e.to_string()))?;
        if version != SCHEMA_VERSION {
            return Err(fail(format!(
                "schema version {version} is not {SCHEMA_VERSION} (written by another facegate version)"
            )));
        }
        Ok(Outbox {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Stores a message; returns its sequence number once the row is committed.
    pub fn push(&self, topic: &str, payload: &[u8]) -> Result<i64, Error> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.conn
            .execute(
                "INSERT INTO outbox (topic, payload, created_ms) VALUES (?1, ?2, ?3)",
                params![topic, payload, now_ms],
            )
            .map_err(|e| self.fail(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Up to `limit` rows after `seq`, oldest first.
    pub fn after(&self, seq: i64, limit: usize) -> Result<Vec<Row>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, topic, payload FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map(params![seq, limit as i64], |r| {
                Ok(Row {
                    seq: r.get(0)?,
                    topic: r.get(1)?,
                    payload: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.fail(e))?;
        Ok(rows)
    }

    /// Deletes a row; false when it was not there (already deleted).
    pub fn remove(&self, seq: i64) -> Result<bool, Error> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM outbox WHERE seq = ?1")
            .and_then(|mut s| s.execute([seq]))
            .map_err(|e| self.fail(e))?;
        Ok(n > 0)
    }

    /// Rows waiting.
    pub fn depth(&self) -> Result<u64, Error> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
            .map_err(|e| self.fail(e))?;
        Ok(n as u64)
    }

    fn fail(&self, e: rusqlite::Error) -> Error {
        Error::Input {
            path: self.path.clone(),
            reason: format!("outbox: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("facegate-outbox-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("sub").join("outbox.db")
    }

    #[test]
    fn rows_come_back_in_order_and_leave_when_removed() {
        let path = temp_path("order");
        let writer = Outbox::open(&path, Durability::Full).unwrap();
        let reader = Outbox::open(&path, Durability::Normal).unwrap();
        let seqs: Vec<i64> = (0..5)
            .map(|i| writer.push("t/a", format!("m{i}").as_bytes()).unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(reader.depth().unwrap(), 5);
        let first = reader.after(0, 2).unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(
            first[0],
            Row {
                seq: seqs[0],
                topic: "t/a".into(),
                payload: b"m0".to_vec()
            }
        );
        let rest = reader.after(first[1].seq, 10).unwrap();
        assert_eq!(rest.iter().map(|r| r.seq).collect::<Vec<_>>(), seqs[2..]);
        assert!(reader.remove(seqs[1]).unwrap());
        assert!(!reader.remove(seqs[1]).unwrap());
        assert_eq!(
            reader.after(0, 10).unwrap().iter().map(|r| r.seq).collect::<Vec<_>>(),
            [seqs[0], seqs[2], seqs[3], seqs[4]]
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn sequence_numbers_keep_growing_after_the_outbox_empties_and_reopens() {
        let path = temp_path("grow");
        let last = {
            let o = Outbox::open(&path, Durability::Full).unwrap();
            let a = o.push("t", b"x").unwrap();
            let b = o.push("t", b"y").unwrap();
            o.remove(a).unwrap();
            o.remove(b).unwrap();
            b
        };
        let o = Outbox::open(&path, Durability::Full).unwrap();
        assert_eq!(o.depth().unwrap(), 0);
        assert!(o.push("t", b"z").unwrap() > last);
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn a_file_from_another_schema_version_is_refused() {
        let path = temp_path("version");
        drop(Outbox::open(&path, Durability::Full).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 7).unwrap();
        drop(c);
        let err = Outbox::open(&path, Durability::Full).err().unwrap().to_string();
        assert!(err.contains("schema version 7"), "{err}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }
}
