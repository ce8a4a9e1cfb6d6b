//! `facegate watch`: subscribe to the daemon's topics and print one line per message.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Local};
use rumqttc::{AsyncClient, ConnectionError, Event as MqttEvent, EventLoop, Packet, Publish, QoS, SubscribeFilter};
use serde_json::{Value, json};

use super::config::MqttConfig;
use super::link::{self, Session};
use super::model::{Event, EventKind, TopicKind, Topics};
use crate::backoff::Backoff;
use crate::error::Error;

/// How often `watch` tries to reach a broker that is not up yet, within `connect_wait`.
const CONNECT_POLL: Duration = Duration::from_millis(50);

/// What `facegate watch` prints and when it stops.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// One JSON object per line instead of readable text.
    pub json: bool,
    /// Return after this many printed messages of any kind.
    pub stop_after: Option<usize>,
    /// Return after this many printed identity events (not statuses or command results).
    pub count: Option<usize>,
    /// Keep trying to reach the broker for this long at start, so that `watch` can start
    /// before `facegate run` brings up its in-process broker.
    pub connect_wait: Duration,
    /// Return once the daemon announces `offline` as it happens (a clean shutdown or its
    /// last will), not a retained `offline` left from an earlier run.
    pub until_offline: bool,
    /// Which events and camera states to print.
    pub filter: WatchFilter,
}

/// Which events and camera states `watch` prints; an empty list lets everything through.
/// The daemon's availability and command results are always printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchFilter {
    /// Events and states of these cameras only.
    pub cameras: Vec<String>,
    /// Events of these kinds only.
    pub kinds: Vec<EventKind>,
    /// Events naming one of these people only (so never `unknown` ones).
    pub people: Vec<String>,
}

impl WatchFilter {
    fn camera(&self, camera: &str) -> bool {
        self.cameras.is_empty() || self.cameras.iter().any(|c| c == camera)
    }

    fn event(&self, e: &Event) -> bool {
        let named = || e.person.as_ref().is_some_and(|p| self.people.contains(&p.name));
        self.camera(&e.camera)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && (self.people.is_empty() || named())
    }
}

/// Prints events, camera status, availability and command results as they arrive:
/// readable lines such as `12:03:04.120 door  recognized  Ann  (0.71, track 3, 12 frames)`,
/// or with `json` one JSON object per line (an event exactly as published; status as
/// `{"topic","camera","status"}`, availability as `{"topic","available"}`, a command result
/// as `{"topic","result"}`). Retained messages are printed first.
///
/// Returns as `opts` say, on Ctrl-C, or when stdout is closed. Fails with
/// [`Error::Environment`] when the broker cannot be reached at start (after trying for
/// `opts.connect_wait`); later outages are retried with backoff.
pub async fn watch(cfg: &MqttConfig, opts: &WatchOptions) -> Result<(), Error> {
    let problems = cfg.validate("mqtt");
    if !problems.is_empty() {
        return Err(Error::Config(problems));
    }
    if opts.stop_after == Some(0) || opts.count == Some(0) {
        return Ok(());
    }
    let topics = Topics::new(&cfg.prefix);
    let client_id = format!("{}-watch-{:06x}", cfg.client_id, rand::random::<u32>() & 0xff_ffff);
    let options = link::mqtt_options(cfg, &topics, &client_id, Session::Clean)?;
    let (client, eventloop) = AsyncClient::new(options, 10);
    let backoff = Backoff::new(
        Duration::from_millis(cfg.backoff_initial_ms),
        Duration::from_millis(cfg.backoff_max_ms),
    );
    let mut watcher = Watcher {
        cfg,
        opts,
        topics,
        client,
        backoff,
        broker: cfg.broker_address(),
        connected_once: false,
        outage: false,
        printed: 0,
        events: 0,
        started: tokio::time::Instant::now(),
    };
    watcher.run(eventloop).await
}

/// What to do after one step of the event loop.
enum Step {
    Continue,
    /// Done as asked: say goodbye to the broker.
    Done,
    /// Nobody reads stdout any more.
    Gone,
    Retry(Duration),
}

