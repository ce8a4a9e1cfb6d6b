//! Gallery commands: enroll, identify, verify, and `gallery list|show|remove|export|import`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::json;

use super::print;
use crate::config::Config;
use crate::engine::{FaceEngine, model_id};
use crate::error::Error;
use crate::gallery::Gallery;
use crate::gallery::enroll::{self, EnrollRequest, Photo};
use crate::gallery::export;
use crate::gallery::matcher::{Candidate, MatchDecision};
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
    let mut gallery = Gallery::open(&cfg.gallery, engine.model_id())?;
    let request = EnrollRequest {
        name: args.name.clone(),
        photos,
        largest: args.largest,
        append: args.append,
        metadata,
    };
    let done = enroll::enroll(&mut engine, &mut gallery, &cfg.images, request)?;
    print(json_out, &done.to_json(), || {
        format!(
            "enrolled {} (person {}) with {} template(s)",
            done.person.name,
            done.person.id,
            done.faces.len()
        )
    });
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
    let mut engine = FaceEngine::load(&cfg.models, &cfg.inference, &cfg.detector)?;
    let gallery = Gallery::open(&cfg.gallery, engine.model_id())?;
    let img = load_image(&args.image, &cfg.images)?;
    let samples = engine.aligned_faces(&img)?;
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
                decision: MatchDecision::LowQuality,
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
            person: (decision == MatchDecision::Match)
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
                (None, MatchDecision::LowQuality) => format!("low quality: {}", f.reason.as_deref().unwrap_or("")),
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
        let is_match = similarity >= threshold;
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
    Ok(())
}

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
            let doc = export::export(&store)?;
            let n = doc.persons.len();
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
            let input = |reason: String| Error::Input {
                path: file.clone(),
                reason,
            };
            let text = std::fs::read_to_string(file).map_err(|e| input(e.to_string()))?;
            let doc = export::parse(&text).map_err(input)?;
            let model = model_id(&cfg.models.resolve(&cfg.models.embedder))?;
            let n = export::import(&mut store, &doc, &model)
                .map_err(|e| Error::Rejected(format!("{}: {e}", file.display())))?;
            print(json_out, &json!({"imported": n}), || format!("imported {n} person(s)"));
        }
    }
    Ok(())
}
