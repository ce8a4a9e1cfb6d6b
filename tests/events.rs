//! MQTT events end to end against a real Mosquitto (started here on a free port) and the
//! in-process broker: schema, retained state, outages, restarts, last will, commands, events
//! held for a subscriber, `facegate watch` (the binary), and the broker `deploy/install.sh`
//! sets up.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::TempDir;
use common::mosquitto::{Mosquitto, Persistence, free_port};
use common::watch::Watch;
use facegate::events::{
    Command, CommandKey, CommandsConfig, Event, EventKind, Liveness, LivenessCues, MqttConfig, PersonRef, Publisher,
    ShutdownReport, WatchOptions, timestamp,
};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

// ---- scaffolding ------------------------------------------------------------------------------

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

impl Msg {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap()
    }
}

/// A test client that subscribes and forwards every message; reconnects on its own.
struct Subscriber {
    rx: mpsc::UnboundedReceiver<Msg>,
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Returns once the broker has acknowledged the subscriptions.
    async fn start(port: u16, client_id: &str, persistent: bool, filters: &[&str]) -> Subscriber {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_clean_session(!persistent);
        Subscriber::start_with(options, filters).await
    }

    /// Returns once the broker has acknowledged every subscription, or says it still has
    /// them (a persistent session).
    async fn start_with(options: MqttOptions, filters: &[&str]) -> Subscriber {
        let (client, mut eventloop) = AsyncClient::new(options, 32);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let subscriber = client.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut acks = 0;
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) if !ack.session_present => {
                        for f in &filters {
                            subscriber.subscribe(f.clone(), QoS::AtLeastOnce).await.unwrap();
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                        acks += 1;
                        if acks >= filters.len()
                            && let Some(r) = ready.take()
                        {
                            let _ = r.send(());
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Msg {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, ready_rx)
            .await
            .expect("subscription not acknowledged")
            .unwrap();
        Subscriber { rx, client, task }
    }

    async fn next(&mut self) -> Msg {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("no message in time")
            .unwrap()
    }

    /// The next message on `topic`, skipping others.
    async fn next_on(&mut self, topic: &str) -> Msg {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("nothing on {topic} in time"))
                .unwrap();
            if msg.topic == topic {
                return msg;
            }
        }
    }

