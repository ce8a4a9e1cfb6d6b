//! Enrollment: the one path by which a face enters the gallery, shared by `facegate enroll`
//! and the `cmd/enroll` MQTT command, so that both follow the same rules:
//! - the name rule of [`normalize_name`];
//! - a photo showing several faces is refused unless the largest is asked for;
//! - the quality gate (`gallery.quality`) applies to the face taken;
//! - the photos given for one name must show the same person (the `compare` rule between
//!   every two of them, and against the person's templates when appending);
//! - a face that already matches another enrolled person (the gallery's matching rule) is
//!   refused, naming that person, unless forced: otherwise both would come out `unknown`;
//! - appending a photo that is already a template of the person (same SHA-256) adds
//!   nothing and says so; appending to a name that is not enrolled is refused;
//! - every photo is checked before anything is stored, and all templates of one request
//!   are stored in one transaction: all or nothing;
//! - `gallery.store_crops` decides whether the aligned crop is kept;
//! - every enrollment is logged with the name and its outcome.

use std::io::Cursor;
use std::path::PathBuf;

use image::RgbImage;
use serde::Serialize;

use super::Gallery;
use super::matcher::{MatchDecision, same_person};
use super::store::{NewTemplate, Person};
use crate::engine::{AlignedFace, FaceEngine};
use crate::error::Error;
use crate::vision::image_io::{EncodedImage, ImageLimits, decode_image};
use crate::vision::similarity::cosine;

/// Longest person name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// One photo of an enrollment request and where it came from (a file path, or a label
/// such as `image` for a photo received over MQTT), for messages.
pub struct Photo {
    pub label: String,
    pub image: EncodedImage,
}

/// Enroll `name` from `photos` (one template per photo).
pub struct EnrollRequest {
    pub name: String,
    pub photos: Vec<Photo>,
    /// Take the largest face of a photo that shows several, instead of refusing it.
    pub largest: bool,
    /// Add templates to a person already enrolled, instead of refusing a name in use.
    pub append: bool,
    /// A JSON object stored with a new person.
    pub metadata: serde_json::Value,
    /// Enroll even when a face matches another enrolled person.
    pub force: bool,
}

/// The rules an enrollment is held to, from the configuration.
pub struct EnrollRules {
    pub limits: ImageLimits,
    /// Two photos show the same person at or above this similarity (`recognition.threshold`,
    /// the rule of `compare`).
    pub same_person_threshold: f32,
}

/// The face taken from one photo.
#[derive(Debug, Clone, Serialize)]
pub struct EnrolledFace {
    pub template_id: i64,
    pub photo: String,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub score: f32,
    pub quality: f32,
}

/// What an enrollment stored.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub person: Person,
    pub faces: Vec<EnrolledFace>,
    /// Photos given with `append` that are already templates of the person: not added.
    pub already_enrolled: Vec<String>,
}

impl Enrollment {
    /// The JSON both the CLI (`--json`) and `cmd/result` report.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "person": {"id": self.person.id, "name": self.person.name},
            "templates": self.faces,
            "already_enrolled": self.already_enrolled,
        })
    }

    /// What happened, for a person to read.
    pub fn to_text(&self) -> String {
        let mut s = if self.faces.is_empty() {
            format!("nothing added to {} (person {})", self.person.name, self.person.id)
        } else {
            format!(
                "enrolled {} (person {}) with {} new template(s)",
                self.person.name,
                self.person.id,
                self.faces.len()
            )
        };
        for f in &self.faces {
            let [x, y, w, h] = f.bbox;
            s.push_str(&format!(
                "\n  {}: face at {x:.0},{y:.0} {w:.0}×{h:.0}, score {:.2}, quality {:.2}",
                f.photo, f.score, f.quality
            ));
        }
        for photo in &self.already_enrolled {
            s.push_str(&format!(
                "\n  {photo}: already a template of {}, not added again",
                self.person.name
            ));
        }
        s
    }
}

/// The name rule: surrounding white space is dropped; what is left must be 1–200
/// characters without control characters.
pub fn normalize_name(raw: &str) -> Result<String, Error> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(Error::Rejected(format!(
            "invalid name {raw:?}: 1–{MAX_NAME_CHARS} characters without control characters"
        )));
    }
    Ok(name.to_string())
}

