//! Recognition: one worker thread that owns the models, the gallery and every camera's
//! tracker. It waits on a single select over its inputs — frames of every camera, remote
//! commands, the gallery refresh timer, a heartbeat and shutdown — and takes frames through
//! the stages of [`stages`] in batches (at most one frame per camera per batch).
//!
//! ONNX Runtime sessions are used from this one thread (`Session::run` takes `&mut self`);
//! inference is blocking work, so the worker is a plain thread, not an async task.

mod commands;
mod liveness;
mod offline;
mod publish;
mod stages;

pub use offline::{TrackLiveness, liveness_of_video};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, tick};

use crate::config::Config;
use crate::engine::FaceEngine;
use crate::error::Error;
use crate::events::{Command, Publisher};
use crate::gallery::Gallery;
use crate::inference::InferenceConfig;
use crate::telemetry::events::{BatchProcessed, GalleryRefreshFailed, GalleryRefreshed, LivenessObserved};
use crate::telemetry::{InternalEvent, Telemetry};
use crate::video::{Frame, FrameReceiver};
use stages::{Observed, Trackers};

/// How often an idle worker still shows it is alive (the systemd watchdog reads it).
const HEARTBEAT: Duration = Duration::from_millis(250);

/// Most frame-to-publish and processing samples kept for the run report (8 MB each).
const MAX_LATENCY_SAMPLES: usize = 1_000_000;

/// The worker's state as the rest of the daemon sees it.
pub struct WorkerHealth {
    pub models_loaded: AtomicBool,
    pub gallery_open: AtomicBool,
    /// The models run on CUDA (set with `models_loaded`).
    pub on_cuda: AtomicBool,
    /// What the models run on, once loaded; why loading failed, when it did.
    pub models_note: std::sync::Mutex<String>,
    /// The gallery's file and counts, kept up to date.
    pub gallery_note: std::sync::Mutex<String>,
    /// When the worker last went round its loop, in ms since `epoch`.
    beat_ms: AtomicU64,
    epoch: Instant,
}

