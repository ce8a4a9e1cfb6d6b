//! Resizing RGB images to a network's input: area averaging when shrinking and bilinear
//! when enlarging, what OpenCV's `INTER_AREA` does (the detector's landmarks are checked
//! against OpenCV's). Pure functions, unit-tested here.

use fast_image_resize::{
    FilterType, ResizeAlg, ResizeOptions, Resizer, images::TypedImage, images::TypedImageRef, pixels::U8x3,
};
use image::RgbImage;

/// Area averaging when shrinking, bilinear when enlarging: what OpenCV's `INTER_AREA`
/// does, which the detector's landmarks are checked against.
pub fn resize_rgb(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage, String> {
    if img.width() == width && img.height() == height {
        return Ok(img.clone());
    }
    if width <= img.width() && height <= img.height() {
        return Ok(resize_area(img, width, height));
    }
    let src_px: &[U8x3] = as_rgb_pixels(img.as_raw());
    let src = TypedImageRef::new(img.width(), img.height(), src_px).map_err(|e| e.to_string())?;
    let mut dst = TypedImage::<U8x3>::new(width, height);
    let bilinear = ResizeOptions::new().resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear));
    Resizer::new()
        .resize_typed(&src, &mut dst, &bilinear)
        .map_err(|e| e.to_string())?;
    let raw: Vec<u8> = dst.pixels().iter().flat_map(|p| p.0).collect();
    RgbImage::from_raw(width, height, raw).ok_or_else(|| "resize produced a short buffer".to_string())
}

fn as_rgb_pixels(raw: &[u8]) -> &[U8x3] {
    // U8x3 is a `#[repr(C)]` wrapper of `[u8; 3]`, so the cast is layout-preserving.
    debug_assert_eq!(raw.len() % 3, 0);
    unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<U8x3>(), raw.len() / 3) }
}

/// For each destination index, the source indices it covers and their share of its area.
/// Destination cell `d` covers the source interval `[d·s, (d+1)·s)`, `s = src/dst`.
pub fn area_taps(src_len: u32, dst_len: u32) -> Vec<Vec<(usize, f32)>> {
    let scale = src_len as f64 / dst_len as f64;
    (0..dst_len)
        .map(|d| {
            let start = d as f64 * scale;
            let end = ((d + 1) as f64 * scale).min(src_len as f64);
            let mut taps = Vec::with_capacity(scale.ceil() as usize + 1);
            let mut i = start.floor() as usize;
            while (i as f64) < end {
                let covered = end.min(i as f64 + 1.0) - start.max(i as f64);
                if covered > 1e-9 {
                    taps.push((i, (covered / (end - start)) as f32));
                }
                i += 1;
            }
            taps
        })
        .collect()
}

/// Rounds a non-negative pixel value half up and saturates at 255: `f32::round` is a libm
/// call on baseline x86-64 (no SSE4.1), and this runs for every pixel of every frame.
#[inline]
pub fn round_to_u8(v: f32) -> u8 {
    // `as` saturates (and maps NaN to 0), so no clamp is needed.
    (v + 0.5) as u8
}

/// The `width × height` part of `img` at `(x, y)`, clipped to the image, copied row by row
/// (the `image` crate's `crop_imm(…).to_image()` goes pixel by pixel, several times slower
/// on the refinement and liveness crops of every detected frame).
pub fn crop(img: &RgbImage, x: u32, y: u32, width: u32, height: u32) -> RgbImage {
    let (x, y) = (x.min(img.width()), y.min(img.height()));
    let (w, h) = (
        width.min(img.width() - x) as usize,
        height.min(img.height() - y) as usize,
    );
    let (sw, x, y) = (img.width() as usize, x as usize, y as usize);
    let src = img.as_raw();
    let mut pixels = Vec::with_capacity(w * h * 3);
    for row in y..y + h {
        let start = (row * sw + x) * 3;
        pixels.extend_from_slice(&src[start..start + w * 3]);
    }
    RgbImage::from_raw(w as u32, h as u32, pixels).expect("buffer sized for the crop")
}

/// Shrinks by averaging each destination pixel's exact source area (fast_image_resize's
/// box filter weighs whole pixels, which moves landmarks when the scale is not an integer).
/// Whole-number scales (1280×720 or 1920×1080 to the detector's 640 pixels) take a path
/// in integers that gives the same pixels several times faster.
pub fn resize_area(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    match whole_factors(img.width(), img.height(), width, height) {
        Some((kx, ky)) => shrink_by_whole_factors(img, kx, ky),
        None => shrink_by_areas(img, width, height),
    }
}

