//! The configuration: one root made of per-subsystem sections, read from TOML with
//! `FACEGATE__SECTION__KEY` environment overrides, then validated as a whole so that
//! every problem is reported at once, each naming its key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Where the configuration file is looked for when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/facegate.toml";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub models: crate::engine::ModelsConfig,
    pub inference: crate::inference::InferenceConfig,
    pub detector: crate::vision::detector::DetectorConfig,
    pub recognition: RecognitionConfig,
    pub gallery: crate::gallery::GalleryConfig,
    pub tracker: crate::track::TrackerConfig,
    pub mqtt: crate::events::MqttConfig,
    pub commands: crate::events::CommandsConfig,
    pub admin: crate::admin::AdminConfig,
    pub daemon: DaemonConfig,
    pub images: crate::vision::image_io::ImageLimits,
    pub cameras: Vec<crate::video::CameraConfig>,
}

/// How the daemon runs as a whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// On SIGTERM: how long to keep delivering queued events before exiting.
    pub shutdown_grace_s: u64,
    /// Frames that may wait for recognition, per camera; a paced camera drops its oldest
    /// waiting frame beyond it, a replay waits.
    pub frame_queue: usize,
    /// Tell systemd the service is up (READY) at the latest this many seconds after start,
    /// once the models and the gallery are loaded, even if the broker or a camera is not
    /// up yet: they are retried in the background and `/ready` says which is missing.
    pub ready_timeout_s: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            shutdown_grace_s: 10,
            frame_queue: 8,
            ready_timeout_s: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecognitionConfig {
    /// Cosine similarity at or above which `compare` calls two photos the same person
    /// (OpenCV's SFace threshold on LFW is 0.363). Door decisions use `gallery.threshold`;
    /// `gallery::matcher` says which decision uses which.
    pub threshold: f32,
    /// Most frames, one per camera, that the recognition worker takes through its stages
    /// together (their faces share one embedder call).
    pub max_batch_frames: usize,
}

impl Default for RecognitionConfig {
    fn default() -> Self {
        RecognitionConfig {
            threshold: 0.363,
            max_batch_frames: 4,
        }
    }
}

/// Settings given on the command line, which win over the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub models_dir: Option<PathBuf>,
    pub gallery: Option<PathBuf>,
    pub device: Option<crate::inference::Device>,
}

impl Config {
    /// Reads `file` (or [`DEFAULT_CONFIG_PATH`] when it exists), applies environment and
    /// command-line overrides, and validates the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Error> {
        let mut builder = config::Config::builder();
        match file {
            Some(path) => {
                if !path.is_file() {
                    return Err(Error::Config(vec![format!(
                        "{}: no such configuration file",
                        path.display()
                    )]));
                }
                builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
            }
            None => {
                builder = builder
                    .add_source(config::File::new(DEFAULT_CONFIG_PATH, config::FileFormat::Toml).required(false));
            }
        }
        builder = builder.add_source(
            config::Environment::with_prefix("FACEGATE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let raw = builder.build().map_err(|e| Error::Config(vec![e.to_string()]))?;
        let mut cfg: Config = raw.try_deserialize().map_err(|e| Error::Config(vec![e.to_string()]))?;
        if let Some(dir) = &overrides.models_dir {
            cfg.models.dir = dir.clone();
        }
        if let Some(path) = &overrides.gallery {
            cfg.gallery.path = path.clone();
        }
        if let Some(device) = overrides.device {
            cfg.inference.device = device;
        }
        let problems = cfg.validate();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(Error::Config(problems))
        }
    }

    /// The rules every enrollment is held to (CLI and remote commands alike).
    pub fn enroll_rules(&self) -> crate::gallery::enroll::EnrollRules {
        crate::gallery::enroll::EnrollRules {
            limits: self.images,
            same_person_threshold: self.recognition.threshold,
        }
    }

