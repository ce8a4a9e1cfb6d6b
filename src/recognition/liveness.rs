//! The liveness stage: every tracked face of a batch adds to its track's liveness evidence
//! (skin colour for the pulse, landmarks for the motion cue, and the passive CNN where a
//! reading is due), and a track whose liveness verdict changed is decided again.

use super::stages::{Observed, Tracked, Trackers, decide_track};
use crate::telemetry::events::FrameFailed;
use crate::telemetry::{InternalEvent, Telemetry};
use crate::track::TrackDecision;
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
/// track still lacks the readings the cue needs, those of every frame of the batch in one
/// call per network.
pub(crate) fn observe(
    trackers: &mut Trackers,
    batch: &[Observed],
    tracked: &Tracked,
    cnn: Option<&mut PassiveCnn>,
    telemetry: &Telemetry,
) -> LivenessWork {
    let mut work = LivenessWork::default();
    if !trackers.liveness().enabled() {
        return work;
    }
    let min_readings = trackers.liveness().cnn.min_readings;
    // (frame index, track id, box) of every face the CNN reads.
    let mut for_cnn: Vec<(usize, u64, [f32; 4])> = Vec::new();
    for &(fi, face, track_id) in &tracked.assigned {
        let observed = &batch[fi];
        let Some(faces) = &observed.faces else { continue };
        let detection = &faces[face].detection;
        let embedded = tracked.to_embed.iter().any(|r| r.frame == fi && r.track_id == track_id);
        let Some(evidence) = liveness_of(trackers, observed, track_id) else {
            continue;
        };
        let frame = &observed.frame;
        evidence.add_frame(frame.pts_ms, skin_rgb(&frame.image, detection), detection);
        work.faces += 1;
        work.new_tracks += usize::from(evidence.frames() == 1);
        if embedded || evidence.cnn_readings() < min_readings {
            for_cnn.push((fi, track_id, detection.bbox));
        }
    }
    if let (Some(cnn), false) = (cnn, for_cnn.is_empty()) {
        read_cnn(trackers, batch, &for_cnn, cnn, telemetry);
    }
    work
}

/// The liveness evidence of a track of the camera of `observed`, when it has one.
fn liveness_of<'t>(
    trackers: &'t mut Trackers,
    observed: &Observed,
    track_id: u64,
) -> Option<&'t mut crate::vision::liveness::LivenessEvidence> {
    trackers
        .camera(&observed.frame.camera)
        .track_mut(track_id)
        .and_then(|t| t.evidence_mut().liveness.as_mut())
}

/// One CNN reading of each face of `faces`, added to its track; a failed call is counted
/// against every frame it covered.
fn read_cnn(
    trackers: &mut Trackers,
    batch: &[Observed],
    faces: &[(usize, u64, [f32; 4])],
    cnn: &mut PassiveCnn,
    telemetry: &Telemetry,
) {
    let inputs: Vec<(&image::RgbImage, [f32; 4])> = faces
        .iter()
        .map(|&(fi, _, bbox)| (batch[fi].frame.image.as_ref(), bbox))
        .collect();
    match cnn.score_faces(&inputs) {
        Ok(scores) => {
            for (&(fi, track_id, _), real) in faces.iter().zip(scores) {
                if let Some(evidence) = liveness_of(trackers, &batch[fi], track_id) {
                    evidence.add_cnn(real);
                }
            }
        }
        Err(e) => {
            let mut frames: Vec<usize> = faces.iter().map(|&(fi, _, _)| fi).collect();
            frames.sort_unstable();
            frames.dedup();
            for fi in frames {
                FrameFailed {
                    camera: &batch[fi].frame.camera,
                    error: &e,
                }
                .emit(telemetry);
            }
        }
    }
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
