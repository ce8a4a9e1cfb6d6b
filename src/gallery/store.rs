//! The gallery's system of record: SQLite (WAL) with versioned migrations. Every template
//! insert and delete is also written to a change log by triggers, so that other processes
//! holding the gallery open can follow enrollments and removals without reloading.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::error::Error;
use crate::vision::embedder::EMBEDDING_DIM;

/// Schema migrations; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE persons (
        id       INTEGER PRIMARY KEY,
        name     TEXT NOT NULL UNIQUE,
        created  TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE templates (
        id            INTEGER PRIMARY KEY,
        person_id     INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
        embedding     BLOB NOT NULL,
        model         TEXT NOT NULL,
        quality       REAL NOT NULL,
        source_sha256 TEXT NOT NULL,
        created       TEXT NOT NULL,
        crop          BLOB
    );
    CREATE INDEX templates_person ON templates(person_id);
    CREATE TABLE changes (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        op          TEXT NOT NULL CHECK (op IN ('add', 'del')),
        template_id INTEGER NOT NULL,
        person_id   INTEGER NOT NULL
    );
    CREATE TRIGGER templates_added AFTER INSERT ON templates BEGIN
        INSERT INTO changes (op, template_id, person_id) VALUES ('add', NEW.id, NEW.person_id);
    END;
    CREATE TRIGGER templates_removed AFTER DELETE ON templates BEGIN
        INSERT INTO changes (op, template_id, person_id) VALUES ('del', OLD.id, OLD.person_id);
    END;
"#,
    // Names are unique without regard to case ("Ann" and "ann" are one person): `name_key`
    // is the lower-case name, filled in by `fill_name_keys` (Unicode lower case is Rust's).
    r#"
    ALTER TABLE persons ADD COLUMN name_key TEXT;