/// Checks every photo, embeds the chosen faces, checks them against each other and the
/// gallery, and stores them in one transaction. Logs the outcome.
pub fn enroll(
    engine: &mut FaceEngine,
    gallery: &mut Gallery,
    rules: &EnrollRules,
    request: EnrollRequest,
) -> Result<Enrollment, Error> {
    let name = request.name.clone();
    let result = enroll_checked(engine, gallery, rules, request);
    match &result {
        Ok(done) => tracing::info!(
            name = %done.person.name,
            added = done.faces.len(),
            already_enrolled = done.already_enrolled.len(),
            "enrollment done"
        ),
        // At info: a refusal is an answer, not a fault of the daemon (the CLI prints it).
        Err(e) => tracing::info!(name = %name, error = %e, "enrollment refused"),
    }
    result
}

fn enroll_checked(
    engine: &mut FaceEngine,
    gallery: &mut Gallery,
    rules: &EnrollRules,
    request: EnrollRequest,
) -> Result<Enrollment, Error> {
    let name = normalize_name(&request.name)?;
    if !request.metadata.is_object() {
        return Err(Error::Rejected("metadata must be a JSON object".into()));
    }
    if request.photos.is_empty() {
        return Err(Error::Rejected("no photo to enroll".into()));
    }
    let target = target_person(gallery, &name, request.append)?;
    let (photos, already_enrolled) = split_known_photos(gallery, target.as_ref(), &request.photos)?;
    if photos.is_empty() {
        let person = target.ok_or_else(|| Error::Rejected("no photo to enroll".into()))?;
        return Ok(Enrollment {
            person,
            faces: Vec::new(),
            already_enrolled,
        });
    }
    let mut chosen: Vec<(&Photo, AlignedFace)> = Vec::with_capacity(photos.len());
    for photo in photos {
        let face = choose_face(engine, gallery, &rules.limits, photo, request.largest)?;
        chosen.push((photo, face));
    }
    let crops: Vec<&RgbImage> = chosen.iter().map(|(_, f)| &f.crop).collect();
    let embeddings = engine.embed_crops(&crops)?;
    let labels: Vec<&str> = chosen.iter().map(|(p, _)| p.label.as_str()).collect();
    check_same_person(
        gallery,
        target.as_ref(),
        &labels,
        &embeddings,
        rules.same_person_threshold,
    )?;
    if !request.force {
        check_nobody_else(gallery, target.as_ref(), &labels, &embeddings)?;
    }
    let templates = new_templates(engine.model_id(), gallery.config().store_crops, &chosen, embeddings)?;
    let (person, ids) = gallery.enroll(&name, &request.metadata, templates, request.append)?;
    let faces = ids
        .into_iter()
        .zip(&chosen)
        .map(|(template_id, (photo, face))| EnrolledFace {
            template_id,
            photo: photo.label.clone(),
            bbox: face.detection.bbox,
            score: face.detection.score,
            quality: face.quality.score(),
        })
        .collect();
    Ok(Enrollment {
        person,
        faces,
        already_enrolled,
    })
}

/// The person appended to (`append`), or `None` for a new one; a name already taken
/// without `append`, or missing with it, is refused here, before any photo is decoded.
fn target_person(gallery: &Gallery, name: &str, append: bool) -> Result<Option<Person>, Error> {
    match (gallery.store().person(name)?, append) {
        (Some(p), false) => Err(Error::Rejected(format!(
            "a person named {:?} is already enrolled (use --append to add photos)",
            p.name
        ))),
        (None, true) => Err(Error::Rejected(format!(
            "no person named {name:?} is enrolled: enroll without --append first"
        ))),
        (person, _) => Ok(person),
    }
}

/// Splits the photos into those to enroll and the labels of those that are already
/// templates of the person (or given twice).
fn split_known_photos<'a>(
    gallery: &Gallery,
    target: Option<&Person>,
    photos: &'a [Photo],
) -> Result<(Vec<&'a Photo>, Vec<String>), Error> {
    let mut known: std::collections::HashSet<String> = match target {
        Some(p) => gallery
            .store()
            .templates_of(p.id)?
            .into_iter()
            .map(|t| t.source_sha256)
            .collect(),
        None => Default::default(),
    };
    let (mut fresh, mut repeated) = (Vec::new(), Vec::new());
    for photo in photos {
        if known.insert(photo.image.sha256_hex()) {
            fresh.push(photo);
        } else {
            repeated.push(photo.label.clone());
        }
    }
    Ok((fresh, repeated))
}

