//! YuNet face detector: letterbox pre-processing, stride decoding and NMS as pure
//! functions, and a thin wrapper that runs them around an ONNX Runtime session.
//!
//! The reference decoder is OpenCV's `FaceDetectorYN` (objdetect/src/face_detect.cpp).

use image::RgbImage;
use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::vision::geometry::{Detection, iou, nms};
use crate::vision::resize::{crop, resize_rgb};

/// The strides of YuNet's three output heads.
pub const STRIDES: [u32; 3] = [8, 16, 32];

/// Raw outputs of one stride head, flattened row-major over the `rows × cols` anchor grid.
pub struct StrideOutputs<'a> {
    pub stride: u32,
    /// Class score per anchor.
    pub cls: &'a [f32],
    /// Objectness per anchor.
    pub obj: &'a [f32],
    /// `dx, dy, log w, log h` per anchor, in units of the stride.
    pub bbox: &'a [f32],
    /// Five `dx, dy` landmark offsets per anchor, in units of the stride.
    pub kps: &'a [f32],
}

/// Turns the three heads into candidate detections (before NMS) in model-input pixels.
/// Fails when an output's length does not fit the anchor grid of `input_w × input_h`.
pub fn decode(
    heads: &[StrideOutputs<'_>],
    input_w: u32,
    input_h: u32,
    score_threshold: f32,
) -> Result<Vec<Detection>, String> {
    let mut out = Vec::new();
    for h in heads {
        let cols = (input_w / h.stride) as usize;
        let rows = (input_h / h.stride) as usize;
        let n = rows * cols;
        if h.cls.len() != n || h.obj.len() != n || h.bbox.len() != 4 * n || h.kps.len() != 10 * n {
            return Err(format!(
                "stride {} outputs do not match a {}x{} grid (cls {}, obj {}, bbox {}, kps {})",
                h.stride,
                cols,
                rows,
                h.cls.len(),
                h.obj.len(),
                h.bbox.len(),
                h.kps.len()
            ));
        }
        let s = h.stride as f32;
        for r in 0..rows {
            for c in 0..cols {
                let i = r * cols + c;
                let score = (h.cls[i].clamp(0.0, 1.0) * h.obj[i].clamp(0.0, 1.0)).sqrt();
                if score < score_threshold {
                    continue;
                }
                let b = &h.bbox[4 * i..4 * i + 4];
                let cx = (c as f32 + b[0]) * s;
                let cy = (r as f32 + b[1]) * s;
                let w = b[2].exp() * s;
                let hgt = b[3].exp() * s;
                let k = &h.kps[10 * i..10 * i + 10];
                let landmarks = std::array::from_fn(|j| [(k[2 * j] + c as f32) * s, (k[2 * j + 1] + r as f32) * s]);
                out.push(Detection {
                    bbox: [cx - w / 2.0, cy - hgt / 2.0, w, hgt],
                    score,
                    landmarks,
                });
            }
        }
    }
    Ok(out)
}

/// How an image is scaled for the model: by `scale`, to `width × height`, placed at the
/// top left of the model input (see [`InputSize`]) with black padding right and below.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub scale: f32,
    pub width: u32,
    pub height: u32,
}

impl Letterbox {
    /// `width × height` scaled by `scale`, no side larger than `input`.
    pub fn with_scale(width: u32, height: u32, input: u32, scale: f32) -> Letterbox {
        let side = |v: u32| ((v as f32 * scale).round() as u32).clamp(1, input);
        Letterbox {
            scale,
            width: side(width),
            height: side(height),
        }
    }

    /// Scaled so that the long side is `input`.
    pub fn fit(width: u32, height: u32, input: u32) -> Letterbox {
        Letterbox::with_scale(width, height, input, input as f32 / width.max(height) as f32)
    }
}

/// The spatial size of the model input, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputSize {
    pub width: u32,
    pub height: u32,
}