/// The horizontal and vertical factors when both are whole numbers small enough for the
/// integer path (a block of at most 256 pixels, so that a column of sums fits `u16`).
fn whole_factors(src_w: u32, src_h: u32, width: u32, height: u32) -> Option<(usize, usize)> {
    if width == 0 || height == 0 || !src_w.is_multiple_of(width) || !src_h.is_multiple_of(height) {
        return None;
    }
    let (kx, ky) = ((src_w / width) as usize, (src_h / height) as usize);
    (kx * ky <= 256).then_some((kx, ky))
}

/// Each destination pixel is the mean of its `kx × ky` block, rounded half up: the exact
/// area average, summed in integers and divided by a table lookup.
fn shrink_by_whole_factors(img: &RgbImage, kx: usize, ky: usize) -> RgbImage {
    let sw = img.width() as usize;
    let (w, h) = (sw / kx, img.height() as usize / ky);
    let n = kx * ky;
    let mean_of_sum: Vec<u8> = (0..=255 * n).map(|s| ((2 * s + n) / (2 * n)) as u8).collect();
    let src = img.as_raw();
    let mut dst = vec![0u8; w * h * 3];
    let mut column_sums = vec![0u16; sw * 3];
    for (y, out) in dst.chunks_exact_mut(w * 3).enumerate() {
        column_sums.fill(0);
        for row in src[y * ky * sw * 3..(y + 1) * ky * sw * 3].chunks_exact(sw * 3) {
            for (sum, &v) in column_sums.iter_mut().zip(row) {
                *sum += u16::from(v);
            }
        }
        match kx {
            2 => means_of_blocks(2, &column_sums, out, &mean_of_sum),
            3 => means_of_blocks(3, &column_sums, out, &mean_of_sum),
            _ => means_of_blocks(kx, &column_sums, out, &mean_of_sum),
        }
    }
    RgbImage::from_raw(w as u32, h as u32, dst).expect("buffer sized for the image")
}

/// One destination row from its column sums: each pixel sums `kx` neighbouring columns.
/// Always inlined, so that the calls with the common factors 2 and 3 unroll.
#[inline(always)]
fn means_of_blocks(kx: usize, column_sums: &[u16], out: &mut [u8], mean_of_sum: &[u8]) {
    for (px, block) in out.chunks_exact_mut(3).zip(column_sums.chunks_exact(3 * kx)) {
        let mut acc = [0usize; 3];
        for k in 0..kx {
            for c in 0..3 {
                acc[c] += usize::from(block[3 * k + c]);
            }
        }
        for c in 0..3 {
            px[c] = mean_of_sum[acc[c]];
        }
    }
}

