//! The configuration of one camera (`[[cameras]]`).

use serde::{Deserialize, Serialize};

use super::source::{SourceKind, classify};

/// RTSP lower transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// RTP interleaved in the RTSP TCP connection: passes NAT and firewalls, no loss.
    #[default]
    Tcp,
    /// RTP over UDP: lower latency on a clean network.
    Udp,
    /// Let rtspsrc try UDP, multicast, then TCP.
    Auto,
}

impl RtspTransport {
    /// The value of rtspsrc's `protocols` property; `None` keeps rtspsrc's default.
    pub(crate) fn rtspsrc_protocols(self) -> Option<&'static str> {
        match self {
            RtspTransport::Tcp => Some("tcp"),
            RtspTransport::Udp => Some("udp"),
            RtspTransport::Auto => None,
        }
    }
}

/// One camera: where its video comes from and how it is decoded and supervised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Unique name, `[A-Za-z0-9_-]+`; it is a level of the MQTT topics.
    pub name: String,
    /// `rtsp://…`, `file:///…` or a plain file path, `http(s)://…`, `/dev/videoN`, or any
    /// URI GStreamer's uridecodebin opens.
    pub url: String,
    /// Frames per second for recognition, decimated by timestamp; 0 = every frame. This is
    /// the rate of the recognition consumer only: the application passes it in that
    /// consumer's `ConsumerSpec`, and every consumer of the camera's frame bus has its own.
    #[serde(default = "default_detect_fps")]
    pub detect_fps: f32,
    /// Files only: pace the file at its own frame rate like a camera (true), or decode
    /// every frame as fast as the `Block` consumers take them, deterministically (false).
    #[serde(default = "default_true")]
    pub realtime: bool,
    /// Files only: start over at the end of the file.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Files only: the camera finishes at the end of the file (status `Finished`), and the
    /// daemon may exit once every such camera has finished.
    #[serde(default)]
    pub exit_on_eos: bool,
    /// RTSP only: jitter-buffer latency in milliseconds.
    #[serde(default = "default_latency_ms")]
    pub latency_ms: u32,
    /// RTSP only: `tcp`, `udp` or `auto`.
    #[serde(default)]
    pub transport: RtspTransport,
    /// Paced sources: no frame for this long counts as a failure and restarts the pipeline.
    #[serde(default = "default_frame_timeout_ms")]
    pub frame_timeout_ms: u64,
    /// First delay before restarting a failed source; it doubles on each further failure.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Longest delay between restarts.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Threads of the software decoder (libav's `max-threads`); 0 = one per CPU core.
    /// Unset: the daemon chooses ([`decoder_threads_for`]): 1 when the box has at least
    /// as many cameras as cores, where one thread per decoder keeps every core busy
    /// without frame-threading's overhead, else one per core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_threads: Option<u32>,
}

/// Most decoder threads a camera may ask for.
const MAX_DECODER_THREADS: u32 = 64;

/// The decoder threads of a camera that does not set them, on a box with `cameras`
/// cameras and `cores` CPU cores (0 = libav's own choice, one per core). Decoding a
/// 720p25 H.264 stream takes one thread about a tenth of a core, so with as many cameras
/// as cores the cameras already spread over the cores, and frame threading would only add
/// synchronisation (a fifth more decoding CPU with two threads than with one, measured on
/// the demo video) and a frame of delay per thread.
pub fn decoder_threads_for(cameras: usize, cores: usize) -> u32 {
    if cameras >= cores.max(1) { 1 } else { 0 }
}

fn default_detect_fps() -> f32 {
    10.0
}
fn default_true() -> bool {
    true
}
fn default_latency_ms() -> u32 {
    200
}
fn default_frame_timeout_ms() -> u64 {
    5000
}
fn default_backoff_initial_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    30_000
}

/// Limits that keep a typo from turning into a pathological configuration.
const MAX_DETECT_FPS: f32 = 240.0;
const MAX_LATENCY_MS: u32 = 60_000;
const MIN_FRAME_TIMEOUT_MS: u64 = 100;
const MAX_BACKOFF_MS: u64 = 3_600_000;

impl CameraConfig {
    /// A camera with every optional key at its default.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> CameraConfig {
        CameraConfig {
            name: name.into(),
            url: url.into(),
            detect_fps: default_detect_fps(),
            realtime: true,
            looping: false,
            exit_on_eos: false,
            latency_ms: default_latency_ms(),
            transport: RtspTransport::default(),
            frame_timeout_ms: default_frame_timeout_ms(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            decoder_threads: None,
        }
    }

    /// Every problem of this camera, each starting with its key (`{prefix}.{key}: …`).
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut errors = Vec::new();
        let mut err = |key: &str, msg: String| errors.push(format!("{prefix}.{key}: {msg}"));

