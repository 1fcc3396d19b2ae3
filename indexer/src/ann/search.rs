//! Walking the graph: the greedy descent through the upper levels and the best-first beam search
//! of one level, shared by insertion and queries. Distances are `-a.b` (smaller is closer), so no
//! clamping is needed when rounding makes a unit vector's `a.a` exceed 1.
//!
//! A filter restricts what the beam returns, not where it walks: rejected nodes still route the
//! search, as in hnswlib, so a filter keeping 10 % of the rows still finds its best matches.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::distance::{dot, dot_rows, prefetch};
use super::graph::Graph;
use super::topk::OrdF32 as Dist;

/// Nodes seen by the current walk: a stamp per node, so clearing is a counter increment.
#[derive(Debug, Default)]
struct Visited {
    marks: Vec<u16>,
    stamp: u16,
}

impl Visited {
    fn start(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.marks.fill(0);
            self.stamp = 1;
        }
    }

    /// Marks `node`; false when it was already marked.
    #[inline]
    fn insert(&mut self, node: u32) -> bool {
        let m = &mut self.marks[node as usize];
        let new = *m != self.stamp;
        *m = self.stamp;
        new
    }
}

/// The buffers of one walk, reused across walks by one thread.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    visited: Visited,
    candidates: BinaryHeap<Reverse<(Dist, u32)>>,
    found: BinaryHeap<(Dist, u32)>,
    links: Vec<u32>,
    /// Scores of `links`.
    scores: Vec<f32>,
}

impl Graph {
    /// The distance from `q` to `node`.
    #[inline]
    pub(super) fn dist(&self, vectors: &[f32], q: &[f32], node: u32) -> f32 {
        -dot(q, self.vector(vectors, node))
    }

    /// Greedy descent at `level` from `(node, its distance)` to a local minimum.
    pub(super) fn greedy(
        &self,
        vectors: &[f32],
        q: &[f32],
        mut at: (u32, f32),
        level: u8,
        s: &mut Scratch,
    ) -> (u32, f32) {
        loop {
            let mut moved = false;
            self.neighbours(at.0, level, &mut s.links);
            dot_rows(q, vectors, &s.links, &mut s.scores);
            for (&e, &score) in s.links.iter().zip(&s.scores) {
                let d = -score;
                if d < at.1 {
                    at = (e, d);
                    moved = true;
                }
            }
            if !moved {
                return at;
            }
        }
    }

    /// Best-first search of `level` from `entries`: the `ef` closest accepted nodes, closest first.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn search_level(
        &self,
        vectors: &[f32],
        q: &[f32],
        entries: &[(u32, f32)],
        ef: usize,
        level: u8,
        accept: Option<&dyn Fn(u32) -> bool>,
        s: &mut Scratch,
    ) -> Vec<(u32, f32)> {
        let ok = |n: u32| accept.is_none_or(|f| f(n));
        s.visited.start(self.len());
        s.candidates.clear();
        s.found.clear();
        for &(e, d) in entries {
            if s.visited.insert(e) {
                s.candidates.push(Reverse((Dist(d), e)));
                if ok(e) {
                    s.found.push((Dist(d), e));
                }
            }
        }
        while s.found.len() > ef {
            s.found.pop();
        }
        let mut bound = match s.found.peek() {
            Some(&(d, _)) if s.found.len() >= ef => d.0,
            _ => f32::INFINITY,
        };
        while let Some(Reverse((Dist(d), c))) = s.candidates.pop() {
            if d > bound {
                break;
            }
            // The next candidate's links, while this one's neighbours are scored.
            if let Some(Reverse((_, next))) = s.candidates.peek() {
                prefetch(self.block(*next, level));
            }
            self.neighbours(c, level, &mut s.links);
            let visited = &mut s.visited;
            s.links.retain(|&e| visited.insert(e));
            dot_rows(q, vectors, &s.links, &mut s.scores);
            for (&e, &score) in s.links.iter().zip(&s.scores) {
                let de = -score;
                if de < bound {
                    s.candidates.push(Reverse((Dist(de), e)));
                    if ok(e) {
                        s.found.push((Dist(de), e));
                        if s.found.len() > ef {
                            s.found.pop();
                        }
                        if s.found.len() >= ef {
                            bound = s.found.peek().map_or(f32::INFINITY, |x| x.0 .0);
                        }
                    }
                }
            }
        }
        let mut out: Vec<(u32, f32)> = s.found.drain().map(|(d, n)| (n, d.0)).collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        out
    }

    /// The `ef` closest accepted nodes to `q` (closest first, with their distances): greedy
    /// descent from the entry to level 1, then the beam at level 0.
    pub(super) fn search(
        &self,
        vectors: &[f32],
        q: &[f32],
        ef: usize,
        accept: Option<&dyn Fn(u32) -> bool>,
        s: &mut Scratch,
    ) -> Vec<(u32, f32)> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut at = (self.entry, self.dist(vectors, q, self.entry));
        for level in (1..=self.top).rev() {
            at = self.greedy(vectors, q, at, level, s);
        }
        self.search_level(vectors, q, &[at], ef, 0, accept, s)
    }
}
