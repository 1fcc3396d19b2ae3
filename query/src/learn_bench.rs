//! `nadir bench active-learning`: simulated labelling, the class acting as the oracle, on an
//! [`Archive`] of embeddings (an index whose scene names carry the class, or whole scene sets
//! embedded by the CLI). Every strategy of [`crate::acquisition`] is run with the probe the
//! service trains (`learn::train`, with random unlabelled patches as weak negatives).
//!
//! Two tasks:
//! - **balanced** ([`simulate`]): per class, start from 2 positives, rounds of labels; mean
//!   average precision on a held-out 30 % of the archive (fixed per seed, never labelled).
//! - **rare** ([`simulate_rare`]): one target (a set of classes) kept at a chosen prevalence
//!   (its other images are left out of the archive), the rest of the archive as background.
//!   Start from a few positives; after each round: positives found so far (the discovery
//!   curve), recall of the target in the top N of the analyst's ranking (N = the target's
//!   count; labelled positives first, then the unlabelled by probability, labelled negatives
//!   last) and average precision of that ranking over the whole archive.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use nadir_indexer::Index;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::acquisition::{choose, Embeddings, Strategy};
use crate::error::{Error, Result};
use crate::learn::{train, weak_negatives_wanted, Probe, ProbeOptions};

/// Embeddings with a class per row: what the simulated analyst searches.
#[derive(Debug, Clone)]
pub struct Archive {
    pub dim: usize,
    /// Row-major, `dim` per row.
    pub vectors: Vec<f32>,
    pub class: Vec<String>,
}

