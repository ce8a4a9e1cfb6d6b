//! The stages of recognition, each a function over a batch of frames (frames of several
//! cameras may share a batch): detect → track → embed → match → decide.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;

use crate::engine::{AlignedFace, FaceEngine};
use crate::error::Error;
use crate::gallery::Gallery;
use crate::gallery::matcher::MatchDecision;
use crate::telemetry::events::{FacesEmbedded, FrameDetected, FrameFailed};
use crate::telemetry::{InternalEvent, Telemetry};
use crate::track::{Evaluation, Track, TrackDecision, Tracker, TrackerConfig, Verdict, gate};
use crate::video::Frame;
use crate::vision::embedder::Embedding;
use crate::vision::liveness::LivenessConfig;
use crate::vision::quality::QualityConfig;

/// One frame of a batch with the faces found in it; `faces` is `None` when detection failed
/// (the frame is then skipped by the later stages).
pub(crate) struct Observed {
    pub frame: Frame,
    pub faces: Option<Vec<AlignedFace>>,
}

/// Detect: the frames of the batch through the detector (frames of one size share a model
/// call) and every face aligned from its full-resolution frame. A failed call fails every
/// frame of the batch; each is counted.
pub(crate) fn detect(engine: &mut FaceEngine, frames: Vec<Frame>, telemetry: &Telemetry) -> Vec<Observed> {
    let started = Instant::now();
    let images: Vec<&RgbImage> = frames.iter().map(|f| f.image.as_ref()).collect();
    let found = engine.aligned_faces_batch(&images);
    let seconds = started.elapsed().as_secs_f64() / frames.len().max(1) as f64;
    match found {
        Ok(all) => frames
            .into_iter()
            .zip(all)
            .map(|(frame, faces)| {
                FrameDetected {
                    camera: &frame.camera,
                    faces: faces.len(),
                    seconds,
                }
                .emit(telemetry);
                Observed {
                    frame,
                    faces: Some(faces),
                }
            })
            .collect(),
        Err(e) => frames
            .into_iter()
            .map(|frame| {
                FrameFailed {
                    camera: &frame.camera,
                    error: &e,
                }
                .emit(telemetry);
                Observed { frame, faces: None }
            })
            .collect(),
    }
}

/// A face the tracker wants embedded now.
pub(crate) struct EmbedRequest {
    /// Index of the frame in the batch, and of the face in that frame.
    pub frame: usize,
    pub face: usize,
    pub track_id: u64,
    pub quality: f32,
}

/// What tracking one batch produced.
#[derive(Default)]
pub(crate) struct Tracked {
    /// Every face of the batch with its track: (frame index, face index, track id).
    pub assigned: Vec<(usize, usize, u64)>,
    pub to_embed: Vec<EmbedRequest>,
    /// Tracks that ended, with the index of the frame that ended them.
    pub ended: Vec<(usize, Track)>,
}

/// The trackers of every camera, created on a camera's first frame.
pub(crate) struct Trackers {
    cfg: TrackerConfig,
    liveness: LivenessConfig,
    by_camera: HashMap<Arc<str>, Tracker>,
}

impl Trackers {
    pub fn new(cfg: TrackerConfig, liveness: LivenessConfig) -> Trackers {
        Trackers {
            cfg,
            liveness,
            by_camera: HashMap::new(),
        }
    }

    pub fn camera(&mut self, camera: &Arc<str>) -> &mut Tracker {
        self.by_camera
            .entry(camera.clone())
            .or_insert_with(|| Tracker::with_liveness(self.cfg.clone(), Some(self.liveness.clone())))
    }

    pub fn liveness(&self) -> &LivenessConfig {
        &self.liveness
    }

    /// Every open track of every camera, ended (shutdown).
    pub fn drain(&mut self) -> Vec<(Arc<str>, Track)> {
        self.by_camera
            .iter_mut()
            .flat_map(|(camera, tracker)| tracker.drain().into_iter().map(|t| (camera.clone(), t)))
            .collect()
    }
}

