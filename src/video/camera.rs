//! The supervisor of one camera: a thread that builds the pipeline, watches its bus and
//! its frames, tears it down on failure (never from the streaming thread) and rebuilds
//! it after a jittered exponential backoff.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bus::FrameBus;
use super::config::CameraConfig;
use super::pipeline::{self, Delivery, FrameTiming, SessionSignals};
use super::source::{SourceKind, classify};
use super::{CameraStats, CameraStatus, CameraUpdate, VideoError};
use crate::backoff::Backoff;

/// After frames have flowed this long, the next failure starts the backoff over.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// How often the supervisor looks at the bus, the frame clock and the shutdown token.
const POLL: Duration = Duration::from_millis(50);

/// Starts a camera on its own thread (named `camera-{name}`), handing its frames to `bus`.
/// It runs until `shutdown` is cancelled, every consumer of the bus has gone, or a file ends
/// without `loop`; then the bus is closed: its consumers see the end after the last frame.
///
/// Status changes go to `updates`: `Online` when frames flow, `Offline` once per outage,
/// `Finished` at the end of a file. A camera that cannot work at all (invalid URL,
/// GStreamer missing) reports `Offline` with the reason and stops.
pub fn spawn_camera(
    cfg: CameraConfig,
    bus: Arc<FrameBus>,
    updates: mpsc::UnboundedSender<CameraUpdate>,
    stats: Arc<CameraStats>,
    shutdown: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("camera-{}", cfg.name))
        .spawn(move || {
            let camera: Arc<str> = Arc::from(cfg.name.as_str());
            let reporter = StatusReporter {
                camera: camera.clone(),
                updates,
                stats: stats.clone(),
                last: None,
            };
            let supervisor = Supervisor {
                camera,
                cfg,
                bus: bus.clone(),
                stats,
                shutdown,
                reporter,
            };
            supervisor.run();
            bus.close();
        })
}

/// How one pipeline run ended.
enum SessionEnd {
    /// Shutdown requested, or every consumer has gone.
    Stopped,
    /// A file reached its end.
    Finished,
    /// The source failed; `healthy_for` is how long frames flowed before.
    Failed { error: VideoError, healthy_for: Duration },
}

/// What to do at the end of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EosAction {
    Loop,
    Finish,
    Fail,
}

fn eos_action(source: &SourceKind, cfg: &CameraConfig) -> EosAction {
    match source {
        SourceKind::File { .. } if cfg.looping => EosAction::Loop,
        // With or without exit_on_eos a file that ends is finished; exit_on_eos tells the
        // application whether the daemon should exit once its cameras have finished.
        SourceKind::File { .. } => EosAction::Finish,
        _ => EosAction::Fail,
    }
}

/// Sends each status change once, and keeps `stats.online` in step (1 online, 0 not).
struct StatusReporter {
    camera: Arc<str>,
    updates: mpsc::UnboundedSender<CameraUpdate>,
    stats: Arc<CameraStats>,
    last: Option<CameraStatus>,
}

impl StatusReporter {
    fn set(&mut self, status: CameraStatus) {
        let same = match (&self.last, &status) {
            (Some(CameraStatus::Offline { .. }), CameraStatus::Offline { .. }) => true,
            (Some(a), b) => a == b,
            (None, _) => false,
        };
        if same {
            return;
        }
        self.stats.online.set(i64::from(status == CameraStatus::Online));
        self.last = Some(status.clone());
        // The application may already be gone at shutdown; nothing to do then.
        let _ = self.updates.send(CameraUpdate {
            camera: self.camera.clone(),
            status,
        });
    }

    fn is_online(&self) -> bool {
        self.last == Some(CameraStatus::Online)
    }
}

struct Supervisor {
    camera: Arc<str>,
    cfg: CameraConfig,
    bus: Arc<FrameBus>,
    stats: Arc<CameraStats>,
    shutdown: CancellationToken,
    reporter: StatusReporter,
}

