//! The head an interactive session trains after every input: one logistic probe per class
//! ("this class or not") over a stride-4 cell's feature vector, fitted to the labelled cells with
//! class-balanced weights and an L2 pull towards its starting point (zero, or a model's own
//! prediction for the class when the session starts from a `nadir finetune` model).
//!
//! Why a linear probe: with one to twenty clicks a class, anything with more freedom over ~500
//! frozen features overfits, and a linear head is applied at every stride-4 cell of a 2048 px
//! scene in milliseconds ([`super::features::FeatureGrid::project`]). It is fitted by Adam, warm
//! started from its previous weights, so each click costs a few hundred small steps.

/// Labelled cells: `x` is `[n, dim]`, and per sample a class, whether it is that class, and a
/// weight; `weak` marks the random "probably not" cells drawn when a class has few negatives.
#[derive(Debug, Clone, Default)]
pub(crate) struct Samples {
    pub dim: usize,
    pub x: Vec<f32>,
    pub class: Vec<usize>,
    pub positive: Vec<bool>,
    pub weight: Vec<f32>,
    pub weak: Vec<bool>,
}

impl Samples {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.class.len()
    }

    pub fn push(&mut self, features: &[f32], class: usize, positive: bool, weight: f32, weak: bool) {
        debug_assert_eq!(features.len(), self.dim);
        self.x.extend_from_slice(features);
        self.class.push(class);
        self.positive.push(positive);
        self.weight.push(weight);
        self.weak.push(weak);
    }
}

/// How the probe is fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadOptions {
    /// L2 strength of the pull towards the starting weights (zero).
    pub l2: f32,
    /// The same for a class that starts from a model's prediction: strong, so that a few clicks
    /// correct the model rather than replace it (Dubai, 2 images, 10 clicks from the 42-image
    /// model: IoU 0.52 with 0.01, 0.71 with 1 or 10).
    pub prior_l2: f32,
    /// Adam steps per fit.
    pub steps: usize,
    pub learning_rate: f32,
    /// Share of a class's negative weight given to the weak (random) negatives when the class has
    /// explicit negatives too; all of it when it has none.
    pub weak_share: f32,
    /// Fits per update; from the second on, weak negatives are weighed by (1 - p)² of the last.
    pub rounds: usize,
}

impl Default for HeadOptions {
    fn default() -> Self {
        Self {
            l2: 1e-2,
            prior_l2: 10.0,
            steps: 150,
            learning_rate: 0.05,
            weak_share: 0.3,
            rounds: 2,
        }
    }
}

/// One probe per class: `weights` `[k, dim]`, `bias` `[k]`, and where they are pulled to.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub dim: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub init_weights: Vec<f32>,
    pub init_bias: Vec<f32>,
}

/// The bias of a class nobody has labelled: nothing is predicted for it.
const ABSENT: f32 = -20.0;

