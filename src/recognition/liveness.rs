//! The liveness stage: every tracked face of a batch adds to its track's liveness evidence
//! (skin colour for the pulse, landmarks for the motion cue, and the passive CNN where a
//! reading is due), and a track whose liveness verdict changed is decided again.

use super::stages::{Observed, Tracked, Trackers, decide_track};
use crate::telemetry::events::FrameFailed;
use crate::telemetry::{InternalEvent, Telemetry};
use crate::track::TrackDecision;
use crate::vision::geometry::Detection;
use crate::vision::liveness::cnn::PassiveCnn;
use crate::vision::liveness::pulse::skin_rgb;

/// What the liveness stage did with one batch, for the run report.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LivenessWork {
    /// Faces whose evidence grew.
    pub faces: usize,
    /// Tracks that got their first evidence.
    pub new_tracks: usize,
}

/// Adds this batch's evidence to every tracked face's liveness. The CNN reads the faces
/// that are embedded now (a new track, a better face, every few frames) and those whose
/// track still lacks the readings the cue needs.
pub(crate) fn observe(
    trackers: &mut Trackers,
    batch: &[Observed],
    tracked: &Tracked,
    mut cnn: Option<&mut PassiveCnn>,
    telemetry: &Telemetry,
) -> LivenessWork {
    let mut work = LivenessWork::default();
    if !trackers.liveness().enabled() {
        return work;
    }
    let min_readings = trackers.liveness().cnn.min_readings;
    for (fi, observed) in batch.iter().enumerate() {
        let Some(faces) = &observed.faces else { continue };
        let frame = &observed.frame;
        let tracker = trackers.camera(&frame.camera);
        let mut for_cnn: Vec<(u64, Detection)> = Vec::new();
        for &(_, face, track_id) in tracked.assigned.iter().filter(|(f, _, _)| *f == fi) {
            let detection = &faces[face].detection;
            let embedded = tracked.to_embed.iter().any(|r| r.frame == fi && r.track_id == track_id);
            let Some(evidence) = tracker
                .track_mut(track_id)
                .and_then(|t| t.evidence_mut().liveness.as_mut())
            else {
                continue;
            };
            evidence.add_frame(frame.pts_ms, skin_rgb(&frame.image, detection), detection);
            work.faces += 1;
            work.new_tracks += usize::from(evidence.frames() == 1);
            if embedded || evidence.cnn_readings() < min_readings {
                for_cnn.push((track_id, detection.clone()));
            }
        }
        let (Some(cnn), false) = (cnn.as_deref_mut(), for_cnn.is_empty()) else {
            continue;
        };
        let detections: Vec<Detection> = for_cnn.iter().map(|(_, d)| d.clone()).collect();
        match cnn.score(&frame.image, &detections) {
            Ok(scores) => {
                for ((track_id, _), real) in for_cnn.iter().zip(scores) {
                    if let Some(l) = tracker
                        .track_mut(*track_id)
                        .and_then(|t| t.evidence_mut().liveness.as_mut())
                    {
                        l.add_cnn(real);
                    }
                }
            }
            Err(e) => FrameFailed {
                camera: &frame.camera,
                error: &e,
            }
            .emit(telemetry),
        }
    }
    work
}

/// Decides again every track of the batch whose liveness verdict changed since its last
/// decision round (and that was not decided in this batch already), with its last identity
/// evaluation: a person waiting at the door is recognized as soon as the face is live.
pub(crate) fn redecide(trackers: &mut Trackers, batch: &[Observed], tracked: &Tracked) -> Vec<(usize, TrackDecision)> {
    let cfg = trackers.liveness().clone();
    if !cfg.enabled() {
        return Vec::new();
    }
    let mut decisions = Vec::new();
    for &(fi, _, track_id) in &tracked.assigned {
        if tracked.to_embed.iter().any(|r| r.frame == fi && r.track_id == track_id) {
            continue;
        }
        let tracker = trackers.camera(&batch[fi].frame.camera);
        let Some(track) = tracker.track_mut(track_id) else {
            continue;
        };
        let evidence = track.evidence();
        let (Some(liveness), Some(identity)) = (&evidence.liveness, &evidence.last_identity) else {
            continue;
        };
        if Some(liveness.assess(&cfg).verdict) == evidence.liveness_seen {
            continue;
        }
        let identity = identity.clone();
        if let Some(d) = decide_track(tracker, track_id, identity, &cfg) {
            decisions.push((fi, d));
        }
    }
    decisions
}