"#,
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The change log is trimmed to this many entries; a reader further behind reloads.
const CHANGE_LOG_KEEP: i64 = 100_000;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Person {
    pub id: i64,
    pub name: String,
    pub created: String,
    pub metadata: serde_json::Value,
    pub templates: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TemplateInfo {
    pub id: i64,
    pub model: String,
    pub quality: f32,
    pub source_sha256: String,
    pub created: String,
    pub has_crop: bool,
}

/// A template about to be stored.
#[derive(Debug, Clone)]
pub struct NewTemplate {
    pub embedding: Vec<f32>,
    pub model: String,
    pub quality: f32,
    pub source_sha256: String,
    /// The aligned 112×112 crop as PNG, only when crops are kept.
    pub crop: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ChangeOp {
    Add,
    Del,
}

#[derive(Debug, Clone, Copy)]
pub struct Change {
    pub seq: i64,
    pub op: ChangeOp,
    pub template_id: i64,
    pub person_id: i64,
}

/// Changes after a point of the log, or word that the log no longer reaches back that far.
pub enum ChangesSince {
    Changes(Vec<Change>),
    Gap,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn embedding_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn blob_to_embedding(b: &[u8]) -> Option<Vec<f32>> {
    if b.len() != EMBEDDING_DIM * 4 {
        return None;
    }
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

impl Store {
    /// Opens the gallery at `path`, which must exist, and brings its schema up to date.
    /// A missing gallery is an error: reading one that is not there must not silently
    /// create an empty one.
    pub fn open(path: &Path) -> Result<Store, Error> {
        if !path.is_file() {
            return Err(Error::Gallery(format!(
                "{}: no gallery there (enroll someone first, or check gallery.path / --gallery)",
                path.display()
            )));
        }
        Store::connect(path)
    }

    /// Opens the gallery at `path`, creating it (and its folder, private to this user)
    /// when missing: for enrollment and import.
    pub fn open_or_create(path: &Path) -> Result<Store, Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::Gallery(format!("{}: cannot create its folder: {e}", path.display())))?;
        }
        Store::connect(path)
    }

    fn connect(path: &Path) -> Result<Store, Error> {
        let err = |e: String| Error::Gallery(format!("{}: {e}", path.display()));
        let conn = Connection::open(path).map_err(|e| err(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| err(e.to_string()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| err(format!("not a gallery database? {e}")))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| err(e.to_string()))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| err(e.to_string()))?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate().map_err(err)?;
        store.fill_name_keys().map_err(err)?;
        Ok(store)
    }

    /// Gives every person without one its `name_key`, then makes the keys unique. Two
    /// people whose names differ only in case (possible before keys existed) are reported.
    fn fill_name_keys(&mut self) -> Result<(), String> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| e.to_string())?;
        let missing: Vec<(i64, String)> = {
            let mut stmt = tx
                .prepare("SELECT id, name FROM persons WHERE name_key IS NULL")
                .map_err(|e| e.to_string())?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| e.to_string())?;
            rows.collect::<rusqlite::Result<_>>().map_err(|e| e.to_string())?
        };
        for (id, name) in &missing {
            tx.execute(
                "UPDATE persons SET name_key = ?1 WHERE id = ?2",
                params![name_key(name), id],
            )
            .map_err(|e| e.to_string())?;
        }
        tx.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS persons_name_key ON persons(name_key)")
            .map_err(|e| format!("two people have names that differ only in case; rename one ({e})"))?;
        tx.commit().map_err(|e| e.to_string())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<(), String> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if version > SCHEMA_VERSION {
            return Err(format!(
                "gallery schema version {version} is newer than this facegate understands ({SCHEMA_VERSION})"
            ));
        }
        for (v, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction().map_err(|e| e.to_string())?;
            // Another process may have migrated meanwhile: re-check inside the write lock.
            let current: i64 = tx
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(|e| e.to_string())?;
            if current > v as i64 {
                continue;
            }
            tx.execute_batch(sql)
                .map_err(|e| format!("migration to version {}: {e}", v + 1))?;
            tx.pragma_update(None, "user_version", v as i64 + 1)
                .map_err(|e| e.to_string())?;
            tx.commit().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn db<T>(&self, r: rusqlite::Result<T>) -> Result<T, Error> {
        r.map_err(|e| Error::Gallery(format!("{}: {e}", self.path.display())))
    }

    pub fn person(&self, name: &str) -> Result<Option<Person>, Error> {
        let r = self
            .conn
            .query_row(
                "SELECT p.id, p.name, p.created, p.metadata, (SELECT COUNT(*) FROM templates t WHERE t.person_id = p.id)
                 FROM persons p WHERE p.name_key = ?1",
                [name_key(name)],
                row_to_person,
            )
            .optional();
        self.db(r)
    }

    pub fn persons(&self) -> Result<Vec<Person>, Error> {
        let mut stmt = self.db(self.conn.prepare(
            "SELECT p.id, p.name, p.created, p.metadata, (SELECT COUNT(*) FROM templates t WHERE t.person_id = p.id)
             FROM persons p ORDER BY p.name",
        ))?;
        let rows = self.db(stmt.query_map([], row_to_person))?;
        let v: rusqlite::Result<Vec<Person>> = rows.collect();
        self.db(v)
    }

    pub fn person_name(&self, id: i64) -> Result<Option<String>, Error> {
        let r = self
            .conn
            .query_row("SELECT name FROM persons WHERE id = ?1", [id], |r| r.get(0))
            .optional();
        self.db(r)
    }

    pub fn templates_of(&self, person_id: i64) -> Result<Vec<TemplateInfo>, Error> {
        let mut stmt = self.db(self.conn.prepare(
            "SELECT id, model, quality, source_sha256, created, crop IS NOT NULL FROM templates
             WHERE person_id = ?1 ORDER BY id",
        ))?;
        let rows = self.db(stmt.query_map([person_id], |r| {
            Ok(TemplateInfo {
                id: r.get(0)?,
                model: r.get(1)?,
                quality: r.get::<_, f64>(2)? as f32,
                source_sha256: r.get(3)?,
                created: r.get(4)?,
                has_crop: r.get(5)?,
            })
        }))?;
        let v: rusqlite::Result<Vec<TemplateInfo>> = rows.collect();
        self.db(v)
    }

    /// Embeddings of one person: `(template id, embedding, model)`.
    pub fn embeddings_of(&self, person_id: i64) -> Result<Vec<(i64, Vec<f32>, String)>, Error> {
        let mut stmt = self.db(self
            .conn
            .prepare("SELECT id, embedding, model FROM templates WHERE person_id = ?1 ORDER BY id"))?;
        let rows = self.db(stmt.query_map([person_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?))
        }))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, blob, model) = self.db(row)?;
            let v = blob_to_embedding(&blob)
                .ok_or_else(|| Error::Gallery(format!("template {id}: malformed embedding")))?;
            out.push((id, v, model));
        }
        Ok(out)
    }

    /// Distinct embedding-model ids of the stored templates.
    pub fn models(&self) -> Result<Vec<String>, Error> {
        let mut stmt = self.db(self.conn.prepare("SELECT DISTINCT model FROM templates ORDER BY model"))?;
        let rows = self.db(stmt.query_map([], |r| r.get(0)))?;
        let v: rusqlite::Result<Vec<String>> = rows.collect();
        self.db(v)
    }

    pub fn template_count(&self) -> Result<usize, Error> {
        let n: i64 = self.db(self.conn.query_row("SELECT COUNT(*) FROM templates", [], |r| r.get(0)))?;
        Ok(n as usize)
    }

    /// Calls `f(template id, person id, embedding)` for every template, in id order.
    pub fn for_each_template(&self, mut f: impl FnMut(i64, i64, Vec<f32>)) -> Result<(), Error> {
        let mut stmt = self.db(self
            .conn
            .prepare("SELECT id, person_id, embedding FROM templates ORDER BY id"))?;
        let mut rows = self.db(stmt.query([]))?;
        while let Some(r) = self.db(rows.next())? {
            let id: i64 = self.db(r.get(0))?;
            let person: i64 = self.db(r.get(1))?;
            let blob: Vec<u8> = self.db(r.get(2))?;
            let v = blob_to_embedding(&blob)
                .ok_or_else(|| Error::Gallery(format!("template {id}: malformed embedding")))?;
            f(id, person, v);
        }
        Ok(())
    }

    pub fn template(&self, id: i64) -> Result<Option<(i64, Vec<f32>)>, Error> {
        let r = self
            .conn
            .query_row("SELECT person_id, embedding FROM templates WHERE id = ?1", [id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .optional();
        Ok(self.db(r)?.and_then(|(p, b)| blob_to_embedding(&b).map(|v| (p, v))))
    }

    /// The newest change-log position.
    pub fn latest_change(&self) -> Result<i64, Error> {
        let r = self
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| r.get(0));
        self.db(r)
    }

    pub fn changes_since(&self, seq: i64) -> Result<ChangesSince, Error> {
        let oldest: Option<i64> = self.db(self.conn.query_row("SELECT MIN(seq) FROM changes", [], |r| r.get(0)))?;
        if oldest.is_some_and(|oldest| oldest > seq + 1) {
            return Ok(ChangesSince::Gap);
        }
        let mut stmt = self.db(self
            .conn
            .prepare("SELECT seq, op, template_id, person_id FROM changes WHERE seq > ?1 ORDER BY seq"))?;
        let rows = self.db(stmt.query_map([seq], |r| {
            let op: String = r.get(1)?;
            Ok(Change {
                seq: r.get(0)?,
                op: if op == "add" { ChangeOp::Add } else { ChangeOp::Del },
                template_id: r.get(2)?,
                person_id: r.get(3)?,
            })
        }))?;
        let v: rusqlite::Result<Vec<Change>> = rows.collect();
        Ok(ChangesSince::Changes(self.db(v)?))
    }

    /// Creates a person (or, with `append`, adds to an existing one) with its templates,
    /// all in one transaction: a crash leaves either all of them or none.
    pub fn enroll(
        &mut self,
        name: &str,
        metadata: &serde_json::Value,
        templates: &[NewTemplate],
        append: bool,
    ) -> Result<(Person, Vec<i64>), Error> {
        let path = self.path.clone();
        let db = |e: rusqlite::Error| Error::Gallery(format!("{}: {e}", path.display()));
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let existing: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, name FROM persons WHERE name_key = ?1",
                [name_key(name)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)?;
        let person_id = match (existing, append) {
            (Some((_, taken)), false) => {
                return Err(Error::Rejected(format!(
                    "a person named {taken:?} is already enrolled (use --append to add photos)"
                )));
            }
            (Some((id, _)), true) => id,
            (None, true) => {
                return Err(Error::Rejected(format!(
                    "no person named {name:?} is enrolled: enroll without --append first"
                )));
            }
            (None, false) => insert_person(&tx, name, &now_rfc3339(), metadata).map_err(db)?,
        };
        let ids = insert_templates(&tx, person_id, templates).map_err(db)?;
        trim_change_log(&tx).map_err(db)?;
        tx.commit().map_err(db)?;
        let person = self
            .person(name)?
            .ok_or_else(|| Error::Gallery(format!("{name} vanished after enrolment")))?;
        Ok((person, ids))
    }

    /// Adds several people with their templates in one transaction, keeping each one's
    /// `created` date: all of them or none. Names must not be taken (checked by the caller
    /// first, and again by the unique index).
    pub fn import(&mut self, people: &[ImportedPerson]) -> Result<usize, Error> {
        let path = self.path.clone();
        let db = |e: rusqlite::Error| Error::Gallery(format!("{}: {e}", path.display()));
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        for p in people {
            let id = insert_person(&tx, &p.name, &p.created, &p.metadata).map_err(db)?;
            insert_templates(&tx, id, &p.templates).map_err(db)?;
        }
        trim_change_log(&tx).map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(people.len())
    }

    /// Deletes a person and every template (and crop) of theirs; returns how many templates.
    pub fn remove(&mut self, name: &str) -> Result<usize, Error> {
        let path = self.path.clone();
        let db = |e: rusqlite::Error| Error::Gallery(format!("{}: {e}", path.display()));
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let id: Option<i64> = tx
            .query_row("SELECT id FROM persons WHERE name_key = ?1", [name_key(name)], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)?;
        let Some(id) = id else {
            return Err(Error::Rejected(format!("no person named {name:?} is enrolled")));
        };
        let n = tx
            .execute("DELETE FROM templates WHERE person_id = ?1", [id])
            .map_err(db)?;
        tx.execute("DELETE FROM persons WHERE id = ?1", [id]).map_err(db)?;
        trim_change_log(&tx).map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(n)
    }

    /// Runs SQLite's own consistency check; `Ok(())` when it says "ok".
    pub fn integrity_check(&self) -> Result<(), Error> {
        let r: String = self.db(self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)))?;
        let orphans: i64 = self.db(self.conn.query_row(
            "SELECT COUNT(*) FROM templates WHERE person_id NOT IN (SELECT id FROM persons)",
            [],
            |r| r.get(0),
        ))?;
        if r != "ok" || orphans != 0 {
            return Err(Error::Gallery(format!(
                "integrity check: {r}, {orphans} orphan templates"
            )));
        }
        Ok(())
    }
}

