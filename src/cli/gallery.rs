//! Gallery commands: enroll, identify, verify, and `gallery list|show|remove|export|import`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::json;

use super::print;
use crate::config::Config;
use crate::engine::AlignedFace;
use crate::engine::{FaceEngine, model_id};
use crate::error::Error;
use crate::gallery::Gallery;
use crate::gallery::enroll::{self, EnrollRequest, Photo};
use crate::gallery::export;
use crate::gallery::matcher::{Candidate, MatchDecision, unknown_reason, verified};
use crate::gallery::store::Store;
use crate::vision::image_io::{load_image, read_image_file};
use crate::vision::quality::Quality;

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The person's unique name.
    #[arg(long)]
    pub name: String,
    /// One photo is enough; several become several templates.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Enroll the largest face of a photo that shows several.
    #[arg(long)]
    pub largest: bool,
    /// Add templates to a person who is already enrolled.
    #[arg(long)]
    pub append: bool,
    /// Free-form JSON object stored with the person (e.g. '{"badge": 1042}').
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
    /// Enroll even when the face matches another enrolled person (twins, a look-alike).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct IdentifyArgs {
    pub image: PathBuf,
    /// How many candidate people to list per face.
    #[arg(long, default_value_t = 1)]
    pub top: usize,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    pub image: PathBuf,
    /// The person the face claims to be.
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum GalleryCommand {
    /// Everyone enrolled, with their number of templates.
    List,
    /// One person and their templates.
    Show { name: String },
    /// Forget a person: every template (and crop) is deleted.
    Remove { name: String },
    /// Write the gallery (people, metadata, embeddings; no crops) to a JSON file (`-`:
    /// standard output). The file is readable by its owner only.
    Export {
        file: PathBuf,
        /// Overwrite the file when it exists.
        #[arg(long)]
        force: bool,
    },
    /// Add the people of an exported JSON file; refuses names already enrolled.
    Import { file: PathBuf },
}

