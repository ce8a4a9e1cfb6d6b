//! The event contract (docs/mqtt.md, "The event contract") and the topics it travels on.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// The JSON fields of an event (docs/mqtt.md), sorted: the contract tests check against.
pub const EVENT_FIELDS: [&str; 12] = [
    "box",
    "camera",
    "event_id",
    "frames",
    "liveness",
    "person",
    "pts_ms",
    "similarity",
    "threshold",
    "timestamp",
    "track_id",
    "type",
];

/// One identity decision about one track, published on `{prefix}/{camera}/events`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Event {
    /// Unique per event; subscribers drop redeliveries by it.
    pub event_id: uuid::Uuid,
    /// `recognized`, `unknown` or `spoof`.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// Camera name, as configured.
    pub camera: String,
    /// Tracker id, unique per camera while the daemon runs.
    pub track_id: u64,
    /// When the decision was made: RFC 3339, UTC, milliseconds (see [`timestamp`]).
    pub timestamp: String,
    /// Presentation time of the frame that settled the decision, in the stream's clock.
    pub pts_ms: i64,
    /// The person recognized; `null` unless `type` is `recognized` (or a spoof of someone).
    pub person: Option<PersonRef>,
    /// Cosine similarity to the best gallery match, 0–1; `null` when nothing was compared.
    pub similarity: Option<f32>,
    /// The similarity a match had to reach.
    pub threshold: f32,
    /// Liveness evidence; `null` when liveness is off.
    pub liveness: Option<Liveness>,
    /// `[x, y, w, h]` in source pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Frames of evidence behind the decision.
    pub frames: u32,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Recognized,
    Unknown,
    Spoof,
}

impl EventKind {
    pub const ALL: [EventKind; 3] = [EventKind::Recognized, EventKind::Unknown, EventKind::Spoof];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Recognized => "recognized",
            EventKind::Unknown => "unknown",
            EventKind::Spoof => "spoof",
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;

    /// `recognized`, `unknown` or `spoof`, as events spell them.
    fn from_str(s: &str) -> Result<EventKind, String> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| format!("{s:?} is not one of recognized, unknown, spoof"))
    }
}

/// A gallery person as events name them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PersonRef {
    pub id: i64,
    pub name: String,
}

/// A track's liveness evidence when its decision was made.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Liveness {
    /// The fused score, 0–1, higher is more likely a live face; `null` while no cue has
    /// enough evidence.
    pub score: Option<f32>,
    /// The evidence says live (in `enforce` mode, a `recognized` event always has `true`).
    pub live: bool,
    pub cues: LivenessCues,
}

/// Each cue's score, 0–1; `null` when that cue has too little evidence yet.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
pub struct LivenessCues {
    /// The passive CNN (recapture artefacts).
    pub cnn: Option<f32>,
    /// The pulse in the skin's colour (rPPG).
    pub pulse: Option<f32>,
    /// 3-D motion of the landmarks (a photo moves as a plane).
    pub motion: Option<f32>,
}

impl Liveness {
    /// Every number is finite (JSON cannot carry the others).
    pub fn is_finite(&self) -> bool {
        [self.score, self.cues.cnn, self.cues.pulse, self.cues.motion]
            .iter()
            .all(|v| v.is_none_or(f32::is_finite))
    }
}

/// `t` as events carry it: RFC 3339 in UTC with milliseconds, e.g. `2025-06-01T12:03:04.120Z`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Why `name` cannot be one level of an MQTT topic (a camera name or the prefix's parts):
/// empty, or holding `/`, a wildcard (`+`, `#`) or a NUL.
pub fn check_topic_segment(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '+' | '#' | '\0')) {
        return Err(format!("{name:?} holds {c:?}, which MQTT topics reserve"));
    }
    Ok(())
}

