//! Liveness cue: the blood-volume pulse in the skin's colour (remote photoplethysmography,
//! rPPG). Every heartbeat changes the skin's colour by a fraction of a percent, mostly in
//! green; a printed photo or a still on a screen has no such rhythm.
//!
//! Per track: [`skin_rgb`] averages the skin of each detected frame, [`PulseTrace`] keeps
//! the last seconds of those means by presentation time, and [`PulseTrace::evaluate`]
//! interpolates them onto a uniform grid, recovers the pulse with POS (Wang et al. 2017) and
//! scores how much of the 0.7–4 Hz band's power its dominant peak holds. Everything depends
//! on the frames' PTS only, so a replay of the same video decides the same.

use std::collections::VecDeque;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::vision::geometry::Detection;

/// Fewer skin pixels than this give no mean: too small a face to carry a pulse.
pub const MIN_SKIN_PIXELS: usize = 64;

/// Hard cap on the samples a trace holds, whatever the window (30 s at 30 frames/s).
const MAX_SAMPLES: usize = 900;

/// Step of the frequency grid the spectrum is evaluated on. Finer than the 1/T resolution
/// of a few seconds of signal (it is zero-padding), so the peak is located to ±0.005 Hz.
const SPECTRUM_STEP_HZ: f64 = 0.01;

/// The reported SNR is clamped to ±this many dB (a flat signal has no band power at all).
const SNR_CLAMP_DB: f64 = 60.0;

/// A rectangle in face coordinates `(u, v)`, see [`skin_rgb`].
struct Region {
    u: (f64, f64),
    v: (f64, f64),
}

/// Skin regions in face coordinates. Forehead and cheeks are where rPPG work takes the
/// signal: well perfused, little texture, and away from the eyes (blinks, gaze) and the
/// mouth (speech), whose motion and colour are no pulse. The forehead starts above the
/// eyebrows (v ≈ −0.3) and the cheeks start below the lower eyelids and stop above the mouth
/// corners (v = 1), lateral to the nose's wings (|u| ≈ 0.25).
const SKIN_REGIONS: [Region; 3] = [
    // Forehead.
    Region {
        u: (-0.45, 0.45),
        v: (-1.0, -0.45),
    },
    // The subject's right cheek (image left in a frontal view).
    Region {
        u: (-0.8, -0.32),
        v: (0.35, 0.75),
    },
    // Left cheek.
    Region {
        u: (0.32, 0.8),
        v: (0.35, 0.75),
    },
];

/// Mean RGB of the face's skin: forehead and cheeks, inside the detection box, with eyes and
/// mouth left out. `None` when fewer than [`MIN_SKIN_PIXELS`] pixels qualify.
///
/// The regions are defined in face coordinates built from the landmarks: the origin is
/// midway between the eyes, `u` runs along the eye axis (right eye at u = −½, left eye at
/// u = +½) and `v` along the line from the eyes' midpoint to the mouth corners' midpoint
/// (v = 1 at the mouth). This frame is affine, so it follows the face through roll, scale and
/// the foreshortening of a turned head. Saturated pixels are skipped: clipping flattens
/// the pulse.
pub fn skin_rgb(image: &RgbImage, face: &Detection) -> Option<[f32; 3]> {
    let [re, le, _, rm, lm] = face.landmarks.map(|[x, y]| [f64::from(x), f64::from(y)]);
    let origin = [(re[0] + le[0]) / 2.0, (re[1] + le[1]) / 2.0];
    let a = [le[0] - re[0], le[1] - re[1]];
    let b = [(rm[0] + lm[0]) / 2.0 - origin[0], (rm[1] + lm[1]) / 2.0 - origin[1]];
    let det = a[0] * b[1] - a[1] * b[0];
    // Below a few square pixels the frame is degenerate (or the face far too small).
    if !det.is_finite() || det.abs() < 4.0 {
        return None;
    }
    let [bx, by, bw, bh] = face.bbox.map(f64::from);
    if ![bx, by, bw, bh].iter().all(|v| v.is_finite()) {
        return None;
    }
    let x0 = bx.max(0.0).floor() as u32;
    let y0 = by.max(0.0).floor() as u32;
    let x1 = ((bx + bw).ceil().max(0.0) as u32).min(image.width());
    let y1 = ((by + bh).ceil().max(0.0) as u32).min(image.height());
    let (mut sum, mut count) = ([0f64; 3], 0usize);
    for y in y0..y1 {
        for x in x0..x1 {
            let (dx, dy) = (x as f64 + 0.5 - origin[0], y as f64 + 0.5 - origin[1]);
            let u = (dx * b[1] - dy * b[0]) / det;
            let v = (a[0] * dy - a[1] * dx) / det;
            if !SKIN_REGIONS
                .iter()
                .any(|r| u >= r.u.0 && u < r.u.1 && v >= r.v.0 && v < r.v.1)
            {
                continue;
            }
            let px = image.get_pixel(x, y).0;
            if px.iter().any(|&c| c >= 250) {
                continue;
            }
            for (s, c) in sum.iter_mut().zip(px) {
                *s += f64::from(c);
            }
            count += 1;
        }
    }
    if count < MIN_SKIN_PIXELS {
        return None;
    }
    Some(sum.map(|s| (s / count as f64) as f32))
}

