//! Cameras end to end with real GStreamer: a video generated from the sample photos is
//! replayed from file and served over RTSP by gst-rtsp-server in this process.
//! Missing GStreamer elements or sample photos fail these tests; they never skip.

mod common;

use common::rtsp;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use facegate::video::{
    CameraConfig, CameraStats, CameraStatus, CameraUpdate, ConsumerCounters, ConsumerSpec, DemoVideoInfo,
    DemoVideoOptions, Frame, FrameBus, FrameReceiver, QueuePolicy, make_demo_video, spawn_camera,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;

fn samples() -> Vec<PathBuf> {
    let dir = std::env::var_os("FACEGATE_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/prepared"))
        .join("samples");
    let files: Vec<PathBuf> = (1..=6).map(|i| dir.join(format!("sample{i}.jpg"))).collect();
    for f in &files {
        assert!(f.is_file(), "{} is missing: run models/fetch first", f.display());
    }
    files
}

/// The test video, made once per test binary: 640×360 at 25 fps, 4 segments of 40 frames
/// with 5 black frames between them (175 frames, 7 s).
fn video() -> &'static DemoVideoInfo {
    static VIDEO: OnceLock<DemoVideoInfo> = OnceLock::new();
    VIDEO.get_or_init(|| {
        facegate::video::init().expect("GStreamer must be installed for these tests");
        let dir = std::env::temp_dir().join(format!("facegate-video-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let opts = DemoVideoOptions {
            width: WIDTH,
            height: HEIGHT,
            fps: 25,
            segment_frames: 40,
            gap_frames: 5,
            segments: 4,
            bitrate_kbps: 1500,
            ..Default::default()
        };
        let started = Instant::now();
        let info = make_demo_video(&samples(), &dir.join("demo.mp4"), &opts).expect("demo video");
        eprintln!("demo video: {} frames in {:?}", info.frames, started.elapsed());
        assert_eq!(info.frames, 175);
        assert_eq!(info.segments.len(), 4);
        assert_eq!((info.segments[1].first_frame, info.segments[1].last_frame), (45, 84));
        assert!(info.path.metadata().unwrap().len() > 10_000, "video suspiciously small");
        info
    })
}

/// A running camera, its bus with a recognition-like consumer, and its updates.
struct Camera {
    bus: Arc<FrameBus>,
    frames: Option<FrameReceiver>,
    /// The counters of `frames`.
    counters: ConsumerCounters,
    updates: mpsc::UnboundedReceiver<CameraUpdate>,
    stats: Arc<CameraStats>,
    token: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The consumer recognition is: it waits for room on replays, at the camera's detect_fps.
fn recognition(capacity: usize, fps: f32) -> ConsumerSpec {
    ConsumerSpec::new("recognition", capacity, QueuePolicy::Block, fps)
}

fn start(cfg: CameraConfig, capacity: usize) -> Camera {
    start_with(cfg, capacity, |_| ()).0
}

/// Starts a camera whose bus has the recognition consumer and whatever `more` subscribes,
/// all before the first frame.
fn start_with<T>(cfg: CameraConfig, capacity: usize, more: impl FnOnce(&FrameBus) -> T) -> (Camera, T) {
    let bus = FrameBus::new(&cfg.name);
    let spec = recognition(capacity, cfg.detect_fps);
    let counters = spec.counters.clone();
    let frames = bus.subscribe(spec);
    let extra = more(&bus);
    let (utx, urx) = mpsc::unbounded_channel();
    let stats = Arc::new(CameraStats::default());
    let token = CancellationToken::new();
    let thread = spawn_camera(cfg, bus.clone(), utx, stats.clone(), token.clone()).expect("spawn camera");
    let cam = Camera {
        bus,
        frames: Some(frames),
        counters,
        updates: urx,
        stats,
        token,
        thread: Some(thread),
    };
    (cam, extra)
}

/// Receives on a worker thread, off the async runtime.
async fn recv(rx: FrameReceiver, within: Duration) -> (FrameReceiver, Result<Frame, RecvTimeoutError>) {
    tokio::task::spawn_blocking(move || {
        let r = rx.recv_timeout(within);
        (rx, r)
    })
    .await
    .unwrap()
}

/// Takes every frame until the camera closes the bus and returns their (seq, pts);
/// `each` looks at every frame (the how-many-th) and may take its time.
fn collect(rx: FrameReceiver, within: Duration, mut each: impl FnMut(&Frame, usize)) -> Vec<(u64, i64)> {
    let deadline = Instant::now() + within;
    let mut frames = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(f) => {
                frames.push((f.seq, f.pts_ms));
                each(&f, frames.len());
            }
            Err(RecvTimeoutError::Disconnected) => return frames,
            Err(RecvTimeoutError::Timeout) => panic!("{}: the camera did not stop within {within:?}", rx.name()),
        }
    }
}

