//! Internal events: one struct per thing the daemon does that someone may want to see or
//! count. `emit` logs it and advances its counters together, so a log line and its
//! metric can never disagree. Log fields are plain values (no Rust debug formatting).

use tracing::{debug, error, info, warn};

use super::registry::{CommandLabel, EventLabel, Telemetry};

/// Something that happened, logged and counted in one place.
pub trait InternalEvent {
    fn emit(self, telemetry: &Telemetry);
}

/// Recognition took one frame of a camera through detection.
pub struct FrameDetected<'a> {
    pub camera: &'a str,
    pub faces: usize,
    pub seconds: f64,
}

impl InternalEvent for FrameDetected<'_> {
    fn emit(self, t: &Telemetry) {
        let label = Telemetry::camera(self.camera);
        t.frames.get_or_create(&label).inc();
        t.detections.get_or_create(&label).inc_by(self.faces as u64);
        t.observe("detect", self.seconds);
        debug!(
            camera = self.camera,
            faces = self.faces,
            ms = self.seconds * 1e3,
            "frame detected"
        );
    }
}

/// One embedder call over faces of one or more cameras.
pub struct FacesEmbedded<'a> {
    /// Faces embedded per camera.
    pub per_camera: &'a [(&'a str, usize)],
    pub seconds: f64,
}

impl InternalEvent for FacesEmbedded<'_> {
    fn emit(self, t: &Telemetry) {
        let mut total = 0;
        for (camera, n) in self.per_camera {
            t.embeddings.get_or_create(&Telemetry::camera(camera)).inc_by(*n as u64);
            total += n;
        }
        t.observe("embed", self.seconds);
        debug!(faces = total, ms = self.seconds * 1e3, "faces embedded");
    }
}

/// The liveness stage took a batch's faces: evidence added, CNN read, verdicts revised.
pub struct LivenessObserved {
    pub faces: usize,
    pub seconds: f64,
}

impl InternalEvent for LivenessObserved {
    fn emit(self, t: &Telemetry) {
        t.observe("liveness", self.seconds);
        debug!(faces = self.faces, ms = self.seconds * 1e3, "liveness observed");
    }
}

/// A batch of frames went through every stage.
pub struct BatchProcessed {
    pub frames: usize,
    pub seconds: f64,
}

impl InternalEvent for BatchProcessed {
    fn emit(self, t: &Telemetry) {
        t.batch_frames.observe(self.frames as f64);
        t.observe("batch", self.seconds);
    }
}

/// An identity event is in the outbox, on its way to the broker.
pub struct IdentityEventStored<'a> {
    pub camera: &'a str,
    pub kind: &'a str,
    /// The liveness verdict the decision carried, when liveness is on.
    pub liveness: Option<crate::vision::liveness::fusion::LivenessVerdict>,
    pub track: u64,
    pub person: Option<&'a str>,
    pub similarity: Option<f32>,
    /// From the frame leaving the decoder to now, when the event came from a frame.
    pub frame_to_publish_s: Option<f64>,
}

impl InternalEvent for IdentityEventStored<'_> {
    fn emit(self, t: &Telemetry) {
        t.events
            .get_or_create(&EventLabel {
                camera: self.camera.to_string(),
                kind: self.kind.to_string(),
            })
            .inc();
        if let Some(s) = self.frame_to_publish_s {
            t.frame_to_publish.observe(s);
        }
        if let Some(verdict) = self.liveness {
            t.liveness_verdicts
                .get_or_create(&super::registry::LivenessLabel {
                    camera: self.camera.to_string(),
                    verdict: verdict.as_str().to_string(),
                })
                .inc();
        }
        let similarity = self
            .similarity
            .map(|s| format!("{s:.3}"))
            .unwrap_or_else(|| "none".into());
        info!(
            camera = self.camera,
            track = self.track,
            kind = self.kind,
            person = self.person.unwrap_or("-"),
            similarity = %similarity,
            liveness = self.liveness.map_or("-", |v| v.as_str()),
            frame_to_publish_ms = self.frame_to_publish_s.map(|s| (s * 1e3).round() as u64),
            "event"
        );
    }
}