/// The input shapes a YuNet file accepts. The file `models/fetch` prepares takes any batch
/// and any size that is a multiple of 32, so a 16:9 frame costs 640×384 rather than 640×640
/// and frames of one size share a call; a file with a fixed `1×3×H×W` input (YuNet as
/// released) still works, one frame a call, padded to its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    /// The fixed height and width, when the file declares them.
    pub fixed: Option<InputSize>,
    /// Whether the batch dimension is symbolic.
    pub batches: bool,
}

impl ModelShape {
    /// From the declared input dimensions `[N, C, H, W]` (negative: symbolic).
    pub fn from_dims(dims: &[i64]) -> ModelShape {
        let fixed = match dims {
            [_, _, h, w] if *h > 0 && *w > 0 => Some(InputSize {
                width: *w as u32,
                height: *h as u32,
            }),
            _ => None,
        };
        ModelShape {
            fixed,
            batches: dims.first().is_none_or(|n| *n < 0),
        }
    }

    /// The model input for a letterbox: the fixed size, or the letterbox rounded up to
    /// multiples of the largest stride.
    pub fn input_for(&self, lb: Letterbox) -> InputSize {
        let up = |v: u32| v.div_ceil(32).max(1) * 32;
        self.fixed.unwrap_or(InputSize {
            width: up(lb.width),
            height: up(lb.height),
        })
    }
}

/// The model calls for images whose inputs have `sizes`: one per distinct size, in order of
/// first appearance, holding the indices of its images — or one per image when the model
/// does not take batches.
pub fn model_calls(sizes: &[InputSize], batches: bool) -> Vec<(InputSize, Vec<usize>)> {
    let mut calls: Vec<(InputSize, Vec<usize>)> = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        match calls.iter_mut().find(|(s, _)| batches && s == size) {
            Some((_, members)) => members.push(i),
            None => calls.push((*size, vec![i])),
        }
    }
    calls
}

/// Resizes `img` into the letterbox and lays it out as YuNet wants it:
/// 1×3×H×W (`size`), BGR, float 0–255.
pub fn detector_input(img: &RgbImage, lb: Letterbox, size: InputSize) -> Result<Array4<f32>, String> {
    let mut t = Array4::<f32>::zeros((1, 3, size.height as usize, size.width as usize));
    let data = t.as_slice_mut().expect("fresh arrays are contiguous");
    fill_detector_input(img, lb, size, data)?;
    Ok(t)
}

/// Writes one image's 3×H×W planes (BGR) into `planes`, which must be zeroed and exactly
/// that long: the black padding is whatever the resized image does not cover.
pub fn fill_detector_input(img: &RgbImage, lb: Letterbox, size: InputSize, planes: &mut [f32]) -> Result<(), String> {
    let (w, h) = (size.width as usize, size.height as usize);
    if planes.len() != 3 * w * h {
        return Err(format!("input buffer of {} values for 3×{h}×{w}", planes.len()));
    }
    if lb.width > size.width || lb.height > size.height {
        return Err(format!(
            "{}×{} does not fit the model input {w}×{h}",
            lb.width, lb.height
        ));
    }
    let resized = resize_rgb(img, lb.width, lb.height)?;
    let plane = w * h;
    let (b, rest) = planes.split_at_mut(plane);
    let (g, r) = rest.split_at_mut(plane);
    let rw = resized.width() as usize;
    for (y, row) in resized.as_raw().chunks_exact(rw * 3).enumerate() {
        let at = y * w;
        for (x, p) in row.chunks_exact(3).enumerate() {
            b[at + x] = p[2] as f32;
            g[at + x] = p[1] as f32;
            r[at + x] = p[0] as f32;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Minimum detector score, 0–1, for a face to be kept.
    pub score_threshold: f32,
    /// Boxes overlapping a better one by more than this IoU are suppressed.
    pub nms_threshold: f32,
    /// Most candidates considered by non-maximum suppression.
    pub top_k: usize,
    /// The frame is scaled so its long side is this many pixels for detection; the model
    /// input is the scaled frame padded to multiples of 32 (or the file's fixed size).
    pub input_size: u32,
    /// A face wider than this (pixels at the detection scale) is detected again with the
    /// image shrunk so the face is `refine_to_px` wide: YuNet's landmarks of large faces
    /// are poor. 0 turns refinement off.
    pub refine_above_px: f32,
    /// Face width, in pixels at the detector input, that the refinement pass aims for.
    pub refine_to_px: f32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            score_threshold: 0.6,
            nms_threshold: 0.3,
            top_k: 5000,
            input_size: 640,
            refine_above_px: 96.0,
            refine_to_px: 64.0,
        }
    }
}

