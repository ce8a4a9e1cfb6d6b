//! `facegate run`: builds the subsystems, runs them, and drains them on SIGTERM.
//!
//! Threads and tasks:
//! - one GStreamer supervisor thread per camera (video::spawn_camera) feeding the camera's
//!   frame bus, where recognition subscribes one bounded queue per camera;
//! - one recognition thread owning the models, the gallery and the trackers (ONNX Runtime
//!   sessions are used from one thread; inference is blocking work);
//! - tokio tasks: the MQTT publisher (events::Publisher), camera status, stats, the admin
//!   HTTP server, and the main loop (signals, readiness, systemd watchdog).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use image::RgbImage;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminState, EventLabel, Metrics, Readiness};
use crate::config::Config;
use crate::engine::{FaceEngine, FaceSample};
use crate::error::Error;
use crate::events::{Command, Event, EventKind, PersonRef, Publisher};
use crate::gallery::Gallery;
use crate::gallery::matcher::Decision as MatchDecision;
use crate::gallery::store::NewTemplate;
use crate::track::{Decision, Evaluation, Tracker, Verdict};
use crate::video::{
    CameraStats, CameraStatus, CameraUpdate, ConsumerCounters, ConsumerSpec, Frame, FrameBus, FrameReceiver,
    QueuePolicy,
};

/// How long the in-process broker outlives the publisher's shutdown.
const EMBEDDED_BROKER_LINGER: Duration = Duration::from_millis(500);

/// Shared view of the daemon's health for `/ready`, stats and systemd.
struct Health {
    models: AtomicBool,
    gallery: AtomicBool,
    templates: AtomicU64,
    /// When the recognition thread last went round its loop, in ms since `epoch`.
    beat_ms: AtomicU64,
    epoch: Instant,
}

