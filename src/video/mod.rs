//! Cameras through GStreamer: one pipeline per camera, supervised by its own thread that
//! restarts it with jittered exponential backoff, and a demo-video generator.
//!
//! A camera hands decoded RGB frames to its [`FrameBus`], which feeds any number of
//! consumers, each with its own bounded queue, drop policy and rate; it reports its status
//! (`Online`, `Offline`, `Finished`) on an unbounded tokio channel. Paced sources (cameras,
//! streams, realtime files) never block the GStreamer streaming thread: a full queue drops
//! its oldest frame. A file replayed with `realtime = false` waits for the queues of
//! `Block` consumers instead, so that every replay of a file hands them exactly the same
//! frames whatever their speed.

mod bus;
mod camera;
mod config;
mod decimator;
pub mod hwdec;
mod pipeline;
pub mod presentation;
mod source;
pub mod synth;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

pub use bus::{ConsumerCounters, ConsumerSpec, FrameBus, FrameReceiver, QueuePolicy};
pub use camera::spawn_camera;
pub use config::{CameraConfig, RtspTransport, decoder_threads_for};
pub use source::{SourceKind, redact_url};
pub use synth::{DemoSegment, DemoVideoInfo, DemoVideoOptions, Mp4Writer, make_demo_video};

/// One decoded frame, as every consumer of the camera's bus receives it.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The camera's configured name.
    pub camera: Arc<str>,
    /// Number of this frame among every frame the camera decoded since it was spawned
    /// (restarts and loops included); gaps are frames that this consumer's rate decimated
    /// out or its queue dropped.
    pub seq: u64,
    /// Presentation time in milliseconds. For files it is the position in the file; it
    /// never goes backwards for one camera: loops and restarts continue from the last value.
    pub pts_ms: i64,
    /// The frame at full resolution, tightly packed RGB.
    pub image: Arc<image::RgbImage>,
    /// When the frame left the decoder.
    pub captured: Instant,
}

/// A camera's state as its status topic reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraStatus {
    /// Frames flow.
    Online,
    /// The source failed and is being retried; sent once per outage.
    Offline { reason: String },
    /// A file reached its end and the camera stopped (no `loop`).
    Finished,
}

/// A status change of one camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraUpdate {
    pub camera: Arc<str>,
    pub status: CameraStatus,
}

/// Counters of one camera. They are Prometheus handles: the application may register the
/// very ones it passes to [`spawn_camera`]; `Default` gives unregistered ones. What each
/// consumer got and missed is in its [`ConsumerCounters`].
#[derive(Debug, Clone, Default)]
pub struct CameraStats {
    /// Frames that reached the end of the pipeline.
    pub frames_decoded: Counter,
    /// Pipelines rebuilt after a failure.
    pub restarts: Counter,
    /// Failures: bus errors, end of a paced stream, frame timeouts, failed starts.
    pub errors: Counter,
    /// 1 while frames flow, else 0.
    pub online: Gauge,
}

/// Errors of a camera pipeline; their text is the `reason` of `CameraStatus::Offline`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VideoError {
    #[error("GStreamer element `{element}` is not installed ({hint})")]
    MissingElement { element: String, hint: &'static str },
    #[error("invalid camera url: {0}")]
    Url(String),
    #[error("cannot build the pipeline: {0}")]
    Build(String),
    #[error("pipeline failed to start: {0}")]
    Start(String),
    #[error("{element}: {message}")]
    Bus {
        element: String,
        message: String,
        debug: Option<String>,
    },
    #[error("end of stream on a paced source")]
    PacedEos,
    #[error("no frame for {0} ms")]
    FrameTimeout(u64),
    #[error("cannot seek back to the start of the file: {0}")]
    Seek(String),
}

/// The elements every camera pipeline needs, with the package that provides them.
const CORE_ELEMENTS: &[(&str, &str)] = &[
    ("videoconvert", "gstreamer1.0-plugins-base"),
    ("capsfilter", "gstreamer core"),
    ("appsink", "gstreamer1.0-plugins-base"),
    ("appsrc", "gstreamer1.0-plugins-base"),
    ("uridecodebin", "gstreamer1.0-plugins-base"),
    ("decodebin", "gstreamer1.0-plugins-base"),
];

/// Initialises GStreamer once for the process; later calls return the first result.
/// Fails with a readable message when GStreamer or its base plugins are missing.
pub fn init() -> Result<(), String> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        gstreamer::init()
            .map_err(|e| format!("GStreamer cannot be initialised: {e} (install GStreamer 1.22 or newer)"))?;
        let missing: Vec<String> = CORE_ELEMENTS
            .iter()
            .filter(|(name, _)| gstreamer::ElementFactory::find(name).is_none())
            .map(|(name, pkg)| format!("{name} ({pkg})"))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("GStreamer elements missing: {}", missing.join(", ")))
        }
    })
    .clone()
}

/// Makes an element, naming the package to install when its plugin is missing.
pub(crate) fn make_element(factory: &str) -> Result<gstreamer::Element, VideoError> {
    gstreamer::ElementFactory::make(factory)
        .build()
        .map_err(|_| VideoError::MissingElement {
            element: factory.to_string(),
            hint: package_hint(factory),
        })
}

fn package_hint(factory: &str) -> &'static str {
    match factory {
        "x264enc" => "gstreamer1.0-plugins-ugly",
        "h264parse" => "gstreamer1.0-plugins-bad",
        "rtspsrc" | "qtdemux" | "mp4mux" | "v4l2src" => "gstreamer1.0-plugins-good",
        "avdec_h264" => "gstreamer1.0-libav",
        _ => "gstreamer1.0-plugins-base",
    }
}
