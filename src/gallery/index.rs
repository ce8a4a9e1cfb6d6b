//! The search index over enrolled templates.
//!
//! Small galleries (fewer live templates than `exact_below`) are searched exactly. Large
//! ones are searched in two stages: every person has one or more prototypes (the
//! L2-normalised means of groups of similar templates), and an HNSW graph (hnsw_rs) over the prototypes gives a shortlist of the
//! most similar people; their templates are then compared exactly. A person's best-template
//! similarity (what the matching rule uses) is therefore always exact for shortlisted people.
//! Removals are tombstones; templates are compacted and the prototype graph rebuilt once
//! tombstones pass a fraction. Enrolling more photos of a person replaces their prototype.
//!
//! Why prototypes rather than a graph over every template: at 1M templates (10k people ×
//! 100) a template graph took 21 minutes to build on a 2-core box and needed ef_search 160
//! (p99 ≈ 8 ms) for person recall@1 ≥ 0.99; the prototype graph has 100× fewer nodes.

use std::collections::{HashMap, HashSet};

use hnsw_rs::prelude::{DataId, Distance, FilterT, Hnsw};
use serde::{Deserialize, Serialize};

use crate::vision::embedder::EMBEDDING_DIM;
use crate::vision::similarity::dot;

/// Cosine distance of L2-normalised vectors, `1 − a·b`, never negative. (anndists' `DistDot`
/// asserts `a·b ≤ 1`, which rounding breaks for a vector and itself.)
#[derive(Debug, Default, Clone, Copy)]
pub struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Below this many live templates every search is exact (and exact is fast enough).
    pub exact_below: usize,
    /// Above `exact_below`: how many people the prototype graph shortlists before their
    /// templates are compared exactly (higher: better recall, slower).
    pub shortlist: usize,
    /// A person's template joins their most similar prototype when the two are at least
    /// this similar, and otherwise starts a prototype of its own (a different look: glasses,
    /// beard, lighting), so that one person can have several.
    pub prototype_merge: f32,
    /// Prototypes are searched exactly below this many, through HNSW from it on.
    pub graph_above: usize,
    /// HNSW over prototypes: links per node.
    pub max_connections: usize,
    /// HNSW over prototypes: candidate list size while building.
    pub ef_construction: usize,
    /// HNSW over prototypes: candidate list size while searching (at least `shortlist`).
    pub ef_search: usize,
    /// Compact templates / rebuild the prototype graph when removed entries exceed this
    /// fraction of them.
    pub rebuild_fraction: f32,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            exact_below: 20_000,
            shortlist: 32,
            prototype_merge: 0.4,
            graph_above: 50_000,
            max_connections: 16,
            ef_construction: 100,
            ef_search: 64,
            rebuild_fraction: 0.2,
        }
    }
}

impl IndexConfig {
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.shortlist == 0 {
            p.push(format!("{prefix}.shortlist: must be at least 1"));
        }
        if !(-1.0..=1.0).contains(&self.prototype_merge) {
            p.push(format!(
                "{prefix}.prototype_merge: {} is not a cosine similarity (−1–1)",
                self.prototype_merge
            ));
        }
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

#[derive(Debug, Clone, Copy)]
struct Slot {
    template_id: i64,
    person_id: i64,
    alive: bool,
}

/// Lets only live prototypes through an HNSW search.
struct LiveSlots<'a>(&'a [bool]);

impl FilterT for LiveSlots<'_> {
    fn hnsw_filter(&self, id: &DataId) -> bool {
        self.0.get(*id).copied().unwrap_or(false)
    }
}

#[derive(Debug, Default)]
struct PersonEntry {
    /// Live template slots.
    slots: Vec<usize>,
    /// Live prototype slots, in large mode.
    protos: Vec<usize>,
}

/// The prototype layer: a few vectors per person, searched exactly or, from
/// `graph_above` live prototypes on, through an HNSW graph.
struct Prototypes {
    persons: Vec<i64>,
    vectors: Vec<f32>,
    alive: Vec<bool>,
    dead: usize,
    graph: Option<Hnsw<'static, f32, CosineDistance>>,
    /// Slots `0..graph_len` are in the graph.
    graph_len: usize,
}