impl Camera {
    async fn status(&mut self, within: Duration, what: &str) -> CameraStatus {
        match tokio::time::timeout(within, self.updates.recv()).await {
            Ok(Some(u)) => u.status,
            Ok(None) => panic!("{what}: the camera closed its updates channel"),
            Err(_) => panic!("{what}: no status change within {within:?}"),
        }
    }

    async fn frame(&mut self, within: Duration) -> Frame {
        let rx = self.frames.take().expect("frames are being drained");
        let (rx, f) = recv(rx, within).await;
        self.frames = Some(rx);
        f.unwrap_or_else(|e| panic!("no frame within {within:?}: {e}"))
    }

    /// Moves the frames receiver onto a thread that keeps every frame's (seq, pts) until
    /// the camera stops.
    fn drain(&mut self) -> Arc<Mutex<Vec<(u64, i64)>>> {
        let rx = self.frames.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = seen.clone();
        std::thread::spawn(move || {
            while let Ok(f) = rx.recv_timeout(Duration::from_secs(600)) {
                out.lock().unwrap().push((f.seq, f.pts_ms));
            }
        });
        seen
    }

    /// Waits for the camera thread, which has stopped or is stopping.
    async fn join(&mut self) {
        let thread = self.thread.take().unwrap();
        tokio::task::spawn_blocking(move || thread.join().expect("camera thread panicked"))
            .await
            .unwrap();
    }

    /// Cancels and waits for the thread; returns how long it took.
    async fn stop(&mut self) -> Duration {
        let t = Instant::now();
        self.token.cancel();
        self.join().await;
        t.elapsed()
    }

    /// Every status change reported so far.
    fn statuses(&mut self) -> Vec<CameraStatus> {
        std::iter::from_fn(|| self.updates.try_recv().ok())
            .map(|u| u.status)
            .collect()
    }
}

fn replay_cfg(name: &str, detect_fps: f32) -> CameraConfig {
    let mut cfg = CameraConfig::new(name, video().path.to_str().unwrap());
    cfg.realtime = false;
    cfg.exit_on_eos = true;
    cfg.detect_fps = detect_fps;
    cfg
}

/// What one replay of the video handed to its recognition consumer.
struct Replay {
    frames: Vec<(u64, i64)>,
    statuses: Vec<CameraStatus>,
    stats: Arc<CameraStats>,
    counters: ConsumerCounters,
}

