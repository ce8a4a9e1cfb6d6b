//! Gallery commands: enroll, identify, verify, and `gallery list|show|remove|export|import`.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::print;
use crate::config::Config;
use crate::engine::{FaceEngine, FaceSample, model_id};
use crate::error::Error;
use crate::gallery::Gallery;
use crate::gallery::matcher::{Candidate, Decision, Quality};
use crate::gallery::store::{NewTemplate, Store};
use crate::vision::image_io::decode_image;

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
    /// Write the gallery (people, metadata, embeddings; no crops) to a JSON file.
    Export { file: PathBuf },
    /// Add the people of an exported JSON file; refuses names already enrolled.
    Import { file: PathBuf },
}

/// Reads and decodes an image, also returning the SHA-256 of its bytes.
fn read_photo(path: &Path) -> Result<(image::RgbImage, String), Error> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| Error::Input {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let img = decode_image(&bytes).map_err(|reason| Error::Input {
        path: path.to_path_buf(),
        reason,
    })?;
    let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    Ok((img, digest))
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() || name.trim() != name || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(Error::Rejected(format!(
            "invalid name {name:?}: 1–200 characters, no surrounding spaces or control characters"
        )));
    }
    Ok(())
}

pub fn enroll(cfg: &Config, args: &EnrollArgs, json_out: bool) -> Result<(), Error> {
    check_name(&args.name)?;
    let metadata: serde_json::Value = match &args.metadata {
        None => json!({}),
        Some(text) => match serde_json::from_str(text) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => return Err(Error::Rejected("--metadata must be a JSON object".into())),
        },
    };
    let mut engine = FaceEngine::load(cfg)?;
    let mut gallery = Gallery::open(&cfg.gallery, engine.model_id())?;
    // Every photo is checked before anything is stored: all of them or none.
    let mut chosen: Vec<(PathBuf, String, FaceSample)> = Vec::new();
    for path in &args.images {
        let (img, digest) = read_photo(path)?;
        let mut samples = engine.samples(&img)?;
        let refuse = |why: String| Error::Rejected(format!("{}: {why}", path.display()));
        if samples.is_empty() {
            return Err(Error::NoFace { path: path.clone() });
        }
        if samples.len() > 1 && !args.largest {
            return Err(refuse(format!(
                "{} faces; pass --largest to enroll the largest one",
                samples.len()
            )));
        }
        samples.sort_by(|a, b| b.detection.area().total_cmp(&a.detection.area()));
        let sample = samples.swap_remove(0);
        if let Some(why) = sample.quality.failure(&cfg.gallery.quality) {
            return Err(refuse(why));
        }
        chosen.push((path.clone(), digest, sample));
    }
    let crops: Vec<&image::RgbImage> = chosen.iter().map(|(_, _, s)| &s.crop).collect();
    let embeddings = engine.embed_crops(&crops)?;
    let mut templates = Vec::new();
    for ((_, digest, sample), embedding) in chosen.iter().zip(embeddings) {
        let crop = if cfg.gallery.store_crops {
            Some(png(&sample.crop)?)
        } else {
            None
        };
        templates.push(NewTemplate {
            embedding,
            model: engine.model_id().to_string(),
            quality: sample.quality.score(),
            source_sha256: digest.clone(),
            crop,
        });
    }
    let qualities: Vec<f32> = templates.iter().map(|t| t.quality).collect();
    let (person, ids) = gallery.enroll(&args.name, &metadata, templates, args.append)?;
    let out = json!({
        "person": {"id": person.id, "name": person.name},
        "templates": ids.iter().zip(&chosen).zip(&qualities).map(|((id, (path, _, _)), q)| json!({
            "id": id, "image": path.display().to_string(), "quality": q
        })).collect::<Vec<_>>(),
    });
    print(json_out, &out, || {
        format!(
            "enrolled {} (person {}) with {} template(s)",
            person.name,
            person.id,
            ids.len()
        )
    });
    Ok(())
}

fn png(img: &image::RgbImage) -> Result<Vec<u8>, Error> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| Error::Inference {
            model: "aligner",
            reason: format!("cannot encode crop: {e}"),
        })?;
    Ok(out.into_inner())
}

