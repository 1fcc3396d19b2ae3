//! H3 keys of a patch (h3o): the cell containing its centroid at the resolution whose average
//! cell area is closest to the patch's ground area, and at every coarser resolution. `cells[r]`
//! is the cell at resolution `r` that contains the centroid. That is not always the hierarchical
//! parent of the finest cell: H3 children do not tile their parent exactly, and near a border
//! the two differ by one neighbour (found by the property test in `tests/indexer/pipeline.rs`).

use h3o::{LatLng, Resolution};

/// The resolution whose average cell area is closest (in log scale) to `area_m2`.
pub fn resolution_for_area(area_m2: f64) -> Resolution {
    Resolution::range(Resolution::Zero, Resolution::Fifteen)
        .min_by(|a, b| {
            let da = (a.area_m2().ln() - area_m2.ln()).abs();
            let db = (b.area_m2().ln() - area_m2.ln()).abs();
            da.total_cmp(&db)
        })
        .expect("16 resolutions")
}

/// The cells containing (lon, lat) from resolution 0 to `finest`, as u64, or `None` for an
/// invalid coordinate.
pub fn cells_for(lon: f64, lat: f64, finest: Resolution) -> Option<Vec<u64>> {
    let ll = LatLng::new(lat, lon).ok()?;
    Some(
        Resolution::range(Resolution::Zero, finest)
            .map(|r| u64::from(ll.to_cell(r)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_matches_the_patch_area() {
        // A 22 m patch (224 px at 0.1 m) is ~500 m2: resolution 12 (~307 m2) or 11 (~2,150 m2).
        assert_eq!(resolution_for_area(22.4 * 22.4), Resolution::Twelve);
        // A 2.24 km Sentinel-2 chip: ~5 km2, resolution 7 (~5.2 km2).
        assert_eq!(resolution_for_area(2240.0 * 2240.0), Resolution::Seven);
        let cells = cells_for(120.98, 14.59, Resolution::Twelve).unwrap();
        assert_eq!(cells.len(), 13);
        let ll = LatLng::new(14.59, 120.98).unwrap();
        assert_eq!(u64::from(ll.to_cell(Resolution::Five)), cells[5]);
    }
}
