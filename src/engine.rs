//! The face engine: detector and embedder sessions behind one object that turns an image
//! into faces and faces into encodings.

use image::RgbImage;

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::inference::{InferenceConfig, Libraries, Library, Provider, Runtime};
use crate::vision::align::align_face;
use crate::vision::detector::{Detector, DetectorConfig};
use crate::vision::embedder::{Embedder, Embedding};
use crate::vision::geometry::Detection;
use crate::vision::liveness::cnn::PassiveCnn;
use crate::vision::quality::Quality;
use serde::{Deserialize, Serialize};

/// Model files and the ONNX Runtime library, as `models/fetch` lays them out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Folder holding the prepared models. A relative one is looked for in the working
    /// directory, then beside the configuration file, then in the install locations
    /// ([`ModelsConfig::candidates`]).
    pub dir: PathBuf,
    /// YuNet detector, relative to `dir` unless absolute.
    pub detector: PathBuf,
    /// SFace embedder, relative to `dir` unless absolute.
    pub embedder: PathBuf,
    /// ONNX Runtime shared library, relative to `dir` unless absolute: the CPU build, or
    /// the CUDA build.
    pub runtime_library: PathBuf,
    /// ONNX Runtime with the OpenVINO provider (`models/fetch --openvino`), relative to
    /// `dir` unless absolute; loaded instead of `runtime_library` when the device is
    /// OpenVINO. The provider's and OpenVINO's libraries must sit beside it.
    pub openvino_library: PathBuf,
    /// Liveness: Silent-Face MiniFASNetV2 (crop ×2.7), relative to `dir` unless absolute.
    pub antispoof_v2: PathBuf,
    /// Liveness: Silent-Face MiniFASNetV1SE (crop ×4.0), relative to `dir` unless absolute.
    pub antispoof_v1se: PathBuf,
    /// Where relative paths are looked for; filled in by `Config::load`.
    #[serde(skip)]
    pub search: ModelSearch,
}

/// What model path resolution needs besides the paths: the configuration file's folder and
/// where each `models.*` value came from, for the error that lists what was tried.
#[derive(Debug, Clone, Default)]
pub struct ModelSearch {
    /// Folder of the configuration file that was read (absolute).
    pub config_dir: Option<PathBuf>,
    /// `dir`, `detector`, … → `--models`, `FACEGATE__MODELS__DIR`, the file's path or `the default`.
    pub origins: std::collections::BTreeMap<String, String>,
}

/// Install locations of the prepared models, relative to the folder of the binary
/// (`/usr/bin` → `/usr/lib/facegate/models`, as `deploy/install.sh` lays them out), then
/// the system-wide one.
const BESIDE_BINARY: [(&str, &str); 2] = [
    ("models", "beside the binary"),
    ("../lib/facegate/models", "installed with the binary"),
];
pub const SYSTEM_MODELS_DIR: &str = "/usr/lib/facegate/models";

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            dir: PathBuf::from("models/prepared"),
            detector: PathBuf::from("face_detection_yunet_2023mar.onnx"),
            embedder: PathBuf::from("face_recognition_sface_2021dec.onnx"),
            runtime_library: PathBuf::from("libonnxruntime.so"),
            openvino_library: PathBuf::from(crate::inference::OPENVINO_RUNTIME_LIBRARY),
            antispoof_v2: PathBuf::from("minifasnet_v2_2.7_80x80.onnx"),
            antispoof_v1se: PathBuf::from("minifasnet_v1se_4.0_80x80.onnx"),
            search: ModelSearch::default(),
        }
    }
}

impl ModelsConfig {
    /// Where `file` is looked for, in order, each with why. An absolute `file` or `dir` is
    /// the only place; a relative `dir` is tried in the working directory, beside the
    /// configuration file, then beside the binary and in [`SYSTEM_MODELS_DIR`].
    pub fn candidates(&self, field: &str, file: &Path) -> Vec<(PathBuf, String)> {
        let origin = |f: &str| {
            self.search
                .origins
                .get(f)
                .cloned()
                .unwrap_or_else(|| "the default".into())
        };
        if file.is_absolute() {
            return vec![(file.to_path_buf(), format!("models.{field} from {}", origin(field)))];
        }
        let given = format!("models.dir {:?} from {}", self.dir, origin("dir"));
        if self.dir.is_absolute() {
            return vec![(self.dir.join(file), given)];
        }
        let mut out = vec![(
            std::path::absolute(&self.dir)
                .unwrap_or_else(|_| self.dir.clone())
                .join(file),
            format!("{given}, in the working directory"),
        )];
        if let Some(config_dir) = &self.search.config_dir {
            out.push((
                config_dir.join(&self.dir).join(file),
                "beside the configuration file".into(),
            ));
        }
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf));
        for (below, why) in BESIDE_BINARY {
            if let Some(dir) = &exe_dir {
                let dir = match below.strip_prefix("../") {
                    Some(rest) => dir.parent().unwrap_or(dir).join(rest),
                    None => dir.join(below),
                };
                out.push((dir.join(file), why.into()));
            }
        }
        out.push((Path::new(SYSTEM_MODELS_DIR).join(file), "system-wide".into()));
        let mut seen = std::collections::HashSet::new();
        out.retain(|(p, _)| seen.insert(p.clone()));
        out
    }

    /// The first place that holds `file`, else the first place it was looked for (whose
    /// error then says "no such file").
    pub fn resolve(&self, file: &Path) -> PathBuf {
        let tried = self.candidates("dir", file);
        tried
            .iter()
            .find(|(p, _)| p.is_file())
            .or(tried.first())
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| self.dir.join(file))
    }

    /// The file that `models.{field}` names, found; the error lists every place tried.
    pub fn locate(&self, field: &str) -> Result<PathBuf, String> {
        let file = match field {
            "detector" => &self.detector,
            "embedder" => &self.embedder,
            "runtime_library" => &self.runtime_library,
            "openvino_library" => &self.openvino_library,
            "antispoof_v2" => &self.antispoof_v2,
            "antispoof_v1se" => &self.antispoof_v1se,
            _ => return Err(format!("models.{field} is not a model key")),
        };
        let tried = self.candidates(field, file);
        if let Some((found, why)) = tried.iter().find(|(p, _)| p.is_file()) {
            tracing::debug!(path = %found.display(), %why, "models.{field} found");
            return Ok(found.clone());
        }
        let places: Vec<String> = tried
            .iter()
            .map(|(p, why)| format!("{} ({why})", p.display()))
            .collect();
        let fix = if tried.len() > 1 { "dir" } else { field };
        let fetch = match field {
            "openvino_library" => "models/fetch --openvino",
            _ => "models/fetch",
        };
        Err(format!(
            "no such file (run {fetch}, or set models.{fix}); tried {}",
            places.join(", ")
        ))
    }
}

