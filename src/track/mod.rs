//! Per-camera face tracking and per-track identity decisions. Pure: detections and
//! match results in, track ids and decisions out, so all of it is tested without models.
//!
//! A track collects evidence about its face — identity now (a quality-weighted mean of its
//! face encodings); liveness cues join it in [`TrackEvidence`] — and turns it into one decision — recognized as P, unknown, or spoof — published once and
//! again only when a different decision has held for `confirm` evaluations in a row.

use serde::{Deserialize, Serialize};

use crate::vision::geometry::{Detection, iou};
use crate::vision::liveness::fusion::{LivenessAssessment, LivenessVerdict};
use crate::vision::liveness::{LivenessConfig, LivenessEvidence, LivenessMode};
use crate::vision::similarity::l2_normalize;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// A detection continues a track when their boxes overlap at least this much (IoU).
    pub iou_threshold: f32,
    /// A track ends after this many detection frames without its face.
    pub max_missed: u32,
    /// Embed a tracked face at least every this many detection frames (besides its first
    /// frame and whenever its quality clearly improves).
    pub embed_every: u32,
    /// "Clearly better": quality above the track's best so far by this factor.
    pub quality_gain: f32,
    /// Encodings averaged per track (the best ones are kept).
    pub max_evidence: usize,
    /// A decision (or a change of decision) is published once it has held for this many
    /// evaluations in a row…
    pub confirm: u32,
    /// …except a match this far above the threshold, which is published at once.
    pub instant_margin: f32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            iou_threshold: 0.3,
            max_missed: 8,
            embed_every: 10,
            quality_gain: 1.15,
            max_evidence: 8,
            confirm: 2,
            instant_margin: 0.1,
        }
    }
}

impl TrackerConfig {
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.iou_threshold > 0.0 && self.iou_threshold < 1.0) {
            p.push(format!(
                "{prefix}.iou_threshold: {} is not within (0, 1)",
                self.iou_threshold
            ));
        }
        if self.embed_every == 0 {
            p.push(format!("{prefix}.embed_every: must be at least 1"));
        }
        if self.quality_gain.is_nan() || self.quality_gain < 1.0 {
            p.push(format!("{prefix}.quality_gain: {} is below 1", self.quality_gain));
        }
        if self.max_evidence == 0 {
            p.push(format!("{prefix}.max_evidence: must be at least 1"));
        }
        if self.confirm == 0 {
            p.push(format!("{prefix}.confirm: must be at least 1"));
        }
        if self.instant_margin.is_nan() || self.instant_margin < 0.0 {
            p.push(format!("{prefix}.instant_margin: {} is negative", self.instant_margin));
        }
        p
    }
}

/// What a track is decided to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Recognized { person_id: i64, name: String },
    Unknown,
    Spoof,
}

/// The outcome of matching a track's evidence once.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub verdict: Verdict,
    /// Similarity of the best person (matched or not).
    pub similarity: Option<f32>,
    /// The threshold it was held against.
    pub threshold: f32,
    /// The track's liveness when it was evaluated (`None` when liveness is off).
    pub liveness: Option<LivenessAssessment>,
}

/// What the identity verdict becomes under the liveness mode; `None` means "not yet": the
/// track waits for more liveness evidence before anything is published.
///
/// `enforce`: a spoof verdict wins over any identity; a match is recognized only when the
/// face is live and waits while liveness is undecided; an unknown face stays unknown.
/// `report` and `off`: the identity verdict, untouched.
pub fn gate(identity: &Verdict, liveness: Option<&LivenessAssessment>, mode: LivenessMode) -> Option<Verdict> {
    if mode != LivenessMode::Enforce {
        return Some(identity.clone());
    }
    let verdict = liveness.map_or(LivenessVerdict::Undecided, |l| l.verdict);
    match (identity, verdict) {
        (_, LivenessVerdict::Spoof) => Some(Verdict::Spoof),
        (Verdict::Recognized { .. }, LivenessVerdict::Live) => Some(identity.clone()),
        (Verdict::Recognized { .. }, LivenessVerdict::Undecided) => None,
        (other, _) => Some(other.clone()),
    }
}

/// A decision to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackDecision {
    pub track_id: u64,
    pub evaluation: Evaluation,
    pub bbox: [f32; 4],
    /// Frames of evidence: detection frames the track has lived.
    pub frames: u32,
    pub pts_ms: i64,
}

