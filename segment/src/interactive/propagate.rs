//! Label propagation over the superpixel graph (a random walker with priors, after Grady, 2005): a
//! class's probability per superpixel minimises
//!
//! ```text
//! Σ_(i~j) w_ij (p_i - p_j)²  +  λ Σ_i n_i (p_i - q_i)²  +  μ Σ_seeds (p_i - y_i)²
//! ```
//!
//! where `q` is the head's probability (the global, feature-space view), the seeds are the clicked
//! superpixels, and `w_ij` is high between adjacent superpixels that look alike (colour and
//! encoder features). A click thus corrects its own neighbourhood even where the probe, fitted to
//! the whole scene, disagrees, and the correction stops at edges.

use std::collections::HashMap;

use super::features::FeatureGrid;
use super::superpixels::Superpixels;

/// The superpixel adjacency graph with its edge weights (CSR).
#[derive(Debug, Clone)]
pub(crate) struct Graph {
    offsets: Vec<usize>,
    neighbours: Vec<u32>,
    weights: Vec<f32>,
    /// Pixels of each superpixel, as a share of the mean (the prior's weight per node).
    size: Vec<f32>,
}

/// How sharply edge weights fall with dissimilarity (in units of the median edge distance).
const BETA: f32 = 3.0;

impl Graph {
    /// The graph of `sp` over an image `w` pixels wide, superpixel descriptors from `grid`'s
    /// cells (`cells_of`) and the image's mean colours `colour` (per superpixel).
    pub fn new(
        sp: &Superpixels,
        w: usize,
        grid: &FeatureGrid,
        cells_of: &[Vec<(usize, usize)>],
        colour: &[[f32; 3]],
    ) -> Self {
        let n = sp.count;
        let h = sp.labels.len() / w.max(1);
        let mut pairs: HashMap<(u32, u32), ()> = HashMap::new();
        for y in 0..h {
            for x in 0..w {
                let a = sp.labels[y * w + x];
                for b in [
                    (x + 1 < w).then(|| sp.labels[y * w + x + 1]),
                    (y + 1 < h).then(|| sp.labels[(y + 1) * w + x]),
                ]
                .into_iter()
                .flatten()
                {
                    if a != b {
                        pairs.insert((a.min(b), a.max(b)), ());
                    }
                }
            }
        }
        // Descriptors: the mean feature vector of each superpixel's cells.
        let d = grid.dim();
        let mut desc = vec![0f32; n * d];
        let mut f = Vec::with_capacity(d);
        for (k, cells) in cells_of.iter().enumerate() {
            for &(c, r) in cells {
                f.clear();
                grid.sample(c, r, &mut f);
                for (o, v) in desc[k * d..(k + 1) * d].iter_mut().zip(&f) {
                    *o += v / cells.len() as f32;
                }
            }
        }
        let mut edges: Vec<(u32, u32, f32, f32)> = pairs
            .into_keys()
            .map(|(a, b)| {
                let (a_, b_) = (a as usize, b as usize);
                let df: f32 = desc[a_ * d..(a_ + 1) * d]
                    .iter()
                    .zip(&desc[b_ * d..(b_ + 1) * d])
                    .map(|(x, y)| (x - y).powi(2))
                    .sum();
                let dc: f32 = (0..3).map(|i| (colour[a_][i] - colour[b_][i]).powi(2)).sum();
                (a, b, df, dc)
            })
            .collect();
        edges.sort_by_key(|e| (e.0, e.1));
        let median = |mut v: Vec<f32>| -> f32 {
            if v.is_empty() {
                return 1.0;
            }
            let m = v.len() / 2;
            v.select_nth_unstable_by(m, f32::total_cmp);
            v[m].max(1e-6)
        };
        let mf = median(edges.iter().map(|e| e.2).collect());
        let mc = median(edges.iter().map(|e| e.3).collect());
        let mut adj: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
        for (a, b, df, dc) in edges {
            let wt = (-BETA * 0.5 * (df / mf + dc / mc)).exp();
            adj[a as usize].push((b, wt));
            adj[b as usize].push((a, wt));
        }
        let mut offsets = Vec::with_capacity(n + 1);
        let (mut neighbours, mut weights) = (Vec::new(), Vec::new());
        offsets.push(0);
        for list in adj {
            for (j, wt) in list {
                neighbours.push(j);
                weights.push(wt);
            }
            offsets.push(neighbours.len());
        }
        let mut counts = vec![0f32; n];
        for &l in &sp.labels {
            counts[l as usize] += 1.0;
        }
        let mean = counts.iter().sum::<f32>() / n.max(1) as f32;
        let size = counts.iter().map(|c| c / mean).collect();
        Self {
            offsets,
            neighbours,
            weights,
            size,
        }
    }

    /// The minimiser above by Jacobi iterations, from `q`: `seeds` are (node, target).
    pub fn solve(&self, q: &[f32], seeds: &[(usize, f32)], lambda: f32, iterations: usize) -> Vec<f32> {
        const MU: f32 = 1e3;
        let n = q.len();
        let mut seed_sum = vec![0f32; n];
        let mut seed_n = vec![0f32; n];
        for &(i, y) in seeds {
            seed_sum[i] += MU * y;
            seed_n[i] += MU;
        }
        let mut p = q.to_vec();
        for &(i, y) in seeds {
            p[i] = y;
        }
        let mut next = p.clone();
        for _ in 0..iterations {
            for i in 0..n {
                let (mut num, mut den) = (
                    lambda * self.size[i] * q[i] + seed_sum[i],
                    lambda * self.size[i] + seed_n[i],
                );
                for e in self.offsets[i]..self.offsets[i + 1] {
                    num += self.weights[e] * p[self.neighbours[e] as usize];
                    den += self.weights[e];
                }
                next[i] = if den > 0.0 { num / den } else { q[i] };
            }
            std::mem::swap(&mut p, &mut next);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain 0 - 1 - 2 - 3 with a weak link between 1 and 2.
    fn chain() -> Graph {
        Graph {
            offsets: vec![0, 1, 3, 5, 6],
            neighbours: vec![1, 0, 2, 1, 3, 2],
            weights: vec![1.0, 1.0, 0.01, 0.01, 1.0, 1.0],
            size: vec![1.0; 4],
        }
    }

    #[test]
    fn a_seed_spreads_to_its_side_of_a_weak_edge() {
        let g = chain();
        let q = vec![0.3; 4];
        let p = g.solve(&q, &[(0, 1.0), (3, 0.0)], 0.01, 500);
        assert!(p[0] > 0.99 && p[1] > 0.8, "{p:?}");
        assert!(p[3] < 0.01 && p[2] < 0.2, "{p:?}");
        // Without seeds the prior stays.
        let p = g.solve(&q, &[], 0.01, 200);
        assert!(p.iter().all(|v| (v - 0.3).abs() < 1e-4), "{p:?}");
    }
}
