//! Liveness end to end: `facegate liveness` on photos and videos, and the daemon in
//! `liveness.mode = "enforce"` replaying synthetic presentations of an enrolled person
//! against Debian's mosquitto: the photo held up to the camera is a spoof and never
//! recognized, the live face (a sub-visible pulse, non-rigid motion) is recognized.
//!
//! The presentations are synthetic (`facegate make-video --presentation`): no real
//! presentation-attack video dataset was available offline.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::mosquitto::{Mosquitto, Persistence, free_port};
use common::subscriber::Subscriber;
use common::*;
use serde_json::Value;

/// A presentation of the largest face of sample1 (Ann), made once per kind.
fn presentation(kind: &str) -> PathBuf {
    let dir = scratch(&format!("presentation-{kind}"));
    let out = dir.join(format!("{kind}.mp4"));
    let o = facegate(
        &[
            "make-video",
            path_str(&out),
            "--seconds",
            "8",
            "--presentation",
            kind,
            "--photo",
            path_str(&sample(1)),
        ],
        &[],
    );
    assert!(o.status.success(), "make-video: {}", String::from_utf8_lossy(&o.stderr));
    out
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/liveness").join(name)
}

/// The liveness of the largest face (photo) or the longest track (video), as JSON.
fn liveness_json(input: &Path, key: &str) -> Value {
    let o = facegate(&["--json", "liveness", path_str(input)], &[]);
    assert!(o.status.success(), "liveness: {}", String::from_utf8_lossy(&o.stderr));
    let doc = stdout_json(&o);
    let items = doc[key].as_array().expect("a list").clone();
    let size = |v: &Value| {
        v["frames"]
            .as_f64()
            .unwrap_or_else(|| v["box"][2].as_f64().unwrap() * v["box"][3].as_f64().unwrap())
    };
    items
        .into_iter()
        .max_by(|a, b| size(a).total_cmp(&size(b)))
        .unwrap_or_else(|| panic!("{}: nothing found in {doc}", input.display()))
}

#[test]
fn the_cli_scores_photos_with_the_cnn_alone() {
    for (file, verdict) in [
        ("image_F1.jpg", "spoof"),
        ("image_F2.jpg", "spoof"),
        ("image_T1.jpg", "live"),
    ] {
        let face = liveness_json(&fixture(file), "faces");
        let l = &face["liveness"];
        assert_eq!(l["verdict"], verdict, "{file}: {face}");
        assert!(l["cues"]["cnn"].is_number(), "{file}: {face}");
        assert!(
            l["cues"]["pulse"].is_null() && l["cues"]["motion"].is_null(),
            "a still has no pulse or motion: {face}"
        );
    }
}

#[test]
fn the_cli_gathers_every_cue_over_a_video_track() {
    let live = liveness_json(&presentation("bona-fide"), "tracks");
    let photo = liveness_json(&presentation("rigid-photo"), "tracks");
    for t in [&live, &photo] {
        assert!(t["frames"].as_u64().unwrap() >= 30, "8 s at 10 fps: {t}");
        for cue in ["cnn", "pulse"] {
            assert!(t["liveness"]["cues"][cue].is_number(), "{cue} has evidence: {t}");
        }
    }
    assert_eq!(live["liveness"]["verdict"], "live", "{live}");
    assert_eq!(photo["liveness"]["verdict"], "spoof", "{photo}");
    let pulse = |t: &Value| t["liveness"]["cues"]["pulse"].as_f64().unwrap();
    assert!(pulse(&live) > pulse(&photo) + 0.3, "live {live} photo {photo}");
}

#[test]
fn a_missing_video_is_one_error_line() {
    let o = facegate(&["liveness", "/nonexistent/door.mp4"], &[]);
    assert_eq!(o.status.code(), Some(4));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/door.mp4"), "{err}");
}

/// The daemon in enforce mode on one presentation video: every event it published.
fn enforce_replay(name: &str, video: &Path) -> (Vec<Value>, String) {
    let broker = Mosquitto::start(Persistence::Off);
    let sub = Subscriber::start(broker.port, &format!("sub-{name}"));
    let dir = scratch(name);
    let gallery = dir.join("gallery.db");
    enroll_largest(&gallery, "Ann", &sample(1));
    let config = dir.join("facegate.toml");
    let toml = format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\noutbox_path = \"{outbox}\"\n\
         [gallery]\npath = \"{gallery}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
         [liveness]\nmode = \"enforce\"\n\
         [[cameras]]\nname = \"door\"\nurl = \"file://{video}\"\ndetect_fps = 10\nrealtime = false\nexit_on_eos = true\n",
        port = broker.port,
        outbox = dir.join("outbox.db").display(),
        gallery = gallery.display(),
        admin = free_port(),
        video = video.display(),
    );
    std::fs::write(&config, toml).unwrap();
    let log_path = dir.join("daemon.log");
    let status = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args([
            "--models",
            path_str(&models()),
            "--device",
            "cpu",
            "--config",
            path_str(&config),
            "run",
        ])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .status()
        .expect("facegate runs");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success(), "daemon failed: {status}\n{log}");
    sub.wait_until("offline", Duration::from_secs(10), |s| {
        s.messages("/available").last().is_some_and(|m| m == "offline")
    });
    (sub.events(), log)
}

/// Events of the presented face: the track nearest the frame's centre (the sample photo is
/// a group photo, so other faces come into view at its edges).
fn presented(events: &[Value]) -> Vec<Value> {
    let off_centre = |e: &Value| {
        let b = &e["box"];
        let x = b[0].as_f64().unwrap() + b[2].as_f64().unwrap() / 2.0 - 240.0;
        let y = b[1].as_f64().unwrap() + b[3].as_f64().unwrap() / 2.0 - 180.0;
        x * x + y * y
    };
    let Some(centre) = events.iter().min_by(|a, b| off_centre(a).total_cmp(&off_centre(b))) else {
        return Vec::new();
    };
    let track = centre["track_id"].clone();
    events.iter().filter(|e| e["track_id"] == track).cloned().collect()
}

#[test]
fn enforce_turns_a_photo_of_an_enrolled_person_away_and_lets_the_live_face_in() {
    let (attack, log) = enforce_replay("liveness-enforce-photo", &presentation("rigid-photo"));
    assert!(
        !attack.iter().any(|e| e["type"] == "recognized"),
        "a photo of Ann must never be recognized: {attack:?}\n{log}"
    );
    let held_up = presented(&attack);
    let spoof = held_up
        .iter()
        .find(|e| e["type"] == "spoof")
        .unwrap_or_else(|| panic!("the photo is a spoof: {attack:?}\n{log}"));
    assert_eq!(spoof["liveness"]["live"], false, "{spoof}");
    assert!(spoof["liveness"]["score"].as_f64().unwrap() < 0.4, "{spoof}");

    let (bona_fide, log) = enforce_replay("liveness-enforce-live", &presentation("bona-fide"));
    let face = presented(&bona_fide);
    let recognized = face
        .iter()
        .find(|e| e["type"] == "recognized")
        .unwrap_or_else(|| panic!("the live face is recognized: {bona_fide:?}\n{log}"));
    assert_eq!(recognized["person"]["name"], "Ann");
    assert_eq!(recognized["liveness"]["live"], true, "{recognized}");
    assert!(
        !face.iter().any(|e| e["type"] == "spoof"),
        "the live face is never a spoof: {face:?}"
    );
}
