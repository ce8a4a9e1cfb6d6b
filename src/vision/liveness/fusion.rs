//! Fusion: one liveness score and verdict from the cues that have enough evidence.
//!
//! The score is the weighted mean of the available cues' scores (weights renormalised over
//! the cues that have evidence). A verdict needs at least `min_cues` cues with evidence:
//! live at or above `live_above`, spoof below `spoof_below`, undecided in between. One cue
//! can also veto on its own: a cue scoring below its `veto_below` makes the face a spoof
//! whatever the others say (the passive CNN is all but certain about screens: a phone
//! screen scored 0.003, and a replayed video on a screen shows a pulse and moves like a
//! face, so the other cues would call it live).

use serde::{Deserialize, Serialize};

/// Scores of the cues (0 = attack, 1 = live); `None` when a cue has too little evidence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CueScores {
    pub cnn: Option<f32>,
    pub pulse: Option<f32>,
    pub motion: Option<f32>,
}

impl CueScores {
    fn with_evidence(&self) -> impl Iterator<Item = (Cue, f32)> {
        [
            (Cue::Cnn, self.cnn),
            (Cue::Pulse, self.pulse),
            (Cue::Motion, self.motion),
        ]
        .into_iter()
        .filter_map(|(cue, score)| score.filter(|s| s.is_finite()).map(|s| (cue, s)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cue {
    Cnn,
    Pulse,
    Motion,
}

/// What the evidence says about a face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LivenessVerdict {
    Live,
    Spoof,
    /// Too few cues have evidence yet, or they disagree.
    Undecided,
}

impl LivenessVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            LivenessVerdict::Live => "live",
            LivenessVerdict::Spoof => "spoof",
            LivenessVerdict::Undecided => "undecided",
        }
    }
}

/// A track's liveness at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LivenessAssessment {
    /// The fused score, 0–1; `None` while no cue has evidence.
    pub score: Option<f32>,
    pub verdict: LivenessVerdict,
    pub cues: CueScores,
}

/// Per-cue weight and veto.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CueWeight {
    /// Weight in the fused score; 0 leaves the cue out.
    pub weight: f32,
    /// Below this score the cue alone makes the face a spoof; 0 turns the veto off.
    pub veto_below: f32,
}

impl Default for CueWeight {
    fn default() -> Self {
        CueWeight {
            weight: 1.0,
            veto_below: 0.0,
        }
    }
}

/// How the cues are fused (`[liveness.fusion]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FusionConfig {
    pub cnn: CueWeight,
    pub pulse: CueWeight,
    pub motion: CueWeight,
    /// Cues that must have evidence before a verdict other than a veto.
    pub min_cues: usize,
    /// Fused score at or above which the face is live.
    pub live_above: f32,
    /// Fused score below which the face is a spoof.
    pub spoof_below: f32,
}

impl Default for FusionConfig {
    fn default() -> Self {
        FusionConfig {
            cnn: CueWeight {
                weight: 1.0,
                veto_below: 0.05,
            },
            // The pulse is the only cue that kept every synthetic attack out (README,
            // "Liveness"). Weighted 2, with the motion cue at 1/4 (on a photo moved by
            // hand the detector's landmarks do not move as a plane, so motion read 3-D on
            // most attacks): a face with no pulse scores at most (1 + 0.25) / 3.25 = 0.38,
            // under `spoof_below`, however sure the CNN and the motion cue are.
            pulse: CueWeight {
                weight: 2.0,
                veto_below: 0.0,
            },
            motion: CueWeight {
                weight: 0.25,
                veto_below: 0.0,
            },
            min_cues: 2,
            live_above: 0.6,
            spoof_below: 0.4,
        }
    }
}

impl FusionConfig {
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut p = Vec::new();
        for (name, c) in [("cnn", &self.cnn), ("pulse", &self.pulse), ("motion", &self.motion)] {
            if !(c.weight >= 0.0 && c.weight.is_finite()) {
                p.push(format!("{prefix}.{name}.weight: {} is not a weight (≥ 0)", c.weight));
            }
            if !(0.0..=1.0).contains(&c.veto_below) {
                p.push(format!(
                    "{prefix}.{name}.veto_below: {} is not within 0–1",
                    c.veto_below
                ));
            }
        }
        if !(1..=3).contains(&self.min_cues) {
            p.push(format!("{prefix}.min_cues: {} is not 1, 2 or 3", self.min_cues));
        }
        if !(0.0..=1.0).contains(&self.live_above) || !(0.0..=1.0).contains(&self.spoof_below) {
            p.push(format!("{prefix}.live_above, spoof_below: scores are within 0–1"));
        } else if self.spoof_below > self.live_above {
            p.push(format!(
                "{prefix}.spoof_below: {} is above live_above ({})",
                self.spoof_below, self.live_above
            ));
        }
        p
    }

    fn weight(&self, cue: Cue) -> &CueWeight {
        match cue {
            Cue::Cnn => &self.cnn,
            Cue::Pulse => &self.pulse,
            Cue::Motion => &self.motion,
        }
    }
}