impl Archive {
    /// An index's vectors, each patch's class being its scene's file stem without trailing
    /// digits (UC Merced: `harbor07.jpg` is `harbor`).
    pub fn from_index(index: &Index) -> Archive {
        let n = index.len() as u32;
        Archive {
            dim: index.dim(),
            vectors: (0..n).flat_map(|r| index.vector(r).to_vec()).collect(),
            class: (0..n).map(|r| class_of(index, r)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.class.len()
    }

    pub fn is_empty(&self) -> bool {
        self.class.is_empty()
    }
}

impl Embeddings for Archive {
    fn vector(&self, row: u32) -> &[f32] {
        let i = row as usize * self.dim;
        &self.vectors[i..i + self.dim]
    }

    fn cell(&self, _row: u32) -> Option<u64> {
        None
    }
}

/// Simulation settings.
#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    pub start_positives: usize,
    pub rounds: usize,
    pub per_round: usize,
    pub seeds: u64,
    /// Draw weak negatives only while no negative is labelled (the service before the
    /// rare-target benchmark), instead of topping them up as the service does
    /// ([`crate::learn::weak_negatives_wanted`]).
    pub no_top_up: bool,
    pub strategies: Vec<Strategy>,
}

/// How many weak negatives the simulation draws for `pos` positive and `neg` negative labels.
fn weak_wanted(pos: usize, neg: usize, no_top_up: bool) -> usize {
    match (no_top_up, neg) {
        (true, 0) => (2 * pos).max(50),
        (true, _) => 0,
        (false, _) => weak_negatives_wanted(pos, neg),
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

/// Average precision of ranking `scores` (higher first) against `truth`.
pub fn average_precision(scores: &[(f32, bool)]) -> f64 {
    let mut s = scores.to_vec();
    s.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked_average_precision(s.iter().map(|x| x.1))
}

/// Average precision of a ranking given as its truth values, best first.
fn ranked_average_precision(ranking: impl Iterator<Item = bool>) -> f64 {
    let (mut hits, mut sum) = (0usize, 0.0f64);
    for (i, t) in ranking.enumerate() {
        if t {
            hits += 1;
            sum += hits as f64 / (i + 1) as f64;
        }
    }
    if hits == 0 {
        0.0
    } else {
        sum / hits as f64
    }
}

/// Trains the probe on `labelled` plus weak negatives drawn from `pool` (shuffled by the caller).
fn probe_of(
    archive: &Archive,
    labelled: &[u32],
    truth: &[bool],
    pool: &[u32],
    no_top_up: bool,
) -> Result<Probe> {
    let pos = labelled.iter().filter(|&&r| truth[r as usize]).count();
    let want = weak_wanted(pos, labelled.len() - pos, no_top_up);
    let weak = &pool[..want.min(pool.len())];
    let rows: Vec<u32> = labelled.iter().chain(weak).copied().collect();
    let x: Vec<f32> = rows.iter().flat_map(|&r| archive.vector(r).to_vec()).collect();
    let y: Vec<bool> = labelled
        .iter()
        .map(|&r| truth[r as usize])
        .chain(weak.iter().map(|_| false))
        .collect();
    train(&x, archive.dim, &y, &ProbeOptions::default())
}

/// Runs the balanced simulation for every class and strategy.
pub fn simulate(archive: &Archive, sim: &Simulation) -> Result<(Vec<String>, Curve)> {
    let n = archive.len() as u32;
    let mut classes: Vec<String> = archive
        .class
        .iter()
        .cloned()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    classes.sort();
    let mut sums = vec![vec![0.0f64; sim.rounds + 1]; sim.strategies.len()];
    let mut count = 0usize;
    for class in &classes {
        let truth: Vec<bool> = archive.class.iter().map(|c| c == class).collect();
        for seed in 0..sim.seeds {
            count += 1;
            let mut order: Vec<u32> = (0..n).collect();
            order.shuffle(&mut StdRng::seed_from_u64(seed + 17));
            let held_out: HashSet<u32> = order[..(n as usize * 3 / 10)].iter().copied().collect();
            for (si, strategy) in sim.strategies.iter().enumerate() {
                let mut positives: Vec<u32> = (0..n)
                    .filter(|&r| truth[r as usize] && !held_out.contains(&r))
                    .collect();
                positives.shuffle(&mut StdRng::seed_from_u64(seed));
                let mut labelled: Vec<u32> = positives[..sim.start_positives.min(positives.len())].to_vec();
                for round in 0..=sim.rounds {
                    let taken: HashSet<u32> = labelled.iter().copied().collect();
                    let mut pool: Vec<u32> = (0..n)
                        .filter(|r| !taken.contains(r) && !held_out.contains(r))
                        .collect();
                    // The same weak negatives for every strategy at a given seed and round.
                    pool.shuffle(&mut StdRng::seed_from_u64(seed * 7919 + round as u64));
                    let probe = probe_of(archive, &labelled, &truth, &pool, sim.no_top_up)?;
                    let test: Vec<(f32, bool)> = held_out
                        .iter()
                        .map(|&r| (probe.probability(archive.vector(r)), truth[r as usize]))
                        .collect();
                    *sums[si].get_mut(round).expect("one sum per round") += average_precision(&test);
                    if round == sim.rounds {
                        break;
                    }
                    let scored: Vec<(u32, f32)> = pool
                        .iter()
                        .map(|&r| (r, probe.probability(archive.vector(r))))
                        .collect();
                    let pos: Vec<u32> = labelled.iter().copied().filter(|&r| truth[r as usize]).collect();
                    let seed = seed * 1000 + si as u64 + 100 * round as u64;
                    let pick = choose(*strategy, archive, &scored, &pos, sim.per_round, seed);
                    labelled.extend(pick.into_iter().map(|p| p.0));
                }
            }
        }
    }
    let mut curve = Vec::new();
    for (strategy, per_round) in sim.strategies.iter().zip(&sums) {
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

/// A rare target: a name and the archive classes that show it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub classes: Vec<String>,
}

impl std::str::FromStr for Target {
    type Err = Error;

    /// `NAME=CLASS[,CLASS...]`.
    fn from_str(s: &str) -> Result<Target> {
        let (name, classes) = s
            .split_once('=')
            .ok_or_else(|| Error::bad(format!("target {s:?}: expected NAME=CLASS[,CLASS...]")))?;
        let classes: Vec<String> = classes
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        if name.trim().is_empty() || classes.is_empty() {
            return Err(Error::bad(format!(
                "target {s:?}: expected NAME=CLASS[,CLASS...]"
            )));
        }
        Ok(Target {
            name: name.trim().to_string(),
            classes,
        })
    }
}

/// One point of a rare-target curve, averaged over seeds.
#[derive(Debug, Clone, Serialize)]
pub struct RarePoint {
    pub target: String,
    pub prevalence: f64,
    /// Target images in the archive.
    pub members: usize,
    pub archive: usize,
    pub strategy: Strategy,
    /// Labels given so far (the start positives included).
    pub labels: usize,
    /// Positives among them.
    pub found: f64,
    /// Recall of the target in the top `members` of the analyst's ranking.
    pub recall: f64,
    /// Average precision of that ranking over the whole archive.
    pub average_precision: f64,
}

/// Most rows of an archive a rare simulation takes (each round scores all of them per
/// strategy).
pub const MAX_ARCHIVE: usize = 2_000_000;

/// Runs the rare-target simulation: every target at every prevalence, seed and strategy. A
/// prevalence that needs more images than the target has is skipped (with a warning) for that
/// target. `progress` is called after each (target, prevalence, seed).
pub fn simulate_rare(
    archive: &Archive,
    targets: &[Target],
    prevalences: &[f64],
    sim: &Simulation,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<RarePoint>> {
    if archive.len() > MAX_ARCHIVE {
        return Err(Error::bad(format!(
            "the archive has {} rows; the simulation takes at most {MAX_ARCHIVE}",
            archive.len()
        )));
    }
    let known: HashSet<&str> = archive.class.iter().map(String::as_str).collect();
    for t in targets {
        if let Some(c) = t.classes.iter().find(|c| !known.contains(c.as_str())) {
            let mut names: Vec<&str> = known.iter().copied().collect();
            names.sort_unstable();
            return Err(Error::bad(format!(
                "target {:?}: no class {c:?} in the archive (classes: {})",
                t.name,
                names.join(", ")
            )));
        }
    }
    if let Some(p) = prevalences.iter().find(|p| !(**p > 0.0 && **p < 0.5)) {
        return Err(Error::bad(format!(
            "prevalence {p}: expected a share in (0, 0.5)"
        )));
    }
    let total = targets.len() * prevalences.len() * sim.seeds as usize;
    let mut done = 0;
    // (target, prevalence, strategy, round) -> sums of found, recall, AP; members; archive size.
    let mut sums: HashMap<(usize, usize, usize, usize), [f64; 3]> = HashMap::new();
    let mut sizes: HashMap<(usize, usize), (usize, usize)> = HashMap::new();
    for (ti, target) in targets.iter().enumerate() {
        let is_member: Vec<bool> = archive.class.iter().map(|c| target.classes.contains(c)).collect();
        let members_all: Vec<u32> = (0..archive.len() as u32)
            .filter(|&r| is_member[r as usize])
            .collect();
        let background: Vec<u32> = (0..archive.len() as u32)
            .filter(|&r| !is_member[r as usize])
            .collect();
        for (pi, &prevalence) in prevalences.iter().enumerate() {
            let want = ((prevalence * background.len() as f64 / (1.0 - prevalence)).round() as usize)
                .max(sim.start_positives + 1);
            if want > members_all.len() {
                tracing::warn!(
                    target = target.name,
                    prevalence,
                    "skipped: the target has {} images, {want} needed beside {} background images",
                    members_all.len(),
                    background.len()
                );
                done += sim.seeds as usize;
                progress(done, total);
                continue;
            }
            sizes.insert((ti, pi), (want, background.len() + want));
            for seed in 0..sim.seeds {
                let mut members = members_all.clone();
                members.shuffle(&mut StdRng::seed_from_u64(seed * 31 + ti as u64));
                members.truncate(want);
                let kept: Vec<u32> = background.iter().chain(&members).copied().collect();
                for (si, &strategy) in sim.strategies.iter().enumerate() {
                    let curve = run_rare(archive, &is_member, &kept, &members, want, strategy, sim, seed)?;
                    for (round, point) in curve.into_iter().enumerate() {
                        let s = sums.entry((ti, pi, si, round)).or_insert([0.0; 3]);
                        s.iter_mut().zip(point).for_each(|(a, b)| *a += b);
                    }
                }
                done += 1;
                progress(done, total);
            }
        }
    }
    let mut out = Vec::new();
    for (ti, target) in targets.iter().enumerate() {
        for (pi, &prevalence) in prevalences.iter().enumerate() {
            let Some(&(members, size)) = sizes.get(&(ti, pi)) else {
                continue;
            };
            for (si, &strategy) in sim.strategies.iter().enumerate() {
                for round in 0..=sim.rounds {
                    let s = sums[&(ti, pi, si, round)];
                    let k = sim.seeds as f64;
                    out.push(RarePoint {
                        target: target.name.clone(),
                        prevalence,
                        members,
                        archive: size,
                        strategy,
                        labels: sim.start_positives + round * sim.per_round,
                        found: s[0] / k,
                        recall: s[1] / k,
                        average_precision: s[2] / k,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// One analyst's session: `[found, recall, AP]` after the start and each round.
#[allow(clippy::too_many_arguments)]
fn run_rare(
    archive: &Archive,
    is_member: &[bool],
    kept: &[u32],
    members: &[u32],
    want: usize,
    strategy: Strategy,
    sim: &Simulation,
    seed: u64,
) -> Result<Vec<[f64; 3]>> {
    let mut labelled: Vec<u32> = members[..sim.start_positives].to_vec();
    let mut taken: HashSet<u32> = labelled.iter().copied().collect();
    let mut out = Vec::with_capacity(sim.rounds + 1);
    for round in 0..=sim.rounds {
        let mut pool: Vec<u32> = kept.iter().copied().filter(|r| !taken.contains(r)).collect();
        pool.shuffle(&mut StdRng::seed_from_u64(seed * 7919 + round as u64));
        let probe = probe_of(archive, &labelled, is_member, &pool, sim.no_top_up)?;
        let mut scored = score_rows(&probe, archive, &pool);
        let found = labelled.iter().filter(|&&r| is_member[r as usize]).count();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let ranking = (0..found)
            .map(|_| true)
            .chain(scored.iter().map(|s| is_member[s.0 as usize]))
            .chain((0..labelled.len() - found).map(|_| false));
        let recall_hits = found
            + scored
                .iter()
                .take(want.saturating_sub(found))
                .filter(|s| is_member[s.0 as usize])
                .count();
        out.push([
            found as f64,
            recall_hits as f64 / want as f64,
            ranked_average_precision(ranking),
        ]);
        if round == sim.rounds {
            break;
        }
        let positives: Vec<u32> = labelled
            .iter()
            .copied()
            .filter(|&r| is_member[r as usize])
            .collect();
        let pick = choose(
            strategy,
            archive,
            &scored,
            &positives,
            sim.per_round,
            seed * 1000 + round as u64,
        );
        for (r, _) in pick {
            taken.insert(r);
            labelled.push(r);
        }
    }
    Ok(out)
}

/// The probe's probability for each row.
fn score_rows(probe: &Probe, archive: &Archive, rows: &[u32]) -> Vec<(u32, f32)> {
    probe.probabilities(|r| archive.vector(r), rows)
}

/// The (target, prevalence) settings of a rare simulation, in the order they were run.
fn settings(points: &[RarePoint]) -> Vec<(&str, f64)> {
    let mut keys: Vec<(&str, f64)> = Vec::new();
    for p in points {
        let k = (p.target.as_str(), p.prevalence);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

/// One setting's curve for one strategy, round by round.
fn curve<'a>(
    points: &'a [RarePoint],
    (target, prevalence): (&str, f64),
    strategy: Strategy,
) -> Vec<&'a RarePoint> {
    points
        .iter()
        .filter(|p| p.target == target && p.prevalence == prevalence && p.strategy == strategy)
        .collect()
}

/// The labels a curve needed to reach `recall` of the target (the first round at or above it;
/// `None` when it never did within the simulated rounds).
fn first_reaching(curve: &[&RarePoint], recall: f64) -> Option<usize> {
    curve
        .iter()
        .filter(|p| p.recall >= recall)
        .map(|p| p.labels)
        .min()
}

/// The labels a strategy needed to reach `recall` of the target, per (target, prevalence).
pub fn labels_to_reach(
    points: &[RarePoint],
    strategy: Strategy,
    recall: f64,
) -> Vec<(String, f64, Option<usize>)> {
    settings(points)
        .into_iter()
        .map(|k| {
            let first = first_reaching(&curve(points, k, strategy), recall);
            (k.0.to_string(), k.1, first)
        })
        .collect()
}

/// Labels given at the first round with at least `labels` (the start positives included).
fn round_at(points: &[RarePoint], labels: usize) -> Option<usize> {
    points.iter().map(|p| p.labels).filter(|&l| l >= labels).min()
}

/// The rare-target results as Markdown: per target and prevalence and strategy, positives found
/// and AP after about 50 labels and the labels needed to reach recall 0.8; then the mean over
/// targets and prevalences, with the found ratio against random and nearest.
pub fn rare_summary(points: &[RarePoint], sim: &Simulation) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let Some(at) = round_at(points, 50).or_else(|| points.iter().map(|p| p.labels).max()) else {
        return s;
    };
    let last = points.iter().map(|p| p.labels).max().unwrap_or(at);
    let _ = writeln!(
        s,
        "Rare targets: {} seeds, {} start positives, {} labels per round; found and AP after {at} labels; \
         labels to recall 0.8 within {last} (\"-\": not reached).\n",
        sim.seeds, sim.start_positives, sim.per_round
    );
    let _ = writeln!(s, "| target | prevalence | members / archive | strategy | found @{at} | AP @{at} | labels to recall 0.8 |");
    let _ = writeln!(s, "|---|---:|---:|---|---:|---:|---:|");
    let mut mean: HashMap<Strategy, (f64, f64, f64, usize)> = HashMap::new();
    let keys = settings(points);
    for &(target, prevalence) in &keys {
        for &strategy in &sim.strategies {
            let rows = curve(points, (target, prevalence), strategy);
            let Some(p) = rows.iter().find(|p| p.labels == at) else {
                continue;
            };
            let reach = first_reaching(&rows, 0.8);
            let _ = writeln!(
                s,
                "| {target} | {} | {} / {} | {} | {:.1} | {:.3} | {} |",
                p.prevalence,
                p.members,
                p.archive,
                strategy.name(),
                p.found,
                p.average_precision,
                reach.map_or("-".to_string(), |l| l.to_string())
            );
            let m = mean.entry(strategy).or_insert((0.0, 0.0, 0.0, 0));
            m.0 += p.found / p.members.min(at) as f64;
            m.1 += p.average_precision;
            // Not reached counts as the last round plus one.
            m.2 += reach.unwrap_or(last + sim.per_round) as f64;
            m.3 += 1;
        }
    }
    let _ = writeln!(
        s,
        "\nMean over {} target x prevalence settings (found as a share of what {at} labels could find; \
         labels to recall 0.8 counting \"not reached\" as {}):\n",
        keys.len(),
        last + sim.per_round
    );
    let _ = writeln!(
        s,
        "| strategy | found share @{at} | x random | x nearest | AP @{at} | labels to recall 0.8 |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    let ratio = |a: f64, b: Option<&(f64, f64, f64, usize)>| {
        b.filter(|b| b.0 > 0.0)
            .map_or("-".to_string(), |b| format!("{:.2}", a / b.0))
    };
    for &strategy in &sim.strategies {
        if let Some(m) = mean.get(&strategy) {
            let k = m.3 as f64;
            let _ = writeln!(
                s,
                "| {} | {:.3} | {} | {} | {:.3} | {:.1} |",
                strategy.name(),
                m.0 / k,
                ratio(m.0, mean.get(&Strategy::Random)),
                ratio(m.0, mean.get(&Strategy::Nearest)),
                m.1 / k,
                m.2 / k
            );
        }
    }
    s
}

/// What scoring a whole archive costs, as the service does after each label.
#[derive(Debug, Clone, Copy)]
pub struct ScoringTime {
    /// The probe over every row, one pass (best of the repeats).
    pub score: Duration,
    /// Choosing 10 suggestions from those scores with the default strategy (best of the repeats).
    pub choose: Duration,
}

/// Times scoring every row of a synthetic archive of `n` x `dim` unit vectors with a probe
/// trained on 100 labels, then choosing 10 suggestions ([`Strategy::Likely`]), best of
/// `repeats`.
pub fn time_scoring(n: usize, dim: usize, repeats: usize) -> Result<ScoringTime> {
    let mut rng = StdRng::seed_from_u64(5);
    let mut vectors = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let v: Vec<f32> = (0..dim)
            .map(|_| rand::Rng::random::<f32>(&mut rng) - 0.5)
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        vectors.extend(v.iter().map(|x| x / norm));
    }
    let archive = Archive {
        dim,
        vectors,
        class: Vec::new(),
    };
    let x: Vec<f32> = archive.vectors[..100 * dim].to_vec();
    let y: Vec<bool> = (0..100).map(|i| i % 3 == 0).collect();
    let probe = train(&x, dim, &y, &ProbeOptions::default())?;
    let rows: Vec<u32> = (100..n as u32).collect();
    let positives: Vec<u32> = (0..100).filter(|i| i % 3 == 0).collect();
    let mut best = ScoringTime {
        score: Duration::MAX,
        choose: Duration::MAX,
    };
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let scored = score_rows(&probe, &archive, &rows);
        best.score = best.score.min(t.elapsed());
        let t = Instant::now();
        let picked = choose(Strategy::Likely, &archive, &scored, &positives, 10, 0);
        best.choose = best.choose.min(t.elapsed());
        debug_assert_eq!(picked.len(), 10.min(rows.len()));
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ap_of_perfect_and_reversed_rankings() {
        assert_eq!(average_precision(&[(0.9, true), (0.8, true), (0.1, false)]), 1.0);
        let ap = average_precision(&[(0.9, false), (0.8, true)]);
        assert!((ap - 0.5).abs() < 1e-12);
    }

    #[test]
    fn targets_parse_and_refuse_what_is_not_one() {
        let t: Target = "tanks=rsicd/storagetanks, ucm/storagetanks".parse().unwrap();
        assert_eq!(t.name, "tanks");
        assert_eq!(t.classes, ["rsicd/storagetanks", "ucm/storagetanks"]);
        assert!("tanks".parse::<Target>().is_err());
        assert!("tanks=".parse::<Target>().is_err());
        assert!("=a".parse::<Target>().is_err());
    }

    /// Two well-separated clusters: a rare one (the target) and a large background.
    fn clustered(members: usize, background: usize) -> Archive {
        let mut rng = StdRng::seed_from_u64(1);
        let dim = 8;
        let mut vectors = Vec::new();
        let mut class = Vec::new();
        for i in 0..members + background {
            let target = i < members;
            let mut v: Vec<f32> = (0..dim)
                .map(|_| 0.3 * rand::Rng::sample::<f32, _>(&mut rng, rand_distr::StandardNormal))
                .collect();
            v[usize::from(!target)] += 3.0;
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            vectors.extend(v.iter().map(|x| x / norm));
            class.push(if target { "rare" } else { "other" }.to_string());
        }
        Archive { dim, vectors, class }
    }

    #[test]
    fn rare_simulation_finds_a_separable_target_and_counts_labels() {
        let archive = clustered(60, 2000);
        let sim = Simulation {
            start_positives: 2,
            rounds: 3,
            per_round: 10,
            seeds: 2,
            no_top_up: false,
            strategies: vec![Strategy::Likely, Strategy::Random],
        };
        let target: Target = "rare=rare".parse().unwrap();
        let mut calls = 0;
        let points = simulate_rare(&archive, &[target], &[0.01], &sim, &mut |_, _| calls += 1).unwrap();
        assert_eq!(calls, 2);
        // 1 % of 2000 background images: 20 members.
        assert!(points.iter().all(|p| p.members == 20 && p.archive == 2020));
        let at = |s: Strategy, labels: usize| {
            points
                .iter()
                .find(|p| p.strategy == s && p.labels == labels)
                .unwrap()
                .clone()
        };
        assert_eq!(at(Strategy::Likely, 2).found, 2.0);
        // Greedy labelling of a separable target finds 10 per round; random almost none.
        assert_eq!(at(Strategy::Likely, 32).found, 20.0);
        assert!(at(Strategy::Random, 32).found < 5.0);
        assert!(at(Strategy::Likely, 32).recall > 0.99);
        let reach = labels_to_reach(&points, Strategy::Likely, 0.8);
        assert_eq!(reach.len(), 1);
        assert!(reach[0].2.is_some());
    }

    #[test]
    fn rare_simulation_refuses_unknown_classes_and_impossible_prevalences() {
        let archive = clustered(10, 100);
        let sim = Simulation {
            start_positives: 2,
            rounds: 1,
            per_round: 5,
            seeds: 1,
            no_top_up: true,
            strategies: vec![Strategy::Random],
        };
        let err = |t: &str, p: f64| {
            simulate_rare(&archive, &[t.parse().unwrap()], &[p], &sim, &mut |_, _| {})
                .unwrap_err()
                .to_string()
        };
        assert!(err("x=nope", 0.01).contains("no class \"nope\""));
        let skipped = simulate_rare(
            &archive,
            &["x=rare".parse().unwrap()],
            &[0.3],
            &sim,
            &mut |_, _| {},
        );
        assert!(skipped.unwrap().is_empty(), "10 images cannot make 30 %");
        assert!(err("x=rare", 0.0).contains("prevalence"));
    }
}
