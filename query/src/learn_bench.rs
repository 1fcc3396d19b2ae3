//! `nadir bench active-learning`: simulated labelling on an index whose scene names carry the
//! class (UC Merced: `harbor07.jpg`), the class acting as the oracle. Per class: start from 2
//! positives, then rounds of labels chosen by one strategy; after each round, train the probe
//! (`learn::train`, with random unlabelled patches as weak negatives, as the API does) and
//! measure average precision on a held-out 30 % of the patches (fixed per seed, never labelled).
//!
//! Strategies: `uncertainty+diversity` (the 10x-batch most uncertain, then farthest-first in
//! embedding space: UCM has no locations, so diversity is in feature space here, where the
//! service spreads suggestions over H3 cells), `random`, and `nearest` (the unlabelled patches
//! most similar to the mean positive: what "find similar" labelling does).

use std::collections::HashSet;

use nadir_indexer::Index;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::Result;
use crate::learn::{train, ProbeOptions};

/// A labelling strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    UncertaintyDiversity,
    Random,
    Nearest,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [
        Strategy::UncertaintyDiversity,
        Strategy::Random,
        Strategy::Nearest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::UncertaintyDiversity => "uncertainty+diversity",
            Strategy::Random => "random",
            Strategy::Nearest => "nearest",
        }
    }
}

/// Simulation settings.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub start_positives: usize,
    pub rounds: usize,
    pub per_round: usize,
    pub seeds: u64,
    /// Keep topping negatives up with weak ones until real negatives reach max(2 x positives, 50)
    /// (else, as the service does today, weak negatives only while no negative is labelled).
    pub top_up: bool,
}

/// How many weak negatives to draw for `pos` positive and `neg` negative labels.
pub fn weak_negatives_wanted(pos: usize, neg: usize, top_up: bool) -> usize {
    let target = (2 * pos).max(50);
    match (top_up, neg) {
        (false, 0) => target,
        (false, _) => 0,
        (true, _) => target.saturating_sub(neg),
    }
}

/// Mean average precision over classes and seeds after each round, per strategy:
/// `(strategy, labels after the round, mAP)`.
pub type Curve = Vec<(Strategy, usize, f64)>;

