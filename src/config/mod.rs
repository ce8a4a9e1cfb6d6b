//! The configuration: one root made of per-subsystem sections, read from TOML with
//! `FACEGATE__SECTION__KEY` environment overrides, then validated as a whole so that
//! every problem is reported at once, each naming its key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

mod check;
mod install;
pub mod manifest;
mod show;
pub mod source;

pub use show::is_secret;

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
    pub liveness: crate::vision::liveness::LivenessConfig,
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
    /// `auto`: decode on the GPU (NVDEC: nvh264dec, nvh265dec, …) when GStreamer has the
    /// nvcodec decoders and the models run on CUDA; `off`: always the CPU decoders.
    pub hardware_decoding: crate::video::hwdec::HardwareDecoding,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            shutdown_grace_s: 10,
            frame_queue: 8,
            ready_timeout_s: 30,
            hardware_decoding: crate::video::hwdec::HardwareDecoding::Auto,
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
    /// How long the worker waits for frames of other cameras to fill a batch, ms. 0 (the
    /// default): it takes what is queued and goes, which is right on a CPU; on a GPU,
    /// where a batch of 8–16 costs little more than one, e.g. `max_batch_frames = 16`
    /// and 10 ms.
    pub batch_wait_ms: u64,
}

impl Default for RecognitionConfig {
    fn default() -> Self {
        RecognitionConfig {
            threshold: 0.363,
            max_batch_frames: 4,
            batch_wait_ms: 0,
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

/// One thing wrong with the configuration, at its key (`cameras[2].url`); the key is
/// empty for the file as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: &str, message: String) -> Problem {
        Problem {
            key: key.to_owned(),
            message,
        }
    }

    /// `key: message`, as `validate()` writes its problems.
    fn parse(line: &str) -> Problem {
        match line.split_once(": ") {
            Some((key, message)) if !key.contains(' ') => Problem::new(key, message.to_owned()),
            _ => Problem::new("", line.to_owned()),
        }
    }

    pub fn line(&self) -> String {
        if self.key.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.key, self.message)
        }
    }

    /// Whether a problem at `key` follows from this one (the same key or a key inside it),
    /// so that a value is reported once, for its first fault.
    fn covers(&self, key: &str) -> bool {
        !self.key.is_empty()
            && key
                .strip_prefix(&self.key)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    }
}

/// A configuration as read, with every problem found in it.
pub struct Checked {
    /// The configuration, with defaults in place of the values that have problems.
    pub config: Config,
    /// Sorted by key (cameras by index) so that every run prints the same lines.
    pub problems: Vec<Problem>,
    /// The sources, for `config show`.
    pub tree: source::Tree,
}

impl Checked {
    pub fn lines(&self) -> Vec<String> {
        self.problems.iter().map(Problem::line).collect()
    }

    /// Adds the problems of a later stage that the earlier ones do not explain.
    fn add(&mut self, more: Vec<Problem>) {
        let earlier = self.problems.len();
        for p in more {
            if !self.problems[..earlier].iter().any(|q| q.covers(&p.key)) {
                self.problems.push(p);
            }
        }
        sort_problems(&mut self.problems);
    }

    fn into_result(self) -> Result<Config, Error> {
        if self.problems.is_empty() {
            Ok(self.config)
        } else {
            Err(Error::Config(self.lines()))
        }
    }
}

