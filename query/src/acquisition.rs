//! What to label next: the acquisition strategies of active learning, over any embeddings (an
//! index, or the benchmark's archive). The service (`/api/learn/{class}/suggest`) and
//! `nadir bench active-learning` call the same [`choose`].
//!
//! The default, [`Strategy::Likely`], was chosen on the rare-target benchmark
//! (`docs/bench/active-learning-rare.md`: 8 targets at 0.1 to 1 % of a 38k-image archive, 3
//! seeds): labelling the most probable unlabelled patches (greedy active search) found more
//! positives after 50 labels than labelling the nearest to the positives, and reached recall
//! 0.8 with fewer labels than nearest or random. Mixing in uncertain patches (a fixed 70/30,
//! 80/20 or 90/10 share, or a share following the recent hit rate) and spreading the likely
//! ones out each found fewer positives; the 70/30 and 80/20 mixes reached recall 0.8 sooner,
//! with 86 and 90 % of the finds. On balanced classes (UC Merced, AID) it beats random at every round. The
//! probe behind it must keep a background of weak negatives (`learn`): without it, its
//! first negative labels leave it with no idea of the rest of the archive.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most unlabelled candidates the diversity stage looks at, per suggestion asked for, in
/// feature space (farthest-first)...
pub const POOL_PER_SUGGESTION: usize = 10;
/// ...and over H3 cells (one per cell), at least [`MIN_CELL_POOL`].
pub const CELL_POOL_PER_SUGGESTION: usize = 50;
pub const MIN_CELL_POOL: usize = 2000;
/// Share of a [`Strategy::LikelyUncertain`] batch taken by the most probable patches (the
/// rest are uncertain ones, spread out).
pub const MIXED_LIKELY_SHARE: f64 = 0.7;

/// A labelling strategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The most probable positives (the default): finds the most of a rare class per label.
    #[default]
    Likely,
    /// 70 % the most probable positives, 30 % uncertain ones spread out (benchmark baseline).
    LikelyUncertain,
    /// Probability nearest 0.5, spread over space (or feature space): the labels that teach the
    /// probe most on a balanced task.
    Uncertain,
    /// Probability nearest 0.5, no spreading (benchmark baseline).
    UncertainOnly,
    /// Most similar to the mean labelled positive: what "find similar" labelling does
    /// (benchmark baseline).
    Nearest,
    /// Uniformly at random (benchmark baseline).
    Random,
}

