//! `facegate bench-gallery`: the gallery at scale, on synthetic face-like embeddings.
//!
//! Each person is a random unit vector (their centre); each template and each query is
//! `normalise(centre + noise · u)` with `u` a fresh random unit vector. Two samples of one
//! person then have cosine ≈ 1 / (1 + noise²) (0.5 at the default noise 1.0), and samples
//! of different people ≈ 0 ± 1/√128: SFace's same-person similarities run about 0.4–0.8.
//!
//! Measured: writing the templates into a fresh SQLite gallery (one transaction per
//! person, as `enroll` does), opening it (reading every template and building the index, as
//! the daemon does at start), memory, and per query the latency and agreement with exact
//! search of what the matching rule uses: the best person, their best template, the
//! runner-up person, and the decision.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::Timing;
use crate::config::Config;
use crate::error::Error;
use crate::gallery::matcher::{self, Candidate};
use crate::gallery::store::{NewTemplate, Store};
use crate::gallery::{Gallery, index::Hit};
use crate::vision::embedder::EMBEDDING_DIM;
use crate::vision::similarity::l2_normalize;

/// The embedding-model id the synthetic templates are stored under.
pub const SYNTHETIC_MODEL: &str = "synthetic-unit-128";

#[derive(Debug, Clone, clap::Args)]
pub struct BenchGalleryArgs {
    /// Synthetic people.
    #[arg(long, default_value_t = 10_000)]
    pub persons: usize,
    /// Templates per person.
    #[arg(long, default_value_t = 100)]
    pub templates_per_person: usize,
    /// Timed queries, each a fresh sample of a random enrolled person.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Spread of a person's samples around their centre (see the module docs).
    #[arg(long, default_value_t = 1.0)]
    pub noise: f32,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the gallery (default: a fresh folder under the system temp folder,
    /// deleted at the end). Must not exist yet.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// SplitMix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A uniformly random direction: normalised standard normals (Box–Muller).
    fn unit(&mut self) -> Vec<f32> {
        let mut v = Vec::with_capacity(EMBEDDING_DIM + 1);
        while v.len() < EMBEDDING_DIM {
            let r = (-2.0 * self.open01().ln()).sqrt();
            let a = std::f64::consts::TAU * self.open01();
            v.push((r * a.cos()) as f32);
            v.push((r * a.sin()) as f32);
        }
        v.truncate(EMBEDDING_DIM);
        l2_normalize(&mut v);
        v
    }

    fn sample(&mut self, centre: &[f32], noise: f32) -> Vec<f32> {
        let u = self.unit();
        let mut v: Vec<f32> = centre.iter().zip(&u).map(|(c, d)| c + noise * d).collect();
        l2_normalize(&mut v);
        v
    }
}

#[derive(Debug, Serialize)]
pub struct Memory {
    pub rss_mib: f64,
    pub peak_mib: f64,
}

/// This process's resident and peak resident memory (Linux).
fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    Memory {
        rss_mib: field("VmRSS:"),
        peak_mib: field("VmHWM:"),
    }
}

fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

#[derive(Debug, Serialize)]
pub struct GalleryBenchReport {
    pub persons: usize,
    pub templates: usize,
    pub queries: usize,
    pub noise: f32,
    pub exact_below: usize,
    pub shortlist: usize,
    pub ef_search: usize,
    /// Templates and prototypes in large mode (two-stage search).
    pub two_stage: bool,
    /// The prototypes are searched through the HNSW graph (else exactly).
    pub prototype_graph: bool,
    pub prototypes_per_person: f64,
    pub write_s: f64,
    pub store_mib: f64,
    /// `Gallery::open`: read every template, build prototypes and their graph.
    pub open_s: f64,
    /// Of which reading the templates from SQLite.
    pub read_s: f64,
    pub memory_before_open: Memory,
    pub memory_after_open: Memory,
    /// `best_per_person(q, 2)`, what identification calls.
    pub search: Timing,
    /// Of which the first stage (the prototype graph).
    pub shortlist_stage: Timing,
    /// The same by brute force.
    pub exact: Timing,
    /// Load average (1 min) at the start and the end: the machine is shared.
    pub load: (f64, f64),
    /// Best person equals exact search's.
    pub recall1_person: f64,
    /// Best template equals exact search's.
    pub recall1_template: f64,
    /// Runner-up person equals exact search's.
    pub runner_up_agrees: f64,
    /// Match/unknown decision (gallery threshold and margin) equals exact search's.
    pub decision_agrees: f64,
    /// Mean similarity of the best person and of the runner-up (exact search).
    pub best_similarity_mean: f64,
    pub runner_up_similarity_mean: f64,
    pub threshold: f32,
    pub margin: f32,
}

