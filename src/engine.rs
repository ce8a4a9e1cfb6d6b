//! The face engine: detector and embedder sessions behind one object that turns an image
//! into faces and faces into encodings.

use image::RgbImage;

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::inference::{InferenceConfig, Provider, Runtime};
use crate::vision::align::align_face;
use crate::vision::detector::{Detector, DetectorConfig};
use crate::vision::embedder::{Embedder, Embedding};
use crate::vision::geometry::Detection;
use crate::vision::quality::Quality;
use serde::{Deserialize, Serialize};

/// Model files and the ONNX Runtime library, as `models/fetch` lays them out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Folder holding the prepared models; relative paths are taken from the working directory.
    pub dir: PathBuf,
    /// YuNet detector, relative to `dir` unless absolute.
    pub detector: PathBuf,
    /// SFace embedder, relative to `dir` unless absolute.
    pub embedder: PathBuf,
    /// ONNX Runtime shared library, relative to `dir` unless absolute.
    pub runtime_library: PathBuf,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            dir: PathBuf::from("models/prepared"),
            detector: PathBuf::from("face_detection_yunet_2023mar.onnx"),
            embedder: PathBuf::from("face_recognition_sface_2021dec.onnx"),
            runtime_library: PathBuf::from("libonnxruntime.so"),
        }
    }
}

impl ModelsConfig {
    pub fn resolve(&self, file: &Path) -> PathBuf {
        if file.is_absolute() {
            file.to_path_buf()
        } else {
            self.dir.join(file)
        }
    }
}

impl ModelsConfig {
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        [
            ("detector", &self.detector),
            ("embedder", &self.embedder),
            ("runtime_library", &self.runtime_library),
        ]
        .into_iter()
        .filter(|(_, file)| file.as_os_str().is_empty())
        .map(|(key, _)| format!("{prefix}.{key}: must name a file"))
        .collect()
    }
}

pub struct FaceEngine {
    detector: Detector,
    embedder: Embedder,
    provider: Provider,
    model_id: String,
}

/// A detected face with its aligned 112×112 crop (taken from the full-resolution image)
/// and its measured quality.
pub struct AlignedFace {
    pub detection: Detection,
    pub crop: RgbImage,
    pub quality: Quality,
}

impl FaceEngine {
    /// Loads ONNX Runtime and both models.
    pub fn load(m: &ModelsConfig, inference: &InferenceConfig, detector: &DetectorConfig) -> Result<FaceEngine, Error> {
        let runtime = Runtime::load(&m.resolve(&m.runtime_library), inference)?;
        let detector = Detector::new(runtime.session(&m.resolve(&m.detector))?, detector.clone())?;
        let embedder_path = m.resolve(&m.embedder);
        let embedder = Embedder::new(runtime.session(&embedder_path)?, inference.embed_batch)?;
        let model_id = model_id(&embedder_path)?;
        Ok(FaceEngine {
            detector,
            embedder,
            provider: runtime.provider(),
            model_id,
        })
    }

    /// The embedding model's id (see [`model_id`]).
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Every face of `img` with its aligned crop and quality measures, best first.
    pub fn aligned_faces(&mut self, img: &RgbImage) -> Result<Vec<AlignedFace>, Error> {
        let faces = self.detect(img)?;
        let crops = self.align(img, &faces)?;
        Ok(faces
            .into_iter()
            .zip(crops)
            .map(|(detection, crop)| {
                let quality = Quality::measure(&detection, &crop);
                AlignedFace {
                    detection,
                    crop,
                    quality,
                }
            })
            .collect())
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Faces in `img`, best first, in `img`'s pixel coordinates.
    pub fn detect(&mut self, img: &RgbImage) -> Result<Vec<Detection>, Error> {
        self.detector.detect(img)
    }

    /// The aligned 112×112 crops of `faces`, taken from the full-resolution `img`.
    pub fn align(&self, img: &RgbImage, faces: &[Detection]) -> Result<Vec<RgbImage>, Error> {
        faces
            .iter()
            .map(|f| {
                align_face(img, &f.landmarks).ok_or_else(|| Error::Inference {
                    model: "aligner",
                    reason: format!("degenerate landmarks {:?}", f.landmarks),
                })
            })
            .collect()
    }

    /// One L2-normalised encoding per face, in order.
    pub fn embed(&mut self, img: &RgbImage, faces: &[Detection]) -> Result<Vec<Embedding>, Error> {
        let crops = self.align(img, faces)?;
        self.embed_crops(&crops.iter().collect::<Vec<_>>())
    }

    /// Encodings of already aligned crops.
    pub fn embed_crops(&mut self, crops: &[&RgbImage]) -> Result<Vec<Embedding>, Error> {
        self.embedder.embed(crops)
    }
}

/// Identifies the embedding model by the SHA-256 of its file (the first 16 hex digits):
/// templates of different models are never compared, and renaming or moving the same file
/// changes nothing.
pub fn model_id(path: &Path) -> Result<String, Error> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| Error::Model {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Whether two model ids name the same model. Ids written before the id became the digest
/// alone are `file-stem:digest`; only the digest counts.
pub fn same_model(a: &str, b: &str) -> bool {
    let digest = |id: &str| id.rsplit(':').next().unwrap_or(id).to_string();
    digest(a) == digest(b)
}

/// The face with the largest box, the one a door camera or an ID photo is about.
pub fn largest_face(faces: &[Detection]) -> Option<&Detection> {
    faces.iter().max_by(|a, b| a.area().total_cmp(&b.area()))
}