impl Prototypes {
    fn new(persons: Vec<i64>, vectors: Vec<f32>) -> Prototypes {
        Prototypes {
            alive: vec![true; persons.len()],
            persons,
            vectors,
            dead: 0,
            graph: None,
            graph_len: 0,
        }
    }

    fn vector(&self, slot: usize) -> &[f32] {
        &self.vectors[slot * EMBEDDING_DIM..(slot + 1) * EMBEDDING_DIM]
    }

    fn live(&self) -> usize {
        self.persons.len() - self.dead
    }

    fn push(&mut self, person: i64, v: &[f32]) -> usize {
        self.persons.push(person);
        self.vectors.extend_from_slice(v);
        self.alive.push(true);
        self.persons.len() - 1
    }

    fn kill(&mut self, slot: usize) {
        if std::mem::replace(&mut self.alive[slot], false) {
            self.dead += 1;
        }
    }

    /// Builds, extends or drops the graph so that it covers every slot exactly when there
    /// are at least `graph_above` live prototypes.
    fn sync_graph(&mut self, cfg: &IndexConfig) {
        if self.live() < cfg.graph_above {
            self.graph = None;
            self.graph_len = 0;
            return;
        }
        let n = self.persons.len();
        let graph = self.graph.get_or_insert_with(|| {
            let layers = 16usize.min(((n.max(2) as f32).ln().ceil() as usize).max(1));
            let mut g = Hnsw::new(
                cfg.max_connections,
                n.max(1),
                layers,
                cfg.ef_construction,
                CosineDistance,
            );
            g.set_searching_mode(true);
            g
        });
        let pending: Vec<(&[f32], usize)> = (self.graph_len..n)
            .map(|s| (&self.vectors[s * EMBEDDING_DIM..(s + 1) * EMBEDDING_DIM], s))
            .collect();
        match pending.len() {
            0 => {}
            1 => graph.insert_slice(pending[0]),
            _ => graph.parallel_insert_slice(&pending),
        }
        self.graph_len = n;
    }

    /// The `k` live prototypes most similar to `query`, best first (graph or exact).
    fn nearest(&self, query: &[f32], k: usize, ef_search: usize) -> Vec<usize> {
        if let Some(g) = &self.graph {
            let live = LiveSlots(&self.alive);
            let filter: Option<&dyn FilterT> = if self.dead == 0 { None } else { Some(&live) };
            return g
                .search_filter(query, k, ef_search.max(k), filter)
                .into_iter()
                .map(|n| n.d_id)
                .filter(|&s| self.alive.get(s).copied().unwrap_or(false))
                .collect();
        }
        let mut sims: Vec<(f32, usize)> = (0..self.persons.len())
            .filter(|&s| self.alive[s])
            .map(|s| (dot(query, self.vector(s)), s))
            .collect();
        let by_sim = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if sims.len() > k {
            sims.select_nth_unstable_by(k, by_sim);
            sims.truncate(k);
        }
        sims.sort_by(by_sim);
        sims.into_iter().map(|(_, s)| s).collect()
    }
}

pub struct TemplateIndex {
    cfg: IndexConfig,
    slots: Vec<Slot>,
    /// Row-major `slots.len() × EMBEDDING_DIM`.
    vectors: Vec<f32>,
    by_template: HashMap<i64, usize>,
    dead: usize,
    persons: HashMap<i64, PersonEntry>,
    /// Present in large mode (live templates ≥ `exact_below`).
    protos: Option<Prototypes>,
    /// People given templates by `stage` since the last `settle`.
    staged: HashSet<i64>,
}

impl TemplateIndex {
    pub fn new(cfg: IndexConfig) -> TemplateIndex {
        TemplateIndex {
            cfg,
            slots: Vec::new(),
            vectors: Vec::new(),
            by_template: HashMap::new(),
            dead: 0,
            persons: HashMap::new(),
            protos: None,
            staged: HashSet::new(),
        }
    }