struct Watcher<'a> {
    cfg: &'a MqttConfig,
    opts: &'a WatchOptions,
    topics: Topics,
    client: AsyncClient,
    backoff: Backoff,
    broker: String,
    connected_once: bool,
    outage: bool,
    /// Lines printed, and identity events among them.
    printed: usize,
    events: usize,
    started: tokio::time::Instant,
}

impl Watcher<'_> {
    async fn run(&mut self, mut eventloop: EventLoop) -> Result<(), Error> {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            let polled = tokio::select! {
                r = eventloop.poll() => r,
                _ = &mut ctrl_c => return Ok(()),
            };
            let step = match polled {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => self.on_connected(),
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => self.on_message(&p),
                Ok(_) => Step::Continue,
                Err(e) => self.on_error(&e)?,
            };
            match step {
                Step::Continue => {}
                Step::Gone => return Ok(()),
                Step::Done => {
                    disconnect(&self.client, &mut eventloop).await;
                    return Ok(());
                }
                Step::Retry(delay) => tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut ctrl_c => return Ok(()),
                },
            }
        }
    }

    fn on_connected(&mut self) -> Step {
        // A clean session forgets subscriptions: subscribe on every connection. Always to
        // every camera's events, filtering here: this is also what tells the in-process
        // broker that someone listens (`mqtt.hold_for_subscriber_s`).
        let filters = self
            .topics
            .watch_filters()
            .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce));
        let _ = self.client.try_subscribe_many(filters);
        if self.outage {
            tracing::info!(broker = %self.broker, "watch: connected again");
        }
        self.connected_once = true;
        self.outage = false;
        self.backoff.reset();
        Step::Continue
    }

    fn on_message(&mut self, p: &Publish) -> Step {
        let shown = format_message(
            &self.topics,
            &p.topic,
            &p.payload,
            self.opts.json,
            &self.opts.filter,
            Local::now(),
        );
        let line = match shown {
            None => return Step::Continue,
            Some(Ok(line)) => line,
            Some(Err(why)) => {
                tracing::warn!(topic = %p.topic, "unreadable message: {why}");
                return Step::Continue;
            }
        };
        if print_line(&line.text).is_err() {
            // Reader gone (`facegate watch | head`): nothing more to do.
            return Step::Gone;
        }
        self.printed += 1;
        self.events += usize::from(line.event);
        let went_offline = self.opts.until_offline
            && !p.retain
            && self.topics.classify(&p.topic) == TopicKind::Available
            && String::from_utf8_lossy(&p.payload).trim() == "offline";
        let enough = self.opts.stop_after.is_some_and(|n| self.printed >= n)
            || self.opts.count.is_some_and(|n| self.events >= n);
        if went_offline || enough {
            Step::Done
        } else {
            Step::Continue
        }
    }

    fn on_error(&mut self, e: &ConnectionError) -> Result<Step, Error> {
        if !self.connected_once && self.started.elapsed() < self.opts.connect_wait {
            // Not up yet: try again soon (it is about to start, not overloaded).
            return Ok(Step::Retry(CONNECT_POLL));
        }
        if !self.connected_once {
            return Err(self.unreachable(e));
        }
        if !self.outage {
            tracing::warn!(broker = %self.broker, error = %e, "watch: connection lost; reconnecting");
            self.outage = true;
        }
        Ok(Step::Retry(self.backoff.next_delay()))
    }

    /// One line: where, why, and what to do about it.
    fn unreachable(&self, e: &ConnectionError) -> Error {
        let why = e.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        let what_to_do = if matches!(e, ConnectionError::ConnectionRefused(_)) {
            "check mqtt.username and mqtt.password"
        } else if self.cfg.host.is_none() {
            "no mqtt.host is set, so watch looks for the in-process broker of `facegate run`: \
             start the daemon, give --wait SECONDS to wait for it, or set mqtt.host"
        } else {
            "check mqtt.host and mqtt.port and that the broker runs, or give --wait SECONDS to wait for it"
        };
        Error::Environment(format!(
            "cannot connect to the MQTT broker at {}: {why}; {what_to_do}",
            self.broker
        ))
    }
}

/// One line on stdout, flushed (the lock is not held across an await: the future stays Send).
fn print_line(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// Says goodbye to the broker, briefly.
async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
}