impl Strategy {
    pub const ALL: [Strategy; 6] = [
        Strategy::Likely,
        Strategy::LikelyUncertain,
        Strategy::Uncertain,
        Strategy::UncertainOnly,
        Strategy::Nearest,
        Strategy::Random,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Likely => "likely",
            Strategy::LikelyUncertain => "likely+uncertain",
            Strategy::Uncertain => "uncertainty+diversity",
            Strategy::UncertainOnly => "uncertainty",
            Strategy::Nearest => "nearest",
            Strategy::Random => "random",
        }
    }

    /// The strategy of a benchmark name (`name()`), or `None`.
    pub fn from_name(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The embeddings suggestions are drawn from.
pub trait Embeddings {
    /// The (L2-normalised) embedding of a row.
    fn vector(&self, row: u32) -> &[f32];
    /// The cell that keeps suggestions apart (an H3 cell a few levels above the finest one), or
    /// `None` without georeference: diversity is then in feature space.
    fn cell(&self, row: u32) -> Option<u64>;
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Picks `n` rows to label from `scored` (every unlabelled candidate with the probe's
/// probability), given the labelled positives. Ties break by row, so the answer is
/// deterministic; `seed` drives [`Strategy::Random`] only.
pub fn choose(
    strategy: Strategy,
    emb: &impl Embeddings,
    scored: &[(u32, f32)],
    positives: &[u32],
    n: usize,
    seed: u64,
) -> Vec<(u32, f32)> {
    let n = n.min(scored.len());
    if n == 0 {
        return Vec::new();
    }
    // The `k` best by `key` (smallest first), sorted: a linear selection, then a sort of `k`.
    let by = |key: &dyn Fn(&(u32, f32)) -> f32, k: usize| {
        let order = |a: &(u32, f32), b: &(u32, f32)| key(a).total_cmp(&key(b)).then(a.0.cmp(&b.0));
        let mut v = scored.to_vec();
        if k < v.len() {
            v.select_nth_unstable_by(k, order);
            v.truncate(k);
        }
        v.sort_by(order);
        v
    };
    let pool = |k: usize| match scored.first() {
        Some(&(r, _)) if emb.cell(r).is_some() => (CELL_POOL_PER_SUGGESTION * k).max(MIN_CELL_POOL),
        _ => POOL_PER_SUGGESTION * k,
    };
    let uncertainty = |s: &(u32, f32)| (s.1 - 0.5).abs();
    match strategy {
        Strategy::Random => {
            let mut v = scored.to_vec();
            v.shuffle(&mut StdRng::seed_from_u64(seed));
            v.truncate(n);
            v
        }
        Strategy::Likely => by(&|s| -s.1, n),
        Strategy::UncertainOnly => by(&uncertainty, n),
        Strategy::Uncertain => spread(emb, &by(&uncertainty, pool(n)), n),
        Strategy::Nearest => {
            let dim = positives.first().map_or(0, |&r| emb.vector(r).len());
            let mut mean = vec![0.0f32; dim];
            for &r in positives {
                mean.iter_mut().zip(emb.vector(r)).for_each(|(m, v)| *m += v);
            }
            let mut v: Vec<(u32, f32, f32)> = scored
                .iter()
                .map(|&(r, p)| (r, p, dot(&mean, emb.vector(r))))
                .collect();
            v.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
            v.into_iter().take(n).map(|(r, p, _)| (r, p)).collect()
        }
        Strategy::LikelyUncertain => {
            let likely_n = if n == 1 {
                1
            } else {
                ((n as f64 * MIXED_LIKELY_SHARE).round() as usize).clamp(1, n - 1)
            };
            let mut picked = by(&|s| -s.1, likely_n);
            let taken: HashSet<u32> = picked.iter().map(|p| p.0).collect();
            let want = n - picked.len();
            let rest: Vec<(u32, f32)> = by(&uncertainty, pool(want) + likely_n)
                .into_iter()
                .filter(|s| !taken.contains(&s.0))
                .collect();
            picked.extend(spread(emb, &rest[..pool(want).min(rest.len())], want));
            picked
        }
    }
}

/// `n` rows from `pool` (best first) kept apart: at most one per cell when the rows have cells
/// (then, when the cells run out, the best of the rest); farthest-first in feature space (from
/// the best) when they have none.
pub fn spread(emb: &impl Embeddings, pool: &[(u32, f32)], n: usize) -> Vec<(u32, f32)> {
    let n = n.min(pool.len());
    let mut picked: Vec<(u32, f32)> = Vec::with_capacity(n);
    if pool.iter().any(|&(r, _)| emb.cell(r).is_some()) {
        let mut used = HashSet::new();
        let mut taken = HashSet::new();
        for &(r, p) in pool {
            if picked.len() == n {
                break;
            }
            if emb.cell(r).is_none_or(|c| used.insert(c)) {
                picked.push((r, p));
                taken.insert(r);
            }
        }
        for &(r, p) in pool {
            if picked.len() == n {
                break;
            }
            if !taken.contains(&r) {
                picked.push((r, p));
            }
        }
        return picked;
    }
    // Farthest-first: each next row is the one least similar to any picked one.
    let mut closest = vec![f32::MIN; pool.len()];
    let mut used = vec![false; pool.len()];
    let mut next = 0usize;
    while picked.len() < n {
        used[next] = true;
        let (r, p) = pool[next];
        picked.push((r, p));
        let v = emb.vector(r);
        let mut best: Option<(usize, f32)> = None;
        for (i, &(q, _)) in pool.iter().enumerate() {
            if used[i] {
                continue;
            }
            closest[i] = closest[i].max(dot(v, emb.vector(q)));
            if best.is_none_or(|(_, c)| closest[i] < c) {
                best = Some((i, closest[i]));
            }
        }
        match best {
            Some((i, _)) => next = i,
            None => break,
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows on the unit circle at the given angles (degrees), with optional cells.
    struct Circle {
        v: Vec<[f32; 2]>,
        cells: Option<Vec<u64>>,
    }

    impl Circle {
        fn new(angles: &[f32], cells: Option<Vec<u64>>) -> Self {
            let v = angles
                .iter()
                .map(|a| [a.to_radians().cos(), a.to_radians().sin()])
                .collect();
            Circle { v, cells }
        }
    }

    impl Embeddings for Circle {
        fn vector(&self, row: u32) -> &[f32] {
            &self.v[row as usize]
        }
        fn cell(&self, row: u32) -> Option<u64> {
            self.cells.as_ref().map(|c| c[row as usize])
        }
    }

    #[test]
    fn likely_uncertain_and_nearest_order_as_documented() {
        let emb = Circle::new(&[0.0, 10.0, 90.0, 180.0], None);
        let scored = [(1, 0.9), (2, 0.55), (3, 0.15)];
        let rows = |v: Vec<(u32, f32)>| v.into_iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(rows(choose(Strategy::Likely, &emb, &scored, &[0], 2, 0)), [1, 2]);
        assert_eq!(
            rows(choose(Strategy::UncertainOnly, &emb, &scored, &[0], 2, 0)),
            [2, 3]
        );
        assert_eq!(rows(choose(Strategy::Nearest, &emb, &scored, &[0], 2, 0)), [1, 2]);
        assert_eq!(choose(Strategy::Random, &emb, &scored, &[0], 5, 7).len(), 3);
    }

    #[test]
    fn the_mix_takes_likely_and_spread_uncertain_rows() {
        // Rows 1..=7 likely; 8.. uncertain, two near-duplicates (8, 9) and one far (10).
        let mut angles = vec![0.0; 8];
        angles.extend([100.0, 101.0, 200.0]);
        let emb = Circle::new(&angles, None);
        let mut scored: Vec<(u32, f32)> = (1..=7).map(|r| (r, 0.99 - r as f32 * 0.01)).collect();
        scored.extend([(8, 0.5), (9, 0.51), (10, 0.45)]);
        let picked: Vec<u32> = choose(Strategy::LikelyUncertain, &emb, &scored, &[0], 4, 0)
            .into_iter()
            .map(|x| x.0)
            .collect();
        // 0.7 of 4 rounds to 3 likely, then the most uncertain.
        assert_eq!(picked, [1, 2, 3, 8]);
        let picked: Vec<u32> = choose(Strategy::LikelyUncertain, &emb, &scored, &[0], 10, 0)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(picked.len(), 10);
        assert_eq!(picked.iter().collect::<HashSet<_>>().len(), 10, "no row twice");
    }

    #[test]
    fn spread_keeps_rows_apart_in_cells_or_feature_space() {
        let pool = [(0, 0.5), (1, 0.5), (2, 0.5)];
        // Feature space: rows 0 and 1 nearly the same, 2 opposite.
        let emb = Circle::new(&[0.0, 1.0, 180.0], None);
        let picked: Vec<u32> = spread(&emb, &pool, 2).into_iter().map(|x| x.0).collect();
        assert_eq!(picked, [0, 2]);
        // Cells: rows 0 and 1 share one.
        let emb = Circle::new(&[0.0, 90.0, 180.0], Some(vec![5, 5, 6]));
        let picked: Vec<u32> = spread(&emb, &pool, 2).into_iter().map(|x| x.0).collect();
        assert_eq!(picked, [0, 2]);
        // More wanted than cells: the best of the rest.
        let picked: Vec<u32> = spread(&emb, &pool, 3).into_iter().map(|x| x.0).collect();
        assert_eq!(picked, [0, 2, 1]);
    }
}