impl Head {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            weights: Vec::new(),
            bias: Vec::new(),
            init_weights: Vec::new(),
            init_bias: Vec::new(),
        }
    }

    pub fn classes(&self) -> usize {
        self.bias.len()
    }

    /// Adds a class starting from `init` (weights, bias), or from zero.
    pub fn add_class(&mut self, init: Option<(Vec<f32>, f32)>) {
        let (w, b) = init.unwrap_or_else(|| (vec![0.0; self.dim], 0.0));
        debug_assert_eq!(w.len(), self.dim);
        self.weights.extend_from_slice(&w);
        self.init_weights.extend_from_slice(&w);
        self.bias.push(b);
        self.init_bias.push(b);
    }

    /// Whether class `k` starts from a prior (it predicts something before any label).
    fn has_prior(&self, k: usize) -> bool {
        self.init_weights[k * self.dim..(k + 1) * self.dim]
            .iter()
            .any(|&v| v != 0.0)
    }

    /// The bias actually used for class `k`: [`ABSENT`] when it has no positive sample and no prior.
    pub fn effective_bias(&self, k: usize, samples: &Samples) -> f32 {
        let positives = (0..samples.len()).any(|i| samples.class[i] == k && samples.positive[i]);
        if positives || self.has_prior(k) {
            self.bias[k]
        } else {
            ABSENT
        }
    }

    /// Fits every class to `samples`: a positive of another class is a negative of this one.
    pub fn fit(&mut self, samples: &Samples, opts: &HeadOptions) {
        for k in 0..self.classes() {
            self.fit_class(k, samples, opts);
        }
    }

    fn fit_class(&mut self, k: usize, s: &Samples, opts: &HeadOptions) {
        let d = self.dim;
        // Targets and balanced weights: positives share 1/2, negatives 1/2 (weak ones a part).
        let mut y = Vec::with_capacity(s.len());
        let mut rows = Vec::with_capacity(s.len());
        let (mut pos, mut neg) = (0f32, 0f32);
        for i in 0..s.len() {
            let is_pos = s.class[i] == k && s.positive[i];
            let is_neg =
                (s.class[i] == k && !s.positive[i]) || (s.class[i] != k && s.positive[i] && !s.weak[i]);
            let is_weak = s.weak[i];
            if is_pos {
                pos += s.weight[i];
            } else if is_weak {
            } else if is_neg {
                neg += s.weight[i];
            } else {
                continue;
            }
            rows.push(i);
            y.push(if is_pos { 1f32 } else { 0.0 });
        }
        if pos == 0.0 {
            // Nothing marked as this class: it keeps its prior, or predicts nothing.
            return;
        }
        let weak_total = if neg > 0.0 { opts.weak_share } else { 1.0 };
        let w0 = self.init_weights[k * d..(k + 1) * d].to_vec();
        let b0 = self.init_bias[k];
        let mut w = self.weights[k * d..(k + 1) * d].to_vec();
        let mut b = self.bias[k];
        // Weak negatives are unlabelled cells, some of them of the class (a positive-unlabelled
        // problem): from the second round on, each weighs by how unlike the class the last fit
        // found it.
        let mut weak_wt: Vec<f32> = rows
            .iter()
            .map(|&i| if s.weak[i] { s.weight[i] } else { 0.0 })
            .collect();
        for round in 0..opts.rounds.max(1) {
            if round > 0 {
                for (j, &i) in rows.iter().enumerate() {
                    if s.weak[i] {
                        let p = sigmoid(b + dot(&w, &s.x[i * d..(i + 1) * d]));
                        weak_wt[j] = s.weight[i] * (1.0 - p).powi(2);
                    }
                }
            }
            let weak: f32 = weak_wt.iter().sum();
            let wt: Vec<f32> = rows
                .iter()
                .zip(&y)
                .enumerate()
                .map(|(j, (&i, &t))| {
                    if t == 1.0 {
                        0.5 * s.weight[i] / pos
                    } else if s.weak[i] {
                        0.5 * weak_total * weak_wt[j] / weak.max(1e-12)
                    } else {
                        0.5 * (1.0 - if weak > 0.0 { weak_total } else { 0.0 }) * s.weight[i] / neg.max(1e-12)
                    }
                })
                .collect();
            let l2 = if self.has_prior(k) { opts.prior_l2 } else { opts.l2 };
            adam(&mut w, &mut b, (&w0, b0), &rows, &y, &wt, s, opts, l2);
        }
        self.weights[k * d..(k + 1) * d].copy_from_slice(&w);
        self.bias[k] = b;
    }
}

/// Adam on the class-balanced logistic loss plus the L2 pull towards `init`.
#[allow(clippy::too_many_arguments)]
fn adam(
    w: &mut [f32],
    b: &mut f32,
    (w0, b0): (&[f32], f32),
    rows: &[usize],
    y: &[f32],
    wt: &[f32],
    s: &Samples,
    opts: &HeadOptions,
    l2: f32,
) {
    let d = w.len();
    let (mut m, mut v) = (vec![0f32; d + 1], vec![0f32; d + 1]);
    let (beta1, beta2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let mut grad = vec![0f32; d + 1];
    for step in 1..=opts.steps {
        grad.iter_mut().for_each(|g| *g = 0.0);
        for (j, &i) in rows.iter().enumerate() {
            let x = &s.x[i * d..(i + 1) * d];
            let g = wt[j] * (sigmoid(*b + dot(w, x)) - y[j]);
            if g == 0.0 {
                continue;
            }
            for (gi, xi) in grad[..d].iter_mut().zip(x) {
                *gi += g * xi;
            }
            grad[d] += g;
        }
        for i in 0..d {
            grad[i] += l2 * (w[i] - w0[i]);
        }
        grad[d] += l2 * (*b - b0);
        let (c1, c2) = (1.0 - beta1.powi(step as i32), 1.0 - beta2.powi(step as i32));
        for i in 0..=d {
            m[i] = beta1 * m[i] + (1.0 - beta1) * grad[i];
            v[i] = beta2 * v[i] + (1.0 - beta2) * grad[i] * grad[i];
            let delta = opts.learning_rate * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
            if i < d {
                w[i] -= delta;
            } else {
                *b -= delta;
            }
        }
    }
}

pub(crate) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Four accumulators: the compiler vectorises this.
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for j in 0..8 {
            acc[j] += a[c * 8 + j] * b[c * 8 + j];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_separable_class_is_learnt_and_an_unlabelled_one_predicts_nothing() {
        let mut s = Samples::new(3);
        for i in 0..20 {
            let t = i as f32 / 10.0;
            s.push(&[1.0 + t, 0.2, -0.3], 0, true, 1.0, false);
            s.push(&[-1.0 - t, 0.1, 0.4], 0, false, 1.0, false);
        }
        let mut head = Head::new(3);
        head.add_class(None);
        head.add_class(None);
        head.fit(&s, &HeadOptions::default());
        let z = |x: [f32; 3]| head.bias[0] + dot(&head.weights[..3], &x);
        assert!(z([1.5, 0.15, 0.0]) > 1.0 && z([-1.5, 0.15, 0.0]) < -1.0);
        assert_eq!(head.effective_bias(1, &s), ABSENT);
        assert!(head.weights[3..].iter().all(|&w| w == 0.0));
    }
}