    /// Every problem with the values, each prefixed by its key.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        p.extend(self.detector.validate("detector"));
        p.extend(self.inference.validate("inference"));
        p.extend(self.models.validate("models"));
        if !(-1.0..=1.0).contains(&self.recognition.threshold) {
            p.push(format!(
                "recognition.threshold: {} is not a cosine similarity (−1–1)",
                self.recognition.threshold
            ));
        }
        if self.recognition.max_batch_frames == 0 {
            p.push("recognition.max_batch_frames: must be at least 1".into());
        }
        p.extend(self.gallery.validate());
        p.extend(self.tracker.validate("tracker"));
        p.extend(self.mqtt.validate("mqtt"));
        p.extend(self.commands.validate("commands"));
        p.extend(self.images.validate("images"));
        if self.daemon.frame_queue == 0 {
            p.push("daemon.frame_queue: must be at least 1".into());
        }
        if self.daemon.ready_timeout_s > 3600 {
            p.push(format!(
                "daemon.ready_timeout_s: {} is more than an hour",
                self.daemon.ready_timeout_s
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, cam) in self.cameras.iter().enumerate() {
            p.extend(cam.validate(&format!("cameras[{i}]")));
            if !names.insert(cam.name.as_str()) {
                p.push(format!("cameras[{i}].name: {:?} is used by another camera", cam.name));
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_empty());
    }

    /// (section, key) of every leaf of a serialised section, depth first.
    fn leaf_keys(value: &serde_json::Value, section: &str, out: &mut Vec<(String, String)>) {
        for (key, v) in value.as_object().expect("a section is a table") {
            match v {
                serde_json::Value::Object(_) if section.is_empty() => leaf_keys(v, key, out),
                serde_json::Value::Object(_) => leaf_keys(v, &format!("{section}.{key}"), out),
                _ => out.push((section.to_string(), key.clone())),
            }
        }
    }

    #[test]
    fn the_shipped_file_documents_every_key_at_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
        let text = std::fs::read_to_string(&path).unwrap();
        // Values: what the file sets is the default (read without environment overrides).
        let shipped: Config = config::Config::builder()
            .add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .unwrap();
        let defaults = serde_json::to_value(Config::default()).unwrap();
        assert_eq!(serde_json::to_value(&shipped).unwrap(), defaults);
        // Keys: every one appears in its section, set or commented out (optional ones).
        let mut keys = Vec::new();
        let mut sections = defaults.clone();
        sections.as_object_mut().unwrap().remove("cameras");
        leaf_keys(&sections, "", &mut keys);
        let camera = serde_json::to_value(crate::video::CameraConfig::new("door", "rtsp://camera/1")).unwrap();
        leaf_keys(&camera, "[cameras]", &mut keys);
        let uncommented: Vec<&str> = text.lines().map(|l| l.trim_start_matches(['#', ' '])).collect();
        for (section, key) in keys {
            let header = format!("[{section}]");
            let start = uncommented
                .iter()
                .position(|l| *l == header)
                .unwrap_or_else(|| panic!("{header} missing from {}", path.display()));
            let body = uncommented[start + 1..].iter().take_while(|l| !l.starts_with('['));
            let documented = body.into_iter().any(|l| l.starts_with(&format!("{key} =")));
            assert!(documented, "{section}.{key} is not in {}", path.display());
        }
    }

    #[test]
    fn validation_reports_every_problem_with_its_key() {
        let mut c = Config::default();
        c.detector.score_threshold = 1.5;
        c.detector.top_k = 0;
        c.recognition.threshold = 3.0;
        c.inference.embed_batch = 0;
        let p = c.validate();
        assert_eq!(p.len(), 4, "{p:?}");
        for key in [
            "detector.score_threshold",
            "detector.top_k",
            "recognition.threshold",
            "inference.embed_batch",
        ] {
            assert!(p.iter().any(|m| m.starts_with(key)), "{key} missing in {p:?}");
        }
    }

    #[test]
    fn file_values_and_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("facegate-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "[recognition]\nthreshold = 0.5\n[inference]\ndevice = \"cpu\"\n").unwrap();
        let c = Config::load(Some(&good), &Overrides::default()).unwrap();
        assert_eq!(c.recognition.threshold, 0.5);
        assert_eq!(c.inference.device, crate::inference::Device::Cpu);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[recognition]\nthreshhold = 0.5\n").unwrap();
        let err = Config::load(Some(&bad), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("threshhold"), "{err}");
        let missing = Config::load(Some(&dir.join("nope.toml")), &Overrides::default()).unwrap_err();
        assert!(missing.to_string().contains("no such configuration file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
