//! The search index over enrolled templates: exact search while the gallery is small,
//! HNSW (hnsw_rs) above a configurable size. Removals are tombstones; the graph is rebuilt
//! once tombstones pass a fraction of it.
//!
//! A large graph takes minutes to build, so it can be saved next to the gallery database
//! ([`TemplateIndex::save`]) and loaded again ([`TemplateIndex::load`]): the graph and its
//! vectors as hnsw_rs dumps them, the slot table, and a small JSON file naming them with
//! their SHA-256, the store's change-log position they reflect and the settings they were
//! built with. The JSON file is written last, to a temporary name renamed over the old one,
//! so a reader sees either the previous complete save or the new one.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hnsw_rs::prelude::{AnnT, DataId, Distance, FilterT, Hnsw, HnswIo};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::vision::embedder::EMBEDDING_DIM;

/// Cosine distance of L2-normalised vectors, `1 − a·b`, never negative. (anndists' `DistDot`
/// asserts `a·b ≤ 1`, which rounding breaks for a vector and itself.)
#[derive(Debug, Default, Clone, Copy)]
pub struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// Dot product. Sixteen independent partial sums, so that the compiler keeps them in SIMD
/// registers: a plain `zip().sum()` is one dependent chain of additions, several times slower,
/// and this is the inner loop of graph building, graph search and exact search.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0] + tail
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Below this many live templates every search is exact (and exact is fast enough).
    pub exact_below: usize,
    /// HNSW: links per node.
    pub max_connections: usize,
    /// HNSW: candidate list size while building.
    pub ef_construction: usize,
    /// HNSW: candidate list size while searching (higher: better recall, slower).
    pub ef_search: usize,
    /// Rebuild the graph when removed templates exceed this fraction of it.
    pub rebuild_fraction: f32,
    /// Save the graph next to the gallery database (`<path>.index.json` and the files it
    /// names) so that opening a large gallery loads it instead of building it again.
    pub persist: bool,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            exact_below: 20_000,
            max_connections: 16,
            ef_construction: 100,
            ef_search: 64,
            rebuild_fraction: 0.2,
            persist: true,
        }
    }
}

impl IndexConfig {
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !(2..=255).contains(&self.max_connections) {
            p.push(format!(
                "{prefix}.max_connections: {} is not within 2–255",
                self.max_connections
            ));
        }
        if self.ef_construction < self.max_connections {
            p.push(format!(
                "{prefix}.ef_construction: {} is below max_connections",
                self.ef_construction
            ));
        }
        if self.ef_search == 0 {
            p.push(format!("{prefix}.ef_search: must be at least 1"));
        }
        if !(self.rebuild_fraction > 0.0 && self.rebuild_fraction <= 1.0) {
            p.push(format!(
                "{prefix}.rebuild_fraction: {} is not within (0, 1]",
                self.rebuild_fraction
            ));
        }
        p
    }
}

/// One template found by a search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub template_id: i64,
    pub person_id: i64,
    pub similarity: f32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot {
    template_id: i64,
    person_id: i64,
    alive: bool,
}

/// Lets only live slots through an HNSW search.
struct LiveSlots<'a>(&'a HashSet<usize>);

impl FilterT for LiveSlots<'_> {
    fn hnsw_filter(&self, id: &DataId) -> bool {
        !self.0.contains(id)
    }
}

/// hnsw_rs keeps up to this many layers, and only dumps graphs made with all of them.
const GRAPH_LAYERS: usize = 16;

pub struct TemplateIndex {
    cfg: IndexConfig,
    slots: Vec<Slot>,
    /// Row-major `slots.len() × EMBEDDING_DIM`: exact search and rebuilds read it.
    vectors: Vec<f32>,
    by_template: HashMap<i64, usize>,
    /// Live templates per person.
    per_person: HashMap<i64, usize>,
    dead: HashSet<usize>,
    /// The graph, over slots `0..graph_len`; slots past it are searched exactly.
    graph: Option<Hnsw<'static, f32, CosineDistance>>,
    graph_len: usize,
}

impl TemplateIndex {
    pub fn new(cfg: IndexConfig) -> TemplateIndex {
        TemplateIndex {
            cfg,
            slots: Vec::new(),
            vectors: Vec::new(),
            by_template: HashMap::new(),
            per_person: HashMap::new(),
            dead: HashSet::new(),
            graph: None,
            graph_len: 0,
        }
    }

