//! Active learning on the labels of a class: a linear probe on the embeddings, what to label
//! next, and how good the probe is.
//!
//! - The probe is L2-regularised logistic regression (L-BFGS on standardised features, class-
//!   balanced sample weights, `l2 = 1 / n` by default, i.e. scikit-learn's `C = 1`). It trains
//!   on thousands of labels in milliseconds. Its outputs are probabilities, calibrated for a
//!   balanced prior (the class weights make positives and negatives count equally): 0.5 is "as
//!   likely as not" whatever the share of positives among the labels.
//! - Unlabelled patches are not assumed negative, but a background of them is: randomly drawn
//!   unlabelled patches of the index are *weak negatives* until the negatives number twice the
//!   positives, at least 50 (deterministic per class), reported as such; they are not excluded
//!   from suggestions.
//! - Suggestions ([`crate::acquisition`]): `likely` (the default) the most probable positives,
//!   which find the most of a class per label; `uncertain` the patches whose probability is
//!   nearest 0.5 with spatial diversity (at most one per H3 cell three levels above the index's
//!   finest resolution, from a pool of the most uncertain, so they are not the neighbours of one
//!   spot). Labelled patches are never suggested.
//! - Cross-validation is spatial: the labelled patches are grouped by their H3 cell three levels
//!   above their finest resolution (by scene without georeference), whole groups go to one of
//!   up to 5 folds, each fold is predicted by a probe trained on the others; precision and recall
//!   at 0.5 are counted over all held-out labels.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use nadir_indexer::{Index, PatchId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::acquisition::{choose, Embeddings, Strategy};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::geofilter::GeoFilter;
use crate::hit::Hit;
use crate::labels::check_class;

/// Most folds of a cross-validation.
pub const MAX_FOLDS: usize = 5;
/// Levels above the finest H3 resolution of the groups of cross-validation and of the cells
/// that keep suggestions apart.
pub const COARSEN: usize = 3;
/// Most suggestions in one answer.
pub const MAX_SUGGESTIONS: usize = 1000;
/// Most patches `scores` answers for at once.
pub const MAX_SCORES: usize = 200_000;
/// Most patches [`probable`] answers (GeoJSON and exports above a probability).
pub const MAX_PROBABLE: usize = 50_000;

/// Settings of the probe's training.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOptions {
    /// L2 penalty on the weights (of standardised features); `None`: `1 / n`.
    pub l2: Option<f64>,
    /// Weigh classes so that positives and negatives count equally.
    pub balanced: bool,
    pub max_iterations: usize,
    /// Stop when the gradient's largest component is below this.
    pub tolerance: f64,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            l2: None,
            balanced: true,
            max_iterations: 500,
            tolerance: 1e-6,
        }
    }
}