impl DetectorConfig {
    /// Every problem of these values, each starting with its key (`{prefix}.{key}: …`).
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut p = Vec::new();
        let unit = |v: f32| (0.0..=1.0).contains(&v);
        if !unit(self.score_threshold) {
            p.push(format!(
                "{prefix}.score_threshold: {} is not within 0–1",
                self.score_threshold
            ));
        }
        if !unit(self.nms_threshold) {
            p.push(format!(
                "{prefix}.nms_threshold: {} is not within 0–1",
                self.nms_threshold
            ));
        }
        if self.top_k == 0 {
            p.push(format!("{prefix}.top_k: must be at least 1"));
        }
        if self.input_size == 0 || !self.input_size.is_multiple_of(32) {
            p.push(format!(
                "{prefix}.input_size: {} is not a positive multiple of 32",
                self.input_size
            ));
        }
        if self.refine_above_px < 0.0 {
            p.push(format!(
                "{prefix}.refine_above_px: {} is negative (0 turns refinement off)",
                self.refine_above_px
            ));
        }
        if self.refine_above_px > 0.0 && !(16.0..self.refine_above_px).contains(&self.refine_to_px) {
            p.push(format!(
                "{prefix}.refine_to_px: {} must be at least 16 and below {prefix}.refine_above_px ({})",
                self.refine_to_px, self.refine_above_px
            ));
        }
        p
    }
}

/// Which detector pass a model call belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    First,
    Refine,
}

/// YuNet around an ONNX Runtime session.
pub struct Detector {
    session: Session,
    /// A second session of the same file for the refinement passes, when given: their
    /// small square inputs then never change the first pass's input shape, which costs
    /// OpenVINO about a millisecond each way (measured: 1×3×192×192 alone 1.4 ms, after
    /// a frame-sized call 2–3 ms).
    refine_session: Option<Session>,
    input_name: String,
    shape: ModelShape,
    cfg: DetectorConfig,
}

impl Detector {
    pub fn new(session: Session, cfg: DetectorConfig) -> Result<Detector, Error> {
        let model_err = |reason: String| Error::Model {
            path: "detector".into(),
            reason,
        };
        let input = session
            .inputs()
            .first()
            .ok_or_else(|| model_err("model has no input".into()))?;
        let input_name = input.name().to_string();
        let dims = input
            .dtype()
            .tensor_shape()
            .map(|s| s.to_vec())
            .ok_or_else(|| model_err("the input is not a tensor".into()))?;
        if dims.len() != 4 {
            return Err(model_err(format!("input {dims:?} is not N×3×H×W")));
        }
        for s in STRIDES {
            for head in ["cls", "obj", "bbox", "kps"] {
                let name = format!("{head}_{s}");
                if !session.outputs().iter().any(|o| o.name() == name) {
                    return Err(model_err(format!("output `{name}` missing: not a YuNet 2023mar model")));
                }
            }
        }
        Ok(Detector {
            session,
            refine_session: None,
            input_name,
            shape: ModelShape::from_dims(&dims),
            cfg,
        })
    }

