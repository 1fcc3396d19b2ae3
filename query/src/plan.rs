//! Planning: a validated request becomes a [`Plan`]: one query vector (text, positives and
//! negatives combined as documented on [`SearchRequest`]) and the set of rows the filters allow
//! (keywords through tantivy, the geofilter through the H3 covering and exact containment, then
//! the time range), plus the example rows to leave out of the results.
//!
//! An area alone is listed only when it holds few rows, the ones an exact scan would read; its
//! size is first estimated from a sample of the rows of a coarse covering. A larger area stays a
//! test ([`Candidates::Area`]) that the graph walk applies to each row it meets: listing 100k rows
//! costs more than the walk itself (`nadir bench query`).

use std::collections::HashSet;
use std::ops::Range;

use nadir_clip::Encoder;
use nadir_indexer::{Index, PatchId};

use crate::cells::CellLookup;
use crate::error::{Error, Result};
use crate::geofilter::{Area, Containment, MAX_COVERING};
use crate::request::{Example, SearchRequest};
use crate::search::EXACT_SCAN_BYTES;

/// Rows tested to estimate how many rows an area holds.
const ESTIMATE_SAMPLES: usize = 4096;
/// Cells of the covering an estimate samples: coarse cells tile fast, and a sample does not mind
/// the extra rows around the area's edge.
const ESTIMATE_CELLS: usize = 64;

/// Rows a search may return.
#[derive(Debug, Clone, PartialEq)]
pub enum Candidates {
    /// No filter.
    All,
    /// Sorted row numbers.
    Rows(Vec<u32>),
    /// The rows whose centroid lies in `area`, about `estimate` of them: too many to list, so the
    /// graph walk tests each row it meets.
    Area { area: Area, estimate: usize },
}

impl Candidates {
    /// How many rows pass, out of `total` (estimated for [`Candidates::Area`]).
    pub fn count(&self, total: usize) -> usize {
        match self {
            Candidates::All => total,
            Candidates::Rows(r) => r.len(),
            Candidates::Area { estimate, .. } => *estimate,
        }
    }

    /// The rows that pass, in row order (an area's by testing every row).
    pub fn rows<'a>(&'a self, index: &'a Index) -> Box<dyn Iterator<Item = u32> + 'a> {
        let every = 0..index.len() as u32;
        match self {
            Candidates::All => Box::new(every),
            Candidates::Rows(rows) => Box::new(rows.iter().copied()),
            Candidates::Area { area, .. } => {
                let inside = area.containment();
                Box::new(every.filter(move |&r| centroid_inside(index, &inside, r)))
            }
        }
    }
}

/// The rows in both: `mine` (sorted, or every row when `None`) and `rows` (any order).
fn intersect(mine: Option<Vec<u32>>, mut rows: Vec<u32>) -> Vec<u32> {
    if !rows.is_sorted_by(|a, b| a < b) {
        rows.sort_unstable();
        rows.dedup();
    }
    let Some(mine) = mine else {
        return rows;
    };
    // Both sorted: merge.
    let mut both = Vec::with_capacity(mine.len().min(rows.len()));
    let mut theirs = rows.into_iter().peekable();
    for r in mine {
        while theirs.next_if(|&t| t < r).is_some() {}
        if theirs.next_if_eq(&r).is_some() {
            both.push(r);
        }
    }
    both
}

/// Whether the centroid of `row` lies inside. A row without a centroid or without H3 cells is
/// never inside: the H3 lookup, which lists areas' rows, cannot find it either.
#[inline]
pub fn centroid_inside(index: &Index, inside: &Containment<'_>, row: u32) -> bool {
    let r = index.record(row);
    !r.h3.is_empty() && r.centroid.is_some_and(|(lon, lat)| inside.contains(lon, lat))
}

/// A planned query.
#[derive(Debug, Clone)]
pub struct Plan {
    /// L2-normalised query vector.
    pub vector: Vec<f32>,
    pub candidates: Candidates,
    /// Example rows, left out of the results.
    pub exclude: HashSet<u32>,
    pub k: usize,
    pub min_score: Option<f32>,
}

/// Normalises in place; fails on a zero vector.
pub fn normalize(v: &mut [f32]) -> Result<()> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !(n > 1e-12 && n.is_finite()) {
        return Err(Error::bad(
            "the query vector is zero (the negatives cancel the rest)",
        ));
    }
    v.iter_mut().for_each(|x| *x /= n);
    Ok(())
}

