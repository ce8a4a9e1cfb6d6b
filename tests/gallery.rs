//! Gallery end to end: the real binary, the real models, a real SQLite file per test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use facegate::gallery::store::Store;
use image::{DynamicImage, RgbImage};
use serde_json::Value;

fn gallery_in(dir: &Path) -> PathBuf {
    dir.join("gallery.db")
}

/// `facegate --gallery G --json ARGS…`
fn fg(gallery: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--gallery", path_str(gallery), "--json"];
    all.extend_from_slice(args);
    facegate(&all, &[])
}

fn enroll(gallery: &Path, name: &str, photo: &Path) -> Value {
    stdout_json(&fg(gallery, &["enroll", "--name", name, "--largest", path_str(photo)]))
}

fn identify(gallery: &Path, photo: &Path) -> Vec<Value> {
    stdout_json(&fg(gallery, &["identify", path_str(photo)]))["faces"]
        .as_array()
        .unwrap()
        .clone()
}

fn fails_with(out: &std::process::Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    assert!(!stderr.contains("panicked"));
}

fn boxes(f: &Value) -> Vec<f64> {
    f["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn largest_box(faces: &[Value]) -> Vec<f64> {
    faces
        .iter()
        .map(boxes)
        .max_by(|a, b| (a[2] * a[3]).total_cmp(&(b[2] * b[3])))
        .unwrap()
}

fn save_jpeg(img: &RgbImage, path: &Path, quality: u8) {
    let mut f = std::fs::File::create(path).unwrap();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut f, quality)
        .encode_image(img)
        .unwrap();
}

/// Scaled, blurred, brightened, JPEG-recompressed and slightly rotated copies of a photo.
fn transformed_copies(photo: &Path, dir: &Path) -> Vec<(String, PathBuf)> {
    let img = image::open(photo).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    let stem = photo.file_stem().unwrap().to_string_lossy().to_string();
    let mut out = Vec::new();
    let mut put = |name: &str, im: RgbImage, q: u8| {
        let p = dir.join(format!("{stem}-{name}.jpg"));
        save_jpeg(&im, &p, q);
        out.push((name.to_string(), p));
    };
    let half = DynamicImage::ImageRgb8(img.clone()).resize(w / 2, h / 2, image::imageops::FilterType::Triangle);
    put("scaled", half.to_rgb8(), 92);
    put("blurred", image::imageops::blur(&img, 2.0), 92);
    put("brightened", image::imageops::brighten(&img, 50), 92);
    put("recompressed", img.clone(), 25);
    let (a, c) = (8f64.to_radians().sin(), 8f64.to_radians().cos());
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let rot = facegate::vision::align::Affine([c, -a, cx - c * cx + a * cy, a, c, cy - a * cx - c * cy]);
    put(
        "rotated",
        facegate::vision::align::warp_affine(&img, &rot, w, h).unwrap(),
        92,
    );
    out
}

fn overlap(a: &[f64], b: &[f64]) -> f64 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        0.0
    } else {
        ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)
    }
}

