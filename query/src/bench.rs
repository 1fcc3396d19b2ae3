//! `nadir bench query`: latency, throughput, recall and memory of the query path on a synthetic
//! index, printed as markdown tables.
//!
//! The data: `n` clustered, L2-normalised vectors (CLIP-like by default: clusters in a
//! `latent_dim`-d space projected to `dim` plus isotropic noise; `latent_dim` 0 gives noisy
//! clusters in the full space, the hard case) at uniform random locations in a 4 x 4 degree
//! region, and `queries` held-out vectors from the same distribution. Everything is derived from
//! the seed and the row number, so a rerun regenerates the same set, and `--dump` writes it (as
//! `.npy`) for `scripts/bench_ann_hnswlib.py`.
//!
//! The index is built through the real writer (parquet parts, HNSW, text index) and queried
//! through the real [`Engine`] (plan, geofilter, strategy choice, rerank): a stand-in encoder
//! answers the text `q<j>` with held-out query `j`. Ground truth is a brute-force scan. Then the
//! raw graph at several ef, and an experiment: a flat int8 scan (per-dimension min/max
//! calibration) of the top [`RESCORE`] rescored in f32.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nadir_clip::{Encoder, ModelId};
use nadir_indexer::ann::{dot, Ann, TopK};
use nadir_indexer::manifest::SceneEntry;
use nadir_indexer::raster::{RasterOptions, Window};
use nadir_indexer::writer::SceneRows;
use nadir_indexer::{cells, Index, IndexWriter, ModelInfo, PatchId, PatchRecord, Tiling};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::geofilter::GeoFilter;
use crate::request::SearchRequest;
use crate::search::{self, Strategy};

/// `[min_lon, min_lat, max_lon, max_lat]` of the synthetic locations.
pub const REGION: [f64; 4] = [5.0, 44.0, 9.0, 48.0];
/// Side of a synthetic footprint in degrees (~200 m).
const FOOTPRINT_DEG: f64 = 0.002;
/// Shares of the rows the bbox filters keep.
pub const SELECTIVITIES: [f64; 4] = [1.0, 0.1, 0.01, 0.001];
/// Results per query.
pub const K: usize = 10;
/// Rows the int8 scan hands to f32 rescoring.
pub const RESCORE: usize = 40;
const ROWS_PER_SCENE: usize = 1000;
/// Clusters of the synthetic data.
const CLUSTERS: u64 = 1000;
/// Spread of a cluster next to the distance between centres (latent space).
const SPREAD: f32 = 0.6;
/// Norm of the isotropic noise next to the norm of the projected signal.
const NOISE: f32 = 0.25;
/// Per-dimension noise of the full-space clusters (`latent_dim` 0).
const HARD_NOISE: f32 = 0.1;
/// Forced filtered-HNSW runs (for comparison with an exact scan) use at most this many queries.
const FORCED_QUERIES: usize = 100;
/// Queries whose plan is timed on its own.
const PLAN_QUERIES: usize = 200;

/// What to measure.
#[derive(Debug, Clone)]
pub struct QueryBench {
    pub n: usize,
    pub dim: usize,
    pub queries: usize,
    /// Intrinsic dimension of the clusters; 0: clusters in the full space (hard).
    pub latent_dim: usize,
    pub seed: u64,
    /// ef values of the raw graph sweep.
    pub efs: Vec<usize>,
    /// Where to build the index (kept, and reused when it holds this same data set); default: a
    /// temporary folder, removed afterwards.
    pub dir: Option<PathBuf>,
    /// Where to write the data set and ground truth as `.npy` for the hnswlib script.
    pub dump: Option<PathBuf>,
    /// Skip the int8 experiment.
    pub skip_int8: bool,
}

impl Default for QueryBench {
    fn default() -> Self {
        QueryBench {
            n: 1_000_000,
            dim: 512,
            queries: 1000,
            latent_dim: 48,
            seed: 1,
            efs: vec![10, 20, 40, 64, 80, 160, 320],
            dir: None,
            dump: None,
            skip_int8: false,
        }
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Index(nadir_indexer::Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// SplitMix64: a small, fast, seedable generator; one stream per row keeps the data identical
/// whatever the thread count.
#[derive(Debug, Clone)]
struct Rng(u64, Option<f32>);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03), None);
        r.next_u64();
        r
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller, both outputs used).
    fn normal(&mut self) -> f32 {
        if let Some(z) = self.1.take() {
            return z;
        }
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = std::f64::consts::TAU * u2;
        self.1 = Some((r * a.sin()) as f32);
        (r * a.cos()) as f32
    }
}