impl Health {
    fn new() -> Health {
        Health {
            models: AtomicBool::new(false),
            gallery: AtomicBool::new(false),
            templates: AtomicU64::new(0),
            beat_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn loaded(&self) -> bool {
        self.models.load(Ordering::Relaxed) && self.gallery.load(Ordering::Relaxed)
    }

    fn beat(&self) {
        self.beat_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn since_beat(&self) -> Duration {
        self.epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(self.beat_ms.load(Ordering::Relaxed)))
    }
}

struct CameraEntry {
    name: String,
    stats: Arc<CameraStats>,
    /// The recognition consumer of the camera's frame bus.
    recognition: ConsumerCounters,
    events: AtomicU64,
    faces: AtomicU64,
}

/// What a run did, written as JSON by `facegate run --report FILE` when it ends: for
/// benchmarks and for checking a replay.
#[derive(Debug, Default, serde::Serialize)]
pub struct RunReport {
    pub frames: u64,
    pub faces: u64,
    pub embeddings: u64,
    pub events: u64,
    /// From the first frame taken from the queue to the last one done.
    pub wall_s: f64,
    pub fps: f64,
    /// Per frame, from being taken from the queue to its decisions handed to the publisher.
    pub processing_p50_ms: f64,
    pub processing_p99_ms: f64,
    /// Per event, from its frame leaving the decoder (queue wait included) to the event
    /// being in the outbox and handed to the MQTT client.
    pub frame_to_publish_p50_ms: f64,
    pub frame_to_publish_p99_ms: f64,
}

/// Raw samples behind a `RunReport`, kept by the recognition thread.
#[derive(Default)]
struct RunStats {
    frames: u64,
    faces: u64,
    embeddings: u64,
    events: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    processing_ms: Vec<f64>,
    publish_ms: Vec<f64>,
}

impl RunStats {
    fn report(&self) -> RunReport {
        let pct = |v: &[f64], q: f64| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v.get(((v.len().max(1) - 1) as f64 * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let wall_s = match (self.first, self.last) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        RunReport {
            frames: self.frames,
            faces: self.faces,
            embeddings: self.embeddings,
            events: self.events,
            wall_s,
            fps: if wall_s > 0.0 { self.frames as f64 / wall_s } else { 0.0 },
            processing_p50_ms: pct(&self.processing_ms, 0.5),
            processing_p99_ms: pct(&self.processing_ms, 0.99),
            frame_to_publish_p50_ms: pct(&self.publish_ms, 0.5),
            frame_to_publish_p99_ms: pct(&self.publish_ms, 0.99),
        }
    }
}

pub async fn run(cfg: Config, report_to: Option<std::path::PathBuf>) -> Result<(), Error> {
    crate::video::init().map_err(|e| Error::Config(vec![format!("GStreamer: {e}")]))?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new());
    let names: Vec<String> = cfg.cameras.iter().map(|c| c.name.clone()).collect();
    let cameras: Arc<Vec<CameraEntry>> = Arc::new(
        names
            .iter()
            .map(|n| CameraEntry {
                name: n.clone(),
                stats: Arc::new(CameraStats::default()),
                recognition: ConsumerCounters::default(),
                events: AtomicU64::new(0),
                faces: AtomicU64::new(0),
            })
            .collect(),
    );

    let (publisher, commands) = Publisher::start(&cfg.mqtt, &names, shutdown.clone()).await?;

    // Recognition thread: loads the models and the gallery itself, then reports health.
    // One frame bus per camera; recognition waits for room on replays, drops the oldest
    // frame on paced sources.
    let buses: Vec<Arc<FrameBus>> = names.iter().map(|n| FrameBus::new(n)).collect();
    let frame_rx: Vec<FrameReceiver> = cfg
        .cameras
        .iter()
        .zip(cameras.iter())
        .zip(&buses)
        .map(|((cam, entry), bus)| {
            bus.subscribe(ConsumerSpec {
                name: "recognition".into(),
                capacity: cfg.daemon.frame_queue,
                policy: QueuePolicy::Block,
                fps: cam.detect_fps,
                counters: entry.recognition.clone(),
            })
        })
        .collect();
    let worker_stop = CancellationToken::new();
    let worker = {
        let (cfg, metrics, health, publisher, stop) = (
            cfg.clone(),
            metrics.clone(),
            health.clone(),
            publisher.clone(),
            worker_stop.clone(),
        );
        let cameras = cameras.clone();
        std::thread::Builder::new()
            .name("recognition".into())
            .spawn(move || recognition_loop(cfg, frame_rx, commands, publisher, metrics, health, cameras, stop))
            .map_err(|e| Error::Config(vec![format!("cannot start the recognition thread: {e}")]))?
    };

    // Cameras start once the models are loaded and the gallery is open: until then a
    // replay's frames would only wait and a live stream's would go stale. When loading
    // fails, none start; the main loop sees the recognition thread gone and stops.
    let loaded = || health.loaded();
    while !loaded() && !worker.is_finished() && !shutdown.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (update_tx, mut update_rx) = mpsc::unbounded_channel::<CameraUpdate>();
    let camera_stop = shutdown.child_token();
    let mut camera_threads = Vec::new();
    let camera_configs = if loaded() { cfg.cameras.as_slice() } else { &[] };
    for ((cam_cfg, entry), bus) in camera_configs.iter().zip(cameras.iter()).zip(&buses) {
        match crate::video::spawn_camera(
            cam_cfg.clone(),
            bus.clone(),
            update_tx.clone(),
            entry.stats.clone(),
            camera_stop.clone(),
        ) {
            Ok(h) => camera_threads.push(h),
            Err(e) => {
                tracing::error!(camera = %cam_cfg.name, error = %e, "camera thread did not start");
                metrics.error("camera_start");
            }
        }
    }
    drop(update_tx);

    // Camera status → MQTT; when every camera has finished (replays with exit_on_eos), stop.
    {
        let (publisher, shutdown, metrics) = (publisher.clone(), shutdown.clone(), metrics.clone());
        let total = names.len();
        let exit_on_finish = !cfg.cameras.is_empty() && cfg.cameras.iter().all(|c| c.exit_on_eos);
        tokio::spawn(async move {
            let mut finished = std::collections::HashSet::new();
            while let Some(u) = update_rx.recv().await {
                match &u.status {
                    CameraStatus::Online => publisher.camera_status(&u.camera, true),
                    // The camera logs why; here it is counted and published.
                    CameraStatus::Offline { .. } => {
                        metrics.error("camera_offline");
                        publisher.camera_status(&u.camera, false);
                    }
                    CameraStatus::Finished => {
                        publisher.camera_status(&u.camera, false);
                        finished.insert(u.camera.to_string());
                        if exit_on_finish && finished.len() == total {
                            tracing::info!("every camera finished its video: stopping");
                            shutdown.cancel();
                        }
                    }
                }
            }
        });
    }

    // Admin endpoints.
    let readiness = {
        let (health, publisher, cameras, metrics) =
            (health.clone(), publisher.clone(), cameras.clone(), metrics.clone());
        move || {
            metrics.outbox_depth.set(publisher.outbox_depth() as i64);
            metrics.broker_connected.set(publisher.connected() as i64);
            metrics
                .gallery_templates
                .set(health.templates.load(Ordering::Relaxed) as i64);
            let mut cams = Vec::new();
            for c in cameras.iter() {
                let label = metrics.camera(&c.name);
                let online = c.stats.online.get() != 0;
                metrics.camera_online.get_or_create(&label).set(online as i64);
                metrics
                    .camera_restarts
                    .get_or_create(&label)
                    .set(c.stats.restarts.get() as i64);
                cams.push((c.name.clone(), online));
            }
            Readiness {
                models: health.models.load(Ordering::Relaxed),
                gallery: health.gallery.load(Ordering::Relaxed),
                broker: publisher.connected(),
                cameras: cams,
            }
        }
    };
    let probe: Arc<dyn Fn() -> Readiness + Send + Sync> = Arc::new(readiness);
    if cfg.admin.enabled {
        let probe = probe.clone();
        let state = Arc::new(AdminState {
            metrics: metrics.clone(),
            probe: Box::new(move || probe()),
        });
        crate::admin::serve(&cfg.admin, state, shutdown.clone()).await?;
    }

    // Stats.
    {
        let (publisher, cameras, shutdown) = (publisher.clone(), cameras.clone(), shutdown.clone());
        let every = Duration::from_secs(cfg.mqtt.stats_interval_s.max(1));
        tokio::spawn(async move {
            let mut last: HashMap<String, (u64, Instant)> = HashMap::new();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                let mut per_camera = serde_json::Map::new();
                for c in cameras.iter() {
                    let delivered = c.recognition.delivered.get();
                    let (prev, at) = last.get(&c.name).copied().unwrap_or((0, Instant::now() - every));
                    let fps = (delivered.saturating_sub(prev)) as f64 / at.elapsed().as_secs_f64().max(1e-3);
                    last.insert(c.name.clone(), (delivered, Instant::now()));
                    per_camera.insert(
                        c.name.clone(),
                        json!({
                            "fps": (fps * 10.0).round() / 10.0,
                            "online": c.stats.online.get() != 0,
                            "frames": delivered,
                            "dropped": c.recognition.dropped.get(),
                            "faces": c.faces.load(Ordering::Relaxed),
                            "events": c.events.load(Ordering::Relaxed),
                            "restarts": c.stats.restarts.get(),
                        }),
                    );
                }
                publisher.stats(json!({
                    "timestamp": crate::gallery::store::now_rfc3339(),
                    "cameras": per_camera,
                    "outbox": publisher.outbox_depth(),
                }));
            }
        });
    }

    // Main loop: systemd readiness and watchdog until shutdown.
    let started = Instant::now();
    let ready_timeout = Duration::from_secs(cfg.daemon.ready_timeout_s);
    let mut notified_ready = false;
    let watchdog = watchdog_interval();
    let mut tick = tokio::time::interval(
        watchdog
            .map_or(Duration::from_millis(500), |w| w / 4)
            .min(Duration::from_millis(500)),
    );
    let mut stalled = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if worker.is_finished() {
            tracing::error!("the recognition thread stopped");
            shutdown.cancel();
            break;
        }
        if !notified_ready {
            // READY once /ready says so, or, once the models and the gallery are loaded,
            // after `ready_timeout`: a camera or a broker that is down must not keep the
            // service from starting (systemd would kill it) and the working cameras idle.
            let r = probe();
            if r.ready() {
                tracing::info!("ready");
            } else if r.models && r.gallery && started.elapsed() >= ready_timeout {
                tracing::warn!(
                    waiting_for = %r.not_ready().join(", "),
                    "started without every part ready (/ready says which); they are retried in the background"
                );
            }
            if r.ready() || (r.models && r.gallery && started.elapsed() >= ready_timeout) {
                notified_ready = true;
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            }
        }
        if let Some(interval) = watchdog {
            // Fed while the recognition thread goes round (between frames, or idle every few
            // ms); loading the models has no beat, and no watchdog yet either.
            let alive = !health.loaded() || health.since_beat() < interval / 2;
            if alive {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            } else if !stalled {
                tracing::error!(
                    stalled_s = health.since_beat().as_secs(),
                    "the recognition thread is stuck: no more watchdog keep-alives"
                );
            }
            stalled = !alive;
        }
    }

    // Drain: cameras stop, the recognition thread finishes the frames it has and publishes
    // the final decision of every open track, then the outbox gets the grace period.
    tracing::info!("shutting down");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    camera_stop.cancel();
    for h in camera_threads {
        let _ = tokio::task::spawn_blocking(move || h.join()).await;
    }
    worker_stop.cancel();
    let worker_result = tokio::task::spawn_blocking(move || worker.join()).await;
    let grace = Duration::from_secs(cfg.daemon.shutdown_grace_s);
    let report = publisher.shutdown(grace).await;
    if cfg.mqtt.host.is_none() {
        // The in-process broker ends with this process: give its subscribers a moment to
        // receive the last messages (final events, `offline`) before it goes.
        tokio::time::sleep(EMBEDDED_BROKER_LINGER).await;
    }
    tracing::info!(?report, "stopped");
    match worker_result {
        Ok(Ok(Ok(stats))) => {
            let Some(path) = report_to else { return Ok(()) };
            let text = serde_json::to_string_pretty(&stats.report()).unwrap_or_default();
            std::fs::write(&path, text + "\n").map_err(|e| Error::Input {
                path,
                reason: format!("cannot write the run report: {e}"),
            })
        }
        Ok(Ok(Err(e))) => Err(e),
        _ => Err(Error::Inference {
            model: "recognition",
            reason: "the recognition thread panicked".into(),
        }),
    }
}

/// systemd's `WatchdogSec`, when it watches this process.
fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec))
    } else {
        None
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

/// Per-camera recognition state.
struct CameraState {
    tracker: Tracker,
}

#[allow(clippy::too_many_arguments)]
fn recognition_loop(
    cfg: Config,
    frames: Vec<FrameReceiver>,
    mut commands: mpsc::Receiver<Command>,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    cameras: Arc<Vec<CameraEntry>>,
    stop: CancellationToken,
) -> Result<RunStats, Error> {
    let mut engine = FaceEngine::load(&cfg)?;
    health.models.store(true, Ordering::Relaxed);
    let mut gallery = Gallery::open(&cfg.gallery, engine.model_id())?;
    health.gallery.store(true, Ordering::Relaxed);
    health.templates.store(gallery.index().len() as u64, Ordering::Relaxed);
    let mut rec = Recognizer {
        cfg: &cfg,
        publisher: &publisher,
        metrics: &metrics,
        cameras: &cameras,
        states: HashMap::new(),
        stats: RunStats::default(),
    };
    let refresh_every = Duration::from_millis(cfg.gallery.refresh_interval_ms);
    let mut last_refresh = Instant::now();
    let mut turn = 0;
    loop {
        health.beat();
        if last_refresh.elapsed() >= refresh_every {
            last_refresh = Instant::now();
            match gallery.refresh() {
                Ok(_) => health.templates.store(gallery.index().len() as u64, Ordering::Relaxed),
                Err(e) => {
                    tracing::error!(error = %e, "gallery refresh failed");
                    metrics.error("gallery_refresh");
                }
            }
        }
        while let Ok(cmd) = commands.try_recv() {
            let result = rec.command(&mut engine, &mut gallery, cmd);
            publisher.command_result(result);
        }
        // Frames until told to stop, then those still queued. With no camera left (none
        // configured, or every file finished) it keeps serving commands until then.
        let frame = match next_frame(&frames, &mut turn) {
            Some(f) => f,
            None => {
                if stop.is_cancelled() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let started = Instant::now();
        rec.stats.first.get_or_insert(started);
        if let Err(e) = rec.frame(&mut engine, &gallery, &frame) {
            tracing::error!(camera = %frame.camera, error = %e, "frame failed");
            metrics.error("frame");
        }
        let done = Instant::now();
        rec.stats.last = Some(done);
        rec.stats.frames += 1;
        rec.stats
            .processing_ms
            .push(done.duration_since(started).as_secs_f64() * 1e3);
    }
    // Final decisions of every open track.
    for (camera, state) in rec.states.iter_mut() {
        for track in state.tracker.drain() {
            if let Some(d) = Tracker::finish(&track) {
                emit(&cfg, &publisher, &metrics, &cameras, camera, &d, None);
                rec.stats.events += 1;
            }
        }
    }
    Ok(rec.stats)
}

/// The next frame from the cameras' recognition queues, taking them in turn.
fn next_frame(frames: &[FrameReceiver], turn: &mut usize) -> Option<Frame> {
    for k in 0..frames.len() {
        let i = (*turn + k) % frames.len();
        if let Ok(f) = frames[i].try_recv() {
            *turn = i + 1;
            return Some(f);
        }
    }
    None
}

struct Recognizer<'a> {
    cfg: &'a Config,
    publisher: &'a Publisher,
    metrics: &'a Metrics,
    cameras: &'a [CameraEntry],
    states: HashMap<String, CameraState>,
    stats: RunStats,
}

impl Recognizer<'_> {
    fn frame(&mut self, engine: &mut FaceEngine, gallery: &Gallery, frame: &Frame) -> Result<(), Error> {
        let camera = frame.camera.to_string();
        let label = self.metrics.camera(&camera);
        self.metrics.frames.get_or_create(&label).inc();
        let t = Instant::now();
        let samples: Vec<FaceSample> = engine.samples(&frame.image)?;
        self.stats.faces += samples.len() as u64;
        self.metrics.observe("detect", t.elapsed().as_secs_f64());
        self.metrics
            .detections
            .get_or_create(&label)
            .inc_by(samples.len() as u64);
        if let Some(c) = self.cameras.iter().find(|c| c.name == camera) {
            c.faces.fetch_add(samples.len() as u64, Ordering::Relaxed);
        }
        let gate = &self.cfg.gallery.quality;
        let dets: Vec<_> = samples.iter().map(|s| s.detection.clone()).collect();
        let quality: Vec<f32> = samples.iter().map(|s| s.quality.score()).collect();
        let tracker_cfg = self.cfg.tracker.clone();
        let state = self.states.entry(camera.clone()).or_insert_with(|| CameraState {
            tracker: Tracker::new(tracker_cfg),
        });
        let (assignments, ended) = state.tracker.update(&dets, &quality, frame.pts_ms);

        let to_embed: Vec<(u64, f32, &RgbImage)> = assignments
            .iter()
            .filter(|a| a.embed && samples[a.detection].quality.failure(gate).is_none())
            .map(|a| (a.track_id, quality[a.detection], &samples[a.detection].crop))
            .collect();
        let mut decisions: Vec<Decision> = Vec::new();
        if !to_embed.is_empty() {
            let t = Instant::now();
            let crops: Vec<&RgbImage> = to_embed.iter().map(|x| x.2).collect();
            let embeddings = engine.embed_crops(&crops)?;
            self.stats.embeddings += embeddings.len() as u64;
            self.metrics.observe("embed", t.elapsed().as_secs_f64());
            self.metrics
                .embeddings
                .get_or_create(&label)
                .inc_by(embeddings.len() as u64);
            for ((track_id, q, _), e) in to_embed.iter().zip(embeddings) {
                state.tracker.add_evidence(*track_id, *q, e);
                let Some(evidence) = state.tracker.evidence(*track_id) else {
                    continue;
                };
                let evaluation = evaluate(gallery, &evidence, self.cfg.gallery.threshold);
                if let Some(d) = state.tracker.evaluate(*track_id, evaluation) {
                    decisions.push(d);
                }
            }
        }
        for track in &ended {
            if let Some(d) = Tracker::finish(track) {
                decisions.push(d);
            }
        }
        for d in &decisions {
            let latency = emit(
                self.cfg,
                self.publisher,
                self.metrics,
                self.cameras,
                &camera,
                d,
                Some(frame.captured),
            );
            self.stats.events += 1;
            if let Some(seconds) = latency {
                self.stats.publish_ms.push(seconds * 1e3);
            }
        }
        Ok(())
    }

    /// Enrollment and removal requested over MQTT; the result goes to `{prefix}/cmd/result`.
    fn command(&mut self, engine: &mut FaceEngine, gallery: &mut Gallery, cmd: Command) -> serde_json::Value {
        match cmd {
            Command::Enroll {
                request_id,
                name,
                jpeg,
                append,
            } => {
                let result = (|| -> Result<serde_json::Value, Error> {
                    let img = crate::vision::image_io::decode_image(&jpeg).map_err(Error::Rejected)?;
                    let mut samples = engine.samples(&img)?;
                    samples.sort_by(|a, b| b.detection.area().total_cmp(&a.detection.area()));
                    let s = samples
                        .into_iter()
                        .next()
                        .ok_or_else(|| Error::Rejected("no face in the image".into()))?;
                    if let Some(why) = s.quality.failure(&self.cfg.gallery.quality) {
                        return Err(Error::Rejected(why));
                    }
                    let embedding = engine.embed_crops(&[&s.crop])?.remove(0);
                    use sha2::Digest;
                    let digest: String = sha2::Sha256::digest(&jpeg).iter().map(|b| format!("{b:02x}")).collect();
                    let template = NewTemplate {
                        embedding,
                        model: engine.model_id().to_string(),
                        quality: s.quality.score(),
                        source_sha256: digest,
                        crop: None,
                    };
                    let (person, ids) = gallery.enroll(&name, &json!({}), vec![template], append)?;
                    Ok(json!({"person": {"id": person.id, "name": person.name}, "templates": ids}))
                })();
                command_reply(request_id, "enroll", result)
            }
            Command::Remove { request_id, name } => {
                let result = gallery.remove(&name).map(|n| json!({"removed": name, "templates": n}));
                command_reply(request_id, "remove", result)
            }
        }
    }
}

fn command_reply(
    request_id: Option<String>,
    command: &str,
    result: Result<serde_json::Value, Error>,
) -> serde_json::Value {
    match result {
        Ok(v) => json!({"request_id": request_id, "command": command, "ok": true, "result": v}),
        Err(e) => {
            tracing::warn!(command, error = %e, "remote command refused");
            json!({"request_id": request_id, "command": command, "ok": false, "error": e.to_string()})
        }
    }
}

/// Matches a track's evidence against the gallery.
fn evaluate(gallery: &Gallery, evidence: &[f32], threshold: f32) -> Evaluation {
    let (decision, candidates) = gallery.identify(evidence, threshold);
    let best = candidates.first();
    let verdict = match (decision, best) {
        (MatchDecision::Match, Some(c)) => Verdict::Recognized {
            person_id: c.person_id,
            name: c.name.clone(),
        },
        _ => Verdict::Unknown,
    };
    Evaluation {
        verdict,
        similarity: best.map(|c| c.similarity),
        threshold,
    }
}

fn emit(
    _cfg: &Config,
    publisher: &Publisher,
    metrics: &Metrics,
    cameras: &[CameraEntry],
    camera: &str,
    d: &Decision,
    captured: Option<Instant>,
) -> Option<f64> {
    let (kind, person) = match &d.evaluation.verdict {
        Verdict::Recognized { person_id, name } => (
            EventKind::Recognized,
            Some(PersonRef {
                id: *person_id,
                name: name.clone(),
            }),
        ),
        Verdict::Unknown => (EventKind::Unknown, None),
        Verdict::Spoof => (EventKind::Spoof, None),
    };
    let kind_name = match kind {
        EventKind::Recognized => "recognized",
        EventKind::Unknown => "unknown",
        EventKind::Spoof => "spoof",
    };
    let event = Event {
        event_id: uuid::Uuid::new_v4(),
        kind,
        camera: camera.to_string(),
        track_id: d.track_id,
        timestamp: crate::gallery::store::now_rfc3339(),
        pts_ms: d.pts_ms,
        person,
        similarity: d.evaluation.similarity,
        threshold: d.evaluation.threshold,
        liveness: None,
        bbox: d.bbox,
        frames: d.frames,
    };
    match publisher.publish_event(&event) {
        Ok(()) => {
            metrics
                .events
                .get_or_create(&EventLabel {
                    camera: camera.to_string(),
                    kind: kind_name.to_string(),
                })
                .inc();
            if let Some(c) = cameras.iter().find(|c| c.name == camera) {
                c.events.fetch_add(1, Ordering::Relaxed);
            }
            let latency = captured.map(|at| at.elapsed().as_secs_f64());
            if let Some(seconds) = latency {
                metrics.frame_to_publish.observe(seconds);
            }
            tracing::info!(camera, track = d.track_id, kind = kind_name, person = ?event.person.as_ref().map(|p| &p.name), similarity = ?event.similarity, "event");
            latency
        }
        Err(e) => {
            tracing::error!(camera, error = %e, "event not stored");
            metrics.error("outbox");
            None
        }
    }
}