        if self.name.is_empty() {
            err("name", "must not be empty".into());
        } else if !self
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            err(
                "name",
                format!("{:?} may hold only A-Z, a-z, 0-9, '_' and '-'", self.name),
            );
        }

        let source = match classify(&self.url) {
            Ok(s) => Some(s),
            Err(e) => {
                err("url", e);
                None
            }
        };

        if !self.detect_fps.is_finite() || self.detect_fps < 0.0 || self.detect_fps > MAX_DETECT_FPS {
            err(
                "detect_fps",
                format!(
                    "{} is not between 0 and {MAX_DETECT_FPS} (0 = every frame)",
                    self.detect_fps
                ),
            );
        }
        if self.latency_ms > MAX_LATENCY_MS {
            err("latency_ms", format!("{} is above {MAX_LATENCY_MS}", self.latency_ms));
        }
        if self.frame_timeout_ms < MIN_FRAME_TIMEOUT_MS {
            err(
                "frame_timeout_ms",
                format!("{} is below {MIN_FRAME_TIMEOUT_MS}", self.frame_timeout_ms),
            );
        }
        if self.backoff_initial_ms == 0 {
            err("backoff_initial_ms", "must be above 0".into());
        }
        if self.backoff_max_ms > MAX_BACKOFF_MS {
            err(
                "backoff_max_ms",
                format!("{} is above {MAX_BACKOFF_MS} (one hour)", self.backoff_max_ms),
            );
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            err(
                "backoff_max_ms",
                format!(
                    "{} is below backoff_initial_ms ({})",
                    self.backoff_max_ms, self.backoff_initial_ms
                ),
            );
        }

        if self.decoder_threads.is_some_and(|n| n > MAX_DECODER_THREADS) {
            err(
                "decoder_threads",
                format!(
                    "{} is above {MAX_DECODER_THREADS} (0 = one per core)",
                    self.decoder_threads.unwrap_or_default()
                ),
            );
        }

        let is_file = matches!(source, Some(SourceKind::File { .. }));
        if source.is_some() && !is_file {
            if !self.realtime {
                err(
                    "realtime",
                    "false applies to files only; other sources are always paced in real time".into(),
                );
            }
            if self.looping {
                err("loop", "applies to files only".into());
            }
            if self.exit_on_eos {
                err("exit_on_eos", "applies to files only".into());
            }
        }
        if self.looping && self.exit_on_eos {
            err(
                "exit_on_eos",
                "cannot be combined with loop = true (a looping file never ends)".into(),
            );
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_optional_keys() {
        let cfg: CameraConfig = serde_json::from_str(r#"{"name":"door","url":"rtsp://cam/1"}"#).unwrap();
        assert_eq!(cfg, CameraConfig::new("door", "rtsp://cam/1"));
        assert_eq!(cfg.detect_fps, 10.0);
        assert!(cfg.realtime);
        assert_eq!(cfg.transport, RtspTransport::Tcp);
        assert!(cfg.validate("cameras[0]").is_empty());
    }

    #[test]
    fn loop_key_and_transport_parse() {
        let cfg: CameraConfig =
            serde_json::from_str(r#"{"name":"f","url":"/v.mp4","loop":true,"realtime":false,"transport":"udp"}"#)
                .unwrap();
        assert!(cfg.looping);
        assert!(!cfg.realtime);
        assert_eq!(cfg.transport, RtspTransport::Udp);
        assert!(cfg.validate("c").is_empty());
    }

    #[test]
    fn unknown_and_missing_keys_are_rejected() {
        assert!(serde_json::from_str::<CameraConfig>(r#"{"name":"a","url":"/v.mp4","fps":3}"#).is_err());
        assert!(serde_json::from_str::<CameraConfig>(r#"{"name":"a"}"#).is_err());
    }

    #[test]
    fn validate_reports_every_problem_with_its_key() {
        let mut cfg = CameraConfig::new("front door", "rtsp://cam/1");
        cfg.detect_fps = -1.0;
        cfg.frame_timeout_ms = 10;
        cfg.backoff_initial_ms = 0;
        cfg.realtime = false;
        cfg.looping = true;
        cfg.decoder_threads = Some(1000);
        let errors = cfg.validate("cameras[2]");
        for key in [
            "decoder_threads",
            "name",
            "detect_fps",
            "frame_timeout_ms",
            "backoff_initial_ms",
            "realtime",
            "loop",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(&format!("cameras[2].{key}: "))),
                "{key} missing in {errors:?}"
            );
        }
    }

    #[test]
    fn validate_rejects_bad_url_and_backoff_order() {
        let mut cfg = CameraConfig::new("a", "");
        cfg.backoff_initial_ms = 1000;
        cfg.backoff_max_ms = 10;
        let errors = cfg.validate("c");
        assert!(errors.iter().any(|e| e.starts_with("c.url: ")), "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("c.backoff_max_ms: ")), "{errors:?}");
    }

    #[test]
    fn decoders_get_one_thread_once_cameras_fill_the_cores() {
        assert_eq!(decoder_threads_for(1, 2), 0);
        assert_eq!(decoder_threads_for(2, 2), 1);
        assert_eq!(decoder_threads_for(8, 2), 1);
        assert_eq!(decoder_threads_for(4, 16), 0);
        assert_eq!(decoder_threads_for(1, 0), 1, "an unknown core count counts as one");
    }

    #[test]
    fn loop_and_exit_on_eos_conflict() {
        let mut cfg = CameraConfig::new("a", "file:///v.mp4");
        cfg.looping = true;
        cfg.exit_on_eos = true;
        assert_eq!(cfg.validate("c").len(), 1);
    }
}