    /// Messages on `topic` until `done` says so.
    async fn collect_on(
        &mut self,
        topic_suffix: &str,
        limit: Duration,
        mut done: impl FnMut(&[Msg]) -> bool,
    ) -> Vec<Msg> {
        let deadline = Instant::now() + limit;
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(m)) if m.topic.ends_with(topic_suffix) => got.push(m),
                Ok(Some(_)) => {}
                _ => panic!("gave up after {limit:?} with {} messages on *{topic_suffix}", got.len()),
            }
        }
        got
    }

    /// Nothing more arrives for `quiet`.
    async fn assert_quiet(&mut self, quiet: Duration) {
        if let Ok(Some(m)) = tokio::time::timeout(quiet, self.rx.recv()).await {
            panic!("unexpected message on {}: {}", m.topic, m.text());
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config(port: u16, dir: &Path, prefix: &str) -> MqttConfig {
    MqttConfig {
        host: Some("127.0.0.1".into()),
        port,
        prefix: prefix.into(),
        client_id: format!("facegate-test-{prefix}"),
        keep_alive_s: 5,
        backoff_initial_ms: 50,
        backoff_max_ms: 400,
        outbox_path: dir.join("outbox.db"),
        stats_interval_s: 1,
        ..Default::default()
    }
}

fn event(camera: &str, track_id: u64, kind: EventKind) -> Event {
    let recognized = kind == EventKind::Recognized;
    Event {
        event_id: uuid::Uuid::new_v4(),
        kind,
        camera: camera.into(),
        track_id,
        timestamp: timestamp(chrono::Utc::now()),
        pts_ms: 40 * track_id as i64,
        person: recognized.then(|| PersonRef {
            id: 7,
            name: "Ann".into(),
        }),
        similarity: (kind != EventKind::Spoof).then_some(if recognized { 0.71 } else { 0.21 }),
        threshold: 0.5,
        liveness: (kind == EventKind::Spoof).then_some(Liveness {
            score: Some(0.12),
            live: false,
            cues: LivenessCues {
                cnn: Some(0.003),
                pulse: None,
                motion: Some(0.2),
            },
        }),
        bbox: [10.0, 20.0, 64.5, 80.25],
        frames: 12,
    }
}

async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn event_id(m: &Msg) -> String {
    m.json()["event_id"].as_str().unwrap().to_owned()
}

/// Checks one received event against the contract (docs/mqtt.md), field by field.
fn assert_schema(v: &Value) {
    let obj = v.as_object().expect("event is a JSON object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, facegate::events::EVENT_FIELDS);
    uuid::Uuid::parse_str(v["event_id"].as_str().unwrap()).expect("event_id is a UUID");
    assert!(matches!(v["type"].as_str(), Some("recognized" | "unknown" | "spoof")));
    assert!(v["camera"].is_string());
    assert!(v["track_id"].is_u64());
    let ts = v["timestamp"].as_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(ts).expect("timestamp is RFC 3339");
    assert_eq!(parsed.offset().local_minus_utc(), 0, "timestamp is UTC: {ts}");
    assert!(
        ts.ends_with('Z') && ts.len() == "2025-01-01T00:00:00.000Z".len(),
        "milliseconds: {ts}"
    );
    assert!(v["pts_ms"].is_i64());
    match &v["person"] {
        Value::Null => {}
        p => {
            assert!(p["id"].is_i64() && p["name"].is_string(), "{p}");
            assert_eq!(p.as_object().unwrap().len(), 2);
        }
    }
    assert!(v["similarity"].is_null() || v["similarity"].is_f64());
    if let Some(s) = v["similarity"].as_f64() {
        assert!((0.0..=1.0).contains(&s));
    }
    assert!(v["threshold"].is_f64());
    match &v["liveness"] {
        Value::Null => {}
        l => {
            assert!(
                (l["score"].is_f64() || l["score"].is_null()) && l["live"].is_boolean(),
                "{l}"
            );
            assert_eq!(l.as_object().unwrap().len(), 3);
            let cues = l["cues"].as_object().expect("cues");
            let mut names: Vec<&str> = cues.keys().map(String::as_str).collect();
            names.sort_unstable();
            assert_eq!(names, ["cnn", "motion", "pulse"], "{l}");
            assert!(cues.values().all(|c| c.is_null() || c.is_f64()), "{l}");
        }
    }
    let b = v["box"].as_array().expect("box is an array");
    assert_eq!(b.len(), 4);
    assert!(b.iter().all(Value::is_number));
    assert!(v["frames"].is_u64());
}

// ---- tests ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_with_the_full_schema_and_state_is_retained() {
    init_tracing();
    let broker = Mosquitto::start(Persistence::Off);
    let dir = TempDir::new("schema");
    let mut sub = Subscriber::start(broker.port, "sub-schema", false, &["fg1/#"]).await;
    let cameras = ["door".to_string(), "gate".to_string()];
    let (publisher, _commands) = Publisher::start(
        &config(broker.port, dir.path(), "fg1"),
        &CommandsConfig::default(),
        &cameras,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(sub.next_on("fg1/available").await.text(), "online");
    publisher.camera_status("door", true);

    let sent = [
        event("door", 1, EventKind::Recognized),
        event("door", 2, EventKind::Unknown),
        event("gate", 3, EventKind::Spoof),
    ];
    for e in &sent {
        publisher.publish_event(e).unwrap();
    }
    let got = sub.collect_on("/events", WAIT, |m| m.len() == 3).await;
    for (m, e) in got.iter().zip(&sent) {
        assert_eq!(m.topic, format!("fg1/{}/events", e.camera));
        assert!(!m.retain);
        let v = m.json();
        assert_schema(&v);
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), *e);
    }
    assert_eq!(got[0].json()["person"], json!({"id": 7, "name": "Ann"}));
    assert_eq!(got[0].json()["similarity"].to_string(), "0.71");
    assert_eq!(got[1].json()["person"], Value::Null);
    assert_eq!(
        got[2].json()["liveness"],
        json!({"score": 0.12, "live": false, "cues": {"cnn": 0.003, "pulse": null, "motion": 0.2}})
    );
    wait_until("outbox empty", WAIT, || publisher.outbox_depth() == 0).await;
    let m = publisher.metrics();
    assert_eq!((m.acked, m.publish_errors, m.reconnects), (3, 0, 0), "{m:?}");
    assert!(m.published >= 3);

    publisher.stats(json!({"cameras": {"door": {"fps": 10.0}}}));
    let stats = sub.next_on("fg1/stats").await;
    assert!(!stats.retain);
    assert_eq!(stats.json()["cameras"]["door"]["fps"], 10.0);
    publisher.command_result(json!({"request_id": "x", "ok": true}));
    assert_eq!(
        sub.next_on("fg1/cmd/result").await.json(),
        json!({"request_id": "x", "ok": true})
    );

    // Someone subscribing later learns the state from retained messages.
    let mut late = Subscriber::start(broker.port, "sub-late", false, &["fg1/available", "fg1/+/status"]).await;
    let mut retained = HashMap::new();
    for _ in 0..3 {
        let m = late.next().await;
        assert!(m.retain, "{} is retained", m.topic);
        retained.insert(m.topic.clone(), m.text());
    }
    assert_eq!(
        retained,
        HashMap::from([
            ("fg1/available".to_string(), "online".to_string()),
            ("fg1/door/status".to_string(), "online".to_string()),
            ("fg1/gate/status".to_string(), "offline".to_string()),
        ])
    );

    let report = publisher.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        report,
        ShutdownReport {
            sent: 0,
            left_in_outbox: 0,
            disconnected_cleanly: true
        }
    );
    let mut after = HashMap::new();
    for _ in 0..3 {
        let m = late.next().await;
        after.insert(m.topic.clone(), m.text());
    }
    assert!(after.values().all(|v| v == "offline"), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_nothing_and_keeps_order_per_camera() {
    init_tracing();
    let mut broker = Mosquitto::start(Persistence::OnExit);
    let dir = TempDir::new("outage");
    // A persistent session: the broker keeps our messages while we are cut off too.
    let mut sub = Subscriber::start(broker.port, "sub-outage", true, &["fg2/+/events"]).await;
    let cameras = ["door".to_string(), "gate".to_string()];
    let (publisher, _commands) = Publisher::start(
        &config(broker.port, dir.path(), "fg2"),
        &CommandsConfig::default(),
        &cameras,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    wait_until("connected", WAIT, || publisher.connected()).await;

    let started = Instant::now();
    let mut published = Vec::new();
    for i in 0..60u64 {
        let e = event(if i % 2 == 0 { "door" } else { "gate" }, i, EventKind::Unknown);
        publisher.publish_event(&e).unwrap();
        published.push(e);
        if i == 20 {
            broker.stop();
            wait_until("outage noticed", WAIT, || !publisher.connected()).await;
        }
        if i == 40 {
            assert!(
                publisher.outbox_depth() >= 20,
                "events wait in the outbox: {}",
                publisher.outbox_depth()
            );
            broker.run();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let wanted: HashSet<String> = published.iter().map(|e| e.event_id.to_string()).collect();
    let mut seen = HashSet::new();
    let got = sub
        .collect_on("/events", Duration::from_secs(30), |m| {
            if let Some(last) = m.last() {
                seen.insert(event_id(last));
            }
            wanted.is_subset(&seen)
        })
        .await;
    // Nothing but what was published; duplicates allowed; first sightings in order per camera.
    let mut first_seen: HashMap<String, Vec<u64>> = HashMap::new();
    let mut dedup = HashSet::new();
    for m in &got {
        let id = event_id(m);
        assert!(wanted.contains(&id), "unknown event {id}");
        if dedup.insert(id) {
            let v = m.json();
            first_seen
                .entry(v["camera"].as_str().unwrap().to_owned())
                .or_default()
                .push(v["track_id"].as_u64().unwrap());
        }
    }
    for (camera, tracks) in &first_seen {
        let expected: Vec<u64> = published
            .iter()
            .filter(|e| &e.camera == camera)
            .map(|e| e.track_id)
            .collect();
        assert_eq!(tracks, &expected, "order on {camera}");
    }
    wait_until("outbox empty", WAIT, || publisher.outbox_depth() == 0).await;
    let m = publisher.metrics();
    assert!(m.reconnects >= 1, "{m:?}");
    assert!(m.acked >= 60, "{m:?}");
    eprintln!(
        "outage test: 60 events, {} received ({} duplicates), {:?}, {m:?}",
        got.len(),
        got.len() - 60,
        started.elapsed()
    );
    let report = publisher.shutdown(Duration::from_secs(2)).await;
    assert!(report.disconnected_cleanly && report.left_in_outbox == 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_outlives_a_publisher_that_never_reached_the_broker() {
    init_tracing();
    let port = free_port();
    let dir = TempDir::new("restart");
    let cfg = config(port, dir.path(), "fg3");
    let cameras = ["door".to_string()];

    let (publisher, _commands) = Publisher::start(&cfg, &CommandsConfig::default(), &cameras, CancellationToken::new())
        .await
        .unwrap();
    let published: Vec<Event> = (0..5).map(|i| event("door", i, EventKind::Recognized)).collect();
    for e in &published {
        publisher.publish_event(e).unwrap();
    }
    assert_eq!(publisher.outbox_depth(), 5);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!publisher.connected());
    // Without a broker, shutdown gives up at the end of its grace period (bounded here
    // generously: the point is that it returns, not how fast).
    let report = tokio::time::timeout(Duration::from_secs(30), publisher.shutdown(Duration::from_millis(300)))
        .await
        .expect("shutdown without a broker returns after its grace period");
    assert_eq!(
        report,
        ShutdownReport {
            sent: 0,
            left_in_outbox: 5,
            disconnected_cleanly: false
        }
    );

    let broker = Mosquitto::start_on(port, Persistence::Off);
    let mut sub = Subscriber::start(broker.port, "sub-restart", false, &["fg3/+/events"]).await;
    let (publisher, _commands) = Publisher::start(&cfg, &CommandsConfig::default(), &cameras, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        publisher.outbox_depth(),
        5,
        "a new publisher starts from what the outbox holds"
    );
    let got = sub.collect_on("/events", WAIT, |m| m.len() == 5).await;
    let ids: Vec<String> = got.iter().map(event_id).collect();
    let expected: Vec<String> = published.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(ids, expected);
    wait_until("outbox empty", WAIT, || publisher.outbox_depth() == 0).await;
    let report = publisher.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        report,
        ShutdownReport {
            sent: 0,
            left_in_outbox: 0,
            disconnected_cleanly: true
        }
    );
    sub.assert_quiet(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_on_a_lost_connection_and_offline_on_a_clean_shutdown() {
    init_tracing();
    let broker = Mosquitto::start(Persistence::Off);
    let dir = TempDir::new("will");
    let cfg = config(broker.port, dir.path(), "fg4");
    let mut sub = Subscriber::start(broker.port, "sub-will", false, &["fg4/available"]).await;

    // Dropped without shutdown, as in a crash: the broker publishes the will.
    let (publisher, _commands) = Publisher::start(&cfg, &CommandsConfig::default(), &[], CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(sub.next().await.text(), "online");
    let clone = publisher.clone();
    drop(publisher);
    tokio::time::sleep(Duration::from_millis(100)).await;
    sub.assert_quiet(Duration::from_millis(100)).await; // a clone still holds the connection
    drop(clone);
    assert_eq!(sub.next().await.text(), "offline");
    let mut late = Subscriber::start(broker.port, "sub-will-late", false, &["fg4/available"]).await;
    let m = late.next().await;
    assert!(m.retain && m.text() == "offline", "{m:?}");

    // A clean shutdown says offline itself and disconnects (no will).
    let (publisher, _commands) = Publisher::start(&cfg, &CommandsConfig::default(), &[], CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(sub.next().await.text(), "online");
    let report = publisher.shutdown(Duration::from_secs(1)).await;
    assert!(report.disconnected_cleanly, "{report:?}");
    assert_eq!(sub.next().await.text(), "offline");
    sub.assert_quiet(Duration::from_millis(300)).await;
    drop(late);
}

// ---- remote commands ----------------------------------------------------------------------

/// A key as `openssl rand -hex 32 > command.key` writes it.
const COMMAND_KEY: &str = "3f9c2a7be1d04c5f8a6b2e9d7c1f0a4b5e8d3c2b1a0f9e8d7c6b5a4f3e2d1c0b\n";

fn write_key(dir: &Path, text: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("command.key");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn commands_on(key_file: std::path::PathBuf) -> CommandsConfig {
    CommandsConfig {
        enabled: true,
        key_file: Some(key_file),
        max_age_s: 60,
    }
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The envelope of `body`, signed with `key`.
fn signed_with(key: &str, body: &Value) -> String {
    CommandKey::from_bytes(key.as_bytes())
        .unwrap()
        .envelope(&body.to_string())
}

/// The next command for the application (the receiver blocks: off the async threads).
async fn next_command(rx: &crossbeam_channel::Receiver<Command>) -> Command {
    let rx = rx.clone();
    tokio::task::spawn_blocking(move || rx.recv_timeout(WAIT))
        .await
        .unwrap()
        .expect("no command for the application in time")
}

/// A small real JPEG.
fn photo() -> Vec<u8> {
    let img = image::RgbImage::from_fn(32, 24, |x, y| image::Rgb([(x * 8) as u8, (y * 10) as u8, 128]));
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&img)
        .unwrap();
    bytes
}

/// Publishes on the command topics as an integrator would.
struct Commander(Subscriber);

impl Commander {
    async fn start(port: u16, id: &str) -> Commander {
        Commander(Subscriber::start(port, id, false, &[&format!("{id}/nothing")]).await)
    }

    async fn send(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        let payload: Vec<u8> = payload.into();
        self.0
            .client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_refused_by_default_saying_how_to_turn_them_on() {
    init_tracing();
    let broker = Mosquitto::start(Persistence::Off);
    let dir = TempDir::new("commands-off");
    let mut results = Subscriber::start(broker.port, "sub-off", false, &["fg5/cmd/result", "fg5/available"]).await;
    let commander = Commander::start(broker.port, "commander-off").await;
    let (publisher, commands) = Publisher::start(
        &config(broker.port, dir.path(), "fg5"),
        &CommandsConfig::default(),
        &[],
        CancellationToken::new(),
    )
    .await
    .unwrap();
    // `online` follows our subscriptions on the same connection: they are in place.
    assert_eq!(results.next_on("fg5/available").await.text(), "online");

    // What an integrator might try first: a plain command, and a signed one.
    let image = base64::engine::general_purpose::STANDARD.encode(photo());
    commander
        .send(
            "fg5/cmd/enroll",
            json!({"request_id": "e1", "name": "Mallory", "image": image}).to_string(),
        )
        .await;
    let body = json!({"command": "remove", "timestamp": unix_now(), "request_id": "r1", "name": "Ann"});
    commander.send("fg5/cmd/remove", signed_with(COMMAND_KEY, &body)).await;
    for command in ["enroll", "remove"] {
        let r = results.next_on("fg5/cmd/result").await.json();
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(
            (r["command"].as_str(), r["code"].as_str()),
            (Some(command), Some("disabled"))
        );
        // Not read at all: not even the request id.
        assert_eq!(r["request_id"], Value::Null, "{r}");
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains("[commands] enabled") && error.contains("key_file"),
            "{error}"
        );
    }
    assert!(commands.try_recv().is_err(), "nothing reaches the application");
    let m = publisher.metrics();
    assert_eq!((m.commands_received, m.commands_rejected), (2, 2), "{m:?}");
    assert_eq!(m.command_rejections.disabled, 2, "{m:?}");
    publisher.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_commands_reach_the_application_and_forgeries_stale_ones_and_replays_do_not() {
    init_tracing();
    let broker = Mosquitto::start(Persistence::Off);
    let dir = TempDir::new("commands");
    let port = broker.port;
    let mut results = Subscriber::start(port, "sub-results", false, &["fg10/cmd/result", "fg10/available"]).await;
    let commander = Commander::start(port, "commander").await;
    let jpeg = photo();
    let image = base64::engine::general_purpose::STANDARD.encode(&jpeg);
    let now = unix_now();

    // Retained before the daemon subscribes: it would come back at every subscription.
    let retained = json!({"command": "enroll", "timestamp": now, "request_id": "m5", "name": "Eve", "image": image});
    commander
        .0
        .client
        .publish(
            "fg10/cmd/enroll",
            QoS::AtLeastOnce,
            true,
            signed_with(COMMAND_KEY, &retained),
        )
        .await
        .unwrap();

    let token = CancellationToken::new();
    let key_file = write_key(dir.path(), COMMAND_KEY);
    let (publisher, commands) = Publisher::start(
        &config(port, dir.path(), "fg10"),
        &commands_on(key_file),
        &[],
        token.clone(),
    )
    .await
    .unwrap();
    assert_eq!(results.next_on("fg10/available").await.text(), "online");

    let enroll = json!({
        "command": "enroll", "timestamp": now, "request_id": "e1", "name": "Ann", "image": image,
        "append": true, "largest": true, "metadata": {"badge": 1042}
    });
    let enroll_msg = signed_with(COMMAND_KEY, &enroll);
    commander.send("fg10/cmd/enroll", enroll_msg.clone()).await;
    let remove = json!({"command": "remove", "timestamp": now, "request_id": "r1", "name": "Bob"});
    commander
        .send("fg10/cmd/remove", signed_with(COMMAND_KEY, &remove))
        .await;
    assert_eq!(
        next_command(&commands).await,
        Command::Enroll {
            request_id: Some("e1".into()),
            name: "Ann".into(),
            image: jpeg.clone(),
            append: true,
            largest: true,
            force: false,
            metadata: Some(json!({"badge": 1042})),
        }
    );
    assert_eq!(
        next_command(&commands).await,
        Command::Remove {
            request_id: Some("r1".into()),
            name: "Bob".into()
        }
    );

    let refusals = send_forgeries(&commander, &enroll, &enroll_msg, now).await;
    let got = results
        .collect_on("/cmd/result", WAIT, |m| m.len() == refusals.len())
        .await;
    let mut seen: Vec<(String, String)> = Vec::new();
    for m in &got {
        let v = m.json();
        assert_eq!(v["ok"], false, "{v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "{v}");
        let code = v["code"].as_str().unwrap().to_owned();
        let id = v["request_id"].as_str().unwrap_or("-").to_owned();
        let expected = refusals.iter().find(|(c, i, _)| *c == code && *i == id);
        let (_, _, why) = expected.unwrap_or_else(|| panic!("unexpected refusal {v}"));
        assert!(error.contains(why), "{why:?} not in {v}");
        seen.push((code, id));
    }
    seen.sort();
    let mut wanted: Vec<(String, String)> = refusals
        .iter()
        .map(|(c, i, _)| (c.to_string(), i.to_string()))
        .collect();
    wanted.sort();
    assert_eq!(seen, wanted);
    assert!(
        commands.try_recv().is_err(),
        "no refused command reaches the application"
    );

    let m = publisher.metrics();
    assert_eq!((m.commands_received, m.commands_rejected), (2 + 9, 9), "{m:?}");
    let r = m.command_rejections;
    assert_eq!(
        (
            r.retained,
            r.malformed,
            r.bad_signature,
            r.invalid,
            r.stale,
            r.future,
            r.replayed
        ),
        (1, 1, 3, 1, 1, 1, 1),
        "{r:?}"
    );
    assert_eq!(r.disabled + r.busy + r.shutting_down, 0, "{r:?}");

    // The application answers through the publisher.
    publisher.command_result(json!({"request_id": "e1", "ok": true, "person": {"id": 1, "name": "Ann"}}));
    assert_eq!(results.next_on("fg10/cmd/result").await.json()["request_id"], "e1");

    // Stopping the application ends the command stream; later commands are refused.
    token.cancel();
    let rx = commands.clone();
    let ended = tokio::task::spawn_blocking(move || rx.recv_timeout(WAIT))
        .await
        .unwrap();
    assert_eq!(ended, Err(crossbeam_channel::RecvTimeoutError::Disconnected));
    let late = json!({"command": "remove", "timestamp": unix_now(), "request_id": "late", "name": "Bob"});
    commander.send("fg10/cmd/remove", signed_with(COMMAND_KEY, &late)).await;
    let late = results.next_on("fg10/cmd/result").await.json();
    assert_eq!(
        (late["request_id"].as_str(), late["code"].as_str()),
        (Some("late"), Some("shutting_down"))
    );
    assert!(late["error"].as_str().unwrap().contains("shutting down"), "{late}");
    commander
        .0
        .client
        .publish("fg10/cmd/enroll", QoS::AtLeastOnce, true, Vec::new())
        .await
        .unwrap();
    publisher.shutdown(Duration::from_secs(1)).await;
}

/// Sends one of each refused kind; returns (code, request_id or "-", part of the reason).
async fn send_forgeries(
    commander: &Commander,
    enroll: &Value,
    enroll_msg: &str,
    now: i64,
) -> Vec<(&'static str, &'static str, &'static str)> {
    let topic = "fg10/cmd/enroll";
    let body = enroll.to_string();
    // Unsigned, as before signing existed.
    let mut plain = enroll.clone();
    plain.as_object_mut().unwrap().remove("command");
    commander.send(topic, plain.to_string()).await;
    // A signature of the right shape that is not the body's.
    commander
        .send(topic, json!({"body": body, "signature": "00".repeat(32)}).to_string())
        .await;
    // Signed with another key.
    let other_key = "0000000000000000000000000000000000000000000000000000000000000000";
    commander.send(topic, signed_with(other_key, enroll)).await;
    // The signed body altered: someone else's name.
    let signature = serde_json::from_str::<Value>(enroll_msg).unwrap()["signature"].clone();
    let tampered = body.replace("\"Ann\"", "\"Mallory\"");
    assert_ne!(tampered, body);
    commander
        .send(topic, json!({"body": tampered, "signature": signature}).to_string())
        .await;
    // A remove signed and sent on the enroll topic.
    let remove = json!({"command": "remove", "timestamp": now, "request_id": "v1", "name": "Ann"});
    commander.send(topic, signed_with(COMMAND_KEY, &remove)).await;
    // An hour old, and an hour ahead.
    let mut stale = enroll.clone();
    stale["timestamp"] = json!(now - 3600);
    stale["request_id"] = json!("s1");
    commander.send(topic, signed_with(COMMAND_KEY, &stale)).await;
    let mut future = enroll.clone();
    future["timestamp"] = json!(now + 3600);
    future["request_id"] = json!("f1");
    commander.send(topic, signed_with(COMMAND_KEY, &future)).await;
    // The valid enrollment captured and sent again.
    commander.send(topic, enroll_msg.to_owned()).await;
    vec![
        ("retained", "m5", "retain"),
        ("malformed", "-", "commands must be signed"),
        ("bad_signature", "-", "signature does not match"),
        ("bad_signature", "-", "signature does not match"),
        ("bad_signature", "-", "signature does not match"),
        ("invalid", "v1", "cmd/enroll"),
        ("stale", "s1", "commands.max_age_s"),
        ("future", "f1", "ahead of the daemon's clock"),
        ("replayed", "e1", "replayed"),
    ]
}

/// Runs a shell script in `dir`; stdout on success.
fn shell(dir: &Path, script: &str, envs: &[(&str, &str)]) -> String {
    let out = Process::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .envs(envs.iter().copied())
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{script}\nfailed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The recipe of docs/remote-commands.md, word for word but for the broker's port and
/// the topic prefix. Needs openssl, jq and mosquitto_pub (Debian: apt-get install openssl jq
/// mosquitto-clients).
const SHELL_RECIPE: &str = r#"set -euo pipefail
base64 -w0 photo.jpg |
  jq -Rc --arg name "Ann" --arg id "sh1" --argjson ts "$(date +%s)" \
    '{command: "enroll", timestamp: $ts, request_id: $id, name: $name, image: .}' > body.json
sig=$(openssl dgst -sha256 -hmac "$(cat command.key)" -r body.json | cut -d' ' -f1)
jq -Rsc --arg signature "$sig" '{body: ., signature: $signature}' body.json > envelope.json
mosquitto_pub -p "$PORT" -q 1 -t "$PREFIX/cmd/enroll" -f envelope.json
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_signed_with_openssl_and_jq_or_facegate_sign_are_accepted() {
    init_tracing();
    let broker = Mosquitto::start(Persistence::Off);
    let dir = TempDir::new("commands-shell");
    let d = dir.path();
    shell(d, "openssl rand -hex 32 > command.key && chmod 600 command.key", &[]);
    std::fs::write(d.join("photo.jpg"), photo()).unwrap();
    let mut results = Subscriber::start(broker.port, "sub-shell", false, &["fg11/cmd/result", "fg11/available"]).await;
    let (publisher, commands) = Publisher::start(
        &config(broker.port, d, "fg11"),
        &commands_on(d.join("command.key")),
        &[],
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(results.next_on("fg11/available").await.text(), "online");
    let port = broker.port.to_string();
    let envs = [("PORT", port.as_str()), ("PREFIX", "fg11")];

    shell(d, SHELL_RECIPE, &envs);
    assert_eq!(
        next_command(&commands).await,
        Command::Enroll {
            request_id: Some("sh1".into()),
            name: "Ann".into(),
            image: photo(),
            append: false,
            largest: false,
            force: false,
            metadata: None,
        }
    );

    // `facegate sign` piped into mosquitto_pub, as documented.
    let facegate = env!("CARGO_BIN_EXE_facegate");
    let enroll = format!(
        "{facegate} sign --key-file command.key enroll --name Bob --image photo.jpg --append --largest \
         --metadata '{{\"badge\": 1042}}' --request-id cli1 | mosquitto_pub -p $PORT -q 1 -t $PREFIX/cmd/enroll -s"
    );
    shell(d, &enroll, &envs);
    assert_eq!(
        next_command(&commands).await,
        Command::Enroll {
            request_id: Some("cli1".into()),
            name: "Bob".into(),
            image: photo(),
            append: true,
            largest: true,
            force: false,
            metadata: Some(json!({"badge": 1042})),
        }
    );
    let remove = format!(
        "{facegate} sign --key-file command.key remove --name Bob | mosquitto_pub -p $PORT -q 1 -t $PREFIX/cmd/remove -s"
    );
    shell(d, &remove, &envs);
    assert_eq!(
        next_command(&commands).await,
        Command::Remove {
            request_id: None,
            name: "Bob".into()
        }
    );
    let m = publisher.metrics();
    assert_eq!((m.commands_received, m.commands_rejected), (3, 0), "{m:?}");

    // What `facegate sign` prints: the envelope, its body the command.
    let printed = shell(
        d,
        &format!("{facegate} sign --key-file command.key remove --name Eve"),
        &[],
    );
    let envelope: Value = serde_json::from_str(printed.trim()).unwrap();
    let body: Value = serde_json::from_str(envelope["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (body["command"].as_str(), body["name"].as_str()),
        (Some("remove"), Some("Eve"))
    );
    assert!(body["timestamp"].is_i64(), "{body}");
    assert_eq!(envelope["signature"].as_str().unwrap().len(), 64);

    // A key too short is refused at start, naming the setting; so is a missing one.
    std::fs::write(d.join("short.key"), "secret\n").unwrap();
    for (file, why) in [("short.key", "at least 32"), ("missing.key", "No such file")] {
        let other = TempDir::new("commands-bad-key");
        let err = Publisher::start(
            &config(broker.port, other.path(), "fg11b"),
            &commands_on(d.join(file)),
            &[],
            CancellationToken::new(),
        )
        .await
        .err()
        .expect("a daemon without a usable key must not start")
        .to_string();
        assert!(
            err.contains("commands.key_file") && err.contains(file) && err.contains(why),
            "{err}"
        );
        assert!(!err.contains("secret"), "the key is never shown: {err}");
    }
    publisher.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_broker_serves_subscribers_and_refuses_a_second_start() {
    init_tracing();
    let port = free_port();
    let dir = TempDir::new("embedded");
    let mut cfg = config(port, dir.path(), "fg6");
    cfg.host = None;
    let cameras = ["door".to_string()];
    let (publisher, _commands) = Publisher::start(&cfg, &CommandsConfig::default(), &cameras, CancellationToken::new())
        .await
        .unwrap();
    wait_until("connected to the in-process broker", WAIT, || publisher.connected()).await;
    publisher.camera_status("door", true);

    let mut sub = Subscriber::start(port, "sub-embedded", false, &["fg6/#"]).await;
    // Retained state first; the camera's `online` may still be on its way behind `offline`.
    let mut state: HashMap<String, (String, bool)> = HashMap::new();
    let door_online = |s: &HashMap<String, (String, bool)>| s.get("fg6/door/status").is_some_and(|v| v.0 == "online");
    while !(state.contains_key("fg6/available") && door_online(&state)) {
        let m = sub.next().await;
        state.insert(m.topic.clone(), (m.text(), m.retain));
    }
    assert_eq!(state["fg6/available"], ("online".to_string(), true));

    let sent: Vec<Event> = (0..3).map(|i| event("door", i, EventKind::Recognized)).collect();
    for e in &sent {
        publisher.publish_event(e).unwrap();
    }
    let got = sub.collect_on("/events", WAIT, |m| m.len() == 3).await;
    for (m, e) in got.iter().zip(&sent) {
        assert_schema(&m.json());
        assert_eq!(event_id(m), e.event_id.to_string());
    }
    wait_until("outbox empty", WAIT, || publisher.outbox_depth() == 0).await;

    let other = TempDir::new("embedded-2");
    let mut cfg2 = config(port, other.path(), "fg6b");
    cfg2.host = None;
    let err = Publisher::start(&cfg2, &CommandsConfig::default(), &cameras, CancellationToken::new())
        .await
        .err()
        .expect("a second in-process broker on the same port must fail")
        .to_string();
    assert!(
        err.contains("already in use") && err.contains(&port.to_string()),
        "{err}"
    );

    let report = publisher.shutdown(Duration::from_secs(2)).await;
    assert!(report.disconnected_cleanly, "{report:?}");
    let offline = sub.next_on("fg6/available").await;
    assert_eq!(offline.text(), "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_flight_when_the_broker_dies_are_sent_again() {
    init_tracing();
    let mut broker = Mosquitto::start(Persistence::EveryChange);
    let dir = TempDir::new("inflight");
    let mut sub = Subscriber::start(broker.port, "sub-inflight", true, &["fg7/+/events"]).await;
    let cameras = ["door".to_string()];
    let (publisher, _commands) = Publisher::start(
        &config(broker.port, dir.path(), "fg7"),
        &CommandsConfig::default(),
        &cameras,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    wait_until("connected", WAIT, || publisher.connected()).await;
    let published: Vec<Event> = (0..15).map(|i| event("door", i, EventKind::Unknown)).collect();
    for e in &published[..5] {
        publisher.publish_event(e).unwrap();
    }
    let mut got = sub.collect_on("/events", WAIT, |m| m.len() == 5).await;
    wait_until("first five acknowledged", WAIT, || publisher.outbox_depth() == 0).await;

    // Written to the broker's socket, never acknowledged: the broker is frozen, then dies.
    broker.pause();
    for e in &published[5..] {
        publisher.publish_event(e).unwrap();
    }
    wait_until("ten more handed to the broker", WAIT, || {
        publisher.metrics().published == 15
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(publisher.outbox_depth(), 10, "unacknowledged events stay in the outbox");
    assert_eq!(publisher.metrics().acked, 5);
    broker.kill();
    wait_until("outage noticed", WAIT, || !publisher.connected()).await;
    broker.run();

    let wanted: Vec<String> = published.iter().map(|e| e.event_id.to_string()).collect();
    got.extend(
        sub.collect_on("/events", WAIT, |m| {
            let ids: HashSet<String> = m.iter().map(event_id).collect();
            wanted[5..].iter().all(|w| ids.contains(w))
        })
        .await,
    );
    // Duplicates allowed (the broker too may redeliver after its restart); first sightings in order.
    let mut order = Vec::new();
    for id in got.iter().map(event_id) {
        if !order.contains(&id) {
            order.push(id);
        }
    }
    assert_eq!(order, wanted, "all delivered, in order");
    wait_until("outbox empty", WAIT, || publisher.outbox_depth() == 0).await;
    let m = publisher.metrics();
    assert!(m.published >= 25 && m.acked >= 15 && m.reconnects == 1, "{m:?}");
    publisher.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stops_after_the_messages_asked_for_and_fails_clearly_without_a_broker() {
    init_tracing();
    let broker = Mosquitto::start(Persistence::Off);
    let dir = TempDir::new("watch");
    let cfg = config(broker.port, dir.path(), "fg8");
    let cameras = ["door".to_string(), "gate".to_string()];
    let (publisher, _commands) = Publisher::start(&cfg, &CommandsConfig::default(), &cameras, CancellationToken::new())
        .await
        .unwrap();
    let mut sub = Subscriber::start(broker.port, "sub-watch", false, &["fg8/gate/status"]).await;
    assert_eq!(sub.next().await.text(), "offline");

    // Retained: available and two camera states, then one live event.
    let watching = tokio::spawn({
        let mut cfg = cfg.clone();
        cfg.client_id = "watcher".into();
        async move {
            facegate::events::watch(
                &cfg,
                &WatchOptions {
                    json: true,
                    stop_after: Some(4),
                    ..Default::default()
                },
            )
            .await
        }
    });
    // Live events until it has had its four (it may subscribe after the first ones).
    let deadline = Instant::now() + WAIT;
    for track in 0.. {
        if watching.is_finished() {
            break;
        }
        assert!(Instant::now() < deadline, "watch did not return after 4 messages");
        publisher
            .publish_event(&event("door", track, EventKind::Recognized))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watching.await.unwrap().unwrap();

    let mut unreachable = cfg.clone();
    unreachable.port = free_port();
    let err = facegate::events::watch(&unreachable, &WatchOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect to the MQTT broker"), "{err}");
    publisher.shutdown(Duration::from_secs(1)).await;

    // Started before its broker, with time to wait: it connects once the broker is up.
    let later = TempDir::new("watch-later");
    let mut early = config(free_port(), later.path(), "fg8b");
    early.client_id = "watcher-early".into();
    let watching = tokio::spawn({
        let cfg = early.clone();
        async move {
            facegate::events::watch(
                &cfg,
                &WatchOptions {
                    json: true,
                    stop_after: Some(1),
                    connect_wait: Duration::from_secs(60),
                    ..Default::default()
                },
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!watching.is_finished(), "watch gave up while told to wait");
    let _broker = Mosquitto::start_on(early.port, Persistence::Off);
    let mut daemon_side = early.clone();
    daemon_side.client_id = "daemon-late".into();
    let (publisher, _commands) =
        Publisher::start(&daemon_side, &CommandsConfig::default(), &[], CancellationToken::new())
            .await
            .unwrap();
    // `available` is retained: watch prints it whenever it subscribes, and returns.
    tokio::time::timeout(Duration::from_secs(60), watching)
        .await
        .expect("watch connected once the broker was up")
        .unwrap()
        .unwrap();
    publisher.shutdown(Duration::from_secs(1)).await;

    // --until-offline: the retained `offline` of the run that just ended does not stop it;
    // the next daemon going offline does.
    let until_offline = WatchOptions {
        until_offline: true,
        ..Default::default()
    };
    let watching = tokio::spawn({
        let cfg = early.clone();
        let opts = until_offline.clone();
        async move { facegate::events::watch(&cfg, &opts).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !watching.is_finished(),
        "a retained offline stopped watch --until-offline"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !watching.is_finished() {
        assert!(
            Instant::now() < deadline,
            "watch --until-offline did not stop on offline"
        );
        // Until watch has subscribed, an offline may pass it by: go online and offline again.
        let (publisher, _commands) =
            Publisher::start(&daemon_side, &CommandsConfig::default(), &[], CancellationToken::new())
                .await
                .unwrap();
        wait_until("connected", WAIT, || publisher.connected()).await;
        publisher.shutdown(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watching.await.unwrap().unwrap();
}

/// Runs openssl; the TLS test needs it like the others need mosquitto.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Process::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed for the TLS test (Debian: apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC_KEY: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/// A self-signed CA: `{ca}.pem`, `{ca}.key`.
fn make_ca(dir: &Path, ca: &str) {
    let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
    let mut args = vec!["req", "-x509", "-days", "1", "-subj", "/CN=facegate test CA"];
    args.extend(EC_KEY);
    args.extend(["-keyout", &key, "-out", &pem]);
    openssl(dir, &args);
}

/// A certificate `{name}.pem` (key `{name}.key`) signed by `{ca}` with the given extensions.
fn make_certificate(dir: &Path, ca: &str, name: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
    let (key, csr, pem, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    let subject = format!("/CN={name}");
    let mut args = vec!["req", "-subj", &subject];
    args.extend(EC_KEY);
    args.extend(["-keyout", &key, "-out", &csr]);
    openssl(dir, &args);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate() {
    init_tracing();
    let certs = TempDir::new("certs");
    make_ca(certs.path(), "ca");
    make_ca(certs.path(), "other-ca");
    make_certificate(
        certs.path(),
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    make_certificate(certs.path(), "ca", "client", "extendedKeyUsage=clientAuth\n");
    let tls_port = free_port();
    let c = certs.path().to_path_buf();
    let broker = Mosquitto::start_with(free_port(), Persistence::Off, |_| {
        format!(
            "listener {tls_port} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\nrequire_certificate true\n",
            c.display()
        )
    });
    let mut sub = Subscriber::start(broker.port, "sub-tls", false, &["fg9/+/events"]).await;
    let dir = TempDir::new("tls");
    let mut cfg = config(tls_port, dir.path(), "fg9");
    cfg.ca_file = Some(c.join("ca.pem"));
    cfg.client_cert = Some(c.join("client.pem"));
    cfg.client_key = Some(c.join("client.key"));
    let cameras = ["door".to_string()];
    let (publisher, _commands) = Publisher::start(&cfg, &CommandsConfig::default(), &cameras, CancellationToken::new())
        .await
        .unwrap();
    let e = event("door", 1, EventKind::Recognized);
    publisher.publish_event(&e).unwrap();
    assert_eq!(event_id(&sub.next().await), e.event_id.to_string());
    assert!(publisher.shutdown(Duration::from_secs(1)).await.disconnected_cleanly);

    // A broker whose certificate the configured CA did not sign is not talked to.
    let other = TempDir::new("tls-other");
    let mut wrong = config(tls_port, other.path(), "fg9b");
    wrong.ca_file = Some(c.join("other-ca.pem"));
    wrong.client_cert = cfg.client_cert.clone();
    wrong.client_key = cfg.client_key.clone();
    let (publisher, _commands) =
        Publisher::start(&wrong, &CommandsConfig::default(), &cameras, CancellationToken::new())
            .await
            .unwrap();
    publisher.publish_event(&event("door", 2, EventKind::Unknown)).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!publisher.connected());
    assert_eq!(publisher.outbox_depth(), 1);
    publisher.shutdown(Duration::from_millis(100)).await;
    sub.assert_quiet(Duration::from_millis(100)).await;

    // A file that is not PEM is refused at start, naming it.
    let mut broken = config(tls_port, other.path(), "fg9c");
    broken.ca_file = Some(c.join("server.ext"));
    let err = Publisher::start(&broken, &CommandsConfig::default(), &cameras, CancellationToken::new())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("server.ext") && err.contains("no PEM certificate"),
        "{err}"
    );
}

// ---- holding events for a subscriber (in-process broker) ---------------------------------

fn in_process(dir: &Path, prefix: &str, hold_s: u64) -> MqttConfig {
    let mut cfg = config(free_port(), dir, prefix);
    cfg.host = None;
    cfg.hold_for_subscriber_s = hold_s;
    cfg
}

fn ids_of_events(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.event_id.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_broker_holds_events_until_someone_subscribes_to_them() {
    init_tracing();
    let dir = TempDir::new("hold");
    let cfg = in_process(dir.path(), "fg9", 3600);
    let port = cfg.port;
    let cameras = ["door".to_string(), "gate".to_string()];
    let (publisher, _commands) = Publisher::start(&cfg, &CommandsConfig::default(), &cameras, CancellationToken::new())
        .await
        .unwrap();
    wait_until("connected", WAIT, || publisher.connected()).await;
    let sent: Vec<Event> = (0..6)
        .map(|i| event(if i % 2 == 0 { "door" } else { "gate" }, i, EventKind::Unknown))
        .collect();
    for e in &sent {
        publisher.publish_event(e).unwrap();
    }

    // One camera's events, or other topics, do not end the hold: the other camera's events
    // would reach nobody.
    let mut door_only = Subscriber::start(port, "sub-hold-door", false, &["fg9/door/events", "fg9/+/status"]).await;
    publisher.camera_status("gate", true);
    // Statuses flow meanwhile; the link handed this one over in the same turn as it would
    // have handed over events.
    while door_only.next_on("fg9/gate/status").await.text() != "online" {}
    assert_eq!(publisher.outbox_depth(), 6, "events wait in the outbox");
    assert_eq!(publisher.metrics().published, 0, "no event sent before a subscriber");

    // A subscriber of every camera's events: the backlog goes out, whole and in order.
    let mut every = Subscriber::start(port, "sub-hold-all", false, &["fg9/+/events"]).await;
    let got = every.collect_on("/events", WAIT, |m| m.len() == 6).await;
    assert_eq!(got.iter().map(event_id).collect::<Vec<_>>(), ids_of_events(&sent));
    let door = door_only.collect_on("/events", WAIT, |m| m.len() == 3).await;
    let door_sent: Vec<Event> = sent.iter().filter(|e| e.camera == "door").cloned().collect();
    assert_eq!(door.iter().map(event_id).collect::<Vec<_>>(), ids_of_events(&door_sent));
    wait_until("outbox empty", WAIT, || publisher.outbox_depth() == 0).await;

    // From then on events go out as they come.
    let later = event("gate", 7, EventKind::Recognized);
    publisher.publish_event(&later).unwrap();
    assert_eq!(
        event_id(&every.next_on("fg9/gate/events").await),
        later.event_id.to_string()
    );
    let report = publisher.shutdown(Duration::from_secs(2)).await;
    assert!(report.disconnected_cleanly && report.left_in_outbox == 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_events_survive_a_shutdown_and_go_out_when_the_hold_is_over_or_off() {
    init_tracing();
    let dir = TempDir::new("hold-time");
    let cameras = ["door".to_string()];
    let held: Vec<Event> = (0..3).map(|i| event("door", i, EventKind::Unknown)).collect();

    // Nobody subscribes: a shutdown keeps the events for the next start, without waiting
    // out a grace period that could not change that (the guard is far below the grace).
    let cfg = in_process(dir.path(), "fg11", 3600);
    let (publisher, _commands) = Publisher::start(&cfg, &CommandsConfig::default(), &cameras, CancellationToken::new())
        .await
        .unwrap();
    for e in &held {
        publisher.publish_event(e).unwrap();
    }
    wait_until("connected", WAIT, || publisher.connected()).await;
    let report = tokio::time::timeout(Duration::from_secs(120), publisher.shutdown(Duration::from_secs(600)))
        .await
        .expect("a held outbox does not wait out the grace period");
    assert_eq!(
        report,
        ShutdownReport {
            sent: 0,
            left_in_outbox: 3,
            disconnected_cleanly: true
        }
    );

    // The next start holds them for a second, then sends them whether anyone listens or not.
    // (rumqttd cannot be stopped: each start gets a port of its own, the outbox is the same.)
    let cfg = in_process(dir.path(), "fg11", 1);
    let (publisher, _commands) = Publisher::start(&cfg, &CommandsConfig::default(), &cameras, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(publisher.outbox_depth(), 3);
    wait_until("held events sent once the hold is over", WAIT, || {
        publisher.outbox_depth() == 0
    })
    .await;
    assert_eq!(publisher.metrics().acked, 3);
    publisher.shutdown(Duration::from_secs(2)).await;

    // hold_for_subscriber_s = 0: no hold at all, as before it existed.
    let cfg = in_process(dir.path(), "fg11", 0);
    let (publisher, _commands) = Publisher::start(&cfg, &CommandsConfig::default(), &cameras, CancellationToken::new())
        .await
        .unwrap();
    for e in &held {
        let mut e = e.clone();
        e.event_id = uuid::Uuid::new_v4();
        publisher.publish_event(&e).unwrap();
    }
    wait_until("sent at once", WAIT, || publisher.metrics().acked == 3).await;
    let report = publisher.shutdown(Duration::from_secs(2)).await;
    assert!(report.disconnected_cleanly && report.left_in_outbox == 0, "{report:?}");
}

// ---- facegate watch, the binary ------------------------------------------------------------

/// Generous: only there so that a hang fails instead of blocking the suite.
const LIMIT: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Track ids of the event lines, in printed order (`… (…, track 3, 12 frames)`).
fn tracks(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| {
            let rest = &l[l.find(", track ").or_else(|| l.find("(track "))?..];
            let digits: String = rest
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

#[test]
fn watch_filters_events_counts_only_events_and_shows_command_results() {
    let broker = Mosquitto::start(Persistence::Off);
    let dir = TempDir::new("watch-cli");
    let rt = runtime();
    let cameras = ["door".to_string(), "gate".to_string()];
    let cfg = config(broker.port, dir.path(), "fg10");
    let (publisher, _commands) = rt
        .block_on(Publisher::start(
            &cfg,
            &CommandsConfig::default(),
            &cameras,
            CancellationToken::new(),
        ))
        .unwrap();
    let port = broker.port.to_string();
    let envs = [
        ("FACEGATE__MQTT__HOST", "127.0.0.1"),
        ("FACEGATE__MQTT__PORT", port.as_str()),
        ("FACEGATE__MQTT__PREFIX", "fg10"),
    ];
    let mut every = Watch::start(&["--count", "3"], &envs);
    let mut gate = Watch::start(&["--camera", "gate", "--type", "unknown,spoof", "--count", "2"], &envs);
    let args = [
        "--person",
        "Ann",
        "--camera",
        "door",
        "--type",
        "recognized",
        "--type",
        "spoof",
    ];
    let mut ann = Watch::start(&[&args[..], &["--count", "2"]].concat(), &envs);
    // Subscribed once the availability (retained, or live) is printed.
    for w in [&every, &gate, &ann] {
        w.wait_for("availability", LIMIT, |l| {
            l.iter().any(|l| l.ends_with(" fg10  daemon  online"))
        });
    }

    // A command result is printed, and not counted.
    publisher.command_result(
        json!({"request_id": "r1", "command": "enroll", "ok": false, "code": "disabled",
        "error": "disabled: remote commands are off"}),
    );
    let refused = " cmd  enroll  refused  disabled: remote commands are off  (request r1)";
    for w in [&every, &gate, &ann] {
        w.wait_for("the command result", LIMIT, |l| l.iter().any(|l| l.ends_with(refused)));
    }
    let mut spoof = event("gate", 4, EventKind::Spoof);
    spoof.person = Some(PersonRef {
        id: 7,
        name: "Ann".into(),
    });
    let sent = [
        event("door", 1, EventKind::Recognized),
        event("gate", 2, EventKind::Unknown),
        event("door", 3, EventKind::Unknown),
        spoof,
        event("gate", 5, EventKind::Recognized),
        event("door", 6, EventKind::Recognized),
    ];
    for e in &sent {
        publisher.publish_event(e).unwrap();
    }

    let (status, lines, stderr) = every.wait_exit(LIMIT);
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(tracks(&lines), [1, 2, 3], "three events, then it stops:\n{lines:#?}");
    assert!(
        lines.iter().any(|l| l.ends_with(" door  camera  offline")),
        "{lines:#?}"
    );

    let (status, lines, stderr) = gate.wait_exit(LIMIT);
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(tracks(&lines), [2, 4], "gate's unknown and spoof events:\n{lines:#?}");
    assert!(
        lines.iter().any(|l| l.ends_with(" gate  camera  offline")),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains(" door  ")), "only gate:\n{lines:#?}");

    let (status, lines, stderr) = ann.wait_exit(LIMIT);
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(tracks(&lines), [1, 6], "Ann at the door:\n{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains(" door  recognized  Ann  (")),
        "{lines:#?}"
    );
    rt.block_on(publisher.shutdown(Duration::from_secs(2)));
}

#[test]
fn watch_without_a_broker_is_an_environment_error_in_one_line() {
    let port = free_port().to_string();
    let one_line = |out: &std::process::Output| {
        assert_eq!(out.status.code(), Some(8), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with(&format!(
                "error: cannot connect to the MQTT broker at 127.0.0.1:{port}: "
            )),
            "{err}"
        );
        err
    };
    // No mqtt.host: watch looked for the in-process broker of a daemon that does not run.
    let err = one_line(&common::facegate(&["watch"], &[("FACEGATE__MQTT__PORT", &port)]));
    assert!(
        err.contains("facegate run") && err.contains("--wait") && err.contains("mqtt.host"),
        "{err}"
    );
    // A broker named in mqtt.host that does not answer, even after --wait.
    let envs = [
        ("FACEGATE__MQTT__HOST", "127.0.0.1"),
        ("FACEGATE__MQTT__PORT", port.as_str()),
    ];
    let err = one_line(&common::facegate(&["watch", "--wait", "0.3"], &envs));
    assert!(err.contains("check mqtt.host and mqtt.port"), "{err}");
}

// ---- deploy/install.sh: Debian's mosquitto for production -----------------------------------

/// Mosquitto with the configuration `deploy/install.sh --root` wrote, under a main file like
/// Debian's (persistence on, `include_dir conf.d`); killed on drop.
struct InstalledBroker {
    root: std::path::PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl InstalledBroker {
    fn start(root: &Path, port: u16) -> InstalledBroker {
        let me = Process::new("id").arg("-un").output().unwrap();
        let data = root.join("var/lib/mosquitto");
        std::fs::create_dir_all(&data).unwrap();
        let main = format!(
            "persistence true\npersistence_location {}/\nlog_dest stderr\nuser {}\ninclude_dir {}\n",
            data.display(),
            String::from_utf8_lossy(&me.stdout).trim(),
            root.join("etc/mosquitto/conf.d").display()
        );
        std::fs::write(root.join("mosquitto.conf"), main).unwrap();
        let mut broker = InstalledBroker {
            root: root.to_path_buf(),
            port,
            child: None,
        };
        broker.run();
        broker
    }

    fn run(&mut self) {
        let log = std::fs::File::create(self.root.join("mosquitto.log")).unwrap();
        let mut child = Process::new("mosquitto")
            .arg("-c")
            .arg(self.root.join("mosquitto.conf"))
            .stdout(std::process::Stdio::from(log.try_clone().unwrap()))
            .stderr(std::process::Stdio::from(log))
            .spawn()
            .expect("mosquitto (Debian) is needed");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let log = std::fs::read_to_string(self.root.join("mosquitto.log")).unwrap_or_default();
            assert!(child.try_wait().unwrap().is_none(), "mosquitto stopped:\n{log}");
            assert!(started.elapsed() < LIMIT, "mosquitto does not listen:\n{log}");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    /// SIGTERM: mosquitto saves sessions and queued messages, then exits.
    fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        assert!(
            Process::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
        child.wait().unwrap();
    }
}

impl Drop for InstalledBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every file under `dir` with its content.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

fn install_sh(root: &Path, port: u16) {
    let out = Process::new("bash")
        .arg(common::repo().join("deploy/install.sh"))
        .args(["--mqtt-only", "--mqtt-port", &port.to_string(), "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// mosquitto_pub with QoS 1: it returns once the broker has acknowledged the message.
fn publish_as(port: u16, login: Option<(&str, &str)>, topic: &str, message: &str) -> std::process::Output {
    let mut cmd = Process::new("mosquitto_pub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        "1",
        "-t",
        topic,
        "-m",
        message,
    ]);
    if let Some((user, password)) = login {
        cmd.args(["-u", user, "-P", password]);
    }
    cmd.output()
        .expect("mosquitto_pub (Debian mosquitto-clients) is needed")
}

fn login_options(port: u16, client_id: &str, user: &str, password: &str, persistent: bool) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_clean_session(!persistent);
    options.set_credentials(user, password);
    options
}

/// What `deploy/install.sh --root` made for the broker: its passwords and the watch settings.
struct Installed {
    daemon_pw: String,
    watch_pw: String,
    watch_toml: std::path::PathBuf,
}

/// Runs install.sh three times: the second run changes nothing, the third keeps someone's
/// own users and ACL lines.
fn install_and_check_the_files(root: &Path, port: u16) -> Installed {
    install_sh(root, port);
    let first = snapshot(root);
    install_sh(root, port);
    assert!(first == snapshot(root), "a second run changes nothing");
    let etc = root.join("etc");
    let (acl, passwd) = (
        etc.join("mosquitto/facegate.acl"),
        etc.join("mosquitto/facegate.passwd"),
    );
    let mut text = std::fs::read_to_string(&acl).unwrap();
    text += "user facegate-admin\ntopic write facegate/cmd/enroll\n";
    std::fs::write(&acl, &text).unwrap();
    let added = Process::new("mosquitto_passwd")
        .arg("-b")
        .arg(&passwd)
        .args(["facegate-admin", "secret"])
        .status()
        .unwrap();
    assert!(added.success());
    install_sh(root, port);
    assert_eq!(std::fs::read_to_string(&acl).unwrap(), text);
    assert!(std::fs::read_to_string(&passwd).unwrap().contains("\nfacegate-admin:"));
    let conf = std::fs::read_to_string(etc.join("mosquitto/conf.d/facegate.conf")).unwrap();
    assert!(conf.contains(&format!("\nlistener {port} 127.0.0.1\n")), "{conf}");
    let env = std::fs::read_to_string(etc.join("facegate/mqtt.env")).unwrap();
    assert!(env.contains("FACEGATE__MQTT__HOST=127.0.0.1\n") && env.contains("FACEGATE__MQTT__USERNAME=facegate\n"));
    let daemon_pw = env
        .lines()
        .find_map(|l| l.strip_prefix("FACEGATE__MQTT__PASSWORD="))
        .unwrap()
        .to_string();
    let watch_toml = etc.join("facegate/watch.toml");
    let watch_pw = std::fs::read_to_string(&watch_toml)
        .unwrap()
        .lines()
        .find_map(|l| Some(l.strip_prefix("password = \"")?.strip_suffix('"')?.to_string()))
        .unwrap();
    Installed {
        daemon_pw,
        watch_pw,
        watch_toml,
    }
}

/// Nobody without an account, nor with a wrong password.
fn assert_logins_refused(port: u16, daemon_pw: &str) {
    for login in [None, Some(("facegate", "wrong")), Some(("facegate-watch", daemon_pw))] {
        let out = publish_as(port, login, "facegate/door/events", "{}");
        assert!(!out.status.success(), "{login:?} got in");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not authorised"),
            "{out:?}"
        );
    }
}

/// The daemon (`Publisher`) logged in as install.sh set it up.
fn installed_daemon(rt: &tokio::runtime::Runtime, port: u16, dir: &Path, daemon_pw: &str) -> Publisher {
    let cfg = MqttConfig {
        username: Some("facegate".into()),
        password: Some(daemon_pw.into()),
        ..config(port, dir, "facegate")
    };
    let (publisher, _commands) = rt
        .block_on(Publisher::start(
            &cfg,
            &CommandsConfig::default(),
            &["door".to_string()],
            CancellationToken::new(),
        ))
        .unwrap();
    rt.block_on(wait_until("the daemon logged in", WAIT, || publisher.connected()));
    publisher
}

#[test]
fn install_sh_sets_up_mosquitto_so_that_each_user_may_do_what_it_must_and_no_more() {
    let root = TempDir::new("install");
    let port = free_port();
    let Installed {
        daemon_pw,
        watch_pw,
        watch_toml,
    } = install_and_check_the_files(root.path(), port);
    let mut broker = InstalledBroker::start(root.path(), port);
    assert_logins_refused(port, &daemon_pw);
    let rt = runtime();
    let dir = TempDir::new("install-daemon");
    let publisher = installed_daemon(&rt, port, dir.path(), &daemon_pw);
    let integration = login_options(port, "integration", "facegate-watch", &watch_pw, true);
    let mut integration = rt.block_on(Subscriber::start_with(integration, &["facegate/+/events"]));
    let observer = login_options(port, "observer", "facegate", &daemon_pw, false);
    let mut observer = rt.block_on(Subscriber::start_with(
        observer,
        &["facegate/cmd/#", "facegate/+/events"],
    ));
    let mut watch = Watch::start(&["--config", common::path_str(&watch_toml), "--count", "2"], &[]);
    watch.wait_for("availability", LIMIT, |l| {
        l.iter().any(|l| l.ends_with(" facegate  daemon  online"))
    });

    // The read-only user cannot command; the daemon's user cannot read events; the daemon
    // reads commands: the first message the daemon's user sees is the daemon's user's command.
    let watcher = Some(("facegate-watch", watch_pw.as_str()));
    assert!(publish_as(port, watcher, "facegate/cmd/enroll", "A").status.success());
    let e1 = event("door", 1, EventKind::Recognized);
    publisher.publish_event(&e1).unwrap();
    rt.block_on(wait_until("e1 acknowledged", WAIT, || publisher.outbox_depth() == 0));
    let daemon = Some(("facegate", daemon_pw.as_str()));
    assert!(publish_as(port, daemon, "facegate/cmd/enroll", "B").status.success());
    let first = rt.block_on(observer.next());
    assert_eq!(
        (first.topic.as_str(), first.text().as_str()),
        ("facegate/cmd/enroll", "B")
    );
    // The daemon answered B (and only B) on cmd/result, which the read-only user reads.
    let refusal = |l: &String| l.contains(" cmd  enroll  refused  ");
    watch.wait_for("the refusal", LIMIT, |l| l.iter().any(refusal));
    let e2 = event("door", 2, EventKind::Unknown);
    publisher.publish_event(&e2).unwrap();
    let (status, lines, stderr) = watch.wait_exit(LIMIT);
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(tracks(&lines), [1, 2], "{lines:#?}");
    assert_eq!(lines.iter().filter(|l| refusal(l)).count(), 1, "{lines:#?}");
    let got = rt.block_on(integration.collect_on("/events", WAIT, |m| m.len() == 2));
    assert_eq!(got.iter().map(event_id).collect::<Vec<_>>(), ids_of_events(&[e1, e2]));

    // Persistence: an event queued for the integration while it is away outlives a restart
    // of the broker.
    drop(integration);
    let e3 = event("door", 3, EventKind::Unknown);
    publisher.publish_event(&e3).unwrap();
    rt.block_on(wait_until("e3 acknowledged", WAIT, || publisher.outbox_depth() == 0));
    broker.stop();
    broker.run();
    let integration = login_options(port, "integration", "facegate-watch", &watch_pw, true);
    let mut integration = rt.block_on(Subscriber::start_with(integration, &["facegate/+/events"]));
    let m = rt.block_on(integration.next_on("facegate/door/events"));
    assert_eq!(event_id(&m), e3.event_id.to_string());
    rt.block_on(wait_until("the daemon back", WAIT, || publisher.connected()));
    rt.block_on(publisher.shutdown(Duration::from_secs(2)));
    drop(observer);
}