    /// Runs the refinement passes in `session`, a second session of the same file.
    pub fn with_refine_session(mut self, session: Session) -> Detector {
        self.refine_session = Some(session);
        self
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// The input shapes the loaded file accepts.
    pub fn shape(&self) -> ModelShape {
        self.shape
    }

    /// Faces in `img`, in its own pixel coordinates, best first.
    pub fn detect(&mut self, img: &RgbImage) -> Result<Vec<Detection>, Error> {
        Ok(self.detect_batch(&[img])?.pop().unwrap_or_default())
    }

    /// Faces in each image, as [`Detector::detect`] finds them. Images whose model inputs
    /// have the same size (frames of cameras with one resolution) share a model call when
    /// the file takes batches.
    ///
    /// Each image is scaled so its long side fits the model input. YuNet places landmarks
    /// of faces much larger than its training faces poorly (the embedding of a face filling
    /// a close-up photo can fall to cosine 0.3–0.5 against the same face seen smaller), so
    /// a face wider than `refine_above_px` at that scale is detected again in a pass that
    /// shrinks it to `refine_to_px`, and that pass's box and landmarks replace the first.
    pub fn detect_batch(&mut self, imgs: &[&RgbImage]) -> Result<Vec<Vec<Detection>>, Error> {
        let input = self.cfg.input_size;
        let fits: Vec<Letterbox> = imgs
            .iter()
            .map(|img| Letterbox::fit(img.width(), img.height(), input))
            .collect();
        let sizes: Vec<InputSize> = fits.iter().map(|lb| self.shape.input_for(*lb)).collect();
        let mut found = vec![Vec::new(); imgs.len()];
        for (size, members) in model_calls(&sizes, self.shape.batches) {
            let items: Vec<(&RgbImage, Letterbox)> = members.iter().map(|&i| (imgs[i], fits[i])).collect();
            for (i, faces) in members.into_iter().zip(self.run_batch(&items, size, Pass::First)?) {
                found[i] = faces;
            }
        }
        self.refine(imgs, &fits, &mut found)?;
        for faces in found.iter_mut() {
            faces.sort_by(|a, b| b.score.total_cmp(&a.score));
        }
        Ok(found)
    }

    /// Detects faces that were large at the first pass's scale again, smaller: each in a
    /// square of the image around it ([`refine_region`]), all of them in one model call
    /// when the file takes batches (the squares share one input size).
    fn refine(&mut self, imgs: &[&RgbImage], fits: &[Letterbox], found: &mut [Vec<Detection>]) -> Result<(), Error> {
        if self.cfg.refine_above_px <= 0.0 {
            return Ok(());
        }
        let mut requests: Vec<(usize, usize, RefineRegion)> = Vec::new();
        for (i, (fit, faces)) in fits.iter().zip(found.iter()).enumerate() {
            let large = faces
                .iter()
                .enumerate()
                .filter(|(_, f)| f.bbox[2] * fit.scale > self.cfg.refine_above_px)
                .filter_map(|(j, f)| {
                    refine_region(&f.bbox, imgs[i].width(), imgs[i].height(), self.cfg.refine_to_px).map(|r| (i, j, r))
                })
                .take(MAX_REFINE_PASSES);
            requests.extend(large);
        }
        if requests.is_empty() {
            return Ok(());
        }
        let size = self.shape.fixed.unwrap_or_else(|| refine_input(self.cfg.refine_to_px));
        let crops: Vec<(RgbImage, Letterbox)> = requests
            .iter()
            .map(|&(i, _, r)| {
                let crop = crop(imgs[i], r.x, r.y, r.width, r.height);
                let side = size.width.min(size.height);
                (crop, Letterbox::with_scale(r.width, r.height, side, r.scale))
            })
            .collect();
        for (size, members) in model_calls(&vec![size; crops.len()], self.shape.batches) {
            let items: Vec<(&RgbImage, Letterbox)> = members.iter().map(|&k| (&crops[k].0, crops[k].1)).collect();
            for (k, again) in members.into_iter().zip(self.run_batch(&items, size, Pass::Refine)?) {
                let (i, j, r) = requests[k];
                let face = &mut found[i][j];
                let best = again
                    .into_iter()
                    .map(|d| d.translated(r.x as f32, r.y as f32))
                    .map(|d| (iou(&d.bbox, &face.bbox), d))
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                if let Some((overlap, refined)) = best
                    && overlap >= 0.5
                {
                    *face = refined;
                }
            }
        }
        Ok(())
    }

    /// Runs the first pass on black `width`×`height` images, and the refinement pass on
    /// black squares, once for each batch size up to `max_images`: the provider's work on
    /// the first call of each input shape (OpenVINO's per-shape preparation, 8–15 ms a
    /// shape on a 2-core Xeon) is then done before a camera's first frame waits on it.
    pub fn warm_up(&mut self, width: u32, height: u32, max_images: usize) -> Result<(), Error> {
        let frame = RgbImage::new(width, height);
        let fit = Letterbox::fit(width, height, self.cfg.input_size);
        let size = self.shape.input_for(fit);
        let refine_size = self.shape.fixed.unwrap_or_else(|| refine_input(self.cfg.refine_to_px));
        let side = refine_size.width.min(refine_size.height);
        let square = RgbImage::new(side, side);
        let square_fit = Letterbox::fit(side, side, side);
        let largest = if self.shape.batches { max_images.max(1) } else { 1 };
        for n in 1..=largest {
            self.run_batch(&vec![(&frame, fit); n], size, Pass::First)?;
            if self.cfg.refine_above_px > 0.0 {
                self.run_batch(&vec![(&square, square_fit); n], refine_size, Pass::Refine)?;
            }
        }
        Ok(())
    }

    /// The model's input for `img` at the first pass's scale, for [`Detector::run_model`].
    pub fn model_input(&self, img: &RgbImage) -> Result<Array4<f32>, Error> {
        let lb = Letterbox::fit(img.width(), img.height(), self.cfg.input_size);
        detector_input(img, lb, self.shape.input_for(lb)).map_err(|reason| Error::Inference {
            model: "detector",
            reason,
        })
    }

    /// The model alone on a prepared input, its outputs dropped: `facegate bench` times it
    /// apart from resizing, decoding and suppression.
    pub fn run_model(&mut self, tensor: &Array4<f32>) -> Result<(), Error> {
        let view = TensorRef::from_array_view(tensor).map_err(inference_error)?;
        self.session
            .run(ort::inputs![self.input_name.as_str() => view])
            .map_err(inference_error)?;
        Ok(())
    }

    /// One model call over images of one input size, each scaled as its letterbox says;
    /// the faces of each, in its own pixels.
    fn run_batch(
        &mut self,
        items: &[(&RgbImage, Letterbox)],
        size: InputSize,
        pass: Pass,
    ) -> Result<Vec<Vec<Detection>>, Error> {
        let infer_err = |reason: String| Error::Inference {
            model: "detector",
            reason,
        };
        let (w, h) = (size.width as usize, size.height as usize);
        let mut tensor = Array4::<f32>::zeros((items.len(), 3, h, w));
        let data = tensor.as_slice_mut().expect("fresh arrays are contiguous");
        for ((img, lb), planes) in items.iter().zip(data.chunks_exact_mut(3 * w * h)) {
            fill_detector_input(img, *lb, size, planes).map_err(infer_err)?;
        }
        let session = match (pass, self.refine_session.as_mut()) {
            (Pass::Refine, Some(own)) => own,
            _ => &mut self.session,
        };
        let outputs = session
            .run(
                ort::inputs![self.input_name.as_str() => TensorRef::from_array_view(&tensor).map_err(inference_error)?],
            )
            .map_err(inference_error)?;
        let n = items.len();
        let get = |name: String| -> Result<&[f32], Error> {
            let (_, data) = outputs[name.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(inference_error)?;
            if data.len() % n != 0 {
                return Err(infer_err(format!("{name}: {} values for a batch of {n}", data.len())));
            }
            Ok(data)
        };
        let mut heads = Vec::with_capacity(STRIDES.len());
        for stride in STRIDES {
            heads.push([
                get(format!("cls_{stride}"))?,
                get(format!("obj_{stride}"))?,
                get(format!("bbox_{stride}"))?,
                get(format!("kps_{stride}"))?,
            ]);
        }
        let mut found = Vec::with_capacity(n);
        for (k, (_, lb)) in items.iter().enumerate() {
            let views: Vec<StrideOutputs> = STRIDES
                .iter()
                .zip(&heads)
                .map(|(&stride, [cls, obj, bbox, kps])| StrideOutputs {
                    stride,
                    cls: batch_item(cls, n, k),
                    obj: batch_item(obj, n, k),
                    bbox: batch_item(bbox, n, k),
                    kps: batch_item(kps, n, k),
                })
                .collect();
            let candidates = decode(&views, size.width, size.height, self.cfg.score_threshold).map_err(infer_err)?;
            let kept = nms(candidates, self.cfg.nms_threshold, self.cfg.top_k);
            found.push(kept.iter().map(|d| d.scaled(1.0 / lb.scale)).collect());
        }
        Ok(found)
    }
}

/// Item `k` of a batch of `n` laid out one after the other in `all`.
fn batch_item(all: &[f32], n: usize, k: usize) -> &[f32] {
    let len = all.len() / n;
    &all[k * len..(k + 1) * len]
}

fn inference_error(e: ort::Error) -> Error {
    Error::Inference {
        model: "detector",
        reason: e.to_string(),
    }
}

/// Most large faces refined in one image.
const MAX_REFINE_PASSES: usize = 4;

/// How much of the image a refinement pass sees around a large face: a square this many
/// face widths wide, centred on the face. The pass costs a 192×192 input instead of the
/// whole frame at the refinement scale, and the squares of a batch share one call. The
/// landmarks are not those of a whole-image refinement (on frames of the demo video they
/// differ by up to 7.6 % of the face width, the embedding's cosine to the old one down to
/// 0.88), but matching is as good: the faces of the demo video's frames score a mean best
/// cosine of 0.8368 against their sample photos, against 0.8373 refined on the whole image
/// (the README's Performance section).
pub const REFINE_CONTEXT: f32 = 3.0;

/// The part of an image a refinement pass detects in, in the image's pixels, and the scale
/// that makes the face `refine_to_px` wide.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefineRegion {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub scale: f32,
}

/// The square of [`REFINE_CONTEXT`] face widths around `bbox`, clipped to the
/// `width × height` image; `None` when nothing of it is inside the image.
pub fn refine_region(bbox: &[f32; 4], width: u32, height: u32, refine_to_px: f32) -> Option<RefineRegion> {
    let face_w = bbox[2].max(1.0);
    let half = REFINE_CONTEXT * face_w / 2.0;
    let (cx, cy) = (bbox[0] + bbox[2] / 2.0, bbox[1] + bbox[3] / 2.0);
    let clip = |v: f32, max: u32| (v.max(0.0) as u32).min(max);
    let (x0, x1) = (clip((cx - half).floor(), width), clip((cx + half).ceil(), width));
    let (y0, y1) = (clip((cy - half).floor(), height), clip((cy + half).ceil(), height));
    (x1 > x0 && y1 > y0).then_some(RefineRegion {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
        scale: refine_to_px / face_w,
    })
}

/// The model input of every refinement pass (when the file does not fix it): the square
/// around the face at the refinement scale, rounded up to the stride 32.
pub fn refine_input(refine_to_px: f32) -> InputSize {
    let side = ((REFINE_CONTEXT * refine_to_px).ceil() as u32).div_ceil(32).max(1) * 32;
    InputSize {
        width: side,
        height: side,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds head outputs for a `cols × rows` grid with one hot anchor.
    struct Head {
        cls: Vec<f32>,
        obj: Vec<f32>,
        bbox: Vec<f32>,
        kps: Vec<f32>,
    }

    fn head(n: usize) -> Head {
        Head {
            cls: vec![0.0; n],
            obj: vec![0.0; n],
            bbox: vec![0.0; 4 * n],
            kps: vec![0.0; 10 * n],
        }
    }

    #[test]
    fn decodes_one_anchor_per_stride_into_pixels() {
        // 64×32 input: stride 8 → 8×4 grid, 16 → 4×2, 32 → 2×1.
        let (w, h) = (64u32, 32u32);
        let mut heads: Vec<Head> = STRIDES.iter().map(|s| head(((w / s) * (h / s)) as usize)).collect();
        // Stride 8, anchor at row 2, col 3 (index 2*8+3 = 19).
        let i = 19;
        heads[0].cls[i] = 0.81;
        heads[0].obj[i] = 1.0;
        heads[0].bbox[4 * i..4 * i + 4].copy_from_slice(&[0.5, 0.25, 2f32.ln(), 0.0]);
        for j in 0..5 {
            heads[0].kps[10 * i + 2 * j] = j as f32 * 0.1;
            heads[0].kps[10 * i + 2 * j + 1] = -0.5;
        }
        // Stride 32, anchor col 1: below threshold, must not appear.
        heads[2].cls[1] = 0.2;
        heads[2].obj[1] = 0.2;
        let views: Vec<StrideOutputs> = STRIDES
            .iter()
            .zip(&heads)
            .map(|(&stride, h)| StrideOutputs {
                stride,
                cls: &h.cls,
                obj: &h.obj,
                bbox: &h.bbox,
                kps: &h.kps,
            })
            .collect();
        let dets = decode(&views, w, h, 0.5).unwrap();
        assert_eq!(dets.len(), 1);
        let d = &dets[0];
        assert!((d.score - 0.9).abs() < 1e-6, "score = sqrt(cls·obj)");
        // Centre (3.5·8, 2.25·8) = (28, 18); size (2·8, 1·8) = (16, 8).
        let expect = [20.0, 14.0, 16.0, 8.0];
        for k in 0..4 {
            assert!((d.bbox[k] - expect[k]).abs() < 1e-4, "{:?}", d.bbox);
        }
        for j in 0..5 {
            assert!((d.landmarks[j][0] - (3.0 + j as f32 * 0.1) * 8.0).abs() < 1e-4);
            assert!((d.landmarks[j][1] - 12.0).abs() < 1e-4);
        }
    }

    #[test]
    fn decode_clamps_scores_and_rejects_wrong_grids() {
        let mut h8 = head(64);
        h8.cls[0] = 1.7;
        h8.obj[0] = 1.0;
        let (h16, h32) = (head(16), head(4));
        let views = [
            StrideOutputs {
                stride: 8,
                cls: &h8.cls,
                obj: &h8.obj,
                bbox: &h8.bbox,
                kps: &h8.kps,
            },
            StrideOutputs {
                stride: 16,
                cls: &h16.cls,
                obj: &h16.obj,
                bbox: &h16.bbox,
                kps: &h16.kps,
            },
            StrideOutputs {
                stride: 32,
                cls: &h32.cls,
                obj: &h32.obj,
                bbox: &h32.bbox,
                kps: &h32.kps,
            },
        ];
        let dets = decode(&views, 64, 64, 0.5).unwrap();
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].score, 1.0);
        assert!(decode(&views, 128, 64, 0.5).is_err());
    }