impl Default for WorkerHealth {
    fn default() -> Self {
        WorkerHealth {
            models_loaded: AtomicBool::new(false),
            gallery_open: AtomicBool::new(false),
            on_cuda: AtomicBool::new(false),
            models_note: std::sync::Mutex::new("loading".into()),
            gallery_note: std::sync::Mutex::new("opening".into()),
            beat_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl WorkerHealth {
    /// Models loaded and gallery open: frames can be processed.
    pub fn loaded(&self) -> bool {
        self.models_loaded.load(Ordering::Relaxed) && self.gallery_open.load(Ordering::Relaxed)
    }

    fn beat(&self) {
        self.beat_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn note(slot: &std::sync::Mutex<String>, text: String) {
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }

    /// A copy of a note.
    pub fn read(slot: &std::sync::Mutex<String>) -> String {
        slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Time since the worker last went round its loop.
    pub fn since_beat(&self) -> Duration {
        self.epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(self.beat_ms.load(Ordering::Relaxed)))
    }
}

/// Per-frame timings kept for `facegate run --report` (only when asked for: they grow with
/// the run, up to [`MAX_LATENCY_SAMPLES`]).
#[derive(Debug, Default)]
pub struct LatencySamples {
    /// From the first frame taken from a queue to the last batch done.
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// Per frame: from leaving its queue to its decisions handed to the publisher.
    pub processing_ms: Vec<f64>,
    /// Per event: from its frame leaving the decoder to the event stored in the outbox.
    pub frame_to_publish_ms: Vec<f64>,
    /// The liveness stage (evidence, CNN readings, verdicts) over the run.
    pub liveness: LivenessCost,
}

/// Time spent on liveness over a run and what it covered.
#[derive(Debug, Default, Clone, Copy)]
pub struct LivenessCost {
    pub seconds: f64,
    /// Detected frames that went through the stage.
    pub frames: u64,
    /// Face observations (one face in one frame).
    pub faces: u64,
    pub tracks: u64,
}

impl LivenessCost {
    fn add(&mut self, frames: usize, work: liveness::LivenessWork, seconds: f64, telemetry: &Telemetry) {
        self.seconds += seconds;
        self.frames += frames as u64;
        self.faces += work.faces as u64;
        self.tracks += work.new_tracks as u64;
        LivenessObserved {
            faces: work.faces,
            seconds,
        }
        .emit(telemetry);
    }
}

impl LatencySamples {
    fn push(list: &mut Vec<f64>, ms: f64) {
        if list.len() < MAX_LATENCY_SAMPLES {
            list.push(ms);
        }
    }
}

/// What the worker listens to.
pub struct WorkerInputs {
    /// The recognition queue of every camera.
    pub frames: Vec<FrameReceiver>,
    /// Remote commands; `None` when there are none (one-shot runs).
    pub commands: Option<Receiver<Command>>,
    /// Disconnected (its sender dropped) when the worker is to finish: it then processes
    /// the frames still queued and publishes every open track's final decision.
    pub shutdown: Receiver<()>,
}

/// Everything the worker shares with the rest of the daemon.
pub struct WorkerContext {
    pub cfg: Arc<Config>,
    pub publisher: Publisher,
    pub telemetry: Arc<Telemetry>,
    pub health: Arc<WorkerHealth>,
    /// Keep [`LatencySamples`] for a run report.
    pub keep_latencies: bool,
}

/// Starts the worker thread: it loads the models and opens the gallery (reporting both in
/// `health`), then serves its inputs until shutdown.
pub fn spawn(
    ctx: WorkerContext,
    inputs: WorkerInputs,
) -> std::io::Result<std::thread::JoinHandle<Result<LatencySamples, Error>>> {
    std::thread::Builder::new().name("recognition".into()).spawn(move || {
        let health = ctx.health.clone();
        let worker = Worker::load(ctx).inspect_err(|e| {
            let slot = if health.models_loaded.load(Ordering::Relaxed) {
                &health.gallery_note
            } else {
                &health.models_note
            };
            WorkerHealth::note(slot, format!("failed: {e}"));
        })?;
        worker.run(inputs)
    })
}

/// The frame size the detector is warmed up at: 16:9, the shape of most cameras (any
/// 16:9 frame gives the detector the same input size). Frames of another shape pay the
/// provider's first-call cost once, on their first frame.
const WARM_UP_FRAME: (u32, u32) = (1280, 720);

/// Most faces of one batch the liveness networks are warmed up for.
const WARM_UP_FACES: usize = 8;

/// Runs every model once in the batch sizes the worker will give it, before the cameras
/// start: the first call of each input shape costs the provider 8–15 ms more than the
/// next (OpenVINO on a 2-core Xeon), which the first faces at the door would otherwise
/// wait for.
fn warm_up(
    engine: &mut FaceEngine,
    cnn: Option<&mut crate::vision::liveness::cnn::PassiveCnn>,
    recognition: &crate::config::RecognitionConfig,
) -> Result<(), Error> {
    let started = Instant::now();
    engine.warm_up(WARM_UP_FRAME, recognition.max_batch_frames)?;
    if let Some(cnn) = cnn {
        cnn.warm_up(WARM_UP_FACES)?;
    }
    tracing::info!(ms = started.elapsed().as_millis() as u64, "models warmed up");
    Ok(())
}

/// One input the select woke up for.
enum Input {
    /// A frame and the index of its camera.
    Frame(usize, Frame),
    Command(Command),
    Refresh,
    Heartbeat,
    /// A source is gone for good: camera `Some(i)`, or the command channel.
    Closed(Option<usize>),
    Shutdown,
}

struct Worker {
    ctx: WorkerContext,
    engine: FaceEngine,
    /// The passive liveness CNN, when liveness is on.
    cnn: Option<crate::vision::liveness::cnn::PassiveCnn>,
    gallery: Gallery,
    trackers: Trackers,
    latencies: LatencySamples,
}

impl Worker {
    fn load(ctx: WorkerContext) -> Result<Worker, Error> {
        // The daemon says once, at info, which device runs the models and why.
        let inference = InferenceConfig {
            announce_device: true,
            ..ctx.cfg.inference.clone()
        };
        let mut engine = FaceEngine::load(&ctx.cfg.models, &inference, &ctx.cfg.detector)?;
        let mut cnn = if ctx.cfg.liveness.enabled() {
            Some(engine.passive_cnn(&ctx.cfg.models)?)
        } else {
            None
        };
        warm_up(&mut engine, cnn.as_mut(), &ctx.cfg.recognition)?;
        let on = format!("detector and embedder on {}", engine.provider().as_str());
        tracing::info!(provider = engine.provider().as_str(), "models loaded");
        WorkerHealth::note(&ctx.health.models_note, on);
        let on_cuda = engine.provider() == crate::inference::Provider::Cuda;
        ctx.health.on_cuda.store(on_cuda, Ordering::Relaxed);
        ctx.health.models_loaded.store(true, Ordering::Relaxed);
        let gallery = Gallery::open_or_create(&ctx.cfg.gallery, engine.model_id())?;
        ctx.health.gallery_open.store(true, Ordering::Relaxed);
        let trackers = Trackers::new(ctx.cfg.tracker.clone(), ctx.cfg.liveness.clone());
        tracing::info!(mode = ctx.cfg.liveness.mode.as_str(), "liveness");
        let worker = Worker {
            ctx,
            engine,
            cnn,
            gallery,
            trackers,
            latencies: LatencySamples::default(),
        };
        worker.report_gallery();
        let (persons, templates) = (worker.gallery.person_count(), worker.gallery.index().len());
        let path = worker.ctx.cfg.gallery.path.display().to_string();
        if persons == 0 {
            tracing::warn!(gallery = %path, "nobody is enrolled: every face will be unknown (facegate enroll)");
        } else {
            tracing::info!(gallery = %path, persons, templates, "gallery open");
        }
        Ok(worker)
    }

    fn run(mut self, mut inputs: WorkerInputs) -> Result<LatencySamples, Error> {
        let refresh = tick(Duration::from_millis(self.ctx.cfg.gallery.refresh_interval_ms));
        let heartbeat = tick(HEARTBEAT);
        loop {
            self.ctx.health.beat();
            match next_input(&inputs, &refresh, &heartbeat) {
                Input::Frame(camera, first) => {
                    let r = &self.ctx.cfg.recognition;
                    let wait = Duration::from_millis(r.batch_wait_ms);
                    let batch = gather_batch(camera, first, &inputs.frames, r.max_batch_frames, wait);
                    self.process(batch);
                }
                Input::Command(command) => self.command(command),
                Input::Refresh => self.refresh_gallery(),
                Input::Heartbeat => {}
                Input::Closed(Some(camera)) => {
                    inputs.frames.remove(camera);
                }
                Input::Closed(None) => inputs.commands = None,
                Input::Shutdown => break,
            }
        }
        self.drain(&inputs.frames);
        Ok(self.latencies)
    }

    /// Takes one batch through every stage and publishes its decisions.
    fn process(&mut self, frames: Vec<Frame>) {
        let started = Instant::now();
        self.latencies.first.get_or_insert(started);
        let n = frames.len();
        let cfg = self.ctx.cfg.clone();
        let batch: Vec<Observed> = stages::detect(&mut self.engine, frames, &self.ctx.telemetry);
        let tracked = stages::track(&mut self.trackers, &batch, &cfg.gallery.quality);
        let liveness_started = Instant::now();
        let work = liveness::observe(
            &mut self.trackers,
            &batch,
            &tracked,
            self.cnn.as_mut(),
            &self.ctx.telemetry,
        );
        let mut liveness_s = liveness_started.elapsed().as_secs_f64();
        let mut decisions = match stages::embed(&mut self.engine, &batch, &tracked.to_embed, &self.ctx.telemetry) {
            Ok(embeddings) => stages::decide(
                &mut self.trackers,
                &self.gallery,
                cfg.gallery.threshold,
                &batch,
                &tracked.to_embed,
                embeddings,
            ),
            Err(e) => {
                publish::embedding_failed(&batch, &tracked.to_embed, &e, &self.ctx.telemetry);
                Vec::new()
            }
        };
        let redecide_started = Instant::now();
        decisions.extend(liveness::redecide(&mut self.trackers, &batch, &tracked));
        liveness_s += redecide_started.elapsed().as_secs_f64();
        if self.trackers.liveness().enabled() {
            self.latencies.liveness.add(n, work, liveness_s, &self.ctx.telemetry);
        }
        decisions.extend(
            tracked
                .ended
                .iter()
                .filter_map(|(fi, track)| crate::track::Tracker::finish(track).map(|d| (*fi, d))),
        );
        decisions.sort_by_key(|(fi, _)| *fi);
        for (fi, decision) in &decisions {
            let frame = &batch[*fi].frame;
            let latency = publish::decision(&self.ctx, &frame.camera, decision, Some(frame.captured));
            if let (true, Some(s)) = (self.ctx.keep_latencies, latency) {
                LatencySamples::push(&mut self.latencies.frame_to_publish_ms, s * 1e3);
            }
        }
        let done = Instant::now();
        self.latencies.last = Some(done);
        if self.ctx.keep_latencies {
            let ms = done.duration_since(started).as_secs_f64() * 1e3;
            for _ in 0..n {
                LatencySamples::push(&mut self.latencies.processing_ms, ms);
            }
        }
        BatchProcessed {
            frames: n,
            seconds: done.duration_since(started).as_secs_f64(),
        }
        .emit(&self.ctx.telemetry);
    }

    /// After shutdown: the frames still queued, then every open track's final decision.
    fn drain(&mut self, cameras: &[FrameReceiver]) {
        loop {
            let batch: Vec<Frame> = cameras.iter().filter_map(|c| c.try_recv().ok()).collect();
            if batch.is_empty() {
                break;
            }
            self.process(batch);
        }
        for (camera, track) in self.trackers.drain() {
            if let Some(decision) = crate::track::Tracker::finish(&track) {
                publish::decision(&self.ctx, &camera, &decision, None);
            }
        }
    }

    fn refresh_gallery(&mut self) {
        match self.gallery.refresh() {
            Ok(true) => self.report_gallery(),
            Ok(false) => {}
            Err(e) => GalleryRefreshFailed { error: &e }.emit(&self.ctx.telemetry),
        }
    }

    fn report_gallery(&self) {
        let (persons, templates) = (self.gallery.person_count(), self.gallery.index().len());
        let note = format!(
            "{persons} people, {templates} templates in {}",
            self.ctx.cfg.gallery.path.display()
        );
        WorkerHealth::note(&self.ctx.health.gallery_note, note);
        GalleryRefreshed { persons, templates }.emit(&self.ctx.telemetry);
    }

    fn command(&mut self, command: Command) {
        let result = commands::handle(&mut self.engine, &mut self.gallery, &self.ctx, command);
        self.ctx.publisher.command_result(result);
        self.report_gallery();
    }
}

/// Waits for the next input of any source.
fn next_input(inputs: &WorkerInputs, refresh: &Receiver<Instant>, heartbeat: &Receiver<Instant>) -> Input {
    let mut sel = Select::new();
    let first_camera = sel.recv(&inputs.shutdown);
    debug_assert_eq!(first_camera, 0);
    for camera in &inputs.frames {
        sel.recv(camera.receiver());
    }
    let refresh_op = sel.recv(refresh);
    let heartbeat_op = sel.recv(heartbeat);
    let command_op = inputs.commands.as_ref().map(|c| sel.recv(c));
    let op = sel.select();
    let index = op.index();
    if index == 0 {
        let _ = op.recv(&inputs.shutdown);
        return Input::Shutdown;
    }
    if index <= inputs.frames.len() {
        let camera = index - 1;
        return match op.recv(inputs.frames[camera].receiver()) {
            Ok(frame) => Input::Frame(camera, frame),
            Err(_) => Input::Closed(Some(camera)),
        };
    }
    if index == refresh_op {
        let _ = op.recv(refresh);
        return Input::Refresh;
    }
    if index == heartbeat_op {
        let _ = op.recv(heartbeat);
        return Input::Heartbeat;
    }
    match (command_op, &inputs.commands) {
        (Some(i), Some(commands)) if i == index => match op.recv(commands) {
            Ok(command) => Input::Command(command),
            Err(_) => Input::Closed(None),
        },
        // Unreachable: every registered operation is handled above.
        _ => Input::Heartbeat,
    }
}

/// The batch for `first` (from camera `from`): it, plus at most one waiting frame of each
/// other camera, up to `max` frames. Cameras after `from` go first, so that no camera
/// waits behind the others when the worker cannot keep up.
fn gather_batch(from: usize, first: Frame, cameras: &[FrameReceiver], max: usize, wait: Duration) -> Vec<Frame> {
    let n = cameras.len();
    let max = max.max(1);
    let mut batch = vec![first];
    let mut taken = vec![false; n];
    taken[from] = true;
    let deadline = Instant::now() + wait;
    loop {
        for i in (1..n).map(|k| (from + k) % n) {
            if batch.len() >= max || taken[i] {
                continue;
            }
            if let Ok(frame) = cameras[i].try_recv() {
                batch.push(frame);
                taken[i] = true;
            }
        }
        let pending: Vec<usize> = (0..n).filter(|i| !taken[*i]).collect();
        if batch.len() >= max || pending.is_empty() || wait.is_zero() {
            return batch;
        }
        // Wait, until the deadline, for a frame of a camera not in the batch yet.
        let mut sel = Select::new();
        for &i in &pending {
            sel.recv(cameras[i].receiver());
        }
        if sel.ready_deadline(deadline).is_err() {
            return batch;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::{ConsumerSpec, FrameBus, QueuePolicy};
    use tokio_util::sync::CancellationToken;

    fn frame(camera: &str, seq: u64) -> Frame {
        Frame {
            camera: Arc::from(camera),
            seq,
            pts_ms: seq as i64 * 40,
            image: Arc::new(image::RgbImage::new(2, 2)),
            captured: Instant::now(),
        }
    }

    /// Three cameras' buses with a recognition consumer each.
    fn cameras() -> (Vec<Arc<FrameBus>>, Vec<FrameReceiver>) {
        let buses: Vec<_> = ["a", "b", "c"].iter().map(|c| FrameBus::new(c)).collect();
        let rx = buses
            .iter()
            .map(|b| b.subscribe(ConsumerSpec::new("recognition", 4, QueuePolicy::DropOldest, 0.0)))
            .collect();
        (buses, rx)
    }

    fn send(bus: &FrameBus, seq: u64) {
        let admitted = bus.admit(seq * 40_000_000);
        bus.deliver(admitted, frame(bus.camera(), seq), true, &CancellationToken::new())
            .unwrap();
    }

    fn cams(batch: &[Frame]) -> Vec<String> {
        batch.iter().map(|f| f.camera.to_string()).collect()
    }

    #[test]
    fn a_batch_takes_one_queued_frame_per_other_camera_up_to_the_maximum() {
        let (buses, rx) = cameras();
        send(&buses[1], 0);
        send(&buses[1], 1);
        send(&buses[2], 0);
        let batch = gather_batch(0, frame("a", 0), &rx, 4, Duration::ZERO);
        assert_eq!(cams(&batch), ["a", "b", "c"], "one frame per camera");
        assert_eq!(rx[1].len(), 1, "b's second frame waits for the next batch");
        send(&buses[2], 1);
        let batch = gather_batch(0, frame("a", 1), &rx, 2, Duration::ZERO);
        assert_eq!(cams(&batch), ["a", "b"], "at most max_batch_frames");
    }

    #[test]
    fn with_a_wait_the_batch_takes_frames_that_arrive_before_the_deadline() {
        let (buses, rx) = cameras();
        let late = buses[2].clone();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            send(&late, 0);
        });
        // Without a wait the late frame is not there yet; with one it joins the batch.
        // (The guard of 10 s only bounds a failing run.)
        let batch = gather_batch(0, frame("a", 0), &rx, 2, Duration::from_secs(10));
        sender.join().unwrap();
        assert_eq!(cams(&batch), ["a", "c"]);
        // Nothing comes: the wait ends at its deadline with what there is.
        let batch = gather_batch(0, frame("a", 1), &rx, 3, Duration::from_millis(30));
        assert_eq!(cams(&batch), ["a"]);
    }
}
