//! The gallery: who may enter. An SQLite store (the system of record) and a search index
//! over its templates, kept in step with other processes through the store's change log.

pub mod enroll;
pub mod export;
pub mod index;
pub mod matcher;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::vision::quality::QualityConfig;
use index::{IndexConfig, TemplateIndex};
use matcher::{Candidate, MatchDecision};
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
            p.push(format!(
                "gallery.threshold: {} is not a cosine similarity (−1–1)",
                self.threshold
            ));
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

/// Every removal is logged with the name and its outcome, whoever asked for it.
pub fn log_removal(name: &str, outcome: &Result<usize, Error>) {
    match outcome {
        Ok(n) => tracing::info!(name, templates = n, "person removed"),
        Err(e) => tracing::info!(name, error = %e, "removal refused"),
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
}

impl Gallery {
    /// Opens the gallery, which must exist, and indexes its templates. Refuses a gallery
    /// holding templates of another embedding model: they are not comparable.
    pub fn open(cfg: &GalleryConfig, model: &str) -> Result<Gallery, Error> {
        Gallery::with_store(Store::open(&cfg.path)?, cfg, model)
    }

    /// Like [`Gallery::open`], creating an empty gallery when there is none (enrollment,
    /// the daemon).
    pub fn open_or_create(cfg: &GalleryConfig, model: &str) -> Result<Gallery, Error> {
        Gallery::with_store(Store::open_or_create(&cfg.path)?, cfg, model)
    }

    fn with_store(store: Store, cfg: &GalleryConfig, model: &str) -> Result<Gallery, Error> {
        let mut g = Gallery {
            store,
            index: TemplateIndex::new(cfg.index.clone()),
            names: HashMap::new(),
            seen_change: 0,
            model: model.to_string(),
            cfg: cfg.clone(),
        };
        g.reload()?;
        Ok(g)
    }

    fn check_models(&self) -> Result<(), Error> {
        let foreign: Vec<String> = self
            .store
            .models()?
            .into_iter()
            .filter(|m| !crate::engine::same_model(m, &self.model))
            .collect();
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

    fn reload(&mut self) -> Result<(), Error> {
        self.check_models()?;
        self.seen_change = self.store.latest_change()?;
        self.names = self.store.persons()?.into_iter().map(|p| (p.id, p.name)).collect();
        let mut index = TemplateIndex::new(self.cfg.index.clone());
        index.reserve(self.store.template_count()?);
        self.store.for_each_template(|t, p, v| index.stage(t, p, &v))?;
        index.settle();
        self.index = index;
        Ok(())
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

    /// People enrolled.
    pub fn person_count(&self) -> usize {
        self.names.len()
    }

    pub fn index(&self) -> &TemplateIndex {
        &self.index
    }

    /// Stores the templates (one transaction) and indexes them.
    pub fn enroll(
        &mut self,
        name: &str,
        metadata: &serde_json::Value,
        templates: Vec<NewTemplate>,
        append: bool,
    ) -> Result<(Person, Vec<i64>), Error> {
        if templates
            .iter()
            .any(|t| !crate::engine::same_model(&t.model, &self.model))
        {
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
        let n = self.store.remove(name);
        log_removal(name, &n);
        let n = n?;
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
    pub fn identify(&self, embedding: &[f32], threshold: f32) -> (MatchDecision, Vec<Candidate>) {
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
            .map(|(_, v, _)| crate::vision::similarity::dot(embedding, v))
            .fold(f32::NEG_INFINITY, f32::max);
        Ok(best)
    }
}
