//! Liveness cue: a passive CNN, Silent-Face MiniFASNet (minivision-ai, Apache-2.0), that
//! tells a live face from a printed photo or a screen by the artefacts of recapture.
//!
//! Two networks look at the same face with different amounts of context: MiniFASNetV2 at
//! the face box scaled by 2.7, MiniFASNetV1SE at 4.0. Each gives three logits whose
//! softmax index 1 is "real"; as in the original, the two probabilities are averaged.
//! `models/convert_minifasnet.py` rebuilt both as ONNX: N×3×80×80, BGR, float 0–255.
//!
//! The crop geometry and the input layout are pure functions; [`PassiveCnn`] runs them
//! around two ONNX Runtime sessions.

use std::path::{Path, PathBuf};

use image::RgbImage;
use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;

use crate::engine::ModelsConfig;
use crate::error::Error;
use crate::inference::Runtime;
use crate::vision::geometry::Detection;
use crate::vision::resize::{crop, resize_rgb};

/// Side of the square network input.
pub const INPUT_SIDE: u32 = 80;
/// The softmax index of "real" (0 and 2 are the two kinds of attack).
pub const REAL_CLASS: usize = 1;
/// How far each network's crop reaches around the face box: V2, then V1SE.
pub const CROP_SCALES: [f32; 2] = [2.7, 4.0];
const CLASSES: usize = 3;
/// Most faces sent to a network in one call: bounds the input tensor on crowded frames.
const MAX_BATCH: usize = 16;
const MODEL: &str = "liveness cnn";

/// A rectangle of whole pixels inside an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropRect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// The region a MiniFASNet sees for the face `bbox` (`[x, y, w, h]`) in an image of
/// `image_w × image_h`: the box scaled by `scale` about its centre, keeping the box's
/// aspect ratio (the network was trained on such crops, squeezed to 80×80), scaled less
/// when it would not fit, and moved back inside the image where it overflows. Corners are
/// truncated to whole pixels and both included, as the original crops them. `None` for an
/// empty image, a non-finite box or one without area.
pub fn crop_rect(image_w: u32, image_h: u32, bbox: [f32; 4], scale: f32) -> Option<CropRect> {
    let [x, y, w, h] = bbox.map(f64::from);
    let scale = f64::from(scale);
    let finite = [x, y, w, h, scale].iter().all(|v| v.is_finite());
    if image_w == 0 || image_h == 0 || !finite || w <= 0.0 || h <= 0.0 || scale <= 0.0 {
        return None;
    }
    let (max_x, max_y) = (f64::from(image_w - 1), f64::from(image_h - 1));
    let scale = scale.min(max_x / w).min(max_y / h);
    let (half_w, half_h) = (w * scale / 2.0, h * scale / 2.0);
    let (cx, cy) = (x + w / 2.0, y + h / 2.0);
    let (left, right) = shift_inside(cx - half_w, cx + half_w, max_x);
    let (top, bottom) = shift_inside(cy - half_h, cy + half_h, max_y);
    // `as` truncates toward zero; clamped first so that rounding error cannot leave the image.
    let px = |v: f64, max: f64| v.clamp(0.0, max) as u32;
    let (l, r) = (px(left, max_x), px(right, max_x));
    let (t, b) = (px(top, max_y), px(bottom, max_y));
    Some(CropRect {
        x: l,
        y: t,
        width: r - l + 1,
        height: b - t + 1,
    })
}

/// `[lo, hi]` moved by the least amount that puts it inside `[0, max]` (it fits: the
/// scale was limited so that it does).
fn shift_inside(lo: f64, hi: f64, max: f64) -> (f64, f64) {
    let (lo, hi) = if lo < 0.0 { (0.0, hi - lo) } else { (lo, hi) };
    if hi > max { (lo - (hi - max), max) } else { (lo, hi) }
}

/// The 80×80 input image of one network for the face `bbox`: [`crop_rect`], then resized
/// (area averaging when shrinking, bilinear when enlarging; see [`resize_rgb`]).
pub fn face_crop(image: &RgbImage, bbox: [f32; 4], scale: f32) -> Result<RgbImage, String> {
    let r = crop_rect(image.width(), image.height(), bbox, scale).ok_or_else(|| {
        format!(
            "no crop for face box {bbox:?} in a {}×{} image",
            image.width(),
            image.height()
        )
    })?;
    let region = crop(image, r.x, r.y, r.width, r.height);
    resize_rgb(&region, INPUT_SIDE, INPUT_SIDE)
}