/// Track: associates each frame's faces with its camera's tracks; faces that pass the
/// quality gate and that their track wants embedded become embed requests.
pub(crate) fn track(trackers: &mut Trackers, batch: &[Observed], gate: &QualityConfig) -> Tracked {
    let mut out = Tracked::default();
    for (fi, observed) in batch.iter().enumerate() {
        let Some(faces) = &observed.faces else { continue };
        let detections: Vec<_> = faces.iter().map(|f| f.detection.clone()).collect();
        let quality: Vec<f32> = faces.iter().map(|f| f.quality.score()).collect();
        let tracker = trackers.camera(&observed.frame.camera);
        let (assignments, ended) = tracker.update(&detections, &quality, observed.frame.pts_ms);
        out.assigned
            .extend(assignments.iter().map(|a| (fi, a.detection, a.track_id)));
        out.to_embed.extend(
            assignments
                .iter()
                .filter(|a| a.embed && faces[a.detection].quality.failure(gate).is_none())
                .map(|a| EmbedRequest {
                    frame: fi,
                    face: a.detection,
                    track_id: a.track_id,
                    quality: quality[a.detection],
                }),
        );
        out.ended.extend(ended.into_iter().map(|t| (fi, t)));
    }
    out
}

/// Embed: one embedder call for every requested face of the batch, whatever its camera.
pub(crate) fn embed(
    engine: &mut FaceEngine,
    batch: &[Observed],
    requests: &[EmbedRequest],
    telemetry: &Telemetry,
) -> Result<Vec<Embedding>, Error> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let crops: Vec<&RgbImage> = requests
        .iter()
        .filter_map(|r| Some(&batch[r.frame].faces.as_ref()?[r.face].crop))
        .collect();
    let started = Instant::now();
    let embeddings = engine.embed_crops(&crops)?;
    let mut per_camera: Vec<(&str, usize)> = Vec::new();
    for r in requests {
        let camera: &str = &batch[r.frame].frame.camera;
        match per_camera.iter_mut().find(|(c, _)| *c == camera) {
            Some((_, n)) => *n += 1,
            None => per_camera.push((camera, 1)),
        }
    }
    FacesEmbedded {
        per_camera: &per_camera,
        seconds: started.elapsed().as_secs_f64(),
    }
    .emit(telemetry);
    Ok(embeddings)
}

/// Match: a track's identity evidence against the gallery, by the matching rule (liveness
/// is added by [`decide_track`]).
pub(crate) fn match_identity(gallery: &Gallery, evidence: &[f32], threshold: f32) -> Evaluation {
    let (decision, candidates) = gallery.identify(evidence, threshold);
    let best = candidates.first();
    let verdict = match (decision, best) {
        (MatchDecision::Match, Some(c)) => Verdict::Recognized {
            person_id: c.person_id,
            name: c.name.clone(),
        },
        _ => Verdict::Unknown,
    };
    Evaluation {
        verdict,
        similarity: best.map(|c| c.similarity),
        threshold,
        liveness: None,
    }
}

/// One decision round of a track: its identity evaluation with its liveness, through the
/// liveness gate and the track's hysteresis.
pub(crate) fn decide_track(
    tracker: &mut Tracker,
    track_id: u64,
    identity: Evaluation,
    cfg: &LivenessConfig,
) -> Option<TrackDecision> {
    let evidence = tracker.track_mut(track_id)?.evidence_mut();
    let liveness = evidence.liveness.as_ref().map(|l| l.assess(cfg));
    evidence.liveness_seen = liveness.map(|a| a.verdict);
    evidence.last_identity = Some(identity.clone());
    let mut evaluation = identity;
    evaluation.liveness = liveness;
    match gate(&evaluation.verdict, liveness.as_ref(), cfg.mode) {
        Some(verdict) => {
            evaluation.verdict = verdict;
            tracker.evaluate(track_id, evaluation)
        }
        None => {
            tracker.hold(track_id, evaluation);
            None
        }
    }
}

/// Decide: adds each embedding to its track, matches the track's evidence and passes the
/// result through the track's hysteresis; returns the decisions to publish with the index
/// of their frame.
pub(crate) fn decide(
    trackers: &mut Trackers,
    gallery: &Gallery,
    threshold: f32,
    batch: &[Observed],
    requests: &[EmbedRequest],
    embeddings: Vec<Embedding>,
) -> Vec<(usize, TrackDecision)> {
    let mut decisions = Vec::new();
    let liveness = trackers.liveness().clone();
    for (r, embedding) in requests.iter().zip(embeddings) {
        let tracker = trackers.camera(&batch[r.frame].frame.camera);
        tracker.add_identity(r.track_id, r.quality, embedding);
        let Some(evidence) = tracker.identity(r.track_id) else {
            continue;
        };
        let identity = match_identity(gallery, &evidence, threshold);
        if let Some(d) = decide_track(tracker, r.track_id, identity, &liveness) {
            decisions.push((r.frame, d));
        }
    }
    decisions
}
