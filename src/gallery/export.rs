//! The gallery's export format (`facegate gallery export|import`): people with their
//! metadata and templates (embeddings, no crops) as one JSON document.
//!
//! ```json
//! {"format": "facegate-gallery", "version": 1,
//!  "persons": [{"name", "created", "metadata", "templates": [{"model", "quality", "source_sha256", "embedding": [128 floats]}]}]}
//! ```

use serde::{Deserialize, Serialize};

use super::enroll::normalize_name;
use super::store::{ImportedPerson, NewTemplate, Store, name_key};
use crate::engine::same_model;
use crate::error::Error;
use crate::vision::embedder::EMBEDDING_DIM;

pub const EXPORT_FORMAT: &str = "facegate-gallery";
pub const EXPORT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFile {
    pub format: String,
    pub version: u32,
    pub persons: Vec<ExportPerson>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportPerson {
    pub name: String,
    pub created: String,
    pub metadata: serde_json::Value,
    pub templates: Vec<ExportTemplate>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportTemplate {
    pub model: String,
    pub quality: f32,
    pub source_sha256: String,
    pub embedding: Vec<f32>,
}

/// Everyone in the store, as an export document.
pub fn export(store: &Store) -> Result<ExportFile, Error> {
    let mut persons = Vec::new();
    for p in store.persons()? {
        let infos = store.templates_of(p.id)?;
        let embeddings = store.embeddings_of(p.id)?;
        let templates = infos
            .into_iter()
            .zip(embeddings)
            .map(|(info, (_, embedding, model))| ExportTemplate {
                model,
                quality: info.quality,
                source_sha256: info.source_sha256,
                embedding,
            })
            .collect();
        persons.push(ExportPerson {
            name: p.name,
            created: p.created,
            metadata: p.metadata,
            templates,
        });
    }
    Ok(ExportFile {
        format: EXPORT_FORMAT.into(),
        version: EXPORT_VERSION,
        persons,
    })
}

/// Parses an export document and checks its format and version.
pub fn parse(text: &str) -> Result<ExportFile, String> {
    let doc: ExportFile = serde_json::from_str(text).map_err(|e| format!("not a facegate gallery export: {e}"))?;
    if doc.format != EXPORT_FORMAT || doc.version != EXPORT_VERSION {
        return Err(format!("unsupported export {} v{}", doc.format, doc.version));
    }
    Ok(doc)
}

/// Every reason the document cannot be imported into `store` for embedding model `model`,
/// each naming the person: names invalid, repeated in the file (case does not count) or
/// already enrolled, templates of another model or of the wrong length, unreadable dates.
pub fn import_problems(store: &Store, doc: &ExportFile, model: &str) -> Result<Vec<String>, Error> {
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, p) in doc.persons.iter().enumerate() {
        let who = format!("persons[{i}] {:?}", p.name);
        match normalize_name(&p.name) {
            Ok(name) if name != p.name => problems.push(format!("{who}: surrounding white space in the name")),
            Ok(_) => {}
            Err(e) => problems.push(format!("{who}: {e}")),
        }
        if !seen.insert(name_key(&p.name)) {
            problems.push(format!("{who}: the name appears more than once in the file"));
        }
        if let Some(taken) = store.person(&p.name)? {
            problems.push(format!("{who}: {:?} is already enrolled", taken.name));
        }
        if !p.metadata.is_object() {
            problems.push(format!("{who}: metadata is not a JSON object"));
        }
        if chrono::DateTime::parse_from_rfc3339(&p.created).is_err() {
            problems.push(format!("{who}: created {:?} is not an RFC 3339 date", p.created));
        }
        if p.templates.is_empty() {
            problems.push(format!("{who}: no templates"));
        }
        if let Some(t) = p.templates.iter().find(|t| !same_model(&t.model, model)) {
            problems.push(format!(
                "{who}: templates of model {} (this facegate: {model})",
                t.model
            ));
        }
        if p.templates.iter().any(|t| t.embedding.len() != EMBEDDING_DIM) {
            problems.push(format!("{who}: an embedding of the wrong length"));
        }
    }
    Ok(problems)
}

/// Imports the document after checking it whole, in one transaction: nothing is written
/// when anything is wrong. Each person keeps the date they were first enrolled. Returns
/// the number of people imported.
pub fn import(store: &mut Store, doc: &ExportFile, model: &str) -> Result<usize, Error> {
    let problems = import_problems(store, doc, model)?;
    if !problems.is_empty() {
        return Err(Error::Rejected(format!("nothing imported: {}", problems.join("; "))));
    }
    let people: Vec<ImportedPerson> = doc
        .persons
        .iter()
        .map(|p| ImportedPerson {
            name: p.name.clone(),
            created: p.created.clone(),
            metadata: p.metadata.clone(),
            templates: p
                .templates
                .iter()
                .map(|t| NewTemplate {
                    embedding: t.embedding.clone(),
                    model: model.to_string(),
                    quality: t.quality,
                    source_sha256: t.source_sha256.clone(),
                    crop: None,
                })
                .collect(),
        })
        .collect();
    store.import(&people)
}
