//! Bad input gets one clear line on stderr and a non-zero exit, never a panic.

mod common;

use common::*;

fn assert_one_line_error(out: &std::process::Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{needle:?} not in {stderr:?}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
}

#[test]
fn missing_file() {
    let out = facegate(&["detect", "/nonexistent/face.jpg"], &[]);
    assert_one_line_error(&out, 4, "no such file");
}

#[test]
fn not_an_image() {
    let dir = scratch("notimage");
    let f = dir.join("notes.jpg");
    std::fs::write(&f, "this is a text file, not a photo").unwrap();
    assert_one_line_error(&facegate(&["embed", path_str(&f)], &[]), 4, "not an image");
}

#[test]
fn truncated_jpeg() {
    let dir = scratch("truncated");
    let bytes = std::fs::read(sample(1)).unwrap();
    let f = dir.join("cut.jpg");
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    assert_one_line_error(&facegate(&["detect", path_str(&f)], &[]), 4, "truncated");
}

#[test]
fn an_image_bomb_is_refused_from_its_header() {
    let dir = scratch("bomb");
    let f = dir.join("bomb.png");
    png_bomb(&f, 20_000, 20_000);
    let size = std::fs::metadata(&f).unwrap().len();
    assert!(size < 10_000_000, "the bomb is small on disk: {size} bytes");
    for cmd in ["detect", "embed"] {
        assert_one_line_error(&facegate(&[cmd, path_str(&f)], &[]), 4, "images.max_pixels");
    }
    let g = dir.join("gallery.db");
    let out = facegate(
        &["--gallery", path_str(&g), "enroll", "--name", "Bomb", path_str(&f)],
        &[],
    );
    assert_one_line_error(&out, 4, "20000×20000");
    // The limit is a setting: a lower one refuses an ordinary photo the same way.
    let out = facegate(
        &["detect", path_str(&sample(1))],
        &[("FACEGATE__IMAGES__MAX_PIXELS", "1000")],
    );
    assert_one_line_error(&out, 4, "images.max_pixels");
}

#[test]
fn image_without_a_face() {
    let dir = scratch("noface");
    let f = dir.join("wall.png");
    image::RgbImage::from_fn(320, 240, |x, y| image::Rgb([(x / 3) as u8, (y / 2) as u8, 128]))
        .save(&f)
        .unwrap();
    for cmd in ["detect", "embed"] {
        assert_one_line_error(&facegate(&[cmd, path_str(&f)], &[]), 4, "no face found");
    }
    let s1 = sample(1);
    assert_one_line_error(
        &facegate(&["compare", path_str(&s1), path_str(&f)], &[]),
        4,
        "no face found",
    );
}

#[test]
fn missing_and_corrupt_models() {
    let dir = scratch("models");
    let out = facegate(
        &["detect", path_str(&sample(1))],
        &[("FACEGATE__MODELS__DETECTOR", "/nonexistent/yunet.onnx")],
    );
    assert_one_line_error(&out, 5, "no such file");
    let corrupt = dir.join("corrupt.onnx");
    std::fs::write(&corrupt, vec![0x5Au8; 4096]).unwrap();
    let out = facegate(
        &["embed", path_str(&sample(1))],
        &[("FACEGATE__MODELS__EMBEDDER", path_str(&corrupt))],
    );
    assert_one_line_error(&out, 5, "corrupt.onnx");
    // A valid model that is not YuNet: the embedder in the detector's place.
    let sface = models().join("face_recognition_sface_2021dec.onnx");
    let out = facegate(
        &["detect", path_str(&sample(1))],
        &[("FACEGATE__MODELS__DETECTOR", path_str(&sface))],
    );
    assert_one_line_error(&out, 5, "not a YuNet");
}

#[test]
fn missing_and_broken_runtime_library() {
    let out = facegate(
        &["detect", path_str(&sample(1))],
        &[("FACEGATE__MODELS__RUNTIME_LIBRARY", "/nonexistent/libonnxruntime.so")],
    );
    assert_one_line_error(&out, 5, "ONNX Runtime library");
    let dir = scratch("runtime");
    let fake = dir.join("libonnxruntime.so");
    std::fs::write(&fake, "not a shared library").unwrap();
    let out = facegate(
        &["detect", path_str(&sample(1))],
        &[("FACEGATE__MODELS__RUNTIME_LIBRARY", path_str(&fake))],
    );
    assert_one_line_error(&out, 5, "ONNX Runtime library");
}

