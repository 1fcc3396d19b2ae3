//! The HNSW graph itself (Malkov and Yashunin, 2018): a level per node and, on every level, a
//! fixed-size block of neighbour links per node, stored flat (`u32` row numbers, no per-link
//! allocation). Links are atomics so threads insert concurrently while others read (relaxed loads
//! compile to plain loads); each block starts with its count. Vectors are not stored here: every
//! method takes the index's row-major embeddings, so the graph costs about
//! `4 * (2M + 1) + 5` bytes per node.

use std::sync::atomic::{AtomicU32, Ordering};

/// Marks a node with no upper-level block.
pub(super) const NO_UPPER: u32 = u32::MAX;
/// Highest level a node may draw.
pub(super) const MAX_LEVEL: u8 = 16;

/// An HNSW graph over `n` rows.
pub struct Graph {
    pub(super) dim: usize,
    /// Links per node on levels 1 and up.
    pub(super) m: usize,
    /// Links per node on level 0 (2M).
    pub(super) m0: usize,
    /// The node search starts from: one of the highest level.
    pub(super) entry: u32,
    /// The entry's level.
    pub(super) top: u8,
    pub(super) levels: Vec<u8>,
    /// `n` blocks of `1 + m0`: count, then ids.
    pub(super) links0: Vec<AtomicU32>,
    /// Per node, the offset of its first upper block in `upper`, or [`NO_UPPER`].
    pub(super) upper_at: Vec<u32>,
    /// Blocks of `1 + m`, one per node and level above 0.
    pub(super) upper: Vec<AtomicU32>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("nodes", &self.len())
            .field("dim", &self.dim)
            .field("m", &self.m)
            .field("entry", &self.entry)
            .field("top", &self.top)
            .finish()
    }
}

impl Graph {
    /// An unlinked graph whose nodes have the given levels.
    pub(super) fn empty(dim: usize, m: usize, levels: Vec<u8>) -> Self {
        let m0 = 2 * m;
        let mut upper_at = Vec::with_capacity(levels.len());
        let mut upper_len = 0usize;
        for &l in &levels {
            if l == 0 {
                upper_at.push(NO_UPPER);
            } else {
                upper_at.push(upper_len as u32);
                upper_len += l as usize * (1 + m);
            }
        }
        let zeros = |len: usize| (0..len).map(|_| AtomicU32::new(0)).collect::<Vec<_>>();
        Graph {
            dim,
            m,
            m0,
            entry: 0,
            top: levels.first().copied().unwrap_or(0),
            links0: zeros(levels.len() * (1 + m0)),
            upper: zeros(upper_len),
            upper_at,
            levels,
        }
    }

    /// Nodes in the graph.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Link capacity at `level`.
    pub(super) fn capacity(&self, level: u8) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.m
        }
    }

    /// The link block of `node` at `level` (the node must reach that level).
    pub(super) fn block(&self, node: u32, level: u8) -> &[AtomicU32] {
        let node = node as usize;
        if level == 0 {
            let w = 1 + self.m0;
            &self.links0[node * w..(node + 1) * w]
        } else {
            let w = 1 + self.m;
            let at = self.upper_at[node] as usize + (level as usize - 1) * w;
            &self.upper[at..at + w]
        }
    }

    /// Reads the links of `node` at `level` into `out`.
    #[inline]
    pub(super) fn neighbours(&self, node: u32, level: u8, out: &mut Vec<u32>) {
        let b = self.block(node, level);
        let count = (b[0].load(Ordering::Acquire) as usize).min(b.len() - 1);
        out.clear();
        out.extend(b[1..=count].iter().map(|x| x.load(Ordering::Relaxed)));
    }

    /// Replaces the links of `node` at `level` (the caller holds the node's lock while building).
    pub(super) fn set_neighbours(&self, node: u32, level: u8, ids: &[u32]) {
        let b = self.block(node, level);
        debug_assert!(ids.len() < b.len());
        for (slot, &id) in b[1..].iter().zip(ids) {
            slot.store(id, Ordering::Relaxed);
        }
        b[0].store(ids.len() as u32, Ordering::Release);
    }

    /// The embedding of `node`.
    #[inline]
    pub(super) fn vector<'v>(&self, vectors: &'v [f32], node: u32) -> &'v [f32] {
        let d = self.dim;
        &vectors[node as usize * d..(node as usize + 1) * d]
    }

    /// Bytes the graph holds.
    pub fn memory_bytes(&self) -> usize {
        self.levels.len() + 4 * (self.links0.len() + self.upper_at.len() + self.upper.len())
    }
}
