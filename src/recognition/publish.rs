//! Turning track decisions into identity events in the outbox.

use std::time::Instant;

use super::WorkerContext;
use super::stages::{EmbedRequest, Observed};
use crate::error::Error;
use crate::events::{Event, EventKind, Liveness, LivenessCues, PersonRef};
use crate::telemetry::events::{FrameFailed, IdentityEventLost, IdentityEventStored};
use crate::telemetry::{InternalEvent, Telemetry};
use crate::track::{TrackDecision, Verdict};
use crate::vision::liveness::fusion::LivenessVerdict;

/// Stores the event of `decision` in the outbox. Returns the seconds from the frame
/// leaving the decoder (`captured`) to now, when stored.
pub(crate) fn decision(
    ctx: &WorkerContext,
    camera: &str,
    decision: &TrackDecision,
    captured: Option<Instant>,
) -> Option<f64> {
    let event = event_of(camera, decision);
    match ctx.publisher.publish_event(&event) {
        Ok(()) => {
            let latency = captured.map(|at| at.elapsed().as_secs_f64());
            IdentityEventStored {
                camera,
                kind: event.kind.as_str(),
                liveness: decision.evaluation.liveness.map(|l| l.verdict),
                track: decision.track_id,
                person: event.person.as_ref().map(|p| p.name.as_str()),
                similarity: event.similarity,
                frame_to_publish_s: latency,
            }
            .emit(&ctx.telemetry);
            latency
        }
        Err(e) => {
            IdentityEventLost { camera, error: &e }.emit(&ctx.telemetry);
            None
        }
    }
}

/// The event contract's view of a decision.
fn event_of(camera: &str, d: &TrackDecision) -> Event {
    let (kind, person) = match &d.evaluation.verdict {
        Verdict::Recognized { person_id, name } => (
            EventKind::Recognized,
            Some(PersonRef {
                id: *person_id,
                name: name.clone(),
            }),
        ),
        Verdict::Unknown => (EventKind::Unknown, None),
        Verdict::Spoof => (EventKind::Spoof, None),
    };
    Event {
        event_id: uuid::Uuid::new_v4(),
        kind,
        camera: camera.to_string(),
        track_id: d.track_id,
        timestamp: crate::gallery::store::now_rfc3339(),
        pts_ms: d.pts_ms,
        person,
        similarity: d.evaluation.similarity,
        threshold: d.evaluation.threshold,
        liveness: d.evaluation.liveness.as_ref().map(|l| Liveness {
            score: l.score,
            live: l.verdict == LivenessVerdict::Live,
            cues: LivenessCues {
                cnn: l.cues.cnn,
                pulse: l.cues.pulse,
                motion: l.cues.motion,
            },
        }),
        bbox: d.bbox,
        frames: d.frames,
    }
}

/// An embedder call failed: every camera with a face in it lost this frame's evidence.
pub(crate) fn embedding_failed(batch: &[Observed], requests: &[EmbedRequest], e: &Error, telemetry: &Telemetry) {
    let mut cameras: Vec<&str> = requests.iter().map(|r| batch[r.frame].frame.camera.as_ref()).collect();
    cameras.dedup();
    for camera in cameras {
        FrameFailed { camera, error: e }.emit(telemetry);
    }
}