/// The general area average, in `f32`, for scales that are not whole numbers.
fn shrink_by_areas(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let sw = img.width() as usize;
    let (xt, yt) = (area_taps(img.width(), width), area_taps(img.height(), height));
    let src = img.as_raw();
    let w = width as usize;
    // Vertical pass first, over only the source rows each output row needs, into one f32
    // row; then the horizontal pass with rounding.
    let mut dst = vec![0u8; height as usize * w * 3];
    let mut acc_row = vec![0f32; sw * 3];
    for (y, taps) in yt.iter().enumerate() {
        acc_row.iter_mut().for_each(|a| *a = 0.0);
        for &(i, wt) in taps {
            for (a, &v) in acc_row.iter_mut().zip(&src[i * sw * 3..(i + 1) * sw * 3]) {
                *a += v as f32 * wt;
            }
        }
        let out = &mut dst[y * w * 3..(y + 1) * w * 3];
        for (px, taps) in out.chunks_exact_mut(3).zip(&xt) {
            let mut acc = [0f32; 3];
            for &(i, wt) in taps {
                let p = &acc_row[i * 3..i * 3 + 3];
                acc[0] += p[0] * wt;
                acc[1] += p[1] * wt;
                acc[2] += p[2] * wt;
            }
            for (o, a) in px.iter_mut().zip(acc) {
                *o = round_to_u8(a);
            }
        }
    }
    RgbImage::from_raw(width, height, dst).expect("buffer sized for the image")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_to_u8_is_half_up_and_saturates() {
        for (v, want) in [
            (0.0, 0),
            (0.49, 0),
            (0.5, 1),
            (127.5, 128),
            (254.6, 255),
            (300.0, 255),
            (f32::NAN, 0),
        ] {
            assert_eq!(round_to_u8(v), want, "{v}");
        }
        for i in 0..=2550 {
            let v = i as f32 / 10.0;
            assert_eq!(round_to_u8(v), v.round() as u8, "{v}");
        }
    }

    #[test]
    fn area_taps_cover_fractional_cells() {
        // 5 → 2: cells [0, 2.5) and [2.5, 5); pixel 2 is shared half and half.
        let t = area_taps(5, 2);
        assert_eq!(t[0], vec![(0, 0.4), (1, 0.4), (2, 0.2)]);
        assert_eq!(t[1], vec![(2, 0.2), (3, 0.4), (4, 0.4)]);
        for taps in area_taps(1280, 427) {
            assert!((taps.iter().map(|t| t.1).sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn shrinking_by_a_fraction_weighs_partial_pixels() {
        // Columns 0, 100, 200, 50, 250 shrunk to 2: (0·.4 + 100·.4 + 200·.2) and (200·.2 + 50·.4 + 250·.4).
        let vals = [0u8, 100, 200, 50, 250];
        let img = RgbImage::from_fn(5, 1, |x, _| image::Rgb([vals[x as usize]; 3]));
        let small = resize_area(&img, 2, 1);
        assert_eq!(small.get_pixel(0, 0).0[0], 80);
        assert_eq!(small.get_pixel(1, 0).0[0], 160);
    }

    #[test]
    fn shrinking_averages_areas() {
        // A 4×2 checkerboard of 0/200 averages to 100 in a 2×1 image.
        let img = RgbImage::from_fn(4, 2, |x, y| {
            if (x + y) % 2 == 0 {
                image::Rgb([200; 3])
            } else {
                image::Rgb([0; 3])
            }
        });
        let small = resize_rgb(&img, 2, 1).unwrap();
        for p in small.pixels() {
            assert!((p[0] as i32 - 100).abs() <= 1, "{p:?}");
        }
    }

    /// A deterministic, busy test pattern (every channel differs, no two rows alike).
    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = x.wrapping_mul(2_654_435_761).wrapping_add(y.wrapping_mul(40_503)) >> 7;
            image::Rgb([v as u8, (v >> 8) as u8, (x * 7 + y * 3) as u8])
        })
    }

    #[test]
    fn whole_factor_path_gives_the_pixels_of_the_general_one() {
        for (sw, sh, w, h) in [
            (1280, 720, 640, 360),
            (1920, 1080, 640, 360),
            (64, 48, 16, 12),
            (60, 40, 20, 20),
            (9, 4, 9, 2),
        ] {
            let img = pattern(sw, sh);
            assert!(whole_factors(sw, sh, w, h).is_some(), "{sw}×{sh} → {w}×{h}");
            let fast = resize_area(&img, w, h);
            let general = shrink_by_areas(&img, w, h);
            assert_eq!(fast.dimensions(), (w, h));
            assert!(fast == general, "{sw}×{sh} → {w}×{h}: the integer path differs");
        }
    }

    #[test]
    fn crops_are_the_image_crates_crops_clipped_to_the_image() {
        let img = pattern(37, 23);
        for (x, y, w, h) in [(0, 0, 37, 23), (5, 7, 10, 4), (30, 20, 20, 20), (40, 0, 3, 3)] {
            let want = image::imageops::crop_imm(&img, x, y, w, h).to_image();
            assert!(crop(&img, x, y, w, h) == want, "({x}, {y}) {w}×{h}");
        }
    }

    #[test]
    fn only_whole_small_factors_take_the_integer_path() {
        assert_eq!(whole_factors(1280, 720, 640, 360), Some((2, 2)));
        assert_eq!(whole_factors(1920, 1080, 640, 360), Some((3, 3)));
        assert_eq!(whole_factors(1280, 720, 427, 240), None, "1280/427 is not whole");
        assert_eq!(
            whole_factors(4096, 4096, 16, 16),
            None,
            "a 256×256 block would overflow u16 sums"
        );
        assert_eq!(whole_factors(10, 10, 0, 5), None);
    }

    #[test]
    fn whole_factor_means_round_half_up() {
        // Red of the first 2×2 block sums to 2 (mean 0.5: up to 1); blue of the second to
        // 1019 (mean 254.75: up to 255).
        let img = RgbImage::from_fn(4, 2, |x, y| match (x / 2, x % 2, y) {
            (0, 0, 0) => image::Rgb([1, 0, 0]),
            (0, 1, 1) => image::Rgb([1, 0, 0]),
            (0, _, _) => image::Rgb([0, 0, 0]),
            _ => image::Rgb([255, 255, if x == 3 && y == 1 { 254 } else { 255 }]),
        });
        let small = resize_area(&img, 2, 1);
        assert_eq!(small.get_pixel(0, 0).0, [1, 0, 0]);
        assert_eq!(small.get_pixel(1, 0).0, [255, 255, 255]);
    }
}