/// The fused score and verdict of `cues`.
pub fn fuse(cues: &CueScores, cfg: &FusionConfig) -> LivenessAssessment {
    let present: Vec<(Cue, f32)> = cues
        .with_evidence()
        .filter(|(c, _)| cfg.weight(*c).weight > 0.0)
        .collect();
    let total: f32 = present.iter().map(|(c, _)| cfg.weight(*c).weight).sum();
    let score = (total > 0.0).then(|| present.iter().map(|(c, s)| cfg.weight(*c).weight * s).sum::<f32>() / total);
    let vetoed = present.iter().any(|(c, s)| *s < cfg.weight(*c).veto_below);
    let verdict = match score {
        _ if vetoed => LivenessVerdict::Spoof,
        Some(_) if present.len() < cfg.min_cues => LivenessVerdict::Undecided,
        Some(s) if s >= cfg.live_above => LivenessVerdict::Live,
        Some(s) if s < cfg.spoof_below => LivenessVerdict::Spoof,
        _ => LivenessVerdict::Undecided,
    };
    LivenessAssessment {
        score,
        verdict,
        cues: *cues,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cues(cnn: Option<f32>, pulse: Option<f32>, motion: Option<f32>) -> CueScores {
        CueScores { cnn, pulse, motion }
    }

    #[test]
    fn no_evidence_no_verdict() {
        let a = fuse(&CueScores::default(), &FusionConfig::default());
        assert_eq!((a.score, a.verdict), (None, LivenessVerdict::Undecided));
    }

    #[test]
    fn one_cue_is_not_enough_by_default() {
        let a = fuse(&cues(Some(0.99), None, None), &FusionConfig::default());
        assert_eq!(a.verdict, LivenessVerdict::Undecided);
        assert_eq!(a.score, Some(0.99));
        let one = FusionConfig {
            min_cues: 1,
            ..FusionConfig::default()
        };
        assert_eq!(fuse(&cues(Some(0.99), None, None), &one).verdict, LivenessVerdict::Live);
    }

    #[test]
    fn the_weighted_mean_of_the_cues_with_evidence_decides() {
        let cfg = FusionConfig::default();
        // A live face: real CNN, a pulse.
        let live = fuse(&cues(Some(0.95), Some(0.8), None), &cfg);
        assert_eq!(live.verdict, LivenessVerdict::Live);
        // (1 × 0.95 + 2 × 0.8) / 3: the pulse weighs twice by default.
        assert!((live.score.unwrap() - 0.85).abs() < 1e-6);
        // A printed photo the CNN takes for real, with no pulse and moving as a plane.
        let photo = fuse(&cues(Some(0.9), Some(0.05), Some(0.02)), &cfg);
        assert_eq!(photo.verdict, LivenessVerdict::Spoof);
        // Disagreement in the middle: (0.9 + 2 × 0.35) / 3 = 0.53, undecided, not live.
        assert_eq!(
            fuse(&cues(Some(0.9), Some(0.35), None), &cfg).verdict,
            LivenessVerdict::Undecided
        );
        // Weights: with the pulse weighted 1× like the CNN, the same cues are live...
        let even = FusionConfig {
            pulse: CueWeight {
                weight: 1.0,
                veto_below: 0.0,
            },
            ..cfg.clone()
        };
        assert_eq!(
            fuse(&cues(Some(0.9), Some(0.35), None), &even).verdict,
            LivenessVerdict::Live
        );
        // ...and with it weighted 5×, its low score wins.
        let heavy = FusionConfig {
            pulse: CueWeight {
                weight: 5.0,
                veto_below: 0.0,
            },
            ..cfg.clone()
        };
        assert_eq!(
            fuse(&cues(Some(0.9), Some(0.1), None), &heavy).verdict,
            LivenessVerdict::Spoof
        );
        // A weight of 0 leaves a cue out: its evidence does not count towards min_cues.
        let no_motion = FusionConfig {
            motion: CueWeight {
                weight: 0.0,
                veto_below: 0.0,
            },
            ..cfg
        };
        assert_eq!(
            fuse(&cues(Some(0.9), None, Some(0.9)), &no_motion).verdict,
            LivenessVerdict::Undecided
        );
    }

    #[test]
    fn no_face_without_a_pulse_is_live_by_default() {
        // The CNN and the motion cue both certain, the pulse absent: still a spoof.
        let a = fuse(&cues(Some(1.0), Some(0.0), Some(1.0)), &FusionConfig::default());
        assert_eq!(a.verdict, LivenessVerdict::Spoof);
        assert!(a.score.unwrap() < 0.4);
        // The pulse alone at its best with a doubtful CNN: live.
        let b = fuse(&cues(Some(0.5), Some(1.0), Some(0.0)), &FusionConfig::default());
        assert_eq!(b.verdict, LivenessVerdict::Live);
    }

    #[test]
    fn a_screen_is_vetoed_by_the_cnn_alone() {
        let a = fuse(&cues(Some(0.003), Some(0.9), Some(0.9)), &FusionConfig::default());
        assert_eq!(a.verdict, LivenessVerdict::Spoof);
        let a = fuse(&cues(Some(0.003), None, None), &FusionConfig::default());
        assert_eq!(a.verdict, LivenessVerdict::Spoof, "a veto needs no second cue");
    }

    #[test]
    fn configuration_is_checked() {
        assert!(FusionConfig::default().validate("liveness.fusion").is_empty());
        let bad = FusionConfig {
            min_cues: 0,
            live_above: 0.3,
            spoof_below: 0.5,
            cnn: CueWeight {
                weight: -1.0,
                veto_below: 2.0,
            },
            ..FusionConfig::default()
        };
        let p = bad.validate("liveness.fusion");
        for key in ["cnn.weight", "cnn.veto_below", "min_cues", "spoof_below"] {
            assert!(
                p.iter().any(|l| l.starts_with(&format!("liveness.fusion.{key}"))),
                "{key}: {p:?}"
            );
        }
    }
}
