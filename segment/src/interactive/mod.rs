//! Interactive segmentation: an analyst's clicks, scribbles and boxes on one scene steer its mask.
//!
//! A [`Session`] holds the scene's pixels, the frozen encoder's maps of the whole scene (computed
//! once, [`features`]), the inputs so far and a light per-class head ([`head`]) refitted after
//! every input on the labelled stride-4 cells, then applied to every cell, upsampled and snapped
//! to the image's edges ([`refine`]). A session may start from a `nadir finetune` model: its
//! prediction is the head's starting point for the classes it knows. [`annotator`] is the
//! simulated analyst of the standard protocol that `nadir bench interactive` runs.

pub mod annotator;
pub mod features;
pub mod head;
pub mod propagate;
pub mod protocol;
pub mod refine;
pub mod script;
pub mod superpixels;

use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::config::{ClassInfo, IGNORE};
use crate::encoder::FrozenEncoder;
use crate::error::{Error, Result};
use crate::model::Segmenter;
use crate::sam::MobileSam;
use features::{FeatureGrid, CELL};
pub use head::HeadOptions;
use head::{sigmoid, Head, Samples};
use propagate::Graph;
use refine::Guide;
pub use refine::RefineOptions;
use superpixels::Superpixels;

/// One input of the analyst, in pixel coordinates of the session's image (x right, y down).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Input {
    /// A click: this pixel is (`positive`) or is not of `class`.
    Point {
        x: f64,
        y: f64,
        class: usize,
        #[serde(default = "yes")]
        positive: bool,
    },
    /// A brush stroke through `points`: every pixel under it is (or is not) of `class`.
    Scribble {
        points: Vec<[f64; 2]>,
        class: usize,
        #[serde(default = "yes")]
        positive: bool,
    },
    /// A box around a piece of `class`: its centre is of the class, a band just outside it is not.
    Box {
        x0: f64,
        y0: f64,
        x1: f64,
        y1: f64,
        class: usize,
    },
}

fn yes() -> bool {
    true
}

impl Input {
    /// What the input says of class `k` (true: this is `k`, false: this is not `k`; a positive
    /// input of another class is a "not") and where; None for nothing, and for boxes, which
    /// each engine reads in its own way.
    fn says(&self, k: usize) -> Option<(bool, Vec<[f64; 2]>)> {
        let (class, positive, points) = match self {
            Input::Point {
                x,
                y,
                class,
                positive,
            } => (*class, *positive, vec![[*x, *y]]),
            Input::Scribble {
                points,
                class,
                positive,
            } => (*class, *positive, points.clone()),
            Input::Box { .. } => return None,
        };
        match (class == k, positive) {
            (true, p) => Some((p, points)),
            (false, true) => Some((false, points)),
            (false, false) => None,
        }
    }

    fn class(&self) -> usize {
        match self {
            Input::Point { class, .. } | Input::Scribble { class, .. } | Input::Box { class, .. } => *class,
        }
    }
}

/// Limits and settings of a session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOptions {
    pub head: HeadOptions,
    /// Edge refinement (radius 0: none).
    pub refine: RefineOptions,
    /// A click labels the cells within this many stride-4 cells of it (weight 1/2 around the
    /// centre); 0: the clicked cell only. Unused with superpixels.
    pub click_radius: usize,
    /// Side of the superpixels in pixels (0: none). With superpixels a click labels the cells of
    /// its superpixel, and probabilities are averaged over each superpixel.
    pub superpixel_size: usize,
    /// With superpixels: how strongly the head's probability holds each superpixel against the
    /// clicks spreading over the superpixel graph ([`propagate`]); 0: no propagation.
    pub propagation: f32,
    /// Random cells drawn once per session as weak negatives ("most of the scene is not this").
    pub weak_negatives: usize,
    /// The largest image a session takes, in pixels.
    pub max_pixels: u64,
    /// Weight of the nearest-exemplar term in the logits (0: none). Chosen on the Dubai
    /// validation photos (part 8 of each tile), 10 clicks: 0 gives mean IoU 0.542, 4 0.591, 10
    /// 0.619, 15 0.623, 20 0.633, 40 0.601.
    pub exemplar_weight: f32,
    /// The most inputs a session keeps.
    pub max_inputs: usize,
    /// The most points one scribble may have.
    pub max_scribble_points: usize,
    pub seed: u64,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            head: HeadOptions::default(),
            refine: RefineOptions::default(),
            click_radius: 1,
            superpixel_size: 16,
            propagation: 0.02,
            weak_negatives: 256,
            max_pixels: 4096 * 4096,
            exemplar_weight: 15.0,
            max_inputs: 1000,
            max_scribble_points: 10_000,
            seed: 0,
        }
    }
}

