//! Command-line interface: subcommands, their flags, and how results are printed.
//! Every command prints machine-readable JSON with `--json`; errors are one line on
//! stderr and a non-zero exit status.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use image::RgbImage;
use serde::Serialize;
use serde_json::json;

mod config_cmd;
mod gallery;
mod liveness;
mod logging;
mod sign;

use crate::config::{Config, Overrides};
use crate::engine::{FaceEngine, largest_face};
use crate::error::Error;
use crate::gallery::matcher::same_person;
use crate::inference::Device;
use crate::vision::geometry::Detection;
use crate::vision::image_io::load_image;
use crate::vision::similarity::cosine;

#[derive(Debug, Parser)]
#[command(
    name = "facegate",
    version,
    about = "Face recognition for door cameras and edge boxes"
)]
pub struct Cli {
    /// Configuration file (default: config/facegate.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder of prepared models (overrides models.dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// Gallery database (overrides gallery.path).
    #[arg(long, global = true, value_name = "PATH")]
    pub gallery: Option<PathBuf>,
    /// Execution provider (overrides inference.device).
    #[arg(long, global = true, value_enum)]
    pub device: Option<Device>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: cameras → faces → identity events over MQTT.
    Run {
        /// When the daemon stops, write what it did (frames, fps, latencies) as JSON here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Print identity events from the broker as they arrive.
    Watch {
        /// Stop after this many identity events (camera states, availability and command
        /// results are printed but not counted).
        #[arg(long, value_name = "N")]
        count: Option<usize>,
        /// Only this camera's events and state; repeat for more cameras.
        #[arg(long = "camera", value_name = "NAME")]
        cameras: Vec<String>,
        /// Only events of this type: recognized, unknown or spoof; repeat or give a comma list.
        #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
        kinds: Vec<crate::events::EventKind>,
        /// Only events naming this person (recognized or spoof); repeat for more people.
        #[arg(long = "person", value_name = "NAME")]
        people: Vec<String>,
        /// Keep trying to reach the broker for this many seconds at start, e.g. while
        /// `facegate run` starts its in-process broker.
        #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
        wait: f64,
        /// Stop when the daemon goes offline (shuts down or is lost), e.g. at the end of a
        /// replay.
        #[arg(long)]
        until_offline: bool,
    },
    /// Compose a demo video (MP4) from the sample photos, or with --presentation a
    /// synthetic liveness presentation of one photo's largest face.
    #[command(hide = true)]
    MakeVideo {
        /// Output file (.mp4).
        out: PathBuf,
        /// Seconds of video.
        #[arg(long, default_value_t = 16)]
        seconds: u32,
        /// Black frames before the first photo (a later start, for many cameras).
        #[arg(long, default_value_t = 0)]
        lead_in_frames: u32,
        #[command(flatten)]
        presentation: liveness::PresentationArgs,
    },
    /// Find faces in an image: boxes, scores and five landmarks.
    Detect { image: PathBuf },
    /// Find faces and compute each one's 128-d encoding.
    Embed { image: PathBuf },
    /// Are the largest faces of two images the same person?
    Compare { image_a: PathBuf, image_b: PathBuf },
    /// Enroll a person from one or more photos.
    Enroll(gallery::EnrollArgs),
    /// Who is in this photo? (1:K against the gallery)
    Identify(gallery::IdentifyArgs),
    /// Is this the claimed person? (1:1)
    Verify(gallery::VerifyArgs),
    /// Inspect and manage the gallery.
    #[command(subcommand)]
    Gallery(gallery::GalleryCommand),
    /// Check the configuration and the files it names (models, ONNX Runtime, camera
    /// videos); report every problem at once, one per line.
    ValidateConfig,
    /// Show or check the configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Time the detector and the embedder on CPU or CUDA.
    Bench(crate::bench::BenchArgs),
    /// Time the gallery at scale on synthetic embeddings: write, open, search, recall.
    BenchGallery(crate::bench::gallery::BenchGalleryArgs),
    /// Print a signed remote command (enroll, remove) for {prefix}/cmd/… on stdout.
    Sign(sign::SignArgs),
    /// Liveness of each face of a photo (the passive CNN) or each track of a video (every cue).
    Liveness(liveness::LivenessArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon says what it does; one-shot commands only warn.
    // rumqttd (the in-process broker) logs every client disconnect as an error: silenced
    // unless FACEGATE_LOG asks for it.
    let default_filter = if matches!(cli.command, Command::Run { .. }) {
        "info,rumqttd=off"
    } else {
        "warn,rumqttd=off"
    };
    if let Err(e) = logging::init(default_filter) {
        return report_error(&e, cli.json);
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The result was printed; the status says "no match".
        Err(Error::NotVerified) => ExitCode::from(Error::NotVerified.exit_code()),
        Err(e) => report_error(&e, cli.json),
    }
}

/// One line on stderr, and with `--json` the error as a JSON object on stdout too, so that
/// a program reading stdout always gets JSON.
fn report_error(e: &Error, json: bool) -> ExitCode {
    match e {
        // Configuration problems one per line, so that each names its key in the journal.
        Error::Config(problems) if !problems.is_empty() => {
            problems.iter().for_each(|p| eprintln!("error: {p}"));
        }
        _ => eprintln!("error: {e}"),
    }
    if json {
        let mut body = json!({"error": {"kind": e.kind(), "message": e.to_string(), "exit_code": e.exit_code()}});
        // What `validate-config --json` answers for a valid file, here for an invalid one.
        if let Error::Config(problems) = e {
            body["valid"] = json!(false);
            body["problems"] = json!(problems);
        }
        println!("{body}");
    }
    ExitCode::from(e.exit_code())
}

pub fn run(cli: &Cli) -> Result<(), Error> {
    let overrides = Overrides {
        models_dir: cli.models.clone(),
        gallery: cli.gallery.clone(),
        device: cli.device,
    };
    let file = cli.config.as_deref();
    let cfg = match &cli.command {
        Command::ValidateConfig => return config_cmd::validate(file, &overrides, cli.json),
        Command::Config(cmd) => return config_cmd::config(cmd, file, &overrides, cli.json),
        // The daemon refuses what validate-config reports, with the same lines.
        Command::Run { .. } => Config::load_checked(file, &overrides)?,
        _ => Config::load(file, &overrides)?,
    };
    match &cli.command {
        Command::ValidateConfig | Command::Config(_) => Ok(()),
        Command::Detect { image } => analyse_command(&cfg, image, false, cli.json),
        Command::Embed { image } => analyse_command(&cfg, image, true, cli.json),
        Command::Compare { image_a, image_b } => compare(&cfg, image_a, image_b, cli.json),
        Command::Bench(args) => {
            let report = crate::bench::run(&cfg, args)?;
            print(cli.json, &report, || report.to_text());
            Ok(())
        }
        Command::BenchGallery(args) => {
            let report = crate::bench::gallery::run(&cfg, args)?;
            print(cli.json, &report, || report.to_text());
            Ok(())
        }
        Command::Run { report } => run_daemon(cfg, file, report.clone()),
        Command::Watch { .. } => watch(&cfg, &cli.command, cli.json),
        Command::MakeVideo {
            out,
            seconds,
            lead_in_frames,
            presentation,
        } => match presentation.kind {
            Some(_) if *lead_in_frames > 0 => Err(Error::Config(vec![
                "make-video: --lead-in-frames is for the demo video, not a --presentation".into(),
            ])),
            Some(kind) => liveness::make_presentation(&cfg, out, *seconds, kind, presentation, cli.json),
            None => make_video(&cfg, out, *seconds, *lead_in_frames, cli.json),
        },
        Command::Enroll(args) => gallery::enroll(&cfg, args, cli.json),
        Command::Identify(args) => gallery::identify(&cfg, args, cli.json),
        Command::Verify(args) => gallery::verify(&cfg, args, cli.json),
        Command::Gallery(cmd) => gallery::gallery(&cfg, cmd, cli.json),
        Command::Sign(args) => sign::sign(args),
        Command::Liveness(args) => liveness::liveness(&cfg, args, cli.json),
    }
}

/// `detect` (and with `with_embeddings`, `embed`): the image is read before the models are
/// loaded, so that a bad image fails at once.
fn analyse_command(cfg: &Config, image: &Path, with_embeddings: bool, json_out: bool) -> Result<(), Error> {
    let img = load_image(image, &cfg.images)?;
    let mut engine = FaceEngine::load(&cfg.models, &cfg.inference, &cfg.detector)?;
    let report = analyse(&mut engine, image, &img, with_embeddings)?;
    print(json_out, &report, || report.to_text());
    Ok(())
}

fn compare(cfg: &Config, image_a: &Path, image_b: &Path, json_out: bool) -> Result<(), Error> {
    let img_a = load_image(image_a, &cfg.images)?;
    let img_b = load_image(image_b, &cfg.images)?;
    let mut engine = FaceEngine::load(&cfg.models, &cfg.inference, &cfg.detector)?;
    let a = largest_embedding(&mut engine, image_a, &img_a)?;
    let b = largest_embedding(&mut engine, image_b, &img_b)?;
    let similarity = cosine(&a, &b);
    let threshold = cfg.recognition.threshold;
    let same = same_person(similarity, threshold);
    let out = json!({"similarity": similarity, "threshold": threshold, "same": same});
    print(json_out, &out, || {
        let verdict = if same { "same person" } else { "different people" };
        let cmp = if same { "≥" } else { "<" };
        format!("{verdict}: similarity {similarity:.3} {cmp} threshold {threshold:.3}")
    });
    Ok(())
}

/// `facegate run`: says what it starts with, then runs the daemon until it stops.
fn run_daemon(cfg: Config, file: Option<&Path>, report: Option<PathBuf>) -> Result<(), Error> {
    let file = file
        .map(Path::to_path_buf)
        .or_else(|| Some(PathBuf::from(crate::config::DEFAULT_CONFIG_PATH)).filter(|p| p.is_file()));
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %file.as_deref().map_or("none (defaults and environment)".into(), |f| f.display().to_string()),
        gallery = %cfg.gallery.path.display(),
        device = cfg.inference.device.as_str(),
        "facegate starting"
    );
    runtime()?.block_on(crate::app::run(cfg, report))
}

fn watch(cfg: &Config, command: &Command, json_out: bool) -> Result<(), Error> {
    let Command::Watch {
        count,
        cameras,
        kinds,
        people,
        wait,
        until_offline,
    } = command
    else {
        return Ok(());
    };
    let connect_wait = std::time::Duration::try_from_secs_f64(*wait)
        .map_err(|_| Error::Config(vec![format!("--wait: {wait} is not a number of seconds")]))?;
    let opts = crate::events::WatchOptions {
        json: json_out,
        stop_after: None,
        count: *count,
        connect_wait,
        until_offline: *until_offline,
        filter: crate::events::WatchFilter {
            cameras: cameras.clone(),
            kinds: kinds.clone(),
            people: people.clone(),
        },
    };
    runtime()?.block_on(crate::events::watch(&cfg.mqtt, &opts))
}

fn make_video(cfg: &Config, out: &Path, seconds: u32, lead_in_frames: u32, json_out: bool) -> Result<(), Error> {
    crate::video::init().map_err(|e| Error::Config(vec![format!("GStreamer: {e}")]))?;
    let samples: Vec<PathBuf> = (1..=6)
        .map(|i| cfg.models.resolve(Path::new(&format!("samples/sample{i}.jpg"))))
        .collect();
    let opts = crate::video::synth::DemoVideoOptions {
        seconds,
        lead_in_frames,
        ..Default::default()
    };
    let info = crate::video::synth::make_demo_video(&samples, out, &opts).map_err(|reason| Error::Input {
        path: out.to_path_buf(),
        reason,
    })?;
    print(
        json_out,
        &json!({"video": out.display().to_string(), "segments": info.segments.len()}),
        || format!("wrote {} ({} segments)", out.display(), info.segments.len()),
    );
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Config(vec![format!("cannot start the async runtime: {e}")]))
}