fn mean(vectors: &[Vec<f32>], dim: usize) -> Option<Vec<f32>> {
    if vectors.is_empty() {
        return None;
    }
    let mut m = vec![0.0f32; dim];
    for v in vectors {
        m.iter_mut().zip(v).for_each(|(a, b)| *a += b);
    }
    m.iter_mut().for_each(|a| *a /= vectors.len() as f32);
    Some(m)
}

/// Combines the parts of a query: `normalize(t + mean(p) - w * mean(n))`.
pub fn combine(
    text: Option<&[f32]>,
    positives: &[Vec<f32>],
    negatives: &[Vec<f32>],
    w: f32,
    dim: usize,
) -> Result<Vec<f32>> {
    let mut q = vec![0.0f32; dim];
    if let Some(t) = text {
        q.iter_mut().zip(t).for_each(|(a, b)| *a += b);
    }
    if let Some(p) = mean(positives, dim) {
        q.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
    if let Some(n) = mean(negatives, dim) {
        q.iter_mut().zip(&n).for_each(|(a, b)| *a -= w * b);
    }
    normalize(&mut q)?;
    Ok(q)
}

/// The row of the patch whose footprint contains (lon, lat): the nearest centroid among the rows
/// whose footprint contains the point.
pub fn row_at(index: &Index, cells: &CellLookup, lon: f64, lat: f64) -> Option<u32> {
    use geo::{Contains, Distance, Haversine, Point};
    let p = Point::new(lon, lat);
    let mut rows = Vec::new();
    if let (Some(res), Ok(ll)) = (cells.resolution(), h3o::LatLng::new(lat, lon)) {
        // Footprints are small next to a resolution-3 cell; look in the point's cell and its ring.
        cells.rows_near([ll.to_cell(h3o::Resolution::Three.min(res))], &mut rows);
    }
    rows.into_iter()
        .filter(|&r| index.record(r).footprint.as_ref().is_some_and(|f| f.contains(&p)))
        .min_by(|&a, &b| {
            let d = |r: u32| {
                index
                    .record(r)
                    .centroid
                    .map_or(f64::MAX, |(x, y)| Haversine.distance(p, Point::new(x, y)))
            };
            d(a).total_cmp(&d(b))
        })
}

/// The rows whose centroid lies inside `area`, sorted: the H3 covering, then exact containment
/// over the lookup's centroids.
pub fn rows_in_area(index: &Index, cells: &CellLookup, area: &Area) -> Vec<u32> {
    let inside = area.containment();
    match cells
        .resolution()
        .and_then(|res| Some((res, area.covering(res, MAX_COVERING)?)))
    {
        Some((res, covering)) => list(index, cells, &ranges(cells, res, covering), &inside),
        None => scan_area(index, &inside),
    }
}

/// Every row whose centroid lies inside, by reading every record (an area that H3 cannot tile).
fn scan_area(index: &Index, inside: &Containment<'_>) -> Vec<u32> {
    (0..index.len() as u32)
        .filter(|&r| centroid_inside(index, inside, r))
        .collect()
}

/// The lookup's entry ranges near `covering`. Rows are keyed at `res`: a finer cell (an H3
/// filter's) looks in its ancestor there.
fn ranges(cells: &CellLookup, res: h3o::Resolution, covering: Vec<h3o::CellIndex>) -> Vec<Range<usize>> {
    cells.ranges_near(covering.into_iter().map(|c| c.parent(res).unwrap_or(c)))
}

/// The rows of the lookup's `ranges` whose centroid lies inside, sorted. The lookup yields each
/// row once, in cell order; a bitmap puts them in row order.
fn list(index: &Index, cells: &CellLookup, ranges: &[Range<usize>], inside: &Containment<'_>) -> Vec<u32> {
    let mut bits = vec![0u64; index.len().div_ceil(64)];
    for r in ranges {
        let (rows, centroids) = cells.entries(r.clone());
        for (&r, &(lon, lat)) in rows.iter().zip(centroids) {
            bits[r as usize / 64] |= u64::from(inside.contains(lon, lat)) << (r % 64);
        }
    }
    let mut rows = Vec::with_capacity(bits.iter().map(|w| w.count_ones() as usize).sum());
    for (i, &word) in bits.iter().enumerate() {
        let mut w = word;
        while w != 0 {
            rows.push(i as u32 * 64 + w.trailing_zeros());
            w &= w - 1;
        }
    }
    rows
}

/// The rows an area allows, when no other filter narrowed them first: none to list when it holds
/// the whole index; listed when it holds at most `list_limit` rows (estimated from a sample of a
/// coarse covering); else a test for the graph walk.
pub fn area_candidates(index: &Index, cells: &CellLookup, area: Area, list_limit: usize) -> Candidates {
    if cells.extent().is_some_and(|e| area.holds_rect(&e)) {
        return Candidates::All;
    }
    let inside = area.containment();
    let Some((res, coarse)) = cells
        .resolution()
        .and_then(|res| Some((res, area.covering(res, ESTIMATE_CELLS)?)))
    else {
        return Candidates::Rows(scan_area(index, &inside));
    };
    let near = ranges(cells, res, coarse);
    let total: usize = near.iter().map(Range::len).sum();
    if total > list_limit {
        let estimate = cells.estimate(&near, |x, y| inside.contains(x, y), ESTIMATE_SAMPLES);
        if estimate > list_limit {
            drop(inside);
            return Candidates::Area { area, estimate };
        }
        // Few rows in a large covering (a thin or scattered area): a finer one tests fewer.
        if total > 4 * list_limit.max(ESTIMATE_SAMPLES) {
            return Candidates::Rows(rows_in_area(index, cells, &area));
        }
    }
    Candidates::Rows(list(index, cells, &near, &inside))
}

/// The default `list_limit` of [`plan_with`]: twice the rows an exact scan reads at most, so that
/// every area the executor would scan is listed despite a sampling error.
pub fn list_limit(dim: usize) -> usize {
    2 * EXACT_SCAN_BYTES / (4 * dim.max(1))
}

/// Resolves examples to embeddings, and the rows they name.
fn examples(
    index: &Index,
    cells: &CellLookup,
    encoder: Option<&dyn Encoder>,
    list: &[Example],
    exclude: &mut HashSet<u32>,
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(list.len());
    for ex in list {
        let given = [
            ex.patch.is_some(),
            ex.lon.is_some() || ex.lat.is_some(),
            ex.image_base64.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(Error::bad(
                "an example needs exactly one of patch, lon with lat, or image_base64",
            ));
        }
        if let Some(id) = &ex.patch {
            let pid: PatchId = id.parse().map_err(Error::BadRequest)?;
            let row = index.row_of(pid).ok_or_else(|| Error::UnknownPatch(id.clone()))?;
            exclude.insert(row);
            out.push(index.vector(row).to_vec());
        } else if let Some(b64) = &ex.image_base64 {
            use base64::Engine as _;
            let enc = encoder.ok_or_else(|| {
                Error::bad(format!(
                    "model {} has no image tower here: use patch examples",
                    index.model().name
                ))
            })?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| Error::bad(format!("image_base64 is not base64: {e}")))?;
            let img = query_image(&bytes)?;
            out.extend(enc.embed_images(&[img])?);
        } else {
            let (Some(lon), Some(lat)) = (ex.lon, ex.lat) else {
                return Err(Error::bad("an example location needs both lon and lat"));
            };
            crate::geofilter::check_lonlat(lon, lat, "example lon, lat")?;
            let row = row_at(index, cells, lon, lat)
                .ok_or_else(|| Error::NothingAt(format!("no indexed patch contains ({lon}, {lat})")))?;
            exclude.insert(row);
            out.push(index.vector(row).to_vec());
        }
    }
    Ok(out)
}