/// Everything a track has gathered about its face: identity and, when liveness is on,
/// liveness evidence.
#[derive(Debug, Clone, Default)]
pub struct TrackEvidence {
    /// (quality, encoding) of the best faces so far, best first, at most `max_evidence`.
    identity: Vec<(f32, Vec<f32>)>,
    /// `None` when liveness is off.
    pub liveness: Option<LivenessEvidence>,
    /// The liveness verdict last used for a decision, to re-decide when it changes.
    pub liveness_seen: Option<LivenessVerdict>,
    /// The identity evaluation of the last decision round, liveness aside.
    pub last_identity: Option<Evaluation>,
}

impl TrackEvidence {
    /// The quality-weighted mean of the kept encodings, L2-normalised.
    pub fn identity_embedding(&self) -> Option<Vec<f32>> {
        let first = self.identity.first()?;
        let mut acc = vec![0f32; first.1.len()];
        for (q, e) in &self.identity {
            for (a, v) in acc.iter_mut().zip(e) {
                *a += q.max(1e-3) * v;
            }
        }
        l2_normalize(&mut acc);
        Some(acc)
    }

    fn add_identity(&mut self, quality: f32, embedding: Vec<f32>, max: usize) {
        self.identity.push((quality, embedding));
        self.identity.sort_by(|a, b| b.0.total_cmp(&a.0));
        self.identity.truncate(max);
    }
}

#[derive(Debug, Clone)]
pub struct Track {
    pub id: u64,
    pub bbox: [f32; 4],
    pub frames: u32,
    pub missed: u32,
    pub first_pts_ms: i64,
    pub last_pts_ms: i64,
    best_quality: f32,
    since_embed: u32,
    evidence: TrackEvidence,
    published: Option<Verdict>,
    candidate: Option<(Verdict, u32)>,
    latest: Option<Evaluation>,
}

impl Track {
    fn new(id: u64, d: &Detection, pts_ms: i64, liveness: Option<&LivenessConfig>) -> Track {
        Track {
            id,
            bbox: d.bbox,
            frames: 1,
            missed: 0,
            first_pts_ms: pts_ms,
            last_pts_ms: pts_ms,
            best_quality: 0.0,
            since_embed: 0,
            evidence: TrackEvidence {
                liveness: liveness.map(LivenessEvidence::new),
                ..TrackEvidence::default()
            },
            published: None,
            candidate: None,
            latest: None,
        }
    }

    pub fn evidence(&self) -> &TrackEvidence {
        &self.evidence
    }

    pub fn evidence_mut(&mut self) -> &mut TrackEvidence {
        &mut self.evidence
    }

    /// The identity evaluation of the last decision round (liveness gating aside).
    pub fn latest(&self) -> Option<&Evaluation> {
        self.latest.as_ref()
    }

    pub fn published(&self) -> Option<&Verdict> {
        self.published.as_ref()
    }
}

/// One detection of this frame and what to do with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assignment {
    pub detection: usize,
    pub track_id: u64,
    /// Whether this face should be embedded now.
    pub embed: bool,
}

pub struct Tracker {
    cfg: TrackerConfig,
    /// Given when liveness is on: every new track gathers liveness evidence.
    liveness: Option<LivenessConfig>,
    next_id: u64,
    tracks: Vec<Track>,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Tracker {
        Tracker::with_liveness(cfg, None)
    }

    /// A tracker whose tracks gather liveness evidence as `liveness` says.
    pub fn with_liveness(cfg: TrackerConfig, liveness: Option<LivenessConfig>) -> Tracker {
        Tracker {
            cfg,
            liveness: liveness.filter(LivenessConfig::enabled),
            next_id: 1,
            tracks: Vec::new(),
        }
    }

    /// The track with `id`, to add evidence to.
    pub fn track_mut(&mut self, id: u64) -> Option<&mut Track> {
        self.tracks.iter_mut().find(|t| t.id == id)
    }

    /// Records an evaluation that is not published yet (liveness still undecided), so that
    /// the track's final decision, when it ends, is at most `unknown`.
    pub fn hold(&mut self, track_id: u64, mut evaluation: Evaluation) {
        if let Some(t) = self.track_mut(track_id) {
            evaluation.verdict = Verdict::Unknown;
            t.latest = Some(evaluation);
        }
    }

    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    pub fn track(&self, id: u64) -> Option<&Track> {
        self.tracks.iter().find(|t| t.id == id)
    }

