//! Admin HTTP endpoints: `/live`, `/ready` and `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::Error;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve `/live`, `/ready` and `/metrics`.
    pub enabled: bool,
    /// Address to listen on; keep it on loopback unless a firewall guards it.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CameraLabel {
    pub camera: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub camera: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric the daemon exports. Counters are updated where things happen; gauges that
/// mirror other state are set just before each scrape by the daemon's `refresh` hook.
pub struct Metrics {
    registry: Registry,
    pub frames: Family<CameraLabel, Counter>,
    pub frames_dropped: Family<CameraLabel, Counter>,
    pub detections: Family<CameraLabel, Counter>,
    pub embeddings: Family<CameraLabel, Counter>,
    pub events: Family<EventLabel, Counter>,
    pub errors: Family<ErrorLabel, Counter>,
    pub latency: HistogramFamily<StageLabel>,
    pub frame_to_publish: Histogram,
    pub queue_depth: Family<CameraLabel, Gauge>,
    pub camera_online: Family<CameraLabel, Gauge>,
    pub camera_restarts: Family<CameraLabel, Gauge>,
    pub outbox_depth: Gauge,
    pub broker_connected: Gauge,
    pub gallery_templates: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("facegate");
        let m = Metrics {
            frames: Family::default(),
            frames_dropped: Family::default(),
            detections: Family::default(),
            embeddings: Family::default(),
            events: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            frame_to_publish: latency_histogram(),
            queue_depth: Family::default(),
            camera_online: Family::default(),
            camera_restarts: Family::default(),
            outbox_depth: Gauge::default(),
            broker_connected: Gauge::default(),
            gallery_templates: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("frames", "Frames handed on for detection", m.frames.clone());
        registry.register(
            "frames_dropped",
            "Frames dropped because the pipeline was busy",
            m.frames_dropped.clone(),
        );
        registry.register("detections", "Faces detected", m.detections.clone());
        registry.register("embeddings", "Faces embedded", m.embeddings.clone());
        registry.register("events", "Identity events by type", m.events.clone());
        registry.register("errors", "Errors by kind", m.errors.clone());
        registry.register("inference_seconds", "Time per inference stage", m.latency.clone());
        registry.register(
            "frame_to_publish_seconds",
            "From frame capture to event queued for MQTT",
            m.frame_to_publish.clone(),
        );
        registry.register("queue_depth", "Frames waiting per camera", m.queue_depth.clone());
        registry.register(
            "camera_online",
            "1 while the camera delivers frames",
            m.camera_online.clone(),
        );
        registry.register(
            "camera_restarts",
            "Pipeline restarts per camera",
            m.camera_restarts.clone(),
        );
        registry.register(
            "outbox_depth",
            "Events stored and not yet acknowledged by the broker",
            m.outbox_depth.clone(),
        );
        registry.register(
            "broker_connected",
            "1 while connected to the MQTT broker",
            m.broker_connected.clone(),
        );
        registry.register(
            "gallery_templates",
            "Templates in the search index",
            m.gallery_templates.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&ErrorLabel { kind: kind.to_string() }).inc();
    }

    pub fn observe(&self, stage: &str, seconds: f64) {
        self.latency
            .get_or_create(&StageLabel {
                stage: stage.to_string(),
            })
            .observe(seconds);
    }

    pub fn camera(&self, camera: &str) -> CameraLabel {
        CameraLabel {
            camera: camera.to_string(),
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// What `/ready` reports: every part must be up.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Readiness {
    pub models: bool,
    pub gallery: bool,
    pub broker: bool,
    pub cameras: Vec<(String, bool)>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.not_ready().is_empty()
    }

    /// The parts that are not up: `models`, `gallery`, `broker`, `camera NAME`.
    pub fn not_ready(&self) -> Vec<String> {
        let mut parts: Vec<String> = [
            ("models", self.models),
            ("gallery", self.gallery),
            ("broker", self.broker),
        ]
        .into_iter()
        .filter(|(_, up)| !up)
        .map(|(part, _)| part.to_string())
        .collect();
        parts.extend(
            self.cameras
                .iter()
                .filter(|(_, up)| !up)
                .map(|(name, _)| format!("camera {name}")),
        );
        parts
    }
}

/// What the endpoints read: the metrics and a hook that reports readiness and brings the
/// mirrored gauges up to date.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub probe: Box<dyn Fn() -> Readiness + Send + Sync>,
}

async fn live() -> &'static str {
    "ok\n"
}

async fn ready(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let r = (state.probe)();
    let code = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(serde_json::json!({"ready": r.ready(), "parts": r})))
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (state.probe)();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.encode(),
    )
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Binds the listener (so a port conflict is an error at start) and serves until `shutdown`.
pub async fn serve(
    cfg: &AdminConfig,
    state: Arc<AdminState>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| Error::Config(vec![format!("admin.listen: cannot listen on {}: {e}", cfg.listen)]))?;
    let app = router(state);
    Ok(tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "admin server stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_text() {
        let m = Metrics::new();
        m.frames.get_or_create(&m.camera("door")).inc_by(3);
        m.events
            .get_or_create(&EventLabel {
                camera: "door".into(),
                kind: "recognized".into(),
            })
            .inc();
        m.observe("detect", 0.012);
        m.outbox_depth.set(2);
        let text = m.encode();
        assert!(text.contains("facegate_frames_total{camera=\"door\"} 3"), "{text}");
        assert!(
            text.contains("facegate_events_total{camera=\"door\",kind=\"recognized\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("facegate_inference_seconds_count{stage=\"detect\"} 1"),
            "{text}"
        );
        assert!(text.contains("facegate_outbox_depth 2"), "{text}");
    }

    #[test]
    fn readiness_needs_every_part() {
        let mut r = Readiness {
            models: true,
            gallery: true,
            broker: true,
            cameras: vec![("door".into(), true)],
        };
        assert!(r.ready());
        r.cameras.push(("yard".into(), false));
        assert!(!r.ready());
        r.broker = false;
        assert_eq!(r.not_ready(), ["broker", "camera yard"]);
    }
}
