//! Synthetic presentations for liveness tests and evaluation: videos made from one photo
//! of a face, either as a bona fide presentation (a sub-visible pulse in the skin and
//! non-rigid motion of the face, as a live head turning) or as an attack (the photo moved
//! as a rigid plane in front of the camera, with or without recapture artefacts of a
//! print or a screen).
//!
//! They are synthetic: no real presentation-attack video dataset was available offline.
//! The bona fide videos are photos brought to life, not recordings of live people.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::synth::Mp4Writer;
use crate::vision::geometry::Detection;

/// What the video shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Presentation {
    /// The face with a pulse at `pulse_hz` and a non-rigid head turn.
    BonaFide { pulse_hz: f32 },
    /// The photo itself, moved as a rigid plane (tilted, shifted, nearer and farther).
    RigidPhoto,
    /// A printed photo: halftone dots, gamma and a warm cast, JPEG, moved as a plane.
    Print,
    /// A photo on a screen: moiré, glare, slight blur and a cold cast, moved as a plane.
    Screen,
}

impl Presentation {
    pub fn name(&self) -> String {
        match self {
            Presentation::BonaFide { pulse_hz } => format!("bona fide ({pulse_hz:.1} Hz pulse)"),
            Presentation::RigidPhoto => "rigid photo".into(),
            Presentation::Print => "print".into(),
            Presentation::Screen => "screen".into(),
        }
    }

    pub fn is_attack(&self) -> bool {
        !matches!(self, Presentation::BonaFide { .. })
    }
}

/// Size and length of a presentation video.
#[derive(Debug, Clone, Copy)]
pub struct PresentationOptions {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub seconds: f32,
    /// Width of the face in the video, pixels.
    pub face_px: f32,
    pub bitrate_kbps: u32,
}

impl Default for PresentationOptions {
    fn default() -> Self {
        PresentationOptions {
            width: 480,
            height: 360,
            fps: 25,
            seconds: 8.0,
            face_px: 140.0,
            // High enough that the encoder keeps a sub-visible colour change.
            bitrate_kbps: 6000,
        }
    }
}

/// Writes the presentation of the face `face` of `photo` to `out` (H.264 MP4).
pub fn make_presentation_video(
    photo: &RgbImage,
    face: &Detection,
    kind: Presentation,
    out: &Path,
    opts: &PresentationOptions,
) -> Result<(), String> {
    let source = match kind {
        Presentation::Print => print_artefacts(photo),
        _ => photo.clone(),
    };
    let writer = Mp4Writer::create(out, opts.width, opts.height, opts.fps, opts.bitrate_kbps)?;
    let frames = (opts.seconds * opts.fps as f32).round() as u64;
    for i in 0..frames {
        let t = i as f32 / opts.fps as f32;
        let frame = render(&source, face, kind, t, opts);
        if let Err(e) = writer.push(i, &frame) {
            writer.abort();
            return Err(e);
        }
    }
    writer.finish()
}