pub fn run(cfg: &Config, args: &BenchGalleryArgs) -> Result<GalleryBenchReport, Error> {
    let bad = |m: &str| Error::Config(vec![m.to_string()]);
    if args.persons < 2 || args.templates_per_person == 0 || args.queries == 0 {
        return Err(bad(
            "bench-gallery needs --persons ≥ 2, --templates-per-person ≥ 1 and --queries ≥ 1",
        ));
    }
    let (dir, temporary) = match &args.out {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("facegate-bench-gallery-{}", std::process::id())),
            true,
        ),
    };
    if dir.exists() {
        return Err(Error::Input {
            path: dir,
            reason: "already exists; give a new folder".into(),
        });
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::Input {
        path: dir.clone(),
        reason: e.to_string(),
    })?;
    let result = bench(cfg, args, &dir);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// A synthetic gallery at `path`: `templates_per_person` samples around each centre, one
/// transaction per person, as `enroll` does.
fn write_gallery(path: &std::path::Path, centres: &[Vec<f32>], args: &BenchGalleryArgs) -> Result<(), Error> {
    let mut store = Store::open_or_create(path)?;
    let mut rng = Rng::new(args.seed, 2);
    let meta = serde_json::json!({});
    for (p, c) in centres.iter().enumerate() {
        let templates: Vec<NewTemplate> = (0..args.templates_per_person)
            .map(|t| NewTemplate {
                embedding: rng.sample(c, args.noise),
                model: SYNTHETIC_MODEL.into(),
                quality: 1.0,
                source_sha256: format!("{p}-{t}"),
                crop: None,
            })
            .collect();
        store.enroll(&format!("person-{p:06}"), &meta, &templates, false)?;
    }
    Ok(())
}

/// How often the fast search agrees with the exact one, as fractions of the queries:
/// (best person, best template, runner-up person, match/unknown decision).
fn agreement(fast: &[Vec<Hit>], exact: &[Vec<Hit>], threshold: f32, margin: f32) -> [f64; 4] {
    let decide = |hits: &[Hit]| {
        let c: Vec<Candidate> = hits
            .iter()
            .map(|h| Candidate {
                person_id: h.person_id,
                name: String::new(),
                similarity: h.similarity,
            })
            .collect();
        matcher::decide(&c, threshold, margin)
    };
    let n = fast.len().max(1) as f64;
    let agree = |f: &dyn Fn(&[Hit], &[Hit]) -> bool| fast.iter().zip(exact).filter(|(a, b)| f(a, b)).count() as f64 / n;
    let key = |h: Option<&Hit>| h.map(|h| (h.person_id, h.template_id));
    [
        agree(&|a, b| key(a.first()).map(|k| k.0) == key(b.first()).map(|k| k.0)),
        agree(&|a, b| key(a.first()) == key(b.first())),
        agree(&|a, b| key(a.get(1)).map(|k| k.0) == key(b.get(1)).map(|k| k.0)),
        agree(&|a, b| decide(a) == decide(b)),
    ]
}

/// Fresh samples of random enrolled people.
fn probes(args: &BenchGalleryArgs, centres: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(args.seed, 3);
    (0..args.queries)
        .map(|_| {
            let who = (rng.next_u64() % args.persons as u64) as usize;
            rng.sample(&centres[who], args.noise)
        })
        .collect()
}