pub(crate) fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string(value).unwrap_or_default());
    } else {
        println!("{}", text());
    }
}

/// YuNet's landmark order, as `detect` prints it.
const LANDMARK_NAMES: [&str; 5] = ["right eye", "left eye", "nose", "right mouth", "left mouth"];

#[derive(Debug, Serialize)]
pub struct FaceReport {
    #[serde(flatten)]
    pub detection: Detection,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub image: String,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<FaceReport>,
}

impl ImageReport {
    fn to_text(&self) -> String {
        let mut s = format!(
            "{}: {} face(s) in {}×{}",
            self.image,
            self.faces.len(),
            self.width,
            self.height
        );
        for (i, f) in self.faces.iter().enumerate() {
            let [x, y, w, h] = f.detection.bbox;
            let marks: Vec<String> = f
                .detection
                .landmarks
                .iter()
                .zip(LANDMARK_NAMES)
                .map(|([lx, ly], name)| format!("{name} {lx:.0},{ly:.0}"))
                .collect();
            s.push_str(&format!(
                "\n  #{} box {x:.0},{y:.0} {w:.0}×{h:.0}  score {:.3}\n     {}",
                i + 1,
                f.detection.score,
                marks.join("  ")
            ));
            if let Some(e) = &f.embedding {
                s.push_str(&format!("  embedding [{:.3}, {:.3}, … {} values]", e[0], e[1], e.len()));
            }
        }
        s
    }
}

