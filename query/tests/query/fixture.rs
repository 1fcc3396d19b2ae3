//! Synthetic indexes on disk, built through the public writer API: clustered, L2-normalised
//! random vectors at random locations in a region, each row a small square footprint with its
//! centroid and H3 cells. One shared index serves every test of the binary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nadir_indexer::manifest::SceneEntry;
use nadir_indexer::raster::{RasterOptions, Window};
use nadir_indexer::writer::SceneRows;
use nadir_indexer::{cells, Index, IndexWriter, ModelInfo, PatchId, PatchRecord, Tiling};
use nadir_query::plan::Candidates;
use nadir_query::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// What to build.
#[derive(Debug, Clone)]
pub struct Spec {
    pub rows: usize,
    pub dim: usize,
    pub clusters: usize,
    /// Per-dimension standard deviation of the noise around a cluster centre (of norm 1).
    pub noise: f32,
    /// `[min_lon, min_lat, max_lon, max_lat]` the centroids are drawn from.
    pub region: [f64; 4],
    /// Side of a footprint in degrees.
    pub footprint_deg: f64,
    pub rows_per_scene: usize,
    pub seed: u64,
}

/// The shared index: 10k rows of 64-d vectors in a 2 x 2 degree region (the HNSW build takes
/// most of its ~15 s on a busy 2-core machine).
pub const SHARED: Spec = Spec {
    rows: 10_000,
    dim: 64,
    clusters: 16,
    noise: 0.1,
    region: [10.0, 44.0, 12.0, 46.0],
    footprint_deg: 0.001,
    rows_per_scene: 1000,
    seed: 7,
};

/// A built index and the engine over it.
pub struct Fixture {
    pub spec: Spec,
    pub engine: Engine,
    _dir: tempfile::TempDir,
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn gaussian(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| StandardNormal.sample(rng)).collect()
}

/// Writes the index `spec` describes into `dir`.
pub fn build(dir: &Path, spec: &Spec) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let model = ModelInfo {
        name: "synthetic".into(),
        sha256: "0".repeat(64),
        dim: spec.dim,
        text: false,
        source: None,
    };
    let mut writer = IndexWriter::open(dir, model, Tiling::for_input(224), RasterOptions::default())?;
    let centres: Vec<Vec<f32>> = (0..spec.clusters)
        .map(|_| normalized(gaussian(&mut rng, spec.dim)))
        .collect();
    let [w, s, e, n] = spec.region;
    let side_m = spec.footprint_deg * 111_320.0;
    let res = cells::resolution_for_area(side_m * side_m * ((s + n) / 2.0).to_radians().cos());
    let half = spec.footprint_deg / 2.0;
    let mut made = 0;
    let mut scene = 0;
    while made < spec.rows {
        let count = spec.rows_per_scene.min(spec.rows - made);
        let id = format!("synthetic-{scene:05}");
        let (mut rows, mut vectors) = (Vec::with_capacity(count), Vec::with_capacity(count * spec.dim));
        for i in 0..count {
            let window = Window {
                x: (i % 100) as u32 * 224,
                y: (i / 100) as u32 * 224,
                width: 224,
                height: 224,
            };
            let (lon, lat) = (rng.random_range(w..e), rng.random_range(s..n));
            let centre = &centres[rng.random_range(0..spec.clusters)];
            let v: Vec<f32> = centre
                .iter()
                .map(|c| c + spec.noise * rng.sample::<f32, _>(StandardNormal))
                .collect();
            vectors.extend(normalized(v));
            rows.push(PatchRecord {
                id: PatchId::new(&id, &window),
                scene: id.clone(),
                window,
                footprint: Some(
                    geo::Rect::new((lon - half, lat - half), (lon + half, lat + half)).to_polygon(),
                ),
                centroid: Some((lon, lat)),
                h3: cells::cells_for(lon, lat, res).expect("a valid coordinate"),
                acquired_ms: Some(1_600_000_000_000 + (made + i) as i64 * 1000),
                gsd_m: Some(side_m / 224.0),
                tags: Vec::new(),
                labels: Vec::new(),
                thumb: (0, 0),
            });
        }
        let entry = SceneEntry {
            id: id.clone(),
            path: PathBuf::from(format!("/synthetic/{id}.tif")),
            sha256: format!("{scene:064x}"),
            part: String::new(),
            patches: 0,
            skipped: 0,
            width: 22_400,
            height: 224 * count.div_ceil(100) as u32,
            epsg: Some(4326),
            georeferenced: true,
            pixel_size_m: Some(side_m / 224.0),
            tags: Vec::new(),
        };
        writer.add_scene(SceneRows {
            entry,
            thumbnails: vec![Vec::new(); rows.len()],
            rows,
            vectors,
        })?;
        made += count;
        scene += 1;
    }
    writer.finish()?;
    Ok(())
}

/// Builds `spec` in a new temporary folder and opens it.
pub fn open(spec: &Spec) -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary folder");
    build(dir.path(), spec).expect("the synthetic index builds");
    let index = Index::open(dir.path()).expect("the synthetic index opens");
    assert_eq!(index.len(), spec.rows);
    assert!(index.ann().is_some(), "the graph is built");
    let engine = Engine::new(index, None).expect("an engine without encoder");
    Fixture {
        spec: spec.clone(),
        engine,
        _dir: dir,
    }
}

/// The index every test shares, built once per process.
pub fn shared() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let t = std::time::Instant::now();
        let f = open(&SHARED);
        eprintln!(
            "shared index of {} rows built in {:.1} s",
            SHARED.rows,
            t.elapsed().as_secs_f64()
        );
        f
    })
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The exact top `k` rows for `q` among `rows` but `exclude`: best score first, ties by row.
pub fn brute_force(index: &Index, q: &[f32], rows: &[u32], exclude: u32, k: usize) -> Vec<(u32, f32)> {
    let mut scored: Vec<(u32, f32)> = rows
        .iter()
        .filter(|&&r| r != exclude)
        .map(|&r| (r, dot(q, index.vector(r))))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(k);
    scored
}

/// The rows whose centroid `inside` accepts.
pub fn rows_inside(index: &Index, inside: impl Fn(f64, f64) -> bool) -> Vec<u32> {
    (0..index.len() as u32)
        .filter(|&r| index.record(r).centroid.is_some_and(|(x, y)| inside(x, y)))
        .collect()
}

/// The rows a plan allows, sorted.
pub fn candidate_rows(index: &Index, c: &Candidates) -> Vec<u32> {
    let total = index.len();
    match c {
        Candidates::All => (0..total as u32).collect(),
        Candidates::Rows(r) => r.clone(),
        Candidates::Area { area, .. } => rows_inside(index, |x, y| area.contains(x, y)),
    }
}
