//! Face alignment: a least-squares similarity transform from the five detected landmarks
//! to SFace's 112×112 template, and a bilinear warp from the full-resolution image.

use image::RgbImage;

/// Side of the aligned crop that SFace expects.
pub const CROP_SIZE: u32 = 112;

/// Landmark positions in the 112×112 crop (OpenCV's `FaceRecognizerSF::alignCrop`):
/// right eye, left eye, nose tip, right mouth corner, left mouth corner.
pub const TEMPLATE: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// A 2×3 affine matrix mapping source `(x, y)` to `(m[0]x + m[1]y + m[2], m[3]x + m[4]y + m[5])`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine(pub [f64; 6]);

impl Affine {
    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let m = &self.0;
        (m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5])
    }

    /// The inverse map, or `None` when the matrix is singular.
    pub fn inverse(&self) -> Option<Affine> {
        let [a, b, c, d, e, f] = self.0;
        let det = a * e - b * d;
        if det.abs() < 1e-12 {
            return None;
        }
        let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
        Some(Affine([ia, ib, -(ia * c + ib * f), id, ie, -(id * c + ie * f)]))
    }
}

/// The rotation + uniform scale + translation that best maps `src` onto `dst` in the
/// least-squares sense (no reflection). `None` when the source points coincide.
///
/// In complex numbers the model is `d = z·s + t`; centring both point sets removes `t`, and
/// the normal equation gives `z = Σ conj(s)·d / Σ |s|²` directly.
pub fn similarity_transform(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Affine> {
    let n = src.len().min(dst.len());
    if n < 2 {
        return None;
    }
    let mean = |p: &[[f32; 2]]| {
        let (sx, sy) = p[..n]
            .iter()
            .fold((0.0, 0.0), |(ax, ay), q| (ax + q[0] as f64, ay + q[1] as f64));
        (sx / n as f64, sy / n as f64)
    };
    let (smx, smy) = mean(src);
    let (dmx, dmy) = mean(dst);
    let (mut num_re, mut num_im, mut den) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (sx, sy) = (src[i][0] as f64 - smx, src[i][1] as f64 - smy);
        let (dx, dy) = (dst[i][0] as f64 - dmx, dst[i][1] as f64 - dmy);
        num_re += sx * dx + sy * dy;
        num_im += sx * dy - sy * dx;
        den += sx * sx + sy * sy;
    }
    if den < 1e-12 {
        return None;
    }
    let (a, b) = (num_re / den, num_im / den);
    Some(Affine([
        a,
        -b,
        dmx - (a * smx - b * smy),
        b,
        a,
        dmy - (b * smx + a * smy),
    ]))
}

/// Warps `src` by `m` (source → destination) into a `width × height` image, sampling
/// bilinearly; destination pixels that map outside the source are black.
pub fn warp_affine(src: &RgbImage, m: &Affine, width: u32, height: u32) -> Option<RgbImage> {
    let inv = m.inverse()?;
    let (sw, sh) = (src.width() as i64, src.height() as i64);
    let raw = src.as_raw();
    let px = |x: i64, y: i64| -> [f64; 3] {
        if x < 0 || y < 0 || x >= sw || y >= sh {
            [0.0; 3]
        } else {
            let at = ((y * sw + x) * 3) as usize;
            [raw[at] as f64, raw[at + 1] as f64, raw[at + 2] as f64]
        }
    };
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            let (sx, sy) = inv.apply(x as f64, y as f64);
            let (x0, y0) = (floor_to_int(sx), floor_to_int(sy));
            let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
            let (x1, y1) = (x0.saturating_add(1), y0.saturating_add(1));
            let (p00, p10, p01, p11) = (px(x0, y0), px(x1, y0), px(x0, y1), px(x1, y1));
            for c in 0..3 {
                let top = p00[c] * (1.0 - fx) + p10[c] * fx;
                let bottom = p01[c] * (1.0 - fx) + p11[c] * fx;
                // Non-negative: half up is rounding; `as` saturates.
                out.push((top * (1.0 - fy) + bottom * fy + 0.5) as u8);
            }
        }
    }
    RgbImage::from_raw(width, height, out)
}

/// `v.floor()` as an integer without the call to libm's `floor` (baseline x86-64 has no
/// rounding instruction); saturates far outside any image, where every pixel is black.
#[inline]
fn floor_to_int(v: f64) -> i64 {
    let t = v as i64;
    if (t as f64) > v { t - 1 } else { t }
}

