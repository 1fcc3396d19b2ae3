//! Building the graph: nodes draw their level from a seeded geometric law, then every node is
//! inserted by all cores at once (a lock per node guards its link blocks, a global lock the entry
//! point). Links are chosen with the HNSW selection heuristic (a candidate is kept only when it
//! is closer to the new node than to every link already kept), which keeps the graph navigable
//! on clustered data; a full block is re-selected with the same heuristic.
//!
//! A new node keeps at most M links on every level, level 0 included, as in the paper and
//! hnswlib; level 0 holds up to 2M, filled by the links later nodes add back. Choosing 2M at
//! insertion instead built 40 % slower, gave lower recall at the same ef and 5-8 % fewer QPS at
//! the same ef (`nadir bench query` at 1M rows: 340 s against 242 s to build; ef 64: 0.9958
//! against 0.9962 recall@10).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::graph::{Graph, MAX_LEVEL};
use super::search::Scratch;

/// Build parameters.
#[derive(Debug, Clone, Copy)]
pub struct BuildParams {
    /// Links per node on the upper levels (twice that on level 0).
    pub m: usize,
    /// Beam width while inserting.
    pub ef_construction: usize,
    /// Seed of the level draw.
    pub seed: u64,
    /// Threads (0: all cores).
    pub threads: usize,
}

impl Default for BuildParams {
    /// M = 16 and efConstruction = 200, the settings the shared ANN notes measured.
    fn default() -> Self {
        BuildParams {
            m: 16,
            ef_construction: 200,
            seed: 0x5eed,
            threads: 0,
        }
    }
}

/// splitmix64, for the level draw.
pub(super) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The level of each of `n` nodes: `floor(-ln(u) / ln(M))`.
fn draw_levels(n: usize, m: usize, seed: u64) -> Vec<u8> {
    let scale = 1.0 / (m.max(2) as f64).ln();
    (0..n as u64)
        .map(|i| {
            let u = ((mix(seed ^ mix(i)) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            ((-u.ln() * scale) as u64).min(u64::from(MAX_LEVEL)) as u8
        })
        .collect()
}

struct Builder<'a> {
    graph: Graph,
    vectors: &'a [f32],
    ef: usize,
    locks: Vec<Mutex<()>>,
    /// (entry, its level).
    entry: Mutex<(u32, u8)>,
}

impl Builder<'_> {
    /// The heuristic: from `candidates` (closest first), keep at most `m` that are each closer to
    /// the base than to any kept one.
    fn select(&self, candidates: &[(u32, f32)], m: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for &(c, d) in candidates {
            if kept.len() >= m {
                break;
            }
            let vc = self.graph.vector(self.vectors, c);
            if kept.iter().all(|&k| self.graph.dist(self.vectors, vc, k) >= d) {
                kept.push(c);
            }
        }
        kept
    }

    /// Links `node` to `chosen` at `level`, and each of them back to it.
    fn connect(&self, node: u32, level: u8, chosen: &[u32]) {
        {
            let _g = self.locks[node as usize]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.graph.set_neighbours(node, level, chosen);
        }
        let cap = self.graph.capacity(level);
        let mut links = Vec::with_capacity(cap + 1);
        for &e in chosen {
            let _g = self.locks[e as usize].lock().unwrap_or_else(|e| e.into_inner());
            self.graph.neighbours(e, level, &mut links);
            if links.contains(&node) {
                continue;
            }
            links.push(node);
            if links.len() > cap {
                let ve = self.graph.vector(self.vectors, e);
                let mut scored: Vec<(u32, f32)> = links
                    .iter()
                    .map(|&x| (x, self.graph.dist(self.vectors, ve, x)))
                    .collect();
                scored.sort_by(|a, b| a.1.total_cmp(&b.1));
                links = self.select(&scored, cap);
            }
            self.graph.set_neighbours(e, level, &links);
        }
    }

    fn insert(&self, node: u32, s: &mut Scratch) {
        let level = self.graph.levels[node as usize];
        let guard = self.entry.lock().unwrap_or_else(|e| e.into_inner());
        let (entry, top) = *guard;
        // A node that raises the top level keeps the entry locked until it is linked.
        let raising = if level > top {
            Some(guard)
        } else {
            drop(guard);
            None
        };
        let q = self.graph.vector(self.vectors, node);
        let mut at = (entry, self.graph.dist(self.vectors, q, entry));
        for l in (level + 1..=top).rev() {
            at = self.graph.greedy(self.vectors, q, at, l, s);
        }
        let mut entries = vec![at];
        for l in (0..=level.min(top)).rev() {
            let found = self
                .graph
                .search_level(self.vectors, q, &entries, self.ef, l, None, s);
            // M on every level: the rest of level 0's room is for links back.
            let chosen = self.select(&found, self.graph.m);
            self.connect(node, l, &chosen);
            entries = found;
        }
        if let Some(mut g) = raising {
            *g = (node, level);
        }
    }
}

/// Builds the graph of `vectors` (row-major, `dim` each), calling `progress` with the number of
/// nodes inserted so far now and then.
pub fn build(vectors: &[f32], dim: usize, params: &BuildParams, progress: &(dyn Fn(usize) + Sync)) -> Graph {
    let n = vectors.len() / dim.max(1);
    let levels = draw_levels(n, params.m, params.seed);
    let graph = Graph::empty(dim, params.m, levels);
    if n == 0 {
        return graph;
    }
    let top = graph.levels[0];
    let b = Builder {
        graph,
        vectors,
        ef: params.ef_construction.max(params.m),
        locks: (0..n).map(|_| Mutex::new(())).collect(),
        entry: Mutex::new((0, top)),
    };
    let threads = match params.threads {
        0 => std::thread::available_parallelism().map_or(1, |t| t.get()),
        t => t,
    };
    let next = AtomicUsize::new(1);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(n) {
            scope.spawn(|| {
                let mut s = Scratch::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    b.insert(i as u32, &mut s);
                    if i.is_multiple_of(1024) {
                        progress(i);
                    }
                }
            });
        }
    });
    progress(n);
    let (entry, top) = *b.entry.lock().unwrap_or_else(|e| e.into_inner());
    let mut graph = b.graph;
    graph.entry = entry;
    graph.top = top;
    graph
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_geometric_law() {
        let levels = draw_levels(100_000, 16, 7);
        let above = levels.iter().filter(|&&l| l >= 1).count() as f64 / 1e5;
        assert!((above - 1.0 / 16.0).abs() < 0.005, "{above}");
        assert_eq!(levels, draw_levels(100_000, 16, 7));
    }
}
