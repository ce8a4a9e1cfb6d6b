//! Liveness cue: whether the face moves as a plane. A photo or a screen is flat: between
//! any two views of it, its landmarks are related exactly by a homography, however it is
//! tilted and moved. A real face is not: the nose tip stands out of the plane of the eyes
//! and mouth, so when the head turns the nose shifts against them (parallax) and no
//! homography maps one view's five landmarks onto the other's.
//!
//! Per pair of frames the homography is fitted by the normalised DLT (Hartley & Zisserman,
//! "Multiple View Geometry", 2nd ed., Alg. 4.2; Hartley, "In Defense of the Eight-Point
//! Algorithm", IEEE PAMI 1997, for the normalisation). Five points give ten equations for
//! eight unknowns, so two are left to measure the misfit: the RMS reprojection error,
//! relative to the face's width, is the evidence. Landmark jitter leaves a residual of its
//! own, flat face or not, so each track's residual is judged against its floor: the same
//! median over consecutive frames, which have barely moved. A face whose shape in the image
//! has not changed (beyond shift, scale and in-plane rotation, and beyond what jitter does)
//! gives no evidence either way.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::vision::align::similarity_transform;

/// Hard cap on the frames a trace holds, whatever the window.
const MAX_FRAMES: usize = 128;

/// Settings of the motion cue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MotionConfig {
    /// Seconds of landmarks kept per track; older frames are dropped.
    pub window_s: f32,
    /// Two frames are compared only when the face's shape in the image changed by at least
    /// this much between them: the RMS landmark displacement left after the best similarity
    /// (shift, scale, in-plane rotation), over the face width. Shift and scale alone —
    /// someone walking straight at the camera — show no parallax, and a smaller change is
    /// lost in the detector's landmark jitter. The default, 0.01, is a head turn of about
    /// 4° (with the nose 0.3 face widths out).
    pub min_motion: f32,
    /// …and by at least this many times the shape change between consecutive frames (the
    /// median over the trace), which is mostly the detector's landmark jitter: a change
    /// that jitter alone can produce is no motion.
    pub motion_over_jitter: f32,
    /// Fewer pairs than this give no reading. The median over them tolerates one bad
    /// landmark set, which enters at most two pairs.
    pub min_pairs: usize,
    /// The residual's excess over the jitter floor (see [`MotionReading`]) mapped to
    /// score 0… A turn of 5° leaves about 0.01 face widths, 10° about 0.02; a flat face's
    /// excess stayed under 0.0025 with landmark jitter of 0.5 % of the face width.
    pub residual_low: f32,
    /// …and to score 1, linearly in between.
    pub residual_high: f32,
}

impl Default for MotionConfig {
    fn default() -> Self {
        MotionConfig {
            window_s: 6.0,
            min_motion: 0.01,
            motion_over_jitter: 3.0,
            min_pairs: 5,
            residual_low: 0.005,
            residual_high: 0.012,
        }
    }
}

impl MotionConfig {
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.window_s.is_finite() && self.window_s > 0.0) {
            p.push(format!("{prefix}.window_s: {} is not a positive number", self.window_s));
        }
        if !(self.min_motion.is_finite() && self.min_motion > 0.0) {
            p.push(format!(
                "{prefix}.min_motion: {} is not a positive number",
                self.min_motion
            ));
        }
        if !(self.motion_over_jitter.is_finite() && self.motion_over_jitter >= 0.0) {
            p.push(format!(
                "{prefix}.motion_over_jitter: {} is negative",
                self.motion_over_jitter
            ));
        }
        if self.min_pairs == 0 {
            p.push(format!("{prefix}.min_pairs: must be at least 1"));
        }
        if !(self.residual_low.is_finite() && self.residual_low >= 0.0) {
            p.push(format!("{prefix}.residual_low: {} is negative", self.residual_low));
        }
        if !(self.residual_high.is_finite() && self.residual_high > self.residual_low) {
            p.push(format!(
                "{prefix}.residual_high: {} is not above residual_low ({})",
                self.residual_high, self.residual_low
            ));
        }
        p
    }
}