#[test]
fn cuda_demanded_on_a_cpu_runtime_says_what_to_install_and_auto_falls_back_quietly() {
    let s1 = sample(1);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args([
            "--models",
            path_str(&models()),
            "--device",
            "cuda",
            "detect",
            path_str(&s1),
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_one_line_error(&out, 5, "CUDA");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run models/fetch --cuda")
            && stderr.contains(r#"models.runtime_library = "cuda/libonnxruntime.so.1.31.1""#),
        "{stderr}"
    );
    // auto on a CPU runtime: CPU, and nothing said (the daemon says it once when it starts).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args([
            "--models",
            path_str(&models()),
            "--device",
            "auto",
            "--json",
            "detect",
            path_str(&s1),
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "nothing on stderr expected: {stderr}");
}

#[test]
fn openvino_runs_and_without_its_runtime_says_what_to_fetch() {
    openvino_runtime();
    let out = facegate_on("openvino", &["--json", "detect", path_str(&sample(1))], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "nothing on stderr expected: {stderr}");
    assert!(!stdout_json(&out)["faces"].as_array().unwrap().is_empty());

    // A models folder with everything but the OpenVINO build.
    let dir = scratch("no-openvino");
    for f in [
        "libonnxruntime.so",
        "face_detection_yunet_2023mar.onnx",
        "face_recognition_sface_2021dec.onnx",
    ] {
        std::os::unix::fs::symlink(models().join(f), dir.join(f)).unwrap();
    }
    let run = |device: &str, json: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_facegate"));
        cmd.args(["--models", path_str(&dir), "--device", device]);
        if json {
            cmd.arg("--json");
        }
        cmd.args(["detect", path_str(&sample(1))])
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap()
    };
    let out = run("openvino", false);
    assert_one_line_error(&out, 5, "OpenVINO execution provider unavailable");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run models/fetch --openvino") && stderr.contains(path_str(&dir)),
        "{stderr}"
    );
    let out = run("openvino", true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON error on stdout");
    assert_eq!(v["error"]["kind"], "openvino_unavailable", "{v}");
    // auto without the OpenVINO build: CPU, and nothing said.
    let out = run("auto", true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
}

#[test]
fn bad_configuration_reports_every_problem() {
    let dir = scratch("config");
    let f = dir.join("facegate.toml");
    std::fs::write(
        &f,
        "[detector]\nscore_threshold = 2.0\ntop_k = 0\n[recognition]\nthreshold = 5.0\n",
    )
    .unwrap();
    let out = facegate(&["--config", path_str(&f), "validate-config"], &[]);
    assert_eq!(out.status.code(), Some(3));
    // One line per problem, each with its key (tests/config.rs has the rest).
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    for (line, key) in lines
        .iter()
        .zip(["detector.score_threshold", "detector.top_k", "recognition.threshold"])
    {
        assert!(line.starts_with(&format!("error: {key}: ")), "{key}: {stderr}");
    }
}

#[test]
fn json_errors_are_json_on_stdout_too() {
    let out = facegate(&["--json", "detect", "/nonexistent/face.jpg"], &[]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON error on stdout");
    assert_eq!(v["error"]["kind"], "input", "{v}");
    assert_eq!(v["error"]["exit_code"], 4, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("no such file"), "{v}");
}

#[test]
fn detect_prints_landmarks_in_plain_text() {
    let out = facegate(&["detect", path_str(&sample(1))], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("right eye ") && text.contains("left mouth "), "{text}");
}

#[test]
fn log_settings_are_checked() {
    let out = facegate(&["detect", path_str(&sample(1))], &[("FACEGATE_LOG", "info,=bad=")]);
    assert_one_line_error(&out, 3, "FACEGATE_LOG");
    let out = facegate(&["detect", path_str(&sample(1))], &[("FACEGATE_LOG_FORMAT", "xml")]);
    assert_one_line_error(&out, 3, "FACEGATE_LOG_FORMAT");
    // JSON logs: every line on stderr is one JSON object.
    let out = facegate(
        &["detect", path_str(&sample(1))],
        &[("FACEGATE_LOG", "info"), ("FACEGATE_LOG_FORMAT", "json")],
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().count() > 0, "info logs expected");
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
}