const STREAM_MODEL: u64 = 1 << 62;
const STREAM_QUERY: u64 = 1 << 61;
const STREAM_BBOX: u64 = 1 << 60;

/// The synthetic distribution.
#[derive(Debug)]
struct Synthetic {
    dim: usize,
    latent: usize,
    /// `latent x dim` projection (latent) or unused.
    projection: Vec<f32>,
    seed: u64,
    noise: f32,
}

impl Synthetic {
    fn new(o: &QueryBench) -> Self {
        let mut rng = Rng::new(o.seed, STREAM_MODEL);
        let latent = o.latent_dim;
        let scale = 1.0 / (o.dim as f32).sqrt();
        let projection = (0..latent * o.dim).map(|_| rng.normal() * scale).collect();
        // The projected signal has squared norm ~ latent * (1 + SPREAD^2).
        let noise = NOISE * (latent as f32 * (1.0 + SPREAD * SPREAD) / o.dim as f32).sqrt();
        Synthetic {
            dim: o.dim,
            latent,
            projection,
            seed: o.seed,
            noise,
        }
    }

    /// The centre of a cluster (latent space, or full space when `latent` is 0).
    fn centre(&self, c: u64) -> Vec<f32> {
        let mut rng = Rng::new(self.seed, STREAM_MODEL + 1 + c);
        let d = if self.latent > 0 { self.latent } else { self.dim };
        let v: Vec<f32> = (0..d).map(|_| rng.normal()).collect();
        if self.latent > 0 {
            v
        } else {
            normalized(v)
        }
    }

    /// The vector of `stream` (a row number or a query's stream).
    fn vector(&self, stream: u64, centres: &[Vec<f32>]) -> Vec<f32> {
        let mut rng = Rng::new(self.seed, stream);
        let c = &centres[(rng.next_u64() % centres.len() as u64) as usize];
        if self.latent == 0 {
            return normalized(c.iter().map(|x| x + HARD_NOISE * rng.normal()).collect());
        }
        let z: Vec<f32> = c.iter().map(|x| x + SPREAD * rng.normal()).collect();
        let mut v: Vec<f32> = (0..self.dim).map(|_| self.noise * rng.normal()).collect();
        for (zi, row) in z.iter().zip(self.projection.chunks_exact(self.dim)) {
            v.iter_mut().zip(row).for_each(|(a, p)| *a += zi * p);
        }
        normalized(v)
    }

    /// Vectors of streams `first..first + count`, row-major, on all cores.
    fn vectors(&self, first: u64, count: usize) -> Vec<f32> {
        let centres: Vec<Vec<f32>> = (0..CLUSTERS).map(|c| self.centre(c)).collect();
        let mut out = vec![0.0f32; count * self.dim];
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = count.div_ceil(threads).max(1) * self.dim;
        std::thread::scope(|s| {
            for (t, chunk) in out.chunks_mut(per).enumerate() {
                let centres = &centres;
                s.spawn(move || {
                    let start = (t * per / self.dim) as u64;
                    for (i, v) in chunk.chunks_exact_mut(self.dim).enumerate() {
                        v.copy_from_slice(&self.vector(first + start + i as u64, centres));
                    }
                });
            }
        });
        out
    }
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// The location of row `i`.
fn location(seed: u64, i: u64) -> (f64, f64) {
    let mut rng = Rng::new(seed ^ 0x5EED, i);
    let [w, s, e, n] = REGION;
    (w + rng.uniform() * (e - w), s + rng.uniform() * (n - s))
}

/// The bbox of query `j` keeping about `share` of the region (the whole region, widened, at 1).
pub fn bbox(seed: u64, j: usize, share: f64) -> [f64; 4] {
    let [w, s, e, n] = REGION;
    if share >= 1.0 {
        return [w - 0.01, s - 0.01, e + 0.01, n + 0.01];
    }
    let mut rng = Rng::new(
        seed,
        STREAM_BBOX + j as u64 * 16 + (share.log10().abs() * 3.0) as u64,
    );
    let (dx, dy) = ((e - w) * share.sqrt(), (n - s) * share.sqrt());
    let x = w + rng.uniform() * (e - w - dx);
    let y = s + rng.uniform() * (n - s - dy);
    [x, y, x + dx, y + dy]
}

/// Inside a bbox as the engine counts it (the open rectangle).
fn in_bbox(b: &[f64; 4], (x, y): (f64, f64)) -> bool {
    x > b[0] && x < b[2] && y > b[1] && y < b[3]
}

/// The stand-in encoder: text `q<j>` is held-out query `j`.
struct QueryTable {
    id: ModelId,
    dim: usize,
    queries: Vec<Vec<f32>>,
}

impl Encoder for QueryTable {
    fn model_id(&self) -> nadir_clip::Result<ModelId> {
        Ok(self.id.clone())
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn input_size(&self) -> u32 {
        224
    }
    fn embed_images(&self, _: &[nadir_clip::image::RgbImage]) -> nadir_clip::Result<Vec<Vec<f32>>> {
        Err(nadir_clip::Error::InvalidInput(
            "the benchmark encoder has no image tower".into(),
        ))
    }
    fn embed_texts(&self, texts: &[&str]) -> nadir_clip::Result<Vec<Vec<f32>>> {
        texts
            .iter()
            .map(|t| {
                t.strip_prefix('q')
                    .and_then(|j| j.parse::<usize>().ok())
                    .and_then(|j| self.queries.get(j).cloned())
                    .ok_or_else(|| nadir_clip::Error::InvalidInput(format!("no benchmark query {t:?}")))
            })
            .collect()
    }
}

fn model(dim: usize) -> ModelInfo {
    ModelInfo {
        name: "synthetic".into(),
        sha256: "0".repeat(64),
        dim,
        text: true,
        source: None,
    }
}

/// Resident memory of this process in bytes (VmRSS).
pub fn rss_bytes() -> usize {
    proc_kb("/proc/self/status", "VmRSS:") * 1024
}

/// Bytes of this process's memory backed by transparent huge pages (0 where not reported).
fn huge_page_bytes() -> usize {
    proc_kb("/proc/self/smaps_rollup", "AnonHugePages:") * 1024
}

/// The kB figure of the line starting with `key` in a /proc file (0 when absent).
fn proc_kb(file: &str, key: &str) -> usize {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        })
        .unwrap_or(0)
}