/// What the last update did, and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Update {
    /// Inputs in effect.
    pub inputs: usize,
    /// Pixels of each class in the mask (the last entry: pixels of none).
    pub class_pixels: Vec<u64>,
    pub fit_ms: f64,
    pub predict_ms: f64,
    pub refine_ms: f64,
    pub total_ms: f64,
}

/// How long the session took to start, and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInfo {
    pub width: u32,
    pub height: u32,
    pub features_ms: f64,
    /// Bytes of features, image and masks the session keeps.
    pub memory_bytes: usize,
    pub prior: bool,
}

/// One scene being segmented interactively.
pub struct Session {
    image: RgbImage,
    classes: Vec<ClassInfo>,
    grid: FeatureGrid,
    head: Head,
    /// For each class, the prior channel it starts from (a model class of the same name).
    prior_channel: Vec<Option<usize>>,
    prior_classes: Vec<String>,
    /// Offset of the prior channels in a cell's feature vector.
    prior_offset: usize,
    inputs: Vec<Input>,
    /// The head before each input (None where inputs came in a batch), so that undo restores the
    /// mask exactly; and the undone inputs with the head each had.
    before: Vec<Option<Head>>,
    undone: Vec<(Input, Head)>,
    /// The head with no input (the classes' starting points).
    initial: Head,
    weak_cells: Vec<(usize, usize)>,
    guide: Option<Guide>,
    superpixels: Option<Superpixels>,
    /// With superpixels: the stride-4 cells whose centre lies in each.
    cells_of: Vec<Vec<(usize, usize)>>,
    graph: Option<Graph>,
    /// Norms of the cells' feature vectors (for cosine similarities), made when first needed.
    cell_norms: Vec<f32>,
    labels: Vec<u8>,
    opts: SessionOptions,
    info: SessionInfo,
    /// MobileSAM in place of the probe.
    sam: Option<SamState>,
}

/// A SAM session's model, the image's embedding, and the image-to-input scale.
struct SamState {
    model: Arc<MobileSam>,
    embedding: candle_core::Tensor,
    scale: f32,
}

