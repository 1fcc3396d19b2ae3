//! The H3 lookup of an index: every georeferenced row keyed by its cell at the finest resolution
//! all rows share, sorted, with the row's centroid stored alongside (struct of arrays), so that
//! exact containment reads sequential memory rather than the rows' records. The descendants of
//! any coarser cell are one contiguous range of that order (H3 keeps the parent's digits in the
//! high bits), so a covering cell at any resolution up to that one finds its entries with two
//! binary searches. Hierarchical descent is not geometric containment (H3 children overhang their
//! parent by a fraction of a cell), so a covering is first grown by one ring
//! ([`CellLookup::near`]); the ranges of the grown cells are merged, so each entry comes out once,
//! and exact containment is checked afterwards.

use std::ops::Range;

use geo::{Coord, Rect};
use h3o::{CellIndex, Resolution};
use nadir_indexer::PatchRecord;

/// Rows by H3 cell.
#[derive(Debug, Default)]
pub struct CellLookup {
    resolution: Option<Resolution>,
    /// The finest cell of each entry, sorted.
    keys: Vec<u64>,
    /// The row of each entry.
    rows: Vec<u32>,
    /// The (lon, lat) centroid of each entry's row; NaN for a row without one.
    centroids: Vec<(f64, f64)>,
    /// The bounding rectangle of the centroids, when every row of the index has one and H3 cells.
    extent: Option<Rect<f64>>,
}

const RES_OFFSET: u32 = 52;

/// The smallest and largest cell index at `res` descending from `cell` (same resolution field,
/// digits below the parent's set to 0 or 6).
fn descendant_range(cell: CellIndex, res: Resolution) -> (u64, u64) {
    let parent_res = u8::from(cell.resolution()) as u32;
    let res = u8::from(res) as u32;
    let mut lo = u64::from(cell) & !(0xF << RES_OFFSET) | (u64::from(res) << RES_OFFSET);
    let mut hi = lo;
    for digit in parent_res + 1..=res {
        let shift = (15 - digit) * 3;
        lo &= !(0b111 << shift);
        hi = hi & !(0b111 << shift) | (0b110 << shift);
    }
    (lo, hi)
}

