//! The run report of `facegate run --report FILE`: what a run did, as JSON, for benchmarks
//! and for checking a replay. Counts come from the telemetry registry; latencies from the
//! recognition worker's samples.

use std::path::Path;

use crate::error::Error;
use crate::recognition::LatencySamples;
use crate::telemetry::Telemetry;

#[derive(Debug, Default, serde::Serialize)]
pub struct RunReport {
    pub frames: u64,
    pub faces: u64,
    pub embeddings: u64,
    pub events: u64,
    /// Frames dropped from the recognition queues (paced sources only).
    pub frames_dropped: u64,
    /// From the first frame taken from a queue to the last one done.
    pub wall_s: f64,
    pub fps: f64,
    /// Per frame, from being taken from the queue to its decisions handed to the publisher.
    pub processing_p50_ms: f64,
    pub processing_p99_ms: f64,
    /// Per event, from its frame leaving the decoder (queue wait included) to the event
    /// being in the outbox and handed to the MQTT client.
    pub frame_to_publish_p50_ms: f64,
    pub frame_to_publish_p99_ms: f64,
    /// Liveness (evidence, CNN readings, verdicts), per detected frame and per track that
    /// got evidence; 0 with liveness off.
    pub liveness_ms_per_frame: f64,
    pub liveness_ms_per_track: f64,
    pub liveness_tracks: u64,
}

impl RunReport {
    pub fn new(samples: &LatencySamples, telemetry: &Telemetry, cameras: &[String]) -> RunReport {
        let sum = |f: &dyn Fn(&str) -> u64| cameras.iter().map(|c| f(c)).sum::<u64>();
        let frames = sum(&|c| Telemetry::camera_count(&telemetry.frames, c));
        let wall_s = match (samples.first, samples.last) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        RunReport {
            frames,
            faces: sum(&|c| Telemetry::camera_count(&telemetry.detections, c)),
            embeddings: sum(&|c| Telemetry::camera_count(&telemetry.embeddings, c)),
            events: sum(&|c| telemetry.camera_events(c)),
            frames_dropped: sum(&|c| {
                Telemetry::consumer_count(&telemetry.frames_dropped, c, super::build::RECOGNITION)
            }),
            wall_s,
            fps: if wall_s > 0.0 { frames as f64 / wall_s } else { 0.0 },
            processing_p50_ms: percentile(&samples.processing_ms, 0.5),
            processing_p99_ms: percentile(&samples.processing_ms, 0.99),
            frame_to_publish_p50_ms: percentile(&samples.frame_to_publish_ms, 0.5),
            frame_to_publish_p99_ms: percentile(&samples.frame_to_publish_ms, 0.99),
            liveness_ms_per_frame: per(samples.liveness.seconds * 1e3, samples.liveness.frames),
            liveness_ms_per_track: per(samples.liveness.seconds * 1e3, samples.liveness.tracks),
            liveness_tracks: samples.liveness.tracks,
        }
    }
}

fn per(total: f64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { total / n as f64 }
}

/// The `q` quantile (nearest rank) of `values`; 0 for none.
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len().max(1) - 1) as f64 * q).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

pub(super) fn write(path: &Path, report: &RunReport) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(report).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(|e| Error::Input {
        path: path.to_path_buf(),
        reason: format!("cannot write the run report: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn counts_come_from_the_registry() {
        let t = Telemetry::new();
        t.frames.get_or_create(&Telemetry::camera("a")).inc_by(3);
        t.frames.get_or_create(&Telemetry::camera("b")).inc_by(2);
        let r = RunReport::new(&LatencySamples::default(), &t, &["a".into(), "b".into()]);
        assert_eq!((r.frames, r.events, r.wall_s), (5, 0, 0.0));
    }
}