pub fn enroll(cfg: &Config, args: &EnrollArgs, json_out: bool) -> Result<(), Error> {
    let metadata: serde_json::Value = match &args.metadata {
        None => json!({}),
        Some(text) => {
            serde_json::from_str(text).map_err(|e| Error::Rejected(format!("--metadata is not JSON: {e}")))?
        }
    };
    let photos = args
        .images
        .iter()
        .map(|path| {
            Ok(Photo {
                label: path.display().to_string(),
                image: read_image_file(path, &cfg.images)?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut engine = FaceEngine::load(&cfg.models, &cfg.inference, &cfg.detector)?;
    let mut gallery = Gallery::open_or_create(&cfg.gallery, engine.model_id())?;
    let request = EnrollRequest {
        name: args.name.clone(),
        photos,
        largest: args.largest,
        append: args.append,
        metadata,
        force: args.force,
    };
    let done = enroll::enroll(&mut engine, &mut gallery, &cfg.enroll_rules(), request)?;
    print(json_out, &done.to_json(), || done.to_text());
    Ok(())
}

#[derive(Debug, Serialize)]
struct IdentifiedFace {
    #[serde(rename = "box")]
    bbox: [f32; 4],
    score: f32,
    person: Option<serde_json::Value>,
    similarity: Option<f32>,
    decision: MatchDecision,
    quality: Quality,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    candidates: Vec<Candidate>,
}

pub fn identify(cfg: &Config, args: &IdentifyArgs, json_out: bool) -> Result<(), Error> {
    let img = load_image(&args.image, &cfg.images)?;
    let mut engine = FaceEngine::load(&cfg.models, &cfg.inference, &cfg.detector)?;
    let gallery = Gallery::open(&cfg.gallery, engine.model_id())?;
    let detected = engine.aligned_faces(&img)?;
    if detected.is_empty() {
        return Err(Error::NoFace {
            path: args.image.clone(),
        });
    }
    let gate = &cfg.gallery.quality;
    let good: Vec<&image::RgbImage> = detected
        .iter()
        .filter(|s| s.quality.failure(gate).is_none())
        .map(|s| &s.crop)
        .collect();
    let mut embeddings = engine.embed_crops(&good)?.into_iter();
    let mut faces = Vec::with_capacity(detected.len());
    for s in &detected {
        let face = match s.quality.failure(gate) {
            Some(reason) => IdentifiedFace::low_quality(s, reason),
            None => {
                let emb = embeddings.next().unwrap_or_default();
                IdentifiedFace::matched(s, &gallery, &emb, args.top)
            }
        };
        faces.push(face);
    }
    let out = json!({"image": args.image.display().to_string(), "faces": faces});
    print(json_out, &out, || {
        let mut s = format!("{}: {} face(s)", args.image.display(), faces.len());
        for (i, f) in faces.iter().enumerate() {
            s.push_str(&format!("\n  #{} {}", i + 1, f.to_text()));
        }
        s
    });
    Ok(())
}

impl IdentifiedFace {
    fn low_quality(face: &AlignedFace, reason: String) -> IdentifiedFace {
        IdentifiedFace {
            bbox: face.detection.bbox,
            score: face.detection.score,
            person: None,
            similarity: None,
            decision: MatchDecision::LowQuality,
            quality: face.quality,
            reason: Some(reason),
            candidates: vec![],
        }
    }

    fn matched(face: &AlignedFace, gallery: &Gallery, embedding: &[f32], top: usize) -> IdentifiedFace {
        let cfg = gallery.config();
        let (decision, _) = gallery.identify(embedding, cfg.threshold);
        let candidates = gallery.candidates(embedding, top.max(2));
        let best = candidates.first();
        IdentifiedFace {
            bbox: face.detection.bbox,
            score: face.detection.score,
            person: (decision == MatchDecision::Match)
                .then(|| best.map(|c| json!({"id": c.person_id, "name": c.name})))
                .flatten(),
            similarity: best.map(|c| c.similarity),
            decision,
            quality: face.quality,
            reason: unknown_reason(&candidates, cfg.threshold, cfg.margin),
            candidates: if top > 1 {
                candidates.into_iter().take(top).collect()
            } else {
                vec![]
            },
        }
    }

    fn to_text(&self) -> String {
        let [x, y, w, h] = self.bbox;
        let who = match (&self.person, self.decision) {
            (Some(p), _) => format!(
                "{} (similarity {:.3})",
                p["name"].as_str().unwrap_or("?"),
                self.similarity.unwrap_or(0.0)
            ),
            (None, MatchDecision::LowQuality) => format!("low quality: {}", self.reason.as_deref().unwrap_or("")),
            (None, _) => format!("unknown: {}", self.reason.as_deref().unwrap_or("")),
        };
        let mut s = format!("box {x:.0},{y:.0} {w:.0}×{h:.0}: {who}");
        for (rank, c) in self.candidates.iter().enumerate() {
            s.push_str(&format!("\n      {}. {} {:.3}", rank + 1, c.name, c.similarity));
        }
        s
    }
}

pub fn verify(cfg: &Config, args: &VerifyArgs, json_out: bool) -> Result<(), Error> {
    let mut engine = FaceEngine::load(&cfg.models, &cfg.inference, &cfg.detector)?;
    let gallery = Gallery::open(&cfg.gallery, engine.model_id())?;
    if gallery.store().person(&args.name)?.is_none() {
        return Err(Error::Rejected(format!("no person named {:?} is enrolled", args.name)));
    }
    let img = load_image(&args.image, &cfg.images)?;
    let mut samples = engine.aligned_faces(&img)?;
    samples.sort_by(|a, b| b.detection.area().total_cmp(&a.detection.area()));
    let sample = samples.into_iter().next().ok_or_else(|| Error::NoFace {
        path: args.image.clone(),
    })?;
    let threshold = cfg.gallery.threshold;
    let out = if let Some(reason) = sample.quality.failure(&cfg.gallery.quality) {
        json!({"name": args.name, "match": false, "similarity": null, "threshold": threshold,
               "decision": MatchDecision::LowQuality, "reason": reason})
    } else {
        let emb = engine.embed_crops(&[&sample.crop])?.remove(0);
        let similarity = gallery.verify(&emb, &args.name)?;
        let is_match = verified(similarity, threshold);
        json!({"name": args.name, "match": is_match, "similarity": similarity, "threshold": threshold,
               "decision": if is_match { MatchDecision::Match } else { MatchDecision::Unknown }})
    };
    print(json_out, &out, || match out["match"].as_bool() {
        Some(true) => format!(
            "match: {} (similarity {:.3} ≥ {:.3})",
            args.name,
            out["similarity"].as_f64().unwrap_or(0.0),
            threshold
        ),
        _ if out["decision"] == "low_quality" => format!("no decision: {}", out["reason"].as_str().unwrap_or("")),
        _ => format!(
            "no match for {} (similarity {:.3} < {:.3})",
            args.name,
            out["similarity"].as_f64().unwrap_or(0.0),
            threshold
        ),
    });
    if out["match"].as_bool() == Some(true) {
        Ok(())
    } else {
        Err(Error::NotVerified)
    }
}

pub fn gallery(cfg: &Config, cmd: &GalleryCommand, json_out: bool) -> Result<(), Error> {
    match cmd {
        GalleryCommand::List => list(cfg, json_out),
        GalleryCommand::Show { name } => show(cfg, name, json_out),
        GalleryCommand::Remove { name } => {
            let n = Store::open(&cfg.gallery.path)?.remove(name);
            crate::gallery::log_removal(name, &n);
            let n = n?;
            print(json_out, &json!({"removed": name, "templates": n}), || {
                format!("removed {name} and {n} template(s)")
            });
            Ok(())
        }
        GalleryCommand::Export { file, force } => export_to(cfg, file, *force, json_out),
        GalleryCommand::Import { file } => import_from(cfg, file, json_out),
    }
}

fn list(cfg: &Config, json_out: bool) -> Result<(), Error> {
    let persons = Store::open(&cfg.gallery.path)?.persons()?;
    print(json_out, &json!({"persons": persons}), || {
        let mut s = format!("{} person(s) in {}", persons.len(), cfg.gallery.path.display());
        for p in &persons {
            s.push_str(&format!(
                "\n  {}  ({} template(s), enrolled {})",
                p.name, p.templates, p.created
            ));
        }
        s
    });
    Ok(())
}

fn show(cfg: &Config, name: &str, json_out: bool) -> Result<(), Error> {
    let store = Store::open(&cfg.gallery.path)?;
    let p = store
        .person(name)?
        .ok_or_else(|| Error::Rejected(format!("no person named {name:?} is enrolled")))?;
    let templates = store.templates_of(p.id)?;
    print(json_out, &json!({"person": p, "templates": templates}), || {
        let mut s = format!(
            "{} (person {}, enrolled {}, metadata {})",
            p.name, p.id, p.created, p.metadata
        );
        for t in &templates {
            s.push_str(&format!(
                "\n  template {}  quality {:.2}  model {}  source {}",
                t.id,
                t.quality,
                t.model,
                &t.source_sha256[..12.min(t.source_sha256.len())]
            ));
        }
        s
    });
    Ok(())
}

/// Writes the export to `file` (`-`: standard output). A file is created readable by its
/// owner only (it holds biometric templates), beside the target and renamed into place, so
/// a crash never leaves half a file; an existing file is kept unless `force`.
fn export_to(cfg: &Config, file: &Path, force: bool, json_out: bool) -> Result<(), Error> {
    let doc = export::export(&Store::open(&cfg.gallery.path)?)?;
    let n = doc.persons.len();
    let text = serde_json::to_string(&doc).map_err(|e| Error::Gallery(e.to_string()))?;
    if file == Path::new("-") {
        println!("{text}");
        return Ok(());
    }
    let fail = |reason: String| Error::Input {
        path: file.to_path_buf(),
        reason,
    };
    if file.exists() && !force {
        return Err(Error::Rejected(format!(
            "{}: exists; pass --force to overwrite it",
            file.display()
        )));
    }
    let tmp = file.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    };
    write().map_err(|e| fail(format!("cannot write: {e}")))?;
    print(
        json_out,
        &json!({"exported": n, "file": file.display().to_string()}),
        || format!("exported {n} person(s) to {}", file.display()),
    );
    Ok(())
}

fn import_from(cfg: &Config, file: &Path, json_out: bool) -> Result<(), Error> {
    let input = |reason: String| Error::Input {
        path: file.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|e| input(e.to_string()))?;
    let doc = export::parse(&text).map_err(input)?;
    let model = model_id(&cfg.models.resolve(&cfg.models.embedder))?;
    let mut store = Store::open_or_create(&cfg.gallery.path)?;
    let n =
        export::import(&mut store, &doc, &model).map_err(|e| Error::Rejected(format!("{}: {e}", file.display())))?;
    print(json_out, &json!({"imported": n}), || format!("imported {n} person(s)"));
    Ok(())
}
