//! The build phase of the daemon: every part made and started in dependency order.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::health::{CameraNotes, HealthProbe};
use super::mqtt_metrics::PublisherCollector;
use super::{CameraHandle, Daemon};
use crate::admin::AdminState;
use crate::config::Config;
use crate::error::Error;
use crate::events::Publisher;
use crate::recognition::{self, WorkerContext, WorkerHealth, WorkerInputs};
use crate::telemetry::events::{CameraNotStarted, CameraWentOffline};
use crate::telemetry::{InternalEvent, Telemetry};
use crate::video::{CameraStats, CameraStatus, CameraUpdate, ConsumerCounters, ConsumerSpec, FrameBus, QueuePolicy};

/// Raises NVDEC above the software decoders when the models run on CUDA and GStreamer has
/// it, and says once which decoders the cameras use.
fn log_decoding(cfg: &Config, on_cuda: bool) {
    let nvdec = crate::video::hwdec::prefer_nvdec(cfg.daemon.hardware_decoding, on_cuda);
    if nvdec.is_empty() {
        tracing::info!(
            hardware_decoding = cfg.daemon.hardware_decoding.as_str(),
            on_cuda,
            "cameras decode on the CPU"
        );
    } else {
        tracing::info!(decoders = %nvdec.join(","), "cameras decode on the GPU (NVDEC)");
    }
}

/// The consumer name of the recognition queue on every camera's bus.
pub(crate) const RECOGNITION: &str = "recognition";

pub(super) async fn build(cfg: Config, keep_latencies: bool) -> Result<Daemon, Error> {
    crate::video::init().map_err(|e| Error::Config(vec![format!("GStreamer: {e}")]))?;
    log_cameras(&cfg);
    let cfg = Arc::new(cfg);
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let names: Vec<String> = cfg.cameras.iter().map(|c| c.name.clone()).collect();
    let (publisher, commands) = Publisher::start(&cfg.mqtt, &cfg.commands, &names, shutdown.clone()).await?;
    let mut telemetry = Telemetry::new();
    telemetry.register_collector(PublisherCollector(publisher.clone()));
    let telemetry = Arc::new(telemetry);

    let mut cameras = Vec::new();
    let mut queues = Vec::new();
    for cam in &cfg.cameras {
        let (camera, queue) = camera_handle(&cfg, cam, &telemetry);
        cameras.push(camera);
        queues.push(queue);
    }
    let health = Arc::new(WorkerHealth::default());
    let (worker_stop, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let ctx = WorkerContext {
        cfg: cfg.clone(),
        publisher: publisher.clone(),
        telemetry: telemetry.clone(),
        health: health.clone(),
        keep_latencies,
    };
    let inputs = WorkerInputs {
        frames: queues,
        commands: Some(commands),
        shutdown: stop_rx,
    };
    let worker = recognition::spawn(ctx, inputs)
        .map_err(|e| Error::Config(vec![format!("cannot start the recognition worker: {e}")]))?;

    // Cameras start once the models are loaded and the gallery is open: until then a
    // replay's frames would only wait and a camera's would go stale. When loading
    // fails, none start; the run phase sees the worker gone and stops.
    while !health.loaded() && !worker.is_finished() && !shutdown.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let camera_stop = shutdown.child_token();
    let (update_tx, update_rx) = mpsc::unbounded_channel::<CameraUpdate>();
    if health.loaded() {
        log_decoding(&cfg, health.on_cuda.load(std::sync::atomic::Ordering::Relaxed));
        start_cameras(&cfg, &mut cameras, &update_tx, &camera_stop, &telemetry);
    }
    drop(update_tx);
    let camera_notes = CameraNotes::default();
    spawn_status_task(
        &cfg,
        update_rx,
        publisher.clone(),
        camera_notes.clone(),
        shutdown.clone(),
        telemetry.clone(),
    );

    let probe = Arc::new(HealthProbe::new(
        health.clone(),
        publisher.clone(),
        cfg.mqtt.broker_address(),
        &cameras,
        camera_notes,
        telemetry.clone(),
    ));
    if cfg.admin.enabled {
        let probe = probe.clone();
        let state = Arc::new(AdminState {
            telemetry: telemetry.clone(),
            probe: Box::new(move || probe.readiness()),
        });
        crate::admin::serve(&cfg.admin, state, shutdown.clone()).await?;
    }
    super::stats::spawn(&cfg, &cameras, publisher.clone(), telemetry.clone(), shutdown.clone());
    Ok(Daemon {
        cfg,
        shutdown,
        camera_stop,
        telemetry,
        publisher,
        cameras,
        worker,
        worker_stop,
        health,
        probe,
    })
}

/// A camera's frame bus with its recognition queue, and counters registered in telemetry.
fn camera_handle(
    cfg: &Config,
    cam: &crate::video::CameraConfig,
    telemetry: &Telemetry,
) -> (CameraHandle, crate::video::FrameReceiver) {
    let label = Telemetry::camera(&cam.name);
    let stats = Arc::new(CameraStats {
        frames_decoded: telemetry.frames_decoded.get_or_create_owned(&label),
        restarts: telemetry.camera_restarts.get_or_create_owned(&label),
        errors: telemetry.camera_errors.get_or_create_owned(&label),
        online: telemetry.camera_online.get_or_create_owned(&label),
    });
    let consumer = Telemetry::consumer(&cam.name, RECOGNITION);
    let bus = FrameBus::new(&cam.name);
    let queue = bus.subscribe(ConsumerSpec {
        name: RECOGNITION.into(),
        capacity: cfg.daemon.frame_queue,
        // Replays wait for recognition, so every replay decides the same; paced sources
        // drop the oldest frame instead, so recognition always works on fresh frames.
        policy: QueuePolicy::Block,
        fps: cam.detect_fps,
        counters: ConsumerCounters {
            delivered: telemetry.frames_delivered.get_or_create_owned(&consumer),
            dropped: telemetry.frames_dropped.get_or_create_owned(&consumer),
        },
    });
    let handle = CameraHandle {
        name: cam.name.clone(),
        bus,
        stats,
        thread: None,
    };
    (handle, queue)
}

fn start_cameras(
    cfg: &Config,
    cameras: &mut [CameraHandle],
    updates: &mpsc::UnboundedSender<CameraUpdate>,
    stop: &CancellationToken,
    telemetry: &Telemetry,
) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = crate::video::decoder_threads_for(cfg.cameras.len(), cores);
    for (cam_cfg, camera) in cfg.cameras.iter().zip(cameras.iter_mut()) {
        let mut cam_cfg = cam_cfg.clone();
        cam_cfg.decoder_threads.get_or_insert(threads);
        match crate::video::spawn_camera(
            cam_cfg,
            camera.bus.clone(),
            updates.clone(),
            camera.stats.clone(),
            stop.clone(),
        ) {
            Ok(thread) => camera.thread = Some(thread),
            Err(e) => CameraNotStarted {
                camera: &camera.name,
                error: &e,
            }
            .emit(telemetry),
        }
    }
}