    /// Live templates.
    pub fn len(&self) -> usize {
        self.slots.len() - self.dead
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// People with at least one live template.
    pub fn person_count(&self) -> usize {
        self.persons.len()
    }

    /// Live prototypes (0 unless in large mode).
    pub fn prototype_count(&self) -> usize {
        self.protos.as_ref().map_or(0, Prototypes::live)
    }

    /// Whether searches go through prototypes (large mode).
    pub fn two_stage(&self) -> bool {
        self.protos.is_some()
    }

    /// Whether the prototypes are searched through the HNSW graph.
    pub fn uses_graph(&self) -> bool {
        self.protos.as_ref().is_some_and(|p| p.graph.is_some())
    }

    pub fn contains(&self, template_id: i64) -> bool {
        self.by_template.contains_key(&template_id)
    }

    /// Adds many templates; prototypes and their graph are built once at the end.
    pub fn extend(&mut self, items: impl IntoIterator<Item = (i64, i64, Vec<f32>)>) {
        for (template_id, person_id, v) in items {
            self.stage(template_id, person_id, &v);
        }
        self.settle();
    }

    /// Makes room for `additional` more templates.
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        self.vectors.reserve(additional * EMBEDDING_DIM);
        self.by_template.reserve(additional);
    }

    /// Adds a template without updating prototypes yet: searches may miss it until `settle`.
    /// For loading many templates at once.
    pub fn stage(&mut self, template_id: i64, person_id: i64, embedding: &[f32]) {
        if self.push(template_id, person_id, embedding) {
            self.staged.insert(person_id);
        }
    }

    /// Brings prototypes and graph up to date with everything staged.
    pub fn settle(&mut self) {
        let touched = std::mem::take(&mut self.staged);
        self.maintain(touched);
    }

    /// Adds one template; `embedding` must be L2-normalised and 128-d.
    pub fn insert(&mut self, template_id: i64, person_id: i64, embedding: &[f32]) {
        if self.push(template_id, person_id, embedding) {
            self.maintain(HashSet::from([person_id]));
        }
    }

    fn push(&mut self, template_id: i64, person_id: i64, embedding: &[f32]) -> bool {
        assert_eq!(embedding.len(), EMBEDDING_DIM, "embeddings are {EMBEDDING_DIM}-d");
        if self.by_template.contains_key(&template_id) {
            return false;
        }
        let slot = self.slots.len();
        self.by_template.insert(template_id, slot);
        self.slots.push(Slot {
            template_id,
            person_id,
            alive: true,
        });
        self.vectors.extend_from_slice(embedding);
        self.persons.entry(person_id).or_default().slots.push(slot);
        true
    }

    /// Tombstones one template; no later search returns it.
    pub fn remove_template(&mut self, template_id: i64) -> bool {
        let Some(person) = self.kill(template_id) else {
            return false;
        };
        self.maintain(HashSet::from([person]));
        true
    }

    /// Tombstones every template of a person; returns how many.
    pub fn remove_person(&mut self, person_id: i64) -> usize {
        let ids: Vec<i64> = match self.persons.get(&person_id) {
            Some(e) => e.slots.iter().map(|&s| self.slots[s].template_id).collect(),
            None => return 0,
        };
        for id in &ids {
            self.kill(*id);
        }
        self.maintain(HashSet::from([person_id]));
        ids.len()
    }

    /// Marks a template dead; returns its person.
    fn kill(&mut self, template_id: i64) -> Option<i64> {
        let slot = self.by_template.remove(&template_id)?;
        let s = &mut self.slots[slot];
        s.alive = false;
        self.dead += 1;
        let person = s.person_id;
        if let Some(e) = self.persons.get_mut(&person) {
            e.slots.retain(|&x| x != slot);
        }
        Some(person)
    }

