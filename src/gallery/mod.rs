//! The gallery: who may enter. An SQLite store (the system of record) and a search index
//! over its templates, kept in step with other processes through the store's change log.

pub mod index;
pub mod matcher;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::vision::embedder::EMBEDDING_DIM;
use index::{IndexConfig, TemplateIndex};
use matcher::{Candidate, Decision, QualityConfig};
use store::{ChangeOp, ChangesSince, NewTemplate, Person, Store};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GalleryConfig {
    /// SQLite file of the gallery (created when missing). Production installs point this
    /// at the service's state directory.
    pub path: PathBuf,
    /// Cosine similarity a face must reach to match an enrolled person (1:K identify and
    /// 1:1 verify). Stricter than `recognition.threshold` (OpenCV's LFW value 0.363, used by
    /// `compare`): a door must not open for a stranger, and two different people of the
    /// sample photos reach 0.374, 0.464 in a blurred copy.
    pub threshold: f32,
    /// A face matches its best person only when that person beats the runner-up person
    /// by at least this much cosine similarity.
    pub margin: f32,
    /// Keep the aligned 112×112 crop of each template. Off by default: it is biometric data.
    pub store_crops: bool,
    /// How often a running process looks for enrollments and removals made by others.
    pub refresh_interval_ms: u64,
    /// Search index settings.
    pub index: IndexConfig,
    /// Faces below these are reported as low quality and never enrolled or matched.
    pub quality: QualityConfig,
}

impl Default for GalleryConfig {
    fn default() -> Self {
        GalleryConfig {
            path: PathBuf::from("data/gallery.db"),
            threshold: 0.5,
            margin: 0.05,
            store_crops: false,
            refresh_interval_ms: 1000,
            index: IndexConfig::default(),
            quality: QualityConfig::default(),
        }
    }
}

impl GalleryConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.path.as_os_str().is_empty() {
            p.push("gallery.path: must name a file".into());
        }
        if !(-1.0..=1.0).contains(&self.threshold) {
            p.push(format!("gallery.threshold: {} is not a cosine similarity (−1–1)", self.threshold));
        }
        if !(0.0..=1.0).contains(&self.margin) {
            p.push(format!("gallery.margin: {} is not within 0–1", self.margin));
        }
        if self.refresh_interval_ms == 0 || self.refresh_interval_ms > 60_000 {
            p.push(format!(
                "gallery.refresh_interval_ms: {} is not within 1–60000",
                self.refresh_interval_ms
            ));
        }
        p.extend(self.index.validate("gallery.index"));
        p.extend(self.quality.validate("gallery.quality"));
        p
    }
}

/// The store plus an index that follows it.
pub struct Gallery {
    store: Store,
    index: TemplateIndex,
    names: HashMap<i64, String>,
    seen_change: i64,
    model: String,
    cfg: GalleryConfig,
    opened: OpenReport,
}

/// How the last (re)load of the index went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OpenReport {
    /// Live templates indexed.
    pub templates: usize,
    /// The saved graph was used (possibly caught up with later changes).
    pub loaded_saved_index: bool,
    /// Why a saved graph that was there was not used.
    pub rebuilt_because: Option<String>,
    /// Store changes applied on top of the saved graph.
    pub caught_up: usize,
    /// A new save was written.
    pub saved: bool,
    pub read_store_s: f64,
    pub load_saved_s: f64,
    pub build_s: f64,
    pub save_s: f64,
    pub total_s: f64,
}

/// A saved graph that needed this many changes applied (or more, relative to its size:
/// one in a hundred templates) is saved again, so that the next open needs none.
const RESAVE_AFTER_CHANGES: usize = 10_000;

impl Gallery {
    /// Opens the gallery and indexes its templates. Refuses a gallery holding templates
    /// of another embedding model: they are not comparable.
    pub fn open(cfg: &GalleryConfig, model: &str) -> Result<Gallery, Error> {
        let store = Store::open(&cfg.path)?;
        let mut g = Gallery {
            store,
            index: TemplateIndex::new(cfg.index.clone()),
            names: HashMap::new(),
            seen_change: 0,
            model: model.to_string(),
            cfg: cfg.clone(),
            opened: OpenReport::default(),
        };
        g.reload()?;
        Ok(g)
    }

    fn check_models(&self) -> Result<(), Error> {
        let foreign: Vec<String> = self.store.models()?.into_iter().filter(|m| m != &self.model).collect();
        if foreign.is_empty() {
            Ok(())
        } else {
            Err(Error::Gallery(format!(
                "{}: holds templates of embedding model {} but this facegate computes {}: re-enroll with this model or use the matching one",
                self.store.path().display(),
                foreign.join(", "),
                self.model
            )))
        }
    }