/// Lays 80×80 crops out as MiniFASNet wants them: N×3×80×80, BGR planes, float 0–255,
/// no mean or scale. Fails on a crop of another size.
pub fn cnn_input(crops: &[RgbImage]) -> Result<Array4<f32>, String> {
    let s = INPUT_SIDE as usize;
    let plane = s * s;
    let mut t = Array4::<f32>::zeros((crops.len(), 3, s, s));
    let data = t
        .as_slice_mut()
        .ok_or_else(|| "input tensor is not contiguous".to_string())?;
    for (crop, out) in crops.iter().zip(data.chunks_exact_mut(3 * plane)) {
        if crop.dimensions() != (INPUT_SIDE, INPUT_SIDE) {
            return Err(format!("crop is {}×{}, not {s}×{s}", crop.width(), crop.height()));
        }
        for (at, p) in crop.as_raw().chunks_exact(3).enumerate() {
            out[at] = f32::from(p[2]);
            out[plane + at] = f32::from(p[1]);
            out[2 * plane + at] = f32::from(p[0]);
        }
    }
    Ok(t)
}

/// Softmax probability of [`REAL_CLASS`] from one face's logits (shifted by the largest
/// logit so that `exp` cannot overflow).
pub fn real_probability(logits: &[f32]) -> f32 {
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - top).exp()).sum();
    match logits.get(REAL_CLASS) {
        Some(&l) if sum > 0.0 => (l - top).exp() / sum,
        _ => 0.0,
    }
}

/// One MiniFASNet and the crop scale it was trained with.
struct Net {
    session: Session,
    input_name: String,
    scale: f32,
}

impl Net {
    /// Checks that the session is a MiniFASNet as converted: one N×3×80×80 input.
    fn new(session: Session, scale: f32, path: &Path) -> Result<Net, Error> {
        let bad = |reason: String| Error::Model {
            path: path.to_path_buf(),
            reason,
        };
        let input = session
            .inputs()
            .first()
            .ok_or_else(|| bad("model has no input".into()))?;
        let side = i64::from(INPUT_SIDE);
        match input.dtype().tensor_shape().map(|s| s.to_vec()) {
            Some(shape) if shape.len() == 4 && shape[1..] == [3, side, side] => {}
            other => {
                return Err(bad(format!(
                    "input shape {other:?} is not [N, 3, {side}, {side}]: not a converted MiniFASNet"
                )));
            }
        }
        let input_name = input.name().to_string();
        Ok(Net {
            session,
            input_name,
            scale,
        })
    }

    /// Adds this network's "real" probability of each face (an image and a box in its
    /// pixels) to `sums`.
    fn accumulate(&mut self, faces: &[(&RgbImage, [f32; 4])], sums: &mut [f32]) -> Result<(), Error> {
        let fail = |reason: String| Error::Inference { model: MODEL, reason };
        let ort_fail = |e: ort::Error| fail(e.to_string());
        for (chunk, out) in faces.chunks(MAX_BATCH).zip(sums.chunks_mut(MAX_BATCH)) {
            let crops = chunk
                .iter()
                .map(|(image, bbox)| face_crop(image, *bbox, self.scale))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            let tensor = cnn_input(&crops).map_err(fail)?;
            let outputs = self
                .session
                .run(ort::inputs![self.input_name.as_str() => TensorRef::from_array_view(&tensor).map_err(ort_fail)?])
                .map_err(ort_fail)?;
            let (_, logits) = outputs[0].try_extract_tensor::<f32>().map_err(ort_fail)?;
            if logits.len() != chunk.len() * CLASSES {
                return Err(fail(format!(
                    "expected {}×{CLASSES} logits, got {}",
                    chunk.len(),
                    logits.len()
                )));
            }
            for (sum, face_logits) in out.iter_mut().zip(logits.chunks_exact(CLASSES)) {
                *sum += real_probability(face_logits);
            }
        }
        Ok(())
    }
}

/// The passive CNN cue: MiniFASNetV2 and MiniFASNetV1SE, scored together.
pub struct PassiveCnn {
    nets: [Net; 2],
}