/// What a trace says about the face's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionReading {
    /// Median over the pairs of the homography's RMS reprojection error over face width:
    /// the jitter floor for a flat face, above it by the nose's parallax for a real one.
    pub residual: f32,
    /// The same median over consecutive frames: what the landmarks' jitter alone leaves.
    pub floor: f32,
    /// Median over the pairs of the shape change that qualified them (see `min_motion`).
    pub motion: f32,
    /// Frame pairs compared.
    pub pairs: usize,
    /// 0–1: `residual − floor` mapped linearly from `residual_low` (0) to `residual_high`
    /// (1), clamped. High means a 3-D face.
    pub score: f32,
}

#[derive(Debug, Clone)]
struct Frame {
    pts_ms: i64,
    landmarks: [[f32; 2]; 5],
    face_width: f32,
}

/// A track's landmarks over time, by presentation time, bounded to the last `window_s`
/// seconds (and [`MAX_FRAMES`] frames).
#[derive(Debug, Clone)]
pub struct MotionTrace {
    frames: VecDeque<Frame>,
    window_ms: i64,
}

impl MotionTrace {
    /// An empty trace keeping `config.window_s` seconds.
    pub fn new(config: &MotionConfig) -> MotionTrace {
        MotionTrace {
            frames: VecDeque::new(),
            window_ms: (f64::from(config.window_s) * 1000.0).round() as i64,
        }
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Adds one frame's landmarks (source pixels) and face width (e.g. the box's). A
    /// repeated PTS is ignored; a PTS that goes back starts the trace over; landmarks that
    /// are not finite, or a width that is not positive, are ignored.
    pub fn push(&mut self, pts_ms: i64, landmarks: [[f32; 2]; 5], face_width: f32) {
        if !(face_width.is_finite() && face_width > 0.0 && landmarks.iter().flatten().all(|v| v.is_finite())) {
            return;
        }
        match self.frames.back() {
            Some(last) if pts_ms == last.pts_ms => return,
            Some(last) if pts_ms < last.pts_ms => self.frames.clear(),
            _ => {}
        }
        self.frames.push_back(Frame {
            pts_ms,
            landmarks,
            face_width,
        });
        while let Some(first) = self.frames.front() {
            if pts_ms - first.pts_ms > self.window_ms || self.frames.len() > MAX_FRAMES {
                self.frames.pop_front();
            } else {
                break;
            }
        }
    }

    /// The median residual over the frame pairs that moved enough, against the track's
    /// own jitter floor; `None` with fewer than `min_pairs` such pairs (or fewer than three
    /// frames): a face that has not moved gives no evidence either way.
    pub fn evaluate(&self, config: &MotionConfig) -> Option<MotionReading> {
        let frames: Vec<&Frame> = self.frames.iter().collect();
        let (floor, still) = jitter(&frames)?;
        let min_motion = f64::from(config.min_motion).max(f64::from(config.motion_over_jitter) * still);
        let mut residuals = Vec::new();
        let mut motions = Vec::new();
        for (i, j, motion) in pairs(&frames, min_motion) {
            let Some(r) = homography_residual(&frames[i].landmarks, &frames[j].landmarks) else {
                continue;
            };
            residuals.push(r / f64::from(frames[j].face_width));
            motions.push(motion);
        }
        if residuals.len() < config.min_pairs.max(1) {
            return None;
        }
        let residual = median(&mut residuals);
        let (lo, hi) = (f64::from(config.residual_low), f64::from(config.residual_high));
        Some(MotionReading {
            residual: residual as f32,
            floor: floor as f32,
            motion: median(&mut motions) as f32,
            pairs: residuals.len(),
            score: ((residual - floor - lo) / (hi - lo)).clamp(0.0, 1.0) as f32,
        })
    }
}