/// Camera status → MQTT; when every camera has finished its file (replays with
/// `exit_on_eos`), the daemon stops.
fn spawn_status_task(
    cfg: &Config,
    mut updates: mpsc::UnboundedReceiver<CameraUpdate>,
    publisher: Publisher,
    notes: CameraNotes,
    shutdown: CancellationToken,
    telemetry: Arc<Telemetry>,
) {
    let total = cfg.cameras.len();
    let exit_when_finished = !cfg.cameras.is_empty() && cfg.cameras.iter().all(|c| c.exit_on_eos);
    tokio::spawn(async move {
        let mut finished = HashSet::new();
        while let Some(update) = updates.recv().await {
            match &update.status {
                CameraStatus::Online => publisher.camera_status(&update.camera, true),
                CameraStatus::Offline { reason } => {
                    notes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(update.camera.to_string(), reason.clone());
                    CameraWentOffline { camera: &update.camera }.emit(&telemetry);
                    publisher.camera_status(&update.camera, false);
                }
                CameraStatus::Finished => {
                    notes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(update.camera.to_string(), "the file ended".into());
                    publisher.camera_status(&update.camera, false);
                    finished.insert(update.camera.to_string());
                    if exit_when_finished && finished.len() == total {
                        tracing::info!("every camera finished its video: stopping");
                        shutdown.cancel();
                    }
                }
            }
        }
    });
}

/// Says at start which cameras will run (credentials in their URLs masked), and warns
/// when there are none.
fn log_cameras(cfg: &Config) {
    if cfg.cameras.is_empty() {
        tracing::warn!("no cameras configured ([[cameras]]): only remote commands and the event backlog are served");
    }
    for c in &cfg.cameras {
        tracing::info!(
            camera = %c.name,
            url = %crate::video::redact_url(&c.url),
            detect_fps = c.detect_fps,
            decoder_threads = c.decoder_threads.map_or("auto".to_string(), |n| n.to_string()),
            "camera configured"
        );
    }
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
        }
        shutdown.cancel();
    });
}
