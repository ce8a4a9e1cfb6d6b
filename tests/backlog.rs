//! The outbox's backlog with the in-process broker, end to end on the real binary: a replay
//! of a generated video with nobody subscribed leaves its events in the outbox; after a
//! restart they wait for a subscriber that connects later, and reach it whole and in order.
//! With `mqtt.hold_for_subscriber_s = 0` they go at once, to nobody, as before the hold.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::mosquitto::free_port;
use common::watch::Watch;
use common::*;
use serde_json::Value;

/// Generous: only there so that a hang fails instead of blocking the suite.
const LIMIT: Duration = Duration::from_secs(120);
/// A replay on CPU, on a loaded machine.
const REPLAY_LIMIT: Duration = Duration::from_secs(600);

/// A daemon's configuration: the in-process broker on a port of its own.
struct Daemon {
    dir: PathBuf,
    config: PathBuf,
    mqtt: u16,
    admin: u16,
    child: Option<Child>,
}

impl Daemon {
    /// `cameras` is TOML for `[[cameras]]`, empty for none: the daemon then runs until
    /// told to stop.
    fn configure(dir: &Path, gallery: &Path, hold_s: u64, cameras: &str) -> Daemon {
        let (mqtt, admin) = (free_port(), free_port());
        let config = dir.join("facegate.toml");
        let toml = format!(
            "[mqtt]\nport = {mqtt}\noutbox_path = \"{outbox}\"\nhold_for_subscriber_s = {hold_s}\n\
             [gallery]\npath = \"{gallery}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [daemon]\nshutdown_grace_s = 5\n{cameras}",
            outbox = dir.join("outbox.db").display(),
            gallery = gallery.display(),
        );
        std::fs::write(&config, toml).unwrap();
        Daemon {
            dir: dir.to_path_buf(),
            config,
            mqtt,
            admin,
            child: None,
        }
    }

    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_facegate"))
            .args(["--models", path_str(&models()), "--device", "cpu", "--config"])
            .arg(&self.config)
            .arg("run")
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(self.dir.join("daemon.log")).unwrap()))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "daemon did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.wait_exit(LIMIT);
        assert!(status.success(), "SIGTERM must exit 0: {status}\n{}", self.log());
    }

    /// The value of a series on `/metrics` (its gauges are read at each scrape).
    fn metric(&self, series: &str) -> Option<f64> {
        let text = http_get(self.admin, "/metrics")?;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    fn wait_metric(&self, series: &str, value: f64) {
        let start = Instant::now();
        while self.metric(series) != Some(value) {
            assert!(
                start.elapsed() < LIMIT,
                "{series} is {:?}, not {value}:\n{}",
                self.metric(series),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `facegate watch` against this daemon's broker.
    fn watch(&self, args: &[&str]) -> Watch {
        Watch::start(args, &[("FACEGATE__MQTT__PORT", &self.mqtt.to_string())])
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of a plain HTTP/1.0 GET, `None` while nothing listens.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    c.read_to_string(&mut response).ok()?;
    Some(response.split_once("\r\n\r\n")?.1.to_string())
}

/// The outbox's events, oldest first, as their `event_id`s.
fn outbox_ids(outbox: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(outbox).unwrap();
    let mut query = db.prepare("SELECT payload FROM outbox ORDER BY seq").unwrap();
    query
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|p| event_id(&serde_json::from_slice(&p.unwrap()).unwrap()))
        .collect()
}

fn event_id(v: &Value) -> String {
    v["event_id"].as_str().expect("an event has an event_id").to_string()
}

/// `watch --json` lines that are events, as their `event_id`s.
fn printed_ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("event_id").is_some())
        .map(|v| event_id(&v))
        .collect()
}

/// An outbox holding a replay's events, made once: a gallery with Ann, a generated video,
/// and a daemon that replays it with its in-process broker and nobody subscribed. Returns
/// the outbox file (to be copied) and its events' ids in order.
fn backlog() -> &'static (PathBuf, PathBuf, Vec<String>) {
    static BACKLOG: OnceLock<(PathBuf, PathBuf, Vec<String>)> = OnceLock::new();
    BACKLOG.get_or_init(|| {
        let dir = scratch("backlog-replay");
        let video = dir.join("door.mp4");
        let o = facegate(&["make-video", path_str(&video), "--seconds", "8"], &[]);
        assert!(o.status.success(), "make-video: {}", String::from_utf8_lossy(&o.stderr));
        let gallery = dir.join("gallery.db");
        let enroll = ["--gallery", path_str(&gallery), "enroll", "--name", "Ann", "--largest"];
        let o = facegate(&[&enroll[..], &[path_str(&sample(1))]].concat(), &[]);
        assert!(o.status.success(), "enroll: {}", String::from_utf8_lossy(&o.stderr));
        let camera = format!(
            "[[cameras]]\nname = \"door\"\nurl = \"file://{}\"\ndetect_fps = 10\nrealtime = false\nexit_on_eos = true\n",
            video.display()
        );
        let mut daemon = Daemon::configure(&dir, &gallery, 3600, &camera);
        daemon.start();
        let status = daemon.wait_exit(REPLAY_LIMIT);
        assert!(status.success(), "replay: {status}\n{}", daemon.log());
        assert!(
            daemon.log().contains("they stay in the outbox for the next start"),
            "held events are kept at shutdown:\n{}",
            daemon.log()
        );
        let outbox = dir.join("outbox.db");
        let ids = outbox_ids(&outbox);
        assert!(ids.len() >= 2, "the replay left {} events", ids.len());
        (outbox, gallery, ids)
    })
}

