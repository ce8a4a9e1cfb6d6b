//! Liveness of every track of a video file, offline (`facegate liveness VIDEO`): the
//! daemon's detect → track → liveness stages on every frame the camera hands on, without
//! a gallery or a broker.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::liveness::observe;
use super::stages::{self, Trackers};
use crate::config::Config;
use crate::engine::FaceEngine;
use crate::error::Error;
use crate::telemetry::Telemetry;
use crate::track::Track;
use crate::video::{CameraConfig, CameraStats, CameraStatus, ConsumerSpec, FrameBus, QueuePolicy, spawn_camera};
use crate::vision::liveness::cnn::PassiveCnn;
use crate::vision::liveness::fusion::LivenessAssessment;
use crate::vision::liveness::{LivenessConfig, LivenessMode};

/// Longest wait for the next frame before the video is given up.
const FRAME_WAIT: Duration = Duration::from_secs(60);

/// One track of the video and its liveness when it ended.
#[derive(Debug, Clone, Serialize)]
pub struct TrackLiveness {
    pub track_id: u64,
    /// Detected frames of the track.
    pub frames: u32,
    pub first_pts_ms: i64,
    pub last_pts_ms: i64,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub liveness: LivenessAssessment,
}

/// Every track of the video at `path`, sampled at `fps`, with its liveness. The engine and
/// the CNN are the caller's (ONNX Runtime allows one environment per process).
pub fn liveness_of_video(
    cfg: &Config,
    engine: &mut FaceEngine,
    cnn: &mut PassiveCnn,
    path: &Path,
    fps: f32,
) -> Result<Vec<TrackLiveness>, Error> {
    crate::video::init().map_err(|e| Error::Config(vec![format!("GStreamer: {e}")]))?;
    let liveness = LivenessConfig {
        // Off in the configuration still means "measure" here: that is what was asked.
        mode: cfg.liveness.mode.max_with(LivenessMode::Report),
        ..cfg.liveness.clone()
    };
    let mut trackers = Trackers::new(cfg.tracker.clone(), liveness.clone());
    let telemetry = Telemetry::new();
    let bus = FrameBus::new("video");
    let frames = bus.subscribe(ConsumerSpec::new("liveness", 4, QueuePolicy::Block, fps));
    let mut camera = CameraConfig::new("video", path.to_string_lossy());
    camera.realtime = false;
    camera.exit_on_eos = true;
    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let thread = spawn_camera(camera, bus, updates_tx, Arc::new(CameraStats::default()), stop.clone())
        .map_err(|e| Error::Environment(format!("cannot start the video thread: {e}")))?;
    let mut done = Vec::new();
    let result = loop {
        if let Ok(update) = updates.try_recv()
            && let CameraStatus::Offline { reason } = update.status
        {
            break Err(Error::Input {
                path: path.to_path_buf(),
                reason: format!("cannot play the video: {reason}"),
            });
        }
        let frame = match frames.recv_timeout(FRAME_WAIT) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Disconnected) => break Ok(()),
            Err(RecvTimeoutError::Timeout) => {
                break Err(Error::Input {
                    path: path.to_path_buf(),
                    reason: format!("no frame for {} s", FRAME_WAIT.as_secs()),
                });
            }
        };
        let batch = stages::detect(engine, vec![frame], &telemetry);
        let tracked = stages::track(&mut trackers, &batch, &cfg.gallery.quality);
        observe(&mut trackers, &batch, &tracked, Some(&mut *cnn), &telemetry);
        done.extend(tracked.ended.iter().map(|(_, t)| summary(t, &liveness)));
    };
    stop.cancel();
    let _ = thread.join();
    result?;
    done.extend(trackers.drain().iter().map(|(_, t)| summary(t, &liveness)));
    done.sort_by_key(|t| t.track_id);
    Ok(done)
}

fn summary(track: &Track, cfg: &LivenessConfig) -> TrackLiveness {
    let liveness = track
        .evidence()
        .liveness
        .as_ref()
        .map(|l| l.assess(cfg))
        .unwrap_or_else(|| crate::vision::liveness::fusion::fuse(&Default::default(), &cfg.fusion));
    TrackLiveness {
        track_id: track.id,
        frames: track.frames,
        first_pts_ms: track.first_pts_ms,
        last_pts_ms: track.last_pts_ms,
        bbox: track.bbox,
        liveness,
    }
}