/// An identity event could not be stored: it is lost.
pub struct IdentityEventLost<'a> {
    pub camera: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for IdentityEventLost<'_> {
    fn emit(self, t: &Telemetry) {
        t.error("outbox");
        error!(camera = self.camera, error = %self.error, "event not stored");
    }
}

/// A frame could not be processed (it is skipped; the camera goes on).
pub struct FrameFailed<'a> {
    pub camera: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for FrameFailed<'_> {
    fn emit(self, t: &Telemetry) {
        t.error("frame");
        error!(camera = self.camera, error = %self.error, "frame failed");
    }
}

/// The gallery picked up changes made by any process.
pub struct GalleryRefreshed {
    pub persons: usize,
    pub templates: usize,
}

impl InternalEvent for GalleryRefreshed {
    fn emit(self, t: &Telemetry) {
        t.gallery_persons.set(self.persons as i64);
        t.gallery_templates.set(self.templates as i64);
        debug!(persons = self.persons, templates = self.templates, "gallery refreshed");
    }
}

pub struct GalleryRefreshFailed<'a> {
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for GalleryRefreshFailed<'_> {
    fn emit(self, t: &Telemetry) {
        t.error("gallery_refresh");
        error!(error = %self.error, "gallery refresh failed");
    }
}

/// A remote command (`cmd/enroll`, `cmd/remove`) was carried out or refused by the
/// application.
pub struct CommandHandled<'a> {
    pub command: &'a str,
    pub name: &'a str,
    /// `None` when it succeeded.
    pub error: Option<&'a dyn std::fmt::Display>,
}

impl InternalEvent for CommandHandled<'_> {
    fn emit(self, t: &Telemetry) {
        let outcome = if self.error.is_some() { "refused" } else { "done" };
        t.commands
            .get_or_create(&CommandLabel {
                command: self.command.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        match self.error {
            None => info!(command = self.command, name = self.name, "remote command done"),
            Some(e) => warn!(command = self.command, name = self.name, error = %e, "remote command refused"),
        }
    }
}

/// A camera reported itself offline (the camera logs the reason itself).
pub struct CameraWentOffline<'a> {
    pub camera: &'a str,
}

impl InternalEvent for CameraWentOffline<'_> {
    fn emit(self, t: &Telemetry) {
        t.error("camera_offline");
        debug!(camera = self.camera, "camera offline: status published");
    }
}

/// A camera's supervisor thread could not be started.
pub struct CameraNotStarted<'a> {
    pub camera: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for CameraNotStarted<'_> {
    fn emit(self, t: &Telemetry) {
        t.error("camera_start");
        error!(camera = self.camera, error = %self.error, "camera thread did not start");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_count_where_they_say() {
        let t = Telemetry::new();
        FrameDetected {
            camera: "door",
            faces: 3,
            seconds: 0.01,
        }
        .emit(&t);
        FacesEmbedded {
            per_camera: &[("door", 2), ("yard", 1)],
            seconds: 0.02,
        }
        .emit(&t);
        IdentityEventStored {
            camera: "door",
            kind: "recognized",
            liveness: None,
            track: 1,
            person: Some("Ann"),
            similarity: Some(0.7),
            frame_to_publish_s: Some(0.1),
        }
        .emit(&t);
        FrameFailed {
            camera: "door",
            error: &"boom",
        }
        .emit(&t);
        CommandHandled {
            command: "enroll",
            name: "Ann",
            error: Some(&"no face"),
        }
        .emit(&t);
        let text = t.encode();
        for line in [
            "facegate_frames_total{camera=\"door\"} 1",
            "facegate_detections_total{camera=\"door\"} 3",
            "facegate_embeddings_total{camera=\"door\"} 2",
            "facegate_embeddings_total{camera=\"yard\"} 1",
            "facegate_events_total{camera=\"door\",kind=\"recognized\"} 1",
            "facegate_frame_to_publish_seconds_count 1",
            "facegate_errors_total{kind=\"frame\"} 1",
            "facegate_commands_total{command=\"enroll\",outcome=\"refused\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }
}