    /// An index over `ids[i] = (template id, person id)` whose embeddings are row `i` of
    /// `vectors` (row-major, 128 per row), taking the rows without copying them.
    pub fn from_rows(cfg: IndexConfig, ids: &[(i64, i64)], vectors: Vec<f32>) -> TemplateIndex {
        assert_eq!(vectors.len(), ids.len() * EMBEDDING_DIM, "one 128-d row per id");
        let mut idx = TemplateIndex::new(cfg);
        let by_template: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, &(t, _))| (t, i)).collect();
        if by_template.len() == ids.len() {
            idx.slots = ids
                .iter()
                .map(|&(template_id, person_id)| Slot {
                    template_id,
                    person_id,
                    alive: true,
                })
                .collect();
            for &(_, p) in ids {
                *idx.per_person.entry(p).or_default() += 1;
            }
            idx.by_template = by_template;
            idx.vectors = vectors;
        } else {
            for (i, &(t, p)) in ids.iter().enumerate() {
                idx.push(t, p, &vectors[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM]);
            }
        }
        idx.maintain();
        idx
    }

    pub fn config(&self) -> &IndexConfig {
        &self.cfg
    }

    /// Changes the search-time candidate list size (the others need a rebuild).
    pub fn set_ef_search(&mut self, ef_search: usize) {
        self.cfg.ef_search = ef_search.max(1);
    }

    /// Live templates.
    pub fn len(&self) -> usize {
        self.slots.len() - self.dead.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn uses_graph(&self) -> bool {
        self.graph.is_some()
    }

    pub fn contains(&self, template_id: i64) -> bool {
        self.by_template.contains_key(&template_id)
    }

    /// Adds many templates, building the graph in parallel when the gallery is large.
    pub fn extend(&mut self, items: impl IntoIterator<Item = (i64, i64, Vec<f32>)>) {
        for (template_id, person_id, v) in items {
            self.push(template_id, person_id, &v);
        }
        self.maintain();
    }

    /// Adds one template; `embedding` must be L2-normalised and 128-d.
    pub fn insert(&mut self, template_id: i64, person_id: i64, embedding: &[f32]) {
        if !self.push(template_id, person_id, embedding) {
            return;
        }
        if let Some(g) = &self.graph {
            let slot = self.slots.len() - 1;
            g.insert_slice((&self.vectors[slot * EMBEDDING_DIM..(slot + 1) * EMBEDDING_DIM], slot));
            self.graph_len = self.slots.len();
        }
        self.maintain();
    }

    /// Appends a live slot; false when the template is already there.
    fn push(&mut self, template_id: i64, person_id: i64, embedding: &[f32]) -> bool {
        assert_eq!(embedding.len(), EMBEDDING_DIM, "embeddings are {EMBEDDING_DIM}-d");
        if self.by_template.contains_key(&template_id) {
            return false;
        }
        self.by_template.insert(template_id, self.slots.len());
        self.slots.push(Slot {
            template_id,
            person_id,
            alive: true,
        });
        *self.per_person.entry(person_id).or_default() += 1;
        self.vectors.extend_from_slice(embedding);
        true
    }

    fn kill(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.alive = false;
        self.dead.insert(slot);
        if let Some(n) = self.per_person.get_mut(&s.person_id) {
            *n -= 1;
            if *n == 0 {
                self.per_person.remove(&s.person_id);
            }
        }
    }

    /// Tombstones one template; no later search returns it.
    pub fn remove_template(&mut self, template_id: i64) -> bool {
        let Some(slot) = self.by_template.remove(&template_id) else {
            return false;
        };
        self.kill(slot);
        self.maintain();
        true
    }

    /// Tombstones every template of a person; returns how many.
    pub fn remove_person(&mut self, person_id: i64) -> usize {
        let ids: Vec<i64> = self
            .slots
            .iter()
            .filter(|s| s.alive && s.person_id == person_id)
            .map(|s| s.template_id)
            .collect();
        for id in &ids {
            if let Some(slot) = self.by_template.remove(id) {
                self.kill(slot);
            }
        }
        self.maintain();
        ids.len()
    }

    /// Builds the graph when the gallery has grown past `exact_below`, drops it when it
    /// shrank below, and compacts and rebuilds when tombstones pass `rebuild_fraction`.
    fn maintain(&mut self) {
        let live = self.len();
        let too_dead =
            !self.slots.is_empty() && self.dead.len() as f32 > self.cfg.rebuild_fraction * self.slots.len() as f32;
        if too_dead {
            self.compact();
        }
        if live < self.cfg.exact_below {
            self.graph = None;
            self.graph_len = 0;
        } else if self.graph.is_none() || too_dead || self.graph_len < self.slots.len() {
            if self.graph.is_none() || too_dead {
                self.build_graph();
            } else if let Some(g) = &self.graph {
                let pending: Vec<(&[f32], usize)> = (self.graph_len..self.slots.len())
                    .map(|s| (self.vector(s), s))
                    .collect();
                g.parallel_insert_slice(&pending);
                self.graph_len = self.slots.len();
            }
        }
    }

    fn vector(&self, slot: usize) -> &[f32] {
        &self.vectors[slot * EMBEDDING_DIM..(slot + 1) * EMBEDDING_DIM]
    }

    fn compact(&mut self) {
        let mut slots = Vec::with_capacity(self.len());
        let mut vectors = Vec::with_capacity(self.len() * EMBEDDING_DIM);
        for (i, s) in self.slots.iter().enumerate() {
            if s.alive {
                slots.push(*s);
                vectors.extend_from_slice(&self.vectors[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM]);
            }
        }
        self.by_template = slots.iter().enumerate().map(|(i, s)| (s.template_id, i)).collect();
        self.slots = slots;
        self.vectors = vectors;
        self.dead.clear();
        self.graph = None;
        self.graph_len = 0;
    }

    fn build_graph(&mut self) {
        let n = self.slots.len();
        // Always all 16 layers: the level of each node is drawn from an exponential law
        // anyway, and hnsw_rs refuses to save a graph made with fewer.
        let g = Hnsw::new(
            self.cfg.max_connections,
            n,
            GRAPH_LAYERS,
            self.cfg.ef_construction,
            CosineDistance,
        );
        let data: Vec<(&[f32], usize)> = (0..n).map(|s| (self.vector(s), s)).collect();
        g.parallel_insert_slice(&data);
        let mut g = g;
        g.set_searching_mode(true);
        self.graph = Some(g);
        self.graph_len = n;
    }

    /// The `k` most similar live templates, best first: exact below `exact_below`, HNSW above.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<Hit> {
        let ef = self.cfg.ef_search.max(k);
        let mut hits = self.search_beam(query, k, ef);
        sort_and_truncate(&mut hits, k);
        hits
    }

    /// Up to `ef` (at least `k`) live templates near `query`, unsorted: the whole HNSW
    /// candidate list, which costs no more than its first `k`.
    fn search_beam(&self, query: &[f32], k: usize, ef: usize) -> Vec<Hit> {
        let Some(g) = &self.graph else {
            return self.search_exact(query, k);
        };
        let ef = ef.max(k);
        let graph_hits = |filter: Option<&dyn FilterT>, want: usize| -> (usize, Vec<Hit>) {
            let found = g.search_filter(query, want, ef, filter);
            let n = found.len();
            let live = found
                .into_iter()
                .filter(|n| self.slots.get(n.d_id).is_some_and(|s| s.alive))
                .map(|n| self.hit(n.d_id, 1.0 - n.distance))
                .collect();
            (n, live)
        };
        // Tombstones are dropped from the unfiltered candidates; only when that leaves fewer
        // than k does the search run again with hnsw_rs' filter, which explores further
        // (and more slowly) because it cannot stop early.
        let (found, mut hits) = graph_hits(None, ef);
        if hits.len() < k && found > hits.len() {
            let filter = LiveSlots(&self.dead);
            hits = graph_hits(Some(&filter), k).1;
        }
        // Slots added after the last graph insert are compared exactly.
        for s in self.graph_len..self.slots.len() {
            if self.slots[s].alive {
                hits.push(self.hit(s, dot(query, self.vector(s))));
            }
        }
        hits
    }

    /// The `k` most similar live templates by brute force.
    pub fn search_exact(&self, query: &[f32], k: usize) -> Vec<Hit> {
        let mut top = TopK::new(k);
        for (s, slot) in self.slots.iter().enumerate() {
            if slot.alive {
                top.offer(self.hit(s, dot(query, self.vector(s))));
            }
        }
        top.into_sorted()
    }

    fn hit(&self, slot: usize, similarity: f32) -> Hit {
        let s = self.slots[slot];
        Hit {
            template_id: s.template_id,
            person_id: s.person_id,
            similarity,
        }
    }

    /// Best similarity per person, best person first, at most `persons` of them. Searches
    /// deeper when the nearest templates all belong to too few people, so that the
    /// runner-up (for the margin rule) is found even for people with many templates.
    pub fn best_per_person(&self, query: &[f32], persons: usize) -> Vec<Hit> {
        if self.graph.is_none() {
            return self.best_per_person_exact(query, persons);
        }
        let mut ef = self.cfg.ef_search.max(persons * 8);
        loop {
            let mut hits = self.search_beam(query, persons, ef);
            sort_and_truncate(&mut hits, usize::MAX);
            let exhausted = hits.len() < ef;
            let mut best: Vec<Hit> = Vec::new();
            for h in hits {
                if !best.iter().any(|b| b.person_id == h.person_id) {
                    best.push(h);
                }
            }
            if best.len() >= persons || exhausted || ef >= 4096 {
                best.truncate(persons);
                return best;
            }
            // The candidates all belong to too few people: look past every template of
            // theirs at once rather than doubling.
            let covered: usize = best.iter().map(|b| self.per_person.get(&b.person_id).copied().unwrap_or(1)).sum();
            ef = (ef * 2).max(covered + persons * 8).min(4096);
        }
    }

    /// [`best_per_person`](Self::best_per_person) by brute force, in one pass.
    pub fn best_per_person_exact(&self, query: &[f32], persons: usize) -> Vec<Hit> {
        let mut best: HashMap<i64, Hit> = HashMap::new();
        for (s, slot) in self.slots.iter().enumerate() {
            if !slot.alive {
                continue;
            }
            let h = self.hit(s, dot(query, self.vector(s)));
            best.entry(h.person_id)
                .and_modify(|b| {
                    if better(&h, b) {
                        *b = h;
                    }
                })
                .or_insert(h);
        }
        let mut top = TopK::new(persons);
        for h in best.into_values() {
            top.offer(h);
        }
        top.into_sorted()
    }
}