impl Supervisor {
    fn run(mut self) {
        let camera = self.camera.clone();
        let source = match classify(&self.cfg.url) {
            Ok(s) => s,
            Err(e) => {
                let reason = VideoError::Url(format!("{}: {e}", self.cfg.url)).to_string();
                return self.give_up(reason);
            }
        };
        if let Err(e) = super::init() {
            return self.give_up(e);
        }
        let paced = source.is_paced(self.cfg.realtime);
        tracing::info!(camera = %camera, url = %self.cfg.url, paced, "camera starting");

        let timing = Arc::new(Mutex::new(FrameTiming::default()));
        let mut backoff = Backoff::new(
            Duration::from_millis(self.cfg.backoff_initial_ms),
            Duration::from_millis(self.cfg.backoff_max_ms),
        );
        loop {
            match self.run_session(&source, paced, &timing) {
                SessionEnd::Stopped => break,
                SessionEnd::Finished => {
                    tracing::info!(camera = %camera, "end of file: camera finished");
                    self.reporter.set(CameraStatus::Finished);
                    break;
                }
                SessionEnd::Failed { error, healthy_for } => {
                    self.stats.errors.inc();
                    if healthy_for >= HEALTHY_AFTER {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    let reason = error.to_string();
                    if matches!(self.reporter.last, Some(CameraStatus::Offline { .. })) {
                        tracing::info!(camera = %camera, %reason, retry_in_ms = delay.as_millis() as u64, "camera still offline");
                    } else {
                        tracing::warn!(camera = %camera, %reason, retry_in_ms = delay.as_millis() as u64, "camera offline");
                    }
                    if let VideoError::Bus {
                        debug: Some(details), ..
                    } = &error
                    {
                        tracing::debug!(camera = %camera, %details, "GStreamer error details");
                    }
                    self.reporter.set(CameraStatus::Offline { reason });
                    if wait_or_cancel(&self.shutdown, delay) || self.bus.is_abandoned() {
                        break;
                    }
                    self.stats.restarts.inc();
                }
            }
        }
        if self.reporter.is_online() {
            self.reporter.set(CameraStatus::Offline {
                reason: "camera stopped".into(),
            });
        }
        self.stats.online.set(0);
        tracing::info!(camera = %camera, "camera stopped");
    }

    /// For failures a restart cannot cure.
    fn give_up(mut self, reason: String) {
        self.stats.errors.inc();
        tracing::error!(camera = %self.camera, %reason, "camera cannot start");
        self.reporter.set(CameraStatus::Offline { reason });
    }

    /// Builds, runs and tears down one pipeline.
    fn run_session(&mut self, source: &SourceKind, paced: bool, timing: &Arc<Mutex<FrameTiming>>) -> SessionEnd {
        let signals = Arc::new(SessionSignals::new());
        let cancel = self.shutdown.child_token();
        let delivery = Delivery {
            camera: self.camera.clone(),
            paced,
            bus: self.bus.clone(),
            stats: self.stats.clone(),
            timing: timing.clone(),
            signals: signals.clone(),
            cancel: cancel.clone(),
            to_rgb: None,
        };
        let pipeline = match pipeline::build(&self.cfg, source, delivery) {
            Ok(p) => p,
            Err(error) => {
                return SessionEnd::Failed {
                    error,
                    healthy_for: Duration::ZERO,
                };
            }
        };
        let end = self.watch(&pipeline, source, paced, &signals);
        // Stop a replay waiting for a consumer, then stop the streaming threads from here.
        cancel.cancel();
        if let Err(e) = pipeline.set_state(gst::State::Null) {
            tracing::debug!(camera = %self.camera, error = %e, "pipeline did not stop cleanly");
        }
        end
    }

    /// Plays the pipeline and waits for the end of this run.
    fn watch(
        &mut self,
        pipeline: &gst::Pipeline,
        source: &SourceKind,
        paced: bool,
        signals: &SessionSignals,
    ) -> SessionEnd {
        let failed = |error| SessionEnd::Failed {
            error,
            healthy_for: Duration::ZERO,
        };
        let Some(bus) = pipeline.bus() else {
            return failed(VideoError::Build("pipeline has no bus".into()));
        };
        if pipeline.set_state(gst::State::Playing).is_err() {
            let error = pipeline::pending_error(&bus)
                .unwrap_or_else(|| VideoError::Start("state change to PLAYING failed".into()));
            return failed(error);
        }
        let frame_timeout = Duration::from_millis(self.cfg.frame_timeout_ms);
        let eos = eos_action(source, &self.cfg);
        let mut online_since: Option<Instant> = None;
        let healthy = |since: Option<Instant>| since.map_or(Duration::ZERO, |t| t.elapsed());

        loop {
            if self.shutdown.is_cancelled() || self.bus.is_abandoned() {
                return SessionEnd::Stopped;
            }
            let msg = bus.timed_pop_filtered(
                gst::ClockTime::from_nseconds(POLL.as_nanos() as u64),
                &[
                    gst::MessageType::Error,
                    gst::MessageType::Eos,
                    gst::MessageType::Warning,
                ],
            );
            if let Some(msg) = msg {
                match msg.view() {
                    gst::MessageView::Error(err) => {
                        return SessionEnd::Failed {
                            error: pipeline::bus_error(err),
                            healthy_for: healthy(online_since),
                        };
                    }
                    gst::MessageView::Eos(_) => match eos {
                        EosAction::Finish => return SessionEnd::Finished,
                        EosAction::Fail => {
                            return SessionEnd::Failed {
                                error: VideoError::PacedEos,
                                healthy_for: healthy(online_since),
                            };
                        }
                        EosAction::Loop => {
                            tracing::debug!(camera = %self.camera, "end of file: looping");
                            if let Err(e) = pipeline.seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::ZERO) {
                                return SessionEnd::Failed {
                                    error: VideoError::Seek(e.to_string()),
                                    healthy_for: healthy(online_since),
                                };
                            }
                        }
                    },
                    gst::MessageView::Warning(w) => {
                        tracing::debug!(camera = %self.camera, warning = %w.error(), "GStreamer warning");
                    }
                    _ => {}
                }
            }
            if online_since.is_none()
                && let Some(first) = signals.first_frame()
            {
                online_since = Some(first);
                tracing::info!(camera = %self.camera, "camera online");
                self.reporter.set(CameraStatus::Online);
            }
            if paced {
                let last = signals.last_frame().unwrap_or(signals.started);
                if last.elapsed() > frame_timeout {
                    return SessionEnd::Failed {
                        error: VideoError::FrameTimeout(self.cfg.frame_timeout_ms),
                        healthy_for: healthy(online_since),
                    };
                }
            }
        }
    }
}

