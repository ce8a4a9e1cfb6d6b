//! The configuration through the real binary: `validate-config` reports every problem at
//! once, the same lines every run, and `run` refuses the same ones; `config show`; models
//! found from any working directory.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// `facegate` with the test models and the given working directory, without `--device`
/// (so that the file's `inference.device` is what counts).
fn facegate_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_facegate"));
    cmd.arg("--models").arg(models()).args(args).current_dir(dir);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("facegate binary runs")
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

const BAD: &str = r#"
[recognition]
threshhold = 0.5

[inference]
device = "cudaa"

[detector]
top_k = 0

[tracker]
frobnicate = 1

[mqtt]
port = "1883"

[admin]
listen = "door.local:9464"

[[cameras]]
name = "door"

[[cameras]]
name = "yard"
url = "file:///nonexistent/yard.mp4"

[[cameras]]
name = "gate"
url = "videos/gate.mp4"
"#;

/// Each problem's key and a piece of its advice.
const EXPECTED: [(&str, &str); 9] = [
    ("admin.listen", "such as 127.0.0.1:9464"),
    ("cameras[0].url", "missing"),
    ("cameras[1].url", "/nonexistent/yard.mp4: no such file"),
    ("cameras[2].url", "neither a URL nor an existing file"),
    ("detector.top_k", "at least 1"),
    (
        "inference.device",
        "expected one of `auto`, `cpu`, `openvino`, `cuda`; did you mean `cuda`?",
    ),
    ("mqtt.port", "write 1883 without quotes"),
    ("recognition.threshhold", "did you mean `threshold`?"),
    ("tracker.frobnicate", "unknown key"),
];

#[test]
fn every_problem_is_reported_once_with_its_key_and_the_same_every_run() {
    let dir = TempDir::new("cfg-bad");
    let f = dir.path().join("facegate.toml");
    std::fs::write(&f, BAD).unwrap();
    let out = facegate_in(dir.path(), &["--config", path_str(&f), "validate-config"], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), EXPECTED.len(), "{lines:#?}");
    // In key order, one line per problem, each `error: key: …`.
    for (line, (key, advice)) in lines.iter().zip(EXPECTED) {
        assert!(line.starts_with(&format!("error: {key}: ")), "{key}: {line}");
        assert!(line.contains(advice), "{advice:?} not in {line}");
    }
    let again = facegate_in(dir.path(), &["--config", path_str(&f), "validate-config"], &[]);
    assert_eq!(again.stderr, out.stderr, "a second run prints other lines");

    // The daemon refuses the same configuration with the same lines.
    let run = facegate_in(dir.path(), &["--config", path_str(&f), "run"], &[]);
    assert_eq!(run.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&run.stderr),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn json_says_valid_or_lists_the_problems() {
    let dir = TempDir::new("cfg-json");
    let f = dir.path().join("facegate.toml");
    std::fs::write(&f, BAD).unwrap();
    let out = facegate_in(
        dir.path(),
        &["--json", "--config", path_str(&f), "validate-config"],
        &[],
    );
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["valid"], false);
    let problems: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let lines = stderr_lines(&out);
    assert_eq!(problems.len(), EXPECTED.len());
    for (p, line) in problems.iter().zip(&lines) {
        assert_eq!(format!("error: {p}"), *line);
    }

    std::fs::write(&f, "[recognition]\nthreshold = 0.4\n").unwrap();
    let ok = facegate_in(
        dir.path(),
        &["--json", "--config", path_str(&f), "validate-config"],
        &[],
    );
    assert_eq!(stdout_json(&ok), serde_json::json!({"valid": true, "problems": []}));
    let ok = facegate_in(dir.path(), &["--config", path_str(&f), "validate-config"], &[]);
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "configuration is valid\n");
    assert!(ok.stderr.is_empty(), "{}", String::from_utf8_lossy(&ok.stderr));
}