/// `a` ranks before `b`: more similar, then the lower template id.
fn better(a: &Hit, b: &Hit) -> bool {
    rank(a, b) == std::cmp::Ordering::Less
}

fn rank(a: &Hit, b: &Hit) -> std::cmp::Ordering {
    b.similarity
        .total_cmp(&a.similarity)
        .then(a.template_id.cmp(&b.template_id))
}

fn sort_and_truncate(hits: &mut Vec<Hit>, k: usize) {
    hits.sort_by(rank);
    hits.truncate(k);
}

/// Ordered so that the heap's top is the worst hit kept.
struct Ranked(Hit);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        rank(&self.0, &other.0).is_eq()
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        rank(&self.0, &other.0)
    }
}

/// The best `k` of a stream of hits, without sorting all of them.
struct TopK {
    k: usize,
    heap: BinaryHeap<Ranked>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    fn offer(&mut self, h: Hit) {
        if self.heap.len() < self.k {
            self.heap.push(Ranked(h));
        } else if let Some(worst) = self.heap.peek() {
            if better(&h, &worst.0) {
                self.heap.pop();
                self.heap.push(Ranked(h));
            }
        }
    }

    fn into_sorted(self) -> Vec<Hit> {
        self.heap.into_sorted_vec().into_iter().map(|r| r.0).collect()
    }
}