/// A person to import, with the date of their first enrollment.
pub struct ImportedPerson {
    pub name: String,
    pub created: String,
    pub metadata: serde_json::Value,
    pub templates: Vec<NewTemplate>,
}

/// The key that makes names unique: "Ann" and "ann" are one person.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

fn insert_person(
    tx: &Transaction<'_>,
    name: &str,
    created: &str,
    metadata: &serde_json::Value,
) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO persons (name, name_key, created, metadata) VALUES (?1, ?2, ?3, ?4)",
        params![name, name_key(name), created, metadata.to_string()],
    )?;
    Ok(tx.last_insert_rowid())
}

fn insert_templates(tx: &Transaction<'_>, person_id: i64, templates: &[NewTemplate]) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = tx.prepare(
        "INSERT INTO templates (person_id, embedding, model, quality, source_sha256, created, crop)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let created = now_rfc3339();
    let mut ids = Vec::with_capacity(templates.len());
    for t in templates {
        stmt.execute(params![
            person_id,
            embedding_to_blob(&t.embedding),
            t.model,
            t.quality as f64,
            t.source_sha256,
            created,
            t.crop
        ])?;
        ids.push(tx.last_insert_rowid());
    }
    Ok(ids)
}

fn trim_change_log(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM changes WHERE seq <= (SELECT MAX(seq) FROM changes) - ?1",
        [CHANGE_LOG_KEEP],
    )?;
    Ok(())
}