    /// Keeps the structure right after changes to `touched` people: compacts templates when
    /// too many are dead, enters or leaves large mode at `exact_below`, and replaces the
    /// prototypes of touched people (rebuilding the graph when too many are dead).
    fn maintain(&mut self, touched: HashSet<i64>) {
        let frac = self.cfg.rebuild_fraction;
        if !self.slots.is_empty() && self.dead as f32 > frac * self.slots.len() as f32 {
            self.compact();
        }
        let gone: Vec<i64> = touched
            .iter()
            .copied()
            .filter(|p| self.persons.get(p).is_some_and(|e| e.slots.is_empty()))
            .collect();
        if self.len() < self.cfg.exact_below {
            for p in &gone {
                self.persons.remove(p);
            }
            self.protos = None;
            for e in self.persons.values_mut() {
                e.protos.clear();
            }
            return;
        }
        let Some(mut protos) = self.protos.take() else {
            for p in &gone {
                self.persons.remove(p);
            }
            self.build_prototypes();
            return;
        };
        for p in &touched {
            let Some(e) = self.persons.get_mut(p) else { continue };
            for old in e.protos.drain(..) {
                protos.kill(old);
            }
            for v in prototypes(&self.vectors, &e.slots, self.cfg.prototype_merge) {
                e.protos.push(protos.push(*p, &v));
            }
        }
        for p in &gone {
            self.persons.remove(p);
        }
        if protos.dead as f32 > frac * protos.persons.len() as f32 {
            self.build_prototypes();
            return;
        }
        protos.sync_graph(&self.cfg);
        self.protos = Some(protos);
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
        for e in self.persons.values_mut() {
            e.slots.clear();
        }
        for (i, s) in slots.iter().enumerate() {
            self.persons.entry(s.person_id).or_default().slots.push(i);
        }
        self.slots = slots;
        self.vectors = vectors;
        self.dead = 0;
    }

    /// Computes every person's prototypes, and the graph over them when there are enough.
    fn build_prototypes(&mut self) {
        let mut ids: Vec<i64> = self.persons.keys().copied().collect();
        ids.sort_unstable();
        let mut owners = Vec::with_capacity(ids.len());
        let mut vectors = Vec::with_capacity(ids.len() * EMBEDDING_DIM);
        for p in &ids {
            let e = self.persons.get_mut(p).expect("listed person");
            e.protos.clear();
            for v in prototypes(&self.vectors, &e.slots, self.cfg.prototype_merge) {
                e.protos.push(owners.len());
                owners.push(*p);
                vectors.extend_from_slice(&v);
            }
        }
        let mut protos = Prototypes::new(owners, vectors);
        protos.sync_graph(&self.cfg);
        self.protos = Some(protos);
    }

    /// The people owning the prototypes most similar to `query`: up to `max(n, shortlist)`
    /// prototypes, each person once.
    fn shortlist(&self, protos: &Prototypes, query: &[f32], n: usize) -> Vec<i64> {
        let k = n.max(self.cfg.shortlist);
        let mut seen = HashSet::new();
        protos
            .nearest(query, k, self.cfg.ef_search)
            .into_iter()
            .map(|s| protos.persons[s])
            .filter(|p| seen.insert(*p))
            .collect()
    }

    /// The first stage alone (empty outside large mode): for timing it apart.
    pub fn shortlist_persons(&self, query: &[f32], n: usize) -> Vec<i64> {
        self.protos
            .as_ref()
            .map_or_else(Vec::new, |p| self.shortlist(p, query, n))
    }

    /// The best template of one person.
    fn best_of(&self, person: i64, query: &[f32]) -> Option<Hit> {
        let e = self.persons.get(&person)?;
        e.slots
            .iter()
            .map(|&s| self.hit(s, dot(query, self.vector(s))))
            .max_by(|a, b| {
                a.similarity
                    .total_cmp(&b.similarity)
                    .then(b.template_id.cmp(&a.template_id))
            })
    }

