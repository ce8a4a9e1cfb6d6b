//! What a configuration needs on disk besides itself: the detector, the embedder, ONNX
//! Runtime (the OpenVINO build for `device = "openvino"`) and the two liveness CNNs, each found (see `ModelsConfig::candidates`) and each
//! the very file `models/fetch` prepares; and the video files that file cameras play.

use std::path::{Path, PathBuf};

use super::manifest::{self, Role};
use super::{Config, Problem};
use crate::inference::Device;

/// Every problem with the files the configuration names.
pub(crate) fn problems(cfg: &Config) -> Vec<Problem> {
    let mut p = Vec::new();
    for (field, role, need) in model_files(cfg.inference.device) {
        let key = format!("models.{field}");
        match cfg.models.locate(field) {
            Err(why) if need == Need::Required => p.push(Problem::new(&key, why)),
            Err(_) => {}
            Ok(path) => {
                if let Err(why) = manifest::verify(role, &path) {
                    p.push(Problem::new(&key, format!("{}: {why}", path.display())));
                }
            }
        }
    }
    // CUDA demanded of the CPU build can only fail at start: say so now, without loading it.
    if cfg.inference.device == Device::Cuda
        && let Ok(library) = cfg.models.locate("runtime_library")
        && !crate::inference::is_cuda_build(&library)
    {
        p.push(Problem::new(
            "inference.device",
            format!(
                "cuda needs the CUDA build of ONNX Runtime and {} is the CPU build; {}",
                library.display(),
                crate::inference::cuda_runtime_advice()
            ),
        ));
    }
    let config_dir = cfg.models.search.config_dir.as_deref();
    for (i, cam) in cfg.cameras.iter().enumerate() {
        if let Some(why) = camera_file_problem(&cam.url, config_dir) {
            p.push(Problem::new(&format!("cameras[{i}].url"), why));
        }
    }
    p
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Must be found.
    Required,
    /// Checked when found: `auto` loads it on an x86-64 CPU with AVX2.
    IfPresent,
}

/// The `models.*` files `device` may load, with their roles: the OpenVINO build of ONNX
/// Runtime replaces `runtime_library` for `openvino`, and `auto` may take either.
fn model_files(device: Device) -> Vec<(&'static str, Role, Need)> {
    let mut files = vec![
        ("detector", Role::Detector, Need::Required),
        ("embedder", Role::Embedder, Need::Required),
    ];
    match device {
        Device::OpenVino => files.push(("openvino_library", Role::OpenVinoRuntime, Need::Required)),
        Device::Auto => {
            files.push(("runtime_library", Role::Runtime, Need::Required));
            files.push(("openvino_library", Role::OpenVinoRuntime, Need::IfPresent));
        }
        Device::Cpu | Device::Cuda => files.push(("runtime_library", Role::Runtime, Need::Required)),
    }
    files.push(("antispoof_v2", Role::AntispoofV2, Need::Required));
    files.push(("antispoof_v1se", Role::AntispoofV1se, Need::Required));
    files
}

/// What is wrong with the file a camera plays, for `file://` URLs and plain paths.
fn camera_file_problem(url: &str, config_dir: Option<&Path>) -> Option<String> {
    let url = url.trim();
    let (path, bare) = match file_path(url)? {
        FileUrl::Uri(path) => (path, false),
        FileUrl::Bare(path) => (path, true),
    };
    if path.is_file() {
        return None;
    }
    if path.is_dir() {
        return Some(format!("{} is a directory, not a video file", path.display()));
    }
    if !bare {
        return Some(format!("{}: no such file", path.display()));
    }
    let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
    let mut why = format!(
        "{url:?} is neither a URL nor an existing file ({} not found); give a video file that exists, or a camera URL such as rtsp://camera.example/stream1",
        shown.display()
    );
    if path.is_relative()
        && let Some(beside) = config_dir.map(|d| d.join(&path)).filter(|p| p.is_file())
    {
        why = format!(
            "{url:?} is not in the working directory but {} exists: camera paths are taken from the working directory, so give that path",
            beside.display()
        );
    }
    Some(why)
}

enum FileUrl {
    /// From a `file://` URL.
    Uri(PathBuf),
    /// A plain path, taken from the working directory.
    Bare(PathBuf),
}

/// The local file a camera URL names, the way the camera reads it: `file://` URLs and
/// anything without a scheme that is not a `/dev/video` device. `None` for other sources
/// and for `file://host/…` on another host.
fn file_path(url: &str) -> Option<FileUrl> {
    match scheme(url) {
        Some(s) if s.eq_ignore_ascii_case("file") => {
            let rest = url.get(s.len()..)?.strip_prefix("://")?;
            let rest = rest.strip_prefix("localhost").unwrap_or(rest);
            rest.starts_with('/')
                .then(|| FileUrl::Uri(PathBuf::from(percent_decode(rest))))
        }
        Some(_) => None,
        None if url.starts_with("/dev/video") || url.is_empty() => None,
        None => Some(FileUrl::Bare(PathBuf::from(url))),
    }
}

/// The scheme of a URL, as the camera sorts sources: `[A-Za-z][A-Za-z0-9+.-]*` before `:`.
fn scheme(s: &str) -> Option<&str> {
    let scheme = &s[..s.find(':')?];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))).then_some(scheme)
}

/// `%20` → space; bytes that do not decode are kept as written.
fn percent_decode(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_cameras_are_told_from_the_others() {
        let path = |url: &str| match file_path(url) {
            Some(FileUrl::Uri(p)) => Some(("uri", p)),
            Some(FileUrl::Bare(p)) => Some(("bare", p)),
            None => None,
        };
        assert_eq!(path("file:///a/b%20c.mp4"), Some(("uri", PathBuf::from("/a/b c.mp4"))));
        assert_eq!(path("file://localhost/a.mp4"), Some(("uri", PathBuf::from("/a.mp4"))));
        assert_eq!(
            path("videos/door.mp4"),
            Some(("bare", PathBuf::from("videos/door.mp4")))
        );
        for other in [
            "rtsp://cam/1",
            "https://h/x.m3u8",
            "/dev/video0",
            "file://nas/share/a.mp4",
            "",
        ] {
            assert!(path(other).is_none(), "{other}");
        }
    }

    #[test]
    fn missing_files_are_named_and_files_beside_the_configuration_pointed_out() {
        let dir = std::env::temp_dir().join(format!("facegate-camfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("door.mp4"), b"").unwrap();
        assert_eq!(
            camera_file_problem(&format!("file://{}/door.mp4", dir.display()), None),
            None
        );
        let missing = camera_file_problem("file:///nonexistent/v.mp4", None).unwrap();
        assert!(missing.contains("/nonexistent/v.mp4: no such file"), "{missing}");
        let bare = camera_file_problem("no-such-dir/door.mp4", None).unwrap();
        assert!(bare.contains("neither a URL nor an existing file"), "{bare}");
        let beside = camera_file_problem("door.mp4", Some(&dir)).unwrap();
        assert!(beside.contains(&dir.join("door.mp4").display().to_string()), "{beside}");
        assert_eq!(camera_file_problem("rtsp://cam/1", None), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
