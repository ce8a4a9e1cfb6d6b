//! Liveness: evidence that a face in front of the camera is a live person and not a photo
//! or a screen. No single open model is a trustworthy presentation-attack detector, so
//! liveness is gathered over a track from independent cues and fused:
//! - [`cnn`]: a passive CNN (Silent-Face MiniFASNet) that sees recapture artefacts;
//! - [`pulse`]: the blood-volume pulse in the skin's colour (rPPG);
//! - [`motion`]: whether the face moves as a flat plane (a photo) or as a 3-D face;
//!
//! and [`fusion`] turns the cues with enough evidence into one score and verdict.

pub mod cnn;
pub mod fusion;
pub mod motion;
pub mod pulse;

use serde::{Deserialize, Serialize};

/// What liveness does in the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LivenessMode {
    /// Not computed; events carry `"liveness": null`.
    Off,
    /// Computed and published with every event, not gating recognition.
    #[default]
    Report,
    /// A match is `recognized` only once the face is live; `spoof` when the evidence says
    /// attack; no `recognized` while the evidence is still insufficient.
    Enforce,
}

impl LivenessMode {
    /// `self`, or `at_least` when `self` does less (off < report < enforce).
    pub fn max_with(self, at_least: LivenessMode) -> LivenessMode {
        let rank = |m: LivenessMode| match m {
            LivenessMode::Off => 0,
            LivenessMode::Report => 1,
            LivenessMode::Enforce => 2,
        };
        if rank(self) >= rank(at_least) { self } else { at_least }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LivenessMode::Off => "off",
            LivenessMode::Report => "report",
            LivenessMode::Enforce => "enforce",
        }
    }
}

/// The passive CNN's minimum evidence (`[liveness.cnn]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CnnCueConfig {
    /// Readings (one per embedded face) averaged before the cue counts.
    pub min_readings: u32,
}

impl Default for CnnCueConfig {
    fn default() -> Self {
        CnnCueConfig { min_readings: 2 }
    }
}

/// `[liveness]`: the mode, each cue's settings and how they are fused.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LivenessConfig {
    pub mode: LivenessMode,
    pub cnn: CnnCueConfig,
    pub pulse: pulse::PulseConfig,
    pub motion: motion::MotionConfig,
    pub fusion: fusion::FusionConfig,
}

impl LivenessConfig {
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.cnn.min_readings == 0 {
            p.push(format!("{prefix}.cnn.min_readings: must be at least 1"));
        }
        p.extend(self.pulse.validate(&format!("{prefix}.pulse")));
        p.extend(self.motion.validate(&format!("{prefix}.motion")));
        p.extend(self.fusion.validate(&format!("{prefix}.fusion")));
        p
    }

    pub fn enabled(&self) -> bool {
        self.mode != LivenessMode::Off
    }
}

/// Everything a track has gathered about liveness; bounded in memory (the traces keep a
/// window of seconds).
#[derive(Debug, Clone)]
pub struct LivenessEvidence {
    frames: u32,
    cnn_sum: f32,
    cnn_readings: u32,
    pulse: pulse::PulseTrace,
    motion: motion::MotionTrace,
}

impl LivenessEvidence {
    pub fn new(cfg: &LivenessConfig) -> LivenessEvidence {
        LivenessEvidence {
            frames: 0,
            cnn_sum: 0.0,
            cnn_readings: 0,
            pulse: pulse::PulseTrace::new(&cfg.pulse),
            motion: motion::MotionTrace::new(&cfg.motion),
        }
    }

    /// What one detected frame of the face adds: its skin colour and its landmarks.
    pub fn add_frame(&mut self, pts_ms: i64, skin: Option<[f32; 3]>, face: &crate::vision::geometry::Detection) {
        self.frames = self.frames.saturating_add(1);
        if let Some(rgb) = skin {
            self.pulse.push(pts_ms, rgb);
        }
        self.motion.push(pts_ms, face.landmarks, face.bbox[2]);
    }

    /// A reading of the passive CNN (probability of a real face).
    pub fn add_cnn(&mut self, real: f32) {
        if real.is_finite() {
            self.cnn_sum += real.clamp(0.0, 1.0);
            self.cnn_readings += 1;
        }
    }

    /// Detected frames of the face so far.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// CNN readings so far.
    pub fn cnn_readings(&self) -> u32 {
        self.cnn_readings
    }

    /// Each cue's score, where it has enough evidence.
    pub fn cues(&self, cfg: &LivenessConfig) -> fusion::CueScores {
        fusion::CueScores {
            cnn: (self.cnn_readings >= cfg.cnn.min_readings).then(|| self.cnn_sum / self.cnn_readings as f32),
            pulse: self.pulse.evaluate(&cfg.pulse).map(|r| r.score),
            motion: self.motion.evaluate(&cfg.motion).map(|r| r.score),
        }
    }

    /// The fused assessment.
    pub fn assess(&self, cfg: &LivenessConfig) -> fusion::LivenessAssessment {
        fusion::fuse(&self.cues(cfg), &cfg.fusion)
    }
}