    /// The `k` most similar live templates, best first. In large mode only the templates of
    /// shortlisted people (at least `k` of them) are candidates.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<Hit> {
        let Some(protos) = &self.protos else {
            return self.search_exact(query, k);
        };
        let mut hits: Vec<Hit> = self
            .shortlist(protos, query, k)
            .into_iter()
            .flat_map(|p| self.persons[&p].slots.iter().copied())
            .map(|s| self.hit(s, dot(query, self.vector(s))))
            .collect();
        sort_and_truncate(&mut hits, k);
        hits
    }

    /// The `k` most similar live templates by brute force.
    pub fn search_exact(&self, query: &[f32], k: usize) -> Vec<Hit> {
        let mut hits: Vec<Hit> = (0..self.slots.len())
            .filter(|&s| self.slots[s].alive)
            .map(|s| self.hit(s, dot(query, self.vector(s))))
            .collect();
        sort_and_truncate(&mut hits, k);
        hits
    }

    fn hit(&self, slot: usize, similarity: f32) -> Hit {
        let s = self.slots[slot];
        Hit {
            template_id: s.template_id,
            person_id: s.person_id,
            similarity,
        }
    }

    /// Best template per person, best person first, at most `persons` of them: what the
    /// matching rule needs (the best person and the runner-up).
    pub fn best_per_person(&self, query: &[f32], persons: usize) -> Vec<Hit> {
        match &self.protos {
            None => self.best_per_person_exact(query, persons),
            Some(protos) => {
                let mut best: Vec<Hit> = self
                    .shortlist(protos, query, persons)
                    .into_iter()
                    .filter_map(|p| self.best_of(p, query))
                    .collect();
                sort_and_truncate(&mut best, persons);
                best
            }
        }
    }

    /// `best_per_person` by brute force over every live template (the benchmark's truth).
    pub fn best_per_person_exact(&self, query: &[f32], persons: usize) -> Vec<Hit> {
        let mut best: HashMap<i64, Hit> = HashMap::new();
        for (s, slot) in self.slots.iter().enumerate() {
            if !slot.alive {
                continue;
            }
            let sim = dot(query, self.vector(s));
            let better = best
                .get(&slot.person_id)
                .is_none_or(|b| sim > b.similarity || (sim == b.similarity && slot.template_id < b.template_id));
            if better {
                best.insert(slot.person_id, self.hit(s, sim));
            }
        }
        let mut v: Vec<Hit> = best.into_values().collect();
        sort_and_truncate(&mut v, persons);
        v
    }
}