    /// (Re)builds the index from the store, or loads the graph saved next to it when that
    /// matches the store: same change-log position or one the log still reaches (the
    /// changes since are applied), and the same templates, persons and embeddings, bit for
    /// bit. Anything else (absent, stale, corrupt, other settings) is logged and rebuilt,
    /// and the new graph saved.
    fn reload(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        self.check_models()?;
        let seen = self.store.latest_change()?;
        self.names = self.store.persons()?.into_iter().map(|p| (p.id, p.name)).collect();
        let mut report = OpenReport::default();
        let persist = self.cfg.index.persist;
        let path = self.cfg.path.clone();

        // The saved graph first: hnsw_rs' loading tables are gone before the rows come in.
        let t = Instant::now();
        let saved = if persist {
            TemplateIndex::load(&self.cfg.index, &path)
        } else {
            Ok(None)
        };
        report.load_saved_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut ids: Vec<(i64, i64)> = Vec::new();
        let mut vectors: Vec<f32> = Vec::new();
        self.store.for_each_template(|t, p, v| {
            ids.push((t, p));
            vectors.extend_from_slice(&v);
        })?;
        report.read_store_s = t.elapsed().as_secs_f64();

        let loaded = match saved {
            Ok(None) => None,
            Err(why) => Some(Err(why)),
            Ok(Some((idx, at))) => {
                let t = Instant::now();
                let r = self.catch_up(idx, at, seen, &ids, &vectors);
                report.load_saved_s += t.elapsed().as_secs_f64();
                Some(r)
            }
        };
        let index = match loaded {
            Some(Ok((idx, applied))) => {
                report.loaded_saved_index = true;
                report.caught_up = applied;
                if applied > 0 && (applied >= RESAVE_AFTER_CHANGES || applied * 100 >= idx.len()) {
                    self.save_index(&idx, seen, &mut report);
                }
                idx
            }
            other => {
                if let Some(Err(why)) = other {
                    tracing::warn!(
                        "{}: saved search index not used ({why}); rebuilding it",
                        path.display()
                    );
                    report.rebuilt_because = Some(why);
                }
                let t = Instant::now();
                let idx = TemplateIndex::from_rows(self.cfg.index.clone(), &ids, vectors);
                report.build_s = t.elapsed().as_secs_f64();
                if persist && idx.uses_graph() {
                    self.save_index(&idx, seen, &mut report);
                } else if persist && report.rebuilt_because.is_some() {
                    index::remove_saved(&path);
                }
                idx
            }
        };
        report.templates = index.len();
        report.total_s = started.elapsed().as_secs_f64();
        tracing::info!(
            "{}: {} templates indexed in {:.1} s ({})",
            path.display(),
            report.templates,
            report.total_s,
            if report.loaded_saved_index { "saved graph" } else { "built" }
        );
        self.index = index;
        self.seen_change = seen;
        self.opened = report;
        Ok(())
    }

    fn save_index(&self, idx: &TemplateIndex, seen: i64, report: &mut OpenReport) {
        let t = Instant::now();
        match idx.save(&self.cfg.path, seen) {
            Ok(_) => report.saved = true,
            Err(e) => tracing::warn!(
                "{}: could not save the search index ({e}); the next open builds it again (gallery.index.persist = false stops trying)",
                self.cfg.path.display()
            ),
        }
        report.save_s = t.elapsed().as_secs_f64();
    }