/// Three people enrolled from one photo each are found again in altered copies of their
/// photo; everyone else in every sample photo comes back unknown (or low quality).
#[test]
fn one_shot_enrollment_identifies_the_person_and_nobody_else() {
    let dir = scratch("gallery-roundtrip");
    let g = gallery_in(&dir);
    let enrolled = [("Ann", 1u32), ("Bob", 2), ("Cy", 4)];
    for (name, n) in enrolled {
        let out = enroll(&g, name, &sample(n));
        assert_eq!(out["person"]["name"], name);
        assert_eq!(out["templates"].as_array().unwrap().len(), 1);
    }
    for (name, n) in enrolled {
        // Where the enrolled (largest) face is in the original photo.
        let target = largest_box(&identify(&g, &sample(n)));
        let (w, _) = image::image_dimensions(sample(n)).unwrap();
        for (kind, copy) in transformed_copies(&sample(n), &dir) {
            let faces = identify(&g, &copy);
            let (cw, _) = image::image_dimensions(&copy).unwrap();
            let s = cw as f64 / w as f64;
            let expect: Vec<f64> = target.iter().map(|v| v * s).collect();
            // Rotation moves the boxes a little: a looser overlap marks the target there.
            let needed = if kind == "rotated" { 0.2 } else { 0.5 };
            let mut found = false;
            for f in &faces {
                let is_target = overlap(&boxes(f), &expect) > needed;
                if is_target && f["decision"] == "match" {
                    assert_eq!(f["person"]["name"], name, "{kind} copy of sample{n}: {f}");
                    found = true;
                } else if !is_target {
                    assert_ne!(
                        f["decision"], "match",
                        "{kind} copy of sample{n}: stranger matched: {f}"
                    );
                }
            }
            assert!(
                found,
                "{name} not recognised in the {kind} copy of sample{n}: {faces:?}"
            );
        }
    }
    for n in [3u32, 5, 6] {
        for f in identify(&g, &sample(n)) {
            assert_ne!(f["decision"], "match", "sample{n}: nobody there is enrolled: {f}");
            assert!(f["person"].is_null());
            // An unknown face says why.
            if f["decision"] == "unknown" {
                let why = f["reason"].as_str().unwrap_or("");
                assert!(
                    why.contains("below the threshold") || why.contains("within the margin"),
                    "{f}"
                );
            }
        }
    }
    // Plain text lists the candidates asked for with --top.
    let out = facegate(
        &[
            "--gallery",
            path_str(&g),
            "identify",
            "--top",
            "3",
            path_str(&sample(3)),
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["Ann", "Bob", "Cy"] {
        assert!(
            text.contains(&format!(". {name} ")),
            "{name} not among the candidates:\n{text}"
        );
    }
    assert!(text.contains("unknown: "), "{text}");
}

#[test]
fn verify_is_one_to_one() {
    let dir = scratch("gallery-verify");
    let g = gallery_in(&dir);
    enroll(&g, "Ann", &sample(1));
    enroll(&g, "Bob", &sample(2));
    let copies = transformed_copies(&sample(1), &dir);
    let v = stdout_json(&fg(&g, &["verify", path_str(&copies[0].1), "--name", "Ann"]));
    assert_eq!(v["match"], true, "{v}");
    assert!(v["similarity"].as_f64().unwrap() > 0.8);
    // No match: the result on stdout, exit status 1.
    let out = fg(&g, &["verify", path_str(&copies[0].1), "--name", "Bob"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "no error line for a plain no-match");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["match"], false, "{v}");
    assert!(v["similarity"].as_f64().unwrap() < v["threshold"].as_f64().unwrap());
    fails_with(
        &fg(&g, &["verify", path_str(&sample(1)), "--name", "Nobody"]),
        4,
        "no person named",
    );
}

fn gallery_cfg(path: &Path) -> facegate::gallery::GalleryConfig {
    facegate::gallery::GalleryConfig {
        path: path.to_path_buf(),
        ..Default::default()
    }
}

fn model_id() -> String {
    facegate::engine::model_id(&models().join("face_recognition_sface_2021dec.onnx")).unwrap()
}

fn first_template(g: &Path, person: i64) -> Vec<f32> {
    Store::open(g).unwrap().embeddings_of(person).unwrap().remove(0).1
}

/// Polls `f` for up to 2 s: the promise is that a running process sees changes that fast.
fn wait_for(mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(2), "change not seen within 2 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn persists_across_processes_lists_shows_and_forgets() {
    let dir = scratch("gallery-forget");
    let g = gallery_in(&dir);
    enroll(&g, "Ann", &sample(1));
    let blurred = transformed_copies(&sample(1), &dir).remove(1).1;
    let more = stdout_json(&fg(
        &g,
        &["enroll", "--name", "Ann", "--append", "--largest", path_str(&blurred)],
    ));
    assert_eq!(more["templates"].as_array().unwrap().len(), 1);
    let list = stdout_json(&fg(&g, &["gallery", "list"]));
    assert_eq!(list["persons"][0]["name"], "Ann");
    assert_eq!(list["persons"][0]["templates"], 2);
    let show = stdout_json(&fg(&g, &["gallery", "show", "Ann"]));
    assert_eq!(show["templates"].as_array().unwrap().len(), 2);
    assert_eq!(show["templates"][0]["has_crop"], false, "crops are off by default");

    // A process that holds the gallery open follows removals made by another.
    let mut live = facegate::gallery::Gallery::open(&gallery_cfg(&g), &model_id()).unwrap();
    let ann = list["persons"][0]["id"].as_i64().unwrap();
    let probe = first_template(&g, ann);
    assert_eq!(live.candidates(&probe, 1)[0].person_id, ann);

    let removed = stdout_json(&fg(&g, &["gallery", "remove", "Ann"]));
    assert_eq!(removed["templates"], 2);
    wait_for(|| {
        live.refresh().unwrap();
        live.index().is_empty()
    });
    assert!(
        live.candidates(&probe, 5).iter().all(|c| c.person_id != ann),
        "removed person still searchable"
    );
    assert!(live.index().search_exact(&probe, 10).is_empty());
    assert!(live.index().search(&probe, 10).is_empty());
    for f in identify(&g, &sample(1)) {
        assert_ne!(f["decision"], "match");
    }
    assert!(
        Store::open(&g).unwrap().embeddings_of(ann).unwrap().is_empty(),
        "templates deleted from the table"
    );
    fails_with(&fg(&g, &["gallery", "remove", "Ann"]), 4, "no person named");
    fails_with(&fg(&g, &["gallery", "show", "Ann"]), 4, "no person named");
}

#[test]
fn a_running_process_sees_enrollments_by_another() {
    let dir = scratch("gallery-live");
    let g = gallery_in(&dir);
    let mut live = facegate::gallery::Gallery::open_or_create(&gallery_cfg(&g), &model_id()).unwrap();
    assert!(live.index().is_empty());
    let out = enroll(&g, "Bob", &sample(2));
    let bob = out["person"]["id"].as_i64().unwrap();
    wait_for(|| {
        live.refresh().unwrap();
        !live.index().is_empty()
    });
    let c = live.candidates(&first_template(&g, bob), 1);
    assert_eq!((c[0].person_id, c[0].name.as_str()), (bob, "Bob"));
}

#[test]
fn bad_enrollments_are_refused_with_the_reason() {
    let dir = scratch("gallery-bad");
    let g = gallery_in(&dir);
    enroll(&g, "Ann", &sample(1));
    fails_with(
        &fg(&g, &["enroll", "--name", "Ann", "--largest", path_str(&sample(2))]),
        4,
        "already enrolled",
    );
    fails_with(
        &fg(&g, &["enroll", "--name", "Dee", path_str(&sample(2))]),
        4,
        "pass --largest",
    );
    let empty = dir.join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    fails_with(&fg(&g, &["enroll", "--name", "Dee", path_str(&empty)]), 4, "empty");
    let corrupt = dir.join("corrupt.jpg");
    let mut bytes = std::fs::read(sample(3)).unwrap();
    bytes.truncate(bytes.len() / 3);
    std::fs::write(&corrupt, &bytes).unwrap();
    fails_with(
        &fg(&g, &["enroll", "--name", "Dee", path_str(&corrupt)]),
        4,
        "truncated",
    );
    let wall = dir.join("wall.png");
    RgbImage::from_pixel(400, 300, image::Rgb([90, 120, 90]))
        .save(&wall)
        .unwrap();
    fails_with(&fg(&g, &["enroll", "--name", "Dee", path_str(&wall)]), 4, "no face");
    // A face too small for a trustworthy template: a sample shrunk onto a large canvas.
    let small = DynamicImage::ImageRgb8(image::open(sample(2)).unwrap().to_rgb8())
        .resize(200, 200, image::imageops::FilterType::Triangle)
        .to_rgb8();
    let mut canvas = RgbImage::from_pixel(3000, 2000, image::Rgb([40, 40, 40]));
    image::imageops::overlay(&mut canvas, &small, 1200, 800);
    let tiny = dir.join("tiny.png");
    canvas.save(&tiny).unwrap();
    let out = fg(&g, &["enroll", "--name", "Dee", "--largest", path_str(&tiny)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("too small") || stderr.contains("no face"), "{stderr}");
    fails_with(
        &fg(&g, &["enroll", "--name", " ", path_str(&sample(2))]),
        4,
        "invalid name",
    );
    fails_with(
        &fg(
            &g,
            &["enroll", "--name", "Dee", "--metadata", "[1]", path_str(&sample(2))],
        ),
        4,
        "JSON object",
    );
    // Nothing of the refused enrollments was stored.
    let list = stdout_json(&fg(&g, &["gallery", "list"]));
    assert_eq!(list["persons"].as_array().unwrap().len(), 1);
}

#[test]
fn templates_of_another_embedding_model_are_refused() {
    let dir = scratch("gallery-model");
    let g = gallery_in(&dir);
    enroll(&g, "Ann", &sample(1));
    // The same network under another name or in another folder is the same model: the id
    // is the file's digest, not its name.
    let renamed = dir.join("face_recognition_renamed.onnx");
    std::fs::copy(models().join("face_recognition_sface_2021dec.onnx"), &renamed).unwrap();
    let out = facegate(
        &["--json", "--gallery", path_str(&g), "identify", path_str(&sample(1))],
        &[("FACEGATE__MODELS__EMBEDDER", path_str(&renamed))],
    );
    let faces = stdout_json(&out)["faces"].as_array().cloned().unwrap_or_default();
    assert!(faces.iter().any(|f| f["person"]["name"] == "Ann"), "{faces:?}");
    // Templates of another network are never compared.
    let db = rusqlite::Connection::open(&g).unwrap();
    db.execute("UPDATE templates SET model = 'e0e0e0e0e0e0e0e0'", [])
        .unwrap();
    drop(db);
    let out = facegate(&["--gallery", path_str(&g), "identify", path_str(&sample(1))], &[]);
    fails_with(&out, 7, "embedding model");
}

#[test]
fn export_and_import_round_trip() {
    let dir = scratch("gallery-export");
    let g = gallery_in(&dir);
    let meta = r#"{"badge":1042}"#;
    let out = stdout_json(&fg(
        &g,
        &[
            "enroll",
            "--name",
            "Ann",
            "--largest",
            "--metadata",
            meta,
            path_str(&sample(1)),
        ],
    ));
    assert_eq!(out["person"]["name"], "Ann");
    let file = dir.join("export.json");
    stdout_json(&fg(&g, &["gallery", "export", path_str(&file)]));
    let g2 = dir.join("second.db");
    stdout_json(&fg(&g2, &["gallery", "import", path_str(&file)]));
    let show = stdout_json(&fg(&g2, &["gallery", "show", "Ann"]));
    assert_eq!(show["person"]["metadata"]["badge"], 1042);
    assert!(identify(&g2, &sample(1)).iter().any(|f| f["person"]["name"] == "Ann"));
    fails_with(&fg(&g2, &["gallery", "import", path_str(&file)]), 4, "already enrolled");
    let junk = dir.join("junk.json");
    std::fs::write(&junk, "{\"hello\": 1}").unwrap();
    fails_with(
        &fg(&g2, &["gallery", "import", path_str(&junk)]),
        4,
        "not a facegate gallery export",
    );
}

fn spawn(gallery: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args([
            "--models",
            path_str(&models()),
            "--device",
            "cpu",
            "--gallery",
            path_str(gallery),
        ])
        .args(args)
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn concurrent_enrollment_while_identifying() {
    let dir = scratch("gallery-concurrent");
    let g = gallery_in(&dir);
    enroll(&g, "Ann", &sample(1));
    let mut children = Vec::new();
    for (name, n) in [("Bob", 2u32), ("Cy", 4), ("Dee", 5), ("Eve", 6)] {
        children.push(spawn(
            &g,
            &["enroll", "--name", name, "--largest", path_str(&sample(n))],
        ));
        children.push(spawn(&g, &["identify", path_str(&sample(1))]));
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let list = stdout_json(&fg(&g, &["gallery", "list"]));
    assert_eq!(list["persons"].as_array().unwrap().len(), 5);
    Store::open(&g).unwrap().integrity_check().unwrap();
}

/// SIGKILL at different moments of a 12-photo enrollment: the gallery stays consistent and
/// the person has all 12 templates or does not exist.
#[test]
fn sigkill_during_enrollment_leaves_a_consistent_gallery() {
    let dir = scratch("gallery-kill");
    let g = gallery_in(&dir);
    enroll(&g, "Ann", &sample(1));
    // Twelve different files of one person (a photo given twice is stored once).
    let original = image::open(sample(2)).unwrap().to_rgb8();
    let photos: Vec<String> = (0..12)
        .map(|i| {
            let p = dir.join(format!("copy{i}.jpg"));
            save_jpeg(&image::imageops::brighten(&original, i), &p, 90);
            path_str(&p).to_string()
        })
        .collect();
    let mut outcomes = Vec::new();
    for (round, delay_ms) in [150u64, 400, 700, 1000, 1300, 1600, 2500, 4000].into_iter().enumerate() {
        let name = format!("Kill{round}");
        let mut args = vec!["enroll", "--name", name.as_str(), "--largest"];
        args.extend(photos.iter().map(String::as_str));
        let mut child = spawn(&g, &args);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let store = Store::open(&g).unwrap();
        store.integrity_check().unwrap();
        let n = store.person(&name).unwrap().map(|p| p.templates);
        assert!(
            n.is_none() || n == Some(12),
            "{name}: partial enrollment with {n:?} templates"
        );
        assert_eq!(
            store.person("Ann").unwrap().unwrap().templates,
            1,
            "earlier data intact"
        );
        outcomes.push((delay_ms, status.success(), n));
    }
    eprintln!("kill outcomes (delay ms, exited cleanly, templates): {outcomes:?}");
    assert!(
        identify(&g, &sample(1)).iter().any(|f| f["person"]["name"] == "Ann"),
        "{outcomes:?}"
    );
}

/// The scale benchmark at a small size: it runs, takes the two-stage path above
/// `exact_below`, and agrees with exact search (the full 1M run is in the README).
#[test]
fn bench_gallery_two_stage_agrees_with_exact_search() {
    let dir = scratch("gallery-bench");
    let out_dir = dir.join("bench");
    for (graph_above, uses_graph) in [("50000", false), ("0", true)] {
        let _ = std::fs::remove_dir_all(&out_dir);
        let out = facegate(
            &[
                "--json",
                "bench-gallery",
                "--persons",
                "300",
                "--templates-per-person",
                "80",
                "--queries",
                "200",
                "--out",
                path_str(&out_dir),
            ],
            &[("FACEGATE__GALLERY__INDEX__GRAPH_ABOVE", graph_above)],
        );
        let r = stdout_json(&out);
        assert_eq!(r["templates"], 24_000);
        assert_eq!(r["two_stage"], true);
        assert_eq!(r["prototype_graph"], uses_graph);
        assert!(r["recall1_person"].as_f64().unwrap() >= 0.99, "{r}");
        assert!(r["decision_agrees"].as_f64().unwrap() >= 0.99, "{r}");
        assert!(r["search"]["samples"] == 200);
    }
    // An existing output folder is refused with one clear line.
    let out = facegate(&["bench-gallery", "--out", path_str(&out_dir)], &[]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

/// A copy of `photo` blurred with a Gaussian of `sigma` pixels.
fn blurred_copy(photo: &Path, sigma: f32, out: &Path) -> PathBuf {
    let img = image::open(photo).unwrap().to_rgb8();
    save_jpeg(&image::imageops::blur(&img, sigma), out, 92);
    out.to_path_buf()
}

fn templates_of(g: &Path, name: &str) -> usize {
    stdout_json(&fg(g, &["gallery", "show", name]))["templates"]
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn enrollment_guard_rails() {
    let dir = scratch("gallery-guards");
    let g = gallery_in(&dir);
    let ann = stdout_json(&fg(&g, &["enroll", "--name", "Ann", "--largest", path_str(&sample(1))]));
    // The output says which face was taken.
    let face = &ann["templates"][0];
    assert_eq!(face["box"].as_array().map(Vec::len), Some(4), "{ann}");
    assert!(
        face["score"].as_f64().unwrap() > 0.7 && face["quality"].as_f64().unwrap() > 0.0,
        "{ann}"
    );
    let text = facegate(
        &[
            "--gallery",
            path_str(&g),
            "enroll",
            "--name",
            "Cleo",
            "--largest",
            path_str(&sample(3)),
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains("face at ") && text.contains("score") && text.contains("quality"),
        "{text}"
    );

    // The same face under another name: refused, naming who it already is; --force overrides.
    let copies = transformed_copies(&sample(1), &dir);
    let bright = path_str(&copies[2].1);
    fails_with(
        &fg(&g, &["enroll", "--name", "Anna", "--largest", bright]),
        4,
        "matches Ann",
    );
    stdout_json(&fg(&g, &["enroll", "--name", "Anna", "--largest", "--force", bright]));
    // Names are one person whatever their case.
    fails_with(
        &fg(&g, &["enroll", "--name", "ann", "--largest", path_str(&sample(4))]),
        4,
        "\"Ann\" is already enrolled",
    );
    // Photos of different people for one name.
    fails_with(
        &fg(
            &g,
            &[
                "enroll",
                "--name",
                "Multi",
                "--largest",
                path_str(&sample(5)),
                path_str(&sample(6)),
            ],
        ),
        4,
        "do not show the same person",
    );
    // Appending a photo that is already a template adds nothing, and says so; appending to
    // a name nobody has is refused.
    let again = stdout_json(&fg(
        &g,
        &["enroll", "--name", "Ann", "--append", "--largest", path_str(&sample(1))],
    ));
    assert_eq!(again["templates"].as_array().map(Vec::len), Some(0), "{again}");
    assert_eq!(again["already_enrolled"][0], path_str(&sample(1)), "{again}");
    assert_eq!(templates_of(&g, "Ann"), 1);
    fails_with(
        &fg(&g, &["enroll", "--name", "Nobody", "--append", path_str(&sample(1))]),
        4,
        "enroll without --append first",
    );
    // Blur that destroys identity is refused, with the numbers.
    let blurred = blurred_copy(&sample(2), 12.0, &dir.join("blurred.jpg"));
    let out = fg(&g, &["enroll", "--name", "Blur", "--largest", path_str(&blurred)]);
    fails_with(&out, 4, "too blurred (sharpness");
    assert!(String::from_utf8_lossy(&out.stderr).contains("need 8.0"));
    let list = stdout_json(&fg(&g, &["gallery", "list"]));
    let names: Vec<&str> = list["persons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["Ann", "Anna", "Cleo"],
        "nothing of the refused enrollments was stored"
    );
}

#[test]
fn a_gallery_cannot_be_half_imported_and_keeps_its_dates() {
    let dir = scratch("gallery-import");
    let g = gallery_in(&dir);
    stdout_json(&fg(&g, &["enroll", "--name", "Ann", "--largest", path_str(&sample(1))]));
    stdout_json(&fg(
        &g,
        &["enroll", "--name", "Cleo", "--largest", path_str(&sample(3))],
    ));
    let file = dir.join("export.json");
    stdout_json(&fg(&g, &["gallery", "export", path_str(&file)]));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    fails_with(&fg(&g, &["gallery", "export", path_str(&file)]), 4, "--force");
    stdout_json(&fg(&g, &["gallery", "export", "--force", path_str(&file)]));
    // `-` is standard output.
    let out = fg(&g, &["gallery", "export", "-"]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("the export on stdout");
    assert_eq!(doc["persons"].as_array().map(Vec::len), Some(2));

    // One name twice (in another case) and an empty name: refused whole, nothing written.
    let mut bad = doc.clone();
    let mut second = bad["persons"][0].clone();
    second["name"] = "ANN".into();
    let mut empty = bad["persons"][1].clone();
    empty["name"] = "".into();
    bad["persons"].as_array_mut().unwrap().extend([second, empty]);
    let bad_file = dir.join("bad.json");
    std::fs::write(&bad_file, bad.to_string()).unwrap();
    let g2 = dir.join("other/gallery.db");
    let out = fg(&g2, &["gallery", "import", path_str(&bad_file)]);
    fails_with(&out, 4, "more than once");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid name"));
    if g2.exists() {
        assert_eq!(
            stdout_json(&fg(&g2, &["gallery", "list"]))["persons"]
                .as_array()
                .map(Vec::len),
            Some(0)
        );
    }
    // A good file goes in whole, keeping when each person was first enrolled.
    stdout_json(&fg(&g2, &["gallery", "import", path_str(&file)]));
    let list = stdout_json(&fg(&g2, &["gallery", "list"]));
    let dates = |l: &Value| -> Vec<String> {
        l["persons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["created"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(dates(&list), dates(&stdout_json(&fg(&g, &["gallery", "list"]))));
    let mode = std::fs::metadata(g2.parent().unwrap()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "a gallery's new folder is private");
}

#[test]
fn reading_a_missing_gallery_fails_and_creates_nothing() {
    let dir = scratch("gallery-missing");
    let g = dir.join("nowhere/gallery.db");
    let photo = sample(1);
    for args in [
        vec!["identify", path_str(&photo)],
        vec!["verify", path_str(&photo), "--name", "Ann"],
        vec!["gallery", "list"],
        vec!["gallery", "show", "Ann"],
        vec!["gallery", "export", "-"],
    ] {
        fails_with(&fg(&g, &args), 7, "no gallery there");
        assert!(
            !g.exists() && !g.parent().unwrap().exists(),
            "{args:?} created the gallery"
        );
    }
}
