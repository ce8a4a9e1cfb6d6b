//! The digests of the files `models/fetch` prepares, built into the binary from
//! `models/manifest.toml`. Built in rather than read beside the models: an installed binary
//! needs no checkout, and whoever can replace a model cannot also rewrite what it is
//! checked against. The price: a different model needs a rebuilt binary.

use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;
use sha2::{Digest, Sha256};

const MANIFEST: &str = include_str!("../../models/manifest.toml");

#[derive(Debug, Deserialize)]
struct Manifest {
    artifact: Vec<Artifact>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Artifact {
    /// Short id (`yunet`, `sface`, `onnxruntime`, `onnxruntime_gpu`, …).
    pub name: String,
    /// Path under the models folder.
    pub output: String,
    pub prepared_sha256: String,
}

/// What a `models.*` key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Detector,
    Embedder,
    Runtime,
    /// ONNX Runtime with the OpenVINO provider.
    OpenVinoRuntime,
    /// Liveness CNN, Silent-Face MiniFASNetV2.
    AntispoofV2,
    /// Liveness CNN, Silent-Face MiniFASNetV1SE.
    AntispoofV1se,
}

impl Role {
    /// The artifacts a file in this role may be: the runtime is the CPU or the CUDA build.
    fn accepted(self) -> &'static [&'static str] {
        match self {
            Role::Detector => &["yunet"],
            Role::Embedder => &["sface"],
            Role::Runtime => &["onnxruntime", "onnxruntime_gpu"],
            Role::OpenVinoRuntime => &["onnxruntime_openvino"],
            Role::AntispoofV2 => &["minifasnet_v2"],
            Role::AntispoofV1se => &["minifasnet_v1se"],
        }
    }
}

/// Every artifact of the built-in manifest (empty if it did not parse, which a test rules out).
pub fn artifacts() -> &'static [Artifact] {
    static PARSED: OnceLock<Vec<Artifact>> = OnceLock::new();
    PARSED.get_or_init(|| {
        toml::from_str::<Manifest>(MANIFEST)
            .map(|m| m.artifact)
            .unwrap_or_default()
    })
}

pub fn artifact(name: &str) -> Option<&'static Artifact> {
    artifacts().iter().find(|a| a.name == name)
}

/// Whether the file at `path` is one that `models/fetch` prepares for `role`; the error
/// says which digest it has and which were expected.
pub fn verify(role: Role, path: &Path) -> Result<(), String> {
    let expected: Vec<&Artifact> = role.accepted().iter().filter_map(|n| artifact(n)).collect();
    if expected.is_empty() {
        return Err("no digest is built in for it (the manifest did not parse)".into());
    }
    let actual = sha256_file(path)?;
    if expected.iter().any(|a| a.prepared_sha256 == actual) {
        return Ok(());
    }
    let wanted: Vec<String> = expected
        .iter()
        .map(|a| format!("{} {}", a.output, short(&a.prepared_sha256)))
        .collect();
    Err(format!(
        "sha256 {} is not that of the file models/fetch prepares ({}): corrupt or a different build; run models/fetch again",
        short(&actual),
        wanted.join(" or ")
    ))
}

fn short(hex: &str) -> String {
    format!("{}…", hex.get(..16).unwrap_or(hex))
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_manifest_has_every_role() {
        for name in [
            "yunet",
            "sface",
            "onnxruntime",
            "onnxruntime_gpu",
            "onnxruntime_openvino",
            "minifasnet_v2",
            "minifasnet_v1se",
        ] {
            let a = artifact(name).unwrap_or_else(|| panic!("{name} missing from the manifest"));
            assert_eq!(a.prepared_sha256.len(), 64);
        }
        let defaults = crate::engine::ModelsConfig::default();
        assert_eq!(artifact("yunet").unwrap().output, defaults.detector.to_str().unwrap());
        assert_eq!(artifact("sface").unwrap().output, defaults.embedder.to_str().unwrap());
        assert_eq!(
            artifact("onnxruntime").unwrap().output,
            defaults.runtime_library.to_str().unwrap()
        );
        assert_eq!(
            artifact("onnxruntime_openvino").unwrap().output,
            defaults.openvino_library.to_str().unwrap()
        );
        assert_eq!(
            artifact("minifasnet_v2").unwrap().output,
            defaults.antispoof_v2.to_str().unwrap()
        );
        assert_eq!(
            artifact("minifasnet_v1se").unwrap().output,
            defaults.antispoof_v1se.to_str().unwrap()
        );
        // The advice given when CUDA is asked of the CPU runtime names the CUDA build's path.
        assert_eq!(
            artifact("onnxruntime_gpu").unwrap().output,
            crate::inference::CUDA_RUNTIME_LIBRARY
        );
    }

    #[test]
    fn a_file_is_checked_against_its_role() {
        let dir = std::env::temp_dir().join(format!("facegate-digest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("face_detection_yunet_2023mar.onnx");
        std::fs::write(&f, b"not a model").unwrap();
        let err = verify(Role::Detector, &f).unwrap_err();
        assert!(
            err.contains("face_detection_yunet_2023mar.onnx db381f982fccd40b"),
            "{err}"
        );
        assert!(verify(Role::Runtime, &dir.join("none.so")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