fn row_to_person(r: &rusqlite::Row<'_>) -> rusqlite::Result<Person> {
    let meta: String = r.get(3)?;
    Ok(Person {
        id: r.get(0)?,
        name: r.get(1)?,
        created: r.get(2)?,
        metadata: serde_json::from_str(&meta).unwrap_or(serde_json::Value::Null),
        templates: r.get::<_, i64>(4)? as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::index::tests::unit_vectors;

    fn tmp_db(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("facegate-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("gallery.db")
    }

    fn template(v: Vec<f32>) -> NewTemplate {
        NewTemplate {
            embedding: v,
            model: "m1".into(),
            quality: 0.9,
            source_sha256: "ab".into(),
            crop: None,
        }
    }

    #[test]
    fn enroll_list_remove_and_change_log() {
        let path = tmp_db("basic");
        let mut s = Store::open_or_create(&path).unwrap();
        let vs = unit_vectors(3, 1);
        let (p, ids) = s
            .enroll(
                "Ada",
                &serde_json::json!({"badge": 7}),
                &[template(vs[0].clone()), template(vs[1].clone())],
                false,
            )
            .unwrap();
        assert_eq!((p.name.as_str(), p.templates, ids.len()), ("Ada", 2, 2));
        assert_eq!(p.metadata["badge"], 7);
        let dup = s
            .enroll("Ada", &serde_json::json!({}), &[template(vs[2].clone())], false)
            .unwrap_err();
        assert!(matches!(dup, Error::Rejected(_)), "{dup}");
        s.enroll("Ada", &serde_json::json!({}), &[template(vs[2].clone())], true)
            .unwrap();
        assert_eq!(s.person("Ada").unwrap().unwrap().templates, 3);
        let (_, emb, _) = &s.embeddings_of(p.id).unwrap()[0];
        assert_eq!(emb, &vs[0]);
        let ChangesSince::Changes(c) = s.changes_since(0).unwrap() else {
            panic!("gap")
        };
        assert_eq!(c.len(), 3);
        assert_eq!(s.remove("Ada").unwrap(), 3);
        assert!(s.person("Ada").unwrap().is_none());
        let ChangesSince::Changes(c) = s.changes_since(3).unwrap() else {
            panic!("gap")
        };
        assert_eq!(c.iter().filter(|c| c.op == ChangeOp::Del).count(), 3);
        assert!(matches!(s.remove("Ada"), Err(Error::Rejected(_))));
        s.integrity_check().unwrap();
    }

    #[test]
    fn names_are_one_person_whatever_their_case() {
        let path = tmp_db("case");
        let mut s = Store::open_or_create(&path).unwrap();
        let vs = unit_vectors(3, 3);
        s.enroll("Ann", &serde_json::json!({}), &[template(vs[0].clone())], false)
            .unwrap();
        let e = s
            .enroll("ann", &serde_json::json!({}), &[template(vs[1].clone())], false)
            .unwrap_err();
        assert!(e.to_string().contains("\"Ann\" is already enrolled"), "{e}");
        assert_eq!(s.person("ANN").unwrap().unwrap().name, "Ann");
        let e = s
            .enroll("Zoë", &serde_json::json!({}), &[template(vs[2].clone())], true)
            .unwrap_err();
        assert!(e.to_string().contains("enroll without --append first"), "{e}");
        assert_eq!(s.remove("aNN").unwrap(), 1);
    }

    #[test]
    fn a_missing_gallery_is_not_created_by_open() {
        let path = tmp_db("missing");
        let e = Store::open(&path).err().unwrap();
        assert!(
            matches!(e, Error::Gallery(_)) && e.to_string().contains("no gallery there"),
            "{e}"
        );
        assert!(!path.exists());
        Store::open_or_create(&path).unwrap();
        assert!(Store::open(&path).is_ok());
    }

    #[test]
    fn import_keeps_dates_and_is_all_or_nothing() {
        let path = tmp_db("import");
        let mut s = Store::open_or_create(&path).unwrap();
        let vs = unit_vectors(2, 4);
        let person = |name: &str, v: &Vec<f32>| ImportedPerson {
            name: name.into(),
            created: "2020-01-02T03:04:05.000Z".into(),
            metadata: serde_json::json!({}),
            templates: vec![template(v.clone())],
        };
        assert_eq!(s.import(&[person("A", &vs[0]), person("B", &vs[1])]).unwrap(), 2);
        assert_eq!(s.person("a").unwrap().unwrap().created, "2020-01-02T03:04:05.000Z");
        // A name taken inside the batch: nothing of it is written.
        assert!(s.import(&[person("C", &vs[0]), person("b", &vs[1])]).is_err());
        assert!(s.person("C").unwrap().is_none());
        assert_eq!(s.template_count().unwrap(), 2);
    }

    #[test]
    fn reopening_keeps_data_and_schema_version() {
        let path = tmp_db("reopen");
        {
            let mut s = Store::open_or_create(&path).unwrap();
            s.enroll(
                "Bo",
                &serde_json::json!({}),
                &[template(unit_vectors(1, 2).remove(0))],
                false,
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.persons().unwrap().len(), 1);
        let v: i64 = s.conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn refuses_newer_schema_and_non_databases() {
        let path = tmp_db("newer");
        drop(Store::open_or_create(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let e = Store::open(&path).err().unwrap().to_string();
        assert!(e.contains("newer"), "{e}");
        let junk = tmp_db("junk");
        std::fs::create_dir_all(junk.parent().unwrap()).unwrap();
        std::fs::write(&junk, vec![7u8; 8192]).unwrap();
        assert!(Store::open(&junk).is_err());
    }
}
