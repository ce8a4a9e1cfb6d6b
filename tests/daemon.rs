//! The daemon end to end: the real binary replays a generated video (or an RTSP stream
//! served in this process) against Debian's mosquitto started on a free port.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mosquitto::{Mosquitto, Persistence, free_port};
use common::subscriber::Subscriber;
use common::*;
use serde_json::Value;

/// A generated demo video, made once per test binary run.
fn demo_video() -> PathBuf {
    static VIDEO: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    VIDEO
        .get_or_init(|| {
            let dir = scratch("daemon-video");
            let out = dir.join("demo.mp4");
            let o = facegate(&["make-video", path_str(&out), "--seconds", "12"], &[]);
            assert!(o.status.success(), "make-video: {}", String::from_utf8_lossy(&o.stderr));
            out
        })
        .clone()
}

struct Setup {
    dir: PathBuf,
    gallery: PathBuf,
    config: PathBuf,
    /// Port of the admin endpoints.
    admin: u16,
}

/// A gallery with Ann (the largest face of sample1, shown first in the demo video) and a
/// configuration for one camera.
fn setup(name: &str, mqtt_port: u16, camera_toml: &str) -> Setup {
    let dir = scratch(name);
    let gallery = dir.join("gallery.db");
    enroll_largest(&gallery, "Ann", &sample(1));
    let config = dir.join("facegate.toml");
    let admin = free_port();
    let toml = format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\noutbox_path = \"{outbox}\"\nstats_interval_s = 1\nbackoff_initial_ms = 200\nbackoff_max_ms = 1000\n\
         [gallery]\npath = \"{gallery}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[daemon]\nshutdown_grace_s = 5\n{camera_toml}",
        outbox = dir.join("outbox.db").display(),
        gallery = gallery.display(),
    );
    std::fs::write(&config, toml).unwrap();
    Setup {
        dir,
        gallery,
        config,
        admin,
    }
}

fn file_camera(video: &Path, realtime: bool) -> String {
    format!(
        "[[cameras]]\nname = \"door\"\nurl = \"file://{}\"\ndetect_fps = 10\nrealtime = {realtime}\nexit_on_eos = true\n",
        video.display()
    )
}

fn daemon_command(s: &Setup) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_facegate"));
    cmd.args([
        "--models",
        path_str(&models()),
        "--device",
        "cpu",
        "--config",
        path_str(&s.config),
        "run",
    ])
    .current_dir(&s.dir)
    .stdout(Stdio::null())
    .stderr(Stdio::from(std::fs::File::create(s.dir.join("daemon.log")).unwrap()));
    cmd
}

fn start_daemon(s: &Setup) -> Child {
    daemon_command(s).spawn().unwrap()
}

/// systemd's side of sd_notify: a datagram socket that collects what the daemon reports.
struct NotifySocket {
    path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sink, stopped) = (lines.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock().unwrap().extend(text.lines().map(str::to_string));
                }
            }
        });
        NotifySocket { path, lines, stop }
    }

    fn has(&self, line: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l == line)
    }

    fn wait_for(&self, line: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.has(line) {
            assert!(
                start.elapsed() < timeout,
                "no {line} within {timeout:?}; got {:?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The daemon as systemd starts a `Type=notify` service with `WatchdogSec=2`.
fn start_daemon_under_systemd(s: &Setup, notify: &NotifySocket) -> Child {
    let plain = daemon_command(s);
    // WATCHDOG_PID must be the daemon's own pid: a shell that execs it keeps its pid.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" \"$@\"")
        .arg(plain.get_program())
        .args(plain.get_args())
        .current_dir(&s.dir)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "2000000")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(s.dir.join("daemon.log")).unwrap()));
    cmd.spawn().unwrap()
}

fn wait_exit(child: &mut Child, s: &Setup, timeout: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("daemon did not exit within {timeout:?}; log:\n{}", log(s));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log(s: &Setup) -> String {
    std::fs::read_to_string(s.dir.join("daemon.log")).unwrap_or_default()
}

/// A plain HTTP/1.0 GET on the admin port: (status code, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("admin port answers");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    c.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("HTTP status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn sigterm(child: &Child) {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
}

