//! Shared helpers of the end-to-end tests: they drive the real binary with the real models.
#![allow(dead_code)]

pub mod mosquitto;
pub mod rtsp;
pub mod subscriber;
pub mod watch;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The prepared models. Missing models fail the test loudly: they are part of the test setup.
pub fn models() -> PathBuf {
    let dir = std::env::var_os("FACEGATE_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models/prepared"));
    for f in [
        "libonnxruntime.so",
        "face_detection_yunet_2023mar.onnx",
        "face_recognition_sface_2021dec.onnx",
    ] {
        assert!(
            dir.join(f).is_file(),
            "{} is missing: run models/fetch first",
            dir.join(f).display()
        );
    }
    dir
}

/// The OpenVINO build of ONNX Runtime under the prepared models, which `./dev test` fetches
/// (`models/fetch --openvino`): missing, it fails the test loudly rather than skipping it.
pub fn openvino_runtime() -> PathBuf {
    let lib = models().join("openvino/libonnxruntime.so.1.24.1");
    assert!(
        lib.is_file(),
        "{} is missing: run models/fetch --openvino first (./dev test does)",
        lib.display()
    );
    lib
}

pub fn sample(n: u32) -> PathBuf {
    models().join(format!("samples/sample{n}.jpg"))
}

/// A scratch folder unique to one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("facegate-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `facegate` on CPU with the test models and no configuration file.
pub fn facegate(args: &[&str], envs: &[(&str, &str)]) -> Output {
    facegate_on("cpu", args, envs)
}

/// Enrolls the largest face of `photo` as `name` into the gallery file `gallery` (created
/// if missing); fails the test when the binary refuses.
pub fn enroll_largest(gallery: &Path, name: &str, photo: &Path) {
    let o = facegate(
        &[
            "--gallery",
            path_str(gallery),
            "enroll",
            "--name",
            name,
            "--largest",
            path_str(photo),
        ],
        &[],
    );
    assert!(
        o.status.success(),
        "enroll {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs `facegate` on `device` with the test models and no configuration file.
pub fn facegate_on(device: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let models = models();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_facegate"));
    cmd.arg("--models").arg(&models).arg("--device").arg(device).args(args);
    // An empty working directory, so that no config/facegate.toml is picked up.
    cmd.current_dir(std::env::temp_dir());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("facegate binary runs")
}

pub fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "facegate failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// A JSON array of numbers.
pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// Intersection over union of two `[x, y, w, h]` boxes.
pub fn iou(a: &[f64], b: &[f64]) -> f64 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)
}

pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "facegate-test-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A PNG of `width`×`height` black pixels, streamed row by row: 20000×20000 takes about
/// 6 MB on disk (fast compression) and 1.2 GB once decoded.
pub fn png_bomb(path: &std::path::Path, width: u32, height: u32) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut encoder = png::Encoder::new(file, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let row = vec![0u8; width as usize * 3];
    for _ in 0..height {
        std::io::Write::write_all(&mut stream, &row).unwrap();
    }
    stream.finish().unwrap();
}