/// A line to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub text: String,
    /// An identity event (what `--count` counts).
    pub event: bool,
}

/// The line for one message: `None` for topics `watch` does not show and for what `filter`
/// leaves out, `Err` for an event or result it cannot read.
pub(crate) fn format_message(
    topics: &Topics,
    topic: &str,
    payload: &[u8],
    json: bool,
    filter: &WatchFilter,
    received: DateTime<Local>,
) -> Option<Result<Line, String>> {
    let text = String::from_utf8_lossy(payload);
    let state = text.trim();
    let other = |text: String| Line { text, event: false };
    let line = match topics.classify(topic) {
        TopicKind::Events(_) => {
            let event: Event = match serde_json::from_slice(payload) {
                Ok(e) => e,
                Err(e) => return Some(Err(e.to_string())),
            };
            if !filter.event(&event) {
                return None;
            }
            let text = if json {
                compact(&text, payload)
            } else {
                Ok(event_line(&event, received))
            };
            text.map(|text| Line { text, event: true })
        }
        TopicKind::Status(camera) if !filter.camera(camera) => return None,
        TopicKind::Status(camera) if json => Ok(other(
            json!({"topic": topic, "camera": camera, "status": state}).to_string(),
        )),
        TopicKind::Status(camera) => Ok(other(format!("{} {camera}  camera  {state}", clock(received)))),
        TopicKind::Available if json => Ok(other(json!({"topic": topic, "available": state}).to_string())),
        TopicKind::Available => Ok(other(format!(
            "{} {}  daemon  {state}",
            clock(received),
            topics.prefix()
        ))),
        TopicKind::CmdResult => serde_json::from_slice::<Value>(payload)
            .map_err(|e| e.to_string())
            .map(|v| match json {
                true => json!({"topic": topic, "result": v}).to_string(),
                false => result_line(&v, received),
            })
            .map(other),
        TopicKind::Other => return None,
    };
    Some(line)
}

/// A JSON payload on one line: as published (field order kept), compacted only if it spans lines.
fn compact(text: &str, payload: &[u8]) -> Result<String, String> {
    if !text.contains('\n') {
        return Ok(text.trim().to_owned());
    }
    serde_json::from_slice::<Value>(payload)
        .map(|v| v.to_string())
        .map_err(|e| e.to_string())
}

/// `12:03:04.120 cmd  enroll  ok  Ann  (request r1)` or
/// `12:03:04.120 cmd  remove  refused  replayed: …  (request -)`.
fn result_line(v: &Value, received: DateTime<Local>) -> String {
    let text = |key: &str| v.get(key).and_then(Value::as_str);
    let command = text("command").unwrap_or("-");
    let request = text("request_id").unwrap_or("-");
    let outcome = if v.get("ok").and_then(Value::as_bool) == Some(true) {
        let result = v.get("result");
        let name = result
            .and_then(|r| r.pointer("/person/name").or_else(|| r.get("removed")))
            .and_then(Value::as_str);
        match name {
            Some(name) => format!("ok  {name}"),
            None => "ok".to_owned(),
        }
    } else {
        format!("refused  {}", text("error").unwrap_or("-"))
    };
    format!("{} cmd  {command}  {outcome}  (request {request})", clock(received))
}

fn event_line(e: &Event, received: DateTime<Local>) -> String {
    let at = DateTime::parse_from_rfc3339(&e.timestamp)
        .map(|t| t.with_timezone(&Local))
        .unwrap_or(received);
    let mut details = Vec::new();
    if let Some(s) = e.similarity {
        details.push(match e.kind {
            EventKind::Recognized => format!("{s:.2}"),
            _ => format!("best {s:.2}"),
        });
    }
    if let Some(l) = e.liveness
        && (e.kind == EventKind::Spoof || !l.live)
    {
        details.push(match l.score {
            Some(score) => format!("liveness {score:.2}"),
            None => "liveness undecided".into(),
        });
    }
    details.push(format!("track {}", e.track_id));
    details.push(format!("{} frame{}", e.frames, if e.frames == 1 { "" } else { "s" }));
    let who = match &e.person {
        Some(p) => format!("{}  ", p.name),
        None => String::new(),
    };
    format!(
        "{} {}  {}  {who}({})",
        clock(at),
        e.camera,
        e.kind.as_str(),
        details.join(", ")
    )
}