/// Bytes of the files in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// Exact top-K of every query over all rows (`allowed` None) or over its own allowed rows.
fn brute_force(
    vectors: &[f32],
    dim: usize,
    queries: &[Vec<f32>],
    allowed: Option<&[Vec<u32>]>,
) -> Vec<Vec<u32>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = queries.len().div_ceil(threads).max(1);
    let mut out = vec![Vec::new(); queries.len()];
    std::thread::scope(|s| {
        for (t, chunk) in out.chunks_mut(per).enumerate() {
            s.spawn(move || {
                const BLOCK: usize = 8;
                for (b, block) in chunk.chunks_mut(BLOCK).enumerate() {
                    let first = t * per + b * BLOCK;
                    let mut tops: Vec<TopK> = (0..block.len()).map(|_| TopK::new(K)).collect();
                    match allowed {
                        None => {
                            for (r, v) in vectors.chunks_exact(dim).enumerate() {
                                for (i, top) in tops.iter_mut().enumerate() {
                                    top.push(r as u32, dot(&queries[first + i], v));
                                }
                            }
                        }
                        Some(allowed) => {
                            for (i, top) in tops.iter_mut().enumerate() {
                                for &r in &allowed[first + i] {
                                    let v = &vectors[r as usize * dim..(r as usize + 1) * dim];
                                    top.push(r, dot(&queries[first + i], v));
                                }
                            }
                        }
                    }
                    for (slot, top) in block.iter_mut().zip(tops) {
                        *slot = top.into_rows();
                    }
                }
            });
        }
    });
    out
}

fn recall(found: &[u32], truth: &[u32]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    truth.iter().filter(|r| found.contains(r)).count() as f64 / truth.len() as f64
}

/// Latency percentiles and throughput of one configuration.
#[derive(Debug, Clone, Default)]
struct Timing {
    p50_ms: f64,
    p99_ms: f64,
    qps: f64,
}

fn timing(mut lat: Vec<Duration>) -> Timing {
    if lat.is_empty() {
        return Timing::default();
    }
    let total: Duration = lat.iter().sum();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    Timing {
        p50_ms: pct(0.50).as_secs_f64() * 1e3,
        p99_ms: pct(0.99).as_secs_f64() * 1e3,
        qps: lat.len() as f64 / total.as_secs_f64(),
    }
}