    /// Brings an index saved at change `at` up to change `seen` of the store and checks it
    /// against the store's templates (`ids` and row-major `vectors`, read after `seen`).
    /// Returns it with the number of changes applied, or why it cannot be used.
    fn catch_up(
        &self,
        mut idx: TemplateIndex,
        at: i64,
        seen: i64,
        ids: &[(i64, i64)],
        vectors: &[f32],
    ) -> Result<(TemplateIndex, usize), String> {
        if at > seen {
            return Err(format!(
                "it was saved at change {at} but the store's newest change is {seen}: another gallery's, or the database was restored"
            ));
        }
        let log = |r: Result<ChangesSince, Error>| match r {
            Ok(ChangesSince::Changes(c)) => Ok(c),
            Ok(ChangesSince::Gap) => Err(format!(
                "it was saved at change {at} and the store's change log no longer reaches back that far"
            )),
            Err(e) => Err(e.to_string()),
        };
        let changes: Vec<_> = if at < seen {
            log(self.store.changes_since(at))?
                .into_iter()
                .filter(|c| c.seq <= seen)
                .collect()
        } else {
            Vec::new()
        };
        if !changes.is_empty() {
            let added: HashSet<i64> = changes
                .iter()
                .filter(|c| c.op == ChangeOp::Add)
                .map(|c| c.template_id)
                .collect();
            let rows: HashMap<i64, usize> = ids
                .iter()
                .enumerate()
                .filter(|(_, (t, _))| added.contains(t))
                .map(|(i, &(t, _))| (t, i))
                .collect();
            // Runs of additions go in together (in parallel); order is kept otherwise.
            let mut batch = Vec::new();
            for c in &changes {
                match c.op {
                    ChangeOp::Add => {
                        // Absent from the store: removed again later, by a change to come.
                        if let Some(&i) = rows.get(&c.template_id) {
                            let v = vectors[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM].to_vec();
                            batch.push((c.template_id, ids[i].1, v));
                        }
                    }
                    ChangeOp::Del => {
                        idx.extend(std::mem::take(&mut batch));
                        idx.remove_template(c.template_id);
                    }
                }
            }
            idx.extend(batch);
        }
        // Changes committed while the rows were being read are applied by the next
        // refresh(); their templates are not compared.
        let in_flight: HashSet<i64> = log(self.store.changes_since(seen))?
            .into_iter()
            .map(|c| c.template_id)
            .collect();
        idx.verify_against(ids, vectors, &in_flight)?;
        Ok((idx, changes.len()))
    }

    /// Applies enrollments and removals made since the last look (by any process).
    /// Returns whether anything changed.
    pub fn refresh(&mut self) -> Result<bool, Error> {
        match self.store.changes_since(self.seen_change)? {
            ChangesSince::Gap => {
                self.reload()?;
                Ok(true)
            }
            ChangesSince::Changes(changes) if changes.is_empty() => Ok(false),
            ChangesSince::Changes(changes) => {
                for c in &changes {
                    match c.op {
                        ChangeOp::Add => {
                            if let Some((person, v)) = self.store.template(c.template_id)? {
                                self.index.insert(c.template_id, person, &v);
                            }
                        }
                        ChangeOp::Del => {
                            self.index.remove_template(c.template_id);
                        }
                    }
                    self.seen_change = c.seq;
                }
                self.check_models()?;
                self.names = self.store.persons()?.into_iter().map(|p| (p.id, p.name)).collect();
                Ok(true)
            }
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn config(&self) -> &GalleryConfig {
        &self.cfg
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn index(&self) -> &TemplateIndex {
        &self.index
    }

    /// How the index was obtained when the gallery was (re)loaded last.
    pub fn open_report(&self) -> &OpenReport {
        &self.opened
    }

    /// Stores the templates (one transaction) and indexes them.
    pub fn enroll(
        &mut self,
        name: &str,
        metadata: &serde_json::Value,
        templates: Vec<NewTemplate>,
        append: bool,
    ) -> Result<(Person, Vec<i64>), Error> {
        if templates.iter().any(|t| t.model != self.model) {
            return Err(Error::Gallery(format!(
                "templates must be of embedding model {}",
                self.model
            )));
        }
        let (person, ids) = self.store.enroll(name, metadata, &templates, append)?;
        self.refresh()?;
        Ok((person, ids))
    }

    /// Forgets a person: every template leaves the store and the index.
    pub fn remove(&mut self, name: &str) -> Result<usize, Error> {
        let n = self.store.remove(name)?;
        self.refresh()?;
        Ok(n)
    }

    /// The `top` most similar people, best first, each with their best template's similarity.
    pub fn candidates(&self, embedding: &[f32], top: usize) -> Vec<Candidate> {
        self.index
            .best_per_person(embedding, top.max(2))
            .into_iter()
            .take(top.max(2))
            .map(|h| Candidate {
                person_id: h.person_id,
                name: self.names.get(&h.person_id).cloned().unwrap_or_default(),
                similarity: h.similarity,
            })
            .collect()
    }

    /// 1:K identification of one face by the matching rule.
    pub fn identify(&self, embedding: &[f32], threshold: f32) -> (Decision, Vec<Candidate>) {
        let candidates = self.candidates(embedding, 2);
        (matcher::decide(&candidates, threshold, self.cfg.margin), candidates)
    }

    /// 1:1 verification: the claimed person's best template similarity.
    pub fn verify(&self, embedding: &[f32], name: &str) -> Result<f32, Error> {
        let person = self
            .store
            .person(name)?
            .ok_or_else(|| Error::Rejected(format!("no person named {name:?} is enrolled")))?;
        let best = self
            .store
            .embeddings_of(person.id)?
            .iter()
            .map(|(_, v, _)| index::dot(embedding, v))
            .fold(f32::NEG_INFINITY, f32::max);
        Ok(best)
    }
}