/// A daemon without cameras whose outbox starts as the replay's.
fn restarted(name: &str, hold_s: u64) -> (Daemon, Vec<String>) {
    let (outbox, gallery, ids) = backlog();
    let dir = scratch(name);
    // A clean exit leaves the outbox in its main file; copy any journal all the same.
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", outbox.display()));
        if from.exists() {
            std::fs::copy(&from, dir.join(format!("outbox.db{suffix}"))).unwrap();
        }
    }
    let mut daemon = Daemon::configure(&dir, gallery, hold_s, "");
    daemon.start();
    (daemon, ids.clone())
}

#[test]
fn the_backlog_waits_for_a_subscriber_that_connects_after_the_restart() {
    let (mut daemon, backlog) = restarted("backlog-hold", 3600);
    let n = backlog.len() as f64;
    daemon.wait_metric("facegate_broker_connected", 1.0);
    daemon.wait_metric("facegate_outbox_depth", n);
    assert_eq!(
        daemon.metric("facegate_mqtt_acked_total"),
        Some(0.0),
        "nothing sent before anyone listens:\n{}",
        daemon.log()
    );

    let count = backlog.len().to_string();
    let mut watch = daemon.watch(&["--json", "--count", &count]);
    let (status, lines, stderr) = watch.wait_exit(LIMIT);
    assert!(status.success(), "watch: {status}: {stderr}");
    assert_eq!(printed_ids(&lines), backlog, "the backlog arrives whole and in order");
    daemon.wait_metric("facegate_outbox_depth", 0.0);
    assert!(
        daemon.log().contains("someone subscribed to the events"),
        "{}",
        daemon.log()
    );
    daemon.stop();
}

#[test]
fn without_a_hold_the_backlog_goes_at_once_to_nobody() {
    let (mut daemon, backlog) = restarted("backlog-nohold", 0);
    // Acknowledged by the broker with nobody subscribed: gone, as before the hold existed.
    daemon.wait_metric("facegate_outbox_depth", 0.0);
    daemon.wait_metric("facegate_mqtt_acked_total", backlog.len() as f64);

    // A subscriber now sees new events only: a probe published after it subscribed is the
    // first event it gets.
    let mut watch = daemon.watch(&["--json", "--count", "1"]);
    watch.wait_for("availability", LIMIT, |l| l.iter().any(|l| l.contains("\"available\"")));
    let probe = serde_json::json!({
        "event_id": uuid::Uuid::new_v4().to_string(), "type": "unknown", "camera": "probe",
        "track_id": 1, "timestamp": "2025-06-01T12:00:00.000Z", "pts_ms": 0, "person": null,
        "similarity": null, "threshold": 0.5, "liveness": null, "box": [0.0, 0.0, 1.0, 1.0], "frames": 1
    });
    let port = daemon.mqtt.to_string();
    let sent = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-q",
            "1",
            "-t",
            "facegate/probe/events",
            "-m",
        ])
        .arg(probe.to_string())
        .status()
        .expect("mosquitto_pub (Debian mosquitto-clients) is needed");
    assert!(sent.success());
    let (status, lines, stderr) = watch.wait_exit(LIMIT);
    assert!(status.success(), "watch: {status}: {stderr}");
    assert_eq!(printed_ids(&lines), [event_id(&probe)], "{lines:#?}");
    assert!(
        !daemon.log().contains("events wait in the outbox until"),
        "{}",
        daemon.log()
    );
    daemon.stop();
}
