//! The quality gate: whether a detected face is good enough to be matched or enrolled.
//! Pure measures of a detection and its aligned crop, no models. The same gate applies to
//! enrollment, `identify`, `verify` and the daemon.
//!
//! Where the defaults come from (`cargo run --release --example quality_sweep`, README
//! "Where identity fades"): over the 22 faces of the sample photos, a face shrunk to 22
//! source pixels still kept cosine ≥ 0.57 to itself at full size (0.48 at 18 px), and no
//! face whose identity was lost to blur (cosine < 0.5) had a sharpness above 3.1, while
//! sharp faces of 22 px or more all measured 7.7 or more. The photos no test uses agreed
//! (lost: ≤ 1.8; sharp at 22 px: ≥ 10.6).

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::vision::geometry::Detection;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    /// Smallest face width, in pixels of the image the face is taken from (alignment
    /// works on the full-resolution frame), that is matched or enrolled: identity fades
    /// below about 22 px.
    pub min_face_px: f32,
    /// Lowest detector score that is matched or enrolled.
    pub min_score: f32,
    /// Lowest sharpness: variance of the Laplacian of the luma of the aligned 112×112 crop,
    /// which is already normalised for the face's size.
    pub min_sharpness: f32,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            min_face_px: 24.0,
            min_score: 0.7,
            min_sharpness: 8.0,
        }
    }
}

impl QualityConfig {
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.min_face_px.is_nan() || self.min_face_px < 0.0 {
            p.push(format!("{prefix}.min_face_px: {} is negative", self.min_face_px));
        }
        if !(0.0..=1.0).contains(&self.min_score) {
            p.push(format!("{prefix}.min_score: {} is not within 0–1", self.min_score));
        }
        if self.min_sharpness.is_nan() || self.min_sharpness < 0.0 {
            p.push(format!("{prefix}.min_sharpness: {} is negative", self.min_sharpness));
        }
        p
    }
}

/// Measured quality of one face.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quality {
    /// Face width in source pixels.
    pub face_px: f32,
    pub score: f32,
    pub sharpness: f32,
}

impl Quality {
    /// The quality of `face`, detected in the full-resolution image, whose aligned crop is
    /// `crop`.
    pub fn measure(face: &Detection, crop: &RgbImage) -> Quality {
        Quality {
            face_px: face.bbox[2],
            score: face.score,
            sharpness: sharpness(crop),
        }
    }

    /// Why the face fails the gate, or `None` when it passes.
    pub fn failure(&self, cfg: &QualityConfig) -> Option<String> {
        if self.face_px < cfg.min_face_px {
            Some(format!(
                "face too small ({:.0} px wide, need {:.0})",
                self.face_px, cfg.min_face_px
            ))
        } else if self.score < cfg.min_score {
            Some(format!("detector score {:.2} below {:.2}", self.score, cfg.min_score))
        } else if self.sharpness < cfg.min_sharpness {
            Some(format!(
                "face too blurred (sharpness {:.1}, need {:.1}; identity is lost below about 3)",
                self.sharpness, cfg.min_sharpness
            ))
        } else {
            None
        }
    }

    /// One number for ranking templates: the detector score, scaled down for small or soft faces.
    pub fn score(&self) -> f32 {
        let size = (self.face_px / 60.0).min(1.0);
        let sharp = (self.sharpness / 100.0).min(1.0);
        self.score * (0.5 + 0.25 * size + 0.25 * sharp)
    }
}

/// Variance of the 4-neighbour Laplacian of the image's luma: low for blurred faces.
pub fn sharpness(img: &RgbImage) -> f32 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let luma: Vec<f32> = img
        .pixels()
        .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
        .collect();
    let mut sum = 0f64;
    let mut sum_sq = 0f64;
    let mut n = 0f64;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let c = luma[y * w + x];
            let l = luma[y * w + x - 1] + luma[y * w + x + 1] + luma[(y - 1) * w + x] + luma[(y + 1) * w + x] - 4.0 * c;
            sum += l as f64;
            sum_sq += (l as f64) * (l as f64);
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sum_sq / n - mean * mean) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharpness_falls_with_blur() {
        let sharp = RgbImage::from_fn(112, 112, |x, y| {
            image::Rgb([if (x / 4 + y / 4) % 2 == 0 { 255 } else { 0 }; 3])
        });
        let blurred = image::imageops::blur(&sharp, 3.0);
        let flat = RgbImage::from_pixel(112, 112, image::Rgb([128; 3]));
        assert!(sharpness(&sharp) > 10.0 * sharpness(&blurred));
        assert_eq!(sharpness(&flat), 0.0);
    }

    #[test]
    fn gate_reports_the_failing_measure() {
        let cfg = QualityConfig::default();
        let ok = Quality {
            face_px: 80.0,
            score: 0.9,
            sharpness: 200.0,
        };
        assert!(ok.failure(&cfg).is_none());
        assert!(
            Quality { face_px: 12.0, ..ok }
                .failure(&cfg)
                .unwrap()
                .contains("too small")
        );
        assert!(Quality { score: 0.5, ..ok }.failure(&cfg).unwrap().contains("score"));
        assert!(
            Quality { sharpness: 1.0, ..ok }
                .failure(&cfg)
                .unwrap()
                .contains("blurred")
        );
        assert!(ok.score() > Quality { face_px: 20.0, ..ok }.score());
    }
}
