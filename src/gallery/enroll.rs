//! Enrollment: the one path by which a face enters the gallery, shared by `facegate enroll`
//! and the `cmd/enroll` MQTT command, so that both follow the same rules:
//! - the name rule of [`normalize_name`];
//! - a photo showing several faces is refused unless the largest is asked for;
//! - the quality gate (`gallery.quality`) applies to the face taken;
//! - every photo is checked before anything is stored, and all templates of one request
//!   are stored in one transaction: all or nothing;
//! - `gallery.store_crops` decides whether the aligned crop is kept.

use std::io::Cursor;
use std::path::PathBuf;

use image::RgbImage;
use serde::Serialize;

use super::Gallery;
use super::store::{NewTemplate, Person};
use crate::engine::{AlignedFace, FaceEngine};
use crate::error::Error;
use crate::vision::image_io::{EncodedImage, ImageLimits, decode_image};

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
}

impl Enrollment {
    /// The JSON both the CLI (`--json`) and `cmd/result` report.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "person": {"id": self.person.id, "name": self.person.name},
            "templates": self.faces,
        })
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

/// Checks every photo, embeds the chosen faces, and stores them in one transaction.
pub fn enroll(
    engine: &mut FaceEngine,
    gallery: &mut Gallery,
    limits: &ImageLimits,
    request: EnrollRequest,
) -> Result<Enrollment, Error> {
    let name = normalize_name(&request.name)?;
    if !request.metadata.is_object() {
        return Err(Error::Rejected("metadata must be a JSON object".into()));
    }
    if request.photos.is_empty() {
        return Err(Error::Rejected("no photo to enroll".into()));
    }
    let mut chosen: Vec<(&Photo, AlignedFace)> = Vec::with_capacity(request.photos.len());
    for photo in &request.photos {
        let face = choose_face(engine, gallery, limits, photo, request.largest)?;
        chosen.push((photo, face));
    }
    let crops: Vec<&RgbImage> = chosen.iter().map(|(_, f)| &f.crop).collect();
    let embeddings = engine.embed_crops(&crops)?;
    let store_crops = gallery.config().store_crops;
    let mut templates = Vec::with_capacity(chosen.len());
    for ((photo, face), embedding) in chosen.iter().zip(embeddings) {
        templates.push(NewTemplate {
            embedding,
            model: engine.model_id().to_string(),
            quality: face.quality.score(),
            source_sha256: photo.image.sha256_hex(),
            crop: if store_crops { Some(png(&face.crop)?) } else { None },
        });
    }
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
    Ok(Enrollment { person, faces })
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