/// A person's prototypes: templates taken in order, each joins the most similar group
/// (by its normalised mean) when at least `merge` similar, else starts a new group; the
/// prototypes are the groups' normalised means.
pub fn prototypes(vectors: &[f32], slots: &[usize], merge: f32) -> Vec<Vec<f32>> {
    let mut sums: Vec<Vec<f32>> = Vec::new();
    let mut means: Vec<Vec<f32>> = Vec::new();
    for &s in slots {
        let v = &vectors[s * EMBEDDING_DIM..(s + 1) * EMBEDDING_DIM];
        let best = means
            .iter()
            .enumerate()
            .map(|(g, m)| (g, dot(m, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .filter(|&(_, sim)| sim >= merge);
        let g = match best {
            Some((g, _)) => g,
            None => {
                sums.push(vec![0f32; EMBEDDING_DIM]);
                means.push(vec![0f32; EMBEDDING_DIM]);
                sums.len() - 1
            }
        };
        sums[g].iter_mut().zip(v).for_each(|(a, b)| *a += b);
        let norm = sums[g].iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
        means[g] = sums[g].iter().map(|x| x / norm).collect();
    }
    means
}

fn sort_and_truncate(hits: &mut Vec<Hit>, k: usize) {
    hits.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then(a.template_id.cmp(&b.template_id))
    });
    hits.truncate(k);
}
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vision::similarity::l2_normalize;

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

    /// Two-stage search from 50 templates, prototypes through the graph from 20.
    fn small_graph_cfg() -> IndexConfig {
        IndexConfig {
            exact_below: 50,
            graph_above: 20,
            ..IndexConfig::default()
        }
    }

    /// Both ways of searching the prototypes: the graph, and exactly.
    fn two_stage_cfgs() -> [IndexConfig; 2] {
        [
            small_graph_cfg(),
            IndexConfig {
                graph_above: usize::MAX,
                ..small_graph_cfg()
            },
        ]
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
        for cfg in two_stage_cfgs() {
            let with_graph = cfg.graph_above < usize::MAX;
            let mut idx = TemplateIndex::new(cfg);
            idx.extend(
                stored
                    .iter()
                    .enumerate()
                    .map(|(i, (_, (p, v)))| (i as i64, *p as i64, v.clone())),
            );
            assert!(idx.two_stage());
            assert_eq!(idx.uses_graph(), with_graph);
            let (mut agree, mut same_person) = (0, 0);
            for (_, (_, q)) in queries.iter().take(200) {
                let a = idx.search(q, 1);
                let b = idx.search_exact(q, 1);
                agree += (a[0].template_id == b[0].template_id) as usize;
                same_person += (a[0].person_id == b[0].person_id) as usize;
            }
            assert!(agree >= 198, "template recall@1 {agree}/200");
            assert_eq!(same_person, 200, "person recall@1");
            // The matching rule's inputs (best and runner-up person, with their similarities)
            // are those of exact search.
            let mut runner_up = 0;
            for (_, (_, q)) in queries.iter().take(200) {
                let a = idx.best_per_person(q, 2);
                let b = idx.best_per_person_exact(q, 2);
                assert_eq!(a[0], b[0], "best person");
                // A missed runner-up can only be replaced by a less similar one.
                assert!(a[1].similarity <= b[1].similarity);
                runner_up += (a[1] == b[1]) as usize;
            }
            // Here runner-ups are strangers at noise level (≈ 0.25 against ≈ 0.5); a close
            // runner-up has a close prototype too.
            assert!(runner_up >= 185, "runner-up agrees {runner_up}/200");
            // A stored vector finds itself.
            for i in [0, 749, 1499] {
                assert_eq!(idx.search(&vs[i], 1)[0].template_id, i as i64);
            }
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
        assert!(idx.dead as f32 <= 0.2 * idx.slots.len() as f32, "compacted");
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

    #[test]
    fn a_second_look_of_a_person_gets_its_own_prototype() {
        // 400 people × 5 templates; person 0 then enrols a photo unlike their others.
        let data = clustered(400, 5, 1.0, 9);
        let mut idx = TemplateIndex::new(small_graph_cfg());
        idx.extend(
            data.iter()
                .enumerate()
                .map(|(i, (p, v))| (i as i64, *p as i64, v.clone())),
        );
        let other_look = unit_vectors(1, 10).remove(0);
        idx.insert(10_000, 0, &other_look);
        let best = idx.best_per_person(&other_look, 2);
        assert_eq!(best[0].template_id, 10_000);
        assert!((best[0].similarity - 1.0).abs() < 1e-5);
        let mean = prototypes(&idx.vectors, &idx.persons[&0].slots, 0.4);
        assert_eq!(mean.len(), 2, "two looks, two prototypes");
        // The original look still finds person 0 too.
        assert_eq!(idx.best_per_person(&data[1].1, 1)[0].person_id, 0);
    }

    #[test]
    fn forgetting_in_large_mode_reaches_the_prototypes() {
        let data = clustered(200, 4, 1.0, 11);
        for cfg in two_stage_cfgs() {
            let mut idx = TemplateIndex::new(cfg);
            idx.extend(
                data.iter()
                    .enumerate()
                    .map(|(i, (p, v))| (i as i64, *p as i64, v.clone())),
            );
            assert!(idx.two_stage());
            for p in 0..60 {
                assert_eq!(idx.remove_person(p), 4);
            }
            assert_eq!(idx.person_count(), 140);
            for (p, v) in &data {
                for h in idx.best_per_person(v, 5).into_iter().chain(idx.search(v, 10)) {
                    assert!(h.person_id >= 60, "forgotten person {} returned", h.person_id);
                }
                if *p >= 60 {
                    assert_eq!(idx.best_per_person(v, 1)[0].person_id, *p as i64);
                }
            }
            // Shrinking below exact_below leaves large mode; searches stay right.
            for p in 60..195 {
                idx.remove_person(p);
            }
            assert!(!idx.two_stage());
            assert_eq!(idx.best_per_person(&data[799].1, 1)[0].person_id, 199);
        }
    }
}