/// Plans a request on an index.
pub fn plan(
    index: &Index,
    cells: &CellLookup,
    encoder: Option<&dyn Encoder>,
    req: &SearchRequest,
) -> Result<Plan> {
    plan_with(index, cells, encoder, req, list_limit(index.dim()))
}

/// [`plan`], listing the rows of an area alone only when it holds at most `list_limit` rows (0:
/// never; tests and benchmarks use it to reach [`Candidates::Area`] on small indexes).
pub fn plan_with(
    index: &Index,
    cells: &CellLookup,
    encoder: Option<&dyn Encoder>,
    req: &SearchRequest,
    list_limit: usize,
) -> Result<Plan> {
    req.validate()?;
    let dim = index.dim();
    let text = match req.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => {
            if !index.model().text {
                return Err(Error::bad(format!(
                    "model {} has no text tower: search this index with example patches or locations",
                    index.model().name
                )));
            }
            let enc = encoder.ok_or_else(|| {
                Error::bad(format!(
                    "the text encoder of model {} is not loaded",
                    index.model().name
                ))
            })?;
            Some(enc.embed_texts(&[t])?.remove(0))
        }
    };
    let mut exclude = HashSet::new();
    let positives = examples(index, cells, encoder, &req.positives, &mut exclude)?;
    let negatives = examples(index, cells, encoder, &req.negatives, &mut exclude)?;
    let vector = combine(text.as_deref(), &positives, &negatives, req.negative_weight, dim)?;

    // Keywords first: tantivy lists their rows, which the area then tests one by one. Else the
    // area's H3 covering finds its rows, or leaves it as a test for the walk. Time last, on the
    // rows the others kept (every row's record when they kept too many to list).
    let keywords = match req.keywords.as_deref().filter(|k| !k.trim().is_empty()) {
        None => None,
        Some(k) => {
            let text_index = index.text().ok_or_else(|| {
                Error::bad("the keyword index is being rebuilt; run `nadir index add` to finish it")
            })?;
            Some(intersect(None, text_index.matching_rows(k)?))
        }
    };
    let mut candidates = match (keywords, &req.geofilter) {
        (None, None) => Candidates::All,
        (Some(rows), None) => Candidates::Rows(rows),
        (None, Some(g)) => area_candidates(index, cells, g.area()?, list_limit),
        (Some(mut rows), Some(g)) => {
            let area = g.area()?;
            let inside = area.containment();
            rows.retain(|&r| centroid_inside(index, &inside, r));
            Candidates::Rows(rows)
        }
    };
    if let Some(t) = &req.time {
        let (from, to) = t.bounds()?;
        let in_time = |r: &u32| index.record(*r).acquired_ms.is_some_and(|t| t >= from && t <= to);
        candidates = Candidates::Rows(candidates.rows(index).filter(in_time).collect());
    }
    // A filter that keeps every row is no filter: the unfiltered graph walk is much faster.
    if matches!(&candidates, Candidates::Rows(r) if r.len() == index.len()) {
        candidates = Candidates::All;
    }
    Ok(Plan {
        vector,
        candidates,
        exclude,
        k: req.k,
        min_score: req.min_score,
    })
}