/// Every field of the event contract (docs/mqtt.md), with its type, and nothing else.
fn assert_event_schema(e: &Value) {
    let mut keys: Vec<&str> = e
        .as_object()
        .expect("event is an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let want = facegate::events::EVENT_FIELDS;
    assert_eq!(keys, want, "{e}");
    let s = |k: &str| {
        e[k].as_str()
            .unwrap_or_else(|| panic!("{k} not a string: {e}"))
            .to_string()
    };
    assert_eq!(s("event_id").len(), 36, "UUID: {e}");
    assert!(["recognized", "unknown", "spoof"].contains(&s("type").as_str()), "{e}");
    assert_eq!(s("camera"), "door");
    assert!(e["track_id"].is_u64(), "{e}");
    assert!(chrono::DateTime::parse_from_rfc3339(&s("timestamp")).is_ok(), "{e}");
    assert!(s("timestamp").ends_with('Z'));
    assert!(e["pts_ms"].is_i64() || e["pts_ms"].is_u64(), "{e}");
    if s("type") == "recognized" {
        assert!(e["person"]["id"].is_i64() && e["person"]["name"].is_string(), "{e}");
    } else {
        assert!(e["person"].is_null(), "{e}");
    }
    assert!(e["similarity"].is_number() || e["similarity"].is_null(), "{e}");
    let t = e["threshold"].as_f64().expect("threshold");
    assert!((0.0..=1.0).contains(&t));
    assert!(
        e.get("liveness").is_some(),
        "liveness key present (null until liveness lands): {e}"
    );
    let b = e["box"].as_array().expect("box");
    assert_eq!(b.len(), 4);
    assert!(b.iter().all(Value::is_number));
    assert!(e["frames"].as_u64().unwrap() >= 1);
}

/// (track, type, person) of every event: what must not change between runs.
fn decisions(events: &[Value]) -> Vec<(u64, String, String)> {
    let mut v: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["track_id"].as_u64().unwrap(),
                e["type"].as_str().unwrap().to_string(),
                e["person"]["name"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// One event per track decision: never the same decision twice in a row for a track.
fn assert_one_event_per_decision(events: &[Value]) {
    let mut last: std::collections::HashMap<u64, (String, String)> = Default::default();
    for e in events {
        let key = (
            e["type"].as_str().unwrap().to_string(),
            e["person"]["name"].as_str().unwrap_or("-").to_string(),
        );
        let id = e["track_id"].as_u64().unwrap();
        assert_ne!(
            last.get(&id),
            Some(&key),
            "track {id} repeated its decision: {events:?}"
        );
        last.insert(id, key);
    }
}

/// A replay against a fresh broker: its events, the subscriber, the broker, the daemon's log.
fn replay_run(name: &str) -> (Vec<Value>, Subscriber, Mosquitto, String) {
    let broker = Mosquitto::start(Persistence::Off);
    let sub = Subscriber::start(broker.port, &format!("sub-{name}"));
    let s = setup(name, broker.port, &file_camera(&demo_video(), false));
    let mut daemon = start_daemon(&s);
    let status = wait_exit(&mut daemon, &s, Duration::from_secs(300));
    assert!(status.success(), "daemon failed: {status}\n{}", log(&s));
    sub.wait_until("offline", Duration::from_secs(10), |s| {
        s.messages("/available").last().is_some_and(|m| m == "offline")
    });
    (sub.events(), sub, broker, log(&s))
}

#[test]
fn replay_recognizes_the_enrolled_person_and_nobody_else() {
    let (events, sub, _broker, daemon_log) = replay_run("daemon-replay");
    assert!(!events.is_empty(), "no events");
    for e in &events {
        assert_event_schema(e);
        if e["type"] == "recognized" {
            assert_eq!(e["person"]["name"], "Ann", "only Ann is enrolled: {e}");
        }
    }
    assert!(
        events.iter().any(|e| e["type"] == "recognized"),
        "Ann not recognized: {events:?}"
    );
    assert!(
        events.iter().any(|e| e["type"] == "unknown"),
        "strangers not reported: {events:?}"
    );
    assert_one_event_per_decision(&events);
    // The last line says how many events reached the broker over the whole run.
    let delivered = daemon_log.lines().find(|l| l.contains("INFO stopped ")).and_then(|l| {
        l.split("events_delivered=")
            .nth(1)?
            .split(' ')
            .next()?
            .parse::<usize>()
            .ok()
    });
    assert_eq!(
        delivered,
        Some(events.len()),
        "the shutdown line counts the run's events"
    );
    // Retained statuses and the availability lifecycle.
    assert_eq!(sub.messages("/available").first().map(String::as_str), Some("online"));
    assert!(sub.messages("/door/status").iter().any(|m| m == "online"));
    assert!(!sub.messages("/stats").is_empty(), "periodic stats");

    // A replay is deterministic: a second run decides the same.
    let (again, _, _, _) = replay_run("daemon-replay-2");
    assert_eq!(decisions(&events), decisions(&again));
}

#[test]
fn broker_outage_mid_replay_loses_no_event() {
    let (undisturbed, _, _, _) = replay_run("daemon-undisturbed");

    let mut broker = Mosquitto::start(Persistence::OnExit);
    let sub = Subscriber::start(broker.port, "sub-outage");
    // realtime = false like the undisturbed run: the same frames, so the same decisions.
    let s = setup("daemon-outage", broker.port, &file_camera(&demo_video(), false));
    // Long enough for the backlog to go out even if the replay ends during the outage.
    let cfg = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("shutdown_grace_s = 5", "shutdown_grace_s = 60");
    std::fs::write(&s.config, cfg).unwrap();
    let mut daemon = start_daemon(&s);
    sub.wait_until("a first event", Duration::from_secs(120), |s| !s.events().is_empty());
    broker.stop();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the replay ended before the outage was over:\n{}",
        log(&s)
    );
    broker.run();
    let status = wait_exit(&mut daemon, &s, Duration::from_secs(300));
    assert!(status.success(), "{}", log(&s));
    // The subscriber is cut off too and comes back on its own schedule; the broker keeps
    // what arrives meanwhile for its session. (Waiting for `offline` would not do: the
    // daemon's last will says `offline` as soon as the broker stops.)
    sub.wait_until("every decision of the undisturbed run", Duration::from_secs(60), |x| {
        decisions(&x.events()) == decisions(&undisturbed)
    });
    let events = sub.events();
    for e in &events {
        assert_event_schema(e);
    }
    assert!(
        log(&s).contains("lost the MQTT connection"),
        "the daemon saw the outage:\n{}",
        log(&s)
    );
    assert_eq!(
        decisions(&events),
        decisions(&undisturbed),
        "events differ from an undisturbed run"
    );
}

#[test]
fn sigterm_mid_replay_publishes_offline_and_keeps_what_is_left() {
    let broker = Mosquitto::start(Persistence::Off);
    let sub = Subscriber::start(broker.port, "sub-term");
    let s = setup("daemon-term", broker.port, &file_camera(&demo_video(), true));
    let mut daemon = start_daemon(&s);
    sub.wait_until("a first event", Duration::from_secs(120), |s| !s.events().is_empty());
    sigterm(&daemon);
    let status = wait_exit(&mut daemon, &s, Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must exit 0: {status}\n{}", log(&s));
    sub.wait_until("offline", Duration::from_secs(10), |s| {
        s.messages("/available").last().is_some_and(|m| m == "offline")
    });
    let outbox = rusqlite::Connection::open(s.dir.join("outbox.db")).unwrap();
    let left: i64 = outbox
        .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "with the broker up the outbox drains before exit");
}

#[test]
fn events_wait_in_the_outbox_while_the_broker_is_unreachable_at_start() {
    let port = free_port();
    let s = setup("daemon-nobroker", port, &file_camera(&demo_video(), false));
    let mut daemon = start_daemon(&s);
    // The replay runs and ends without a broker; SIGTERM would also do.
    let status = wait_exit(&mut daemon, &s, Duration::from_secs(300));
    assert!(status.success(), "{}", log(&s));
    let outbox = rusqlite::Connection::open(s.dir.join("outbox.db")).unwrap();
    let stored: Vec<String> = outbox
        .prepare("SELECT payload FROM outbox ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|p| {
            serde_json::from_slice::<Value>(&p.unwrap()).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let left = stored.len() as i64;
    assert!(left > 0, "events kept for later");
    assert!(
        log(&s).contains("cannot reach the MQTT broker"),
        "a clear warning:\n{}",
        log(&s)
    );
    drop(outbox);
    // A restart with the broker present delivers them, in order, before anything new.
    let broker = Mosquitto::start_on(port, Persistence::Off);
    let sub = Subscriber::start(broker.port, "sub-later");
    let empty = s.dir.join("empty.toml");
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&empty, cfg.split("[[cameras]]").next().unwrap()).unwrap();
    let later = Setup {
        dir: s.dir.clone(),
        gallery: s.gallery.clone(),
        config: empty,
        admin: s.admin,
    };
    let mut daemon = start_daemon(&later);
    sub.wait_until("the backlog", Duration::from_secs(30), |x| {
        x.events().len() as i64 >= left
    });
    let mut received: Vec<String> = Vec::new();
    for e in sub.events() {
        let id = e["event_id"].as_str().unwrap().to_string();
        if !received.contains(&id) {
            received.push(id);
        }
    }
    assert_eq!(received, stored, "the backlog arrives whole and in order");
    // With no camera it keeps running (commands, backlog) until told to stop.
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "a daemon without cameras exited:\n{}",
        log(&later)
    );
    sigterm(&daemon);
    assert!(
        wait_exit(&mut daemon, &later, Duration::from_secs(30)).success(),
        "{}",
        log(&later)
    );
}

#[test]
fn a_broken_camera_does_not_stop_a_working_one() {
    let broker = Mosquitto::start(Persistence::Off);
    let sub = Subscriber::start(broker.port, "sub-broken");
    let cams = format!(
        "{}[[cameras]]\nname = \"yard\"\nurl = \"rtsp://127.0.0.1:{}/nothing\"\nbackoff_initial_ms = 200\nbackoff_max_ms = 1000\n",
        file_camera(&demo_video(), false),
        free_port()
    );
    let cams = cams.replace("exit_on_eos = true", "exit_on_eos = false");
    let s = setup("daemon-broken", broker.port, &cams);
    let cfg = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("[daemon]\n", "[daemon]\nready_timeout_s = 2\n");
    std::fs::write(&s.config, cfg).unwrap();
    let notify = NotifySocket::bind(&s.dir);
    let mut daemon = start_daemon_under_systemd(&s, &notify);
    sub.wait_until("events from the working camera", Duration::from_secs(120), |x| {
        x.events().iter().any(|e| e["type"] == "recognized")
    });
    // systemd hears READY despite the broken camera (after ready_timeout_s), and keep-alives.
    notify.wait_for("READY=1", Duration::from_secs(60));
    notify.wait_for("WATCHDOG=1", Duration::from_secs(60));
    assert!(log(&s).contains("started without every part ready"), "{}", log(&s));
    assert!(
        log(&s).contains("camera yard"),
        "the missing part is named:\n{}",
        log(&s)
    );
    assert!(
        sub.messages("/yard/status").iter().all(|m| m == "offline"),
        "{:?}",
        sub.messages("/yard/status")
    );
    // The admin endpoints tell the same story.
    assert_eq!(http_get(s.admin, "/live").0, 200);
    let (code, body) = http_get(s.admin, "/ready");
    assert_eq!(code, 503, "not ready while a camera is down: {body}");
    let ready: Value = serde_json::from_str(&body).expect("/ready is JSON");
    assert_eq!(ready["parts"]["broker"]["ready"], true, "{ready}");
    assert_eq!(ready["parts"]["models"]["ready"], true, "{ready}");
    assert!(
        ready["parts"]["gallery"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("1 people"),
        "the gallery says what it holds: {ready}"
    );
    let yard = ready["parts"]["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "yard")
        .cloned();
    let yard = yard.expect("camera yard in /ready");
    assert_eq!(yard["ready"], false, "{ready}");
    assert!(
        !yard["reason"].as_str().unwrap_or("").is_empty(),
        "the camera's last error: {ready}"
    );
    assert!(
        ready["waiting_for"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap_or("").starts_with("camera yard: ")),
        "{ready}"
    );
    let (code, metrics) = http_get(s.admin, "/metrics");
    assert_eq!(code, 200);
    for line in [
        "facegate_frames_total{camera=\"door\"}",
        "facegate_events_total{camera=\"door\",kind=\"recognized\"} ",
        "facegate_camera_online{camera=\"yard\"} 0",
        "facegate_broker_connected 1",
        "facegate_inference_seconds_bucket{",
        "facegate_mqtt_acked_total ",
        "facegate_mqtt_commands_rejected_total{reason=\"bad_signature\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from /metrics:\n{metrics}");
    }
    sigterm(&daemon);
    assert!(
        wait_exit(&mut daemon, &s, Duration::from_secs(30)).success(),
        "{}",
        log(&s)
    );
    assert!(log(&s).contains("yard"), "the broken camera is logged");
    assert!(notify.has("STOPPING=1"), "systemd is told the daemon is stopping");
}

#[test]
fn rtsp_camera_goes_offline_and_back_online() {
    let broker = Mosquitto::start(Persistence::Off);
    let sub = Subscriber::start(broker.port, "sub-rtsp");
    let port = free_port();
    let server = common::rtsp::serve(&demo_video(), port).expect("RTSP server");
    let cam = format!(
        "[[cameras]]\nname = \"door\"\nurl = \"{}\"\nframe_timeout_ms = 2000\nbackoff_initial_ms = 200\nbackoff_max_ms = 1000\n",
        server.url()
    );
    let s = setup("daemon-rtsp", broker.port, &cam);
    let mut daemon = start_daemon(&s);
    sub.wait_until("online", Duration::from_secs(60), |x| {
        x.messages("/door/status").last().is_some_and(|m| m == "online")
    });
    sub.wait_until("a first event", Duration::from_secs(60), |x| !x.events().is_empty());
    server.stop();
    sub.wait_until("offline", Duration::from_secs(20), |x| {
        x.messages("/door/status").last().is_some_and(|m| m == "offline")
    });
    let before = sub.events().len();
    let server = common::rtsp::serve(&demo_video(), port).expect("RTSP server again");
    sub.wait_until("online again", Duration::from_secs(60), |x| {
        x.messages("/door/status").last().is_some_and(|m| m == "online")
    });
    sub.wait_until("events resume", Duration::from_secs(60), |x| x.events().len() > before);
    sigterm(&daemon);
    assert!(
        wait_exit(&mut daemon, &s, Duration::from_secs(30)).success(),
        "{}",
        log(&s)
    );
    server.stop();
}

#[test]
fn bad_configuration_is_reported_whole() {
    let dir = scratch("daemon-badcfg");
    let f = dir.join("bad.toml");
    std::fs::write(
        &f,
        "[mqtt]\nport = 1883\nprefix = \"\"\n[[cameras]]\nname = \"a b\"\nurl = \"\"\ndetect_fps = -1\n[[cameras]]\nname = \"x\"\nurl = \"file:///v.mp4\"\n[[cameras]]\nname = \"x\"\nurl = \"file:///w.mp4\"\n",
    )
    .unwrap();
    let o = facegate(&["--config", path_str(&f), "validate-config"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    for key in [
        "mqtt.prefix",
        "cameras[0].name",
        "cameras[0].url",
        "cameras[0].detect_fps",
        "cameras[2].name",
    ] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
}

/// The value of the series `name{labels}` in a Prometheus text exposition (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_move_during_a_replay_and_stats_can_be_off() {
    let broker = Mosquitto::start(Persistence::Off);
    let sub = Subscriber::start(broker.port, "sub-metrics");
    // door: a looping replay, which never drops (recognition's queue blocks the replay);
    // yard: the same file paced like a camera, every frame detected and every face embedded
    // into a queue of 2 frames, which recognition on two cores cannot keep up with.
    let video = demo_video();
    let cams = format!(
        "[[cameras]]\nname = \"door\"\nurl = \"file://{v}\"\ndetect_fps = 10\nrealtime = false\nloop = true\n\
         [[cameras]]\nname = \"yard\"\nurl = \"file://{v}\"\ndetect_fps = 0\nrealtime = true\nloop = true\n",
        v = video.display()
    );
    let s = setup("daemon-metrics", broker.port, &cams);
    let cfg = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("stats_interval_s = 1", "stats_interval_s = 0")
        .replace("[daemon]\n", "[daemon]\nframe_queue = 2\n")
        + "[tracker]\nembed_every = 1\n";
    std::fs::write(&s.config, cfg).unwrap();
    let report_path = s.dir.join("report.json");
    let mut daemon = daemon_command(&s)
        .args(["--report", path_str(&report_path)])
        .spawn()
        .unwrap();
    sub.wait_until("events from both cameras", Duration::from_secs(180), |x| {
        let events = x.events();
        ["door", "yard"]
            .iter()
            .all(|c| events.iter().any(|e| e["camera"] == *c))
    });
    let (code, first) = http_get(s.admin, "/metrics");
    assert_eq!(code, 200);
    let frames = |t: &str, cam: &str| metric(t, &format!("facegate_frames_total{{camera=\"{cam}\"}}"));
    let start = Instant::now();
    let mut later = first.clone();
    while frames(&later, "door") <= frames(&first, "door") || frames(&later, "yard") <= frames(&first, "yard") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "frames stopped moving:\n{later}"
        );
        std::thread::sleep(Duration::from_millis(500));
        later = http_get(s.admin, "/metrics").1;
    }
    sigterm(&daemon);
    assert!(
        wait_exit(&mut daemon, &s, Duration::from_secs(60)).success(),
        "{}",
        log(&s)
    );

    let m = |series: &str| metric(&later, series);
    for cam in ["door", "yard"] {
        let processed = m(&format!("facegate_frames_total{{camera=\"{cam}\"}}"));
        let faces = m(&format!("facegate_detections_total{{camera=\"{cam}\"}}"));
        let embedded = m(&format!("facegate_embeddings_total{{camera=\"{cam}\"}}"));
        let decoded = m(&format!("facegate_frames_decoded_total{{camera=\"{cam}\"}}"));
        let delivered = m(&format!(
            "facegate_frames_delivered_total{{camera=\"{cam}\",consumer=\"recognition\"}}"
        ));
        assert!(processed > 0.0 && faces > 0.0 && embedded > 0.0, "{cam}:\n{later}");
        assert!(embedded <= faces, "{cam}: only detected faces are embedded:\n{later}");
        assert!(processed <= delivered && delivered <= decoded, "{cam}:\n{later}");
        let events: f64 = ["recognized", "unknown"]
            .iter()
            .map(|k| m(&format!("facegate_events_total{{camera=\"{cam}\",kind=\"{k}\"}}")))
            .sum();
        assert!(events > 0.0, "{cam}: events counted:\n{later}");
        assert!(
            later.contains(&format!(
                "facegate_queue_depth{{camera=\"{cam}\",consumer=\"recognition\"}}"
            )),
            "queue depth of {cam}:\n{later}"
        );
    }
    let dropped = |cam: &str| {
        m(&format!(
            "facegate_frames_dropped_total{{camera=\"{cam}\",consumer=\"recognition\"}}"
        ))
    };
    assert_eq!(dropped("door"), 0.0, "a replay never drops:\n{later}");
    assert!(
        dropped("yard") > 0.0,
        "a paced camera that recognition cannot keep up with drops:\n{later}"
    );
    assert!(
        sub.messages("/stats").is_empty(),
        "stats_interval_s = 0 turns stats off"
    );
    assert_run_report(&std::fs::read_to_string(&report_path).unwrap());
}

/// The run report of the door (replay) and yard (paced, overloaded) run above.
fn assert_run_report(text: &str) {
    let r: Value = serde_json::from_str(text).unwrap();
    let cams = r["cameras"].as_array().unwrap();
    let names: Vec<&str> = cams.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["door", "yard"], "{text}");
    let sum = |key: &str| cams.iter().map(|c| c[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!(r["frames_decoded"].as_u64(), Some(sum("frames_decoded")), "{text}");
    assert_eq!(r["frames_dropped"].as_u64(), Some(sum("frames_dropped")), "{text}");
    // A replay drops nothing but the frame whose wait for the queue SIGTERM cut short.
    assert!(cams[0]["frames_dropped"].as_u64() <= Some(1), "{text}");
    assert!(cams[1]["frames_dropped"].as_u64() > Some(0), "{text}");
    for c in cams {
        assert!(c["frames"].as_u64() <= c["frames_decoded"].as_u64(), "{text}");
        assert!(c["fps"].as_f64() > Some(0.0), "{text}");
    }
    // Models loaded: well over 50 MiB at the peak; the run took CPU time.
    assert!(r["peak_rss_kib"].as_u64() > Some(50 * 1024), "{text}");
    assert!(r["cpu_user_s"].as_f64() > Some(0.0), "{text}");
    assert!(r["cpu_ms_per_frame"].as_f64() > Some(0.0), "{text}");
}

/// `facegate sign … | mosquitto_pub -s` on the command topic of `verb`.
fn publish_signed(port: u16, key: &Path, verb: &str, args: &[&str]) {
    let signed = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["sign", "--key-file", path_str(key), verb])
        .args(args)
        .output()
        .unwrap();
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    let mut publish = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-t", &format!("facegate/cmd/{verb}"), "-s"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub (Debian mosquitto-clients) is needed");
    std::io::Write::write_all(&mut publish.stdin.take().unwrap(), &signed.stdout).unwrap();
    assert!(publish.wait().unwrap().success());
}

