//! The run report of `facegate run --report FILE`: what a run did, as JSON, for benchmarks
//! and for checking a replay. Counts come from the telemetry registry; latencies from the
//! recognition worker's samples; CPU time and peak memory from `/proc/self` (Linux).

use std::path::Path;

use crate::error::Error;
use crate::recognition::LatencySamples;
use crate::telemetry::Telemetry;

#[derive(Debug, Default, serde::Serialize)]
pub struct RunReport {
    /// Frames taken through recognition (after each camera's `detect_fps`).
    pub frames: u64,
    /// Frames decoded, every camera together (before any consumer's rate).
    pub frames_decoded: u64,
    pub faces: u64,
    pub embeddings: u64,
    pub events: u64,
    /// Frames dropped from the recognition queues (paced sources only).
    pub frames_dropped: u64,
    /// From the first frame taken from a queue to the last one done.
    pub wall_s: f64,
    /// The run phase: from the cameras starting to shutdown (a signal, or the end of every
    /// file). For files paced like cameras, how long they took to play.
    pub run_s: f64,
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
    /// CPU time of the whole process (every thread: decoding, recognition, MQTT) from the
    /// end of the build phase (models loaded, cameras starting) to the end of the drain.
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    /// `cpu_user_s + cpu_system_s` per decoded frame, in milliseconds.
    pub cpu_ms_per_frame: f64,
    /// Peak resident set of the process (`VmHWM`), model loading included; 0 when unknown.
    pub peak_rss_kib: u64,
    /// Per camera, in configuration order.
    pub cameras: Vec<CameraReport>,
}

/// What one camera did over the run.
#[derive(Debug, Default, serde::Serialize)]
pub struct CameraReport {
    pub name: String,
    pub frames_decoded: u64,
    /// Taken through recognition.
    pub frames: u64,
    /// Dropped from its recognition queue (paced sources only).
    pub frames_dropped: u64,
    /// `frames_decoded / run_s`: 25 for a 25 fps file paced like a camera that kept real time.
    pub fps: f64,
}

/// CPU time and peak memory of this process, read from `/proc/self`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessUsage {
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    pub peak_rss_kib: u64,
}

/// The unit of the CPU times in `/proc/*/stat` (`USER_HZ`, what `sysconf(_SC_CLK_TCK)`
/// returns): 100 on the architectures Linux reports it for, x86 and ARM included.
const TICKS_PER_S: f64 = 100.0;

impl ProcessUsage {
    /// Now; zeros where `/proc/self` cannot be read (not Linux).
    pub fn now() -> ProcessUsage {
        let read = |f: &str| std::fs::read_to_string(format!("/proc/self/{f}")).unwrap_or_default();
        let (user, system) = cpu_ticks(&read("stat")).unwrap_or((0, 0));
        ProcessUsage {
            cpu_user_s: user as f64 / TICKS_PER_S,
            cpu_system_s: system as f64 / TICKS_PER_S,
            peak_rss_kib: status_kib(&read("status"), "VmHWM").unwrap_or(0),
        }
    }

    /// CPU time from `earlier` to `self`; the peak is `self`'s (a peak only grows).
    pub fn since(self, earlier: ProcessUsage) -> ProcessUsage {
        ProcessUsage {
            cpu_user_s: (self.cpu_user_s - earlier.cpu_user_s).max(0.0),
            cpu_system_s: (self.cpu_system_s - earlier.cpu_system_s).max(0.0),
            peak_rss_kib: self.peak_rss_kib,
        }
    }
}

/// `utime` and `stime` (fields 14 and 15, in ticks) of a `/proc/PID/stat` line. The
/// command name (field 2) is in parentheses and may hold spaces and parentheses itself,
/// so fields are counted from the last `)`.
fn cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    // After the name: state (field 3) … utime (14), stime (15).
    let user = fields.nth(11)?.parse().ok()?;
    let system = fields.next()?.parse().ok()?;
    Some((user, system))
}

/// A `kB` value of `/proc/PID/status`, e.g. `VmHWM:   123456 kB`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

