//! Where identity fades, measured on the sample photos: how close a face's encoding stays
//! to the encoding of the same face in its original photo (cosine) as the face shrinks in
//! source pixels, and as the photo is blurred, with the quality measures at each step.
//! The quality gate's defaults (`gallery.quality`) come from these tables.
//!
//! cargo run --release --example quality_sweep -- [MODELS_DIR [PHOTO...]]
//! (photos: the six sample photos unless given, e.g. `models/prepared/heldout/*`)

use std::path::PathBuf;

use facegate::engine::{AlignedFace, FaceEngine, ModelsConfig};
use facegate::inference::{Device, InferenceConfig};
use facegate::vision::detector::DetectorConfig;
use facegate::vision::geometry::{Detection, iou};
use facegate::vision::image_io::{ImageLimits, load_image};
use facegate::vision::quality::sharpness;
use facegate::vision::resize::resize_area;
use facegate::vision::similarity::cosine;
use image::RgbImage;

/// Face widths, in source pixels, that the size sweep shrinks faces to.
const WIDTHS: [f32; 11] = [14.0, 18.0, 22.0, 26.0, 30.0, 36.0, 42.0, 50.0, 60.0, 80.0, 100.0];
/// Gaussian blur, as a fraction of the face's width (σ = 12 on a 400-px face is 0.03).
const BLURS: [f32; 9] = [0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06, 0.08];

struct Reference {
    photo: usize,
    detection: Detection,
    embedding: Vec<f32>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models/prepared"));
    let models = ModelsConfig {
        dir: dir.clone(),
        ..ModelsConfig::default()
    };
    let inference = InferenceConfig {
        device: Device::Cpu,
        ..InferenceConfig::default()
    };
    let mut engine = FaceEngine::load(&models, &inference, &DetectorConfig::default())?;
    let mut paths: Vec<PathBuf> = std::env::args().skip(2).map(PathBuf::from).collect();
    if paths.is_empty() {
        paths = (1..=6).map(|i| dir.join(format!("samples/sample{i}.jpg"))).collect();
    }
    let photos: Vec<RgbImage> = paths
        .iter()
        .map(|p| load_image(p, &ImageLimits::default()))
        .collect::<Result<_, _>>()?;
    let mut refs = Vec::new();
    for (photo, img) in photos.iter().enumerate() {
        let faces = engine.aligned_faces(img)?;
        let crops: Vec<&RgbImage> = faces.iter().map(|f| &f.crop).collect();
        for (face, embedding) in faces.iter().zip(engine.embed_crops(&crops)?) {
            if face.detection.score >= 0.8 {
                refs.push(Reference {
                    photo,
                    detection: face.detection.clone(),
                    embedding,
                });
            }
        }
    }
    eprintln!("{} reference faces", refs.len());
    size_sweep(&mut engine, &photos, &refs)?;
    blur_sweep(&mut engine, &photos, &refs)?;
    Ok(())
}

/// The face in `faces` that overlaps `target` most (IoU ≥ 0.3), with its encoding.
fn find(engine: &mut FaceEngine, faces: &[AlignedFace], target: &[f32; 4]) -> Option<(AlignedFace, Vec<f32>)> {
    let best = faces
        .iter()
        .map(|f| (iou(&f.detection.bbox, target), f))
        .filter(|(o, _)| *o >= 0.3)
        .max_by(|a, b| a.0.total_cmp(&b.0))?
        .1;
    let embedding = engine.embed_crops(&[&best.crop]).ok()?.remove(0);
    Some((
        AlignedFace {
            detection: best.detection.clone(),
            crop: best.crop.clone(),
            quality: best.quality,
        },
        embedding,
    ))
}

/// Blur measures of one aligned crop: the Laplacian variance of the 112-px crop (the gate
/// before), of the crop shrunk to 32 px (so that a small face, upscaled into the crop, is
/// not taken for a blurred one), and the latter divided by the crop's luma variance
/// (contrast).
fn measures(crop: &RgbImage) -> [f32; 3] {
    let small = resize_area(crop, 32, 32);
    let luma: Vec<f32> = small
        .pixels()
        .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
        .collect();
    let mean = luma.iter().sum::<f32>() / luma.len() as f32;
    let var = luma.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / luma.len() as f32;
    let s32 = sharpness(&small);
    [sharpness(crop), s32, s32 / var.max(1.0)]
}

const MEASURES: [&str; 3] = [
    "laplacian var, 112 px",
    "laplacian var, 32 px",
    "laplacian var / luma var, 32 px",
];