#[test]
fn signed_remote_enrollment_follows_the_cli_rules() {
    let broker = Mosquitto::start(Persistence::Off);
    let sub = Subscriber::start(broker.port, "sub-commands");
    let s = setup("daemon-commands", broker.port, "");
    let key = s.dir.join("command.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    let cfg = std::fs::read_to_string(&s.config).unwrap()
        + &format!("[commands]\nenabled = true\nkey_file = \"{}\"\n", key.display());
    std::fs::write(&s.config, cfg).unwrap();
    let bomb = s.dir.join("bomb.png");
    png_bomb(&bomb, 20_000, 20_000);
    let mut daemon = start_daemon(&s);
    sub.wait_until("online", Duration::from_secs(60), |x| {
        x.messages("/available").last().is_some_and(|m| m == "online")
    });
    let results = |x: &Subscriber| -> Vec<Value> {
        x.messages("/cmd/result")
            .iter()
            .map(|p| serde_json::from_str(p).unwrap())
            .collect()
    };
    let sample2 = sample(2);
    let photo = path_str(&sample2);
    let steps: [(&[&str], bool, &str); 5] = [
        (
            &["--name", "Bea", "--image", photo, "--request-id", "several"],
            false,
            "pass --largest",
        ),
        (
            &["--name", "Bomb", "--image", path_str(&bomb), "--request-id", "bomb"],
            false,
            "images.max_pixels",
        ),
        (
            &[
                "--name",
                "Bea",
                "--image",
                photo,
                "--largest",
                "--metadata",
                "{\"badge\": 7}",
                "--request-id",
                "ok",
            ],
            true,
            "",
        ),
        // The enrollment guard rails are the CLI's too: Bea's face under another name.
        (
            &["--name", "Twin", "--image", photo, "--largest", "--request-id", "twin"],
            false,
            "matches Bea",
        ),
        (
            &[
                "--name",
                "Twin",
                "--image",
                photo,
                "--largest",
                "--force",
                "--request-id",
                "forced",
            ],
            true,
            "",
        ),
    ];
    for (i, (args, ok, why)) in steps.iter().enumerate() {
        publish_signed(broker.port, &key, "enroll", args);
        sub.wait_until("the command's result", Duration::from_secs(60), |x| {
            results(x).len() > i
        });
        let r = &results(&sub)[i];
        assert_eq!(r["ok"], *ok, "{r}");
        assert!(r["error"].as_str().unwrap_or("").contains(why), "{r}");
    }
    let done = &results(&sub)[2]["result"];
    assert_eq!(done["person"]["name"], "Bea", "{done}");
    assert_eq!(done["templates"][0]["box"].as_array().map(Vec::len), Some(4), "{done}");
    sigterm(&daemon);
    assert!(
        wait_exit(&mut daemon, &s, Duration::from_secs(30)).success(),
        "{}",
        log(&s)
    );
    let show = stdout_json(&facegate(
        &["--json", "--gallery", path_str(&s.gallery), "gallery", "show", "Bea"],
        &[],
    ));
    assert_eq!(show["person"]["metadata"]["badge"], 7, "{show}");
    assert!(
        log(&s).contains("remote command done"),
        "enrollments are logged:\n{}",
        log(&s)
    );
}