/// The checks every new session makes on its image and classes.
fn check_image(image: &RgbImage, opts: &SessionOptions, classes: &[ClassInfo]) -> Result<()> {
    let (w, h) = image.dimensions();
    if w < 8 || h < 8 {
        return Err(Error::Invalid(format!(
            "the image is {w}x{h} px: too small to segment"
        )));
    }
    if u64::from(w) * u64::from(h) > opts.max_pixels {
        return Err(Error::Invalid(format!(
            "the image is {w}x{h} px, over the session limit of {} px: choose a window of the scene",
            opts.max_pixels
        )));
    }
    if classes.len() >= usize::from(IGNORE) {
        return Err(Error::Invalid(format!("at most {} classes", IGNORE - 1)));
    }
    Ok(())
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("info", &self.info)
            .field("classes", &self.classes)
            .field("inputs", &self.inputs.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts a session on `image` with `classes` (more can be added), encoding it with
    /// `encoder`, or with `prior`'s encoder when a model is given: then the classes it knows (by
    /// name) start from its prediction, and with no classes given the session takes its classes.
    pub fn new(
        encoder: &FrozenEncoder,
        image: RgbImage,
        mut classes: Vec<ClassInfo>,
        prior: Option<&Segmenter>,
        opts: SessionOptions,
    ) -> Result<Self> {
        check_image(&image, &opts, &classes)?;
        let start = Instant::now();
        let encoder = prior.map_or(encoder, Segmenter::encoder);
        let grid = FeatureGrid::compute(encoder, &image, prior)?;
        let prior_classes: Vec<String> = prior.map_or_else(Vec::new, |m| {
            m.config().classes.iter().map(|c| c.name.clone()).collect()
        });
        if classes.is_empty() {
            if let Some(m) = prior {
                classes = m.config().classes.clone();
            }
        }
        Self::assemble(image, classes, grid, prior_classes, None, opts, start)
    }

    /// Starts a session whose masks come from MobileSAM ([`crate::sam`]) prompted with each
    /// class's points and box, instead of the probe: the image embedding is computed once, each
    /// input reruns the prompt encoder and mask decoder. Superpixels and propagation are off.
    pub fn new_sam(
        model: Arc<MobileSam>,
        image: RgbImage,
        classes: Vec<ClassInfo>,
        opts: SessionOptions,
    ) -> Result<Self> {
        check_image(&image, &opts, &classes)?;
        let start = Instant::now();
        let (input, scale) = model.input(&image)?;
        let embedding = model.embed(&input)?;
        let grid = FeatureGrid::empty(image.width() as usize, image.height() as usize);
        let opts = SessionOptions {
            superpixel_size: 0,
            propagation: 0.0,
            weak_negatives: 0,
            ..opts
        };
        let sam = SamState {
            model,
            embedding,
            scale,
        };
        Self::assemble(image, classes, grid, Vec::new(), Some(sam), opts, start)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        image: RgbImage,
        classes: Vec<ClassInfo>,
        grid: FeatureGrid,
        prior_classes: Vec<String>,
        sam: Option<SamState>,
        opts: SessionOptions,
        start: Instant,
    ) -> Result<Self> {
        let (w, h) = image.dimensions();
        let prior_offset = grid.dim() - prior_classes.len();
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
        let weak_cells = (0..opts.weak_negatives)
            .map(|_| (rng.random_range(0..grid.cols), rng.random_range(0..grid.rows)))
            .collect();
        let guide = (opts.refine.radius > 0).then(|| Guide::new(&image, opts.refine.radius));
        let superpixels = (opts.superpixel_size > 0).then(|| Superpixels::new(&image, opts.superpixel_size));
        let mut cells_of = Vec::new();
        if let Some(sp) = &superpixels {
            cells_of = vec![Vec::new(); sp.count];
            for r in 0..grid.rows {
                for c in 0..grid.cols {
                    let (x, y) = (
                        (c * CELL + CELL / 2).min(w as usize - 1),
                        (r * CELL + CELL / 2).min(h as usize - 1),
                    );
                    cells_of[sp.labels[y * w as usize + x] as usize].push((c, r));
                }
            }
        }
        let graph = match &superpixels {
            Some(sp) if opts.propagation > 0.0 => {
                let mut colour = vec![[0f32; 3]; sp.count];
                let mut n = vec![0f32; sp.count];
                for (p, &l) in image.pixels().zip(&sp.labels) {
                    for (acc, v) in colour[l as usize].iter_mut().zip(p.0) {
                        *acc += f32::from(v);
                    }
                    n[l as usize] += 1.0;
                }
                for (c, n) in colour.iter_mut().zip(&n) {
                    c.iter_mut().for_each(|v| *v /= n.max(1.0));
                }
                Some(Graph::new(sp, w as usize, &grid, &cells_of, &colour))
            }
            _ => None,
        };
        let features_ms = start.elapsed().as_secs_f64() * 1e3;
        let memory_bytes = grid.bytes() + image.as_raw().len() * 4 + (w * h) as usize * (1 + 12 + 4);
        let grid_dim = grid.dim();
        let prior_classes_empty = prior_classes.is_empty();
        let mut session = Self {
            head: Head::new(grid.dim()),
            grid,
            image,
            classes: Vec::new(),
            prior_channel: Vec::new(),
            prior_classes,
            prior_offset,
            inputs: Vec::new(),
            before: Vec::new(),
            undone: Vec::new(),
            initial: Head::new(grid_dim),
            weak_cells,
            guide,
            superpixels,
            cells_of,
            graph,
            cell_norms: Vec::new(),
            labels: vec![IGNORE; (w * h) as usize],
            opts,
            info: SessionInfo {
                width: w,
                height: h,
                features_ms,
                memory_bytes,
                prior: !prior_classes_empty,
            },
            sam,
        };
        for c in classes {
            session.add_class(c)?;
        }
        session.update(false)?;
        session.info.features_ms = start.elapsed().as_secs_f64() * 1e3;
        tracing::info!(
            width = w,
            height = h,
            ms = session.info.features_ms,
            "interactive session ready"
        );
        Ok(session)
    }

    /// Adds a class; returns its index. A class the prior model knows starts from its prediction.
    pub fn add_class(&mut self, class: ClassInfo) -> Result<usize> {
        if class.name.trim().is_empty() {
            return Err(Error::Invalid("a class needs a name".into()));
        }
        if self.classes.iter().any(|c| c.name == class.name) {
            return Err(Error::Invalid(format!(
                "the session already has a class {:?}",
                class.name
            )));
        }
        if self.classes.len() + 1 >= usize::from(IGNORE) {
            return Err(Error::Invalid(format!("at most {} classes", IGNORE - 1)));
        }
        let channel = self
            .prior_classes
            .iter()
            .position(|p| p.eq_ignore_ascii_case(&class.name));
        let init = channel.map(|j| {
            let mut w = vec![0f32; self.grid.dim()];
            w[self.prior_offset + j] = 1.0;
            (w, 0.0)
        });
        self.head.add_class(init.clone());
        self.initial.add_class(init.clone());
        for h in self
            .before
            .iter_mut()
            .flatten()
            .chain(self.undone.iter_mut().map(|(_, h)| h))
        {
            h.add_class(init.clone());
        }
        self.prior_channel.push(channel);
        self.classes.push(class);
        Ok(self.classes.len() - 1)
    }

    /// Replaces the classes: every input goes, the head starts again (the features stay).
    pub fn reset(&mut self, classes: Vec<ClassInfo>) -> Result<Update> {
        self.inputs.clear();
        self.before.clear();
        self.undone.clear();
        self.classes.clear();
        self.prior_channel.clear();
        self.head = Head::new(self.grid.dim());
        self.initial = Head::new(self.grid.dim());
        for c in classes {
            self.add_class(c)?;
        }
        self.update(false)
    }

    pub fn classes(&self) -> &[ClassInfo] {
        &self.classes
    }

    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    pub fn inputs(&self) -> &[Input] {
        &self.inputs
    }

    /// The image being segmented.
    pub fn image(&self) -> &RgbImage {
        &self.image
    }

    /// The current mask: a class index per pixel, row-major, [`IGNORE`] where none.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Adds an input and updates the mask.
    pub fn add(&mut self, input: Input) -> Result<Update> {
        self.push_input(input)?;
        *self.before.last_mut().expect("just pushed") = Some(self.head.clone());
        self.update(true)
    }

    /// Adds an input without updating the mask (then [`Self::refresh`]): many inputs at once.
    pub fn push_input(&mut self, input: Input) -> Result<()> {
        self.check(&input)?;
        if self.inputs.len() >= self.opts.max_inputs {
            return Err(Error::Invalid(format!(
                "the session holds its limit of {} inputs",
                self.opts.max_inputs
            )));
        }
        self.inputs.push(input);
        self.before.push(None);
        self.undone.clear();
        Ok(())
    }

    /// Refits the head to the inputs and recomputes the mask.
    pub fn refresh(&mut self) -> Result<Update> {
        self.update(true)
    }

    /// Takes the last input back: the mask it replaced comes back exactly (nothing to undo: the
    /// mask as it is).
    pub fn undo(&mut self) -> Result<Update> {
        let Some(input) = self.inputs.pop() else {
            return self.update(false);
        };
        let before = self.before.pop().flatten();
        self.undone.push((input, self.head.clone()));
        match before {
            Some(h) => {
                self.head = h;
                self.update(false)
            }
            None => self.update(true),
        }
    }

    /// Puts the last undone input back, with the mask it had.
    pub fn redo(&mut self) -> Result<Update> {
        let Some((input, head)) = self.undone.pop() else {
            return self.update(false);
        };
        self.inputs.push(input);
        self.before.push(Some(std::mem::replace(&mut self.head, head)));
        self.update(false)
    }

    /// Removes every input.
    pub fn clear(&mut self) -> Result<Update> {
        self.inputs.clear();
        self.before.clear();
        self.undone.clear();
        self.head = self.initial.clone();
        self.update(false)
    }

    fn check(&self, input: &Input) -> Result<()> {
        let (w, h) = (f64::from(self.info.width), f64::from(self.info.height));
        if input.class() >= self.classes.len() {
            return Err(Error::Invalid(format!(
                "class {} does not exist: the session has {} classes",
                input.class(),
                self.classes.len()
            )));
        }
        let inside =
            |x: f64, y: f64| x.is_finite() && y.is_finite() && (0.0..w).contains(&x) && (0.0..h).contains(&y);
        match input {
            Input::Point { x, y, .. } if !inside(*x, *y) => Err(Error::Invalid(format!(
                "the point ({x}, {y}) is outside the {w}x{h} px image"
            ))),
            Input::Scribble { points, .. } => {
                if points.is_empty() || points.len() > self.opts.max_scribble_points {
                    return Err(Error::Invalid(format!(
                        "a scribble needs 1 to {} points, got {}",
                        self.opts.max_scribble_points,
                        points.len()
                    )));
                }
                match points.iter().find(|p| !inside(p[0], p[1])) {
                    Some(p) => Err(Error::Invalid(format!(
                        "the scribble point ({}, {}) is outside the {w}x{h} px image",
                        p[0], p[1]
                    ))),
                    None => Ok(()),
                }
            }
            Input::Box { x0, y0, x1, y1, .. } => {
                if !(inside(*x0, *y0) && inside(*x1, *y1)) || x1 <= x0 || y1 <= y0 {
                    return Err(Error::Invalid(format!(
                        "the box ({x0}, {y0}) - ({x1}, {y1}) must have x0 < x1, y0 < y1, inside the {w}x{h} px image"
                    )));
                }
                Ok(())
            }
            Input::Point { .. } => Ok(()),
        }
    }

    /// The labelled cells of the inputs, and the weak negatives.
    fn samples(&self) -> Samples {
        let mut s = Samples::new(self.grid.dim());
        let mut f = Vec::with_capacity(self.grid.dim());
        let (cols, rows) = (self.grid.cols, self.grid.rows);
        let cell = |x: f64, y: f64| {
            (
                ((x / CELL as f64) as usize).min(cols - 1),
                ((y / CELL as f64) as usize).min(rows - 1),
            )
        };
        let mut push = |s: &mut Samples,
                        (c, r): (usize, usize),
                        class: usize,
                        positive: bool,
                        weight: f32,
                        weak: bool| {
            f.clear();
            self.grid.sample(c, r, &mut f);
            s.push(&f, class, positive, weight, weak);
        };
        let radius = self.opts.click_radius as isize;
        for input in &self.inputs {
            match input {
                Input::Point {
                    x,
                    y,
                    class,
                    positive,
                } if self.superpixels.is_some() => {
                    let sp = self.superpixels.as_ref().expect("checked");
                    let (c, r) = cell(*x, *y);
                    push(&mut s, (c, r), *class, *positive, 1.0, false);
                    let (w, h) = (self.info.width as usize, self.info.height as usize);
                    let px = (*y as usize).min(h - 1) * w + (*x as usize).min(w - 1);
                    for &other in &self.cells_of[sp.labels[px] as usize] {
                        if other != (c, r) {
                            push(&mut s, other, *class, *positive, 0.5, false);
                        }
                    }
                }
                Input::Point {
                    x,
                    y,
                    class,
                    positive,
                } => {
                    let (c, r) = cell(*x, *y);
                    for dy in -radius..=radius {
                        for dx in -radius..=radius {
                            let (cc, rr) = (c as isize + dx, r as isize + dy);
                            if cc < 0 || rr < 0 || cc >= cols as isize || rr >= rows as isize {
                                continue;
                            }
                            let wt = if dx == 0 && dy == 0 { 1.0 } else { 0.5 };
                            push(&mut s, (cc as usize, rr as usize), *class, *positive, wt, false);
                        }
                    }
                }
                Input::Scribble {
                    points,
                    class,
                    positive,
                } => {
                    let cells = stroke_cells(points, cell);
                    // A stroke weighs at most as much as ten clicks.
                    let wt = (10.0 / cells.len() as f32).min(1.0);
                    for c in cells {
                        push(&mut s, c, *class, *positive, wt, false);
                    }
                }
                Input::Box {
                    x0,
                    y0,
                    x1,
                    y1,
                    class,
                } => {
                    let (a, b) = (cell(*x0, *y0), cell(*x1, *y1));
                    let (cx, cy) = ((a.0 + b.0) / 2, (a.1 + b.1) / 2);
                    push(&mut s, (cx, cy), *class, true, 1.0, false);
                    let band = ((b.0 - a.0).max(b.1 - a.1) / 10).max(1);
                    let ring = ring_cells(a, b, band, cols, rows);
                    let wt = (20.0 / ring.len().max(1) as f32).min(1.0);
                    for c in ring {
                        push(&mut s, c, *class, false, wt, false);
                    }
                }
            }
        }
        // Weak negatives count against every class.
        for &(c, r) in &self.weak_cells {
            push(&mut s, (c, r), 0, false, 1.0, true);
        }
        s
    }

    /// Adds to each class's stride-4 logits `weight x (max cosine to its clicked cells - max
    /// cosine to the cells clicked as "not" it)`: a nearest-exemplar view that keeps a class's
    /// several looks (white and red roofs) apart where one linear probe averages them.
    fn add_exemplar_term(&mut self, coarse: &mut [f32], k: usize, bias: &[f32]) {
        let (gh, gw) = self.grid.padded();
        let d = self.grid.dim();
        if self.cell_norms.is_empty() {
            let mut f = Vec::with_capacity(d);
            self.cell_norms = (0..gh * gw)
                .map(|i| {
                    f.clear();
                    self.grid.sample(i % gw, i / gw, &mut f);
                    f.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6)
                })
                .collect();
        }
        let (cols, rows) = (self.grid.cols, self.grid.rows);
        let mut f = Vec::with_capacity(d);
        for c in 0..k {
            if bias[c] < -19.0 {
                continue;
            }
            // The clicked cells: unit feature vectors, and whether each is of the class.
            let (mut ex, mut is) = (Vec::new(), Vec::new());
            for input in &self.inputs {
                let Some((yes, pts)) = input.says(c) else { continue };
                for [x, y] in pts.into_iter().take(8) {
                    let (cx, cy) = (
                        ((x / CELL as f64) as usize).min(cols - 1),
                        ((y / CELL as f64) as usize).min(rows - 1),
                    );
                    f.clear();
                    self.grid.sample(cx, cy, &mut f);
                    let n = f.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
                    ex.extend(f.iter().map(|v| v / n));
                    is.push(yes);
                }
            }
            let m = is.len();
            if m == 0 || !is.contains(&true) {
                continue;
            }
            let sims = self.grid.project(&ex, &vec![0.0; m]);
            let plane = gh * gw;
            let z = &mut coarse[c * plane..(c + 1) * plane];
            for (i, zi) in z.iter_mut().enumerate() {
                let (mut pos, mut neg) = (f32::MIN, 0f32);
                for (j, &yes) in is.iter().enumerate() {
                    let s = sims[j * plane + i] / self.cell_norms[i];
                    if yes {
                        pos = pos.max(s);
                    } else {
                        neg = neg.max(s);
                    }
                }
                *zi += self.opts.exemplar_weight * (pos - neg);
            }
        }
    }

    /// SAM's probability of class `k` at every pixel, prompted with the class's points (its
    /// negative points and other classes' positive ones as "not"), points along its strokes, and
    /// its last box; None when nothing marks the class.
    fn sam_probabilities(&self, sam: &SamState, k: usize) -> Result<Option<Vec<f32>>> {
        let mut prompt = crate::sam::Prompt::default();
        let mut positives = 0;
        let s = sam.scale;
        for input in &self.inputs {
            if let Input::Box {
                x0,
                y0,
                x1,
                y1,
                class,
            } = input
            {
                if *class == k {
                    prompt.box_xyxy = Some([*x0 as f32 * s, *y0 as f32 * s, *x1 as f32 * s, *y1 as f32 * s]);
                    positives += 1;
                }
                continue;
            }
            let Some((label, pts)) = input.says(k) else {
                continue;
            };
            positives += usize::from(label);
            // A stroke gives a few of its points.
            let step = (pts.len() / 4).max(1);
            for [x, y] in pts.into_iter().step_by(step) {
                prompt.points.push((x as f32 * s, y as f32 * s, label));
            }
        }
        if positives == 0 {
            return Ok(None);
        }
        let multimask = prompt.points.len() == 1 && prompt.box_xyxy.is_none();
        let (masks, iou) = sam.model.predict(&sam.embedding, &prompt, multimask)?;
        // With one click SAM offers three masks: take the one it rates best.
        let best = if multimask {
            let v: Vec<f32> = iou.flatten_all()?.to_vec1()?;
            v.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i)
        } else {
            0
        };
        let low = masks.get(0)?.get(best)?;
        let logits = sam.model.to_image(&low, s, (self.info.width, self.info.height))?;
        let v: Vec<f32> = logits.flatten_all()?.to_vec1()?;
        Ok(Some(v.into_iter().map(sigmoid).collect()))
    }

    /// The superpixels the inputs mark as class `k` (1) or not (0): points and scribbles of the
    /// class, and positive ones of other classes.
    fn seeds(&self, k: usize, sp: &Superpixels) -> Vec<(usize, f32)> {
        let (w, h) = (self.info.width as usize, self.info.height as usize);
        let at = |x: f64, y: f64| sp.labels[(y as usize).min(h - 1) * w + (x as usize).min(w - 1)] as usize;
        let mut out = Vec::new();
        for input in &self.inputs {
            let Some((is, points)) = input.says(k) else {
                continue;
            };
            let t = if is { 1.0 } else { 0.0 };
            for (x, y) in stroke_cells(&points, |x, y| (x as usize, y as usize)) {
                out.push((at(x as f64, y as f64), t));
            }
        }
        out
    }

    /// Refits the head (when `fit`) and recomputes the mask.
    fn update(&mut self, fit: bool) -> Result<Update> {
        let t0 = Instant::now();
        // A SAM session has no probe to fit.
        let samples = if self.sam.is_some() {
            Samples::new(0)
        } else {
            self.samples()
        };
        if fit && self.sam.is_none() {
            self.head.fit(&samples, &self.opts.head);
        }
        let fit_ms = t0.elapsed().as_secs_f64() * 1e3;
        let k = self.classes.len();
        let (w, h) = (self.info.width as usize, self.info.height as usize);
        let mut probs = vec![0f32; k * w * h];
        let t1 = Instant::now();
        if let Some(sam) = &self.sam {
            for c in 0..k {
                if let Some(p) = self.sam_probabilities(sam, c)? {
                    probs[c * w * h..(c + 1) * w * h].copy_from_slice(&p);
                }
            }
        } else if k > 0 {
            let bias: Vec<f32> = (0..k).map(|c| self.head.effective_bias(c, &samples)).collect();
            let mut coarse = self.grid.project(&self.head.weights, &bias);
            let (gh, gw) = self.grid.padded();
            if self.opts.exemplar_weight > 0.0 {
                self.add_exemplar_term(&mut coarse, k, &bias);
            }
            let (ph, pw) = (gh * CELL, gw * CELL);
            let mut full = vec![0f32; ph * pw];
            for c in 0..k {
                full.fill(0.0);
                features::upsample_add(
                    &coarse[c * gh * gw..(c + 1) * gh * gw],
                    (gh, gw),
                    &mut full,
                    (ph, pw),
                );
                let p = &mut probs[c * w * h..(c + 1) * w * h];
                for y in 0..h {
                    for (o, z) in p[y * w..(y + 1) * w].iter_mut().zip(&full[y * pw..y * pw + w]) {
                        *o = sigmoid(*z);
                    }
                }
            }
        }
        let predict_ms = t1.elapsed().as_secs_f64() * 1e3;
        let t2 = Instant::now();
        if let Some(sp) = &self.superpixels {
            let mut sum = vec![0f32; sp.count];
            let mut n = vec![0u32; sp.count];
            for &l in &sp.labels {
                n[l as usize] += 1;
            }
            for c in 0..k {
                let p = &mut probs[c * w * h..(c + 1) * w * h];
                sum.fill(0.0);
                for (v, &l) in p.iter().zip(&sp.labels) {
                    sum[l as usize] += v;
                }
                let mut q: Vec<f32> = sum.iter().zip(&n).map(|(s, &n)| s / n.max(1) as f32).collect();
                if let Some(graph) = &self.graph {
                    let seeds = self.seeds(c, sp);
                    if !seeds.is_empty() {
                        q = graph.solve(&q, &seeds, self.opts.propagation, PROPAGATION_ITERATIONS);
                    }
                }
                for (v, &l) in p.iter_mut().zip(&sp.labels) {
                    *v = q[l as usize];
                }
            }
        }
        if let Some(guide) = &self.guide {
            for c in 0..k {
                if self.head.effective_bias(c, &samples) > -19.0 {
                    guide.filter(&mut probs[c * w * h..(c + 1) * w * h], self.opts.refine.eps);
                }
            }
        }
        let refine_ms = t2.elapsed().as_secs_f64() * 1e3;
        let mut class_pixels = vec![0u64; k + 1];
        for i in 0..w * h {
            let mut best = (IGNORE, 0.5f32);
            for c in 0..k {
                let p = probs[c * w * h + i];
                if p > best.1 {
                    best = (c as u8, p);
                }
            }
            self.labels[i] = best.0;
            class_pixels[if best.0 == IGNORE { k } else { usize::from(best.0) }] += 1;
        }
        Ok(Update {
            inputs: self.inputs.len(),
            class_pixels,
            fit_ms,
            predict_ms,
            refine_ms,
            total_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// The mask as an RGBA PNG: each class in its colour (or the class map's default one), transparent
    /// where none.
    pub fn overlay_png(&self) -> Result<Vec<u8>> {
        use image::codecs::png::{CompressionType, FilterType, PngEncoder};
        use image::ImageEncoder;
        let colours: Vec<[u8; 3]> = self
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| c.color.unwrap_or_else(|| crate::predict::default_colour(i)))
            .collect();
        let mut rgba = Vec::with_capacity(self.labels.len() * 4);
        for &v in &self.labels {
            match colours.get(usize::from(v)) {
                Some(c) => rgba.extend_from_slice(&[c[0], c[1], c[2], 255]),
                None => rgba.extend_from_slice(&[0, 0, 0, 0]),
            }
        }
        let mut out = Vec::new();
        PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub)
            .write_image(
                &rgba,
                self.info.width,
                self.info.height,
                image::ExtendedColorType::Rgba8,
            )
            .map_err(|e| Error::Invalid(format!("cannot encode the overlay: {e}")))?;
        Ok(out)
    }
}