/// Largest side, in pixels, of an image query (the encoders see 224 px; a larger side is a
/// scene, which belongs in the index, or a decompression bomb).
pub const MAX_QUERY_IMAGE_SIDE: u32 = 4096;
/// Most bytes one image query may allocate while decoding.
pub const MAX_QUERY_IMAGE_ALLOC: u64 = 128 * 1024 * 1024;
/// Image queries decoded at once; more wait (up to [`IMAGE_DECODE_WAIT`]) for a turn.
pub const MAX_CONCURRENT_IMAGE_DECODES: usize = 2;
/// How long an image query waits for a turn before a 503.
pub const IMAGE_DECODE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The decodes running now (a counting semaphore: [`MAX_CONCURRENT_IMAGE_DECODES`]).
static DECODES: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// A turn to decode an image query, given back on drop.
struct DecodeTurn;

impl DecodeTurn {
    fn take() -> Result<DecodeTurn> {
        let (lock, freed) = &DECODES;
        let running = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (mut running, wait) = freed
            .wait_timeout_while(running, IMAGE_DECODE_WAIT, |n| *n >= MAX_CONCURRENT_IMAGE_DECODES)
            .unwrap_or_else(|p| p.into_inner());
        if wait.timed_out() && *running >= MAX_CONCURRENT_IMAGE_DECODES {
            return Err(Error::Busy(format!(
                "{MAX_CONCURRENT_IMAGE_DECODES} image queries are being decoded: retry shortly"
            )));
        }
        *running += 1;
        Ok(DecodeTurn)
    }
}

impl Drop for DecodeTurn {
    fn drop(&mut self) {
        let (lock, freed) = &DECODES;
        let mut running = lock.lock().unwrap_or_else(|p| p.into_inner());
        *running = running.saturating_sub(1);
        freed.notify_one();
    }
}

