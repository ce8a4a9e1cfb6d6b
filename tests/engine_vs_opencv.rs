//! The face engine on the six sample photos against the peer implementation, OpenCV's
//! `FaceDetectorYN` + `FaceRecognizerSF` on the same prepared models. The reference values
//! come from `tests/reference/opencv_reference.py` (see tests/fixtures/README.md).

mod common;

use common::*;
use serde_json::Value;

fn reference() -> Value {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/opencv_reference.json")).expect("fixture present");
    serde_json::from_str(&text).expect("fixture is JSON")
}

#[test]
fn samples_agree_with_opencv() {
    let reference = reference();
    let mut total = 0;
    for n in 1..=6 {
        let name = format!("sample{n}.jpg");
        let expected = &reference["images"][&name];
        let exp_faces = expected["faces"].as_array().expect("faces");
        let got = stdout_json(&facegate(&["--json", "embed", path_str(&sample(n))], &[]));
        assert_eq!(got["width"], expected["width"], "{name}");
        assert_eq!(got["height"], expected["height"], "{name}");
        let got_faces = got["faces"].as_array().unwrap();
        assert_eq!(got_faces.len(), exp_faces.len(), "{name}: face count");
        for (i, ef) in exp_faces.iter().enumerate() {
            let eb = floats(&ef["box"]);
            // The facegate face with the best overlap with this reference face.
            let (best, best_iou) = got_faces
                .iter()
                .map(|gf| (gf, iou(&floats(&gf["box"]), &eb)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            assert!(best_iou >= 0.9, "{name} face {i}: IoU {best_iou:.3}");
            let emb = floats(&best["embedding"]);
            assert_eq!(emb.len(), 128);
            let norm = emb.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{name} face {i}: embedding norm {norm}");
            let c = cosine(&emb, &floats(&ef["embedding"]));
            assert!(c >= 0.99, "{name} face {i}: cosine to OpenCV {c:.4}");
            let ds = (best["score"].as_f64().unwrap() - ef["score"].as_f64().unwrap()).abs();
            assert!(ds < 0.05, "{name} face {i}: score differs by {ds:.3}");
            for (gl, el) in best["landmarks"]
                .as_array()
                .unwrap()
                .iter()
                .zip(ef["landmarks"].as_array().unwrap())
            {
                let (g, e) = (floats(gl), floats(el));
                let dist = ((g[0] - e[0]).powi(2) + (g[1] - e[1]).powi(2)).sqrt();
                assert!(
                    dist <= 0.05 * eb[2].max(eb[3]),
                    "{name} face {i}: landmark off by {dist:.1} px"
                );
            }
            total += 1;
        }
    }
    assert!(total >= 20, "the samples hold at least 20 faces, checked {total}");
}

#[test]
fn detect_and_embed_report_the_same_faces() {
    let d = stdout_json(&facegate(&["--json", "detect", path_str(&sample(2))], &[]));
    let e = stdout_json(&facegate(&["--json", "embed", path_str(&sample(2))], &[]));
    let (df, ef) = (d["faces"].as_array().unwrap(), e["faces"].as_array().unwrap());
    assert_eq!(df.len(), ef.len());
    for (a, b) in df.iter().zip(ef) {
        assert_eq!(a["box"], b["box"]);
        assert!(a.get("embedding").is_none());
        assert_eq!(b["landmarks"].as_array().unwrap().len(), 5);
    }
}

/// The largest face of a sample, cut out with a margin and resized: still the same person;
/// against another photo's largest face: different people.
#[test]
fn compare_same_and_different() {
    let dir = scratch("compare");
    let s1 = sample(1);
    let d = stdout_json(&facegate(&["--json", "detect", path_str(&s1)], &[]));
    let largest = d["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| floats(&f["box"]))
        .max_by(|a, b| (a[2] * a[3]).total_cmp(&(b[2] * b[3])))
        .unwrap();
    let img = image::open(&s1).unwrap();
    let m = largest[2].max(largest[3]) * 0.6;
    let x0 = (largest[0] - m).max(0.0) as u32;
    let y0 = (largest[1] - m).max(0.0) as u32;
    let w = ((largest[2] + 2.0 * m) as u32).min(img.width() - x0);
    let h = ((largest[3] + 2.0 * m) as u32).min(img.height() - y0);
    let crop = img
        .crop_imm(x0, y0, w, h)
        .resize(w * 3 / 2, h * 3 / 2, image::imageops::FilterType::Triangle);
    let cut = dir.join("cut.png");
    crop.save(&cut).unwrap();

    let same = stdout_json(&facegate(&["--json", "compare", path_str(&s1), path_str(&cut)], &[]));
    assert_eq!(same["same"], true, "{same}");
    assert!(same["similarity"].as_f64().unwrap() > 0.8, "{same}");
    assert!((same["threshold"].as_f64().unwrap() - 0.363).abs() < 1e-6);

    // Without the refinement pass the close-up's landmarks are poor (see Detector::detect).
    let unrefined = stdout_json(&facegate(
        &["--json", "compare", path_str(&s1), path_str(&cut)],
        &[("FACEGATE__DETECTOR__REFINE_ABOVE_PX", "0")],
    ));
    assert!(
        unrefined["similarity"].as_f64().unwrap() < same["similarity"].as_f64().unwrap() - 0.1,
        "refined {same}, unrefined {unrefined}"
    );

    let other = stdout_json(&facegate(
        &["--json", "compare", path_str(&s1), path_str(&sample(3))],
        &[],
    ));
    assert_eq!(other["same"], false, "{other}");
}