impl ModelsConfig {
    /// The ONNX Runtime builds `runtime_library` and `openvino_library` name, each found or
    /// with why not; the device decides which one is loaded.
    pub fn libraries(&self) -> Libraries {
        let library = |field: &str, configured: &Path| Library {
            configured: configured.to_path_buf(),
            found: self.locate(field),
        };
        Libraries {
            runtime: library("runtime_library", &self.runtime_library),
            openvino: library("openvino_library", &self.openvino_library),
        }
    }

    pub fn validate(&self, prefix: &str) -> Vec<String> {
        [
            ("detector", &self.detector),
            ("embedder", &self.embedder),
            ("runtime_library", &self.runtime_library),
            ("openvino_library", &self.openvino_library),
            ("antispoof_v2", &self.antispoof_v2),
            ("antispoof_v1se", &self.antispoof_v1se),
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
    /// Kept for the models loaded after the engine (the liveness CNN) to share.
    runtime: Runtime,
}

/// A detected face with its aligned 112×112 crop (taken from the full-resolution image)
/// and its measured quality.
pub struct AlignedFace {
    pub detection: Detection,
    pub crop: RgbImage,
    pub quality: Quality,
}

impl FaceEngine {
    /// Loads ONNX Runtime (the build the device needs) and both models.
    pub fn load(m: &ModelsConfig, inference: &InferenceConfig, detector: &DetectorConfig) -> Result<FaceEngine, Error> {
        // The runtime first, so that a missing one is the error, as it always was.
        let runtime = Runtime::load(&m.libraries(), inference)?;
        let model = |field: &str, path: &Path| {
            m.locate(field).map_err(|reason| Error::Model {
                path: path.to_path_buf(),
                reason,
            })
        };
        let detector_path = model("detector", &m.detector)?;
        let embedder_path = model("embedder", &m.embedder)?;
        let mut detector = Detector::new(runtime.session(&detector_path)?, detector.clone())?;
        if detector.config().refine_above_px > 0.0 {
            detector = detector.with_refine_session(runtime.session(&detector_path)?);
        }
        let embedder = Embedder::new(runtime.session(&embedder_path)?, inference.embed_batch)?;
        let model_id = model_id(&embedder_path)?;
        Ok(FaceEngine {
            detector,
            embedder,
            provider: runtime.provider(),
            model_id,
            runtime,
        })
    }

    /// Runs the detector on black frames of `frame` size in batches of up to `max_frames`
    /// and the embedder in every batch size it uses (see [`Detector::warm_up`]).
    pub fn warm_up(&mut self, frame: (u32, u32), max_frames: usize) -> Result<(), Error> {
        self.detector.warm_up(frame.0, frame.1, max_frames)?;
        self.embedder.warm_up()
    }

    /// The ONNX Runtime environment the engine's sessions run in, on its provider.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The passive liveness CNN (`models.antispoof_v2` and `models.antispoof_v1se`), on
    /// the engine's runtime and provider.
    pub fn passive_cnn(&self, m: &ModelsConfig) -> Result<PassiveCnn, Error> {
        PassiveCnn::load(m, &self.runtime)
    }

    /// Which device runs the models and why (see [`Runtime::choice`]).
    pub fn device_choice(&self) -> &str {
        self.runtime.choice()
    }

    /// The embedding model's id (see [`model_id`]).
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Every face of `img` with its aligned crop and quality measures, best first.
    pub fn aligned_faces(&mut self, img: &RgbImage) -> Result<Vec<AlignedFace>, Error> {
        Ok(self.aligned_faces_batch(&[img])?.pop().unwrap_or_default())
    }

    /// [`FaceEngine::aligned_faces`] of several images, detected together where their
    /// sizes allow (see [`Detector::detect_batch`]).
    pub fn aligned_faces_batch(&mut self, imgs: &[&RgbImage]) -> Result<Vec<Vec<AlignedFace>>, Error> {
        let found = self.detector.detect_batch(imgs)?;
        imgs.iter()
            .zip(found)
            .map(|(img, faces)| {
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
            })
            .collect()
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The detector itself, for timing its model alone (`facegate bench`).
    pub fn detector_mut(&mut self) -> &mut Detector {
        &mut self.detector
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