impl RunReport {
    /// `usage` is the process's over the run ([`ProcessUsage::since`]).
    pub fn new(samples: &LatencySamples, telemetry: &Telemetry, cameras: &[String], usage: ProcessUsage) -> RunReport {
        let sum = |f: &dyn Fn(&str) -> u64| cameras.iter().map(|c| f(c)).sum::<u64>();
        let frames = sum(&|c| Telemetry::camera_count(&telemetry.frames, c));
        let frames_decoded = sum(&|c| Telemetry::camera_count(&telemetry.frames_decoded, c));
        let wall_s = match (samples.first, samples.last) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        let dropped = |c: &str| Telemetry::consumer_count(&telemetry.frames_dropped, c, super::build::RECOGNITION);
        let per_camera = cameras
            .iter()
            .map(|c| {
                let decoded = Telemetry::camera_count(&telemetry.frames_decoded, c);
                CameraReport {
                    name: c.clone(),
                    frames_decoded: decoded,
                    frames: Telemetry::camera_count(&telemetry.frames, c),
                    frames_dropped: dropped(c),
                    fps: 0.0,
                }
            })
            .collect();
        RunReport {
            frames,
            frames_decoded,
            faces: sum(&|c| Telemetry::camera_count(&telemetry.detections, c)),
            embeddings: sum(&|c| Telemetry::camera_count(&telemetry.embeddings, c)),
            events: sum(&|c| telemetry.camera_events(c)),
            frames_dropped: sum(&dropped),
            wall_s,
            run_s: 0.0,
            fps: rate(frames, wall_s),
            processing_p50_ms: percentile(&samples.processing_ms, 0.5),
            processing_p99_ms: percentile(&samples.processing_ms, 0.99),
            frame_to_publish_p50_ms: percentile(&samples.frame_to_publish_ms, 0.5),
            frame_to_publish_p99_ms: percentile(&samples.frame_to_publish_ms, 0.99),
            liveness_ms_per_frame: per(samples.liveness.seconds * 1e3, samples.liveness.frames),
            liveness_ms_per_track: per(samples.liveness.seconds * 1e3, samples.liveness.tracks),
            liveness_tracks: samples.liveness.tracks,
            cpu_user_s: usage.cpu_user_s,
            cpu_system_s: usage.cpu_system_s,
            cpu_ms_per_frame: per((usage.cpu_user_s + usage.cpu_system_s) * 1e3, frames_decoded),
            peak_rss_kib: usage.peak_rss_kib,
            cameras: per_camera,
        }
    }
}

impl RunReport {
    /// Sets `run_s` and the cameras' rates, which are over it.
    pub fn with_run_s(mut self, run_s: f64) -> RunReport {
        self.run_s = run_s;
        for c in &mut self.cameras {
            c.fps = rate(c.frames_decoded, run_s);
        }
        self
    }
}

fn per(total: f64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { total / n as f64 }
}

/// `n` per second over `seconds`; 0 for no time.
fn rate(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 { n as f64 / seconds } else { 0.0 }
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
        t.frames_decoded.get_or_create(&Telemetry::camera("a")).inc_by(30);
        t.frames_decoded.get_or_create(&Telemetry::camera("b")).inc_by(20);
        t.frames_dropped
            .get_or_create(&Telemetry::consumer("b", super::super::build::RECOGNITION))
            .inc_by(4);
        let usage = ProcessUsage {
            cpu_user_s: 0.4,
            cpu_system_s: 0.1,
            peak_rss_kib: 1000,
        };
        let r = RunReport::new(&LatencySamples::default(), &t, &["a".into(), "b".into()], usage);
        assert_eq!((r.frames, r.frames_decoded, r.events, r.wall_s), (5, 50, 0, 0.0));
        assert_eq!((r.frames_dropped, r.peak_rss_kib), (4, 1000));
        assert!((r.cpu_ms_per_frame - 10.0).abs() < 1e-9, "{}", r.cpu_ms_per_frame);
        let cams: Vec<_> = r
            .cameras
            .iter()
            .map(|c| (c.name.as_str(), c.frames_decoded, c.frames, c.frames_dropped))
            .collect();
        assert_eq!(cams, [("a", 30, 3, 0), ("b", 20, 2, 4)]);
        let r = r.with_run_s(2.0);
        assert_eq!((r.run_s, r.cameras[0].fps, r.cameras[1].fps), (2.0, 15.0, 10.0));
    }

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        // A name with a space and a parenthesis; utime 1234, stime 56.
        let stat = "4242 (facegate (x) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 9 0 77 1 2";
        assert_eq!(cpu_ticks(stat), Some((1234, 56)));
        assert_eq!(cpu_ticks("4242 (short) S 1 2"), None);
        assert_eq!(cpu_ticks(""), None);
    }

    #[test]
    fn status_values_in_kib() {
        let status = "Name:\tfacegate\nVmPeak:\t  900 kB\nVmHWM:\t  123456 kB\nVmRSS:\t  100000 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(123_456));
        assert_eq!(status_kib(status, "VmRSS"), Some(100_000));
        assert_eq!(status_kib(status, "VmSwap"), None);
        assert_eq!(status_kib("VmHWM: lots", "VmHWM"), None);
    }

    #[test]
    fn usage_over_a_run_and_of_this_process() {
        let a = ProcessUsage {
            cpu_user_s: 1.0,
            cpu_system_s: 0.5,
            peak_rss_kib: 10,
        };
        let b = ProcessUsage {
            cpu_user_s: 3.0,
            cpu_system_s: 0.75,
            peak_rss_kib: 20,
        };
        assert_eq!(
            b.since(a),
            ProcessUsage {
                cpu_user_s: 2.0,
                cpu_system_s: 0.25,
                peak_rss_kib: 20
            }
        );
        let now = ProcessUsage::now();
        if cfg!(target_os = "linux") {
            assert!(now.peak_rss_kib > 0, "{now:?}");
        }
    }
}
