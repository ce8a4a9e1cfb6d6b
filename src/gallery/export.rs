//! The gallery's export format (`facegate gallery export|import`): people with their
//! metadata and templates (embeddings, no crops) as one JSON document.
//!
//! ```json
//! {"format": "facegate-gallery", "version": 1,
//!  "persons": [{"name", "created", "metadata", "templates": [{"model", "quality", "source_sha256", "embedding": [128 floats]}]}]}
//! ```

use serde::{Deserialize, Serialize};

use super::store::{NewTemplate, Store};
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

/// Every reason the document cannot be imported into `store` for embedding model `model`.
pub fn import_problems(store: &Store, doc: &ExportFile, model: &str) -> Result<Vec<String>, Error> {
    let mut problems = Vec::new();
    for p in &doc.persons {
        if store.person(&p.name)?.is_some() {
            problems.push(format!("{:?} is already enrolled", p.name));
        }
        if let Some(t) = p.templates.iter().find(|t| t.model != model) {
            problems.push(format!(
                "{:?} has templates of model {} (this facegate: {model})",
                p.name, t.model
            ));
        }
        if p.templates.iter().any(|t| t.embedding.len() != EMBEDDING_DIM) {
            problems.push(format!("{:?} has an embedding of the wrong length", p.name));
        }
    }
    Ok(problems)
}

/// Imports the document after checking it whole: nothing is written when any person has a
/// problem. Returns the number of people imported.
pub fn import(store: &mut Store, doc: &ExportFile, model: &str) -> Result<usize, Error> {
    let problems = import_problems(store, doc, model)?;
    if !problems.is_empty() {
        return Err(Error::Rejected(format!("nothing imported: {}", problems.join("; "))));
    }
    for p in &doc.persons {
        let templates: Vec<NewTemplate> = p
            .templates
            .iter()
            .map(|t| NewTemplate {
                embedding: t.embedding.clone(),
                model: t.model.clone(),
                quality: t.quality,
                source_sha256: t.source_sha256.clone(),
                crop: None,
            })
            .collect();
        store.enroll(&p.name, &p.metadata, &templates, false)?;
    }
    Ok(doc.persons.len())
}