/// Settings of the pulse cue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PulseConfig {
    /// Seconds of skin colour kept per track; older samples are dropped. Ten seconds
    /// resolve the pulse to 0.1 Hz and hold about 100 samples at 10 frames/s.
    pub window_s: f32,
    /// Minimum evidence: the analysed stretch must span at least this many seconds
    /// (3 s hold 2–12 heartbeats across the band)…
    pub min_seconds: f32,
    /// …and hold at least this many detected frames per second on average. The default, 8,
    /// is the Nyquist rate of the band's 4 Hz top and lets a 10 frames/s detector drop
    /// one frame in five; raise it where detection runs faster.
    pub min_rate_hz: f32,
    /// A gap between two frames longer than this breaks the trace: only the stretch after
    /// the last such gap is analysed (interpolating across it would invent the pulse).
    pub max_gap_s: f32,
    /// Rate of the uniform grid the samples are linearly interpolated onto; must exceed
    /// twice `band_high_hz`.
    pub resample_hz: f32,
    /// Pass band of plausible heart rates: 0.7–4 Hz is 42–240 beats/min.
    pub band_low_hz: f32,
    pub band_high_hz: f32,
    /// POS's sliding window. Wang et al. use 1.6 s (32 frames at 20 frames/s): at least one
    /// cardiac cycle at the lowest rate, short enough to follow changes in illumination.
    pub pos_window_s: f32,
    /// The SNR (dB, see [`PulseReading::snr`]) mapped to score 0… On synthetic traces (see
    /// the tests) noise alone stayed at or below 0 dB over 8 s and below 3.5 dB over 3 s;
    /// a 1 % pulse at 0.8–1.2 Hz reached 5–10 dB (1–8 dB at 2 Hz, where the interpolation
    /// over dropped frames costs most).
    pub snr_low_db: f32,
    /// …and to score 1, linearly in between.
    pub snr_high_db: f32,
}

impl Default for PulseConfig {
    fn default() -> Self {
        PulseConfig {
            window_s: 10.0,
            min_seconds: 3.0,
            min_rate_hz: 8.0,
            max_gap_s: 0.5,
            resample_hz: 10.0,
            band_low_hz: 0.7,
            band_high_hz: 4.0,
            pos_window_s: 1.6,
            snr_low_db: 0.0,
            snr_high_db: 5.0,
        }
    }
}

impl PulseConfig {
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut p = Vec::new();
        let positive = [
            ("window_s", self.window_s),
            ("min_seconds", self.min_seconds),
            ("min_rate_hz", self.min_rate_hz),
            ("max_gap_s", self.max_gap_s),
            ("resample_hz", self.resample_hz),
            ("band_low_hz", self.band_low_hz),
            ("band_high_hz", self.band_high_hz),
            ("pos_window_s", self.pos_window_s),
        ];
        for (key, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                p.push(format!("{prefix}.{key}: {v} is not a positive number"));
            }
        }
        if self.window_s > 30.0 {
            p.push(format!("{prefix}.window_s: {} is above 30", self.window_s));
        }
        if self.min_seconds > self.window_s {
            p.push(format!(
                "{prefix}.min_seconds: {} exceeds window_s ({})",
                self.min_seconds, self.window_s
            ));
        }
        if self.pos_window_s > self.min_seconds {
            p.push(format!(
                "{prefix}.pos_window_s: {} exceeds min_seconds ({})",
                self.pos_window_s, self.min_seconds
            ));
        }
        if self.band_low_hz >= self.band_high_hz {
            p.push(format!(
                "{prefix}.band_low_hz: {} is not below band_high_hz ({})",
                self.band_low_hz, self.band_high_hz
            ));
        }
        if self.band_high_hz * 2.0 >= self.resample_hz {
            p.push(format!(
                "{prefix}.resample_hz: {} is not above twice band_high_hz ({})",
                self.resample_hz, self.band_high_hz
            ));
        }
        if !(self.snr_low_db.is_finite() && self.snr_high_db.is_finite() && self.snr_low_db < self.snr_high_db) {
            p.push(format!(
                "{prefix}.snr_low_db: {} is not below snr_high_db ({})",
                self.snr_low_db, self.snr_high_db
            ));
        }
        p
    }
}