// ---------------------------------------------------------------------------------------
// Saving and loading the graph.

/// Bumped whenever what is saved changes meaning.
const SAVE_FORMAT: u32 = 1;
/// hnsw_rs writes native-endian, native-width numbers and has changed its format between
/// releases: a save is only read back by the same build of the same library.
const SAVE_PLATFORM: &str = concat!(
    "hnsw_rs 0.3.5, ",
    env!("CARGO_PKG_NAME"),
    " ",
    env!("CARGO_PKG_VERSION")
);
const SLOTS_MAGIC: &[u8; 8] = b"FGSLOTS1";
/// Leftovers of saves that never completed are deleted once this old.
const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// What `<gallery>.index.json` records about a saved index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedIndex {
    format: u32,
    platform: String,
    endian: String,
    pointer_bits: u32,
    dim: usize,
    /// The store's change-log position the saved index reflects.
    change_seq: i64,
    slots: usize,
    live: usize,
    max_connections: usize,
    ef_construction: usize,
    /// Stem of the three files, in the database's folder.
    basename: String,
    graph_sha256: String,
    data_sha256: String,
    slots_sha256: String,
}

/// What [`TemplateIndex::save`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SaveReport {
    pub files: Vec<PathBuf>,
    pub bytes: u64,
}

fn endian() -> &'static str {
    if cfg!(target_endian = "little") { "little" } else { "big" }
}

/// `<dir>/<gallery file name><suffix>`.
fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "gallery".into());
    name.push(suffix);
    db.with_file_name(name)
}

fn meta_path(db: &Path) -> PathBuf {
    beside(db, ".index.json")
}