fn bench(cfg: &Config, args: &BenchGalleryArgs, dir: &std::path::Path) -> Result<GalleryBenchReport, Error> {
    let load_start = load_avg();
    let mut gcfg = cfg.gallery.clone();
    gcfg.path = dir.join("gallery.db");
    let mut centres_rng = Rng::new(args.seed, 1);
    let centres: Vec<Vec<f32>> = (0..args.persons).map(|_| centres_rng.unit()).collect();

    // 1. Write, one transaction per person.
    let started = Instant::now();
    write_gallery(&gcfg.path, &centres, args)?;
    let write_s = started.elapsed().as_secs_f64();
    let store_bytes: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(dir.join(format!("gallery.db{s}"))).ok())
        .map(|m| m.len())
        .sum();

    // 2. Open as the daemon does; reading alone timed on a separate handle first.
    let t = Instant::now();
    let mut rows = 0usize;
    Store::open(&gcfg.path)?.for_each_template(|_, _, _| rows += 1)?;
    let read_s = t.elapsed().as_secs_f64();
    let memory_before_open = memory();
    let t = Instant::now();
    let gallery = Gallery::open(&gcfg, SYNTHETIC_MODEL)?;
    let open_s = t.elapsed().as_secs_f64();
    let memory_after_open = memory();
    let index = gallery.index();
    tracing::info!("{rows} templates read in {read_s:.1} s; opened in {open_s:.1} s");

    // 3. Queries: fresh samples of random enrolled people. The fast path is timed over all
    // of them in a row (as a busy door would call it), then the exact path, so that one's
    // memory traffic does not evict the other's data.
    let queries = probes(args, &centres);
    let timed = |f: &dyn Fn(&[f32]) -> Vec<Hit>| {
        let mut ms = Vec::with_capacity(queries.len());
        let hits: Vec<Vec<Hit>> = queries
            .iter()
            .map(|q| {
                let t = Instant::now();
                let h = f(q);
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                h
            })
            .collect();
        (hits, ms)
    };
    let (fast, fast_ms) = timed(&|q| index.best_per_person(q, 2));
    let (_, stage1_ms) = timed(&|q| {
        std::hint::black_box(index.shortlist_persons(q, 2));
        Vec::new()
    });
    let (exact, exact_ms) = timed(&|q| index.best_per_person_exact(q, 2));
    let [person, template, runner_up, decision] = agreement(&fast, &exact, gcfg.threshold, gcfg.margin);
    let n = args.queries as f64;
    let mean_at = |i: usize| {
        exact
            .iter()
            .filter_map(|h| h.get(i))
            .map(|h| h.similarity as f64)
            .sum::<f64>()
            / n
    };
    let icfg = &gcfg.index;
    Ok(GalleryBenchReport {
        persons: args.persons,
        templates: index.len(),
        queries: args.queries,
        noise: args.noise,
        exact_below: icfg.exact_below,
        shortlist: icfg.shortlist,
        ef_search: icfg.ef_search,
        two_stage: index.two_stage(),
        prototype_graph: index.uses_graph(),
        prototypes_per_person: index.prototype_count() as f64 / index.person_count().max(1) as f64,
        write_s,
        store_mib: store_bytes as f64 / (1024.0 * 1024.0),
        open_s,
        read_s,
        memory_before_open,
        memory_after_open,
        search: Timing::from_samples(fast_ms),
        shortlist_stage: Timing::from_samples(stage1_ms),
        load: (load_start, load_avg()),
        exact: Timing::from_samples(exact_ms),
        recall1_person: person,
        recall1_template: template,
        runner_up_agrees: runner_up,
        decision_agrees: decision,
        best_similarity_mean: mean_at(0),
        runner_up_similarity_mean: mean_at(1),
        threshold: gcfg.threshold,
        margin: gcfg.margin,
    })
}

impl GalleryBenchReport {
    pub fn to_text(&self) -> String {
        format!(
            "gallery: {} persons, {} templates ({}; {:.2} prototypes/person, shortlist {}, ef_search {})\n\
             write:   {:.1} s, {:.0} MiB on disk\n\
             open:    {:.2} s (reading {:.2} s); RSS {:.0} → {:.0} MiB, peak {:.0} MiB\n\
             search:  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms (stage 1: p50 {:.3} ms, p99 {:.3} ms)\n\
             exact:   p50 {:.3} ms  p99 {:.3} ms\n\
             recall@1 vs exact: person {:.4}, template {:.4}; runner-up {:.4}; decision {:.4} (τ {}, m {})\n\
             exact similarities: best person {:.3}, runner-up {:.3} (means)\n\
             load average: {:.2} at start, {:.2} at end",
            self.persons,
            self.templates,
            match (self.two_stage, self.prototype_graph) {
                (false, _) => "exact",
                (true, false) => "two-stage, prototypes exact",
                (true, true) => "two-stage, prototypes by HNSW",
            },
            self.prototypes_per_person,
            self.shortlist,
            self.ef_search,
            self.write_s,
            self.store_mib,
            self.open_s,
            self.read_s,
            self.memory_before_open.rss_mib,
            self.memory_after_open.rss_mib,
            self.memory_after_open.peak_mib,
            self.search.p50_ms,
            self.search.p99_ms,
            self.search.max_ms,
            self.shortlist_stage.p50_ms,
            self.shortlist_stage.p99_ms,
            self.exact.p50_ms,
            self.exact.p99_ms,
            self.recall1_person,
            self.recall1_template,
            self.runner_up_agrees,
            self.decision_agrees,
            self.threshold,
            self.margin,
            self.best_similarity_mean,
            self.runner_up_similarity_mean,
            self.load.0,
            self.load.1,
        )
    }
}