impl CellLookup {
    /// Builds the lookup of `rows`.
    pub fn new(rows: &[PatchRecord]) -> Self {
        let finest = rows
            .iter()
            .filter(|r| !r.h3.is_empty())
            .map(|r| r.h3.len() - 1)
            .min();
        let Some(finest) = finest else {
            return CellLookup::default();
        };
        let mut entries: Vec<(u64, u32)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.h3.is_empty())
            .map(|(i, r)| (r.h3[finest], i as u32))
            .collect();
        entries.sort_unstable();
        let centroids = entries
            .iter()
            .map(|&(_, r)| rows[r as usize].centroid.unwrap_or((f64::NAN, f64::NAN)))
            .collect();
        let (keys, entry_rows): (Vec<u64>, Vec<u32>) = entries.into_iter().unzip();
        // Rows without a cell are never found by an area, so no area holds every row then.
        let extent = if entry_rows.len() == rows.len() {
            extent(rows)
        } else {
            None
        };
        let resolution = Resolution::try_from(finest as u8).ok();
        CellLookup {
            resolution,
            keys,
            rows: entry_rows,
            extent,
            centroids,
        }
    }

    /// The bounding rectangle of every row's centroid, `None` when a row has no centroid or no H3
    /// cells: an area that holds it holds every row.
    pub fn extent(&self) -> Option<Rect<f64>> {
        self.extent
    }

    /// The finest resolution a covering may use, `None` when no row is georeferenced.
    pub fn resolution(&self) -> Option<Resolution> {
        self.resolution
    }

    /// The entries whose finest cell descends from one of `cells` or a neighbour of one, as
    /// sorted, disjoint ranges: a superset of the rows whose centroid lies in `cells`. Cells finer
    /// than the lookup's resolution find nothing.
    pub(crate) fn ranges_near(&self, cells: impl IntoIterator<Item = CellIndex>) -> Vec<Range<usize>> {
        let Some(res) = self.resolution else {
            return Vec::new();
        };
        let mut grown: Vec<CellIndex> = cells
            .into_iter()
            .filter(|c| c.resolution() <= res)
            .flat_map(|c| c.grid_disk::<Vec<_>>(1))
            .collect();
        grown.sort_unstable();
        grown.dedup();
        let mut ranges: Vec<Range<usize>> = grown
            .into_iter()
            .map(|c| {
                let (lo, hi) = descendant_range(c, res);
                self.keys.partition_point(|&k| k < lo)..self.keys.partition_point(|&k| k <= hi)
            })
            .filter(|r| !r.is_empty())
            .collect();
        // Cells of one resolution give ordered, disjoint ranges; mixed resolutions may nest.
        ranges.sort_unstable_by_key(|r| r.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        merged
    }

    /// The rows whose finest cell descends from one of `cells` or a neighbour of one, each once,
    /// as slices of rows with their centroids (NaN without one): a superset of the rows whose
    /// centroid lies in `cells`.
    pub fn near(
        &self,
        cells: impl IntoIterator<Item = CellIndex>,
    ) -> impl Iterator<Item = (&[u32], &[(f64, f64)])> {
        self.ranges_near(cells)
            .into_iter()
            .map(|r| (&self.rows[r.clone()], &self.centroids[r]))
    }

    /// The rows and centroids of a range of entries ([`CellLookup::ranges_near`]).
    pub(crate) fn entries(&self, r: Range<usize>) -> (&[u32], &[(f64, f64)]) {
        (&self.rows[r.clone()], &self.centroids[r])
    }

    /// About how many entries of `ranges` have a centroid that `inside` accepts: `samples`
    /// entries spread evenly over them are tested (all of them when there are no more).
    pub(crate) fn estimate(
        &self,
        ranges: &[Range<usize>],
        inside: impl Fn(f64, f64) -> bool,
        samples: usize,
    ) -> usize {
        let total: usize = ranges.iter().map(Range::len).sum();
        let test = |i: usize| usize::from(inside(self.centroids[i].0, self.centroids[i].1));
        if total <= samples {
            return ranges.iter().flat_map(Range::clone).map(test).sum();
        }
        let stride = total as f64 / samples as f64;
        let (mut hits, mut range, mut before) = (0, 0, 0);
        for i in 0..samples {
            let at = ((i as f64 + 0.5) * stride) as usize;
            while at >= before + ranges[range].len() {
                before += ranges[range].len();
                range += 1;
            }
            hits += test(ranges[range].start + at - before);
        }
        (hits as f64 * stride).round() as usize
    }

    /// The rows of [`CellLookup::near`], appended to `out`.
    pub fn rows_near(&self, cells: impl IntoIterator<Item = CellIndex>, out: &mut Vec<u32>) {
        for r in self.ranges_near(cells) {
            out.extend_from_slice(&self.rows[r]);
        }
    }
}