    #[test]
    fn letterbox_fits_long_side() {
        assert_eq!(
            Letterbox::fit(1920, 1080, 640),
            Letterbox {
                scale: 1.0 / 3.0,
                width: 640,
                height: 360
            }
        );
        let lb = Letterbox::fit(300, 600, 640);
        assert_eq!((lb.width, lb.height), (320, 640));
        assert!((lb.scale - 640.0 / 600.0).abs() < 1e-6);
    }

    #[test]
    fn detector_input_is_bgr_and_padded() {
        let img = RgbImage::from_fn(20, 10, |_, _| image::Rgb([10, 20, 30]));
        let lb = Letterbox::fit(20, 10, 40);
        let square = InputSize { width: 40, height: 40 };
        let t = detector_input(&img, lb, square).unwrap();
        assert_eq!(t.shape(), &[1, 3, 40, 40]);
        assert_eq!((lb.width, lb.height), (40, 20));
        assert_eq!((t[[0, 0, 5, 5]], t[[0, 1, 5, 5]], t[[0, 2, 5, 5]]), (30.0, 20.0, 10.0));
        // Below the resized image: black padding.
        assert_eq!(t[[0, 2, 30, 5]], 0.0);
        let small = InputSize { width: 32, height: 32 };
        assert!(detector_input(&img, lb, small).is_err(), "40 px do not fit 32");
    }

