//! Boxes, landmarks and the overlap measure shared by the detector and (later) the tracker.

use serde::Serialize;

/// A detected face in pixel coordinates of some image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// `[x, y, w, h]`, top-left corner and size.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Detector confidence, 0–1.
    pub score: f32,
    /// Right eye, left eye, nose tip, right mouth corner, left mouth corner (YuNet's order).
    pub landmarks: [[f32; 2]; 5],
}

impl Detection {
    /// The same detection with every coordinate multiplied by `factor`.
    pub fn scaled(&self, factor: f32) -> Detection {
        let b = self.bbox;
        Detection {
            bbox: [b[0] * factor, b[1] * factor, b[2] * factor, b[3] * factor],
            score: self.score,
            landmarks: self.landmarks.map(|[x, y]| [x * factor, y * factor]),
        }
    }

    /// The same detection moved by `(dx, dy)`.
    pub fn translated(&self, dx: f32, dy: f32) -> Detection {
        let b = self.bbox;
        Detection {
            bbox: [b[0] + dx, b[1] + dy, b[2], b[3]],
            score: self.score,
            landmarks: self.landmarks.map(|[x, y]| [x + dx, y + dy]),
        }
    }

    pub fn area(&self) -> f32 {
        self.bbox[2].max(0.0) * self.bbox[3].max(0.0)
    }
}

/// Intersection over union of two `[x, y, w, h]` boxes; 0 when either is empty.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    let inter = ix * iy;
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Greedy non-maximum suppression: keeps the best-scoring box of every cluster whose
/// pairwise IoU exceeds `iou_threshold`. Only the `top_k` best candidates are considered,
/// as OpenCV's `NMSBoxes` does. The result is sorted by score, best first.
pub fn nms(mut candidates: Vec<Detection>, iou_threshold: f32, top_k: usize) -> Vec<Detection> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    candidates.truncate(top_k);
    let mut kept: Vec<Detection> = Vec::new();
    for c in candidates {
        if kept.iter().all(|k| iou(&k.bbox, &c.bbox) <= iou_threshold) {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(bbox: [f32; 4], score: f32) -> Detection {
        Detection {
            bbox,
            score,
            landmarks: [[0.0; 2]; 5],
        }
    }

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[20.0, 20.0, 5.0, 5.0]), 0.0);
        // Shifted by half its width: intersection 50, union 150.
        assert!((iou(&a, &[5.0, 0.0, 10.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn nms_keeps_best_of_each_cluster_and_orders_by_score() {
        let out = nms(
            vec![
                det([0.0, 0.0, 10.0, 10.0], 0.7),
                det([1.0, 1.0, 10.0, 10.0], 0.9),
                det([100.0, 100.0, 10.0, 10.0], 0.8),
                det([101.0, 100.0, 10.0, 10.0], 0.5),
            ],
            0.3,
            100,
        );
        let scores: Vec<f32> = out.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.8]);
    }

    #[test]
    fn nms_keeps_boxes_overlapping_less_than_threshold() {
        let out = nms(
            vec![det([0.0, 0.0, 10.0, 10.0], 0.9), det([8.0, 0.0, 10.0, 10.0], 0.8)],
            0.3,
            100,
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn nms_top_k_limits_candidates() {
        let out = nms(
            (0..10)
                .map(|i| det([i as f32 * 50.0, 0.0, 10.0, 10.0], i as f32 / 10.0))
                .collect(),
            0.3,
            3,
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].score, 0.9);
    }

    #[test]
    fn scaling_maps_box_and_landmarks() {
        let mut d = det([10.0, 20.0, 30.0, 40.0], 0.5);
        d.landmarks[2] = [15.0, 25.0];
        let s = d.scaled(2.0);
        assert_eq!(s.bbox, [20.0, 40.0, 60.0, 80.0]);
        assert_eq!(s.landmarks[2], [30.0, 50.0]);
        assert_eq!(s.score, 0.5);
    }
}