/// Every two new faces, and every new face against the person's templates, must be the
/// same person by the `compare` rule.
fn check_same_person(
    gallery: &Gallery,
    target: Option<&Person>,
    labels: &[&str],
    embeddings: &[Vec<f32>],
    threshold: f32,
) -> Result<(), Error> {
    for i in 0..embeddings.len() {
        for j in i + 1..embeddings.len() {
            let s = cosine(&embeddings[i], &embeddings[j]);
            if !same_person(s, threshold) {
                return Err(Error::Rejected(format!(
                    "{} and {} do not show the same person (similarity {s:.3} < {threshold:.3}); enroll them under different names",
                    labels[i], labels[j]
                )));
            }
        }
    }
    let Some(person) = target else { return Ok(()) };
    for (label, e) in labels.iter().zip(embeddings) {
        let best = gallery.verify(e, &person.name)?;
        if !same_person(best, threshold) {
            return Err(Error::Rejected(format!(
                "{label} does not show {} (best similarity to their templates {best:.3} < {threshold:.3})",
                person.name
            )));
        }
    }
    Ok(())
}

/// No new face may already match another enrolled person by the gallery's rule.
fn check_nobody_else(
    gallery: &Gallery,
    target: Option<&Person>,
    labels: &[&str],
    embeddings: &[Vec<f32>],
) -> Result<(), Error> {
    let threshold = gallery.config().threshold;
    for (label, e) in labels.iter().zip(embeddings) {
        let (decision, candidates) = gallery.identify(e, threshold);
        let Some(best) = candidates.first() else { continue };
        let someone_else = target.is_none_or(|p| p.id != best.person_id);
        if decision == MatchDecision::Match && someone_else {
            return Err(Error::Rejected(format!(
                "{label}: this face matches {}, who is already enrolled (similarity {:.3} ≥ {threshold:.3}); \
                 pass --force (over MQTT: \"force\": true) if they really are different people",
                best.name, best.similarity
            )));
        }
    }
    Ok(())
}

fn new_templates(
    model: &str,
    store_crops: bool,
    chosen: &[(&Photo, AlignedFace)],
    embeddings: Vec<Vec<f32>>,
) -> Result<Vec<NewTemplate>, Error> {
    chosen
        .iter()
        .zip(embeddings)
        .map(|((photo, face), embedding)| {
            Ok(NewTemplate {
                embedding,
                model: model.to_string(),
                quality: face.quality.score(),
                source_sha256: photo.image.sha256_hex(),
                crop: if store_crops { Some(png(&face.crop)?) } else { None },
            })
        })
        .collect()
}

/// The face of `photo` to enroll: its only face, or its largest when `largest`; refused
/// below the quality gate.
fn choose_face(
    engine: &mut FaceEngine,
    gallery: &Gallery,
    limits: &ImageLimits,
    photo: &Photo,
    largest: bool,
) -> Result<AlignedFace, Error> {
    let img = decode_image(&photo.image.bytes, limits).map_err(|reason| Error::Input {
        path: PathBuf::from(&photo.label),
        reason,
    })?;
    let mut faces = engine.aligned_faces(&img)?;
    let refuse = |why: String| Error::Rejected(format!("{}: {why}", photo.label));
    if faces.is_empty() {
        return Err(Error::NoFace {
            path: PathBuf::from(&photo.label),
        });
    }
    if faces.len() > 1 && !largest {
        return Err(refuse(format!(
            "{} faces; pass --largest (over MQTT: \"largest\": true) to enroll the largest one",
            faces.len()
        )));
    }
    faces.sort_by(|a, b| b.detection.area().total_cmp(&a.detection.area()));
    let face = faces.swap_remove(0);
    if let Some(why) = face.quality.failure(&gallery.config().quality) {
        return Err(refuse(why));
    }
    Ok(face)
}

/// PNG bytes of an aligned crop, for `store_crops`.
fn png(img: &RgbImage) -> Result<Vec<u8>, Error> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| Error::Inference {
            model: "aligner",
            reason: format!("cannot encode crop: {e}"),
        })?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_rule() {
        assert_eq!(normalize_name("  Ann ").unwrap(), "Ann");
        assert_eq!(normalize_name("José María").unwrap(), "José María");
        for bad in ["", "   ", "A\u{7}nn", "a\nb"] {
            assert!(normalize_name(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_name(&"é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(normalize_name(&"é".repeat(MAX_NAME_CHARS + 1)).is_err());
    }
}