/// Why `prefix` cannot start our topics. It may have several levels (`site1/facegate`).
pub(crate) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("must not be empty".into());
    }
    if prefix.starts_with('$') {
        return Err(format!(
            "{prefix:?} starts with '$', which brokers reserve for themselves"
        ));
    }
    for level in prefix.split('/') {
        if level.is_empty() {
            return Err(format!(
                "{prefix:?} has an empty level (a leading, trailing or double '/')"
            ));
        }
        check_topic_segment(level)?;
    }
    Ok(())
}

/// The topic names of one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

/// What a received topic is, for subscribers such as `watch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TopicKind<'a> {
    Available,
    Status(&'a str),
    Events(&'a str),
    CmdResult,
    Other,
}

impl Topics {
    pub fn new(prefix: &str) -> Topics {
        Topics {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}/available`: `online` / `offline`, retained; `offline` is the last will.
    pub fn available(&self) -> String {
        format!("{}/available", self.prefix)
    }

    /// `{prefix}/{camera}/status`: `online` / `offline`, retained.
    pub fn camera_status(&self, camera: &str) -> String {
        format!("{}/{camera}/status", self.prefix)
    }

    /// `{prefix}/{camera}/events`: the [`Event`] JSON, QoS 1.
    pub fn camera_events(&self, camera: &str) -> String {
        format!("{}/{camera}/events", self.prefix)
    }

    /// `{prefix}/stats`: periodic JSON, QoS 0.
    pub fn stats(&self) -> String {
        format!("{}/stats", self.prefix)
    }

    pub fn cmd_enroll(&self) -> String {
        format!("{}/cmd/enroll", self.prefix)
    }

    pub fn cmd_remove(&self) -> String {
        format!("{}/cmd/remove", self.prefix)
    }

    pub fn cmd_result(&self) -> String {
        format!("{}/cmd/result", self.prefix)
    }

    /// Subscription filters for every camera's events and status, the daemon's availability
    /// and command results.
    pub fn watch_filters(&self) -> [String; 4] {
        [
            format!("{}/+/events", self.prefix),
            format!("{}/+/status", self.prefix),
            self.available(),
            self.cmd_result(),
        ]
    }

    pub(crate) fn classify<'a>(&self, topic: &'a str) -> TopicKind<'a> {
        let Some(rest) = topic
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return TopicKind::Other;
        };
        match rest {
            "available" => return TopicKind::Available,
            "cmd/result" => return TopicKind::CmdResult,
            _ => {}
        }
        match rest.split_once('/') {
            Some((camera, "status")) if !camera.is_empty() => TopicKind::Status(camera),
            Some((camera, "events")) if !camera.is_empty() => TopicKind::Events(camera),
            _ => TopicKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    pub(crate) fn sample_event() -> Event {
        Event {
            event_id: uuid::Uuid::parse_str("0b9f3c1e-8d2a-4f6b-9c1d-2e3f4a5b6c7d").unwrap(),
            kind: EventKind::Recognized,
            camera: "door".into(),
            track_id: 3,
            timestamp: "2025-06-01T12:03:04.120Z".into(),
            pts_ms: 40_120,
            person: Some(PersonRef {
                id: 7,
                name: "Ann".into(),
            }),
            similarity: Some(0.71),
            threshold: 0.5,
            liveness: Some(Liveness {
                score: Some(0.93),
                live: true,
                cues: LivenessCues {
                    cnn: Some(0.99),
                    pulse: Some(0.87),
                    motion: None,
                },
            }),
            bbox: [10.0, 20.5, 64.0, 80.0],
            frames: 12,
        }
    }

    #[test]
    fn event_json_has_exactly_the_contract_fields() {
        let wire = serde_json::to_string(&sample_event()).unwrap();
        let v: Value = serde_json::from_str(&wire).unwrap();
        let obj = v.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, EVENT_FIELDS);
        assert_eq!(v["event_id"], "0b9f3c1e-8d2a-4f6b-9c1d-2e3f4a5b6c7d");
        assert_eq!(v["type"], "recognized");
        assert_eq!(v["camera"], "door");
        assert!(v["track_id"].is_u64());
        assert!(v["pts_ms"].is_i64());
        assert_eq!(v["person"], json!({"id": 7, "name": "Ann"}));
        // f32 values come out as their shortest decimal form, not 0.7099999785423279.
        assert_eq!(v["similarity"].to_string(), "0.71");
        assert_eq!(v["threshold"].to_string(), "0.5");
        assert_eq!(v["liveness"]["live"], true);
        assert!(v["liveness"]["score"].is_f64());
        assert!(v["liveness"]["cues"]["cnn"].is_f64() && v["liveness"]["cues"]["motion"].is_null());
        assert_eq!(v["box"], json!([10.0, 20.5, 64.0, 80.0]));
        assert_eq!(v["frames"], 12);
    }

    #[test]
    fn absent_person_similarity_and_liveness_are_null_not_missing() {
        let mut e = sample_event();
        e.kind = EventKind::Unknown;
        e.person = None;
        e.similarity = None;
        e.liveness = None;
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "unknown");
        for key in ["person", "similarity", "liveness"] {
            assert_eq!(v.get(key), Some(&Value::Null), "{key}");
        }
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn kinds_are_lowercase() {
        for (k, s) in [
            (EventKind::Recognized, "recognized"),
            (EventKind::Unknown, "unknown"),
            (EventKind::Spoof, "spoof"),
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), s);
            assert_eq!(k.as_str(), s);
            assert_eq!(s.parse::<EventKind>(), Ok(k));
        }
        assert!("Recognized".parse::<EventKind>().is_err());
        assert!(serde_json::from_value::<EventKind>(json!("Recognized")).is_err());
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let t = DateTime::parse_from_rfc3339("2025-06-01T14:03:04.1209+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(t), "2025-06-01T12:03:04.120Z");
    }

    #[test]
    fn topics_are_built_under_the_prefix() {
        let t = Topics::new("facegate");
        assert_eq!(t.available(), "facegate/available");
        assert_eq!(t.camera_status("door"), "facegate/door/status");
        assert_eq!(t.camera_events("door"), "facegate/door/events");
        assert_eq!(t.stats(), "facegate/stats");
        assert_eq!(t.cmd_enroll(), "facegate/cmd/enroll");
        assert_eq!(t.cmd_remove(), "facegate/cmd/remove");
        assert_eq!(t.cmd_result(), "facegate/cmd/result");
        assert_eq!(
            t.watch_filters(),
            [
                "facegate/+/events",
                "facegate/+/status",
                "facegate/available",
                "facegate/cmd/result"
            ]
        );
        let t = Topics::new("site1/facegate");
        assert_eq!(t.camera_events("gate"), "site1/facegate/gate/events");
    }

    #[test]
    fn topics_are_classified() {
        let t = Topics::new("site1/fg");
        assert_eq!(t.classify("site1/fg/available"), TopicKind::Available);
        assert_eq!(t.classify("site1/fg/door/status"), TopicKind::Status("door"));
        assert_eq!(t.classify("site1/fg/door/events"), TopicKind::Events("door"));
        assert_eq!(t.classify("site1/fg/stats"), TopicKind::Other);
        assert_eq!(t.classify("site1/fg/cmd/result"), TopicKind::CmdResult);
        assert_eq!(t.classify("site1/fg/cmd/enroll"), TopicKind::Other);
        assert_eq!(t.classify("site1/fg/a/b/events"), TopicKind::Other);
        assert_eq!(t.classify("site1/fgx/door/events"), TopicKind::Other);
        assert_eq!(t.classify("other/door/events"), TopicKind::Other);
    }

    #[test]
    fn segments_and_prefixes_are_checked() {
        assert!(check_topic_segment("door").is_ok());
        assert!(check_topic_segment("front door").is_ok());
        for bad in ["", "a/b", "a+", "#", "a\0"] {
            assert!(check_topic_segment(bad).is_err(), "{bad:?}");
        }
        assert!(check_prefix("facegate").is_ok());
        assert!(check_prefix("site1/facegate").is_ok());
        for bad in ["", "/fg", "fg/", "a//b", "$SYS", "fg/#", "fg/+/x"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
