//! Ordering by score: [`OrdF32`], the total order on `f32` the graph's heaps use, and [`TopK`],
//! the best `k` (row, score) of a stream, which exact scans and the benchmark's ground truth share.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// An `f32` ordered by `total_cmp`, so it can key a heap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrdF32(pub f32);

impl Eq for OrdF32 {}

impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF32 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The `k` highest-scoring rows pushed so far; among equal scores the first pushed stays.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    /// Worst kept on top.
    heap: BinaryHeap<Reverse<(OrdF32, Reverse<u32>)>>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// Offers `row` with `score`. Most rows lose to the k-th best: they are compared before the
    /// heap is touched.
    #[inline]
    pub fn push(&mut self, row: u32, score: f32) {
        if self.heap.len() < self.k {
            self.heap.push(Reverse((OrdF32(score), Reverse(row))));
        } else if self.heap.peek().is_some_and(|Reverse((w, _))| score > w.0) {
            self.heap.pop();
            self.heap.push(Reverse((OrdF32(score), Reverse(row))));
        }
    }

    /// The kept (row, score), best first (equal scores: lower row first).
    pub fn into_sorted(self) -> Vec<(u32, f32)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse((s, Reverse(r)))| (r, s.0))
            .collect()
    }

    /// The kept rows, best first.
    pub fn into_rows(self) -> Vec<u32> {
        self.into_sorted().into_iter().map(|(r, _)| r).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_k_best_first() {
        let mut top = TopK::new(3);
        for (r, s) in [(0, 0.5), (1, 0.9), (2, 0.1), (3, 0.9), (4, 0.7), (5, 0.9)] {
            top.push(r, s);
        }
        assert_eq!(top.into_sorted(), vec![(1, 0.9), (3, 0.9), (5, 0.9)]);
        let mut top = TopK::new(2);
        for (r, s) in [(7, 0.2), (8, 0.4), (9, 0.3)] {
            top.push(r, s);
        }
        assert_eq!(top.into_rows(), vec![8, 9]);
        let mut none = TopK::new(0);
        none.push(1, 1.0);
        assert!(none.into_sorted().is_empty());
    }
}