fn clock(t: DateTime<Local>) -> String {
    t.format("%H:%M:%S%.3f").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::model::{Liveness, PersonRef};

    fn event(kind: EventKind) -> Event {
        Event {
            event_id: uuid::Uuid::new_v4(),
            kind,
            camera: "door".into(),
            track_id: 3,
            timestamp: "2025-06-01T12:03:04.120Z".into(),
            pts_ms: 1000,
            person: None,
            similarity: Some(0.21),
            threshold: 0.5,
            liveness: None,
            bbox: [1.0, 2.0, 3.0, 4.0],
            frames: 12,
        }
    }

    fn ann(mut e: Event) -> Event {
        e.person = Some(PersonRef {
            id: 1,
            name: "Ann".into(),
        });
        e
    }

    fn local_clock(rfc3339: &str) -> String {
        clock(DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Local))
    }

    /// The text `watch` prints for a message, `None` when it prints nothing.
    fn shown(topic: &str, payload: &[u8], json: bool, filter: &WatchFilter) -> Option<Line> {
        format_message(&Topics::new("fg"), topic, payload, json, filter, Local::now()).map(|l| l.unwrap())
    }

    fn text(topic: &str, payload: &[u8]) -> String {
        shown(topic, payload, false, &WatchFilter::default()).unwrap().text
    }

    #[test]
    fn events_read_like_sentences() {
        let t = local_clock("2025-06-01T12:03:04.120Z");
        let mut e = ann(event(EventKind::Recognized));
        e.similarity = Some(0.712);
        let line = |e: &Event| text("fg/door/events", &serde_json::to_vec(e).unwrap());
        assert_eq!(
            line(&e),
            format!("{t} door  recognized  Ann  (0.71, track 3, 12 frames)")
        );
        let u = event(EventKind::Unknown);
        assert_eq!(line(&u), format!("{t} door  unknown  (best 0.21, track 3, 12 frames)"));
        let mut s = event(EventKind::Spoof);
        s.similarity = None;
        s.frames = 1;
        s.liveness = Some(Liveness {
            score: Some(0.12),
            live: false,
            cues: Default::default(),
        });
        assert_eq!(line(&s), format!("{t} door  spoof  (liveness 0.12, track 3, 1 frame)"));
    }

    #[test]
    fn json_mode_prints_events_as_published_and_states_as_objects() {
        let all = WatchFilter::default();
        let e = event(EventKind::Unknown);
        let pretty = serde_json::to_string_pretty(&e).unwrap();
        let line = shown("fg/door/events", pretty.as_bytes(), true, &all).unwrap();
        assert!(line.event && !line.text.contains('\n'));
        assert_eq!(serde_json::from_str::<Event>(&line.text).unwrap(), e);
        let compact = serde_json::to_string(&e).unwrap();
        let line = shown("fg/door/events", compact.as_bytes(), true, &all).unwrap();
        assert_eq!(line.text, compact, "byte for byte, field order kept");
        let line = shown("fg/door/status", b"online", true, &all).unwrap();
        assert!(!line.event);
        assert_eq!(
            serde_json::from_str::<Value>(&line.text).unwrap(),
            json!({"topic": "fg/door/status", "camera": "door", "status": "online"})
        );
        let line = shown("fg/available", b"offline", true, &all).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&line.text).unwrap(),
            json!({"topic": "fg/available", "available": "offline"})
        );
        let result = json!({"request_id": "r1", "command": "remove", "ok": true, "result": {"removed": "Ann"}});
        let line = shown("fg/cmd/result", result.to_string().as_bytes(), true, &all).unwrap();
        assert!(!line.event);
        assert_eq!(
            serde_json::from_str::<Value>(&line.text).unwrap(),
            json!({"topic": "fg/cmd/result", "result": result})
        );
    }

    #[test]
    fn states_other_topics_and_garbage() {
        let line = text("fg/gate/status", b"offline");
        assert!(line.ends_with(" gate  camera  offline"), "{line}");
        let line = text("fg/available", b"online");
        assert!(line.ends_with(" fg  daemon  online"), "{line}");
        let all = WatchFilter::default();
        assert!(shown("fg/stats", b"{}", false, &all).is_none());
        assert!(shown("fg/cmd/enroll", b"{}", false, &all).is_none());
        let topics = Topics::new("fg");
        for (topic, garbage) in [("fg/door/events", &b"{\"type\":1}"[..]), ("fg/cmd/result", b"not json")] {
            assert!(
                format_message(&topics, topic, garbage, false, &all, Local::now())
                    .unwrap()
                    .is_err()
            );
        }
    }

    #[test]
    fn command_results_say_command_outcome_reason_and_request() {
        let enrolled = json!({"request_id": "r1", "command": "enroll", "ok": true,
            "result": {"person": {"id": 3, "name": "Ann"}, "templates": 1}});
        assert!(
            text("fg/cmd/result", enrolled.to_string().as_bytes()).ends_with(" cmd  enroll  ok  Ann  (request r1)")
        );
        let removed =
            json!({"request_id": null, "command": "remove", "ok": true, "result": {"removed": "Bo", "templates": 2}});
        assert!(text("fg/cmd/result", removed.to_string().as_bytes()).ends_with(" cmd  remove  ok  Bo  (request -)"));
        let refused = json!({"request_id": "r2", "command": "enroll", "ok": false, "code": "replayed",
            "error": "replayed: this signed message was accepted before"});
        assert!(
            text("fg/cmd/result", refused.to_string().as_bytes())
                .ends_with(" cmd  enroll  refused  replayed: this signed message was accepted before  (request r2)")
        );
        let bare = json!({"ok": false});
        assert!(text("fg/cmd/result", bare.to_string().as_bytes()).ends_with(" cmd  -  refused  -  (request -)"));
    }

    #[test]
    fn filters_choose_cameras_types_and_people() {
        let payload = |e: &Event| serde_json::to_vec(e).unwrap();
        let door_ann = payload(&ann(event(EventKind::Recognized)));
        let mut gate = event(EventKind::Unknown);
        gate.camera = "gate".into();
        let gate_unknown = payload(&gate);
        let mut spoof = ann(event(EventKind::Spoof));
        spoof.camera = "gate".into();
        let gate_spoof_ann = payload(&spoof);
        let filter = |cameras: &[&str], kinds: &[EventKind], people: &[&str]| WatchFilter {
            cameras: cameras.iter().map(|c| c.to_string()).collect(),
            kinds: kinds.to_vec(),
            people: people.iter().map(|p| p.to_string()).collect(),
        };
        let passes = |f: &WatchFilter| -> [bool; 3] {
            [&door_ann, &gate_unknown, &gate_spoof_ann].map(|p| {
                let topic = format!("fg/{}/events", serde_json::from_slice::<Event>(p).unwrap().camera);
                shown(&topic, p, false, f).is_some()
            })
        };
        assert_eq!(passes(&filter(&[], &[], &[])), [true, true, true]);
        assert_eq!(passes(&filter(&["gate"], &[], &[])), [false, true, true]);
        assert_eq!(passes(&filter(&["gate", "door"], &[], &[])), [true, true, true]);
        assert_eq!(
            passes(&filter(&[], &[EventKind::Unknown, EventKind::Spoof], &[])),
            [false, true, true]
        );
        assert_eq!(passes(&filter(&[], &[], &["Ann"])), [true, false, true]);
        assert_eq!(passes(&filter(&[], &[], &["ann"])), [false, false, false]);
        assert_eq!(
            passes(&filter(&["gate"], &[EventKind::Recognized], &["Ann"])),
            [false, false, false]
        );

        // Camera states follow the camera filter; availability and results are always shown.
        let gate_only = filter(&["gate"], &[EventKind::Spoof], &["Bo"]);
        assert!(shown("fg/door/status", b"online", false, &gate_only).is_none());
        assert!(shown("fg/gate/status", b"online", false, &gate_only).is_some());
        assert!(shown("fg/available", b"online", false, &gate_only).is_some());
        assert!(shown("fg/cmd/result", b"{\"ok\":true}", false, &gate_only).is_some());
    }
}