/// The track's landmark jitter, from consecutive frames, which barely move between them:
/// `(median homography residual, median shape change)`, both over face width. For a flat
/// face the first is exactly what jitter alone leaves in any pair's residual, however far
/// apart; for a real face it also holds a frame's worth of parallax, which errs on the
/// side of a lower score. `None` with fewer than three frames.
fn jitter(frames: &[&Frame]) -> Option<(f64, f64)> {
    if frames.len() < 3 {
        return None;
    }
    let (mut residuals, mut changes) = (Vec::new(), Vec::new());
    for w in frames.windows(2) {
        let width = f64::from(w[1].face_width);
        if let Some(r) = homography_residual(&w[0].landmarks, &w[1].landmarks) {
            residuals.push(r / width);
        }
        if let Some(c) = shape_change(&w[0].landmarks, &w[1].landmarks) {
            changes.push(c / width);
        }
    }
    if residuals.is_empty() || changes.is_empty() {
        return None;
    }
    Some((median(&mut residuals), median(&mut changes)))
}

/// The frame pairs `(earlier, later, shape change)` to compare.
///
/// Consecutive frames (100 ms apart) barely turn, so their parallax would drown in the
/// landmarks' jitter; a single reference frame gives a wide baseline but, if its landmarks
/// are bad, spoils every pair. So, newest first, each frame is paired with the earlier
/// frame its shape differs most from among those not yet used as a reference: the widest
/// baselines available, and each frame is a reference at most once and a later frame at
/// most once, so a bad landmark set enters at most two pairs.
fn pairs(frames: &[&Frame], min_motion: f64) -> Vec<(usize, usize, f64)> {
    let mut used = vec![false; frames.len()];
    let mut out = Vec::new();
    for j in (1..frames.len()).rev() {
        let width = f64::from(frames[j].face_width);
        let farthest = (0..j)
            .filter(|&i| !used[i])
            .filter_map(|i| Some((i, shape_change(&frames[i].landmarks, &frames[j].landmarks)? / width)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, change)) = farthest
            && change >= min_motion
        {
            used[i] = true;
            out.push((i, j, change));
        }
    }
    out
}

/// RMS landmark displacement (pixels of `b`) left after the least-squares similarity from
/// `a` to `b`: how much the face's shape in the image changed.
pub fn shape_change(a: &[[f32; 2]; 5], b: &[[f32; 2]; 5]) -> Option<f64> {
    let m = similarity_transform(a, b)?;
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(p, q)| {
            let (x, y) = m.apply(f64::from(p[0]), f64::from(p[1]));
            (x - f64::from(q[0])).powi(2) + (y - f64::from(q[1])).powi(2)
        })
        .sum();
    Some((sum / a.len() as f64).sqrt())
}

/// RMS reprojection error (pixels of `dst`) of the DLT homography from `src` to `dst`;
/// `None` when the points are degenerate or a point maps to infinity.
pub fn homography_residual(src: &[[f32; 2]; 5], dst: &[[f32; 2]; 5]) -> Option<f64> {
    let h = fit_homography(src, dst)?;
    let mut sum = 0.0;
    for (p, q) in src.iter().zip(dst) {
        let (x, y) = apply(&h, f64::from(p[0]), f64::from(p[1]))?;
        sum += (x - f64::from(q[0])).powi(2) + (y - f64::from(q[1])).powi(2);
    }
    Some((sum / src.len() as f64).sqrt())
}

/// Maps `(x, y)` by the row-major 3×3 homography `h`; `None` at (or near) infinity.
pub fn apply(h: &[f64; 9], x: f64, y: f64) -> Option<(f64, f64)> {
    let w = h[6] * x + h[7] * y + h[8];
    if w.abs() < 1e-12 {
        return None;
    }
    Some(((h[0] * x + h[1] * y + h[2]) / w, (h[3] * x + h[4] * y + h[5]) / w))
}

