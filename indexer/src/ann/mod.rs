//! The approximate nearest-neighbour graph over the embeddings: Nadir's own HNSW, built with the
//! derived structures into `hnsw-<generation>/graph.bin` and reloaded without rebuilding. Ids in
//! the graph are row numbers; the vectors stay in the index (the graph holds only links), and
//! similarity is the dot product of L2-normalised embeddings.
//!
//! Why not hnsw_rs (which format version 1 used): on this project's 2-core machines it searched
//! 2-4x slower than hnswlib at equal recall, built 4-6x slower, kept about 2 KB of `Arc` links
//! plus its own copy of every vector per row, and lacks the neighbour-selection heuristic, so
//! hard data needed ~8x the beam for the same recall (`../shared/notes/ann-measurements.md`,
//! and the table in `nadir bench query`).

mod build;
mod distance;
mod file;
mod graph;
mod search;
mod topk;

use std::path::Path;
use std::sync::Mutex;

pub use build::BuildParams;
pub use distance::{dot, dot_rows};
pub use file::GRAPH_FILE;
pub use graph::Graph;
pub use topk::{OrdF32, TopK};

use crate::error::{Error, Result};
use search::Scratch;

/// A loaded graph, ready for concurrent queries.
#[derive(Debug)]
pub struct Ann {
    graph: Graph,
    /// Walk buffers, one per concurrent query.
    scratch: Mutex<Vec<Scratch>>,
}

/// Builds the graph of `vectors` (row-major, `dim` each) into the folder `dir`, with a progress bar.
pub fn build(dir: &Path, vectors: &[f32], dim: usize) -> Result<()> {
    let n = vectors.len() / dim.max(1);
    let bar = indicatif::ProgressBar::new(n as u64).with_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed_precise}<{eta}]")
            .expect("a valid template"),
    );
    bar.set_message("graph");
    let started = std::time::Instant::now();
    let graph = build::build(vectors, dim, &BuildParams::default(), &|i| {
        bar.set_position(i as u64)
    });
    bar.finish_and_clear();
    tracing::info!(rows = n, seconds = started.elapsed().as_secs_f64(), "graph built");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    file::write(&graph, &dir.join(GRAPH_FILE))
}

impl Ann {
    /// Wraps a built graph.
    pub fn new(graph: Graph) -> Self {
        Ann {
            graph,
            scratch: Mutex::new(Vec::new()),
        }
    }

    /// Loads the graph of a folder written by [`build`], over `n` rows of dimension `dim`.
    pub fn load(dir: &Path, n: usize, dim: usize) -> Result<Self> {
        Ok(Ann::new(file::read(&dir.join(GRAPH_FILE), n, dim)?))
    }

    /// Points in the graph.
    pub fn len(&self) -> usize {
        self.graph.len()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.is_empty()
    }

    /// Bytes of links the graph holds (the vectors are the index's).
    pub fn memory_bytes(&self) -> usize {
        self.graph.memory_bytes()
    }

    /// The `k` rows most similar to `query` among `vectors` (the index's, row-major), with their
    /// dot products, best first; `ef` (at least `k`) is the beam width. With `accept`, only rows it
    /// accepts are returned.
    pub fn search(
        &self,
        vectors: &[f32],
        query: &[f32],
        k: usize,
        ef: usize,
        accept: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(u32, f32)> {
        assert_eq!(query.len(), self.graph.dim, "query dimension");
        assert_eq!(
            vectors.len(),
            self.graph.len() * self.graph.dim,
            "vectors of the graph"
        );
        let mut s = self
            .scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        let mut found = self.graph.search(vectors, query, ef.max(k), accept, &mut s);
        self.scratch.lock().unwrap_or_else(|e| e.into_inner()).push(s);
        found.truncate(k);
        found.into_iter().map(|(r, d)| (r, -d)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(mut x: Vec<f32>) -> Vec<f32> {
        let n = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        x.iter_mut().for_each(|a| *a /= n);
        x
    }

    /// Clustered unit vectors from a seed.
    fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = move || {
            state = build::mix(state);
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let centres: Vec<Vec<f32>> = (0..20).map(|_| (0..dim).map(|_| next()).collect()).collect();
        (0..n)
            .flat_map(|i| unit(centres[i % 20].iter().map(|c| c + 0.3 * next()).collect()))
            .collect()
    }

    fn brute(vectors: &[f32], dim: usize, q: &[f32], k: usize, accept: &dyn Fn(u32) -> bool) -> Vec<u32> {
        let mut all: Vec<(u32, f32)> = vectors
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| (i as u32, dot(q, v)))
            .filter(|(i, _)| accept(*i))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        all.into_iter().take(k).map(|x| x.0).collect()
    }

    #[test]
    fn finds_the_true_neighbours_with_and_without_a_filter_and_reloads() {
        let (n, dim, k) = (3000, 32, 10);
        let vectors = clustered(n, dim, 1);
        let queries = clustered(50, dim, 2);
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), &vectors, dim).unwrap();
        let ann = Ann::load(dir.path(), n, dim).unwrap();
        assert_eq!(ann.len(), n);
        let filters: [&dyn Fn(u32) -> bool; 3] = [&|_| true, &|r| r % 10 == 3, &|r| r % 100 == 7];
        for (f, accept) in filters.iter().enumerate() {
            let (mut hit, mut total) = (0, 0);
            for q in queries.chunks_exact(dim) {
                let truth = brute(&vectors, dim, q, k, *accept);
                let found = ann.search(&vectors, q, k, 64, if f == 0 { None } else { Some(*accept) });
                assert!(
                    found.iter().all(|(r, _)| accept(*r)),
                    "filter {f} let a row through"
                );
                assert!(found.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
                hit += found.iter().filter(|(r, _)| truth.contains(r)).count();
                total += truth.len();
            }
            let recall = hit as f64 / total as f64;
            assert!(recall >= 0.95, "filter {f}: recall {recall}");
        }
        // A damaged file is refused, not walked.
        let path = dir.path().join(GRAPH_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        // The first node's link count, past its block.
        let at = 40 + n.div_ceil(4) * 4;
        bytes[at..at + 4].copy_from_slice(&1000u32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let e = Ann::load(dir.path(), n, dim).unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains("graph.bin"), "{e}");
        assert!(Ann::load(dir.path(), n + 1, dim).is_err());
    }

    #[test]
    fn repeated_vectors_build_and_are_found() {
        let dim = 16;
        let mut v = Vec::new();
        for i in 0..20 {
            let x = unit((0..dim).map(|j| ((i * 7 + j * 3) % 11) as f32 + 0.5).collect());
            for _ in 0..10 {
                v.extend_from_slice(&x);
            }
        }
        let ann = Ann::new(build::build(&v, dim, &BuildParams::default(), &|_| {}));
        assert_eq!(ann.len(), 200);
        let hits = ann.search(&v, &v[..dim], 10, 64, None);
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|(_, s)| *s > 0.999), "{hits:?}");
    }

    #[test]
    fn empty_and_single_graphs() {
        let ann = Ann::new(build::build(&[], 4, &BuildParams::default(), &|_| {}));
        assert!(ann.is_empty());
        let one = [1.0, 0.0, 0.0, 0.0];
        let ann = Ann::new(build::build(&one, 4, &BuildParams::default(), &|_| {}));
        assert_eq!(ann.search(&one, &one, 5, 10, None), vec![(0, 1.0)]);
    }
}