/// Writes `values` as a C-order `.npy` array of `shape`.
fn write_npy<T: Copy, const B: usize>(
    path: &Path,
    descr: &str,
    shape: &[usize],
    values: &[T],
    bytes: impl Fn(T) -> [u8; B],
) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let file = std::fs::File::create(path).map_err(|e| io_err(path, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut put = |b: &[u8]| w.write_all(b).map_err(|e| io_err(path, e));
    put(b"\x93NUMPY\x01\x00")?;
    put(&(header.len() as u16).to_le_bytes())?;
    put(header.as_bytes())?;
    for &v in values {
        put(&bytes(v))?;
    }
    w.flush().map_err(|e| io_err(path, e))
}

/// Builds the synthetic index in `dir`; returns (generate, write rows, finish) times.
fn build(dir: &Path, o: &QueryBench, synth: &Synthetic, log: &mut dyn Write) -> Result<[Duration; 3]> {
    let t = Instant::now();
    let vectors = synth.vectors(0, o.n);
    let generate = t.elapsed();
    let _ = writeln!(
        log,
        "generated {} vectors in {:.1} s",
        o.n,
        generate.as_secs_f64()
    );
    let t = Instant::now();
    let mut writer = IndexWriter::open(
        dir,
        model(o.dim),
        Tiling::for_input(224),
        RasterOptions::default(),
    )?;
    let side_m = FOOTPRINT_DEG * 111_320.0;
    let res = cells::resolution_for_area(side_m * side_m * 46f64.to_radians().cos());
    let half = FOOTPRINT_DEG / 2.0;
    for (scene, chunk) in vectors.chunks(ROWS_PER_SCENE * o.dim).enumerate() {
        let id = format!("bench-{scene:06}");
        let first = scene * ROWS_PER_SCENE;
        let rows: Vec<PatchRecord> = (0..chunk.len() / o.dim)
            .map(|i| {
                let window = Window {
                    x: (i % 100) as u32 * 224,
                    y: (i / 100) as u32 * 224,
                    width: 224,
                    height: 224,
                };
                let (lon, lat) = location(o.seed, (first + i) as u64);
                PatchRecord {
                    id: PatchId::new(&id, &window),
                    scene: id.clone(),
                    window,
                    footprint: Some(
                        geo::Rect::new((lon - half, lat - half), (lon + half, lat + half)).to_polygon(),
                    ),
                    centroid: Some((lon, lat)),
                    h3: cells::cells_for(lon, lat, res).unwrap_or_default(),
                    acquired_ms: None,
                    gsd_m: Some(side_m / 224.0),
                    tags: Vec::new(),
                    labels: Vec::new(),
                    thumb: (0, 0),
                }
            })
            .collect();
        let entry = SceneEntry {
            id: id.clone(),
            path: PathBuf::from(format!("/synthetic/{id}.tif")),
            sha256: format!("{scene:064x}"),
            part: String::new(),
            patches: 0,
            skipped: 0,
            width: 22_400,
            height: 2240,
            epsg: Some(4326),
            georeferenced: true,
            pixel_size_m: Some(side_m / 224.0),
            tags: Vec::new(),
        };
        writer.add_scene(SceneRows {
            entry,
            thumbnails: vec![Vec::new(); rows.len()],
            rows,
            vectors: chunk.to_vec(),
        })?;
    }
    writer.commit()?;
    let write = t.elapsed();
    drop(vectors);
    let _ = writeln!(
        log,
        "wrote the rows in {:.1} s; building the graph",
        write.as_secs_f64()
    );
    let t = Instant::now();
    writer.finish()?;
    let finish = t.elapsed();
    let _ = writeln!(
        log,
        "finished (HNSW + text index) in {:.1} s",
        finish.as_secs_f64()
    );
    std::fs::write(dir.join("bench.json"), fingerprint(o)).map_err(|e| io_err(dir, e))?;
    Ok([generate, write, finish])
}

/// What identifies the data set built into a folder.
fn fingerprint(o: &QueryBench) -> String {
    format!(
        "{{\"n\": {}, \"dim\": {}, \"latent_dim\": {}, \"seed\": {}, \"clusters\": {CLUSTERS}, \"version\": 1}}",
        o.n, o.dim, o.latent_dim, o.seed
    )
}

/// Per-dimension min/max calibrated 8-bit codes.
struct Int8 {
    dim: usize,
    min: Vec<f32>,
    scale: Vec<f32>,
    codes: Vec<u8>,
}

impl Int8 {
    fn new(vectors: &[f32], dim: usize) -> Self {
        let mut min = vec![f32::MAX; dim];
        let mut max = vec![f32::MIN; dim];
        for v in vectors.chunks_exact(dim) {
            for d in 0..dim {
                min[d] = min[d].min(v[d]);
                max[d] = max[d].max(v[d]);
            }
        }
        let scale: Vec<f32> = min
            .iter()
            .zip(&max)
            .map(|(a, b)| ((b - a) / 255.0).max(1e-12))
            .collect();
        let codes = vectors
            .chunks_exact(dim)
            .flat_map(|v| (0..dim).map(|d| ((v[d] - min[d]) / scale[d]).round().clamp(0.0, 255.0) as u8))
            .collect();
        Int8 {
            dim,
            min,
            scale,
            codes,
        }
    }

    /// The top `want` rows by the quantised score (the query folded into 12-bit weights: the
    /// per-query constant `q . min` does not change the order).
    fn scan(&self, q: &[f32], want: usize) -> Vec<u32> {
        debug_assert_eq!(self.min.len(), q.len());
        let w: Vec<f32> = q.iter().zip(&self.scale).map(|(a, s)| a * s).collect();
        let wmax = w.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-30);
        let wq: Vec<i16> = w.iter().map(|x| (x / wmax * 2047.0).round() as i16).collect();
        let mut top = TopK::new(want);
        for (r, c) in self.codes.chunks_exact(self.dim).enumerate() {
            let s: i32 = c
                .iter()
                .zip(&wq)
                .map(|(&c, &w)| i32::from(c) * i32::from(w))
                .sum();
            top.push(r as u32, s as f32);
        }
        top.into_rows()
    }
}