impl PassiveCnn {
    /// Finds `models.antispoof_v2` and `models.antispoof_v1se` as the engine finds its
    /// models, and opens them on `runtime` in FP32 whatever `inference.precision` says:
    /// the decision thresholds were set on FP32 scores (see also `FaceEngine::passive_cnn`).
    pub fn load(models: &ModelsConfig, runtime: &Runtime) -> Result<PassiveCnn, Error> {
        let locate = |field: &str, configured: &PathBuf| {
            models.locate(field).map_err(|reason| Error::Model {
                path: configured.clone(),
                reason,
            })
        };
        let v2 = locate("antispoof_v2", &models.antispoof_v2)?;
        let v1se = locate("antispoof_v1se", &models.antispoof_v1se)?;
        PassiveCnn::new(
            (runtime.fp32_session(&v2)?, v2.as_path()),
            (runtime.fp32_session(&v1se)?, v1se.as_path()),
        )
    }

    /// From sessions already open, each with the path it was loaded from (for errors).
    pub fn new(v2: (Session, &Path), v1se: (Session, &Path)) -> Result<PassiveCnn, Error> {
        let [s2, s1se] = CROP_SCALES;
        Ok(PassiveCnn {
            nets: [Net::new(v2.0, s2, v2.1)?, Net::new(v1se.0, s1se, v1se.1)?],
        })
    }

    /// The probability, 0–1, that each face of `faces` (boxes in `image`'s pixels) is a
    /// live face rather than a photo or a screen, in order: the mean of the two networks'
    /// softmax "real" outputs. Faces go through each network in batches.
    pub fn score(&mut self, image: &RgbImage, faces: &[Detection]) -> Result<Vec<f32>, Error> {
        let faces: Vec<(&RgbImage, [f32; 4])> = faces.iter().map(|f| (image, f.bbox)).collect();
        self.score_faces(&faces)
    }

    /// Scores a face-sized box of a black image once in each batch size up to
    /// `max_faces` (at most the networks' batch), so that the first faces do not wait on
    /// the provider's first call of each shape.
    pub fn warm_up(&mut self, max_faces: usize) -> Result<(), Error> {
        let black = RgbImage::new(320, 320);
        for n in 1..=max_faces.clamp(1, MAX_BATCH) {
            self.score_faces(&vec![(&black, [120.0, 120.0, 80.0, 80.0]); n])?;
        }
        Ok(())
    }