/// Decodes an image query within the size and memory limits, one of a few at a time: a 400
/// naming the limit for an image too large (checked from its header, before any pixel is
/// decoded), a 503 when too many are being decoded.
pub(crate) fn query_image(bytes: &[u8]) -> Result<nadir_clip::image::RgbImage> {
    use nadir_clip::image::{ImageReader, Limits};
    let reader = || {
        ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| Error::bad(format!("image_base64 is not an image: {e}")))
    };
    // The header alone: no pixel is decoded yet.
    let (w, h) = reader()?
        .into_dimensions()
        .map_err(|e| Error::bad(format!("image_base64 is not an image: {e}")))?;
    if w > MAX_QUERY_IMAGE_SIDE || h > MAX_QUERY_IMAGE_SIDE {
        return Err(Error::bad(format!(
            "image_base64 is {w} x {h} pixels; an image query is at most {MAX_QUERY_IMAGE_SIDE} pixels a side (index large images as scenes)"
        )));
    }
    let _turn = DecodeTurn::take()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_QUERY_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_QUERY_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_QUERY_IMAGE_ALLOC);
    let mut reader = reader()?;
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| Error::bad(format!("image_base64 is not an image within the limits: {e}")))?;
    Ok(img.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG of `w` x `h` black pixels, encoded for real when small; for a large one, the 1 x 1
    /// PNG with its header's size rewritten (a decompression bomb's header, no pixels behind it).
    fn png(w: u32, h: u32) -> Vec<u8> {
        use nadir_clip::image::{codecs::png::PngEncoder, ExtendedColorType, ImageEncoder};
        let (ew, eh) = if u64::from(w) * u64::from(h) <= 1 << 20 {
            (w, h)
        } else {
            (1, 1)
        };
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(&vec![0u8; (ew * eh) as usize], ew, eh, ExtendedColorType::L8)
            .unwrap();
        if (ew, eh) != (w, h) {
            // IHDR: 8 bytes signature, 4 length, 4 "IHDR", then width and height, then a CRC over
            // the type and the 13 data bytes.
            out[16..20].copy_from_slice(&w.to_be_bytes());
            out[20..24].copy_from_slice(&h.to_be_bytes());
            let crc = crc32(&out[12..29]);
            out[29..33].copy_from_slice(&crc.to_be_bytes());
        }
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn image_queries_are_bounded() {
        let small = query_image(&png(64, 48)).unwrap();
        assert_eq!(small.dimensions(), (64, 48));
        // A 12000 x 12000 bomb is refused from its header, at once.
        // (Its header's message: it never reached the decoder, which has no pixels to read.)
        let e = query_image(&png(12_000, 12_000)).unwrap_err().to_string();
        assert!(e.contains("12000 x 12000") && e.contains("at most 4096"), "{e}");
        let e = query_image(b"not an image").unwrap_err().to_string();
        assert!(e.contains("not an image"), "{e}");
        // The decode turns: never more than the cap at once.
        let turns: Vec<DecodeTurn> = (0..MAX_CONCURRENT_IMAGE_DECODES)
            .map(|_| DecodeTurn::take().unwrap())
            .collect();
        let waiter = std::thread::spawn(|| DecodeTurn::take().map(|_| ()));
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!waiter.is_finished(), "a third decode waits for a turn");
        drop(turns);
        assert!(
            waiter.join().unwrap().is_ok(),
            "and gets one when a turn is given back"
        );
    }

    #[test]
    fn combination_follows_the_documented_formula() {
        let t = [1.0, 0.0, 0.0];
        let p = vec![vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]];
        let n = vec![vec![1.0, 0.0, 0.0]];
        let q = combine(Some(&t), &p, &n, 0.5, 3).unwrap();
        // t + mean(p) - 0.5 n = (0.5, 0.5, 0.5)
        let e = 1.0 / 3f32.sqrt();
        assert!(q.iter().all(|x| (x - e).abs() < 1e-6), "{q:?}");
        assert!(combine(Some(&t), &[], &n, 1.0, 3).is_err());
    }

    #[test]
    fn candidates_intersect_as_sets() {
        let c = intersect(None, vec![9, 3, 3, 7, 1]);
        assert_eq!(c, vec![1, 3, 7, 9]);
        let c = intersect(Some(c), vec![0, 1, 2, 3, 8, 9, 10]);
        assert_eq!(c, vec![1, 3, 9]);
        assert_eq!(intersect(Some(c), vec![9, 2, 9]), vec![9]);
    }
}