/// Runs the benchmark and prints its tables to `out` (progress to stderr).
pub fn run(o: &QueryBench, out: &mut dyn Write) -> Result<()> {
    let mut log = std::io::stderr();
    let synth = Synthetic::new(o);
    let (dir, temporary) = match &o.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("nadir-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let reuse = std::fs::read_to_string(dir.join("bench.json")).is_ok_and(|f| f == fingerprint(o));
    let times = if reuse {
        let _ = writeln!(log, "reusing the index in {}", dir.display());
        None
    } else {
        if dir.join("manifest.json").exists() {
            return Err(Error::bad(format!(
                "{} holds another index: give an empty folder",
                dir.display()
            )));
        }
        Some(build(&dir, o, &synth, &mut log)?)
    };
    let result = measure(o, &synth, &dir, times, out, &mut log);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn measure(
    o: &QueryBench,
    synth: &Synthetic,
    dir: &Path,
    times: Option<[Duration; 3]>,
    out: &mut dyn Write,
    log: &mut dyn Write,
) -> Result<()> {
    let queries: Vec<Vec<f32>> = synth
        .vectors(STREAM_QUERY, o.queries)
        .chunks_exact(o.dim)
        .map(<[f32]>::to_vec)
        .collect();
    let rss0 = rss_bytes();
    let t = Instant::now();
    let index = Index::open(dir)?;
    let open = t.elapsed();
    let rss_index = rss_bytes().saturating_sub(rss0);
    let n = index.len();
    if n != o.n {
        return Err(Error::bad(format!("the index holds {n} rows, expected {}", o.n)));
    }
    for i in [0, n / 2, n - 1] {
        let loc = location(o.seed, i as u64);
        if index.record(i as u32).centroid != Some(loc) {
            return Err(Error::bad("index rows are not in generation order"));
        }
    }
    let hnsw_dir = dir.join(
        index
            .manifest()
            .derived
            .as_ref()
            .and_then(|d| d.hnsw.clone())
            .ok_or_else(|| Error::bad("the index has no graph"))?,
    );
    let graph_bytes = dir_bytes(&hnsw_dir);
    let graph_memory = index.ann().map_or(0, Ann::memory_bytes);
    let text_time = {
        let t = Instant::now();
        let scratch = dir.join("bench-text.tmp");
        nadir_indexer::text::build(&scratch, index.records(), &|s: &str| s.to_string())?;
        let _ = std::fs::remove_dir_all(&scratch);
        t.elapsed()
    };

    let per = |b: f64| b / n as f64;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = writeln!(
        out,
        "\n## nadir bench query: n={n}, dim={}, latent_dim={}, queries={}, k={K}, {threads} threads, load {}\n",
        o.dim,
        o.latent_dim,
        o.queries,
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    let _ = writeln!(out, "| build and memory | value |\n|---|---:|");
    if times.is_some() {
        let _ = writeln!(
            out,
            "| note | built in this process: heap freed by the build may be reused, so the RSS rows may read \
             low; a second run with the same `--dir` measures a fresh process |"
        );
    }
    if let Some([gen, write, finish]) = times {
        let _ = writeln!(out, "| generate vectors | {:.1} s |", gen.as_secs_f64());
        let _ = writeln!(
            out,
            "| write rows (parquet parts) | {:.1} s |",
            write.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "| finish: HNSW build + text index | {:.1} s |",
            finish.as_secs_f64()
        );
        let hnsw = finish.saturating_sub(text_time);
        let _ = writeln!(
            out,
            "| of which HNSW build (finish - text index) | {:.1} s |",
            hnsw.as_secs_f64()
        );
    }
    let _ = writeln!(
        out,
        "| text index alone (rebuilt) | {:.1} s |",
        text_time.as_secs_f64()
    );
    let _ = writeln!(out, "| Index::open | {:.1} s |", open.as_secs_f64());
    let _ = writeln!(
        out,
        "| RSS of the opened index, per patch | {:.0} B |",
        per(rss_index as f64)
    );
    let _ = writeln!(
        out,
        "| of which the graph's links, per patch | {:.0} B |",
        per(graph_memory as f64)
    );
    let _ = writeln!(out, "| f32 vector, per patch | {} B |", 4 * o.dim);
    let _ = writeln!(
        out,
        "| in transparent huge pages (whole process) | {} MiB |",
        huge_page_bytes() >> 20
    );
    let _ = writeln!(
        out,
        "| graph file on disk, per patch | {:.0} B |",
        per(graph_bytes as f64)
    );
    let _ = out.flush();

    // Ground truth.
    let t = Instant::now();
    let vectors = index.vectors();
    let locs: Vec<(f64, f64)> = index
        .records()
        .iter()
        .map(|r| r.centroid.unwrap_or((0.0, 0.0)))
        .collect();
    let truth_all = brute_force(vectors, o.dim, &queries, None);
    let mut truth_by_share = Vec::new();
    for &share in &SELECTIVITIES {
        if share >= 1.0 {
            truth_by_share.push(truth_all.clone());
            continue;
        }
        let allowed: Vec<Vec<u32>> = (0..o.queries)
            .map(|j| {
                let b = bbox(o.seed, j, share);
                (0..n as u32).filter(|&r| in_bbox(&b, locs[r as usize])).collect()
            })
            .collect();
        truth_by_share.push(brute_force(vectors, o.dim, &queries, Some(&allowed)));
    }
    let _ = writeln!(log, "ground truth in {:.1} s", t.elapsed().as_secs_f64());

    if let Some(dump) = &o.dump {
        std::fs::create_dir_all(dump).map_err(|e| io_err(dump, e))?;
        let flat: Vec<f32> = queries.concat();
        write_npy(
            &dump.join("base.npy"),
            "<f4",
            &[n, o.dim],
            vectors,
            f32::to_le_bytes,
        )?;
        write_npy(
            &dump.join("queries.npy"),
            "<f4",
            &[o.queries, o.dim],
            &flat,
            f32::to_le_bytes,
        )?;
        let ll: Vec<f64> = locs.iter().flat_map(|&(x, y)| [x, y]).collect();
        write_npy(&dump.join("lonlat.npy"), "<f8", &[n, 2], &ll, f64::to_le_bytes)?;
        let boxes: Vec<f64> = (0..o.queries)
            .flat_map(|j| SELECTIVITIES.iter().flat_map(move |&s| bbox(o.seed, j, s)))
            .collect();
        write_npy(
            &dump.join("bboxes.npy"),
            "<f8",
            &[o.queries, SELECTIVITIES.len(), 4],
            &boxes,
            f64::to_le_bytes,
        )?;
        let mut gt = Vec::with_capacity(o.queries * (SELECTIVITIES.len() + 1) * K);
        for j in 0..o.queries {
            for t in std::iter::once(&truth_all).chain(&truth_by_share) {
                gt.extend((0..K).map(|i| t[j].get(i).map_or(-1, |&r| i64::from(r))));
            }
        }
        write_npy(
            &dump.join("gt.npy"),
            "<i8",
            &[o.queries, SELECTIVITIES.len() + 1, K],
            &gt,
            i64::to_le_bytes,
        )?;
        let meta = format!(
            "{{\"n\": {n}, \"dim\": {}, \"queries\": {}, \"k\": {K}, \"selectivities\": {:?}, \"efs\": {:?}, \"gt\": \"[query, none then each selectivity, k]\"}}\n",
            o.dim, o.queries, SELECTIVITIES, o.efs
        );
        std::fs::write(dump.join("meta.json"), meta).map_err(|e| io_err(dump, e))?;
        let _ = writeln!(log, "dumped the data set to {}", dump.display());
    }

    // The real query path.
    let encoder = QueryTable {
        id: index.model().id(),
        dim: o.dim,
        queries: queries.clone(),
    };
    let engine = Engine::new(index, Some(Box::new(encoder)))?;
    let _ = writeln!(
        out,
        "\nThrough `Engine::search` (plan, geofilter, strategy, rerank; single thread). \"kept\": mean share \
         of rows the filter allows (estimated from a sample where the area is too large to list, \
         then the walk tests each row it meets); plan: mean ms of `Engine::plan` alone.\n"
    );
    let _ = writeln!(
        out,
        "| filter | kept | strategy | plan ms | p50 ms | p99 ms | QPS | recall@10 |\n|---|---:|---|---:|---:|---:|---:|---:|"
    );
    let configs: Vec<Option<f64>> = std::iter::once(None)
        .chain(SELECTIVITIES.iter().map(|&s| Some(s)))
        .collect();
    for (c, share) in configs.iter().enumerate() {
        let truth = if c == 0 {
            &truth_all
        } else {
            &truth_by_share[c - 1]
        };
        let request = |j: usize| SearchRequest {
            text: Some(format!("q{j}")),
            geofilter: share.map(|s| GeoFilter {
                bbox: Some(bbox(o.seed, j, s).to_vec()),
                ..Default::default()
            }),
            k: K,
            negative_weight: 0.5,
            ..Default::default()
        };
        let (mut lat, mut rec, mut kept) = (Vec::with_capacity(o.queries), 0.0, 0usize);
        let mut strategies = Vec::new();
        for (j, truth) in truth.iter().enumerate() {
            let req = request(j);
            let t = Instant::now();
            let resp = engine.search(&req)?;
            lat.push(t.elapsed());
            let rows: Vec<u32> = resp
                .hits
                .iter()
                .filter_map(|h| h.patch_id.parse().ok().and_then(|id| engine.index().row_of(id)))
                .collect();
            rec += recall(&rows, truth);
            kept += resp.candidates;
            if !strategies.contains(&resp.strategy) {
                strategies.push(resp.strategy);
            }
        }
        let plan_n = o.queries.min(PLAN_QUERIES);
        let t = Instant::now();
        let mut plans = Vec::with_capacity(plan_n);
        for j in 0..plan_n {
            plans.push(engine.plan(&request(j))?);
        }
        let plan_ms = t.elapsed().as_secs_f64() * 1e3 / plan_n.max(1) as f64;
        let tm = timing(lat);
        let name = share.map_or("none".to_string(), |s| format!("bbox {}%", s * 100.0));
        let strategy = strategies
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join("+");
        let _ = writeln!(
            out,
            "| {name} | {:.3}% | {strategy} | {plan_ms:.2} | {:.2} | {:.2} | {:.0} | {:.4} |",
            100.0 * kept as f64 / (o.queries * n) as f64,
            tm.p50_ms,
            tm.p99_ms,
            tm.qps,
            rec / o.queries as f64
        );
        // Where the engine scans, the filtered graph walk it avoids, for comparison (a bbox
        // keeping every row plans as no filter, so it has none).
        if strategies == [Strategy::Exact] && share.is_some_and(|s| s < 1.0) {
            let (mut lat, mut rec) = (Vec::new(), 0.0);
            for (j, plan) in plans.iter().enumerate().take(FORCED_QUERIES) {
                let t = Instant::now();
                let (found, strategy) = search::execute_with(engine.index(), plan, 0);
                lat.push(t.elapsed());
                // An area holding no row is answered (empty) without the graph.
                debug_assert!(strategy == Strategy::HnswFiltered || plan.candidates.count(n) == 0);
                let rows: Vec<u32> = found.iter().map(|f| f.0).collect();
                rec += recall(&rows, &truth[j]);
            }
            let m = lat.len();
            let tm = timing(lat);
            let _ = writeln!(
                out,
                "| {name}, forced graph walk (execute only, {m} queries) | | HnswFiltered | | {:.2} | {:.2} | {:.0} | {:.4} |",
                tm.p50_ms,
                tm.p99_ms,
                tm.qps,
                rec / m.max(1) as f64
            );
        }
        let _ = out.flush();
        drop(plans);
    }

    // The raw graph.
    let ann = engine.index().ann().ok_or_else(|| Error::bad("no graph"))?;
    let _ = writeln!(
        out,
        "\nThe raw graph (`Ann::search`, k={K}, no filter, single thread):\n\n| ef | p50 ms | p99 ms | QPS | recall@10 |\n|---:|---:|---:|---:|---:|"
    );
    for &ef in &o.efs {
        let (mut lat, mut rec) = (Vec::with_capacity(o.queries), 0.0);
        for (j, q) in queries.iter().enumerate() {
            let t = Instant::now();
            let found = ann.search(engine.index().vectors(), q, K, ef, None);
            lat.push(t.elapsed());
            let rows: Vec<u32> = found.iter().map(|f| f.0).collect();
            rec += recall(&rows, &truth_all[j]);
        }
        let tm = timing(lat);
        let _ = writeln!(
            out,
            "| {ef} | {:.3} | {:.3} | {:.0} | {:.4} |",
            tm.p50_ms,
            tm.p99_ms,
            tm.qps,
            rec / o.queries as f64
        );
        let _ = out.flush();
    }

    if !o.skip_int8 {
        int8_experiment(o, engine.index(), &queries, &truth_all, out)?;
    }
    Ok(())
}

/// Flat int8 scan, without and with f32 rescoring of the top [`RESCORE`].
fn int8_experiment(
    o: &QueryBench,
    index: &Index,
    queries: &[Vec<f32>],
    truth: &[Vec<u32>],
    out: &mut dyn Write,
) -> Result<()> {
    let t = Instant::now();
    let q8 = Int8::new(index.vectors(), o.dim);
    let calibrate = t.elapsed();
    let n = index.len();
    let (mut lat, mut rec_raw, mut rec) = (Vec::with_capacity(queries.len()), 0.0, 0.0);
    for (j, q) in queries.iter().enumerate() {
        let t = Instant::now();
        let cand = q8.scan(q, RESCORE);
        let mut top = TopK::new(K);
        for &r in &cand {
            top.push(r, dot(q, index.vector(r)));
        }
        let found = top.into_rows();
        lat.push(t.elapsed());
        rec_raw += recall(&cand[..K.min(cand.len())], &truth[j]);
        rec += recall(&found, &truth[j]);
    }
    let tm = timing(lat);
    let m = queries.len() as f64;
    let _ = writeln!(
        out,
        "\nExperiment: flat int8 scan (per-dimension min/max calibration, 12-bit query weights, i32 sums), \
         single thread; calibration + encoding {:.1} s, codes {:.0} B/patch (+ {} B of calibration).\n",
        calibrate.as_secs_f64(),
        q8.codes.len() as f64 / n as f64,
        8 * o.dim
    );
    let _ = writeln!(
        out,
        "| method | bytes/patch in RAM | p50 ms | p99 ms | QPS | recall@10 |\n|---|---:|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        out,
        "| int8 scan, top {K} | {} | | | | {:.4} |",
        o.dim,
        rec_raw / m
    );
    let _ = writeln!(
        out,
        "| int8 scan, top {RESCORE} rescored in f32 | {} (+ {} f32 read for {RESCORE} rows) | {:.2} | {:.2} | {:.1} | {:.4} |",
        o.dim,
        4 * o.dim,
        tm.p50_ms,
        tm.p99_ms,
        tm.qps,
        rec / m
    );
    let _ = out.flush();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_deterministic_and_normalised() {
        let o = QueryBench {
            n: 10,
            dim: 32,
            latent_dim: 8,
            ..Default::default()
        };
        let s = Synthetic::new(&o);
        let a = s.vectors(0, 10);
        let b = s.vectors(5, 5);
        assert_eq!(&a[5 * 32..], &b[..]);
        for v in a.chunks_exact(32) {
            let n: f32 = v.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-5);
        }
        let hard = Synthetic::new(&QueryBench { latent_dim: 0, ..o });
        assert_eq!(hard.vectors(0, 3).len(), 3 * 32);
    }

    #[test]
    fn bboxes_keep_their_share_inside_the_region() {
        for share in SELECTIVITIES {
            let b = bbox(3, 7, share);
            let area = (b[2] - b[0]) * (b[3] - b[1]) / 16.0;
            if share < 1.0 {
                assert!((area - share).abs() < 1e-9 && b[0] >= REGION[0] && b[3] <= REGION[3]);
            }
        }
    }

    #[test]
    fn int8_scan_finds_the_nearest() {
        let o = QueryBench {
            n: 500,
            dim: 32,
            latent_dim: 8,
            ..Default::default()
        };
        let s = Synthetic::new(&o);
        let v = s.vectors(0, 500);
        let q8 = Int8::new(&v, 32);
        let q = v[32 * 17..32 * 18].to_vec();
        assert!(q8.scan(&q, 5).contains(&17));
        let truth = brute_force(&v, 32, &[q], None);
        assert_eq!(truth[0][0], 17);
    }

    #[test]
    fn npy_header_is_aligned() {
        let dir = std::env::temp_dir().join(format!("nadir-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        write_npy(&p, "<f4", &[2, 3], &[1.0f32; 6], f32::to_le_bytes).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(bytes.len(), 10 + header_len + 24);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