/// What a trace says about the pulse.
#[derive(Debug, Clone, PartialEq)]
pub struct PulseReading {
    /// Heart rate of the dominant peak, beats per minute (`peak_hz` × 60).
    pub bpm: f32,
    /// Frequency of the dominant peak within the band.
    pub peak_hz: f32,
    /// The peak's power over the rest of the band's, in dB (de Haan & Jeanne's SNR with the
    /// fundamental alone): the peak is its frequency ±1/T (T: the analysed seconds, the
    /// spectral resolution), the rest is the band outside it. Clamped to ±60 dB.
    pub snr: f32,
    /// 0–1: `snr` mapped linearly from `snr_low_db` (0) to `snr_high_db` (1), clamped.
    pub score: f32,
    /// Seconds analysed (first to last frame of the stretch).
    pub seconds: f32,
    /// Detected frames in the stretch.
    pub frames: usize,
}

/// A track's skin colour over time, by presentation time, bounded to the last
/// `window_s` seconds.
#[derive(Debug, Clone)]
pub struct PulseTrace {
    samples: VecDeque<(i64, [f32; 3])>,
    window_ms: i64,
}

impl PulseTrace {
    /// An empty trace keeping `config.window_s` seconds.
    pub fn new(config: &PulseConfig) -> PulseTrace {
        PulseTrace {
            samples: VecDeque::new(),
            window_ms: (f64::from(config.window_s) * 1000.0).round() as i64,
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Adds one frame's skin mean. A repeated PTS is ignored; a PTS that goes back means a
    /// new timeline (a restarted stream), so the trace starts over. Means that are not
    /// finite and positive carry no colour and are ignored.
    pub fn push(&mut self, pts_ms: i64, rgb: [f32; 3]) {
        if !rgb.iter().all(|c| c.is_finite() && *c > 0.0) {
            return;
        }
        match self.samples.back() {
            Some(&(last, _)) if pts_ms == last => return,
            Some(&(last, _)) if pts_ms < last => self.samples.clear(),
            _ => {}
        }
        self.samples.push_back((pts_ms, rgb));
        while let Some(&(first, _)) = self.samples.front() {
            if pts_ms - first > self.window_ms || self.samples.len() > MAX_SAMPLES {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// The pulse in the latest unbroken stretch, or `None` when it is shorter than
    /// `min_seconds` or sparser than `min_rate_hz`: no evidence either way.
    pub fn evaluate(&self, config: &PulseConfig) -> Option<PulseReading> {
        let stretch = self.latest_stretch((f64::from(config.max_gap_s) * 1000.0) as i64);
        let frames = stretch.len();
        let (first, last) = (stretch.first()?.0, stretch.last()?.0);
        let seconds = (last - first) as f64 / 1000.0;
        if frames < 2 || seconds < f64::from(config.min_seconds) {
            return None;
        }
        if (frames - 1) as f64 / seconds < f64::from(config.min_rate_hz) {
            return None;
        }
        let fs = f64::from(config.resample_hz);
        let grid = resample(&stretch, fs);
        let window = (f64::from(config.pos_window_s) * fs).round() as usize;
        let mut pulse = pos(&grid, window);
        detrend(&mut pulse);
        hann(&mut pulse);
        let band = (f64::from(config.band_low_hz), f64::from(config.band_high_hz));
        let spectrum = band_spectrum(&pulse, fs, band);
        let duration = grid.len() as f64 / fs;
        let (peak_hz, share) = peak_share(&spectrum, 1.0 / duration)?;
        let snr = if share <= 0.0 {
            -SNR_CLAMP_DB
        } else {
            (10.0 * (share / (1.0 - share)).log10()).clamp(-SNR_CLAMP_DB, SNR_CLAMP_DB)
        };
        let (lo, hi) = (f64::from(config.snr_low_db), f64::from(config.snr_high_db));
        let score = ((snr - lo) / (hi - lo)).clamp(0.0, 1.0);
        Some(PulseReading {
            bpm: (peak_hz * 60.0) as f32,
            peak_hz: peak_hz as f32,
            snr: snr as f32,
            score: score as f32,
            seconds: seconds as f32,
            frames,
        })
    }

    /// The samples after the last gap longer than `max_gap_ms`.
    fn latest_stretch(&self, max_gap_ms: i64) -> Vec<(i64, [f32; 3])> {
        let mut start = 0;
        for (i, (a, b)) in self.samples.iter().zip(self.samples.iter().skip(1)).enumerate() {
            if b.0 - a.0 > max_gap_ms {
                start = i + 1;
            }
        }
        self.samples.iter().skip(start).copied().collect()
    }
}

/// Linear interpolation of irregular `(pts_ms, rgb)` samples (increasing PTS) onto a grid
/// at `fs` Hz starting at the first sample.
fn resample(samples: &[(i64, [f32; 3])], fs: f64) -> Vec<[f64; 3]> {
    let Some(&(t0, _)) = samples.first() else {
        return Vec::new();
    };
    let span = samples.last().map_or(0, |s| s.0 - t0) as f64 / 1000.0;
    let n = (span * fs).floor() as usize + 1;
    let mut out = Vec::with_capacity(n);
    let mut j = 0;
    for k in 0..n {
        let t = k as f64 / fs;
        while j + 2 < samples.len() && (samples[j + 1].0 - t0) as f64 / 1000.0 <= t {
            j += 1;
        }
        let (ta, a) = samples[j];
        let Some(&(tb, b)) = samples.get(j + 1) else {
            out.push(a.map(f64::from));
            continue;
        };
        let (ta, tb) = ((ta - t0) as f64 / 1000.0, (tb - t0) as f64 / 1000.0);
        let w = ((t - ta) / (tb - ta)).clamp(0.0, 1.0);
        out.push(std::array::from_fn(|c| {
            f64::from(a[c]) * (1.0 - w) + f64::from(b[c]) * w
        }));
    }
    out
}

/// The plane-orthogonal-to-skin method, POS: Wang, den Brinker, Stuijk & de Haan,
/// "Algorithmic Principles of Remote PPG", IEEE Trans. Biomed. Eng. 64(7), 2017,
/// Algorithm 1. In each sliding window of `window` samples the colour is normalised by its
/// temporal mean (removing the skin tone and the light's colour), projected onto the plane
/// orthogonal to the normalised skin tone [1, 1, 1] — so intensity changes, the same in all
/// channels, cancel — as S1 = G − B and S2 = −2R + G + B, and the two are combined with the
/// weight σ(S1)/σ(S2) that cancels what is left of specular and motion distortion. The
/// windows' zero-mean outputs are overlap-added.
fn pos(rgb: &[[f64; 3]], window: usize) -> Vec<f64> {
    let n = rgb.len();
    let mut h = vec![0.0; n];
    if n < 2 {
        return h;
    }
    let l = window.clamp(2, n);
    for m in 0..=n - l {
        let w = &rgb[m..m + l];
        let mean: [f64; 3] = std::array::from_fn(|c| w.iter().map(|p| p[c]).sum::<f64>() / l as f64);
        if mean.iter().any(|&c| c <= 0.0) {
            continue;
        }
        let s: Vec<(f64, f64)> = w
            .iter()
            .map(|p| {
                let (r, g, b) = (p[0] / mean[0], p[1] / mean[1], p[2] / mean[2]);
                (g - b, -2.0 * r + g + b)
            })
            .collect();
        let (sd1, sd2) = (std_dev(s.iter().map(|x| x.0)), std_dev(s.iter().map(|x| x.1)));
        let alpha = if sd2 > 1e-12 { sd1 / sd2 } else { 0.0 };
        let p: Vec<f64> = s.iter().map(|(s1, s2)| s1 + alpha * s2).collect();
        let pm = p.iter().sum::<f64>() / l as f64;
        for (k, v) in p.iter().enumerate() {
            h[m + k] += v - pm;
        }
    }
    h
}

fn std_dev(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let n = values.clone().count().max(1) as f64;
    let mean = values.clone().sum::<f64>() / n;
    (values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
}

/// Removes the least-squares line, so a residual slow drift leaks no power into the band.
fn detrend(x: &mut [f64]) {
    let n = x.len() as f64;
    if n < 2.0 {
        return;
    }
    let tm = (n - 1.0) / 2.0;
    let xm = x.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, v) in x.iter().enumerate() {
        num += (i as f64 - tm) * (v - xm);
        den += (i as f64 - tm) * (i as f64 - tm);
    }
    let slope = num / den;
    for (i, v) in x.iter_mut().enumerate() {
        *v -= xm + slope * (i as f64 - tm);
    }
}

/// Hann taper: the spectral leakage of a few seconds' rectangular window would spread
/// the peak's power over the band.
fn hann(x: &mut [f64]) {
    let n = x.len();
    if n < 2 {
        return;
    }
    for (i, v) in x.iter_mut().enumerate() {
        *v *= 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
    }
}

/// Power `|X(f)|²` of `x` (sampled at `fs`) at frequencies `band.0..=band.1` in steps of
/// [`SPECTRUM_STEP_HZ`]. Restricting the spectrum to the band is the band-pass: an ideal
/// filter applied in the frequency domain. Direct DFT with a rotating phasor: a few
/// hundred frequencies × a few hundred samples.
fn band_spectrum(x: &[f64], fs: f64, band: (f64, f64)) -> Vec<(f64, f64)> {
    let steps = ((band.1 - band.0) / SPECTRUM_STEP_HZ).round() as usize;
    (0..=steps)
        .map(|k| {
            let f = band.0 + k as f64 * SPECTRUM_STEP_HZ;
            let w = -2.0 * std::f64::consts::PI * f / fs;
            let (step_re, step_im) = (w.cos(), w.sin());
            let (mut z_re, mut z_im, mut re, mut im) = (1.0, 0.0, 0.0, 0.0);
            for &v in x {
                re += v * z_re;
                im += v * z_im;
                (z_re, z_im) = (z_re * step_re - z_im * step_im, z_re * step_im + z_im * step_re);
            }
            (f, re * re + im * im)
        })
        .collect()
}

/// The strongest frequency and the share of the band's power within ±`half_width` Hz of
/// it; a share of 0 when the band holds no power at all.
fn peak_share(spectrum: &[(f64, f64)], half_width: f64) -> Option<(f64, f64)> {
    let &(peak, _) = spectrum.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let total: f64 = spectrum.iter().map(|s| s.1).sum();
    if !total.is_finite() || total <= 1e-30 {
        return Some((peak, 0.0));
    }
    let near: f64 = spectrum
        .iter()
        .filter(|s| (s.0 - peak).abs() <= half_width)
        .map(|s| s.1)
        .sum();
    Some((peak, near / total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// SplitMix64: a deterministic generator for the synthetic signals.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn uniform(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform().max(1e-12), self.uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    /// Skin tone (R, G, B) of the synthetic face.
    const SKIN: [f64; 3] = [180.0, 130.0, 110.0];
    /// Relative pulse amplitude per channel: the blood-volume-pulse signature
    /// [0.27, 0.80, 0.54] (de Haan & van Leest 2014) × 1.2 %, i.e. 0.32 %, 0.96 %, 0.65 %.
    const PULSE: [f64; 3] = [0.0032, 0.0096, 0.0065];
    /// Per-channel noise, relative to the mean (σ), independent between channels (sensor
    /// noise: about 3× what a mean over a thousand skin pixels keeps)…
    const NOISE: f64 = 0.001;
    /// …and common to all channels (small motions, shadows).
    const COMMON_NOISE: f64 = 0.005;

    #[derive(Clone, Copy)]
    struct Signal {
        pulse_hz: Option<f64>,
        /// Relative amplitude of an intensity flicker (the same in every channel) and its rate.
        flicker: (f64, f64),
        noise: f64,
        common: f64,
        drift: bool,
        /// Drop frames (one in twelve, and a 400 ms gap); otherwise only jitter.
        drops: bool,
    }

    const LIVE: Signal = Signal {
        pulse_hz: Some(1.2),
        flicker: (0.0, 0.0),
        noise: NOISE,
        common: COMMON_NOISE,
        drift: true,
        drops: true,
    };

    fn colour(s: &Signal, t: f64, phase: f64, rng: &mut Rng) -> [f32; 3] {
        // Slow illumination: intensity drifts by 5 % and wanders by 3 % at 0.15 Hz; the
        // light's colour drifts by 0.5 % per channel over ten seconds.
        let (intensity, tint) = if s.drift {
            let i = 1.0 + 0.005 * t + 0.03 * (2.0 * std::f64::consts::PI * 0.15 * t + phase).sin();
            (i, [1.0 + 0.0005 * t, 1.0, 1.0 - 0.0005 * t])
        } else {
            (1.0, [1.0; 3])
        };
        let flicker = 1.0 + s.flicker.0 * (2.0 * std::f64::consts::PI * s.flicker.1 * t).sin();
        let beat = s
            .pulse_hz
            .map_or(0.0, |f| (2.0 * std::f64::consts::PI * f * t + phase).sin());
        let common = 1.0 + s.common * rng.normal();
        std::array::from_fn(|c| {
            let rel = 1.0 + PULSE[c] * beat + s.noise * rng.normal();
            (SKIN[c] * intensity * tint[c] * flicker * common * rel) as f32
        })
    }

    /// Frames about every 100 ms (±15 ms) and, with `drops`, one in twelve dropped and a
    /// 400 ms gap at 40 % of the span: an average of about 9 frames/s.
    fn samples(s: &Signal, seconds: f64, seed: u64) -> Vec<(i64, [f32; 3])> {
        let mut rng = Rng(seed);
        let phase = rng.uniform() * 2.0 * std::f64::consts::PI;
        let t0 = 123_456i64;
        let mut out = Vec::new();
        let mut k = 0i64;
        loop {
            let t = k as f64 * 0.1 + (rng.uniform() - 0.5) * 0.03;
            k += 1;
            if t > seconds {
                break;
            }
            // Three frames missing in a row (a 400 ms gap), with no random drop beside it.
            let gap_at = (0.4 * seconds * 10.0) as i64;
            let near_gap = (gap_at - 1..gap_at + 4).contains(&(k - 1));
            let gap = (gap_at..gap_at + 3).contains(&(k - 1));
            if s.drops && (gap || (!near_gap && rng.uniform() < 1.0 / 12.0)) {
                continue;
            }
            out.push((t0 + (t * 1000.0).round() as i64, colour(s, t, phase, &mut rng)));
        }
        out
    }

    fn evaluate(s: &Signal, seconds: f64, seed: u64) -> Option<PulseReading> {
        let cfg = PulseConfig::default();
        let mut trace = PulseTrace::new(&cfg);
        for (pts, rgb) in samples(s, seconds, seed) {
            trace.push(pts, rgb);
        }
        trace.evaluate(&cfg)
    }

    #[test]
    fn recovers_pulse_through_noise_drift_and_irregular_sampling() {
        // Linear interpolation across dropped frames costs a fast pulse most (a 2 Hz wave
        // turns by 0.4 cycle in a 200 ms hole), so 2 Hz is held to a lower floor.
        for (f, floor, mean_floor) in [(0.8, 0.8, 0.9), (1.2, 0.8, 0.9), (2.0, 0.2, 0.6)] {
            let mut sum = 0.0;
            for seed in 1..=5 {
                let s = Signal {
                    pulse_hz: Some(f),
                    ..LIVE
                };
                let r = evaluate(&s, 8.0, seed).unwrap();
                assert!((f64::from(r.peak_hz) - f).abs() <= 0.1, "{f} Hz, seed {seed}: {r:?}");
                assert!((r.bpm - r.peak_hz * 60.0).abs() < 1e-3);
                assert!(r.score >= floor, "{f} Hz, seed {seed}: {r:?}");
                assert!(r.frames >= 65 && r.seconds > 7.5, "{r:?}");
                sum += r.score;
            }
            assert!(sum / 5.0 >= mean_floor, "{f} Hz: mean score {}", sum / 5.0);
        }
    }

    #[test]
    fn three_seconds_suffice_for_a_clean_pulse() {
        // Frames keep coming here: with drops, 3 s hold too few of them at 10 frames/s.
        let s = Signal { drops: false, ..LIVE };
        for seed in 1..=5 {
            let r = evaluate(&s, 3.3, seed).unwrap();
            assert!((r.peak_hz - 1.2).abs() <= 0.1, "seed {seed}: {r:?}");
            assert!(r.score >= 0.5, "seed {seed}: {r:?}");
        }
    }

    #[test]
    fn noise_alone_scores_low() {
        let s = Signal { pulse_hz: None, ..LIVE };
        for seed in 1..=20 {
            let r = evaluate(&s, 8.0, seed).unwrap();
            assert!(r.score <= 0.3, "seed {seed}: {r:?}");
        }
    }

    #[test]
    fn a_photo_under_drifting_and_flickering_light_scores_low() {
        // No pulse and no sensor noise to speak of: the colour only changes with the light,
        // including a 2 % flicker right in the heart-rate band.
        let s = Signal {
            pulse_hz: None,
            flicker: (0.02, 1.2),
            noise: 0.0002,
            common: 0.0,
            drift: true,
            drops: true,
        };
        for seed in 1..=5 {
            let r = evaluate(&s, 8.0, seed).unwrap();
            assert!(r.score <= 0.3, "seed {seed}: {r:?}");
        }
    }

    #[test]
    fn a_flat_signal_scores_zero() {
        let cfg = PulseConfig::default();
        let mut trace = PulseTrace::new(&cfg);
        for k in 0..80 {
            trace.push(k * 100, [180.0, 130.0, 110.0]);
        }
        let r = trace.evaluate(&cfg).unwrap();
        assert_eq!(r.score, 0.0);
        assert_eq!(r.snr, -60.0);
    }

    #[test]
    fn too_little_evidence_gives_none() {
        assert!(evaluate(&LIVE, 2.5, 1).is_none());
        let cfg = PulseConfig::default();
        assert!(PulseTrace::new(&cfg).evaluate(&cfg).is_none());
        // Five frames a second for six seconds: long enough but too sparse.
        let mut trace = PulseTrace::new(&cfg);
        for k in 0..30 {
            trace.push(k * 200, [180.0, 130.0, 110.0]);
        }
        assert!(trace.evaluate(&cfg).is_none());
        // …unless the configuration accepts that rate.
        let sparse = PulseConfig {
            min_rate_hz: 4.5,
            ..cfg.clone()
        };
        assert!(trace.evaluate(&sparse).is_some());
    }

    #[test]
    fn a_long_gap_restarts_the_evidence() {
        let cfg = PulseConfig::default();
        let mut trace = PulseTrace::new(&cfg);
        for k in 0..50 {
            trace.push(k * 100, [180.0, 130.0, 110.0]);
        }
        assert!(trace.evaluate(&cfg).is_some());
        // After a 1 s gap only 2 s of new frames: not enough, whatever came before.
        for k in 0..21 {
            trace.push(5_900 + k * 100, [180.0, 130.0, 110.0]);
        }
        assert!(trace.evaluate(&cfg).is_none());
    }

    #[test]
    fn the_trace_keeps_its_window_and_restarts_when_time_goes_back() {
        let cfg = PulseConfig::default();
        let mut trace = PulseTrace::new(&cfg);
        for k in 0..300 {
            trace.push(k * 100, [1.0; 3]);
        }
        assert_eq!(trace.len(), 101);
        trace.push(29_900, [2.0; 3]); // a repeated PTS
        trace.push(30_000, [f32::NAN, 1.0, 1.0]); // no colour
        assert_eq!(trace.len(), 101);
        trace.push(1_000, [1.0; 3]);
        assert_eq!(trace.len(), 1);
    }

    /// A 200×240 image: background, a face box of skin with eyes, brows and mouth painted
    /// in another colour at the landmarks, rotated in the image by `roll` radians.
    fn face_image(roll: f64) -> (RgbImage, Detection) {
        let skin = Rgb([200, 150, 120]);
        let (c, s) = (roll.cos(), roll.sin());
        // Face coordinates in pixels relative to the eyes' midpoint at (100, 100).
        let to_image = |x: f64, y: f64| (100.0 + c * x - s * y, 100.0 + s * x + c * y);
        let features = |x: f64, y: f64| {
            let eye = (x.abs() - 25.0).abs() < 12.0 && y.abs() < 6.0;
            let brow = (x.abs() - 25.0).abs() < 14.0 && (y + 16.0).abs() < 3.0;
            let mouth = x.abs() < 25.0 && (y - 55.0).abs() < 8.0;
            eye || brow || mouth
        };
        let image = RgbImage::from_fn(200, 240, |px, py| {
            // Back to face coordinates.
            let (dx, dy) = (px as f64 + 0.5 - 100.0, py as f64 + 0.5 - 100.0);
            let (x, y) = (c * dx + s * dy, -s * dx + c * dy);
            if x.abs() > 50.0 || !(-55.0..95.0).contains(&y) {
                Rgb([20, 200, 20])
            } else if features(x, y) {
                Rgb([60, 30, 30])
            } else {
                skin
            }
        });
        let lm = [(-25.0, 0.0), (25.0, 0.0), (0.0, 30.0), (-22.0, 55.0), (22.0, 55.0)]
            .map(|(x, y)| to_image(x, y))
            .map(|(x, y)| [x as f32, y as f32]);
        let face = Detection {
            bbox: [50.0, 45.0, 100.0, 150.0],
            score: 0.9,
            landmarks: lm,
        };
        (image, face)
    }

    #[test]
    fn skin_rgb_takes_forehead_and_cheeks_only() {
        for roll in [0.0, 0.15] {
            let (image, face) = face_image(roll);
            let rgb = skin_rgb(&image, &face).unwrap();
            assert_eq!(rgb, [200.0, 150.0, 120.0], "roll {roll}");
        }
    }

    #[test]
    fn skin_rgb_skips_saturated_pixels_and_needs_enough_skin() {
        let (mut image, face) = face_image(0.0);
        // A specular highlight on the forehead.
        for y in 60..70 {
            for x in 95..105 {
                image.put_pixel(x, y, Rgb([255, 255, 255]));
            }
        }
        assert_eq!(skin_rgb(&image, &face).unwrap(), [200.0, 150.0, 120.0]);
        let tiny = face.scaled(0.1);
        assert!(skin_rgb(&image, &tiny).is_none());
        let mut outside = face.clone();
        outside.bbox = [500.0, 500.0, 100.0, 150.0];
        assert!(skin_rgb(&image, &outside).is_none());
    }

    #[test]
    fn config_defaults_validate_and_problems_are_named() {
        assert!(PulseConfig::default().validate("liveness.pulse").is_empty());
        let bad = PulseConfig {
            min_seconds: 20.0,
            resample_hz: 6.0,
            band_low_hz: 5.0,
            snr_low_db: f32::NAN,
            ..PulseConfig::default()
        };
        let p = bad.validate("liveness.pulse");
        for key in ["min_seconds", "resample_hz", "band_low_hz", "snr_low_db"] {
            assert!(
                p.iter().any(|l| l.starts_with(&format!("liveness.pulse.{key}:"))),
                "{p:?}"
            );
        }
        let partial: PulseConfig = toml::from_str("min_seconds = 4.0").unwrap();
        assert_eq!(partial.min_seconds, 4.0);
        assert_eq!(partial.window_s, 10.0);
        assert!(toml::from_str::<PulseConfig>("min_second = 4.0").is_err());
    }

    /// The numbers the README quotes: `cargo test --lib pulse_measurements -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints the measurements the README quotes; asserts nothing"]
    fn pulse_measurements() {
        let photo = Signal {
            pulse_hz: None,
            flicker: (0.02, 1.2),
            noise: 0.0002,
            common: 0.0,
            drift: true,
            drops: true,
        };
        let noise = Signal { pulse_hz: None, ..LIVE };
        for seconds in [3.3, 5.0, 8.0, 10.0] {
            for (name, s) in [
                (
                    "pulse 0.8 Hz",
                    Signal {
                        pulse_hz: Some(0.8),
                        ..LIVE
                    },
                ),
                ("pulse 1.2 Hz", LIVE),
                ("pulse 1.2 Hz, no drops", Signal { drops: false, ..LIVE }),
                (
                    "noise, no drops",
                    Signal {
                        pulse_hz: None,
                        drops: false,
                        ..LIVE
                    },
                ),
                (
                    "pulse 2.0 Hz",
                    Signal {
                        pulse_hz: Some(2.0),
                        ..LIVE
                    },
                ),
                ("noise", noise),
                ("photo, 1.2 Hz flicker", photo),
            ] {
                let r: Vec<PulseReading> = (1..=100).filter_map(|seed| evaluate(&s, seconds, seed)).collect();
                let mut snr: Vec<f32> = r.iter().map(|r| r.snr).collect();
                snr.sort_by(f32::total_cmp);
                let err = r.iter().map(|r| (r.peak_hz - s.pulse_hz.unwrap_or(0.0) as f32).abs());
                let within = err.filter(|e| *e <= 0.1).count();
                let mean = r.iter().map(|r| r.score).sum::<f32>() / r.len() as f32;
                let high = r.iter().filter(|r| r.score >= 0.5).count();
                println!(
                    "{seconds} s, {name}: SNR min {:.1} median {:.1} max {:.1} dB; peak within 0.1 Hz {within}/{}; \
                     mean score {mean:.2}; score >= 0.5 {high}/{}",
                    snr[0],
                    snr[snr.len() / 2],
                    snr[snr.len() - 1],
                    r.len(),
                    r.len()
                );
            }
        }
    }
}