/// Detects (and optionally embeds) every face of `img`, read from `path`.
pub fn analyse(
    engine: &mut FaceEngine,
    path: &Path,
    img: &RgbImage,
    with_embeddings: bool,
) -> Result<ImageReport, Error> {
    let faces = engine.detect(img)?;
    if faces.is_empty() {
        return Err(Error::NoFace {
            path: path.to_path_buf(),
        });
    }
    let mut embeddings = if with_embeddings {
        engine.embed(img, &faces)?.into_iter().map(Some).collect()
    } else {
        vec![None; faces.len()]
    };
    let faces = faces
        .into_iter()
        .zip(embeddings.drain(..))
        .map(|(detection, embedding)| FaceReport { detection, embedding })
        .collect();
    Ok(ImageReport {
        image: path.display().to_string(),
        width: img.width(),
        height: img.height(),
        faces,
    })
}

fn largest_embedding(engine: &mut FaceEngine, path: &Path, img: &RgbImage) -> Result<Vec<f32>, Error> {
    let faces = engine.detect(img)?;
    let face = largest_face(&faces)
        .ok_or_else(|| Error::NoFace {
            path: path.to_path_buf(),
        })?
        .clone();
    let mut e = engine.embed(img, std::slice::from_ref(&face))?;
    Ok(e.remove(0))
}
