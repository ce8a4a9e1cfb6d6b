//! Liveness evaluation in ISO/IEC 30107-3 terms: APCER (attacks accepted as live), BPCER
//! (bona fide presentations not accepted) and ACER (their mean), per cue and fused.
//!
//! Presentations are synthetic (`facegate::video::presentation`): from the largest face of
//! each sample photo, a bona fide video (a sub-visible pulse and a non-rigid head turn) and
//! three attacks (the photo moved as a rigid plane; as a print; on a screen), each taken
//! through the daemon's stages (`facegate liveness VIDEO`). The three Silent-Face sample
//! photos (a print, a screen, a live face) are scored by the CNN alone. No real
//! presentation-attack video dataset was available offline.
//!
//! cargo run --release --example liveness_eval -- [MODELS_DIR [OUT_DIR]]

use std::path::PathBuf;

use facegate::config::{Config, Overrides};
use facegate::engine::FaceEngine;
use facegate::recognition::liveness_of_video;
use facegate::video::presentation::{Presentation, PresentationOptions, make_presentation_video};
use facegate::vision::image_io::{ImageLimits, load_image};
use facegate::vision::liveness::fusion::{CueScores, LivenessVerdict};

const PULSES: [f32; 6] = [0.8, 1.1, 1.4, 1.7, 2.0, 1.2];

/// One presentation's outcome.
struct Outcome {
    photo: String,
    attack: bool,
    kind: String,
    cues: CueScores,
    score: Option<f32>,
    verdict: LivenessVerdict,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let models = PathBuf::from(args.next().unwrap_or_else(|| "models/prepared".into()));
    let out = PathBuf::from(args.next().unwrap_or_else(|| {
        std::env::temp_dir()
            .join("facegate-liveness-eval")
            .display()
            .to_string()
    }));
    std::fs::create_dir_all(&out)?;
    let overrides = Overrides {
        models_dir: Some(models.clone()),
        device: Some(facegate::inference::Device::Cpu),
        ..Overrides::default()
    };
    let cfg = Config::load(None, &overrides)?;
    let mut engine = FaceEngine::load(&cfg.models, &cfg.inference, &cfg.detector)?;
    let mut cnn = engine.passive_cnn(&cfg.models)?;
    let mut outcomes = Vec::new();
    for i in 1..=6 {
        let photo = load_image(&models.join(format!("samples/sample{i}.jpg")), &ImageLimits::default())?;
        let mut faces = engine.detect(&photo)?;
        faces.sort_by(|a, b| b.area().total_cmp(&a.area()));
        let Some(face) = faces.first() else { continue };
        let kinds = [
            Presentation::BonaFide {
                pulse_hz: PULSES[i - 1],
            },
            Presentation::RigidPhoto,
            Presentation::Print,
            Presentation::Screen,
        ];
        for kind in kinds {
            let video = out.join(format!(
                "sample{i}-{}.mp4",
                kind.name().replace([' ', '(', ')', '.'], "_")
            ));
            make_presentation_video(&photo, face, kind, &video, &PresentationOptions::default())?;
            let tracks = liveness_of_video(&cfg, &mut engine, &mut cnn, &video, 10.0)?;
            // The presented face is the one in the middle of the frame (the sample photos are
            // group photos: other faces come into view too), among the tracks that lasted.
            let opts = PresentationOptions::default();
            let longest = tracks.iter().map(|t| t.frames).max().unwrap_or(0);
            let off_centre = |b: &[f32; 4]| {
                let (x, y) = (
                    b[0] + b[2] / 2.0 - opts.width as f32 / 2.0,
                    b[1] + b[3] / 2.0 - opts.height as f32 / 2.0,
                );
                x * x + y * y
            };
            let Some(track) = tracks
                .iter()
                .filter(|t| t.frames * 2 >= longest)
                .min_by(|a, b| off_centre(&a.bbox).total_cmp(&off_centre(&b.bbox)))
            else {
                eprintln!("{}: no face found", video.display());
                continue;
            };
            eprintln!(
                "sample{i} {}: {:?} {:?}",
                kind.name(),
                track.liveness.cues,
                track.liveness.verdict
            );
            outcomes.push(Outcome {
                photo: format!("sample{i}"),
                attack: kind.is_attack(),
                kind: kind.name().split(' ').take(2).collect::<Vec<_>>().join(" "),
                cues: track.liveness.cues,
                score: track.liveness.score,
                verdict: track.liveness.verdict,
            });
        }
    }
    report(&outcomes);
    stills(&mut engine, &mut cnn)?;
    Ok(())
}