#[test]
fn a_value_from_the_environment_is_checked_and_named() {
    let dir = TempDir::new("cfg-env");
    let out = facegate_in(
        dir.path(),
        &["validate-config"],
        &[
            ("FACEGATE__MQTT__KEEP_ALIVE_S", "1"),
            ("FACEGATE__MQTT__CLIENT_ID", "1234"),
            ("FACEGATE__MODLES__DIR", "/x"),
        ],
    );
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(3), "{lines:?}");
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with("error: modles: unknown key; did you mean `models`?")
            && lines[0].ends_with("(set by FACEGATE__MODLES__DIR)"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("error: mqtt.keep_alive_s: 1 is not within")
            && lines[1].ends_with("(set by FACEGATE__MQTT__KEEP_ALIVE_S)"),
        "{}",
        lines[1]
    );
}

#[test]
fn config_show_masks_the_password_and_shows_environment_overrides() {
    let dir = TempDir::new("cfg-show");
    let f = dir.path().join("facegate.toml");
    std::fs::write(
        &f,
        "[mqtt]\nhost = \"broker.lan\"\nusername = \"door\"\npassword = \"hunter2\"\n\
         [commands]\nkey_file = \"/etc/facegate/command.key\"\n",
    )
    .unwrap();
    let env = [("FACEGATE__MQTT__PORT", "8883")];
    let out = facegate_in(dir.path(), &["--config", path_str(&f), "config", "show"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("password = \"********\""), "{text}");
    assert!(text.contains("port = 8883"), "{text}");
    assert!(text.contains("mqtt.port (FACEGATE__MQTT__PORT)"), "{text}");
    assert!(text.contains("key_file = \"/etc/facegate/command.key\""), "{text}");
    assert!(text.contains("host = \"broker.lan\""), "{text}");
    // What it prints is a configuration file.
    let shown = dir.path().join("shown.toml");
    std::fs::write(&shown, text.as_bytes()).unwrap();
    let again = facegate_in(dir.path(), &["--config", path_str(&shown), "validate-config"], &[]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));

    let out = facegate_in(
        dir.path(),
        &["--json", "--config", path_str(&f), "config", "show"],
        &env,
    );
    let v = stdout_json(&out);
    assert_eq!(v["mqtt"]["password"], "********");
    assert_eq!(v["mqtt"]["port"], 8883);
    assert_eq!(v["commands"]["key_file"], "/etc/facegate/command.key");
}

#[test]
fn model_files_and_runtime_are_checked_against_their_digests() {
    let dir = TempDir::new("cfg-digests");
    let m = dir.path().join("models");
    std::fs::create_dir(&m).unwrap();
    for f in [
        "libonnxruntime.so",
        "face_detection_yunet_2023mar.onnx",
        "minifasnet_v2_2.7_80x80.onnx",
        "minifasnet_v1se_4.0_80x80.onnx",
    ] {
        std::os::unix::fs::symlink(models().join(f), m.join(f)).unwrap();
    }
    let validate = |envs: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_facegate"));
        cmd.args(["--models", path_str(&m), "validate-config"])
            .current_dir(dir.path());
        cmd.envs(envs.iter().copied());
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
        stderr_lines(&out)
    };
    let lines = validate(&[]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("error: models.embedder: no such file") && lines[0].contains("--models"),
        "{}",
        lines[0]
    );

    std::fs::write(m.join("face_recognition_sface_2021dec.onnx"), vec![0x5Au8; 4096]).unwrap();
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, "not a shared library").unwrap();
    let lines = validate(&[("FACEGATE__MODELS__RUNTIME_LIBRARY", path_str(&fake))]);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with("error: models.embedder: ") && lines[0].contains("models/fetch prepares"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!("error: models.runtime_library: {}: sha256", fake.display()))
            && lines[1].ends_with("(set by FACEGATE__MODELS__RUNTIME_LIBRARY)"),
        "{}",
        lines[1]
    );
}

#[test]
fn cuda_on_the_cpu_runtime_is_reported_with_what_to_install() {
    let dir = TempDir::new("cfg-cuda");
    let out = facegate_in(dir.path(), &["--device", "cuda", "validate-config"], &[]);
    assert_eq!(out.status.code(), Some(3));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("error: inference.device: cuda needs the CUDA build")
            && lines[0].contains(
                r#"run models/fetch --cuda and set models.runtime_library = "cuda/libonnxruntime.so.1.31.1""#
            )
            && lines[0].ends_with("(set by --device)"),
        "{}",
        lines[0]
    );
}