/// One frame at time `t`: where each output pixel comes from in the photo.
fn render(photo: &RgbImage, face: &Detection, kind: Presentation, t: f32, opts: &PresentationOptions) -> RgbImage {
    let [fx, fy, fw, fh] = face.bbox;
    let scale = opts.face_px / fw.max(1.0);
    let (cx, cy) = (fx + fw / 2.0, fy + fh / 2.0);
    let (ox, oy) = (opts.width as f32 / 2.0, opts.height as f32 / 2.0);
    let phase = std::f32::consts::TAU * t;
    // The whole presentation drifts a little, as a hand or a head does.
    let (dx, dy) = (6.0 * (0.23 * phase).sin(), 4.0 * (0.31 * phase).sin());
    // Rigid attacks: a plane tilting back and forth (perspective) and coming nearer.
    let tilt = if kind.is_attack() {
        0.0006 * (0.4 * phase).sin()
    } else {
        0.0
    };
    let zoom = if kind.is_attack() {
        1.0 + 0.06 * (0.2 * phase).sin()
    } else {
        1.0
    };
    // Bona fide: the nose region turns further than the cheeks (a 3-D head's parallax).
    let nose = face.landmarks[2];
    let (nx, ny) = ((nose[0] - cx) * scale + ox, (nose[1] - cy) * scale + oy);
    let turn = match kind {
        Presentation::BonaFide { .. } => 0.06 * opts.face_px * (0.35 * phase).sin(),
        _ => 0.0,
    };
    let sigma2 = (0.35 * opts.face_px).powi(2);
    let mut frame = RgbImage::new(opts.width, opts.height);
    for (x, y, px) in frame.enumerate_pixels_mut() {
        let (mut u, v) = (x as f32 - dx, y as f32 - dy);
        let r2 = (u - nx).powi(2) + (v - ny).powi(2);
        u -= turn * (-r2 / sigma2).exp();
        // Plane motion: perspective divide, then scale about the frame's centre.
        let w = 1.0 + tilt * (u - ox);
        let (u, v) = (ox + (u - ox) / (w * zoom), oy + (v - oy) / (w * zoom));
        let (sx, sy) = ((u - ox) / scale + cx, (v - oy) / scale + cy);
        *px = sample(photo, sx, sy);
    }
    if let Presentation::BonaFide { pulse_hz } = kind {
        add_pulse(&mut frame, (ox + dx, oy + dy), opts.face_px, pulse_hz, t);
    }
    if kind == Presentation::Screen {
        screen_artefacts(&mut frame, t);
    }
    frame
}

/// Bilinear sample; black outside the photo.
fn sample(img: &RgbImage, x: f32, y: f32) -> Rgb<u8> {
    let (w, h) = (img.width() as f32, img.height() as f32);
    if !(0.0..w - 1.0).contains(&x) || !(0.0..h - 1.0).contains(&y) {
        return Rgb([0, 0, 0]);
    }
    let (x0, y0) = (x.floor(), y.floor());
    let (ax, ay) = (x - x0, y - y0);
    let (x0, y0) = (x0 as u32, y0 as u32);
    let p = |dx: u32, dy: u32| img.get_pixel(x0 + dx, y0 + dy).0;
    let (a, b, c, d) = (p(0, 0), p(1, 0), p(0, 1), p(1, 1));
    let mut out = [0u8; 3];
    for k in 0..3 {
        let top = a[k] as f32 * (1.0 - ax) + b[k] as f32 * ax;
        let bottom = c[k] as f32 * (1.0 - ax) + d[k] as f32 * ax;
        out[k] = (top * (1.0 - ay) + bottom * ay).round().clamp(0.0, 255.0) as u8;
    }
    Rgb(out)
}