impl Config {
    /// Reads `file` (or [`DEFAULT_CONFIG_PATH`] when it exists), applies environment and
    /// command-line overrides, and checks the values: keys, types and ranges.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Error> {
        Config::check(file, overrides, false)?.into_result()
    }

    /// [`Config::load`], and also the files it names: models and ONNX Runtime (found, and
    /// the files `models/fetch` prepares) and the videos of file cameras. What
    /// `validate-config` checks and `run` refuses to start without.
    pub fn load_checked(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Error> {
        Config::check(file, overrides, true)?.into_result()
    }

    /// Every problem at once. `Err` only when nothing could be read: a missing or
    /// unparsable file.
    pub fn check(file: Option<&Path>, overrides: &Overrides, files: bool) -> Result<Checked, Error> {
        let mut tree = source::Tree::default();
        let path = match file {
            Some(path) if !path.is_file() => {
                return Err(Error::Config(vec![format!(
                    "{}: no such configuration file",
                    path.display()
                )]));
            }
            Some(path) => Some(path),
            None => Some(Path::new(DEFAULT_CONFIG_PATH)).filter(|p| p.is_file()),
        };
        if let Some(path) = path {
            source::read_file(&mut tree, path).map_err(|line| Error::Config(vec![line]))?;
        }
        source::read_env(&mut tree, std::env::vars_os());
        overrides.record(&mut tree);
        let mut checker = check::Checker::new(&tree);
        let clean = checker.run();
        let mut problems: Vec<Problem> = tree.problems.iter().map(|(k, m)| Problem::new(k, m.clone())).collect();
        problems.append(&mut checker.problems);
        let mut config: Config = serde_json::from_value(serde_json::Value::Object(clean)).unwrap_or_else(|e| {
            problems.push(Problem::new("", format!("cannot read the configuration: {e}")));
            Config::default()
        });
        overrides.apply(&mut config);
        config.models.search = models_search(&tree);
        sort_problems(&mut problems);
        let mut checked = Checked { config, problems, tree };
        let range: Vec<Problem> = checked.config.validate().iter().map(|l| Problem::parse(l)).collect();
        checked.add(range);
        if files {
            let found = install::problems(&checked.config);
            checked.add(found);
        }
        for p in &mut checked.problems {
            annotate(p, &checked.config, &checked.tree);
        }
        checked.problems.dedup();
        Ok(checked)
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
        if self.recognition.batch_wait_ms > 1000 {
            p.push(format!(
                "recognition.batch_wait_ms: {} is above 1000 (a frame would wait longer than a door can)",
                self.recognition.batch_wait_ms
            ));
        }
        p.extend(self.gallery.validate());
        p.extend(self.tracker.validate("tracker"));
        p.extend(self.mqtt.validate("mqtt"));
        p.extend(self.commands.validate("commands"));
        p.extend(self.images.validate("images"));
        p.extend(self.liveness.validate("liveness"));
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

impl Overrides {
    /// Puts the flags in the tree, so that they replace what the file and the environment
    /// said (and a bad value there is not reported) and problems name the flag.
    fn record(&self, tree: &mut source::Tree) {
        let text = |p: &Path| serde_json::Value::from(p.to_string_lossy().into_owned());
        let path = |key: &str| key.split('.').map(str::to_owned).collect::<Vec<_>>();
        if let Some(dir) = &self.models_dir {
            tree.set(&path("models.dir"), text(dir), source::Origin::Flag("--models"));
        }
        if let Some(gallery) = &self.gallery {
            tree.set(&path("gallery.path"), text(gallery), source::Origin::Flag("--gallery"));
        }
        if let Some(device) = self.device {
            let value = serde_json::to_value(device).unwrap_or_default();
            tree.set(&path("inference.device"), value, source::Origin::Flag("--device"));
        }
    }

    /// The flags' typed values (the tree holds paths as text, which may not be UTF-8).
    fn apply(&self, cfg: &mut Config) {
        if let Some(dir) = &self.models_dir {
            cfg.models.dir = dir.clone();
        }
        if let Some(path) = &self.gallery {
            cfg.gallery.path = path.clone();
        }
        if let Some(device) = self.device {
            cfg.inference.device = device;
        }
    }
}

/// Where relative model paths are looked for, and where each `models.*` value came from.
fn models_search(tree: &source::Tree) -> crate::engine::ModelSearch {
    let config_dir = tree
        .file
        .as_deref()
        .and_then(|f| std::path::absolute(f).ok())
        .and_then(|f| f.parent().map(Path::to_path_buf));
    let origins = [
        "dir",
        "detector",
        "embedder",
        "runtime_library",
        "openvino_library",
        "antispoof_v2",
        "antispoof_v1se",
    ]
    .into_iter()
    .map(|field| (field.to_owned(), tree.origin(&format!("models.{field}")).to_string()))
    .collect();
    crate::engine::ModelSearch { config_dir, origins }
}

/// Adds advice that needs the value, and the variable or flag that set a key when it was
/// not the file.
fn annotate(p: &mut Problem, cfg: &Config, tree: &source::Tree) {
    if let Some(hint) = check::value_hint(&p.key, cfg)
        && !p.message.contains(&hint)
    {
        p.message = format!("{}; {hint}", p.message);
    }
    // An unknown table set from the environment is known by the variable's full key.
    let origin = tree.overridden.get(&p.key).or_else(|| {
        let inside = Problem::new(&p.key, String::new());
        tree.overridden.iter().find(|(k, _)| inside.covers(k)).map(|(_, o)| o)
    });
    if let Some(origin @ (source::Origin::Env(_) | source::Origin::Flag(_))) = origin {
        p.message = format!("{} (set by {origin})", p.message);
    }
}

/// By key, section names alphabetically and camera indices by number; problems of one key
/// keep the order they were found in.
fn sort_problems(problems: &mut [Problem]) {
    problems.sort_by_cached_key(|p| {
        source::key_parts(&p.key)
            .into_iter()
            .map(|part| match part.parse::<u64>() {
                Ok(n) => (String::new(), n),
                Err(_) => (part, 0),
            })
            .collect::<Vec<_>>()
    });
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
    fn one_pass_finds_problems_of_every_kind_each_once() {
        let dir = std::env::temp_dir().join(format!("facegate-cfg-all-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("all.toml");
        std::fs::write(
            &f,
            "nonsense = 1\n[gallery]\nthreshhold = 0.5\n[gallery.index]\nshortlist = -1\n\
             [inference]\nembed_batch = 0\n[recognition]\nstore_crops = true\n\
             [cameras]\nname = \"x\"\n",
        )
        .unwrap();
        let checked = Config::check(Some(&f), &Overrides::default(), false).unwrap();
        let keys: Vec<&str> = checked.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "cameras",
                "gallery.index.shortlist",
                "gallery.threshhold",
                "inference.embed_batch",
                "nonsense",
                "recognition.store_crops",
            ],
            "{:#?}",
            checked.lines()
        );
        let lines = checked.lines();
        assert!(lines[1].contains("invalid value: integer `-1`"), "{}", lines[1]);
        assert!(lines[2].ends_with("did you mean `threshold`?"), "{}", lines[2]);
        assert!(
            lines[5].ends_with("`store_crops` is a key of [gallery]"),
            "{}",
            lines[5]
        );
        // A flag replaces a bad value instead of having it reported.
        std::fs::write(&f, "[inference]\ndevice = \"gpu\"\n").unwrap();
        assert!(Config::load(Some(&f), &Overrides::default()).is_err());
        let flag = Overrides {
            device: Some(crate::inference::Device::Cpu),
            ..Default::default()
        };
        assert_eq!(
            Config::load(Some(&f), &flag).unwrap().inference.device,
            crate::inference::Device::Cpu
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn problems_sort_by_key_with_camera_indices_as_numbers() {
        let mut p: Vec<Problem> = [
            "cameras[10].url",
            "cameras[2].url",
            "admin.listen",
            "",
            "cameras[2].name",
        ]
        .iter()
        .map(|k| Problem::new(k, "x".into()))
        .collect();
        sort_problems(&mut p);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "",
                "admin.listen",
                "cameras[2].name",
                "cameras[2].url",
                "cameras[10].url"
            ]
        );
        assert!(Problem::new("cameras[2]", "x".into()).covers("cameras[2].url"));
        assert!(!Problem::new("cameras[2]", "x".into()).covers("cameras[20].url"));
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
