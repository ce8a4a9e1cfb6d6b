//! `{prefix}/stats`: every `mqtt.stats_interval_s` seconds (0 = never), per camera: frames
//! per second taken by recognition, frames, drops, queue depth, faces, events, restarts.
//! Everything is read from the telemetry registry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::CameraHandle;
use super::build::RECOGNITION;
use crate::config::Config;
use crate::events::Publisher;
use crate::telemetry::Telemetry;
use crate::video::FrameBus;

pub(super) fn spawn(
    cfg: &Config,
    cameras: &[CameraHandle],
    publisher: Publisher,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) {
    if cfg.mqtt.stats_interval_s == 0 {
        return;
    }
    let every = Duration::from_secs(cfg.mqtt.stats_interval_s);
    let cameras: Vec<(String, Arc<FrameBus>)> = cameras.iter().map(|c| (c.name.clone(), c.bus.clone())).collect();
    tokio::spawn(async move {
        let mut rates = FrameRates::default();
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let mut per_camera = serde_json::Map::new();
            for (name, bus) in &cameras {
                per_camera.insert(name.clone(), camera_stats(&telemetry, name, bus, &mut rates));
            }
            publisher.stats(json!({
                "timestamp": crate::gallery::store::now_rfc3339(),
                "cameras": per_camera,
                "outbox": publisher.outbox_depth(),
            }));
        }
    });
}

fn camera_stats(t: &Telemetry, name: &str, bus: &FrameBus, rates: &mut FrameRates) -> serde_json::Value {
    let delivered = Telemetry::consumer_count(&t.frames_delivered, name, RECOGNITION);
    let label = Telemetry::camera(name);
    json!({
        "fps": rates.rate(name, delivered),
        "online": t.camera_online.get(&label).is_some_and(|g| g.get() == 1),
        "frames": delivered,
        "dropped": Telemetry::consumer_count(&t.frames_dropped, name, RECOGNITION),
        "queue": bus.queue_depth(RECOGNITION).unwrap_or(0),
        "faces": Telemetry::camera_count(&t.detections, name),
        "events": t.camera_events(name),
        "restarts": Telemetry::camera_count(&t.camera_restarts, name),
    })
}

/// Frames per second of each camera since the previous stats message.
#[derive(Default)]
struct FrameRates {
    last: HashMap<String, (u64, Instant)>,
}

impl FrameRates {
    fn rate(&mut self, camera: &str, frames: u64) -> f64 {
        let now = Instant::now();
        let rate = match self.last.get(camera) {
            Some((prev, at)) => frames.saturating_sub(*prev) as f64 / now.duration_since(*at).as_secs_f64().max(1e-3),
            None => 0.0,
        };
        self.last.insert(camera.to_string(), (frames, now));
        (rate * 10.0).round() / 10.0
    }
}
