//! `facegate watch`: subscribe to the daemon's topics and print one line per message.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Local};
use rumqttc::{AsyncClient, Event as MqttEvent, Packet, QoS, SubscribeFilter};
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
    /// Return after this many printed messages.
    pub stop_after: Option<usize>,
    /// Keep trying to reach the broker for this long at start, so that `watch` can start
    /// before `facegate run` brings up its in-process broker.
    pub connect_wait: Duration,
    /// Return once the daemon announces `offline` as it happens (a clean shutdown or its
    /// last will), not a retained `offline` left from an earlier run.
    pub until_offline: bool,
}

/// Prints events, camera status and availability as they arrive: readable lines such as
/// `12:03:04.120 door  recognized  Ann  (0.71, track 3, 12 frames)`, or with `json` one JSON
/// object per line (an event exactly as published; status as `{"topic","camera","status"}`,
/// availability as `{"topic","available"}`). Retained messages are printed first.
///
/// Returns as `opts` say, on Ctrl-C, or when stdout is closed. Fails when the broker cannot
/// be reached at start (after trying for `opts.connect_wait`); later outages are retried
/// with backoff.
pub async fn watch(cfg: &MqttConfig, opts: &WatchOptions) -> Result<(), Error> {
    let problems = cfg.validate("mqtt");
    if !problems.is_empty() {
        return Err(Error::Config(problems));
    }
    let (json, stop_after, connect_wait) = (opts.json, opts.stop_after, opts.connect_wait);
    if stop_after == Some(0) {
        return Ok(());
    }
    let topics = Topics::new(&cfg.prefix);
    let client_id = format!("{}-watch-{:06x}", cfg.client_id, rand::random::<u32>() & 0xff_ffff);
    let options = link::mqtt_options(cfg, &topics, &client_id, Session::Clean)?;
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let mut backoff = Backoff::new(
        Duration::from_millis(cfg.backoff_initial_ms),
        Duration::from_millis(cfg.backoff_max_ms),
    );
    let broker = cfg.broker_address();
    let mut connected_once = false;
    let mut outage = false;
    let mut printed = 0usize;
    let started = tokio::time::Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    loop {
        let polled = tokio::select! {
            r = eventloop.poll() => r,
            _ = &mut ctrl_c => return Ok(()),
        };
        match polled {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                // A clean session forgets subscriptions: subscribe on every connection.
                let filters = topics
                    .watch_filters()
                    .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce));
                let _ = client.try_subscribe_many(filters);
                if outage {
                    tracing::info!(%broker, "watch: connected again");
                }
                connected_once = true;
                outage = false;
                backoff.reset();
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                let line = match format_message(&topics, &p.topic, &p.payload, json, Local::now()) {
                    None => continue,
                    Some(Ok(line)) => line,
                    Some(Err(why)) => {
                        tracing::warn!(topic = %p.topic, "unreadable message: {why}");
                        continue;
                    }
                };
                if print_line(&line).is_err() {
                    // Reader gone (`facegate watch | head`): nothing more to do.
                    return Ok(());
                }
                printed += 1;
                let went_offline = opts.until_offline
                    && !p.retain
                    && topics.classify(&p.topic) == TopicKind::Available
                    && String::from_utf8_lossy(&p.payload).trim() == "offline";
                if went_offline || stop_after.is_some_and(|n| printed >= n) {
                    disconnect(&client, &mut eventloop).await;
                    return Ok(());
                }
            }
            Ok(_) => {}
            Err(e) => {
                if !connected_once && started.elapsed() < connect_wait {
                    // Not up yet: try again soon (it is about to start, not overloaded).
                    tokio::select! {
                        _ = tokio::time::sleep(CONNECT_POLL) => {}
                        _ = &mut ctrl_c => return Ok(()),
                    }
                    continue;
                }
                if !connected_once {
                    let hint = if cfg.host.is_none() {
                        " (no mqtt.host is set: is `facegate run` with its in-process broker running?)"
                    } else {
                        ""
                    };
                    return Err(Error::Input {
                        path: format!("mqtt://{broker}").into(),
                        reason: format!("cannot connect to the MQTT broker: {e}{hint}"),
                    });
                }
                if !outage {
                    tracing::warn!(%broker, error = %e, "watch: connection lost; reconnecting");
                    outage = true;
                }
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut ctrl_c => return Ok(()),
                }
            }
        }
    }
}