/// The 112×112 crop SFace expects, from the five landmarks in `img`'s own coordinates.
pub fn align_face(img: &RgbImage, landmarks: &[[f32; 2]; 5]) -> Option<RgbImage> {
    let m = similarity_transform(landmarks, &TEMPLATE)?;
    warp_affine(img, &m, CROP_SIZE, CROP_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn rotate_scale_shift(p: [f32; 2], angle: f64, scale: f64, t: (f64, f64)) -> [f32; 2] {
        let (c, s) = (angle.cos() * scale, angle.sin() * scale);
        let (x, y) = (p[0] as f64, p[1] as f64);
        [(c * x - s * y + t.0) as f32, (s * x + c * y + t.1) as f32]
    }

    #[test]
    fn recovers_a_known_similarity_transform() {
        let (angle, scale, t) = (0.3, 2.5, (40.0, -12.0));
        let dst: Vec<[f32; 2]> = TEMPLATE
            .iter()
            .map(|&p| rotate_scale_shift(p, angle, scale, t))
            .collect();
        let m = similarity_transform(&TEMPLATE, &dst).unwrap();
        let (c, s) = (angle.cos() * scale, angle.sin() * scale);
        let expect = [c, -s, t.0, s, c, t.1];
        for k in 0..6 {
            assert!((m.0[k] - expect[k]).abs() < 1e-4, "{:?} vs {expect:?}", m.0);
        }
    }

    #[test]
    fn least_squares_with_noise_stays_close_and_inverse_roundtrips() {
        let noise = [[0.3, -0.2], [-0.1, 0.4], [0.2, 0.1], [-0.3, -0.1], [0.1, -0.3]];
        let src: Vec<[f32; 2]> = TEMPLATE
            .iter()
            .zip(noise)
            .map(|(&p, n)| {
                let q = rotate_scale_shift(p, -0.2, 3.0, (100.0, 50.0));
                [q[0] + n[0], q[1] + n[1]]
            })
            .collect();
        let m = similarity_transform(&src, &TEMPLATE).unwrap();
        for (s, d) in src.iter().zip(TEMPLATE) {
            let (x, y) = m.apply(s[0] as f64, s[1] as f64);
            assert!((x - d[0] as f64).abs() < 0.3 && (y - d[1] as f64).abs() < 0.3);
        }
        let inv = m.inverse().unwrap();
        let (x, y) = inv.apply(m.apply(7.0, 9.0).0, m.apply(7.0, 9.0).1);
        assert!((x - 7.0).abs() < 1e-9 && (y - 9.0).abs() < 1e-9);
    }

    #[test]
    fn degenerate_points_give_none() {
        assert!(similarity_transform(&[[1.0, 1.0]; 5], &TEMPLATE).is_none());
    }

    #[test]
    fn warp_by_translation_moves_pixels_and_blacks_out_the_rest() {
        let src = RgbImage::from_fn(8, 8, |x, y| Rgb([(x * 10) as u8, (y * 10) as u8, 7]));
        let m = Affine([1.0, 0.0, 2.0, 0.0, 1.0, 1.0]);
        let out = warp_affine(&src, &m, 8, 8).unwrap();
        assert_eq!(out.get_pixel(5, 4).0, [30, 30, 7]);
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
    }

    #[test]
    fn warp_interpolates_bilinearly() {
        // Horizontal ramp 0, 100, 200: sampling half-way between columns gives the midpoint.
        let src = RgbImage::from_fn(3, 1, |x, _| Rgb([(x * 100) as u8; 3]));
        let m = Affine([1.0, 0.0, -0.5, 0.0, 1.0, 0.0]);
        let out = warp_affine(&src, &m, 2, 1).unwrap();
        assert_eq!(out.get_pixel(0, 0).0[0], 50);
        assert_eq!(out.get_pixel(1, 0).0[0], 150);
    }

    #[test]
    fn warp_by_scale_matches_the_analytic_image() {
        // A linear gradient scaled by 2 stays a linear gradient with half the slope.
        let src = RgbImage::from_fn(64, 64, |x, y| Rgb([(x * 4) as u8, (y * 4) as u8, 0]));
        let m = Affine([2.0, 0.0, 0.0, 0.0, 2.0, 0.0]);
        let out = warp_affine(&src, &m, 100, 100).unwrap();
        for &(x, y) in &[(10u32, 20u32), (51, 77), (99, 3)] {
            let p = out.get_pixel(x, y).0;
            assert!((p[0] as f64 - x as f64 * 2.0).abs() <= 1.0, "{x},{y}: {p:?}");
            assert!((p[1] as f64 - y as f64 * 2.0).abs() <= 1.0, "{x},{y}: {p:?}");
        }
    }

    #[test]
    fn aligning_the_template_itself_is_the_identity() {
        let src = RgbImage::from_fn(112, 112, |x, y| Rgb([x as u8, y as u8, (x ^ y) as u8]));
        let out = align_face(&src, &TEMPLATE).unwrap();
        assert_eq!(out, src);
    }
}