fn folder_of(db: &Path) -> PathBuf {
    match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The graph, data and slot files of a save named `basename`.
fn part_paths(db: &Path, basename: &str) -> [PathBuf; 3] {
    let dir = folder_of(db);
    [
        dir.join(format!("{basename}.hnsw.graph")),
        dir.join(format!("{basename}.hnsw.data")),
        dir.join(format!("{basename}.slots")),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn sync_file(path: &Path) -> Result<(), String> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the slot table, returning its SHA-256.
fn write_slots(path: &Path, slots: &[Slot]) -> Result<String, String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = File::create(path).map_err(err)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut h = Sha256::new();
    let mut put = |bytes: &[u8], out: &mut BufWriter<File>| -> std::io::Result<()> {
        h.update(bytes);
        out.write_all(bytes)
    };
    put(SLOTS_MAGIC, &mut out).map_err(err)?;
    put(&(slots.len() as u64).to_le_bytes(), &mut out).map_err(err)?;
    let mut rec = [0u8; 17];
    for s in slots {
        rec[..8].copy_from_slice(&s.template_id.to_le_bytes());
        rec[8..16].copy_from_slice(&s.person_id.to_le_bytes());
        rec[16] = s.alive as u8;
        put(&rec, &mut out).map_err(err)?;
    }
    let file = out.into_inner().map_err(|e| err(e.into_error()))?;
    file.sync_all().map_err(err)?;
    Ok(hex(&h.finalize()))
}

fn read_slots(path: &Path, expected: usize) -> Result<Vec<Slot>, String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut input = BufReader::with_capacity(1 << 20, File::open(path).map_err(err)?);
    let mut head = [0u8; 16];
    input.read_exact(&mut head).map_err(err)?;
    if &head[..8] != SLOTS_MAGIC {
        return Err(format!("{}: not a slot table", path.display()));
    }
    let n = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default()) as usize;
    if n != expected {
        return Err(format!("{}: {n} slots where {expected} were recorded", path.display()));
    }
    let mut slots = Vec::with_capacity(n);
    let mut rec = [0u8; 17];
    for _ in 0..n {
        input.read_exact(&mut rec).map_err(err)?;
        let alive = match rec[16] {
            0 => false,
            1 => true,
            other => return Err(format!("{}: bad slot flag {other}", path.display())),
        };
        slots.push(Slot {
            template_id: i64::from_le_bytes(rec[..8].try_into().unwrap_or_default()),
            person_id: i64::from_le_bytes(rec[8..16].try_into().unwrap_or_default()),
            alive,
        });
    }
    if input.read(&mut rec).map_err(err)? != 0 {
        return Err(format!("{}: trailing bytes", path.display()));
    }
    Ok(slots)
}

fn read_meta(db: &Path) -> Result<Option<SavedIndex>, String> {
    let path = meta_path(db);
    match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
    }
}

fn remove_parts(db: &Path, basename: &str) {
    for p in part_paths(db, basename) {
        let _ = std::fs::remove_file(p);
    }
}

/// Deletes parts of saves that are neither `keep` nor recent (a save in progress elsewhere).
fn remove_orphans(db: &Path, keep: &str) {
    let Some(stem) = db.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let prefix = format!("{stem}.index-");
    let Ok(entries) = std::fs::read_dir(folder_of(db)) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(&prefix) || name.starts_with(&format!("{keep}.")) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > ORPHAN_AGE);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Deletes the saved index of the gallery at `db`, if any.
pub fn remove_saved(db: &Path) {
    if let Ok(Some(meta)) = read_meta(db) {
        let _ = std::fs::remove_file(meta_path(db));
        remove_parts(db, &meta.basename);
    }
}