/// One line on stdout, flushed (the lock is not held across an await: the future stays Send).
fn print_line(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// Says goodbye to the broker, briefly.
async fn disconnect(client: &AsyncClient, eventloop: &mut rumqttc::EventLoop) {
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

/// The line for one message: `None` for topics `watch` does not show, `Err` for an event it
/// cannot read.
pub(crate) fn format_message(
    topics: &Topics,
    topic: &str,
    payload: &[u8],
    json: bool,
    received: DateTime<Local>,
) -> Option<Result<String, String>> {
    let text = String::from_utf8_lossy(payload);
    let state = text.trim();
    let line = match topics.classify(topic) {
        TopicKind::Events(_) => {
            let parsed: Result<Event, String> = serde_json::from_slice(payload).map_err(|e| e.to_string());
            match (parsed, json) {
                (Err(why), _) => Err(why),
                // As published; compacted only if it spans lines.
                (Ok(_), true) if !text.contains('\n') => Ok(text.trim().to_owned()),
                (Ok(_), true) => serde_json::from_slice::<Value>(payload)
                    .map(|v| v.to_string())
                    .map_err(|e| e.to_string()),
                (Ok(event), false) => Ok(event_line(&event, received)),
            }
        }
        TopicKind::Status(camera) if json => Ok(json!({"topic": topic, "camera": camera, "status": state}).to_string()),
        TopicKind::Status(camera) => Ok(format!("{} {camera}  camera  {state}", clock(received))),
        TopicKind::Available if json => Ok(json!({"topic": topic, "available": state}).to_string()),
        TopicKind::Available => Ok(format!("{} {}  daemon  {state}", clock(received), topics.prefix())),
        TopicKind::Other => return None,
    };
    Some(line)
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
        details.push(format!("liveness {:.2}", l.score));
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

    fn local_clock(rfc3339: &str) -> String {
        clock(DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Local))
    }

    #[test]
    fn events_read_like_sentences() {
        let topics = Topics::new("facegate");
        let now = Local::now();
        let t = local_clock("2025-06-01T12:03:04.120Z");
        let mut e = event(EventKind::Recognized);
        e.person = Some(PersonRef {
            id: 1,
            name: "Ann".into(),
        });
        e.similarity = Some(0.712);
        let line = |e: &Event| {
            format_message(
                &topics,
                "facegate/door/events",
                &serde_json::to_vec(e).unwrap(),
                false,
                now,
            )
            .unwrap()
            .unwrap()
        };
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
            score: 0.12,
            live: false,
        });
        assert_eq!(line(&s), format!("{t} door  spoof  (liveness 0.12, track 3, 1 frame)"));
    }

    #[test]
    fn json_mode_prints_events_as_published_and_states_as_objects() {
        let topics = Topics::new("fg");
        let now = Local::now();
        let e = event(EventKind::Unknown);
        let pretty = serde_json::to_string_pretty(&e).unwrap();
        let line = format_message(&topics, "fg/door/events", pretty.as_bytes(), true, now)
            .unwrap()
            .unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
        let compact = serde_json::to_string(&e).unwrap();
        let line = format_message(&topics, "fg/door/events", compact.as_bytes(), true, now)
            .unwrap()
            .unwrap();
        assert_eq!(line, compact, "byte for byte, field order kept");
        let line = format_message(&topics, "fg/door/status", b"online", true, now)
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&line).unwrap(),
            json!({"topic": "fg/door/status", "camera": "door", "status": "online"})
        );
        let line = format_message(&topics, "fg/available", b"offline", true, now)
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&line).unwrap(),
            json!({"topic": "fg/available", "available": "offline"})
        );
    }

    #[test]
    fn states_other_topics_and_garbage() {
        let topics = Topics::new("fg");
        let now = Local::now();
        let line = format_message(&topics, "fg/gate/status", b"offline", false, now)
            .unwrap()
            .unwrap();
        assert!(line.ends_with(" gate  camera  offline"), "{line}");
        let line = format_message(&topics, "fg/available", b"online", false, now)
            .unwrap()
            .unwrap();
        assert!(line.ends_with(" fg  daemon  online"), "{line}");
        assert!(format_message(&topics, "fg/stats", b"{}", false, now).is_none());
        assert!(
            format_message(&topics, "fg/door/events", b"{\"type\":1}", false, now)
                .unwrap()
                .is_err()
        );
    }
}