fn size_sweep(
    engine: &mut FaceEngine,
    photos: &[RgbImage],
    refs: &[Reference],
) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "| face width, source px | faces | detected | cosine mean | cosine min | share ≥ 0.5 | lowest blur measures (112 / 32 / 32 norm.) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for width in WIDTHS {
        let mut cosines = Vec::new();
        let mut lowest = [f32::INFINITY; 3];
        let mut tried = 0;
        for r in refs.iter().filter(|r| r.detection.bbox[2] >= width * 1.25) {
            tried += 1;
            let scale = width / r.detection.bbox[2];
            let img = &photos[r.photo];
            let (w, h) = (
                (img.width() as f32 * scale).round().max(1.0) as u32,
                (img.height() as f32 * scale).round().max(1.0) as u32,
            );
            let small = resize_area(img, w, h);
            let faces = engine.aligned_faces(&small)?;
            let target = r.detection.bbox.map(|v| v * scale);
            if let Some((f, e)) = find(engine, &faces, &target) {
                cosines.push(cosine(&e, &r.embedding));
                for (l, m) in lowest.iter_mut().zip(measures(&f.crop)) {
                    *l = l.min(m);
                }
            }
        }
        println!(
            "| {width:.0} | {tried} | {} | {} | {:.1} / {:.1} / {:.3} |",
            cosines.len(),
            stats(&cosines),
            lowest[0],
            lowest[1],
            lowest[2]
        );
    }
    println!();
    Ok(())
}

fn blur_sweep(
    engine: &mut FaceEngine,
    photos: &[RgbImage],
    refs: &[Reference],
) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "| blur σ / face width | faces | detected | cosine mean | cosine min | share ≥ 0.5 | sharpness mean | sharpness max of faces < 0.5 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut points: Vec<([f32; 3], f32)> = Vec::new();
    for blur in BLURS {
        let mut cosines = Vec::new();
        let mut sharp = Vec::new();
        let mut sharp_lost = Vec::new();
        let mut tried = 0;
        for r in refs.iter().filter(|r| r.detection.bbox[2] >= 40.0) {
            tried += 1;
            let sigma = blur * r.detection.bbox[2];
            let img = &photos[r.photo];
            let blurred = if sigma > 0.0 {
                image::imageops::blur(img, sigma)
            } else {
                img.clone()
            };
            let faces = engine.aligned_faces(&blurred)?;
            if let Some((f, e)) = find(engine, &faces, &r.detection.bbox) {
                let c = cosine(&e, &r.embedding);
                cosines.push(c);
                sharp.push(f.quality.sharpness);
                points.push((measures(&f.crop), c));
                if c < 0.5 {
                    sharp_lost.push(f.quality.sharpness);
                }
            }
        }
        let mean_sharp = sharp.iter().sum::<f32>() / sharp.len().max(1) as f32;
        let lost = sharp_lost.iter().copied().fold(f32::NAN, f32::max);
        print!("| {blur} | {tried} | {} | ", cosines.len());
        print!("{} ", stats(&cosines));
        println!("| {mean_sharp:.1} | {lost:.1} |");
    }
    println!();
    for (k, name) in MEASURES.iter().enumerate() {
        // Gates at the blur measure of the sharpest face whose identity was lost, and at
        // fractions of the measure's range.
        let lost_max = points
            .iter()
            .filter(|(_, c)| *c < 0.5)
            .map(|(m, _)| m[k])
            .fold(0.0, f32::max);
        println!("{name}: highest value among faces below cosine 0.5: {lost_max:.3}");
        println!("| gate: {name} ≥ | faces kept | cosine mean | cosine min | share ≥ 0.5 |");
        println!("|---|---|---|---|---|");
        for factor in [0.5, 1.0, 1.5, 2.0, 3.0] {
            let gate = lost_max * factor;
            let kept: Vec<f32> = points.iter().filter(|(m, _)| m[k] >= gate).map(|(_, c)| *c).collect();
            println!("| {gate:.3} | {} | {} |", kept.len(), stats(&kept));
        }
        println!();
    }
    Ok(())
}

fn stats(cosines: &[f32]) -> String {
    if cosines.is_empty() {
        return "– | – | –".into();
    }
    let mean = cosines.iter().sum::<f32>() / cosines.len() as f32;
    let min = cosines.iter().copied().fold(f32::INFINITY, f32::min);
    let good = cosines.iter().filter(|c| **c >= 0.5).count() as f32 / cosines.len() as f32;
    format!("{mean:.3} | {min:.3} | {good:.2}")
}