    /// As [`PassiveCnn::score`], for faces of several images (frames of several cameras)
    /// that share each network's calls.
    pub fn score_faces(&mut self, faces: &[(&RgbImage, [f32; 4])]) -> Result<Vec<f32>, Error> {
        let mut sums = vec![0.0f32; faces.len()];
        if faces.is_empty() {
            return Ok(sums);
        }
        for net in &mut self.nets {
            net.accumulate(faces, &mut sums)?;
        }
        let n = self.nets.len() as f32;
        Ok(sums.into_iter().map(|s| s / n).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: u32, y: u32, width: u32, height: u32) -> Option<CropRect> {
        Some(CropRect { x, y, width, height })
    }

    #[test]
    fn a_face_in_the_middle_is_scaled_about_its_centre_without_squaring() {
        // Box 40×60 centred on (100, 100): ×2 is 80×120 from (60, 40) to (140, 160).
        assert_eq!(
            crop_rect(400, 300, [80.0, 70.0, 40.0, 60.0], 2.0),
            rect(60, 40, 81, 121)
        );
        // Fractional corners are truncated, not rounded.
        assert_eq!(
            crop_rect(400, 300, [80.6, 70.6, 40.0, 60.0], 2.0),
            rect(60, 40, 81, 121)
        );
    }

    #[test]
    fn a_crop_that_overflows_is_moved_inside_with_its_size() {
        // Near the top-left corner: ×2 of a 40×40 box at (0, 10) reaches (-20, -10).
        assert_eq!(crop_rect(400, 300, [0.0, 10.0, 40.0, 40.0], 2.0), rect(0, 0, 81, 81));
        // Near the bottom-right corner: ends at (399, 299), the last pixels.
        assert_eq!(
            crop_rect(400, 300, [370.0, 270.0, 30.0, 30.0], 2.0),
            rect(339, 239, 61, 61)
        );
        // A box partly outside the image is handled the same way.
        assert_eq!(crop_rect(100, 100, [-10.0, 90.0, 20.0, 20.0], 2.0), rect(0, 59, 41, 41));
    }

    #[test]
    fn the_scale_shrinks_to_what_the_image_holds() {
        // 2.7 × 200 = 540 > 479: the scale drops to 479/200 for both sides, so the crop
        // spans the whole width and keeps the box's aspect ratio.
        let r = crop_rect(480, 640, [140.0, 100.0, 200.0, 240.0], 2.7).unwrap();
        assert_eq!((r.x, r.width), (0, 480));
        let height = 240.0 * 479.0 / 200.0;
        assert_eq!(r.height, height as u32 + 1);
        assert!(r.y + r.height <= 640);
        // Same in the other direction.
        let r = crop_rect(640, 100, [300.0, 20.0, 50.0, 60.0], 4.0).unwrap();
        assert_eq!((r.y, r.height), (0, 100));
    }

    #[test]
    fn degenerate_boxes_and_images_have_no_crop() {
        assert_eq!(crop_rect(0, 10, [0.0, 0.0, 5.0, 5.0], 2.7), None);
        assert_eq!(crop_rect(10, 10, [0.0, 0.0, 0.0, 5.0], 2.7), None);
        assert_eq!(crop_rect(10, 10, [f32::NAN, 0.0, 5.0, 5.0], 2.7), None);
        assert_eq!(crop_rect(10, 10, [0.0, 0.0, 5.0, 5.0], 0.0), None);
        // A one-pixel image still gives its one pixel.
        assert_eq!(crop_rect(1, 1, [0.0, 0.0, 1.0, 1.0], 2.7), rect(0, 0, 1, 1));
    }

    #[test]
    fn crops_stay_inside_the_image_for_any_box() {
        for (i, &(w, h)) in [(640u32, 480u32), (37, 1000), (3, 3)].iter().enumerate() {
            for k in 0..200 {
                let f = (k * 7 + i * 13) as f32;
                let bbox = [
                    f % 700.0 - 50.0,
                    (f * 3.1) % 900.0 - 40.0,
                    1.0 + f % 300.0,
                    1.0 + (f * 1.7) % 250.0,
                ];
                for scale in CROP_SCALES {
                    let r = crop_rect(w, h, bbox, scale).unwrap();
                    assert!(r.width >= 1 && r.height >= 1, "{r:?}");
                    assert!(r.x + r.width <= w && r.y + r.height <= h, "{bbox:?} in {w}×{h}: {r:?}");
                }
            }
        }
    }

    #[test]
    fn face_crop_is_the_input_size_and_from_the_right_place() {
        // Left half red, right half blue; a face box well inside the right half.
        let img = RgbImage::from_fn(400, 200, |x, _| {
            if x < 200 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        });
        let crop = face_crop(&img, [280.0, 80.0, 20.0, 20.0], 2.7).unwrap();
        assert_eq!(crop.dimensions(), (INPUT_SIDE, INPUT_SIDE));
        assert!(crop.pixels().all(|p| p.0 == [0, 0, 255]));
        // A tiny image is enlarged to the input size.
        let small = RgbImage::from_pixel(10, 12, image::Rgb([9, 8, 7]));
        let up = face_crop(&small, [2.0, 2.0, 6.0, 6.0], 4.0).unwrap();
        assert_eq!(up.dimensions(), (INPUT_SIDE, INPUT_SIDE));
        assert!(face_crop(&small, [f32::NAN, 0.0, 1.0, 1.0], 2.7).is_err());
    }

    #[test]
    fn input_is_bgr_planar_and_unscaled() {
        let a = RgbImage::from_fn(INPUT_SIDE, INPUT_SIDE, |x, y| image::Rgb([10, 20, (x + y) as u8]));
        let b = RgbImage::from_pixel(INPUT_SIDE, INPUT_SIDE, image::Rgb([255, 0, 1]));
        let t = cnn_input(&[a, b]).unwrap();
        assert_eq!(t.shape(), &[2, 3, 80, 80]);
        assert_eq!((t[[0, 0, 3, 9]], t[[0, 1, 3, 9]], t[[0, 2, 3, 9]]), (12.0, 20.0, 10.0));
        assert_eq!(
            (t[[1, 0, 79, 79]], t[[1, 1, 79, 79]], t[[1, 2, 79, 79]]),
            (1.0, 0.0, 255.0)
        );
        assert!(cnn_input(&[RgbImage::new(80, 79)]).is_err());
    }

    #[test]
    fn softmax_of_the_real_class() {
        assert!((real_probability(&[0.0, 0.0, 0.0]) - 1.0 / 3.0).abs() < 1e-6);
        // ln 2 and ln 1: the real class has 2/(1+2+1).
        assert!((real_probability(&[0.0, 2f32.ln(), 0.0]) - 0.5).abs() < 1e-6);
        // Large logits do not overflow.
        assert!((real_probability(&[1000.0, 1000.0, -1000.0]) - 0.5).abs() < 1e-6);
        assert_eq!(real_probability(&[1.0]), 0.0);
    }
}
