//! The passive liveness CNN (Silent-Face MiniFASNet, converted by
//! models/convert_minifasnet.py) on the repository's own sample images, with YuNet boxes:
//! a printed photo, a phone screen and a live face (tests/fixtures/liveness/README.md).
//! With the original PyTorch code and these boxes the "real" probabilities are 0.23, 0.003
//! and 1.00.

mod common;

use std::path::PathBuf;

use common::*;
use facegate::engine::{FaceEngine, ModelsConfig, largest_face};
use facegate::inference::{Device, InferenceConfig};
use facegate::vision::detector::DetectorConfig;
use facegate::vision::image_io::{ImageLimits, load_image};
use facegate::vision::liveness::cnn::PassiveCnn;

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/liveness").join(name)
}

fn load() -> (FaceEngine, PassiveCnn) {
    let dir = models();
    let models = ModelsConfig {
        dir: dir.clone(),
        ..ModelsConfig::default()
    };
    for f in [&models.antispoof_v2, &models.antispoof_v1se] {
        assert!(
            dir.join(f).is_file(),
            "{} is missing: run models/fetch",
            dir.join(f).display()
        );
    }
    let inference = InferenceConfig {
        device: Device::Cpu,
        ..InferenceConfig::default()
    };
    let engine = FaceEngine::load(&models, &inference, &DetectorConfig::default()).expect("engine loads");
    let cnn = engine.passive_cnn(&models).expect("liveness CNN loads");
    (engine, cnn)
}

/// The "real" probability of the largest face of a fixture.
fn real(engine: &mut FaceEngine, cnn: &mut PassiveCnn, name: &str) -> f32 {
    let img = load_image(&fixture(name), &ImageLimits::default()).expect("fixture decodes");
    let faces = engine.detect(&img).expect("detector runs");
    let face = largest_face(&faces).unwrap_or_else(|| panic!("{name}: no face"));
    let scores = cnn.score(&img, std::slice::from_ref(face)).expect("CNN runs");
    assert_eq!(scores.len(), 1);
    eprintln!("{name}: box {:?}, real {:.4}", face.bbox, scores[0]);
    scores[0]
}

#[test]
fn photos_and_screens_are_not_real_and_a_live_face_is() {
    let (mut engine, mut cnn) = load();
    let printed = real(&mut engine, &mut cnn, "image_F1.jpg");
    let screen = real(&mut engine, &mut cnn, "image_F2.jpg");
    let live = real(&mut engine, &mut cnn, "image_T1.jpg");
    assert!(printed < 0.5, "printed photo scored {printed}");
    assert!(screen < 0.5, "phone screen scored {screen}");
    assert!(live > 0.9, "live face scored {live}");
}

#[test]
fn faces_in_one_batch_score_as_they_do_alone() {
    let (mut engine, mut cnn) = load();
    assert!(cnn.score(&image::RgbImage::new(8, 8), &[]).unwrap().is_empty());
    let img = load_image(&sample(1), &ImageLimits::default()).expect("sample decodes");
    let faces = engine.detect(&img).expect("detector runs");
    assert!(faces.len() > 1, "sample1 has several faces");
    // More faces than one batch holds, so that batches are split too.
    let many: Vec<_> = faces.iter().cycle().take(faces.len().max(17)).cloned().collect();
    let together = cnn.score(&img, &many).expect("CNN runs");
    assert_eq!(together.len(), many.len());
    for (face, &score) in many.iter().zip(&together) {
        let alone = cnn.score(&img, std::slice::from_ref(face)).expect("CNN runs")[0];
        assert!((0.0..=1.0).contains(&score), "{score}");
        assert!((alone - score).abs() < 1e-4, "batched {score}, alone {alone}");
    }
}