    #[test]
    fn refinement_sees_a_square_around_the_face_inside_the_image() {
        // A 100-px face in the middle of 1280×720: 300 px around it, at 64/100.
        let r = refine_region(&[590.0, 300.0, 100.0, 120.0], 1280, 720, 64.0).unwrap();
        assert_eq!((r.x, r.y, r.width, r.height), (490, 210, 300, 300));
        assert!((r.scale - 0.64).abs() < 1e-6);
        assert_eq!(
            refine_input(64.0),
            InputSize {
                width: 192,
                height: 192
            }
        );
        // Near the top-left corner the square is cut at the image's edges.
        let r = refine_region(&[10.0, 5.0, 200.0, 240.0], 1280, 720, 64.0).unwrap();
        assert_eq!((r.x, r.y, r.width, r.height), (0, 0, 410, 425));
        // Outside the image: nothing to refine.
        assert!(refine_region(&[2000.0, 5.0, 100.0, 100.0], 1280, 720, 64.0).is_none());
    }

    #[test]
    fn images_of_one_size_share_a_call_when_the_model_batches() {
        let wide = InputSize {
            width: 640,
            height: 384,
        };
        let tall = InputSize {
            width: 384,
            height: 640,
        };
        let sizes = [wide, tall, wide, wide];
        assert_eq!(model_calls(&sizes, true), vec![(wide, vec![0, 2, 3]), (tall, vec![1])]);
        assert_eq!(
            model_calls(&sizes, false),
            vec![(wide, vec![0]), (tall, vec![1]), (wide, vec![2]), (wide, vec![3])]
        );
        assert!(model_calls(&[], true).is_empty());
    }

    #[test]
    fn model_input_follows_the_frame_unless_the_file_fixes_it() {
        let any = ModelShape::from_dims(&[-1, 3, -1, -1]);
        assert_eq!(
            any,
            ModelShape {
                fixed: None,
                batches: true
            }
        );
        // 1280×720 at 640: 640×360, rounded up to the stride 32.
        let lb = Letterbox::fit(1280, 720, 640);
        assert_eq!(
            any.input_for(lb),
            InputSize {
                width: 640,
                height: 384
            }
        );
        assert_eq!(
            any.input_for(Letterbox::fit(300, 600, 640)),
            InputSize {
                width: 320,
                height: 640
            }
        );
        let released = ModelShape::from_dims(&[1, 3, 640, 640]);
        assert!(!released.batches);
        assert_eq!(
            released.input_for(lb),
            InputSize {
                width: 640,
                height: 640
            }
        );
    }
}