/// A trained linear probe: `p(x) = sigmoid(w . x + b)` on raw embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub weights: Vec<f32>,
    pub bias: f32,
    /// L-BFGS iterations used.
    pub iterations: usize,
    /// Whether the gradient tolerance was reached.
    pub converged: bool,
    /// The penalty used.
    pub l2: f64,
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + e^z)` without overflow.
fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

fn dot64(a: &[f64], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * f64::from(*y)).sum()
}

/// `a . b` with eight independent partial sums (vectorises; a single running sum does not).
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Rows per thread below which scoring stays on one thread.
const ROWS_PER_THREAD: usize = 20_000;

impl Probe {
    /// The probability that `x` shows the class.
    pub fn probability(&self, x: &[f32]) -> f32 {
        let z = dot8(&self.weights, x) + self.bias;
        sigmoid(f64::from(z)) as f32
    }

    /// The probability of each row (`vector(row)` its embedding), on every core for many rows:
    /// one pass over the vectors.
    pub fn probabilities<'a>(
        &self,
        vector: impl Fn(u32) -> &'a [f32] + Sync,
        rows: &[u32],
    ) -> Vec<(u32, f32)> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(rows.len().div_ceil(ROWS_PER_THREAD))
            .max(1);
        let score = |chunk: &[u32]| -> Vec<(u32, f32)> {
            chunk.iter().map(|&r| (r, self.probability(vector(r)))).collect()
        };
        if threads == 1 {
            return score(rows);
        }
        let per = rows.len().div_ceil(threads);
        std::thread::scope(|s| {
            let parts: Vec<_> = rows.chunks(per).map(|c| s.spawn(move || score(c))).collect();
            parts
                .into_iter()
                .flat_map(|h| h.join().expect("a scoring thread does not panic"))
                .collect()
        })
    }
}

/// The regularised, weighted logistic loss of standardised data and its gradient.
struct Objective<'a> {
    x: &'a [f32],
    dim: usize,
    y: &'a [f64],
    c: &'a [f64],
    l2: f64,
}

impl Objective<'_> {
    /// Loss at `theta` (`dim` weights then the bias), gradient into `grad`.
    fn eval(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let d = self.dim;
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut loss = 0.0;
        let mut total = 0.0;
        for (i, xi) in self.x.chunks_exact(d).enumerate() {
            let z = dot64(&theta[..d], xi) + theta[d];
            let (y, c) = (self.y[i], self.c[i]);
            loss += c * (softplus(z) - y * z);
            let g = c * (sigmoid(z) - y);
            grad[..d]
                .iter_mut()
                .zip(xi)
                .for_each(|(a, v)| *a += g * f64::from(*v));
            grad[d] += g;
            total += c;
        }
        let total = total.max(f64::MIN_POSITIVE);
        grad.iter_mut().for_each(|g| *g /= total);
        let mut penalty = 0.0;
        for (g, w) in grad[..d].iter_mut().zip(&theta[..d]) {
            *g += self.l2 * w;
            penalty += w * w;
        }
        loss / total + 0.5 * self.l2 * penalty
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises `f` with L-BFGS (10 pairs, Armijo backtracking); (theta, iterations, converged).
fn lbfgs(f: &Objective<'_>, n: usize, max_iterations: usize, tolerance: f64) -> (Vec<f64>, usize, bool) {
    const M: usize = 10;
    let mut x = vec![0.0; n];
    let mut g = vec![0.0; n];
    let mut fx = f.eval(&x, &mut g);
    let mut history: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = Default::default();
    let (mut xn, mut gn) = (vec![0.0; n], vec![0.0; n]);
    for iter in 0..max_iterations {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < tolerance {
            return (x, iter, true);
        }
        // Two-loop recursion: d = -H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        let gamma = match history.back() {
            Some((s, y, _)) => dot(s, y) / dot(y, y),
            None => 1.0 / dot(&g, &g).sqrt().max(1.0),
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), a) in history.iter().zip(alphas.into_iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let mut d: Vec<f64> = q.into_iter().map(|v| -v).collect();
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            history.clear();
            d = g.iter().map(|v| -v).collect();
            slope = dot(&g, &d);
        }
        let mut step = 1.0;
        let fnew = loop {
            xn.iter_mut()
                .zip(&x)
                .zip(&d)
                .for_each(|((a, xi), di)| *a = xi + step * di);
            let fv = f.eval(&xn, &mut gn);
            if fv <= fx + 1e-4 * step * slope {
                break Some(fv);
            }
            step *= 0.5;
            if step < 1e-12 {
                break None;
            }
        };
        let Some(fnew) = fnew else {
            // No decrease along a descent direction: at the optimum to rounding.
            return (x, iter, true);
        };
        let s: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            if history.len() == M {
                history.pop_front();
            }
            history.push_back((s, y, 1.0 / sy));
        }
        let done = (fx - fnew).abs() <= 1e-13 * fx.abs().max(1.0);
        std::mem::swap(&mut x, &mut xn);
        std::mem::swap(&mut g, &mut gn);
        fx = fnew;
        if done {
            return (x, iter + 1, true);
        }
    }
    (x, max_iterations, false)
}

/// Trains a probe on `x` (row-major, `dim` per row) with labels `y`. Features are standardised
/// (centred on their mean, scaled to unit average variance) for the optimisation; the returned
/// probe applies to raw embeddings. Needs at least one positive and one negative.
pub fn train(x: &[f32], dim: usize, y: &[bool], opts: &ProbeOptions) -> Result<Probe> {
    let n = y.len();
    if dim == 0 || x.len() != n * dim {
        return Err(Error::bad("probe: features and labels differ in length"));
    }
    let pos = y.iter().filter(|v| **v).count();
    if pos == 0 || pos == n {
        return Err(Error::bad("probe: needs positive and negative examples"));
    }
    let mut mean = vec![0.0f64; dim];
    for xi in x.chunks_exact(dim) {
        mean.iter_mut().zip(xi).for_each(|(m, v)| *m += f64::from(*v));
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut var = 0.0;
    for xi in x.chunks_exact(dim) {
        var += xi
            .iter()
            .zip(&mean)
            .map(|(v, m)| (f64::from(*v) - m).powi(2))
            .sum::<f64>();
    }
    let sd = (var / (n * dim) as f64).sqrt();
    let scale = if sd > 1e-12 { 1.0 / sd } else { 1.0 };
    let xs: Vec<f32> = x
        .chunks_exact(dim)
        .flat_map(|xi| {
            xi.iter()
                .zip(&mean)
                .map(|(v, m)| ((f64::from(*v) - m) * scale) as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    let ys: Vec<f64> = y.iter().map(|&v| f64::from(u8::from(v))).collect();
    let (wp, wn) = if opts.balanced {
        (n as f64 / (2 * pos) as f64, n as f64 / (2 * (n - pos)) as f64)
    } else {
        (1.0, 1.0)
    };
    let c: Vec<f64> = y.iter().map(|&v| if v { wp } else { wn }).collect();
    let l2 = opts.l2.unwrap_or(1.0 / n as f64);
    let objective = Objective {
        x: &xs,
        dim,
        y: &ys,
        c: &c,
        l2,
    };
    let (theta, iterations, converged) = lbfgs(&objective, dim + 1, opts.max_iterations, opts.tolerance);
    // Back to raw features: w . ((x - mean) * scale) + b = (w * scale) . x + (b - (w * scale) . mean).
    let weights: Vec<f64> = theta[..dim].iter().map(|w| w * scale).collect();
    let bias = theta[dim] - dot(&weights, &mean);
    Ok(Probe {
        weights: weights.into_iter().map(|w| w as f32).collect(),
        bias: bias as f32,
        iterations,
        converged,
        l2,
    })
}

/// Up to [`MAX_FOLDS`] folds of whole groups: a fold number per sample (groups, largest first,
/// go to the fold with fewest samples so far) and the number of folds. Samples of one group
/// always share a fold.
pub fn spatial_folds(groups: &[String]) -> (Vec<usize>, usize) {
    let mut sizes: HashMap<&str, usize> = HashMap::new();
    for g in groups {
        *sizes.entry(g.as_str()).or_default() += 1;
    }
    let k = sizes.len().min(MAX_FOLDS);
    let mut order: Vec<(&str, usize)> = sizes.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut load = vec![0usize; k.max(1)];
    let mut fold_of: HashMap<&str, usize> = HashMap::new();
    for (g, size) in order {
        let f = (0..load.len()).min_by_key(|&f| (load[f], f)).unwrap_or(0);
        load[f] += size;
        fold_of.insert(g, f);
    }
    (groups.iter().map(|g| fold_of[g.as_str()]).collect(), k)
}

/// The finest H3 resolution all of `rows` have, when they all have cells.
fn common_resolution(index: &Index, rows: impl IntoIterator<Item = u32>) -> Option<usize> {
    rows.into_iter()
        .map(|r| index.record(r).h3.len().checked_sub(1))
        .try_fold(usize::MAX, |m, r| Some(m.min(r?)))
        .filter(|&m| m != usize::MAX)
}

/// The cross-validation group of each row: its H3 cell at `res` (hex), else its scene.
fn groups(index: &Index, rows: &[u32], res: Option<usize>) -> Vec<String> {
    rows.iter()
        .map(|&r| {
            let rec = index.record(r);
            match res.and_then(|res| rec.h3.get(res)) {
                Some(c) => h3o::CellIndex::try_from(*c).map_or_else(|_| format!("{c:x}"), |c| c.to_string()),
                None => format!("scene:{}", rec.scene),
            }
        })
        .collect()
}

/// A small deterministic generator (splitmix64) for drawing weak negatives.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How many unlabelled patches to draw as weak negatives for `pos` positive and `neg` negative
/// labels: enough to bring the negatives to max(2 x positives, 50). A few labelled negatives
/// are the hard cases near the positives; without a background of the rest of the index the
/// probe calls nearly everything else positive (measured in `nadir bench active-learning`: the
/// top-up raises every strategy, on rare and balanced classes).
pub fn weak_negatives_wanted(pos: usize, neg: usize) -> usize {
    (2 * pos).max(50).saturating_sub(neg)
}

/// The labels of a class resolved to rows of the index.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    pub class: String,
    /// Labelled rows and their labels, in the order they were given.
    pub rows: Vec<u32>,
    pub positive: Vec<bool>,
    /// Unlabelled rows drawn as negatives ([`weak_negatives_wanted`]).
    pub weak_negatives: Vec<u32>,
    /// Labels whose patch is not in the index (it was re-indexed away).
    pub missing: usize,
    /// Whether each stored label of the class is positive, in the order given (the missing
    /// ones included): the discovery curve's source.
    pub given: Vec<bool>,
}

impl TrainingSet {
    /// The labels of `class`: 404 without any, 400 without a positive in the index.
    pub fn of(engine: &Engine, class: &str) -> Result<Self> {
        let class = check_class(class)?.to_string();
        let mut labels = engine.labels()?.list(Some(&class))?;
        // In the order given (the store's ids grow): the discovery curve reads them so.
        labels.sort_by_key(|l| l.id);
        if labels.is_empty() {
            return Err(Error::NotFound(format!("class {class:?} has no labels")));
        }
        let index = engine.index();
        let (mut rows, mut positive, mut missing) = (Vec::new(), Vec::new(), 0);
        for l in &labels {
            match l.patch_id.parse::<PatchId>().ok().and_then(|id| index.row_of(id)) {
                Some(r) => {
                    rows.push(r);
                    positive.push(l.positive);
                }
                None => missing += 1,
            }
        }
        let pos = positive.iter().filter(|p| **p).count();
        if pos == 0 {
            return Err(Error::bad(format!(
                "class {class:?} has no positive label in this index: label at least one patch that shows it"
            )));
        }
        let mut weak_negatives = Vec::new();
        let want = weak_negatives_wanted(pos, positive.len() - pos);
        if want > 0 {
            let labelled: HashSet<u32> = rows.iter().copied().collect();
            let free = index.len() - labelled.len();
            let want = want.min(free);
            if want == 0 && pos == positive.len() {
                return Err(Error::bad(format!(
                    "class {class:?} has only positive labels and the index has no other patch: label a negative"
                )));
            }
            let mut state = class.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            let mut chosen = HashSet::new();
            if want * 2 >= free {
                // Most of what is left: take it in order, skipping the labelled.
                weak_negatives.extend(
                    (0..index.len() as u32)
                        .filter(|r| !labelled.contains(r))
                        .take(want),
                );
            } else {
                while weak_negatives.len() < want {
                    let r = (splitmix(&mut state) % index.len() as u64) as u32;
                    if !labelled.contains(&r) && chosen.insert(r) {
                        weak_negatives.push(r);
                    }
                }
            }
        }
        Ok(TrainingSet {
            class,
            rows,
            positive,
            weak_negatives,
            missing,
            given: labels.iter().map(|l| l.positive).collect(),
        })
    }

    pub fn positives(&self) -> usize {
        self.positive.iter().filter(|p| **p).count()
    }

    pub fn negatives(&self) -> usize {
        self.positive.len() - self.positives()
    }

    /// Trains on the labelled samples `keep` selects, plus the weak negatives.
    fn train_on(&self, index: &Index, keep: impl Fn(usize) -> bool, opts: &ProbeOptions) -> Result<Probe> {
        let dim = index.dim();
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (i, (&r, &p)) in self.rows.iter().zip(&self.positive).enumerate() {
            if keep(i) {
                x.extend_from_slice(index.vector(r));
                y.push(p);
            }
        }
        for &r in &self.weak_negatives {
            x.extend_from_slice(index.vector(r));
            y.push(false);
        }
        train(&x, dim, &y, opts)
    }

    /// Trains on every label.
    pub fn train(&self, index: &Index, opts: &ProbeOptions) -> Result<Probe> {
        self.train_on(index, |_| true, opts)
    }

    /// Spatially cross-validated precision and recall at 0.5, or why there is none.
    pub fn cross_validate(
        &self,
        index: &Index,
        opts: &ProbeOptions,
    ) -> Result<std::result::Result<CrossValidation, String>> {
        let res = common_resolution(index, self.rows.iter().copied()).map(|r| r.saturating_sub(COARSEN));
        let keys = groups(index, &self.rows, res);
        let (fold, k) = spatial_folds(&keys);
        let grouping = match res {
            Some(r) => format!("h3 resolution {r}"),
            None => "scene".to_string(),
        };
        if k < 2 {
            return Ok(Err(format!(
                "every label lies in one group ({grouping}): label patches in other places to cross-validate"
            )));
        }
        let mut cv = CrossValidation {
            folds: k,
            folds_skipped: 0,
            grouping,
            groups: keys.iter().collect::<HashSet<_>>().len(),
            evaluated: 0,
            true_positives: 0,
            false_positives: 0,
            false_negatives: 0,
            true_negatives: 0,
            precision: None,
            recall: None,
            threshold: 0.5,
        };
        for f in 0..k {
            let train_has =
                |want: bool| (0..self.rows.len()).any(|i| fold[i] != f && self.positive[i] == want);
            let negatives = train_has(false) || !self.weak_negatives.is_empty();
            if !train_has(true) || !negatives {
                cv.folds_skipped += 1;
                continue;
            }
            let probe = self.train_on(index, |i| fold[i] != f, opts)?;
            for i in (0..self.rows.len()).filter(|&i| fold[i] == f) {
                let predicted = probe.probability(index.vector(self.rows[i])) >= 0.5;
                cv.evaluated += 1;
                match (self.positive[i], predicted) {
                    (true, true) => cv.true_positives += 1,
                    (false, true) => cv.false_positives += 1,
                    (true, false) => cv.false_negatives += 1,
                    (false, false) => cv.true_negatives += 1,
                }
            }
        }
        let (tp, fp, fneg) = (cv.true_positives, cv.false_positives, cv.false_negatives);
        let negatives_seen = cv.false_positives + cv.true_negatives > 0;
        cv.precision = (negatives_seen && tp + fp > 0).then(|| tp as f64 / (tp + fp) as f64);
        cv.recall = (tp + fneg > 0).then(|| tp as f64 / (tp + fneg) as f64);
        Ok(Ok(cv))
    }
}

/// Spatially cross-validated quality of a probe.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CrossValidation {
    pub folds: usize,
    /// Folds left out because their training part lacked positives or negatives.
    pub folds_skipped: usize,
    /// What groups the labels (`h3 resolution R`, or `scene`).
    pub grouping: String,
    pub groups: usize,
    /// Held-out labels predicted.
    pub evaluated: usize,
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    pub true_negatives: usize,
    /// Absent when no held-out negative label was predicted (only weak negatives).
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub threshold: f64,
}

/// What `POST /api/learn/{class}` reports.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LearnReport {
    pub class: String,
    pub positives: usize,
    pub negatives: usize,
    /// Unlabelled patches used as negatives (the class has no negative label).
    pub weak_negatives: usize,
    /// Labels whose patch is no longer in the index (not used).
    pub missing_patches: usize,
    pub dim: usize,
    pub iterations: usize,
    pub converged: bool,
    pub l2: f64,
    /// Milliseconds to train the probe on every label.
    pub train_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_validation: Option<CrossValidation>,
    /// The discovery curve: positives among the class's first 1, 2, ... labels, in the order
    /// they were given (labels still stored; a relabel counts where it was last given).
    pub discovery: Vec<usize>,
    /// Why there is no cross-validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Milliseconds in all, cross-validation included.
    pub took_ms: f64,
}

/// Trains a class's probe and cross-validates it.
pub fn learn(engine: &Engine, class: &str) -> Result<LearnReport> {
    let start = Instant::now();
    let set = TrainingSet::of(engine, class)?;
    let discovery = set
        .given
        .iter()
        .scan(0usize, |found, &positive| {
            *found += usize::from(positive);
            Some(*found)
        })
        .collect();
    let opts = ProbeOptions::default();
    let t = Instant::now();
    let probe = set.train(engine.index(), &opts)?;
    let train_ms = t.elapsed().as_secs_f64() * 1e3;
    let (cross_validation, note) = match set.cross_validate(engine.index(), &opts)? {
        Ok(cv) => (Some(cv), None),
        Err(why) => (None, Some(why)),
    };
    Ok(LearnReport {
        class: set.class.clone(),
        positives: set.positives(),
        negatives: set.negatives(),
        weak_negatives: set.weak_negatives.len(),
        missing_patches: set.missing,
        dim: engine.index().dim(),
        iterations: probe.iterations,
        converged: probe.converged,
        l2: probe.l2,
        train_ms,
        cross_validation,
        discovery,
        note,
        took_ms: start.elapsed().as_secs_f64() * 1e3,
    })
}

fn default_n() -> usize {
    10
}

/// Which patches to suggest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SuggestMode {
    /// The most probable unlabelled patches: find the most of the class per label (the best
    /// strategy on the rare-target benchmark, see `acquisition`).
    #[default]
    Likely,
    /// Probability nearest 0.5, spread over space: the labels that teach the probe most on a
    /// common class.
    Uncertain,
}

impl SuggestMode {
    /// The acquisition strategy behind the mode.
    pub fn strategy(self) -> Strategy {
        match self {
            SuggestMode::Likely => Strategy::Likely,
            SuggestMode::Uncertain => Strategy::Uncertain,
        }
    }
}

/// What to suggest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestRequest {
    /// How many (1 to 1000, default 10).
    #[serde(default = "default_n")]
    #[schema(minimum = 1, maximum = 1000)]
    pub n: usize,
    /// Suggest only patches whose centroid lies here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geofilter: Option<GeoFilter>,
    #[serde(default)]
    pub mode: SuggestMode,
}

/// A suggested patch and the probe's probability that it shows the class.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Suggestion {
    pub probability: f32,
    pub patch: Hit,
}

/// What `POST /api/learn/{class}/suggest` answers.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SuggestResponse {
    pub class: String,
    pub mode: SuggestMode,
    pub suggestions: Vec<Suggestion>,
    /// Unlabelled patches inside the geofilter that were scored.
    pub candidates: usize,
    /// The H3 resolution within whose cells at most one uncertain suggestion is made (absent
    /// without georeference or in `likely` mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diversity_resolution: Option<u8>,
    pub positives: usize,
    pub negatives: usize,
    pub weak_negatives: usize,
    pub took_ms: f64,
}

/// The probe of a class and the unlabelled ones of `rows` (those inside a geofilter: the callers
/// list them first, which also validates the area before training) with their probabilities.
fn scored(engine: &Engine, class: &str, rows: Vec<u32>) -> Result<(TrainingSet, Vec<(u32, f32)>)> {
    let set = TrainingSet::of(engine, class)?;
    let probe = set.train(engine.index(), &ProbeOptions::default())?;
    let labelled: HashSet<u32> = set.rows.iter().copied().collect();
    let index = engine.index();
    let unlabelled: Vec<u32> = rows.into_iter().filter(|r| !labelled.contains(r)).collect();
    let scored = probe.probabilities(|r| index.vector(r), &unlabelled);
    Ok((set, scored))
}

/// Suggestions of what to label next.
pub fn suggest(engine: &Engine, class: &str, req: &SuggestRequest) -> Result<SuggestResponse> {
    let start = Instant::now();
    if req.n == 0 || req.n > MAX_SUGGESTIONS {
        return Err(Error::bad(format!(
            "n must be in 1..={MAX_SUGGESTIONS} (got {})",
            req.n
        )));
    }
    let (set, scored) = scored(engine, class, engine.rows_in(req.geofilter.as_ref())?)?;
    let candidates = scored.len();
    let index = engine.index();
    let strategy = req.mode.strategy();
    let res = match strategy {
        Strategy::Likely => None,
        _ => common_resolution(index, scored.iter().map(|p| p.0)).map(|r| r.saturating_sub(COARSEN)),
    };
    let positives: Vec<u32> = set
        .rows
        .iter()
        .zip(&set.positive)
        .filter(|(_, p)| **p)
        .map(|(r, _)| *r)
        .collect();
    let view = IndexCells { index, res };
    let picked = choose(strategy, &view, &scored, &positives, req.n, 0);
    let diversity_resolution = res.map(|r| r as u8);
    Ok(SuggestResponse {
        class: set.class.clone(),
        mode: req.mode,
        suggestions: picked
            .into_iter()
            .map(|(r, p)| Suggestion {
                probability: p,
                patch: Hit::new(index, r, None),
            })
            .collect(),
        candidates,
        diversity_resolution,
        positives: set.positives(),
        negatives: set.negatives(),
        weak_negatives: set.weak_negatives.len(),
        took_ms: start.elapsed().as_secs_f64() * 1e3,
    })
}

/// An index seen by the acquisition strategies: its vectors, and each row's H3 cell at `res`.
struct IndexCells<'a> {
    index: &'a Index,
    res: Option<usize>,
}

impl Embeddings for IndexCells<'_> {
    fn vector(&self, row: u32) -> &[f32] {
        self.index.vector(row)
    }

    fn cell(&self, row: u32) -> Option<u64> {
        self.res
            .and_then(|res| self.index.record(row).h3.get(res).copied())
    }
}

/// Which patches to score.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoresRequest {
    /// Score only patches whose centroid lies here (at most 200,000 of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geofilter: Option<GeoFilter>,
}

/// The probe's probability for every unlabelled patch inside the geofilter, in row order.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Scores {
    pub class: String,
    pub patch_ids: Vec<String>,
    /// `probabilities[i]` is that of `patch_ids[i]`.
    pub probabilities: Vec<f32>,
    pub took_ms: f64,
}

/// Calibrated scores of every unlabelled patch inside the geofilter.
pub fn scores(engine: &Engine, class: &str, geofilter: Option<&GeoFilter>) -> Result<Scores> {
    let start = Instant::now();
    let rows = engine.rows_in(geofilter)?;
    if rows.len() > MAX_SCORES {
        return Err(Error::bad(format!(
            "{} patches lie inside the geofilter; scores answers for at most {MAX_SCORES}: narrow it",
            rows.len()
        )));
    }
    let (set, scored) = scored(engine, class, rows)?;
    let index = engine.index();
    Ok(Scores {
        class: set.class,
        patch_ids: scored
            .iter()
            .map(|(r, _)| index.record(*r).id.to_string())
            .collect(),
        probabilities: scored.iter().map(|s| s.1).collect(),
        took_ms: start.elapsed().as_secs_f64() * 1e3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic normal sample (Box-Muller on splitmix).
    fn normal(state: &mut u64) -> f64 {
        let u = (splitmix(state) >> 11) as f64 / (1u64 << 53) as f64;
        let v = (splitmix(state) >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * (u.max(1e-300)).ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn unit(v: Vec<f64>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.into_iter().map(|x| (x / n) as f32).collect()
    }

    /// Two classes of unit vectors either side of a hyperplane through a shared offset.
    fn separable(n: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<bool>) {
        let mut s = seed;
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..n {
            let pos = i % 3 == 0;
            let mut v: Vec<f64> = (0..dim).map(|_| normal(&mut s) * 0.1).collect();
            v[0] += 1.0; // the common component every embedding shares
            v[1] = if pos {
                0.05 + v[1].abs()
            } else {
                -0.05 - v[1].abs()
            };
            x.extend(unit(v));
            y.push(pos);
        }
        (x, y)
    }

    #[test]
    fn separates_a_linearly_separable_set() {
        let dim = 64;
        let (x, y) = separable(900, dim, 1);
        let opts = ProbeOptions {
            l2: Some(1e-4),
            ..Default::default()
        };
        let probe = train(&x, dim, &y, &opts).unwrap();
        assert!(probe.converged, "{} iterations", probe.iterations);
        let (xt, yt) = separable(300, dim, 2);
        let correct = xt
            .chunks_exact(dim)
            .zip(&yt)
            .filter(|(v, &p)| (probe.probability(v) >= 0.5) == p)
            .count();
        assert!(correct >= 297, "{correct} of 300 held-out samples right");
        assert!(train(&x[..dim], dim, &y[..1], &opts).is_err(), "one class only");
    }

    #[test]
    fn probabilities_are_calibrated() {
        // Labels drawn from a known logistic model: the fitted probabilities match the observed
        // frequencies in each probability bin.
        let (dim, n) = (8, 6000);
        let mut s = 11;
        let truth: Vec<f64> = (0..dim).map(|j| if j < 2 { 1.5 } else { 0.0 }).collect();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let v: Vec<f64> = (0..dim).map(|_| normal(&mut s)).collect();
            let p = sigmoid(v.iter().zip(&truth).map(|(a, b)| a * b).sum());
            let u = (splitmix(&mut s) >> 11) as f64 / (1u64 << 53) as f64;
            x.extend(v.iter().map(|&a| a as f32));
            y.push(u < p);
        }
        let probe = train(&x, dim, &y, &ProbeOptions::default()).unwrap();
        let mut bins = [(0.0f64, 0.0f64, 0usize); 5];
        for (v, &label) in x.chunks_exact(dim).zip(&y) {
            let p = f64::from(probe.probability(v));
            let b = ((p * 5.0) as usize).min(4);
            bins[b].0 += p;
            bins[b].1 += f64::from(u8::from(label));
            bins[b].2 += 1;
        }
        for (i, (sp, sy, count)) in bins.iter().enumerate() {
            assert!(*count > 200, "bin {i} has {count}");
            let (mp, freq) = (sp / *count as f64, sy / *count as f64);
            assert!(
                (mp - freq).abs() < 0.05,
                "bin {i}: mean p {mp:.3}, frequency {freq:.3}"
            );
        }
    }

    #[test]
    fn probable_patches_are_capped() {
        assert!(check_probable_count(MAX_PROBABLE, 0.5).is_ok());
        let err = check_probable_count(MAX_PROBABLE + 1, 0.5)
            .unwrap_err()
            .to_string();
        assert!(err.contains("raise min_probability"), "{err}");
    }

    #[test]
    fn weak_negatives_top_up_to_twice_the_positives() {
        assert_eq!(weak_negatives_wanted(3, 0), 50);
        assert_eq!(weak_negatives_wanted(3, 2), 48);
        assert_eq!(weak_negatives_wanted(40, 10), 70);
        assert_eq!(weak_negatives_wanted(40, 120), 0);
    }

    #[test]
    fn probabilities_on_many_threads_equal_one_by_one() {
        let (x, y) = separable(300, 16, 3);
        let probe = train(&x, 16, &y, &ProbeOptions::default()).unwrap();
        let big: Vec<f32> = x.iter().cycle().take(16 * 300 * 150).copied().collect();
        let rows: Vec<u32> = (0..45_000).collect();
        let all = probe.probabilities(|r| &big[r as usize * 16..(r as usize + 1) * 16], &rows);
        assert_eq!(all.len(), rows.len());
        for (i, (r, p)) in all.iter().enumerate() {
            assert_eq!(*r, i as u32);
            assert_eq!(*p, probe.probability(&big[i * 16..(i + 1) * 16]));
        }
    }

    #[test]
    fn folds_never_split_a_group() {
        let groups: Vec<String> = (0..200).map(|i| format!("cell-{}", (i * 7919) % 13)).collect();
        let (fold, k) = spatial_folds(&groups);
        assert_eq!(k, MAX_FOLDS);
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (g, f) in groups.iter().zip(&fold) {
            assert_eq!(*seen.entry(g).or_insert(*f), *f, "group {g} in two folds");
        }
        for f in 0..k {
            assert!(fold.contains(&f), "fold {f} empty");
        }
        let (_, k) = spatial_folds(&["a".to_string(), "a".to_string()]);
        assert_eq!(k, 1);
    }

    #[test]
    fn trains_thousands_of_labels_quickly() {
        let dim = 256;
        let (x, y) = separable(4000, dim, 3);
        let t = Instant::now();
        let probe = train(&x, dim, &y, &ProbeOptions::default()).unwrap();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "probe: 4000 labels, dim {dim}: {ms:.1} ms, {} iterations",
            probe.iterations
        );
        // Unoptimised test builds are ~10x slower than release; the release figure is well under 1 s.
        assert!(ms < 20_000.0, "{ms} ms");
    }
}

/// Which patches to take as the class: those the probe finds at least this probable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbableRequest {
    /// The least probability (0 to 1) of an unlabelled patch to be taken.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub min_probability: f32,
    /// Only patches whose centroid lies here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geofilter: Option<GeoFilter>,
}

/// A patch taken as the class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbableRow {
    pub row: u32,
    /// The probe's probability (1 for a labelled positive).
    pub probability: f32,
    /// A positive label, not a prediction.
    pub labelled: bool,
}

/// The class's labelled positives and every unlabelled patch the probe gives at least
/// `min_probability` (inside the geofilter), most probable first; 400 beyond [`MAX_PROBABLE`].
pub fn probable(engine: &Engine, class: &str, req: &ProbableRequest) -> Result<Vec<ProbableRow>> {
    if !(0.0..=1.0).contains(&req.min_probability) {
        return Err(Error::bad(format!(
            "min_probability must be in 0..=1 (got {})",
            req.min_probability
        )));
    }
    let rows = engine.rows_in(req.geofilter.as_ref())?;
    let inside: HashSet<u32> = rows.iter().copied().collect();
    let (set, scored) = scored(engine, class, rows)?;
    let mut out: Vec<ProbableRow> = set
        .rows
        .iter()
        .zip(&set.positive)
        .filter(|(r, p)| **p && inside.contains(r))
        .map(|(&row, _)| ProbableRow {
            row,
            probability: 1.0,
            labelled: true,
        })
        .collect();
    let mut above: Vec<(u32, f32)> = scored
        .into_iter()
        .filter(|s| s.1 >= req.min_probability)
        .collect();
    above.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.extend(above.into_iter().map(|(row, probability)| ProbableRow {
        row,
        probability,
        labelled: false,
    }));
    check_probable_count(out.len(), req.min_probability)?;
    Ok(out)
}

/// 400 when more than [`MAX_PROBABLE`] patches would be taken.
fn check_probable_count(n: usize, min_probability: f32) -> Result<()> {
    if n > MAX_PROBABLE {
        return Err(Error::bad(format!(
            "{n} patches are at least {min_probability} probable; at most {MAX_PROBABLE} are taken at once: raise min_probability or narrow the geofilter"
        )));
    }
    Ok(())
}

/// [`probable`] as a GeoJSON FeatureCollection: each patch's footprint (its centroid as a Point
/// when it has no footprint; null geometry without georeference), with its hit's properties
/// plus `class`, `probability` and `labelled`.
pub fn probable_geojson(engine: &Engine, class: &str, req: &ProbableRequest) -> Result<serde_json::Value> {
    let rows = probable(engine, class, req)?;
    let class = check_class(class)?;
    let features: Vec<serde_json::Value> = rows
        .iter()
        .map(|p| {
            let hit = Hit::new(engine.index(), p.row, None);
            let mut f = hit.feature();
            if hit.footprint.is_none() {
                if let Some([lon, lat]) = hit.centroid {
                    f["geometry"] = serde_json::json!({"type": "Point", "coordinates": [lon, lat]});
                }
            }
            if let Some(props) = f.get_mut("properties").and_then(|v| v.as_object_mut()) {
                props.insert("class".into(), class.into());
                props.insert("probability".into(), p.probability.into());
                props.insert("labelled".into(), p.labelled.into());
            }
            f
        })
        .collect();
    Ok(serde_json::json!({"type": "FeatureCollection", "features": features}))
}
