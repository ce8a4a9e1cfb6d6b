//! `facegate bench`: detector milliseconds per frame and embedder milliseconds per face at
//! batch 1 and batch N, on the configured device.

pub mod gallery;

use std::path::PathBuf;
use std::time::Instant;

use image::RgbImage;
use serde::Serialize;

use crate::config::Config;
use crate::engine::FaceEngine;
use crate::error::Error;
use crate::vision::image_io::load_image;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Images to run on (default: the sample photos in <models>/samples).
    pub images: Vec<PathBuf>,
    /// Timed repetitions of each measurement.
    #[arg(long, default_value_t = 20)]
    pub iterations: usize,
    /// Untimed repetitions first, so that lazy allocation is not measured.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// The larger embedder batch to time besides batch 1.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

/// Milliseconds per item over the timed repetitions.
#[derive(Debug, Serialize)]
pub struct Timing {
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub samples: usize,
}

impl Timing {
    pub(crate) fn from_samples(mut per_item_ms: Vec<f64>) -> Timing {
        per_item_ms.sort_by(f64::total_cmp);
        let n = per_item_ms.len().max(1);
        let at = |q: f64| {
            per_item_ms
                .get(((n - 1) as f64 * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        Timing {
            mean_ms: per_item_ms.iter().sum::<f64>() / n as f64,
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            max_ms: per_item_ms.last().copied().unwrap_or(0.0),
            samples: per_item_ms.len(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub provider: &'static str,
    pub intra_threads: usize,
    pub images: usize,
    pub faces: usize,
    /// Whole `detect` call per frame: resize to 640, model, decode, NMS.
    pub detect_ms_per_frame: Timing,
    /// The detector model alone per 640×640 input (the first pass; no refinement).
    pub detect_model_ms_per_frame: Timing,
    /// Embedder per face with one face per call.
    pub embed_ms_per_face_batch1: Timing,
    /// Embedder per face with `batch` faces per call.
    pub embed_ms_per_face_batch_n: Timing,
    pub batch: usize,
}

pub fn run(cfg: &Config, args: &BenchArgs) -> Result<BenchReport, Error> {
    let mut cfg = cfg.clone();
    let batch = args.batch.max(1);
    cfg.inference.embed_batch = batch;
    let mut engine = FaceEngine::load(&cfg.models, &cfg.inference, &cfg.detector)?;
    let paths = if args.images.is_empty() {
        (1..=6)
            .map(|i| {
                cfg.models
                    .resolve(std::path::Path::new(&format!("samples/sample{i}.jpg")))
            })
            .collect()
    } else {
        args.images.clone()
    };
    let images: Vec<RgbImage> = paths
        .iter()
        .map(|p| load_image(p, &cfg.images))
        .collect::<Result<_, _>>()?;

    let mut crops = Vec::new();
    for img in &images {
        let faces = engine.detect(img)?;
        crops.extend(engine.align(img, &faces)?);
    }
    if crops.is_empty() {
        return Err(Error::NoFace { path: paths[0].clone() });
    }

    let mut detect = Vec::new();
    for rep in 0..args.warmup + args.iterations {
        for img in &images {
            let t = Instant::now();
            engine.detect(img)?;
            if rep >= args.warmup {
                detect.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }

    let detect_model = time_detector_model(&mut engine, &images, args)?;

    let crop_refs: Vec<&RgbImage> = crops.iter().collect();
    let mut timed_embed = |size: usize| -> Result<Timing, Error> {
        let group: Vec<&RgbImage> = crop_refs.iter().cycle().take(size).copied().collect();
        let mut per_face = Vec::new();
        for rep in 0..args.warmup + args.iterations {
            let t = Instant::now();
            engine.embed_crops(&group)?;
            if rep >= args.warmup {
                per_face.push(t.elapsed().as_secs_f64() * 1e3 / size as f64);
            }
        }
        Ok(Timing::from_samples(per_face))
    };
    let embed1 = timed_embed(1)?;
    let embed_n = timed_embed(batch)?;

    let report = BenchReport {
        provider: engine.provider().as_str(),
        intra_threads: cfg.inference.intra_threads,
        images: images.len(),
        faces: crops.len(),
        detect_ms_per_frame: Timing::from_samples(detect),
        detect_model_ms_per_frame: detect_model,
        embed_ms_per_face_batch1: embed1,
        embed_ms_per_face_batch_n: embed_n,
        batch,
    };
    Ok(report)
}

/// The detector model alone, per frame, on the inputs of `images` prepared beforehand.
fn time_detector_model(engine: &mut FaceEngine, images: &[RgbImage], args: &BenchArgs) -> Result<Timing, Error> {
    let detector = engine.detector_mut();
    let inputs: Vec<_> = images
        .iter()
        .map(|img| detector.model_input(img))
        .collect::<Result<_, _>>()?;
    let mut per_frame = Vec::new();
    for rep in 0..args.warmup + args.iterations {
        for input in &inputs {
            let t = Instant::now();
            detector.run_model(input)?;
            if rep >= args.warmup {
                per_frame.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    Ok(Timing::from_samples(per_frame))
}

impl BenchReport {
    pub fn to_text(&self) -> String {
        let t = |t: &Timing| format!("mean {:.2} ms, p50 {:.2}, p90 {:.2}", t.mean_ms, t.p50_ms, t.p90_ms);
        [
            format!(
                "provider {} ({} intra-op threads; 0 = ORT default)",
                self.provider, self.intra_threads
            ),
            format!(
                "detector, per frame ({} images):  {}",
                self.images,
                t(&self.detect_ms_per_frame)
            ),
            format!(
                "detector model alone, per frame: {}",
                t(&self.detect_model_ms_per_frame)
            ),
            format!(
                "embedder, per face, batch 1:      {}",
                t(&self.embed_ms_per_face_batch1)
            ),
            format!(
                "embedder, per face, batch {}:      {}",
                self.batch,
                t(&self.embed_ms_per_face_batch_n)
            ),
        ]
        .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_quantiles() {
        let t = Timing::from_samples((1..=10).map(f64::from).collect());
        assert_eq!(t.mean_ms, 5.5);
        assert_eq!(t.p50_ms, 6.0);
        assert_eq!(t.p90_ms, 9.0);
        assert_eq!(t.samples, 10);
    }
}
