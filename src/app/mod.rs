//! `facegate run`: the daemon in three phases, as one reads them top to bottom in [`run`]:
//! - **build** ([`build`]): configuration checked, telemetry, the MQTT publisher, one frame
//!   bus per camera, the recognition worker (which loads the models and the gallery), then
//!   the cameras, the admin endpoints and the stats;
//! - **run**: until SIGTERM/SIGINT, the end of every replayed file, or a dead worker,
//!   telling systemd about readiness and feeding its watchdog ([`health`]);
//! - **drain**: cameras stop, the worker finishes the frames it has and publishes every open
//!   track's final decision, the outbox gets its grace period, `offline` is published.
//!
//! Threads: one GStreamer supervisor per camera, one recognition worker; tokio tasks for the
//! MQTT link, camera status, stats, the admin server and the main loop.

mod build;
mod health;
mod mqtt_metrics;
mod report;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::Error;
use crate::events::Publisher;
use crate::recognition::{LatencySamples, WorkerHealth};
use crate::telemetry::Telemetry;
use crate::video::{CameraStats, FrameBus};
use health::{HealthProbe, Systemd};
pub use report::{CameraReport, ProcessUsage, RunReport};

/// How long the in-process broker outlives the publisher's shutdown, so that its
/// subscribers receive the last messages (final events, `offline`).
const EMBEDDED_BROKER_LINGER: Duration = Duration::from_millis(500);

/// One configured camera as the application holds it.
pub(crate) struct CameraHandle {
    pub name: String,
    pub bus: Arc<FrameBus>,
    pub stats: Arc<CameraStats>,
    pub thread: Option<std::thread::JoinHandle<()>>,
}

/// The built daemon: what the run and drain phases work with.
pub(crate) struct Daemon {
    cfg: Arc<Config>,
    /// Cancelled by a signal, the end of every replay, or a dead worker.
    shutdown: CancellationToken,
    camera_stop: CancellationToken,
    telemetry: Arc<Telemetry>,
    publisher: Publisher,
    cameras: Vec<CameraHandle>,
    worker: std::thread::JoinHandle<Result<LatencySamples, Error>>,
    /// Dropped to tell the worker to finish.
    worker_stop: crossbeam_channel::Sender<()>,
    health: Arc<WorkerHealth>,
    probe: Arc<HealthProbe>,
}

/// Runs the daemon until it is told to stop; with `report_to`, writes what it did there.
pub async fn run(cfg: Config, report_to: Option<PathBuf>) -> Result<(), Error> {
    let cameras: Vec<String> = cfg.cameras.iter().map(|c| c.name.clone()).collect();
    let daemon = build::build(cfg, report_to.is_some()).await?;
    // The report's CPU time is the run's, not the loading of the models before it.
    let (built_at, built) = (std::time::Instant::now(), ProcessUsage::now());
    let daemon = daemon.run().await;
    let run_s = built_at.elapsed().as_secs_f64();
    let (samples, telemetry) = daemon.drain().await?;
    let usage = ProcessUsage::now().since(built);
    match report_to {
        Some(path) => {
            let report = RunReport::new(&samples, &telemetry, &cameras, usage).with_run_s(run_s);
            report::write(&path, &report)
        }
        None => Ok(()),
    }
}

impl Daemon {
    /// The run phase: systemd readiness and watchdog until shutdown.
    async fn run(self) -> Daemon {
        let mut systemd = Systemd::new(Duration::from_secs(self.cfg.daemon.ready_timeout_s));
        let mut tick = tokio::time::interval(systemd.tick_interval());
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if self.worker.is_finished() {
                tracing::error!("the recognition worker stopped");
                self.shutdown.cancel();
                break;
            }
            systemd.on_tick(&self.probe.readiness(), &self.health);
        }
        self
    }

    /// The drain phase; returns the worker's latency samples and the telemetry for the
    /// run report.
    async fn drain(self) -> Result<(LatencySamples, Arc<Telemetry>), Error> {
        tracing::info!("shutting down");
        Systemd::stopping();
        self.camera_stop.cancel();
        for camera in self.cameras {
            if let Some(thread) = camera.thread {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        }
        drop(self.worker_stop);
        let worker = self.worker;
        let worker_result = tokio::task::spawn_blocking(move || worker.join()).await;
        let grace = Duration::from_secs(self.cfg.daemon.shutdown_grace_s);
        let publisher_metrics = self.publisher.clone();
        let report = self.publisher.shutdown(grace).await;
        if self.cfg.mqtt.host.is_none() {
            tokio::time::sleep(EMBEDDED_BROKER_LINGER).await;
        }
        tracing::info!(
            events_delivered = publisher_metrics.metrics().acked,
            delivered_during_shutdown = report.sent,
            left_in_outbox = report.left_in_outbox,
            disconnected_cleanly = report.disconnected_cleanly,
            "stopped"
        );
        match worker_result {
            Ok(Ok(Ok(samples))) => Ok((samples, self.telemetry)),
            Ok(Ok(Err(e))) => Err(e),
            _ => Err(Error::Inference {
                model: "recognition",
                reason: "the recognition worker panicked".into(),
            }),
        }
    }
}
