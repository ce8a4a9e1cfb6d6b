//! The search index over enrolled templates: exact search while the gallery is small,
//! HNSW (hnsw_rs) above a configurable size. Removals are tombstones; the graph is rebuilt
//! once tombstones pass a fraction of it.

use std::collections::{HashMap, HashSet};

use hnsw_rs::prelude::{DataId, Distance, FilterT, Hnsw};
use serde::{Deserialize, Serialize};

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

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
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
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            exact_below: 20_000,
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

/// Lets only live slots through an HNSW search.
struct LiveSlots<'a>(&'a HashSet<usize>);

impl FilterT for LiveSlots<'_> {
    fn hnsw_filter(&self, id: &DataId) -> bool {
        !self.0.contains(id)
    }
}

pub struct TemplateIndex {
    cfg: IndexConfig,
    slots: Vec<Slot>,
    /// Row-major `slots.len() × EMBEDDING_DIM`: exact search and rebuilds read it.
    vectors: Vec<f32>,
    by_template: HashMap<i64, usize>,
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
            dead: HashSet::new(),
            graph: None,
            graph_len: 0,
        }
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
        self.push(template_id, person_id, embedding);
        if let Some(g) = &self.graph {
            let slot = self.slots.len() - 1;
            g.insert_slice((&self.vectors[slot * EMBEDDING_DIM..(slot + 1) * EMBEDDING_DIM], slot));
            self.graph_len = self.slots.len();
        }
        self.maintain();
    }

    fn push(&mut self, template_id: i64, person_id: i64, embedding: &[f32]) {
        assert_eq!(embedding.len(), EMBEDDING_DIM, "embeddings are {EMBEDDING_DIM}-d");
        if self.by_template.contains_key(&template_id) {
            return;
        }
        self.by_template.insert(template_id, self.slots.len());
        self.slots.push(Slot {
            template_id,
            person_id,
            alive: true,
        });
        self.vectors.extend_from_slice(embedding);
    }

    /// Tombstones one template; no later search returns it.
    pub fn remove_template(&mut self, template_id: i64) -> bool {
        let Some(slot) = self.by_template.remove(&template_id) else {
            return false;
        };
        self.slots[slot].alive = false;
        self.dead.insert(slot);
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
                self.slots[slot].alive = false;
                self.dead.insert(slot);
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
        let layers = 16usize.min(((n.max(2) as f32).ln().ceil() as usize).max(1));
        let g = Hnsw::new(
            self.cfg.max_connections,
            n,
            layers,
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
        match &self.graph {
            None => self.search_exact(query, k),
            Some(g) => {
                let filter = LiveSlots(&self.dead);
                let ef = self.cfg.ef_search.max(k);
                let mut hits: Vec<Hit> = g
                    .search_filter(query, k, ef, if self.dead.is_empty() { None } else { Some(&filter) })
                    .into_iter()
                    .filter(|n| self.slots.get(n.d_id).is_some_and(|s| s.alive))
                    .map(|n| self.hit(n.d_id, 1.0 - n.distance))
                    .collect();
                // Slots added after the last graph insert are compared exactly.
                for s in self.graph_len..self.slots.len() {
                    if self.slots[s].alive {
                        hits.push(self.hit(s, dot(query, self.vector(s))));
                    }
                }
                sort_and_truncate(&mut hits, k);
                hits
            }
        }
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

    /// Best similarity per person, best person first, at most `persons` of them. Searches
    /// deeper when the nearest templates all belong to too few people, so that the
    /// runner-up (for the margin rule) is found even for people with many templates.
    pub fn best_per_person(&self, query: &[f32], persons: usize) -> Vec<Hit> {
        let mut k = (persons * 8).max(32);
        loop {
            let hits = self.search(query, k);
            let exhausted = hits.len() < k;
            let mut best: Vec<Hit> = Vec::new();
            for h in hits {
                if !best.iter().any(|b| b.person_id == h.person_id) {
                    best.push(h);
                }
            }
            if best.len() >= persons || exhausted || k >= 4096 {
                best.truncate(persons);
                return best;
            }
            k *= 4;
        }
    }
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
        idx.extend(
            stored
                .iter()
                .enumerate()
                .map(|(i, (_, (p, v)))| (i as i64, *p as i64, v.clone())),
        );
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