/// The homography (row-major 3×3, `h[8]` = 1 unless it is 0) mapping `src` onto `dst` in
/// the algebraic least-squares sense: the normalised DLT. Both point sets are first moved
/// to their centroid and scaled to a mean distance of √2 (Hartley), which makes the
/// linear system well conditioned; the solution is the right singular vector of the 2n×9
/// system `A` for its smallest singular value, i.e. the eigenvector of `AᵀA` for its
/// smallest eigenvalue. At least four points; `None` when either set is degenerate.
pub fn fit_homography(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<[f64; 9]> {
    if src.len() != dst.len() || src.len() < 4 {
        return None;
    }
    let (ts, td) = (hartley(src)?, hartley(dst)?);
    let mut ata = [[0.0; 9]; 9];
    for (p, q) in src.iter().zip(dst) {
        let (x, y) = ts.map(p);
        let (u, v) = td.map(q);
        let rows = [
            [-x, -y, -1.0, 0.0, 0.0, 0.0, u * x, u * y, u],
            [0.0, 0.0, 0.0, -x, -y, -1.0, v * x, v * y, v],
        ];
        for r in &rows {
            for i in 0..9 {
                for j in 0..9 {
                    ata[i][j] += r[i] * r[j];
                }
            }
        }
    }
    let n = smallest_eigenvector(ata);
    // Undo the normalisations: H = Td⁻¹ · N · Ts.
    let h = mul3(&mul3(&td.inverse(), &n), &ts.matrix());
    let scale = if h[8].abs() > 1e-12 { h[8] } else { 1.0 };
    Some(h.map(|v| v / scale))
}

/// Hartley's normalisation: `(x, y) ↦ s·(x − cx, y − cy)`, mean distance √2 from the origin.
#[derive(Debug, Clone, Copy)]
struct Normalisation {
    s: f64,
    cx: f64,
    cy: f64,
}

impl Normalisation {
    fn map(&self, p: &[f32; 2]) -> (f64, f64) {
        (
            self.s * (f64::from(p[0]) - self.cx),
            self.s * (f64::from(p[1]) - self.cy),
        )
    }

    fn matrix(&self) -> [f64; 9] {
        [
            self.s,
            0.0,
            -self.s * self.cx,
            0.0,
            self.s,
            -self.s * self.cy,
            0.0,
            0.0,
            1.0,
        ]
    }

    fn inverse(&self) -> [f64; 9] {
        [1.0 / self.s, 0.0, self.cx, 0.0, 1.0 / self.s, self.cy, 0.0, 0.0, 1.0]
    }
}

fn hartley(points: &[[f32; 2]]) -> Option<Normalisation> {
    let n = points.len() as f64;
    let cx = points.iter().map(|p| f64::from(p[0])).sum::<f64>() / n;
    let cy = points.iter().map(|p| f64::from(p[1])).sum::<f64>() / n;
    let mean = points
        .iter()
        .map(|p| (f64::from(p[0]) - cx).hypot(f64::from(p[1]) - cy))
        .sum::<f64>()
        / n;
    if !(mean.is_finite() && mean > 1e-9) {
        return None;
    }
    Some(Normalisation {
        s: std::f64::consts::SQRT_2 / mean,
        cx,
        cy,
    })
}

fn mul3(a: &[f64; 9], b: &[f64; 9]) -> [f64; 9] {
    std::array::from_fn(|k| {
        let (i, j) = (k / 3, k % 3);
        (0..3).map(|m| a[i * 3 + m] * b[m * 3 + j]).sum()
    })
}

/// Eigenvector of the symmetric matrix `a` for its smallest eigenvalue, by cyclic Jacobi
/// rotations (Golub & Van Loan, "Matrix Computations", §8.5): exact to rounding for a
/// 9×9, no library needed.
fn smallest_eigenvector(mut a: [[f64; 9]; 9]) -> [f64; 9] {
    let mut v = [[0.0; 9]; 9];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    let scale: f64 = a.iter().flatten().map(|x| x * x).sum::<f64>().max(1e-300);
    for _sweep in 0..60 {
        let off: f64 = (0..9)
            .flat_map(|p| (0..9).filter(move |&q| q != p).map(move |q| (p, q)))
            .map(|(p, q)| a[p][q] * a[p][q])
            .sum();
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..8 {
            for q in p + 1..9 {
                if a[p][q] == 0.0 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (rp, rq) = (a[p], a[q]);
                a[p] = std::array::from_fn(|k| c * rp[k] - s * rq[k]);
                a[q] = std::array::from_fn(|k| s * rp[k] + c * rq[k]);
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    let min = (0..9).min_by(|&i, &j| a[i][i].total_cmp(&a[j][j])).unwrap_or(8);
    std::array::from_fn(|k| v[k][min])
}

/// Median (mean of the middle two for an even count); 0 for none.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: deterministic noise and poses.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * ((self.next() >> 11) as f64 / (1u64 << 53) as f64)
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform(1e-12, 1.0), self.uniform(0.0, 1.0));
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    /// The five landmarks on a 3-D face, in face widths: x to the image's right, y down,
    /// z toward the camera. The nose tip stands 0.3 face widths out of the eyes' plane, the
    /// mouth corners 0.05.
    const FACE: [[f64; 3]; 5] = [
        [-0.22, -0.12, 0.0],
        [0.22, -0.12, 0.0],
        [0.0, 0.08, 0.3],
        [-0.18, 0.3, 0.05],
        [0.18, 0.3, 0.05],
    ];

    /// The same landmarks printed on paper.
    const PHOTO: [[f64; 3]; 5] = [
        [-0.22, -0.12, 0.0],
        [0.22, -0.12, 0.0],
        [0.0, 0.08, 0.0],
        [-0.18, 0.3, 0.0],
        [0.18, 0.3, 0.0],
    ];

    /// Head pose: yaw (about the vertical axis), pitch, roll in degrees, and the position of
    /// the face's centre in face widths (z: distance from the camera).
    #[derive(Clone, Copy)]
    struct Pose {
        yaw: f64,
        pitch: f64,
        roll: f64,
        at: [f64; 3],
    }

    const FRONTAL: Pose = Pose {
        yaw: 0.0,
        pitch: 0.0,
        roll: 0.0,
        at: [0.0, 0.0, 5.0],
    };

    /// Focal length in pixels: a face 5 widths away is 160 px wide.
    const FOCAL: f64 = 800.0;

    /// Pinhole projection of `model` in `pose`, rotating about a point half a face width
    /// behind the eyes (roughly where a head turns); face width in pixels.
    fn project(model: &[[f64; 3]; 5], pose: Pose) -> ([[f32; 2]; 5], f32) {
        let (y, p, r) = (pose.yaw.to_radians(), pose.pitch.to_radians(), pose.roll.to_radians());
        let lm = model.map(|[x0, y0, z0]| {
            let (x, yy, z) = (x0, y0, z0 + 0.5);
            // Roll (image plane), then pitch (about x), then yaw (about y).
            let (x, yy) = (x * r.cos() - yy * r.sin(), x * r.sin() + yy * r.cos());
            let (yy, z) = (yy * p.cos() - z * p.sin(), yy * p.sin() + z * p.cos());
            let (x, z) = (x * y.cos() + z * y.sin(), -x * y.sin() + z * y.cos());
            let (cx, cy, cz) = (pose.at[0] + x, pose.at[1] + yy, pose.at[2] - (z - 0.5));
            [(640.0 + FOCAL * cx / cz) as f32, (360.0 + FOCAL * cy / cz) as f32]
        });
        (lm, (FOCAL / pose.at[2]) as f32)
    }

    fn jitter(lm: [[f32; 2]; 5], width: f32, sigma: f64, rng: &mut Rng) -> [[f32; 2]; 5] {
        lm.map(|[x, y]| {
            let s = sigma * f64::from(width);
            [
                (f64::from(x) + s * rng.normal()) as f32,
                (f64::from(y) + s * rng.normal()) as f32,
            ]
        })
    }

    fn relative_residual(model: &[[f64; 3]; 5], a: Pose, b: Pose) -> f64 {
        let (pa, _) = project(model, a);
        let (pb, wb) = project(model, b);
        homography_residual(&pa, &pb).unwrap() / f64::from(wb)
    }

    fn relative_change(model: &[[f64; 3]; 5], a: Pose, b: Pose) -> f64 {
        let (pa, _) = project(model, a);
        let (pb, wb) = project(model, b);
        shape_change(&pa, &pb).unwrap() / f64::from(wb)
    }

    /// 3 s at 10 frames/s of `model` in the poses `pose(a)`, `a` from 0 to 1; landmark
    /// jitter `sigma` face widths.
    fn track(model: &[[f64; 3]; 5], pose: impl Fn(f64) -> Pose, sigma: f64, seed: u64) -> MotionTrace {
        let mut rng = Rng(seed);
        let mut trace = MotionTrace::new(&MotionConfig::default());
        for k in 0..=30 {
            let (lm, w) = project(model, pose(k as f64 / 30.0));
            trace.push(1_000 + k as i64 * 100, jitter(lm, w, sigma, &mut rng), w);
        }
        trace
    }

    /// A head turning from −5° to 20° while drifting sideways and coming closer.
    fn turn(a: f64) -> Pose {
        Pose {
            yaw: -5.0 + 25.0 * a,
            pitch: 3.0 * a,
            roll: 2.0 * a,
            at: [0.3 * a, 0.1 * a, 6.0 - a],
        }
    }

    /// A small turn, −5° to 5°, while walking closer.
    fn glance(a: f64) -> Pose {
        Pose {
            yaw: -5.0 + 10.0 * a,
            pitch: 2.0 * a,
            roll: 0.0,
            at: [0.1 * a, 0.0, 6.0 - 1.5 * a],
        }
    }

    /// A photo held close and waved: tilted by up to 30° about both axes.
    fn wave(a: f64) -> Pose {
        let t = 2.0 * std::f64::consts::PI * a;
        Pose {
            yaw: 30.0 * t.sin(),
            pitch: 25.0 * (1.5 * t).sin(),
            roll: 5.0 * t.cos(),
            at: [0.2 * t.sin(), 0.1 * a, 3.0 - 0.5 * a],
        }
    }

    fn still(_: f64) -> Pose {
        Pose {
            at: [0.0, 0.0, 5.0],
            ..FRONTAL
        }
    }

    /// A random homography: scale, shear and rotation within ±20 %, a shift of up to 60 px
    /// and perspective terms that change the scale by up to ±25 % across 500 px.
    fn random_homography(rng: &mut Rng) -> [f64; 9] {
        let mut u = |r: f64| rng.uniform(-r, r);
        [
            1.0 + u(0.2),
            u(0.2),
            u(60.0),
            u(0.2),
            1.0 + u(0.2),
            u(60.0),
            u(5e-4),
            u(5e-4),
            1.0,
        ]
    }

    #[test]
    fn the_dlt_recovers_a_known_homography() {
        let mut rng = Rng(7);
        let (src, _) = project(&PHOTO, FRONTAL);
        for _ in 0..20 {
            let h = random_homography(&mut rng);
            let dst = src.map(|[x, y]| {
                let (u, v) = apply(&h, f64::from(x), f64::from(y)).unwrap();
                [u as f32, v as f32]
            });
            let fit = fit_homography(&src, &dst).unwrap();
            // The same map, checked away from the landmarks too.
            for (x, y) in [(600.0, 300.0), (700.0, 420.0), (500.0, 500.0)] {
                let (a, b) = (apply(&h, x, y).unwrap(), apply(&fit, x, y).unwrap());
                assert!((a.0 - b.0).abs() < 1e-2 && (a.1 - b.1).abs() < 1e-2, "{a:?} vs {b:?}");
            }
            assert!(homography_residual(&src, &dst).unwrap() < 1e-3);
        }
        assert!(fit_homography(&[[1.0, 1.0]; 5], &src).is_none());
        assert!(fit_homography(&src[..3], &src[..3]).is_none());
    }

    #[test]
    fn a_photo_tilted_and_moved_leaves_no_residual() {
        let mut rng = Rng(11);
        for _ in 0..20 {
            let mut pose = || Pose {
                yaw: rng.uniform(-30.0, 30.0),
                pitch: rng.uniform(-30.0, 30.0),
                roll: rng.uniform(-20.0, 20.0),
                at: [rng.uniform(-1.0, 1.0), rng.uniform(-0.5, 0.5), rng.uniform(2.5, 8.0)],
            };
            let (a, b) = (pose(), pose());
            assert!(relative_residual(&PHOTO, a, b) < 1e-5);
        }
    }

    #[test]
    fn a_turned_face_leaves_a_residual_well_above_a_photo() {
        for (yaw, least) in [(10.0, 0.015), (20.0, 0.03), (30.0, 0.045)] {
            let turned = Pose { yaw, ..FRONTAL };
            let face = relative_residual(&FACE, FRONTAL, turned);
            let photo = relative_residual(&PHOTO, FRONTAL, turned);
            assert!(face > least, "{yaw}°: {face}");
            assert!(face > 1000.0 * photo, "{yaw}°: {face} vs {photo}");
            // Turning away from an already turned pose is just as telling.
            let from = Pose {
                yaw: -yaw / 2.0,
                ..FRONTAL
            };
            let to = Pose {
                yaw: yaw / 2.0,
                ..FRONTAL
            };
            assert!(relative_residual(&FACE, from, to) > least * 0.9, "{yaw}°");
        }
    }

    #[test]
    fn a_turning_face_scores_high_and_a_waved_photo_low() {
        let cfg = MotionConfig::default();
        for seed in 1..=5 {
            let face = track(&FACE, turn, 0.0025, seed).evaluate(&cfg).unwrap();
            assert!(
                face.score >= 0.9 && face.pairs >= cfg.min_pairs,
                "seed {seed}: {face:?}"
            );
            let photo = track(&PHOTO, wave, 0.0025, seed).evaluate(&cfg).unwrap();
            assert!(photo.score <= 0.1, "seed {seed}: {photo:?}");
            assert!(
                face.residual > 10.0 * photo.residual,
                "seed {seed}: {face:?} vs {photo:?}"
            );
        }
        // Without jitter the photo's residual is rounding error.
        let exact = track(&PHOTO, wave, 0.0, 1).evaluate(&cfg).unwrap();
        assert!(exact.residual < 1e-5 && exact.score == 0.0, "{exact:?}");
    }

    #[test]
    fn a_still_face_gives_no_evidence() {
        let cfg = MotionConfig::default();
        for sigma in [0.0, 0.005] {
            for seed in 1..=5 {
                assert!(track(&FACE, still, sigma, seed).evaluate(&cfg).is_none());
                assert!(track(&PHOTO, still, sigma, seed).evaluate(&cfg).is_none());
            }
        }
        // Walking straight at the camera: shift and scale, but no turn.
        let approach = |a: f64| Pose {
            at: [0.2 * a, 0.0, 6.0 - 2.0 * a],
            ..FRONTAL
        };
        assert!(track(&FACE, approach, 0.0025, 1).evaluate(&cfg).is_none());
    }

    #[test]
    fn one_bad_landmark_set_does_not_change_the_verdict() {
        let cfg = MotionConfig::default();
        for (model, pose, live) in [(&FACE, turn as fn(f64) -> Pose, true), (&PHOTO, wave, false)] {
            let mut rng = Rng(3);
            let mut trace = MotionTrace::new(&cfg);
            for k in 0..=30 {
                let (mut lm, w) = project(model, pose(k as f64 / 30.0));
                lm = jitter(lm, w, 0.0025, &mut rng);
                if k == 12 {
                    // The detector swapped a mouth corner for the chin.
                    lm[3][1] += 0.25 * w;
                    lm[2][0] -= 0.1 * w;
                }
                trace.push(k * 100, lm, w);
            }
            let r = trace.evaluate(&cfg).unwrap();
            assert_eq!(r.score >= 0.9, live, "{r:?}");
            assert_eq!(r.score <= 0.1, !live, "{r:?}");
        }
    }

    #[test]
    fn the_trace_keeps_its_window_and_restarts_when_time_goes_back() {
        let cfg = MotionConfig::default();
        let mut trace = MotionTrace::new(&cfg);
        let (lm, w) = project(&FACE, FRONTAL);
        for k in 0..100 {
            trace.push(k * 100, lm, w);
        }
        assert_eq!(trace.len(), 61);
        trace.push(9_900, lm, w); // a repeated PTS
        trace.push(10_000, lm, 0.0); // no width
        trace.push(10_000, [[f32::NAN; 2]; 5], w);
        assert_eq!(trace.len(), 61);
        trace.push(500, lm, w);
        assert_eq!(trace.len(), 1);
        assert!(trace.evaluate(&cfg).is_none());
    }

    #[test]
    fn config_defaults_validate_and_problems_are_named() {
        assert!(MotionConfig::default().validate("liveness.motion").is_empty());
        let bad = MotionConfig {
            min_motion: 0.0,
            min_pairs: 0,
            residual_high: 0.001,
            ..MotionConfig::default()
        };
        let p = bad.validate("liveness.motion");
        for key in ["min_motion", "min_pairs", "residual_high"] {
            assert!(
                p.iter().any(|l| l.starts_with(&format!("liveness.motion.{key}:"))),
                "{p:?}"
            );
        }
        let partial: MotionConfig = toml::from_str("min_pairs = 7").unwrap();
        assert_eq!(partial.min_pairs, 7);
        assert_eq!(partial.window_s, 6.0);
        assert!(toml::from_str::<MotionConfig>("min_pair = 7").is_err());
    }

    type Scenario = (&'static str, &'static [[f64; 3]; 5], fn(f64) -> Pose);

    /// The numbers the README quotes: `cargo test --lib motion_measurements -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints the measurements the README quotes; asserts nothing"]
    fn motion_measurements() {
        for yaw in [5.0, 10.0, 20.0, 30.0] {
            let b = Pose { yaw, ..FRONTAL };
            println!(
                "yaw 0→{yaw}°: 3-D residual {:.4}, shape change {:.4}; photo residual {:.1e}, shape change {:.4}",
                relative_residual(&FACE, FRONTAL, b),
                relative_change(&FACE, FRONTAL, b),
                relative_residual(&PHOTO, FRONTAL, b),
                relative_change(&PHOTO, FRONTAL, b),
            );
        }
        let scenarios: [Scenario; 6] = [
            ("3-D face turning", &FACE, turn),
            ("3-D face glancing", &FACE, glance),
            ("3-D face still", &FACE, still),
            ("photo turning", &PHOTO, turn),
            ("photo waved", &PHOTO, wave),
            ("photo still", &PHOTO, still),
        ];
        for sigma in [0.0, 0.0025, 0.005, 0.01] {
            for (name, model, pose) in scenarios {
                let mut r: Vec<MotionReading> = (1..=50)
                    .filter_map(|seed| track(model, pose, sigma, seed).evaluate(&MotionConfig::default()))
                    .collect();
                let Some(mid) = r.len().checked_sub(1).map(|n| n / 2) else {
                    println!("jitter σ {sigma}, {name}: no readings");
                    continue;
                };
                let count = r.len() as f32;
                let pairs = r.iter().map(|r| r.pairs).sum::<usize>() as f32 / count;
                let mean = r.iter().map(|r| r.score).sum::<f32>() / count;
                let mut ex: Vec<f32> = r.iter().map(|r| r.residual - r.floor).collect();
                ex.sort_by(f32::total_cmp);
                r.sort_by(|a, b| a.residual.total_cmp(&b.residual));
                let residual = r[mid].residual;
                r.sort_by(|a, b| a.floor.total_cmp(&b.floor));
                println!(
                    "jitter σ {sigma}, {name}: {} readings/50, residual median {residual:.4}, floor median {:.4}, \
                     excess {:.4}…{:.4}, pairs {pairs:.1}, score mean {mean:.2}",
                    r.len(),
                    r[mid].floor,
                    ex[0],
                    ex[ex.len() - 1],
                );
            }
        }
    }
}
