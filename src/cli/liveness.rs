//! `facegate liveness IMAGE_OR_VIDEO`: the liveness cues and verdict of each face of a photo
//! (the passive CNN only: one still has no pulse and no motion), or of each track of a
//! video (every cue, fused as the daemon fuses them).

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use serde_json::json;

use super::print;
use crate::config::Config;
use crate::engine::FaceEngine;
use crate::error::Error;
use crate::recognition::liveness_of_video;
use crate::video::presentation::{Presentation, PresentationOptions, make_presentation_video};
use crate::vision::image_io::{load_image, read_image_file};
use crate::vision::liveness::fusion::{CueScores, FusionConfig, LivenessAssessment, fuse};

#[derive(Debug, Args)]
pub struct LivenessArgs {
    /// A photo (JPEG, PNG, WebP, BMP) or a video file.
    pub input: PathBuf,
    /// Video only: frames per second taken through detection (as a camera's detect_fps).
    #[arg(long, default_value_t = 10.0)]
    pub fps: f32,
}

/// `make-video --presentation`: a synthetic presentation of a photo's largest face.
#[derive(Debug, Args)]
pub struct PresentationArgs {
    /// Make a liveness presentation instead of the demo video.
    #[arg(long = "presentation", value_enum)]
    pub kind: Option<PresentationKind>,
    /// The photo presented (its largest face); default: the first sample photo.
    #[arg(long, requires = "kind")]
    pub photo: Option<PathBuf>,
    /// Bona fide only: the pulse's frequency, Hz.
    #[arg(long, default_value_t = 1.2, requires = "kind")]
    pub pulse_hz: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PresentationKind {
    BonaFide,
    RigidPhoto,
    Print,
    Screen,
}

/// Writes the presentation video `kind` of the largest face of the photo in `args` to `out`.
pub fn make_presentation(
    cfg: &Config,
    out: &Path,
    seconds: u32,
    kind: PresentationKind,
    args: &PresentationArgs,
    json_out: bool,
) -> Result<(), Error> {
    crate::video::init().map_err(|e| Error::Config(vec![format!("GStreamer: {e}")]))?;
    if !(0.5..=4.0).contains(&args.pulse_hz) {
        return Err(Error::Rejected(format!(
            "--pulse-hz {}: a pulse is between 0.5 and 4 Hz",
            args.pulse_hz
        )));
    }
    let photo_path = args
        .photo
        .clone()
        .unwrap_or_else(|| cfg.models.resolve(Path::new("samples/sample1.jpg")));
    let photo = load_image(&photo_path, &cfg.images)?;
    let mut engine = FaceEngine::load(&cfg.models, &cfg.inference, &cfg.detector)?;
    let faces = engine.detect(&photo)?;
    let face = crate::engine::largest_face(&faces).ok_or_else(|| Error::NoFace {
        path: photo_path.clone(),
    })?;
    let presentation = match kind {
        PresentationKind::BonaFide => Presentation::BonaFide {
            pulse_hz: args.pulse_hz,
        },
        PresentationKind::RigidPhoto => Presentation::RigidPhoto,
        PresentationKind::Print => Presentation::Print,
        PresentationKind::Screen => Presentation::Screen,
    };
    let opts = PresentationOptions {
        seconds: seconds as f32,
        ..PresentationOptions::default()
    };
    make_presentation_video(&photo, face, presentation, out, &opts).map_err(|reason| Error::Input {
        path: out.to_path_buf(),
        reason,
    })?;
    print(
        json_out,
        &json!({"video": out.display().to_string(), "presentation": presentation.name()}),
        || format!("wrote {} ({})", out.display(), presentation.name()),
    );
    Ok(())
}

/// One face of a photo.
#[derive(Debug, Serialize)]
struct PhotoFace {
    #[serde(rename = "box")]
    bbox: [f32; 4],
    score: f32,
    liveness: LivenessAssessment,
}

pub fn liveness(cfg: &Config, args: &LivenessArgs, json_out: bool) -> Result<(), Error> {
    let head = read_image_file(&args.input, &cfg.images).ok();
    let is_photo = head.is_some_and(|h| image::guess_format(&h.bytes).is_ok());
    if is_photo {
        return photo(cfg, &args.input, json_out);
    }
    if !args.input.is_file() {
        return Err(Error::Input {
            path: args.input.clone(),
            reason: "no such file".into(),
        });
    }
    let mut engine = FaceEngine::load(&cfg.models, &cfg.inference, &cfg.detector)?;
    let mut cnn = engine.passive_cnn(&cfg.models)?;
    let tracks = liveness_of_video(cfg, &mut engine, &mut cnn, &args.input, args.fps)?;
    let out = json!({"video": args.input.display().to_string(), "tracks": tracks});
    print(json_out, &out, || {
        let mut s = format!("{}: {} track(s)", args.input.display(), tracks.len());
        for t in &tracks {
            s.push_str(&format!(
                "\n  track {} ({} frames, {:.1}–{:.1} s): {}",
                t.track_id,
                t.frames,
                t.first_pts_ms as f64 / 1e3,
                t.last_pts_ms as f64 / 1e3,
                describe(&t.liveness)
            ));
        }
        s
    });
    Ok(())
}

/// Each face of a photo through the passive CNN; the verdict is the CNN's alone.
fn photo(cfg: &Config, path: &Path, json_out: bool) -> Result<(), Error> {
    let img = load_image(path, &cfg.images)?;
    let mut engine = FaceEngine::load(&cfg.models, &cfg.inference, &cfg.detector)?;
    let mut cnn = engine.passive_cnn(&cfg.models)?;
    let faces = engine.detect(&img)?;
    if faces.is_empty() {
        return Err(Error::NoFace {
            path: path.to_path_buf(),
        });
    }
    let scores = cnn.score(&img, &faces)?;
    // One still: the CNN is the only cue, so it decides alone.
    let alone = FusionConfig {
        min_cues: 1,
        ..cfg.liveness.fusion.clone()
    };
    let out: Vec<PhotoFace> = faces
        .iter()
        .zip(scores)
        .map(|(f, real)| PhotoFace {
            bbox: f.bbox,
            score: f.score,
            liveness: fuse(
                &CueScores {
                    cnn: Some(real),
                    ..CueScores::default()
                },
                &alone,
            ),
        })
        .collect();
    let doc = json!({"image": path.display().to_string(), "faces": out});
    print(json_out, &doc, || {
        let mut s = format!("{}: {} face(s)", path.display(), out.len());
        for (i, f) in out.iter().enumerate() {
            let [x, y, w, h] = f.bbox;
            s.push_str(&format!(
                "\n  #{} box {x:.0},{y:.0} {w:.0}×{h:.0}: {}",
                i + 1,
                describe(&f.liveness)
            ));
        }
        s
    });
    Ok(())
}

fn describe(a: &LivenessAssessment) -> String {
    let cue = |v: Option<f32>| v.map_or("–".to_string(), |s| format!("{s:.3}"));
    format!(
        "{} (score {}; cnn {}, pulse {}, motion {})",
        a.verdict.as_str(),
        cue(a.score),
        cue(a.cues.cnn),
        cue(a.cues.pulse),
        cue(a.cues.motion)
    )
}