#[derive(Debug, Serialize)]
struct IdentifiedFace {
    #[serde(rename = "box")]
    bbox: [f32; 4],
    score: f32,
    person: Option<serde_json::Value>,
    similarity: Option<f32>,
    decision: Decision,
    quality: Quality,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    candidates: Vec<Candidate>,
}

pub fn identify(cfg: &Config, args: &IdentifyArgs, json_out: bool) -> Result<(), Error> {
    let mut engine = FaceEngine::load(cfg)?;
    let gallery = Gallery::open(&cfg.gallery, engine.model_id())?;
    let (img, _) = read_photo(&args.image)?;
    let samples = engine.samples(&img)?;
    if samples.is_empty() {
        return Err(Error::NoFace {
            path: args.image.clone(),
        });
    }
    let good: Vec<&image::RgbImage> = samples
        .iter()
        .filter(|s| s.quality.failure(&cfg.gallery.quality).is_none())
        .map(|s| &s.crop)
        .collect();
    let mut embeddings = engine.embed_crops(&good)?.into_iter();
    let threshold = cfg.gallery.threshold;
    let mut faces = Vec::new();
    for s in &samples {
        let d = &s.detection;
        if let Some(reason) = s.quality.failure(&cfg.gallery.quality) {
            faces.push(IdentifiedFace {
                bbox: d.bbox,
                score: d.score,
                person: None,
                similarity: None,
                decision: Decision::LowQuality,
                quality: s.quality,
                reason: Some(reason),
                candidates: vec![],
            });
            continue;
        }
        let emb = embeddings.next().expect("one embedding per good face");
        let (decision, _) = gallery.identify(&emb, threshold);
        let candidates = gallery.candidates(&emb, args.top.max(1));
        let best = candidates.first();
        faces.push(IdentifiedFace {
            bbox: d.bbox,
            score: d.score,
            person: (decision == Decision::Match)
                .then(|| best.map(|c| json!({"id": c.person_id, "name": c.name})))
                .flatten(),
            similarity: best.map(|c| c.similarity),
            decision,
            quality: s.quality,
            reason: None,
            candidates: if args.top > 1 {
                candidates.into_iter().take(args.top).collect()
            } else {
                vec![]
            },
        });
    }
    let out = json!({"image": args.image.display().to_string(), "faces": faces});
    print(json_out, &out, || {
        let mut s = format!("{}: {} face(s)", args.image.display(), faces.len());
        for (i, f) in faces.iter().enumerate() {
            let who = match (&f.person, f.decision) {
                (Some(p), _) => format!(
                    "{} (similarity {:.3})",
                    p["name"].as_str().unwrap_or("?"),
                    f.similarity.unwrap_or(0.0)
                ),
                (None, Decision::LowQuality) => format!("low quality: {}", f.reason.as_deref().unwrap_or("")),
                (None, _) => format!("unknown (best similarity {:.3})", f.similarity.unwrap_or(f32::NAN)),
            };
            s.push_str(&format!(
                "\n  #{} box {:.0},{:.0} {:.0}×{:.0}: {who}",
                i + 1,
                f.bbox[0],
                f.bbox[1],
                f.bbox[2],
                f.bbox[3]
            ));
        }
        s
    });
    Ok(())
}

