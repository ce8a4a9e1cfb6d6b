//! The one metrics registry of the daemon. Every counter lives here (or is registered here
//! by handle, like the cameras' counters that the video module updates); `/metrics`, the
//! `{prefix}/stats` topic and the run report all read it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CameraLabel {
    pub camera: String,
}

/// A consumer of a camera's frames (`recognition`, later `style`, `recorder`…).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabel {
    pub camera: String,
    pub consumer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub camera: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LivenessLabel {
    pub camera: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabel {
    pub command: String,
    pub outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric of the daemon. Counters are advanced by internal events
/// ([`super::events`]) or by the component that owns them (through handles taken here);
/// gauges that mirror other state are set just before each scrape.
pub struct Telemetry {
    registry: Registry,
    // Cameras (handles updated by the video module).
    pub frames_decoded: Family<CameraLabel, Counter>,
    pub frames_delivered: Family<ConsumerLabel, Counter>,
    pub frames_dropped: Family<ConsumerLabel, Counter>,
    pub queue_depth: Family<ConsumerLabel, Gauge>,
    pub camera_online: Family<CameraLabel, Gauge>,
    pub camera_restarts: Family<CameraLabel, Counter>,
    pub camera_errors: Family<CameraLabel, Counter>,
    // Recognition.
    pub frames: Family<CameraLabel, Counter>,
    pub detections: Family<CameraLabel, Counter>,
    pub embeddings: Family<CameraLabel, Counter>,
    pub events: Family<EventLabel, Counter>,
    pub liveness_verdicts: Family<LivenessLabel, Counter>,
    pub latency: HistogramFamily<StageLabel>,
    pub frame_to_publish: Histogram,
    pub batch_frames: Histogram,
    // Commands, errors, state.
    pub commands: Family<CommandLabel, Counter>,
    pub errors: Family<ErrorLabel, Counter>,
    pub outbox_depth: Gauge,
    pub broker_connected: Gauge,
    pub gallery_templates: Gauge,
    pub gallery_persons: Gauge,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let t = Telemetry {
            registry: Registry::with_prefix("facegate"),
            frames_decoded: Family::default(),
            frames_delivered: Family::default(),
            frames_dropped: Family::default(),
            queue_depth: Family::default(),
            camera_online: Family::default(),
            camera_restarts: Family::default(),
            camera_errors: Family::default(),
            frames: Family::default(),
            detections: Family::default(),
            embeddings: Family::default(),
            events: Family::default(),
            liveness_verdicts: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            frame_to_publish: latency_histogram(),
            batch_frames: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            commands: Family::default(),
            errors: Family::default(),
            outbox_depth: Gauge::default(),
            broker_connected: Gauge::default(),
            gallery_templates: Gauge::default(),
            gallery_persons: Gauge::default(),
        };
        t.register()
    }

    fn register(mut self) -> Telemetry {
        let r = &mut self.registry;
        r.register(
            "frames_decoded",
            "Frames decoded per camera, before any consumer's rate",
            self.frames_decoded.clone(),
        );
        r.register(
            "frames_delivered",
            "Frames handed to a consumer's queue",
            self.frames_delivered.clone(),
        );
        r.register(
            "frames_dropped",
            "Frames dropped because a consumer's queue was full",
            self.frames_dropped.clone(),
        );
        r.register(
            "queue_depth",
            "Frames waiting in a consumer's queue",
            self.queue_depth.clone(),
        );
        r.register(
            "camera_online",
            "1 while the camera delivers frames",
            self.camera_online.clone(),
        );
        r.register(
            "camera_restarts",
            "Pipeline restarts per camera",
            self.camera_restarts.clone(),
        );
        r.register(
            "camera_errors",
            "Camera failures per camera",
            self.camera_errors.clone(),
        );
        r.register("frames", "Frames processed by recognition", self.frames.clone());
        r.register("detections", "Faces detected", self.detections.clone());
        r.register("embeddings", "Faces embedded", self.embeddings.clone());
        r.register("events", "Identity events by type", self.events.clone());
        r.register(
            "liveness_verdicts",
            "Liveness verdicts (live, spoof, undecided) of published decisions",
            self.liveness_verdicts.clone(),
        );
        r.register("inference_seconds", "Time per recognition stage", self.latency.clone());
        r.register(
            "frame_to_publish_seconds",
            "From frame capture to event queued for MQTT",
            self.frame_to_publish.clone(),
        );
        r.register(
            "batch_frames",
            "Frames per recognition batch",
            self.batch_frames.clone(),
        );
        r.register("commands", "Remote commands by outcome", self.commands.clone());
        r.register("errors", "Errors by kind", self.errors.clone());
        r.register(
            "outbox_depth",
            "Events stored and not yet acknowledged by the broker",
            self.outbox_depth.clone(),
        );
        r.register(
            "broker_connected",
            "1 while connected to the MQTT broker",
            self.broker_connected.clone(),
        );
        r.register(
            "gallery_templates",
            "Templates in the search index",
            self.gallery_templates.clone(),
        );
        r.register("gallery_persons", "People enrolled", self.gallery_persons.clone());
        self
    }

    pub fn camera(camera: &str) -> CameraLabel {
        CameraLabel {
            camera: camera.to_string(),
        }
    }

    pub fn consumer(camera: &str, consumer: &str) -> ConsumerLabel {
        ConsumerLabel {
            camera: camera.to_string(),
            consumer: consumer.to_string(),
        }
    }

    pub(crate) fn error(&self, kind: &str) {
        self.errors.get_or_create(&ErrorLabel { kind: kind.to_string() }).inc();
    }

    pub(crate) fn observe(&self, stage: &str, seconds: f64) {
        self.latency
            .get_or_create(&StageLabel {
                stage: stage.to_string(),
            })
            .observe(seconds);
    }

    /// A counter of a camera family, read without creating the series.
    pub fn camera_count(family: &Family<CameraLabel, Counter>, camera: &str) -> u64 {
        family.get(&Self::camera(camera)).map_or(0, |c| c.get())
    }

    /// A counter of a consumer family, read without creating the series.
    pub fn consumer_count(family: &Family<ConsumerLabel, Counter>, camera: &str, consumer: &str) -> u64 {
        family.get(&Self::consumer(camera, consumer)).map_or(0, |c| c.get())
    }

    /// Events of one camera, all types together.
    pub fn camera_events(&self, camera: &str) -> u64 {
        ["recognized", "unknown", "spoof"]
            .into_iter()
            .map(|kind| {
                self.events
                    .get(&EventLabel {
                        camera: camera.to_string(),
                        kind: kind.to_string(),
                    })
                    .map_or(0, |c| c.get())
            })
            .sum()
    }

    /// Adds metrics that another component keeps itself, read at each scrape.
    pub fn register_collector(&mut self, collector: impl prometheus_client::collector::Collector) {
        self.registry.register_collector(Box::new(collector));
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_text() {
        let t = Telemetry::new();
        t.frames.get_or_create(&Telemetry::camera("door")).inc_by(3);
        t.events
            .get_or_create(&EventLabel {
                camera: "door".into(),
                kind: "recognized".into(),
            })
            .inc();
        t.frames_dropped
            .get_or_create(&Telemetry::consumer("door", "recognition"))
            .inc_by(2);
        t.observe("detect", 0.012);
        t.outbox_depth.set(2);
        let text = t.encode();
        for line in [
            "facegate_frames_total{camera=\"door\"} 3",
            "facegate_events_total{camera=\"door\",kind=\"recognized\"} 1",
            "facegate_frames_dropped_total{camera=\"door\",consumer=\"recognition\"} 2",
            "facegate_inference_seconds_count{stage=\"detect\"} 1",
            "facegate_outbox_depth 2",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert_eq!(t.camera_events("door"), 1);
        assert_eq!(Telemetry::camera_count(&t.frames, "door"), 3);
        assert_eq!(Telemetry::camera_count(&t.frames, "yard"), 0);
        assert_eq!(Telemetry::consumer_count(&t.frames_dropped, "door", "recognition"), 2);
    }

    #[test]
    fn spoof_verdicts_are_counted_per_camera() {
        use super::super::InternalEvent;
        use super::super::events::IdentityEventStored;
        use crate::vision::liveness::fusion::LivenessVerdict;
        let t = Telemetry::new();
        for (camera, kind, liveness) in [
            ("door", "spoof", Some(LivenessVerdict::Spoof)),
            ("door", "spoof", Some(LivenessVerdict::Spoof)),
            ("yard", "recognized", Some(LivenessVerdict::Live)),
            ("yard", "unknown", None),
        ] {
            IdentityEventStored {
                camera,
                kind,
                liveness,
                track: 1,
                person: None,
                similarity: None,
                frame_to_publish_s: None,
            }
            .emit(&t);
        }
        let text = t.encode();
        for line in [
            "facegate_liveness_verdicts_total{camera=\"door\",verdict=\"spoof\"} 2",
            "facegate_liveness_verdicts_total{camera=\"yard\",verdict=\"live\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("verdict=\"spoof\"} 3"), "{text}");
    }

    #[test]
    fn a_handle_taken_from_a_family_counts_in_the_registry() {
        let t = Telemetry::new();
        let handle = t.frames_decoded.get_or_create_owned(&Telemetry::camera("door"));
        handle.inc_by(5);
        assert!(t.encode().contains("facegate_frames_decoded_total{camera=\"door\"} 5"));
    }
}