impl TemplateIndex {
    /// Saves the graph next to the gallery database at `db`, recording that it reflects the
    /// store up to change `change_seq`. Only an index that uses its graph is saved. The
    /// previous save stays valid until the new one is complete and replaces it at once.
    pub fn save(&self, db: &Path, change_seq: i64) -> Result<SaveReport, String> {
        let Some(g) = &self.graph else {
            return Err("the index searches exactly; there is no graph to save".into());
        };
        if self.graph_len != self.slots.len() {
            return Err("the graph does not cover every slot".into());
        }
        let stem = db
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: not a file name", db.display()))?;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let basename = format!("{stem}.index-{:x}-{nanos:x}", std::process::id());
        let dir = folder_of(db);
        let parts = part_paths(db, &basename);

        let written = (|| -> Result<SavedIndex, String> {
            let dumped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g.file_dump(&dir, &basename)))
                .map_err(|_| "hnsw_rs panicked while writing the graph".to_string())?
                .map_err(|e| format!("writing the graph: {e}"))?;
            if dumped != basename {
                return Err(format!("hnsw_rs wrote {dumped} instead of {basename}"));
            }
            let slots_sha256 = write_slots(&parts[2], &self.slots)?;
            sync_file(&parts[0])?;
            sync_file(&parts[1])?;
            Ok(SavedIndex {
                format: SAVE_FORMAT,
                platform: SAVE_PLATFORM.into(),
                endian: endian().into(),
                pointer_bits: usize::BITS,
                dim: EMBEDDING_DIM,
                change_seq,
                slots: self.slots.len(),
                live: self.len(),
                max_connections: self.cfg.max_connections,
                ef_construction: self.cfg.ef_construction,
                basename: basename.clone(),
                graph_sha256: sha256_file(&parts[0])?,
                data_sha256: sha256_file(&parts[1])?,
                slots_sha256,
            })
        })();
        let meta = match written {
            Ok(m) => m,
            Err(e) => {
                remove_parts(db, &basename);
                return Err(e);
            }
        };

        // Commit: the description goes to a temporary name, then replaces the old one.
        let previous = read_meta(db).ok().flatten();
        let final_path = meta_path(db);
        let tmp = beside(db, &format!(".index.json.tmp-{basename}"));
        let committed = (|| -> Result<(), String> {
            let json = serde_json::to_vec_pretty(&meta).map_err(|e| e.to_string())?;
            let mut f = File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
            f.write_all(&json).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &final_path).map_err(|e| format!("{}: {e}", final_path.display()))?;
            if let Ok(d) = File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if let Err(e) = committed {
            let _ = std::fs::remove_file(&tmp);
            remove_parts(db, &basename);
            return Err(e);
        }
        if let Some(p) = previous.filter(|p| p.basename != basename) {
            remove_parts(db, &p.basename);
        }
        remove_orphans(db, &basename);
        let mut files = vec![final_path];
        files.extend(parts);
        let bytes = files.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
        Ok(SaveReport { files, bytes })
    }

    /// Loads the index saved next to the gallery database at `db`: `Ok(None)` when there is
    /// none, `Err(why)` when there is one that cannot be used (made with other settings, by
    /// another build, incomplete or corrupt). Returns the change-log position it reflects;
    /// the caller checks it against the store, applies later changes and verifies the
    /// templates ([`verify_against`](Self::verify_against)).
    ///
    /// Every file is checked against its SHA-256 before hnsw_rs reads it: hnsw_rs' reader
    /// panics on a short graph file and ends the process on a malformed data file.
    pub fn load(cfg: &IndexConfig, db: &Path) -> Result<Option<(TemplateIndex, i64)>, String> {
        let Some(meta) = read_meta(db)? else {
            return Ok(None);
        };
        if meta.format != SAVE_FORMAT
            || meta.platform != SAVE_PLATFORM
            || meta.endian != endian()
            || meta.pointer_bits != usize::BITS
            || meta.dim != EMBEDDING_DIM
        {
            return Err(format!(
                "saved by another build ({}, format {}, {}-endian {}-bit, {}-d)",
                meta.platform, meta.format, meta.endian, meta.pointer_bits, meta.dim
            ));
        }
        if meta.max_connections != cfg.max_connections || meta.ef_construction != cfg.ef_construction {
            return Err(format!(
                "built with max_connections {} and ef_construction {}, configured {} and {}",
                meta.max_connections, meta.ef_construction, cfg.max_connections, cfg.ef_construction
            ));
        }
        let parts = part_paths(db, &meta.basename);
        for (path, want) in parts.iter().zip([&meta.graph_sha256, &meta.data_sha256, &meta.slots_sha256]) {
            let got = sha256_file(path)?;
            if &got != want {
                return Err(format!("{}: checksum mismatch (corrupt or replaced)", path.display()));
            }
        }
        let slots = read_slots(&parts[2], meta.slots)?;

        // HnswIo lends the graph its own lifetime (for memory-mapped data, unused here); it
        // is a few hundred bytes, leaked so that the graph can be 'static.
        let io: &'static HnswIo = Box::leak(Box::new(HnswIo::new(&folder_of(db), &meta.basename)));
        let mut graph = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            io.load_hnsw_with_dist::<f32, CosineDistance>(CosineDistance)
        }))
        .map_err(|_| "hnsw_rs panicked while reading the graph".to_string())?
        .map_err(|e| format!("reading the graph: {e}"))?;

        let n = slots.len();
        if graph.get_nb_point() != n || graph.get_max_nb_connection() as usize != cfg.max_connections {
            return Err(format!(
                "the graph holds {} points of {} links, the slot table {n} slots",
                graph.get_nb_point(),
                graph.get_max_nb_connection()
            ));
        }
        // Our copy of every vector, from the graph's (the caller compares them to the store).
        let mut vectors = vec![0.0f32; n * EMBEDDING_DIM];
        let mut seen = vec![false; n];
        let mut count = 0usize;
        {
            let points = graph.get_point_indexation();
            for layer in 0..GRAPH_LAYERS {
                if points.get_layer_nb_point(layer) == 0 {
                    continue;
                }
                for p in points.get_layer_iterator(layer) {
                    let slot = p.get_origin_id();
                    let v = p.get_v();
                    if slot >= n || seen[slot] || v.len() != EMBEDDING_DIM {
                        return Err(format!("the graph's point {slot} does not match the slot table"));
                    }
                    seen[slot] = true;
                    count += 1;
                    vectors[slot * EMBEDDING_DIM..(slot + 1) * EMBEDDING_DIM].copy_from_slice(v);
                }
            }
        }
        if count != n {
            return Err(format!("the graph holds {count} of {n} slots"));
        }
        graph.set_searching_mode(true);
        graph.set_extend_candidates(false);

        let mut by_template = HashMap::with_capacity(n);
        let mut per_person: HashMap<i64, usize> = HashMap::new();
        let mut dead = HashSet::new();
        for (i, s) in slots.iter().enumerate() {
            if s.alive {
                if by_template.insert(s.template_id, i).is_some() {
                    return Err(format!("template {} is in two live slots", s.template_id));
                }
                *per_person.entry(s.person_id).or_default() += 1;
            } else {
                dead.insert(i);
            }
        }
        let mut idx = TemplateIndex {
            cfg: cfg.clone(),
            slots,
            vectors,
            by_template,
            per_person,
            dead,
            graph: Some(graph),
            graph_len: n,
        };
        // The configured sizes may differ from the saving process's.
        idx.maintain();
        Ok(Some((idx, meta.change_seq)))
    }

    /// Checks that the live templates are exactly the store's: `ids[i] = (template, person)`
    /// with embedding row `i` of `vectors`, bit for bit. Templates in `in_flight` (changed
    /// in the store after the point this index reflects) are not compared.
    pub fn verify_against(&self, ids: &[(i64, i64)], vectors: &[f32], in_flight: &HashSet<i64>) -> Result<(), String> {
        let mut compared = 0usize;
        for (i, &(t, p)) in ids.iter().enumerate() {
            if in_flight.contains(&t) {
                continue;
            }
            let Some(&slot) = self.by_template.get(&t) else {
                return Err(format!("template {t} of the store is missing"));
            };
            if self.slots[slot].person_id != p {
                return Err(format!(
                    "template {t} belongs to person {p} in the store, {} in the index",
                    self.slots[slot].person_id
                ));
            }
            if self.vector(slot) != &vectors[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM] {
                return Err(format!("template {t} has another embedding in the store"));
            }
            compared += 1;
        }
        let ours = self.by_template.keys().filter(|t| !in_flight.contains(t)).count();
        if ours != compared {
            return Err(format!(
                "the index holds {} templates the store does not",
                ours - compared.min(ours)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vision::embedder::l2_normalize;

    /// Deterministic pseudo-random unit vectors (xorshift), so tests need no RNG crate.
    pub fn unit_vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        (0..n)
            .map(|_| {
                let mut v: Vec<f32> = (0..EMBEDDING_DIM).map(|_| next()).collect();
                l2_normalize(&mut v);
                v
            })
            .collect()
    }

    /// Face-like data: `persons` random identities, each with `per` templates scattered
    /// around it (cosine to the identity ≈ 1 / √(1 + noise²·128/12)).
    pub fn clustered(persons: usize, per: usize, noise: f32, seed: u64) -> Vec<(usize, Vec<f32>)> {
        let centres = unit_vectors(persons, seed);
        let jitter = unit_vectors(persons * per, seed + 1);
        let mut out = Vec::with_capacity(persons * per);
        for (p, c) in centres.iter().enumerate() {
            for t in 0..per {
                let j = &jitter[p * per + t];
                let mut v: Vec<f32> = c.iter().zip(j).map(|(a, b)| a + noise * b).collect();
                l2_normalize(&mut v);
                out.push((p, v));
            }
        }
        out
    }

    fn small_graph_cfg() -> IndexConfig {
        IndexConfig {
            exact_below: 50,
            ..IndexConfig::default()
        }
    }

    #[test]
    fn exact_search_orders_by_similarity() {
        let vs = unit_vectors(20, 1);
        let mut idx = TemplateIndex::new(IndexConfig::default());
        idx.extend(
            vs.iter()
                .enumerate()
                .map(|(i, v)| (i as i64 + 100, i as i64 / 2, v.clone())),
        );
        let hits = idx.search(&vs[7], 3);
        assert_eq!(hits[0].template_id, 107);
        assert!((hits[0].similarity - 1.0).abs() < 1e-5);
        assert!(hits[1].similarity <= hits[0].similarity && hits[2].similarity <= hits[1].similarity);
        assert!(!idx.uses_graph());
    }

    #[test]
    fn hnsw_and_exact_agree_on_small_galleries() {
        // 300 people × 5 templates; queries are fresh samples of 200 of them.
        let data = clustered(300, 6, 1.0, 2);
        let (queries, stored): (Vec<_>, Vec<_>) = data.into_iter().enumerate().partition(|(i, _)| i % 6 == 0);
        let vs: Vec<Vec<f32>> = stored.iter().map(|(_, (_, v))| v.clone()).collect();
        let mut idx = TemplateIndex::new(small_graph_cfg());
        idx.extend(stored.iter().enumerate().map(|(i, (_, (p, v)))| (i as i64, *p as i64, v.clone())));
        assert!(idx.uses_graph());
        let (mut agree, mut same_person) = (0, 0);
        for (_, (_, q)) in queries.iter().take(200) {
            let a = idx.search(q, 1);
            let b = idx.search_exact(q, 1);
            agree += (a[0].template_id == b[0].template_id) as usize;
            same_person += (a[0].person_id == b[0].person_id) as usize;
        }
        assert!(agree >= 198, "template recall@1 {agree}/200");
        assert_eq!(same_person, 200, "person recall@1");
        // A stored vector finds itself.
        for i in [0, 749, 1499] {
            assert_eq!(idx.search(&vs[i], 1)[0].template_id, i as i64);
        }
    }

    #[test]
    fn removed_templates_are_never_returned_by_graph_or_exact_search() {
        let vs = unit_vectors(300, 4);
        let mut idx = TemplateIndex::new(small_graph_cfg());
        idx.extend(
            vs.iter()
                .enumerate()
                .map(|(i, v)| (i as i64, (i % 30) as i64, v.clone())),
        );
        assert!(idx.uses_graph());
        assert_eq!(idx.remove_person(7), 10);
        assert!(idx.remove_template(8));
        assert!(!idx.remove_template(8));
        for (i, v) in vs.iter().enumerate() {
            for h in idx.search(v, 20).into_iter().chain(idx.search_exact(v, 20)) {
                assert_ne!(h.person_id, 7, "removed person returned for query {i}");
                assert_ne!(h.template_id, 8);
            }
        }
        assert_eq!(idx.len(), 289);
    }

    #[test]
    fn rebuild_after_many_removals_keeps_results_right() {
        let vs = unit_vectors(400, 5);
        let mut idx = TemplateIndex::new(small_graph_cfg());
        idx.extend(vs.iter().enumerate().map(|(i, v)| (i as i64, i as i64, v.clone())));
        for i in 0..200 {
            idx.remove_template(i);
        }
        assert_eq!(idx.len(), 200);
        assert!(idx.dead.len() as f32 <= 0.2 * idx.slots.len() as f32, "compacted");
        for i in 200..400 {
            assert_eq!(idx.search(&vs[i], 1)[0].template_id, i as i64);
        }
        // Growing again past the graph: new templates are found.
        let more = unit_vectors(10, 6);
        for (j, v) in more.iter().enumerate() {
            idx.insert(1000 + j as i64, 1000 + j as i64, v);
        }
        assert_eq!(idx.search(&more[3], 1)[0].template_id, 1003);
    }

    #[test]
    fn best_per_person_finds_the_runner_up_behind_many_templates() {
        // Person 1 has 100 near-identical templates close to the query; person 2 one farther.
        let base = unit_vectors(2, 7);
        let mut idx = TemplateIndex::new(IndexConfig::default());
        let mut items = Vec::new();
        for i in 0..100 {
            let mut v: Vec<f32> = base[0]
                .iter()
                .zip(&base[1])
                .map(|(a, b)| a + 0.001 * i as f32 * b)
                .collect();
            l2_normalize(&mut v);
            items.push((i, 1, v));
        }
        let mut v2: Vec<f32> = base[0].iter().zip(&base[1]).map(|(a, b)| a + 0.8 * b).collect();
        l2_normalize(&mut v2);
        items.push((500, 2, v2));
        idx.extend(items);
        let best = idx.best_per_person(&base[0], 2);
        assert_eq!(best.len(), 2);
        assert_eq!((best[0].person_id, best[1].person_id), (1, 2));
    }

    #[test]
    fn cosine_distance_is_never_negative() {
        let v = unit_vectors(1, 8).remove(0);
        assert!(CosineDistance.eval(&v, &v) >= 0.0);
    }
}