/// The class of a scene from its file stem: the name without trailing digits.
fn class_of(index: &Index, row: u32) -> String {
    let stem = index
        .scene_of(row)
        .and_then(|s| s.path.file_stem().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    stem.trim_end_matches(|c: char| c.is_ascii_digit()).to_string()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Average precision of ranking `scores` (higher first) against `truth`.
pub fn average_precision(scores: &[(f32, bool)]) -> f64 {
    let mut s = scores.to_vec();
    s.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total = s.iter().filter(|x| x.1).count();
    if total == 0 {
        return 0.0;
    }
    let (mut hits, mut sum) = (0usize, 0.0f64);
    for (i, (_, t)) in s.iter().enumerate() {
        if *t {
            hits += 1;
            sum += hits as f64 / (i + 1) as f64;
        }
    }
    sum / total as f64
}

/// Runs the simulation for every class and strategy.
pub fn simulate(index: &Index, sim: &Simulation) -> Result<(Vec<String>, Curve)> {
    let n = index.len() as u32;
    let dim = index.dim();
    let classes_of: Vec<String> = (0..n).map(|r| class_of(index, r)).collect();
    let mut classes: Vec<String> = classes_of
        .iter()
        .cloned()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    classes.sort();
    let mut sums = vec![vec![0.0f64; sim.rounds + 1]; Strategy::ALL.len()];
    let mut count = 0usize;
    for class in &classes {
        let truth: Vec<bool> = classes_of.iter().map(|c| c == class).collect();
        for seed in 0..sim.seeds {
            count += 1;
            let mut order: Vec<u32> = (0..n).collect();
            order.shuffle(&mut StdRng::seed_from_u64(seed + 17));
            let held_out: HashSet<u32> = order[..(n as usize * 3 / 10)].iter().copied().collect();
            for (si, strategy) in Strategy::ALL.iter().enumerate() {
                let mut rng = StdRng::seed_from_u64(seed * 1000 + si as u64);
                let mut positives: Vec<u32> = (0..n)
                    .filter(|&r| truth[r as usize] && !held_out.contains(&r))
                    .collect();
                positives.shuffle(&mut StdRng::seed_from_u64(seed));
                let mut labelled: Vec<u32> = positives[..sim.start_positives.min(positives.len())].to_vec();
                for round in 0..=sim.rounds {
                    // Train: labels plus weak negatives (random unlabelled), as the service does.
                    let taken: HashSet<u32> = labelled.iter().copied().collect();
                    let mut pool: Vec<u32> = (0..n)
                        .filter(|r| !taken.contains(r) && !held_out.contains(r))
                        .collect();
                    // The same weak negatives for every strategy at a given seed and round.
                    pool.shuffle(&mut StdRng::seed_from_u64(seed * 7919 + round as u64));
                    let pos = labelled.iter().filter(|&&r| truth[r as usize]).count();
                    let negs = labelled.len() - pos;
                    let want = weak_negatives_wanted(pos, negs, sim.top_up);
                    let weak: Vec<u32> = pool[..want.min(pool.len())].to_vec();
                    let rows: Vec<u32> = labelled.iter().chain(&weak).copied().collect();
                    let x: Vec<f32> = rows.iter().flat_map(|&r| index.vector(r).to_vec()).collect();
                    let y: Vec<bool> = labelled
                        .iter()
                        .map(|&r| truth[r as usize])
                        .chain(weak.iter().map(|_| false))
                        .collect();
                    let probe = train(&x, dim, &y, &ProbeOptions::default())?;
                    let scored: Vec<(u32, f32)> = pool
                        .iter()
                        .map(|&r| (r, probe.probability(index.vector(r))))
                        .collect();
                    let test: Vec<(f32, bool)> = held_out
                        .iter()
                        .map(|&r| (probe.probability(index.vector(r)), truth[r as usize]))
                        .collect();
                    let ap = average_precision(&test);
                    *sums[si].get_mut(round).expect("one sum per round") += ap;
                    if round == sim.rounds {
                        break;
                    }
                    let pick = choose(
                        index,
                        *strategy,
                        &scored,
                        &labelled,
                        &truth,
                        sim.per_round,
                        &mut rng,
                    );
                    labelled.extend(pick);
                }
            }
        }
    }
    let mut curve = Vec::new();
    for (strategy, per_round) in Strategy::ALL.iter().zip(&sums) {
        for (round, total) in per_round.iter().enumerate() {
            curve.push((
                *strategy,
                sim.start_positives + round * sim.per_round,
                total / count as f64,
            ));
        }
    }
    Ok((classes, curve))
}

fn choose(
    index: &Index,
    strategy: Strategy,
    scored: &[(u32, f32)],
    labelled: &[u32],
    truth: &[bool],
    k: usize,
    rng: &mut StdRng,
) -> Vec<u32> {
    match strategy {
        Strategy::Random => {
            let mut rows: Vec<u32> = scored.iter().map(|s| s.0).collect();
            rows.shuffle(rng);
            rows.truncate(k);
            rows
        }
        Strategy::Nearest => {
            let pos: Vec<u32> = labelled.iter().copied().filter(|&r| truth[r as usize]).collect();
            let mut mean = vec![0.0f32; index.dim()];
            for &r in &pos {
                mean.iter_mut().zip(index.vector(r)).for_each(|(m, v)| *m += v);
            }
            let mut rows: Vec<(u32, f32)> = scored
                .iter()
                .map(|&(r, _)| (r, dot(&mean, index.vector(r))))
                .collect();
            rows.sort_by(|a, b| b.1.total_cmp(&a.1));
            rows.into_iter().take(k).map(|r| r.0).collect()
        }
        Strategy::UncertaintyDiversity => {
            let mut pool = scored.to_vec();
            pool.sort_by(|a, b| (a.1 - 0.5).abs().total_cmp(&(b.1 - 0.5).abs()));
            pool.truncate(10 * k);
            // Farthest-first: start from the most uncertain, then the one least similar to any picked.
            let mut picked: Vec<u32> = Vec::with_capacity(k);
            while picked.len() < k && picked.len() < pool.len() {
                let next = pool
                    .iter()
                    .filter(|(r, _)| !picked.contains(r))
                    .map(|&(r, _)| {
                        let closest = picked
                            .iter()
                            .map(|&p| dot(index.vector(p), index.vector(r)))
                            .fold(f32::MIN, f32::max);
                        (r, closest)
                    })
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|x| x.0);
                match next {
                    Some(r) => picked.push(r),
                    None => break,
                }
            }
            picked
        }
    }
}

#[cfg(test)]
mod tests {
    use super::average_precision;

    #[test]
    fn ap_of_perfect_and_reversed_rankings() {
        assert_eq!(average_precision(&[(0.9, true), (0.8, true), (0.1, false)]), 1.0);
        let ap = average_precision(&[(0.9, false), (0.8, true)]);
        assert!((ap - 0.5).abs() < 1e-12);
    }
}