/// Iterations of the propagation's Jacobi solver.
const PROPAGATION_ITERATIONS: usize = 100;

/// The cells a polyline passes through (each once, in order).
fn stroke_cells(points: &[[f64; 2]], cell: impl Fn(f64, f64) -> (usize, usize)) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let add = |c: (usize, usize), out: &mut Vec<(usize, usize)>| {
        if !out.contains(&c) {
            out.push(c);
        }
    };
    add(cell(points[0][0], points[0][1]), &mut out);
    for seg in points.windows(2) {
        let ([ax, ay], [bx, by]) = (seg[0], seg[1]);
        let steps = ((bx - ax).abs().max((by - ay).abs()) / (CELL as f64 / 2.0))
            .ceil()
            .max(1.0) as usize;
        for i in 1..=steps {
            let t = i as f64 / steps as f64;
            add(cell(ax + t * (bx - ax), ay + t * (by - ay)), &mut out);
        }
    }
    out
}

/// The cells of a band `band` cells wide just outside the cell box `a`-`b`, inside the grid.
fn ring_cells(
    a: (usize, usize),
    b: (usize, usize),
    band: usize,
    cols: usize,
    rows: usize,
) -> Vec<(usize, usize)> {
    let (x0, y0) = (a.0.saturating_sub(band), a.1.saturating_sub(band));
    let (x1, y1) = ((b.0 + band).min(cols - 1), (b.1 + band).min(rows - 1));
    let mut out = Vec::new();
    for r in y0..=y1 {
        for c in x0..=x1 {
            let inside = (a.0..=b.0).contains(&c) && (a.1..=b.1).contains(&r);
            if !inside {
                out.push((c, r));
            }
        }
    }
    out
}
