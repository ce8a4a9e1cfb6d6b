//! The face engine: detector and embedder sessions behind one object that turns an image
//! into faces and faces into encodings.

use image::RgbImage;

use crate::config::Config;
use crate::error::Error;
use crate::inference::{Provider, Runtime};
use crate::vision::align::align_face;
use crate::vision::detector::Detector;
use crate::vision::embedder::{Embedder, Embedding};
use crate::vision::geometry::Detection;

pub struct FaceEngine {
    detector: Detector,
    embedder: Embedder,
    provider: Provider,
}

impl FaceEngine {
    /// Loads ONNX Runtime and both models as `cfg` says.
    pub fn load(cfg: &Config) -> Result<FaceEngine, Error> {
        let m = &cfg.models;
        let runtime = Runtime::load(&m.resolve(&m.runtime_library), &cfg.inference)?;
        let detector = Detector::new(runtime.session(&m.resolve(&m.detector))?, cfg.detector.clone())?;
        let embedder = Embedder::new(runtime.session(&m.resolve(&m.embedder))?, cfg.inference.embed_batch)?;
        Ok(FaceEngine {
            detector,
            embedder,
            provider: runtime.provider(),
        })
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

/// The face with the largest box, the one a door camera or an ID photo is about.
pub fn largest_face(faces: &[Detection]) -> Option<&Detection> {
    faces.iter().max_by(|a, b| a.area().total_cmp(&b.area()))
}