/// Replays the video to its end; the consumer pauses now and then when `slow`.
async fn replay(cfg: CameraConfig, capacity: usize, slow: bool) -> Replay {
    let mut cam = start(cfg, capacity);
    let rx = cam.frames.take().unwrap();
    let frames = tokio::task::spawn_blocking(move || {
        collect(rx, Duration::from_secs(120), |f, n| {
            assert_eq!((f.image.width(), f.image.height()), (WIDTH, HEIGHT));
            assert_eq!(&*f.camera, "replay");
            if slow && n % 7 == 0 {
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    })
    .await
    .unwrap();
    // The bus is closed once the camera has stopped: its statuses are all sent.
    cam.join().await;
    assert_eq!(cam.bus.consumer_count(), 0, "a dropped receiver leaves the bus");
    Replay {
        frames,
        statuses: cam.statuses(),
        stats: cam.stats.clone(),
        counters: cam.counters.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_is_deterministic_and_finishes() {
    let info = video();
    let t = Instant::now();
    let a = replay(replay_cfg("replay", 10.0), 2, false).await;
    eprintln!("replay at 10 fps: {} frames in {:?}", a.frames.len(), t.elapsed());
    assert_eq!(a.statuses, [CameraStatus::Online, CameraStatus::Finished]);
    // 7 s decimated to 10 fps.
    assert!((68..=72).contains(&a.frames.len()), "{} frames", a.frames.len());
    assert!(
        a.frames.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 >= w[0].1 + 80),
        "decimation: {:?}",
        a.frames
    );
    assert_eq!(a.stats.frames_decoded.get(), info.frames);
    assert_eq!(a.counters.delivered.get(), a.frames.len() as u64);
    assert_eq!(a.counters.dropped.get(), 0);

    // A slow consumer gets exactly the same frames.
    let b = replay(replay_cfg("replay", 10.0), 2, true).await;
    assert_eq!(a.frames, b.frames, "two replays of the same file differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_at_zero_fps_hands_on_every_frame() {
    let info = video();
    let r = replay(replay_cfg("replay", 0.0), 2, true).await;
    assert_eq!(r.statuses, [CameraStatus::Online, CameraStatus::Finished]);
    let frames = r.frames;
    assert_eq!(frames.len() as u64, info.frames);
    let seqs: Vec<u64> = frames.iter().map(|f| f.0).collect();
    assert_eq!(seqs, (0..info.frames).collect::<Vec<_>>());
    // 25 fps: 40 ms apart.
    assert!(
        frames.iter().enumerate().all(|(i, f)| (f.1 - i as i64 * 40).abs() <= 1),
        "{frames:?}"
    );
}

/// A replay's recognition consumer sees the same frames whether or not a slow, leaky
/// consumer shares the bus; that one drops the oldest of what it admitted, and accounts
/// for every frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_on_a_replay_changes_nothing_for_recognition() {
    let info = video();
    let alone = replay(replay_cfg("replay", 10.0), 8, false).await;

    let slow_spec = ConsumerSpec::new("style", 2, QueuePolicy::DropOldest, 0.0);
    let slow_counters = slow_spec.counters.clone();
    let (mut cam, slow_rx) = start_with(replay_cfg("replay", 10.0), 8, |bus| bus.subscribe(slow_spec));
    let slow = std::thread::spawn(move || {
        collect(slow_rx, Duration::from_secs(120), |_, _| {
            std::thread::sleep(Duration::from_millis(50))
        })
    });
    let rx = cam.frames.take().unwrap();
    let shared = tokio::task::spawn_blocking(move || collect(rx, Duration::from_secs(120), |_, _| ()))
        .await
        .unwrap();
    cam.join().await;
    let slow_frames = tokio::task::spawn_blocking(move || slow.join().expect("slow consumer"))
        .await
        .unwrap();
    assert_eq!(cam.statuses(), [CameraStatus::Online, CameraStatus::Finished]);
    assert_eq!(shared, alone.frames, "the slow consumer changed what recognition saw");
    assert_eq!(cam.counters.dropped.get(), 0);

    // The slow consumer admits every frame: each was delivered or dropped.
    let (delivered, dropped) = (slow_counters.delivered.get(), slow_counters.dropped.get());
    eprintln!("slow consumer: {delivered} delivered, {dropped} dropped");
    assert!(dropped > 0, "the slow consumer dropped nothing");
    assert_eq!(delivered, slow_frames.len() as u64);
    assert_eq!(delivered + dropped, info.frames);
    assert_eq!(cam.stats.frames_decoded.get(), info.frames);
    assert!(slow_frames.windows(2).all(|w| w[1].0 > w[0].0), "out of order");
    // Dropping the oldest keeps the freshest: the last frame always gets through.
    assert_eq!(slow_frames.last().map(|f| f.0), Some(info.frames - 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_replay_continues_and_stops_promptly() {
    let info = video();
    let mut cfg = replay_cfg("replay", 0.0);
    cfg.exit_on_eos = false;
    cfg.looping = true;
    let mut cam = start(cfg, 2);
    assert_eq!(
        cam.status(Duration::from_secs(20), "online").await,
        CameraStatus::Online
    );
    let mut last: Option<Frame> = None;
    for i in 0..info.frames + 40 {
        let f = cam.frame(Duration::from_secs(20)).await;
        if let Some(prev) = &last {
            assert_eq!(f.seq, prev.seq + 1, "frame {i}");
            assert!(
                f.pts_ms > prev.pts_ms,
                "pts went back at frame {i}: {} after {}",
                f.pts_ms,
                prev.pts_ms
            );
        }
        last = Some(f);
    }
    // The streaming thread now waits on the full queue: shutdown must still be prompt.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let took = cam.stop().await;
    assert!(took < Duration::from_millis(1500), "shutdown took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_file_is_paced_and_drops_when_the_consumer_stalls() {
    let mut cfg = CameraConfig::new("paced", video().path.to_str().unwrap());
    cfg.detect_fps = 5.0;
    cfg.looping = true;
    let mut cam = start(cfg, 1);
    assert_eq!(
        cam.status(Duration::from_secs(20), "online").await,
        CameraStatus::Online
    );
    // Paced at the file's rate and decimated to 5 fps: about 10 frames in 2 s.
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < Duration::from_secs(2) {
        cam.frame(Duration::from_secs(5)).await;
        n += 1;
    }
    assert!((7..=14).contains(&n), "{n} frames in 2 s at detect_fps 5");
    // Nobody reads for 1.5 s: the camera drops instead of blocking, and keeps going.
    let dropped = cam.counters.dropped.get();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(cam.counters.dropped.get() >= dropped + 4, "no drops while stalled");
    cam.frame(Duration::from_secs(2)).await;
    cam.frame(Duration::from_secs(2)).await;
    assert_eq!(cam.stats.errors.get(), 0);
    let took = cam.stop().await;
    assert!(took < Duration::from_millis(1500), "shutdown took {took:?}");
}

/// On a paced source a consumer that never reads keeps only the freshest frames, counts
/// the others dropped, and holds back nobody: not even with `Block`, which waits on
/// replays only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_on_a_paced_source_drops_its_oldest_and_blocks_nobody() {
    let mut cfg = CameraConfig::new("paced", video().path.to_str().unwrap());
    cfg.detect_fps = 0.0;
    cfg.looping = true;
    let stalled_spec = ConsumerSpec::new("stalled", 3, QueuePolicy::Block, 0.0);
    let stalled_counters = stalled_spec.counters.clone();
    let (mut cam, stalled) = start_with(cfg, 4, |bus| bus.subscribe(stalled_spec));
    assert_eq!(
        cam.status(Duration::from_secs(20), "online").await,
        CameraStatus::Online
    );
    let mut seen = Vec::new();
    while seen.len() < 50 {
        seen.push(cam.frame(Duration::from_secs(20)).await.seq);
    }
    assert!(seen.windows(2).all(|w| w[1] > w[0]), "recognition: out of order");
    assert_eq!(cam.bus.queue_depth("stalled"), Some(3));
    assert!(
        stalled_counters.dropped.get() >= 47,
        "the stalled consumer dropped nothing"
    );
    cam.stop().await;
    assert_eq!(cam.stats.errors.get(), 0);

    // What is left is the last frames decoded; everything before was dropped.
    let decoded = cam.stats.frames_decoded.get();
    let left: Vec<u64> = std::iter::from_fn(|| stalled.try_recv().ok()).map(|f| f.seq).collect();
    assert_eq!(left, [decoded - 3, decoded - 2, decoded - 1]);
    assert_eq!(stalled_counters.dropped.get(), decoded - 3);
    assert_eq!(stalled_counters.delivered.get(), 3);
    assert!(seen.iter().all(|&s| s < decoded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_camera_goes_offline_and_recovers() {
    let info = video();
    let server = rtsp::serve(&info.path, 0).expect("RTSP server");
    let port = server.port();
    let mut cfg = CameraConfig::new("rtsp", server.url());
    cfg.frame_timeout_ms = 2000;
    cfg.backoff_initial_ms = 200;
    cfg.backoff_max_ms = 1000;
    let mut cam = start(cfg, 4);

    let t = Instant::now();
    assert_eq!(
        cam.status(Duration::from_secs(15), "first online").await,
        CameraStatus::Online
    );
    eprintln!("rtsp online after {:?}", t.elapsed());
    let f = cam.frame(Duration::from_secs(5)).await;
    assert_eq!((f.image.width(), f.image.height()), (WIDTH, HEIGHT));
    let seen = cam.drain();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = seen.lock().unwrap().len();
    assert!(before >= 3, "only {before} frames in 0.8 s");

    // Server gone mid-stream: offline within the frame timeout plus slack.
    let t = Instant::now();
    server.stop();
    match cam.status(Duration::from_millis(2000 + 3000), "offline").await {
        CameraStatus::Offline { reason } => eprintln!("offline after {:?}: {reason}", t.elapsed()),
        other => panic!("expected Offline, got {other:?}"),
    }
    // Let a few reconnects fail.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let errors = cam.stats.errors.get();
    assert!(errors >= 2, "{errors} errors: the camera should have retried");

    let server = rtsp::serve(&info.path, port).expect("RTSP server again on the same port");
    let t = Instant::now();
    assert_eq!(
        cam.status(Duration::from_secs(15), "online again").await,
        CameraStatus::Online
    );
    eprintln!("rtsp online again after {:?}", t.elapsed());
    let resumed_from = seen.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = seen.lock().unwrap().clone();
    assert!(
        after.len() >= resumed_from + 3,
        "frames did not resume: {} → {}",
        resumed_from,
        after.len()
    );
    assert!(
        after.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 >= w[0].1),
        "seq/pts went back"
    );
    assert!(cam.stats.restarts.get() >= 1);
    let took = cam.stop().await;
    assert!(took < Duration::from_millis(1500), "shutdown took {took:?}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cameras_retry_with_growing_delays_and_spare_the_others() {
    let info = video();
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let missing = std::env::temp_dir().join(format!("facegate-missing-{}.mp4", std::process::id()));
    let failing = |name: &str, url: String| {
        let mut cfg = CameraConfig::new(name, url);
        cfg.backoff_initial_ms = 200;
        cfg.backoff_max_ms = 1600;
        cfg.frame_timeout_ms = 2000;
        cfg
    };
    let rtsp_cfg = failing("closed", format!("rtsp://127.0.0.1:{closed_port}/test"));
    let mut file_cfg = failing("missing", missing.to_str().unwrap().to_string());
    file_cfg.realtime = false;
    let mut good_cfg = replay_cfg("good", 0.0);
    good_cfg.backoff_initial_ms = 200;

    // A bus per camera with a recognition consumer, and one updates channel for all
    // three, as the daemon has.
    let (utx, mut urx) = mpsc::unbounded_channel();
    let token = CancellationToken::new();
    let mut stats = Vec::new();
    let mut threads = Vec::new();
    let mut consumers = Vec::new();
    for cfg in [rtsp_cfg, file_cfg, good_cfg] {
        let s = Arc::new(CameraStats::default());
        let bus = FrameBus::new(&cfg.name);
        let rx = bus.subscribe(recognition(4, cfg.detect_fps));
        threads.push(spawn_camera(cfg, bus, utx.clone(), s.clone(), token.clone()).unwrap());
        stats.push(s);
        // Counts the frames until the camera stops.
        consumers.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while let Ok(f) = rx.recv_timeout(Duration::from_secs(600)) {
                assert_eq!(&*f.camera, "good", "a failing camera delivered a frame");
                n += 1;
            }
            n
        }));
    }
    drop(utx);

    // Watch when each failing camera fails.
    let t0 = Instant::now();
    let mut failures: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut seen = [0u64; 2];
    while t0.elapsed() < Duration::from_millis(4500) {
        for i in 0..2 {
            let e = stats[i].errors.get();
            if e > seen[i] {
                seen[i] = e;
                failures[i].push(t0.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut updates = Vec::new();
    while let Ok(u) = urx.try_recv() {
        updates.push(u);
    }
    for (i, name) in ["closed", "missing"].iter().enumerate() {
        let mine: Vec<&CameraStatus> = updates
            .iter()
            .filter(|u| &*u.camera == *name)
            .map(|u| &u.status)
            .collect();
        assert_eq!(mine.len(), 1, "{name}: one Offline per outage, got {mine:?}");
        match mine[0] {
            CameraStatus::Offline { reason } => {
                assert!(!reason.is_empty());
                eprintln!("{name}: offline: {reason}");
            }
            other => panic!("{name}: expected Offline, got {other:?}"),
        }
        let times = &failures[i];
        let gaps: Vec<u128> = times.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        eprintln!("{name}: failures at {times:?}, gaps {gaps:?} ms");
        assert!(gaps.len() >= 3, "{name}: too few retries: {gaps:?}");
        // 200, 400, 800, 1600 ms ± 20 % (so ≥ 1.33 × the one before, less some polling noise).
        for w in gaps.windows(2).take(3) {
            assert!(w[1] as f64 >= 1.2 * w[0] as f64, "{name}: delays do not grow: {gaps:?}");
        }
        assert!(
            gaps.iter().all(|&g| g < 1600 + 600),
            "{name}: a delay above the maximum: {gaps:?}"
        );
        assert_eq!(stats[i].online.get(), 0);
        assert!(stats[i].restarts.get() >= 3);
    }
    let good: Vec<&CameraStatus> = updates
        .iter()
        .filter(|u| &*u.camera == "good")
        .map(|u| &u.status)
        .collect();
    assert_eq!(
        good,
        [&CameraStatus::Online, &CameraStatus::Finished],
        "the working camera"
    );

    let t = Instant::now();
    token.cancel();
    for th in threads {
        tokio::task::spawn_blocking(move || th.join().expect("camera thread panicked"))
            .await
            .unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "shutdown took {:?}",
        t.elapsed()
    );
    let mut counts = Vec::new();
    for c in consumers {
        counts.push(
            tokio::task::spawn_blocking(move || c.join().expect("consumer"))
                .await
                .unwrap(),
        );
    }
    assert_eq!(counts, [0, 0, info.frames], "frames per camera");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_paced_source_times_out() {
    // Accepts RTSP connections and never answers: no error, no frame, only the timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    let mut cfg = CameraConfig::new("silent", format!("rtsp://127.0.0.1:{port}/test"));
    cfg.frame_timeout_ms = 1000;
    cfg.backoff_initial_ms = 300;
    let mut cam = start(cfg, 2);
    let t = Instant::now();
    match cam.status(Duration::from_millis(1000 + 3000), "offline").await {
        CameraStatus::Offline { reason } => eprintln!("silent: offline after {:?}: {reason}", t.elapsed()),
        other => panic!("expected Offline, got {other:?}"),
    }
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "offline before the frame timeout"
    );
    let took = cam.stop().await;
    assert!(took < Duration::from_millis(1500), "shutdown took {took:?}");
    assert!(!held.lock().unwrap().is_empty(), "the camera never connected");
}