/// Sleeps for `delay` unless `token` is cancelled first; true when it was.
fn wait_or_cancel(token: &CancellationToken, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    loop {
        if token.is_cancelled() {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        std::thread::sleep((until - now).min(POLL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eos_actions() {
        let file = SourceKind::File {
            uri: "file:///v.mp4".into(),
        };
        let rtsp = SourceKind::Rtsp {
            url: "rtsp://c/1".into(),
        };
        let mut cfg = CameraConfig::new("c", "file:///v.mp4");
        assert_eq!(eos_action(&file, &cfg), EosAction::Finish);
        cfg.exit_on_eos = true;
        assert_eq!(eos_action(&file, &cfg), EosAction::Finish);
        cfg.exit_on_eos = false;
        cfg.looping = true;
        assert_eq!(eos_action(&file, &cfg), EosAction::Loop);
        assert_eq!(eos_action(&rtsp, &cfg), EosAction::Fail);
    }

    #[test]
    fn reporter_sends_each_change_once() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stats = Arc::new(CameraStats::default());
        let mut r = StatusReporter {
            camera: Arc::from("c"),
            updates: tx,
            stats: stats.clone(),
            last: None,
        };
        r.set(CameraStatus::Offline { reason: "a".into() });
        r.set(CameraStatus::Offline { reason: "b".into() });
        r.set(CameraStatus::Online);
        assert_eq!(stats.online.get(), 1);
        r.set(CameraStatus::Online);
        r.set(CameraStatus::Offline { reason: "c".into() });
        assert_eq!(stats.online.get(), 0);
        let got: Vec<CameraStatus> = std::iter::from_fn(|| rx.try_recv().ok()).map(|u| u.status).collect();
        assert_eq!(
            got,
            [
                CameraStatus::Offline { reason: "a".into() },
                CameraStatus::Online,
                CameraStatus::Offline { reason: "c".into() }
            ]
        );
    }

    #[test]
    fn wait_returns_early_on_cancel() {
        let token = CancellationToken::new();
        assert!(!wait_or_cancel(&token, Duration::from_millis(10)));
        token.cancel();
        // Cancelled before the wait: it returns true instead of sleeping for an hour.
        assert!(wait_or_cancel(&token, Duration::from_secs(3600)));
    }
}