/// A blood-volume pulse: the skin inside an ellipse around the face's centre brightens and
/// darkens by 1.6 % in green, half that in red and a quarter in blue (haemoglobin absorbs
/// green most), about what rPPG measures on live skin; two to three grey levels, which
/// H.264 at the default bitrate keeps.
fn add_pulse(frame: &mut RgbImage, centre: (f32, f32), face_px: f32, hz: f32, t: f32) {
    let wave = (std::f32::consts::TAU * hz * t).sin();
    let gain = [0.008 * wave, 0.016 * wave, 0.004 * wave];
    let (rx, ry) = (0.5 * face_px, 0.7 * face_px);
    for (x, y, px) in frame.enumerate_pixels_mut() {
        let (ex, ey) = ((x as f32 - centre.0) / rx, (y as f32 - centre.1) / ry);
        if ex * ex + ey * ey <= 1.0 {
            for k in 0..3 {
                px.0[k] = (px.0[k] as f32 * (1.0 + gain[k])).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// A print: halftone dots, a stronger gamma, a warm cast, then JPEG at quality 40.
fn print_artefacts(photo: &RgbImage) -> RgbImage {
    let mut out = photo.clone();
    for (x, y, px) in out.enumerate_pixels_mut() {
        let dots = 0.88 + 0.12 * ((x as f32 * 0.9).cos() * (y as f32 * 0.9).cos());
        let cast = [1.06, 1.0, 0.9];
        for k in 0..3 {
            let v = (px.0[k] as f32 / 255.0).powf(1.25) * 255.0 * dots * cast[k];
            px.0[k] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    let mut jpeg = std::io::Cursor::new(Vec::new());
    let encoded = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 40).encode_image(&out);
    match encoded.ok().and_then(|_| image::load_from_memory(jpeg.get_ref()).ok()) {
        Some(img) => img.to_rgb8(),
        None => out,
    }
}

/// A screen filmed by a camera: moiré between the two pixel grids, a glare that wanders,
/// a cold cast and a slight blur.
fn screen_artefacts(frame: &mut RgbImage, t: f32) {
    let (w, h) = (frame.width() as f32, frame.height() as f32);
    let (gx, gy) = (w * (0.3 + 0.1 * (0.5 * t).sin()), h * 0.3);
    for (x, y, px) in frame.enumerate_pixels_mut() {
        let (xf, yf) = (x as f32, y as f32);
        let moire = 0.9 + 0.1 * ((0.21 * xf + 0.13 * yf).sin() * (0.17 * yf - 0.05 * xf).cos());
        let glare = 90.0 * (-((xf - gx).powi(2) + (yf - gy).powi(2)) / (2.0 * 60.0f32.powi(2))).exp();
        let cast = [0.92, 1.0, 1.1];
        for k in 0..3 {
            let v = px.0[k] as f32 * moire * cast[k] + glare;
            px.0[k] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    *frame = image::imageops::blur(frame, 0.8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face() -> Detection {
        Detection {
            bbox: [40.0, 30.0, 60.0, 70.0],
            score: 0.9,
            landmarks: [[55.0, 55.0], [85.0, 55.0], [70.0, 70.0], [58.0, 85.0], [82.0, 85.0]],
        }
    }

    fn photo() -> RgbImage {
        RgbImage::from_fn(140, 130, |x, y| Rgb([(x * 2) as u8, (y * 2) as u8, 120]))
    }

    #[test]
    fn the_pulse_changes_the_skin_only_and_mostly_in_green() {
        let mut img = RgbImage::from_pixel(200, 200, Rgb([150, 150, 150]));
        // 1 Hz at t = 0.25 s: the top of the wave.
        add_pulse(&mut img, (100.0, 100.0), 100.0, 1.0, 0.25);
        let inside = img.get_pixel(100, 100).0;
        assert!(
            inside[1] > 150 && inside[1] >= inside[0] && inside[0] >= inside[2],
            "{inside:?}"
        );
        assert_eq!(img.get_pixel(5, 5).0, [150, 150, 150], "outside the face");
    }

    #[test]
    fn only_bona_fide_faces_turn() {
        let opts = PresentationOptions::default();
        // At t = 0 nothing has moved yet: every presentation starts from the same view.
        let a = render(&photo(), &face(), Presentation::RigidPhoto, 0.0, &opts);
        let b = render(&photo(), &face(), Presentation::BonaFide { pulse_hz: 1.0 }, 0.0, &opts);
        assert_eq!(a, b);
        assert_eq!(a.get_pixel(2, 2).0, [0, 0, 0], "outside the photo is black");
    }

    #[test]
    fn attacks_and_names() {
        assert!(Presentation::Print.is_attack() && !Presentation::BonaFide { pulse_hz: 1.2 }.is_attack());
        assert_eq!(Presentation::Screen.name(), "screen");
        let f = render(
            &photo(),
            &face(),
            Presentation::Screen,
            1.0,
            &PresentationOptions::default(),
        );
        assert_eq!(f.dimensions(), (480, 360));
    }
}