/// A cue alone accepts a presentation as live when its score reaches 0.5; without
/// evidence it does not accept it.
fn accepted(score: Option<f32>) -> bool {
    score.is_some_and(|s| s >= 0.5)
}

fn report(outcomes: &[Outcome]) {
    let rows: [(&str, &dyn Fn(&Outcome) -> bool); 4] = [
        ("CNN alone", &|o| accepted(o.cues.cnn)),
        ("pulse alone", &|o| accepted(o.cues.pulse)),
        ("motion alone", &|o| accepted(o.cues.motion)),
        ("fused (verdict live)", &|o| o.verdict == LivenessVerdict::Live),
    ];
    let kinds = ["rigid photo", "print", "screen"];
    println!("| decision | APCER rigid photo | APCER print | APCER screen | APCER (max) | BPCER | ACER |");
    println!("|---|---|---|---|---|---|---|");
    for (name, accepts) in rows {
        let rate = |sel: &dyn Fn(&Outcome) -> bool, want: bool| {
            let set: Vec<&Outcome> = outcomes.iter().filter(|o| sel(o)).collect();
            let n = set.iter().filter(|o| accepts(o) == want).count();
            (n, set.len())
        };
        let apcer: Vec<(usize, usize)> = kinds
            .iter()
            .map(|k| rate(&|o: &Outcome| o.attack && o.kind == *k, true))
            .collect();
        let worst = apcer
            .iter()
            .map(|(n, d)| *n as f64 / (*d).max(1) as f64)
            .fold(0.0, f64::max);
        let (rejected, bona) = rate(&|o: &Outcome| !o.attack, false);
        let bpcer = rejected as f64 / bona.max(1) as f64;
        let cells: Vec<String> = apcer.iter().map(|(n, d)| format!("{n}/{d}")).collect();
        println!(
            "| {name} | {} | {worst:.2} | {rejected}/{bona} = {bpcer:.2} | {:.2} |",
            cells.join(" | "),
            (worst + bpcer) / 2.0
        );
    }
    println!();
    println!("| photo | presentation | cnn | pulse | motion | fused | verdict |");
    println!("|---|---|---|---|---|---|---|");
    let cue = |v: Option<f32>| v.map_or("–".to_string(), |s| format!("{s:.2}"));
    for o in outcomes {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            o.photo,
            o.kind,
            cue(o.cues.cnn),
            cue(o.cues.pulse),
            cue(o.cues.motion),
            cue(o.score),
            o.verdict.as_str()
        );
    }
}

/// The Silent-Face sample photos through the CNN (a still has no pulse and no motion).
fn stills(
    engine: &mut FaceEngine,
    cnn: &mut facegate::vision::liveness::cnn::PassiveCnn,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/liveness");
    println!();
    println!("| still (Silent-Face sample) | truth | CNN real probability |");
    println!("|---|---|---|");
    for (file, truth) in [
        ("image_F1.jpg", "printed photo"),
        ("image_F2.jpg", "phone screen"),
        ("image_T1.jpg", "live"),
    ] {
        let img = load_image(&dir.join(file), &ImageLimits::default())?;
        let mut faces = engine.detect(&img)?;
        faces.sort_by(|a, b| b.area().total_cmp(&a.area()));
        let real = cnn.score(&img, &faces[..faces.len().min(1)])?;
        println!(
            "| {file} | {truth} | {} |",
            real.first().map_or("no face".into(), |r| format!("{r:.3}"))
        );
    }
    Ok(())
}