    /// Associates this frame's detections with tracks (greedy, best IoU first), starts
    /// tracks for the rest, and ends tracks missing for more than `max_missed` frames.
    /// `quality` holds one score per detection. Returns the assignments and the ended
    /// tracks (whose final decision the caller may still publish with [`Tracker::finish`]).
    pub fn update(&mut self, detections: &[Detection], quality: &[f32], pts_ms: i64) -> (Vec<Assignment>, Vec<Track>) {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            for (di, d) in detections.iter().enumerate() {
                let o = iou(&t.bbox, &d.bbox);
                if o >= self.cfg.iou_threshold {
                    pairs.push((o, ti, di));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_used = vec![false; self.tracks.len()];
        let mut det_track: Vec<Option<usize>> = vec![None; detections.len()];
        for (_, ti, di) in pairs {
            if !track_used[ti] && det_track[di].is_none() {
                track_used[ti] = true;
                det_track[di] = Some(ti);
            }
        }
        for (ti, used) in track_used.iter().enumerate() {
            if !used {
                self.tracks[ti].missed += 1;
            }
        }
        let mut out = Vec::with_capacity(detections.len());
        for (di, d) in detections.iter().enumerate() {
            let q = quality.get(di).copied().unwrap_or(0.0);
            let ti = match det_track[di] {
                Some(ti) => {
                    let t = &mut self.tracks[ti];
                    t.bbox = d.bbox;
                    t.frames += 1;
                    t.missed = 0;
                    t.last_pts_ms = pts_ms;
                    t.since_embed += 1;
                    ti
                }
                None => {
                    self.tracks
                        .push(Track::new(self.next_id, d, pts_ms, self.liveness.as_ref()));
                    self.next_id += 1;
                    self.tracks.len() - 1
                }
            };
            let t = &self.tracks[ti];
            let embed = t.evidence.identity.is_empty()
                || t.since_embed >= self.cfg.embed_every
                || q > t.best_quality * self.cfg.quality_gain;
            out.push(Assignment {
                detection: di,
                track_id: t.id,
                embed,
            });
        }
        let max_missed = self.cfg.max_missed;
        let (ended, alive): (Vec<Track>, Vec<Track>) = self.tracks.drain(..).partition(|t| t.missed > max_missed);
        self.tracks = alive;
        (out, ended)
    }

    /// Adds an encoding of the track's face with its quality.
    pub fn add_identity(&mut self, track_id: u64, quality: f32, embedding: Vec<f32>) {
        let max = self.cfg.max_evidence;
        if let Some(t) = self.tracks.iter_mut().find(|t| t.id == track_id) {
            t.since_embed = 0;
            t.best_quality = t.best_quality.max(quality);
            t.evidence.add_identity(quality, embedding, max);
        }
    }

    /// The track's aggregated encoding, to be matched by the caller.
    pub fn identity(&self, track_id: u64) -> Option<Vec<f32>> {
        self.track(track_id).and_then(|t| t.evidence.identity_embedding())
    }

    /// Feeds one evaluation of a track's evidence through the hysteresis; returns the
    /// decision to publish, if this evaluation makes one.
    pub fn evaluate(&mut self, track_id: u64, evaluation: Evaluation) -> Option<TrackDecision> {
        let cfg = self.cfg.clone();
        let t = self.tracks.iter_mut().find(|t| t.id == track_id)?;
        t.latest = Some(evaluation.clone());
        let verdict = evaluation.verdict.clone();
        if t.published.as_ref() == Some(&verdict) {
            t.candidate = None;
            return None;
        }
        let streak = match &t.candidate {
            Some((v, n)) if *v == verdict => n + 1,
            _ => 1,
        };
        t.candidate = Some((verdict.clone(), streak));
        let instant = t.published.is_none()
            && matches!(verdict, Verdict::Recognized { .. })
            && evaluation
                .similarity
                .is_some_and(|s| s >= evaluation.threshold + cfg.instant_margin);
        if streak >= cfg.confirm || instant {
            t.published = Some(verdict);
            t.candidate = None;
            return Some(TrackDecision {
                track_id,
                evaluation,
                bbox: t.bbox,
                frames: t.frames,
                pts_ms: t.last_pts_ms,
            });
        }
        None
    }

    /// The decision of a track that ends (or of every track at shutdown) that never
    /// published one: its latest evaluation, so that no face that was seen goes unreported.
    pub fn finish(track: &Track) -> Option<TrackDecision> {
        if track.published.is_some() {
            return None;
        }
        let evaluation = track.latest.clone()?;
        Some(TrackDecision {
            track_id: track.id,
            evaluation,
            bbox: track.bbox,
            frames: track.frames,
            pts_ms: track.last_pts_ms,
        })
    }

    /// Ends every track (shutdown, end of a replay).
    pub fn drain(&mut self) -> Vec<Track> {
        std::mem::take(&mut self.tracks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, y: f32, w: f32) -> Detection {
        Detection {
            bbox: [x, y, w, w],
            score: 0.9,
            landmarks: [[0.0; 2]; 5],
        }
    }

    fn eval(v: Verdict, s: f32) -> Evaluation {
        Evaluation {
            verdict: v,
            similarity: Some(s),
            threshold: 0.5,
            liveness: None,
        }
    }

    fn ann() -> Verdict {
        Verdict::Recognized {
            person_id: 1,
            name: "Ann".into(),
        }
    }

    #[test]
    fn ids_are_stable_while_faces_move_and_new_faces_get_new_ids() {
        let mut t = Tracker::new(TrackerConfig::default());
        let (a, _) = t.update(&[det(0.0, 0.0, 100.0), det(1000.0, 0.0, 100.0)], &[0.5, 0.5], 0);
        let (id1, id2) = (a[0].track_id, a[1].track_id);
        assert_ne!(id1, id2);
        let mut x = 0.0;
        // The faces walk towards each other without meeting: two boxes of one size on the
        // same spot are a coin toss for any IoU tracker.
        for f in 1..30 {
            x += 10.0;
            // Order of detections swapped each frame: association is by overlap, not order.
            let (a, ended) = t.update(&[det(1000.0 - x, 0.0, 100.0), det(x, 0.0, 100.0)], &[0.5, 0.5], f * 100);
            assert!(ended.is_empty());
            assert_eq!((a[0].track_id, a[1].track_id), (id2, id1));
        }
        let (a, _) = t.update(&[det(1500.0, 900.0, 80.0)], &[0.5], 3000);
        assert!(a[0].track_id > id2);
    }

    #[test]
    fn a_track_ends_after_max_missed_frames() {
        let cfg = TrackerConfig {
            max_missed: 3,
            ..TrackerConfig::default()
        };
        let mut t = Tracker::new(cfg);
        t.update(&[det(0.0, 0.0, 100.0)], &[0.5], 0);
        for f in 1..=3 {
            let (_, ended) = t.update(&[], &[], f);
            assert!(ended.is_empty(), "frame {f}");
        }
        let (_, ended) = t.update(&[], &[], 4);
        assert_eq!(ended.len(), 1);
        assert!(t.tracks().is_empty());
    }

    #[test]
    fn embeds_on_new_track_every_k_frames_and_on_better_quality() {
        let cfg = TrackerConfig {
            embed_every: 5,
            ..TrackerConfig::default()
        };
        let mut t = Tracker::new(cfg);
        let (a, _) = t.update(&[det(0.0, 0.0, 100.0)], &[0.5], 0);
        assert!(a[0].embed, "new track");
        t.add_identity(a[0].track_id, 0.5, vec![1.0, 0.0]);
        let mut embeds = vec![];
        for f in 1..=10 {
            let (a, _) = t.update(&[det(0.0, 0.0, 100.0)], &[0.5], f);
            if a[0].embed {
                embeds.push(f);
                t.add_identity(a[0].track_id, 0.5, vec![1.0, 0.0]);
            }
        }
        assert_eq!(embeds, vec![5, 10]);
        let (a, _) = t.update(&[det(0.0, 0.0, 100.0)], &[0.9], 11);
        assert!(a[0].embed, "clearly better face");
    }

    #[test]
    fn evidence_is_the_quality_weighted_mean_of_the_best() {
        let cfg = TrackerConfig {
            max_evidence: 2,
            ..TrackerConfig::default()
        };
        let mut t = Tracker::new(cfg);
        let (a, _) = t.update(&[det(0.0, 0.0, 100.0)], &[0.5], 0);
        let id = a[0].track_id;
        t.add_identity(id, 0.1, vec![0.0, 1.0]); // dropped: worst of three
        t.add_identity(id, 0.5, vec![1.0, 0.0]);
        t.add_identity(id, 0.5, vec![1.0, 0.0]);
        let e = t.identity(id).unwrap();
        assert!((e[0] - 1.0).abs() < 1e-6 && e[1].abs() < 1e-6, "{e:?}");
    }

    #[test]
    fn one_decision_for_a_person_standing_still_and_one_more_only_on_change() {
        let mut t = Tracker::new(TrackerConfig::default());
        let (a, _) = t.update(&[det(0.0, 0.0, 100.0)], &[0.5], 0);
        let id = a[0].track_id;
        // A weak match needs two evaluations in a row.
        assert!(t.evaluate(id, eval(ann(), 0.55)).is_none());
        let d = t.evaluate(id, eval(ann(), 0.56)).expect("confirmed");
        assert_eq!(d.evaluation.verdict, ann());
        // Standing at the door: 600 more evaluations, no more decisions.
        for _ in 0..600 {
            assert!(t.evaluate(id, eval(ann(), 0.58)).is_none());
        }
        // A single flicker to unknown does not change it; a held change does.
        assert!(t.evaluate(id, eval(Verdict::Unknown, 0.3)).is_none());
        assert!(t.evaluate(id, eval(ann(), 0.58)).is_none());
        assert!(t.evaluate(id, eval(Verdict::Unknown, 0.3)).is_none());
        let d = t.evaluate(id, eval(Verdict::Unknown, 0.3)).expect("held change");
        assert_eq!(d.evaluation.verdict, Verdict::Unknown);
    }

    #[test]
    fn a_strong_match_is_published_at_once() {
        let mut t = Tracker::new(TrackerConfig::default());
        let (a, _) = t.update(&[det(0.0, 0.0, 100.0)], &[0.5], 0);
        let d = t.evaluate(a[0].track_id, eval(ann(), 0.8)).expect("instant");
        assert_eq!(d.frames, 1);
    }

    #[test]
    fn an_ending_track_reports_its_latest_evaluation_once() {
        let cfg = TrackerConfig {
            max_missed: 0,
            ..TrackerConfig::default()
        };
        let mut t = Tracker::new(cfg);
        let (a, _) = t.update(&[det(0.0, 0.0, 100.0)], &[0.5], 0);
        let id = a[0].track_id;
        assert!(t.evaluate(id, eval(Verdict::Unknown, 0.2)).is_none());
        let (_, ended) = t.update(&[], &[], 1);
        let d = Tracker::finish(&ended[0]).expect("final decision");
        assert_eq!((d.track_id, d.evaluation.verdict.clone()), (id, Verdict::Unknown));
        // A track that already published has nothing more to say.
        let (a, _) = t.update(&[det(0.0, 0.0, 100.0)], &[0.5], 2);
        t.evaluate(a[0].track_id, eval(ann(), 0.9)).unwrap();
        let (_, ended) = t.update(&[], &[], 3);
        assert!(Tracker::finish(&ended[0]).is_none());
    }

    fn assessed(verdict: LivenessVerdict) -> LivenessAssessment {
        LivenessAssessment {
            score: Some(0.5),
            verdict,
            cues: Default::default(),
        }
    }

    #[test]
    fn enforce_recognizes_only_a_live_face_and_turns_an_attack_into_spoof() {
        use LivenessVerdict::{Live, Spoof, Undecided};
        let enforce = LivenessMode::Enforce;
        let live = assessed(Live);
        let spoof = assessed(Spoof);
        let undecided = assessed(Undecided);
        assert_eq!(gate(&ann(), Some(&live), enforce), Some(ann()));
        assert_eq!(gate(&ann(), Some(&undecided), enforce), None, "waits for evidence");
        assert_eq!(gate(&ann(), None, enforce), None, "no evidence yet: waits");
        assert_eq!(gate(&ann(), Some(&spoof), enforce), Some(Verdict::Spoof));
        assert_eq!(gate(&Verdict::Unknown, Some(&spoof), enforce), Some(Verdict::Spoof));
        // An unknown face is unknown whatever its liveness: nothing to gate.
        assert_eq!(
            gate(&Verdict::Unknown, Some(&undecided), enforce),
            Some(Verdict::Unknown)
        );
        assert_eq!(gate(&Verdict::Unknown, Some(&live), enforce), Some(Verdict::Unknown));
    }

    #[test]
    fn report_and_off_leave_the_identity_untouched() {
        let spoof = assessed(LivenessVerdict::Spoof);
        for mode in [LivenessMode::Report, LivenessMode::Off] {
            assert_eq!(gate(&ann(), Some(&spoof), mode), Some(ann()));
            assert_eq!(gate(&ann(), None, mode), Some(ann()));
            assert_eq!(gate(&Verdict::Unknown, Some(&spoof), mode), Some(Verdict::Unknown));
        }
    }
}