#[test]
fn the_openvino_build_is_checked_when_the_device_may_load_it() {
    openvino_runtime();
    let dir = TempDir::new("cfg-openvino");
    let out = facegate_in(dir.path(), &["--device", "openvino", "validate-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let m = dir.path().join("models");
    std::fs::create_dir(&m).unwrap();
    for f in [
        "libonnxruntime.so",
        "face_detection_yunet_2023mar.onnx",
        "face_recognition_sface_2021dec.onnx",
        "minifasnet_v2_2.7_80x80.onnx",
        "minifasnet_v1se_4.0_80x80.onnx",
    ] {
        std::os::unix::fs::symlink(models().join(f), m.join(f)).unwrap();
    }
    let validate = |device: &str, envs: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_facegate"));
        cmd.args(["--models", path_str(&m), "--device", device, "validate-config"])
            .current_dir(dir.path());
        cmd.envs(envs.iter().copied());
        let out = cmd.output().unwrap();
        (out.status.code(), stderr_lines(&out))
    };
    // auto does without it; openvino needs it.
    assert_eq!(validate("auto", &[]), (Some(0), vec![]));
    let (code, lines) = validate("openvino", &[]);
    assert_eq!((code, lines.len()), (Some(3), 1), "{lines:#?}");
    assert!(
        lines[0].starts_with("error: models.openvino_library: no such file (run models/fetch --openvino"),
        "{}",
        lines[0]
    );
    // Present, it must be the file models/fetch prepares, whichever device may load it.
    let fake = dir.path().join("libonnxruntime.so.1.24.1");
    std::fs::write(&fake, "not a shared library").unwrap();
    for device in ["auto", "openvino"] {
        let (code, lines) = validate(device, &[("FACEGATE__MODELS__OPENVINO_LIBRARY", path_str(&fake))]);
        assert_eq!((code, lines.len()), (Some(3), 1), "{lines:#?}");
        assert!(
            lines[0].starts_with(&format!("error: models.openvino_library: {}: sha256", fake.display())),
            "{}",
            lines[0]
        );
    }
}

#[test]
fn precisions_other_than_fp32_and_bf16_are_refused_with_why() {
    let dir = TempDir::new("cfg-precision");
    for value in ["fp16", "int8"] {
        let out = facegate_in(
            dir.path(),
            &["validate-config"],
            &[("FACEGATE__INFERENCE__PRECISION", value)],
        );
        assert_eq!(out.status.code(), Some(3));
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].starts_with(&format!(
                "error: inference.precision: unknown variant `{value}`, expected `fp32` or `bf16`; fp16 and int8 are not offered"
            )),
            "{}",
            lines[0]
        );
    }
}

/// A configuration whose `models.dir` is relative to its own folder.
fn config_beside_models(dir: &Path, models_dir: &str) -> std::path::PathBuf {
    let f = dir.join("facegate.toml");
    std::fs::write(&f, format!("[models]\ndir = \"{models_dir}\"\n")).unwrap();
    f
}

#[test]
fn models_are_found_beside_the_configuration_from_any_working_directory() {
    let dir = TempDir::new("cfg-anywhere");
    std::os::unix::fs::symlink(models(), dir.path().join("m")).unwrap();
    let f = config_beside_models(dir.path(), "m");
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["--config", path_str(&f), "--device", "cpu", "--json", "detect"])
        .arg(sample(1))
        .current_dir("/")
        .output()
        .unwrap();
    let v = stdout_json(&out);
    assert!(!v["faces"].as_array().unwrap().is_empty());
    let ok = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["--config", path_str(&f), "validate-config"])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

#[test]
fn a_missing_model_names_every_path_tried() {
    let dir = TempDir::new("cfg-missing");
    let f = config_beside_models(dir.path(), "absent");
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["--config", path_str(&f), "--device", "cpu", "detect"])
        .arg(sample(1))
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    let beside = dir.path().join("absent/libonnxruntime.so");
    for needle in [
        "error: ONNX Runtime library libonnxruntime.so: no such file",
        &format!(
            "/absent/libonnxruntime.so (models.dir \"absent\" from {}, in the working directory)",
            f.display()
        ),
        &format!("{} (beside the configuration file)", beside.display()),
        "(beside the binary)",
        "/usr/lib/facegate/models/libonnxruntime.so (system-wide)",
    ] {
        assert!(line.contains(needle), "{needle:?} not in {line}");
    }
}
