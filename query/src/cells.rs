//! The H3 lookup of an index: every georeferenced row keyed by its cell at the finest resolution
//! all rows share, sorted. The descendants of any coarser cell are one contiguous range of that
//! order (H3 keeps the parent's digits in the high bits), so a covering cell at any resolution
//! up to that one finds its rows with two binary searches. Hierarchical descent is not geometric
//! containment (H3 children overhang their parent by a fraction of a cell), so a covering is first
//! grown by one ring ([`CellLookup::rows_near`]); exact containment is checked afterwards.

use h3o::{CellIndex, Resolution};
use nadir_indexer::PatchRecord;

/// Rows by H3 cell.
#[derive(Debug, Default)]
pub struct CellLookup {
    resolution: Option<Resolution>,
    entries: Vec<(u64, u32)>,
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
        let resolution = Resolution::try_from(finest as u8).ok();
        CellLookup { resolution, entries }
    }

    /// The finest resolution a covering may use, `None` when no row is georeferenced.
    pub fn resolution(&self) -> Option<Resolution> {
        self.resolution
    }

    /// Rows whose finest cell descends from `cell` or one of its neighbours: a superset of the
    /// rows whose centroid lies in `cell`.
    pub fn rows_near(&self, cells: impl IntoIterator<Item = CellIndex>, out: &mut Vec<u32>) {
        let grown: std::collections::HashSet<CellIndex> =
            cells.into_iter().flat_map(|c| c.grid_disk::<Vec<_>>(1)).collect();
        for c in grown {
            self.rows_in(c, out);
        }
    }

    /// Rows whose finest cell descends from `cell` (a cell at this resolution or coarser).
    pub fn rows_in(&self, cell: CellIndex, out: &mut Vec<u32>) {
        let Some(res) = self.resolution else { return };
        if cell.resolution() > res {
            return;
        }
        let (lo, hi) = descendant_range(cell, res);
        let start = self.entries.partition_point(|e| e.0 < lo);
        let end = self.entries.partition_point(|e| e.0 <= hi);
        out.extend(self.entries[start..end].iter().map(|e| e.1));
    }
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
}