pub fn verify(cfg: &Config, args: &VerifyArgs, json_out: bool) -> Result<(), Error> {
    let mut engine = FaceEngine::load(cfg)?;
    let gallery = Gallery::open(&cfg.gallery, engine.model_id())?;
    if gallery.store().person(&args.name)?.is_none() {
        return Err(Error::Rejected(format!("no person named {:?} is enrolled", args.name)));
    }
    let (img, _) = read_photo(&args.image)?;
    let mut samples = engine.samples(&img)?;
    samples.sort_by(|a, b| b.detection.area().total_cmp(&a.detection.area()));
    let sample = samples.into_iter().next().ok_or_else(|| Error::NoFace {
        path: args.image.clone(),
    })?;
    let threshold = cfg.gallery.threshold;
    let out = if let Some(reason) = sample.quality.failure(&cfg.gallery.quality) {
        json!({"name": args.name, "match": false, "similarity": null, "threshold": threshold,
               "decision": Decision::LowQuality, "reason": reason})
    } else {
        let emb = engine.embed_crops(&[&sample.crop])?.remove(0);
        let similarity = gallery.verify(&emb, &args.name)?;
        let is_match = similarity >= threshold;
        json!({"name": args.name, "match": is_match, "similarity": similarity, "threshold": threshold,
               "decision": if is_match { Decision::Match } else { Decision::Unknown }})
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
    Ok(())
}

/// The export file: people with their metadata and templates (embeddings, no crops).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportFile {
    format: String,
    version: u32,
    persons: Vec<ExportPerson>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportPerson {
    name: String,
    created: String,
    metadata: serde_json::Value,
    templates: Vec<ExportTemplate>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportTemplate {
    model: String,
    quality: f32,
    source_sha256: String,
    embedding: Vec<f32>,
}

const EXPORT_FORMAT: &str = "facegate-gallery";

pub fn gallery(cfg: &Config, cmd: &GalleryCommand, json_out: bool) -> Result<(), Error> {
    let mut store = Store::open(&cfg.gallery.path)?;
    match cmd {
        GalleryCommand::List => {
            let persons = store.persons()?;
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
        }
        GalleryCommand::Show { name } => {
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
        }
        GalleryCommand::Remove { name } => {
            let n = store.remove(name)?;
            print(json_out, &json!({"removed": name, "templates": n}), || {
                format!("removed {name} and {n} template(s)")
            });
        }
        GalleryCommand::Export { file } => {
            let mut persons = Vec::new();
            for p in store.persons()? {
                let infos = store.templates_of(p.id)?;
                let embs = store.embeddings_of(p.id)?;
                let templates = infos
                    .into_iter()
                    .zip(embs)
                    .map(|(i, (_, embedding, model))| ExportTemplate {
                        model,
                        quality: i.quality,
                        source_sha256: i.source_sha256,
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
            let n = persons.len();
            let doc = ExportFile {
                format: EXPORT_FORMAT.into(),
                version: 1,
                persons,
            };
            let text = serde_json::to_string(&doc).map_err(|e| Error::Gallery(e.to_string()))?;
            // Written beside the target and renamed: a crash never leaves half a file.
            let tmp = file.with_extension("partial");
            std::fs::write(&tmp, text)
                .and_then(|_| std::fs::rename(&tmp, file))
                .map_err(|e| Error::Input {
                    path: file.clone(),
                    reason: format!("cannot write: {e}"),
                })?;
            print(
                json_out,
                &json!({"exported": n, "file": file.display().to_string()}),
                || format!("exported {n} person(s) to {}", file.display()),
            );
        }
        GalleryCommand::Import { file } => {
            let text = std::fs::read_to_string(file).map_err(|e| Error::Input {
                path: file.clone(),
                reason: e.to_string(),
            })?;
            let doc: ExportFile = serde_json::from_str(&text).map_err(|e| Error::Input {
                path: file.clone(),
                reason: format!("not a facegate gallery export: {e}"),
            })?;
            if doc.format != EXPORT_FORMAT || doc.version != 1 {
                return Err(Error::Input {
                    path: file.clone(),
                    reason: format!("unsupported export {} v{}", doc.format, doc.version),
                });
            }
            let ours = model_id(&cfg.models.resolve(&cfg.models.embedder))?;
            let mut problems = Vec::new();
            for p in &doc.persons {
                if store.person(&p.name)?.is_some() {
                    problems.push(format!("{:?} is already enrolled", p.name));
                }
                if let Some(t) = p.templates.iter().find(|t| t.model != ours) {
                    problems.push(format!(
                        "{:?} has templates of model {} (this facegate: {ours})",
                        p.name, t.model
                    ));
                }
                if p.templates
                    .iter()
                    .any(|t| t.embedding.len() != crate::vision::embedder::EMBEDDING_DIM)
                {
                    problems.push(format!("{:?} has an embedding of the wrong length", p.name));
                }
            }
            if !problems.is_empty() {
                return Err(Error::Rejected(format!(
                    "{}: nothing imported: {}",
                    file.display(),
                    problems.join("; ")
                )));
            }
            let mut n = 0;
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
                n += 1;
            }
            print(json_out, &json!({"imported": n}), || format!("imported {n} person(s)"));
        }
    }
    Ok(())
}