/// The bounding rectangle of the rows' centroids, when every row has one.
fn extent(rows: &[PatchRecord]) -> Option<Rect<f64>> {
    let mut lo = Coord {
        x: f64::INFINITY,
        y: f64::INFINITY,
    };
    let mut hi = Coord {
        x: f64::NEG_INFINITY,
        y: f64::NEG_INFINITY,
    };
    for r in rows {
        let (x, y) = r.centroid.filter(|(x, y)| x.is_finite() && y.is_finite())?;
        lo = Coord {
            x: lo.x.min(x),
            y: lo.y.min(y),
        };
        hi = Coord {
            x: hi.x.max(x),
            y: hi.y.max(y),
        };
    }
    (!rows.is_empty()).then(|| Rect::new(lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use h3o::LatLng;

    #[test]
    fn descendants_are_one_range() {
        let fine = LatLng::new(14.59, 120.98).unwrap().to_cell(Resolution::Twelve);
        for r in 0..12u8 {
            let parent = fine.parent(Resolution::try_from(r).unwrap()).unwrap();
            let (lo, hi) = descendant_range(parent, Resolution::Twelve);
            let v = u64::from(fine);
            assert!(lo <= v && v <= hi, "res {r}");
            for child in parent.children(Resolution::Twelve).take(50) {
                assert!((lo..=hi).contains(&u64::from(child)));
            }
            let other = LatLng::new(-14.59, 10.0).unwrap().to_cell(Resolution::Twelve);
            assert!(!(lo..=hi).contains(&u64::from(other)));
        }
    }

    #[test]
    fn nearby_rows_come_out_once() {
        // Entries on a grid of points at resolution 9, around Manila.
        let res = Resolution::Nine;
        let mut entries: Vec<(u64, u32)> = (0..60 * 60)
            .map(|i| {
                let ll = LatLng::new(
                    14.5 + f64::from(i / 60) * 0.004,
                    120.9 + f64::from(i % 60) * 0.004,
                );
                (u64::from(ll.unwrap().to_cell(res)), i)
            })
            .collect();
        entries.sort_unstable();
        let (keys, rows): (Vec<u64>, Vec<u32>) = entries.into_iter().unzip();
        let lookup = CellLookup {
            resolution: Some(res),
            extent: None,
            centroids: vec![(0.0, 0.0); keys.len()],
            keys,
            rows,
        };
        // Overlapping cells of mixed resolutions, a duplicate, and one finer than the lookup's.
        let at = |r: Resolution| LatLng::new(14.56, 120.99).unwrap().to_cell(r);
        let cells = [
            at(Resolution::Six),
            at(Resolution::Seven),
            at(Resolution::Eight),
            at(Resolution::Eight),
            at(Resolution::Ten),
        ];
        let mut got: Vec<u32> = lookup
            .near(cells)
            .flat_map(|(rows, _)| rows.iter().copied())
            .collect();
        let n = got.len();
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), n, "a row came out twice");
        // The same rows as looking up each grown cell on its own.
        let mut expected = std::collections::BTreeSet::new();
        for c in cells
            .iter()
            .filter(|c| c.resolution() <= res)
            .flat_map(|c| c.grid_disk::<Vec<_>>(1))
        {
            let (lo, hi) = descendant_range(c, res);
            let (keys, rows) = (&lookup.keys, &lookup.rows);
            expected.extend(
                (0..keys.len())
                    .filter(|&i| (lo..=hi).contains(&keys[i]))
                    .map(|i| rows[i]),
            );
        }
        assert!(n > 100);
        assert_eq!(got, expected.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn estimates_are_close_and_exact_when_small() {
        // 10,000 entries in 40 ranges of 250; the centroid's x is the entry's place.
        let n = 10_000;
        let lookup = CellLookup {
            resolution: Some(Resolution::Nine),
            keys: (0..n as u64).collect(),
            rows: (0..n as u32).collect(),
            centroids: (0..n).map(|i| (i as f64, 0.0)).collect(),
            extent: None,
        };
        let ranges: Vec<Range<usize>> = (0..40).map(|i| i * 250..(i + 1) * 250).collect();
        for cut in [0.0, 100.0, 2_500.0, 7_000.0, 10_000.0] {
            let inside = |x: f64, _: f64| x < cut;
            assert_eq!(
                lookup.estimate(&ranges, inside, n),
                cut as usize,
                "exact at {cut}"
            );
            let e = lookup.estimate(&ranges, inside, 512) as f64;
            assert!((e - cut).abs() <= 0.01 * n as f64, "{e} for {cut}");
        }
        // Scattered ranges: only their entries count.
        let odd: Vec<Range<usize>> = (0..40)
            .filter(|i| i % 2 == 1)
            .map(|i| i * 250..(i + 1) * 250)
            .collect();
        assert_eq!(lookup.estimate(&odd, |_, _| true, 64), 5_000);
    }
}
