//! The engine on ONNX Runtime's CPU provider against its OpenVINO provider (the build that
//! `models/fetch --openvino` prepares and `./dev test` fetches), on the repository's sample
//! photos: the same faces (box IoU ≥ 0.9), the same encodings (cosine ≥ 0.99) and the same
//! liveness scores. A process loads one ONNX Runtime library, so each provider runs in its
//! own `facegate` process. Without the OpenVINO build these tests fail; they do not skip.

mod common;

use common::*;
use serde_json::Value;

/// `facegate --json ARGS` on `device`, with the provider each session ran on checked in the
/// log: a provider that silently fell back would make the comparison meaningless.
fn run_on(device: &str, args: &[&str]) -> Value {
    let out = facegate_on(device, &[&["--json"], args].concat(), &[("FACEGATE_LOG", "info")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let on_device = format!(r#"provider="{device}""#);
    let sessions: Vec<&str> = stderr.lines().filter(|l| l.contains("session ready")).collect();
    assert!(
        !sessions.is_empty() && sessions.iter().all(|l| l.contains(&on_device)),
        "every session on {device}: {stderr}"
    );
    stdout_json(&out)
}

#[test]
fn samples_give_the_same_faces_and_encodings_on_cpu_and_openvino() {
    openvino_runtime();
    let (mut faces, mut lowest_iou, mut lowest_cosine) = (0, f64::MAX, f64::MAX);
    for n in 1..=6 {
        let image = sample(n);
        let cpu = run_on("cpu", &["embed", path_str(&image)]);
        let ov = run_on("openvino", &["embed", path_str(&image)]);
        let (cpu_faces, ov_faces) = (cpu["faces"].as_array().unwrap(), ov["faces"].as_array().unwrap());
        assert_eq!(cpu_faces.len(), ov_faces.len(), "sample{n}: face count");
        for (i, cf) in cpu_faces.iter().enumerate() {
            let cb = floats(&cf["box"]);
            let (of, overlap) = ov_faces
                .iter()
                .map(|of| (of, iou(&floats(&of["box"]), &cb)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            assert!(
                overlap >= 0.9,
                "sample{n} face {i}: IoU {overlap:.4} between CPU and OpenVINO"
            );
            let c = cosine(&floats(&cf["embedding"]), &floats(&of["embedding"]));
            assert!(c >= 0.99, "sample{n} face {i}: cosine {c:.4} between CPU and OpenVINO");
            let ds = (cf["score"].as_f64().unwrap() - of["score"].as_f64().unwrap()).abs();
            assert!(ds < 0.01, "sample{n} face {i}: scores differ by {ds:.4}");
            (lowest_iou, lowest_cosine) = (lowest_iou.min(overlap), lowest_cosine.min(c));
            faces += 1;
        }
    }
    eprintln!("{faces} faces: IoU ≥ {lowest_iou:.5}, cosine ≥ {lowest_cosine:.5}");
    assert!(faces >= 20, "the samples hold at least 20 faces, compared {faces}");
}

#[test]
fn liveness_scores_agree_on_cpu_and_openvino() {
    openvino_runtime();
    for name in ["image_F1.jpg", "image_F2.jpg", "image_T1.jpg"] {
        let image = repo().join("tests/fixtures/liveness").join(name);
        let score = |device: &str| {
            let v = run_on(device, &["liveness", path_str(&image)]);
            v["faces"][0]["liveness"]["cues"]["cnn"]
                .as_f64()
                .unwrap_or_else(|| panic!("{name} on {device}: no CNN score in {v}"))
        };
        let (cpu, ov) = (score("cpu"), score("openvino"));
        assert!(
            (cpu - ov).abs() < 0.02,
            "{name}: CNN real {cpu:.4} on CPU, {ov:.4} on OpenVINO"
        );
    }
}
