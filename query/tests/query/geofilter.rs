//! Geofilter invariants on the shared index, for random bboxes, polygons with holes, H3 cell
//! sets and circles: every result's centroid lies inside the area (checked here without the
//! engine's geometry: bounds, ray casting, h3o cells, haversine), on the exact path and on the
//! filtered graph walk; the rows the plan allows are exactly the rows inside; and the results are
//! the brute-force top-k of those rows.

use geo::{Distance, Haversine, Point};
use h3o::{CellIndex, LatLng, Resolution};
use nadir_query::search::{self, Strategy};
use nadir_query::{Example, GeoFilter, SearchRequest};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::json;

use crate::fixture::{self, brute_force, candidate_rows, rows_inside};

const K: usize = 10;

/// Searches like `patch` within `filter` and checks the invariants against `inside`.
fn check(example: usize, filter: GeoFilter, inside: impl Fn(f64, f64) -> bool) -> Result<(), TestCaseError> {
    let fx = fixture::shared();
    let index = fx.engine.index();
    let example = (example % index.len()) as u32;
    let req = SearchRequest {
        positives: vec![Example {
            patch: Some(index.record(example).id.to_string()),
            ..Default::default()
        }],
        geofilter: Some(filter),
        k: K,
        negative_weight: 0.5,
        ..Default::default()
    };
    let resp = fx
        .engine
        .search(&req)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for hit in &resp.hits {
        let [lon, lat] = hit.centroid.expect("every row is georeferenced");
        prop_assert!(
            inside(lon, lat),
            "hit {} at ({lon}, {lat}) lies outside",
            hit.patch_id
        );
    }
    let expected_rows = rows_inside(index, &inside);
    let plan = fx
        .engine
        .plan(&req)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let allowed = candidate_rows(index, &plan.candidates);
    if allowed != expected_rows {
        let missing: Vec<_> = expected_rows
            .iter()
            .filter(|r| allowed.binary_search(r).is_err())
            .collect();
        let extra: Vec<_> = allowed
            .iter()
            .filter(|r| expected_rows.binary_search(r).is_err())
            .collect();
        prop_assert!(
            false,
            "{} rows inside, {} allowed: missing {:?}, extra {:?}",
            expected_rows.len(),
            allowed.len(),
            &missing[..missing.len().min(5)],
            &extra[..extra.len().min(5)]
        );
    }
    prop_assert_eq!(resp.candidates, expected_rows.len());
    let expected: Vec<String> = brute_force(index, &plan.vector, &expected_rows, example, K)
        .into_iter()
        .map(|(r, _)| index.record(r).id.to_string())
        .collect();
    let got: Vec<String> = resp.hits.iter().map(|h| h.patch_id.clone()).collect();
    prop_assert_eq!(&got, &expected, "strategy {:?}", resp.strategy);
    // The filtered graph walk keeps the invariant too.
    let (found, strategy) = search::execute_with(index, &plan, 0);
    if !allowed.is_empty() {
        prop_assert_eq!(strategy, Strategy::HnswFiltered);
    }
    for (r, _) in found {
        let (lon, lat) = index.record(r).centroid.expect("georeferenced");
        prop_assert!(inside(lon, lat), "graph hit {r} at ({lon}, {lat}) lies outside");
    }
    // Planned with no listing (an area alone stays a test the walk applies row by row): the area
    // it keeps holds the same rows, walked hits lie inside, and scanning it is exact.
    let lazy = fx
        .engine
        .plan_with(&req, 0)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&candidate_rows(index, &lazy.candidates), &expected_rows);
    for (r, _) in search::execute_with(index, &lazy, 0).0 {
        let (lon, lat) = index.record(r).centroid.expect("georeferenced");
        prop_assert!(
            inside(lon, lat),
            "lazy graph hit {r} at ({lon}, {lat}) lies outside"
        );
    }
    let (found, strategy) = search::execute_with(index, &lazy, usize::MAX / 2);
    prop_assert_eq!(strategy, Strategy::Exact);
    let found: Vec<String> = found
        .into_iter()
        .map(|(r, _)| index.record(r).id.to_string())
        .collect();
    prop_assert_eq!(found, expected);
    Ok(())
}

/// Even-odd ray casting over every ring.
fn in_rings(rings: &[Vec<[f64; 2]>], x: f64, y: f64) -> bool {
    let mut inside = false;
    for ring in rings {
        for w in ring.windows(2) {
            let ([x0, y0], [x1, y1]) = (w[0], w[1]);
            if (y0 > y) != (y1 > y) && x < x0 + (y - y0) / (y1 - y0) * (x1 - x0) {
                inside = !inside;
            }
        }
    }
    inside
}

/// A closed star-shaped ring around `c`: `radii.len()` vertices at jittered, evenly spread angles.
fn star(c: [f64; 2], radii: &[f64], jitter: &[f64], clockwise: bool) -> Vec<[f64; 2]> {
    let n = radii.len();
    let mut ring: Vec<[f64; 2]> = (0..n)
        .map(|i| {
            let a = (i as f64 + 0.8 * jitter[i]) * std::f64::consts::TAU / n as f64;
            [c[0] + radii[i] * a.cos(), c[1] + radii[i] * a.sin()]
        })
        .collect();
    if clockwise {
        ring.reverse();
    }
    ring.push(ring[0]);
    ring
}

fn region() -> [f64; 4] {
    fixture::SHARED.region
}

/// A point of the region at (x, y) in [0, 1)^2, or, when `row` is given, that row's centroid (so
/// that small areas hold rows too).
fn anchor(x: f64, y: f64, row: Option<usize>) -> (f64, f64) {
    if let Some(r) = row {
        let index = fixture::shared().engine.index();
        return index
            .record((r % index.len()) as u32)
            .centroid
            .expect("georeferenced");
    }
    let [w0, s0, e0, n0] = region();
    (w0 + x * (e0 - w0), s0 + y * (n0 - s0))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn bbox_results_lie_inside_and_match_brute_force(
        example in any::<usize>(),
        x in -0.15..1.0f64, y in -0.15..1.0f64, row in prop::option::of(any::<usize>()),
        w in -3.0..0.4f64, h in -3.0..0.4f64,
    ) {
        // Boxes from 0.001 to 2.5 degrees wide, that may reach past the region.
        let (w, h) = (10f64.powf(w), 10f64.powf(h));
        let (x0, y0) = anchor(x, y, row);
        let (west, south) = if row.is_some() { (x0 - w / 2.0, y0 - h / 2.0) } else { (x0, y0) };
        let (east, north) = (west + w, south + h);
        let filter = GeoFilter { bbox: Some(vec![west, south, east, north]), ..Default::default() };
        check(example, filter, |lon, lat| lon > west && lon < east && lat > south && lat < north)?;
    }

    #[test]
    fn polygon_with_holes_results_lie_inside_and_match_brute_force(
        example in any::<usize>(),
        cx in 0.0..1.0f64, cy in 0.0..1.0f64, r in 0.02..1.2f64,
        outer in prop::collection::vec((0.6..1.0f64, 0.0..1.0f64), 5..12),
        hole in prop::collection::vec((0.05..0.2f64, 0.0..1.0f64), 4..8),
        hole_clockwise in any::<bool>(),
        with_hole in any::<bool>(),
    ) {
        let [w0, s0, e0, n0] = region();
        let c = [w0 + cx * (e0 - w0), s0 + cy * (n0 - s0)];
        let (radii, jitter): (Vec<f64>, Vec<f64>) = outer.into_iter().map(|(f, j)| (f * r, j)).unzip();
        let mut rings = vec![star(c, &radii, &jitter, false)];
        if with_hole {
            let (radii, jitter): (Vec<f64>, Vec<f64>) = hole.into_iter().map(|(f, j)| (f * r, j)).unzip();
            rings.push(star(c, &radii, &jitter, hole_clockwise));
        }
        let geojson = json!({"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": rings}});
        let filter = GeoFilter { geojson: Some(geojson), ..Default::default() };
        check(example, filter, |lon, lat| in_rings(&rings, lon, lat))?;
    }

    #[test]
    fn h3_cell_results_lie_inside_and_match_brute_force(
        example in any::<usize>(),
        picks in prop::collection::vec(
            (0.0..1.0f64, 0.0..1.0f64, prop::option::of(any::<usize>()), -6..=2i32, 0..2u32),
            1..6,
        ),
    ) {
        // Cells from 6 resolutions coarser than the rows' to 2 finer, some around rows.
        let finest = fixture::shared().engine.index().record(0).h3.len() as i32 - 1;
        let mut cells: Vec<CellIndex> = Vec::new();
        for (x, y, row, offset, ring) in picks {
            let res = Resolution::try_from((finest + offset).clamp(0, 15) as u8).unwrap();
            let (lon, lat) = anchor(x, y, row);
            let ll = LatLng::new(lat, lon).unwrap();
            cells.extend(ll.to_cell(res).grid_disk::<Vec<_>>(ring));
        }
        let filter = GeoFilter { h3: Some(cells.iter().map(|c| c.to_string()).collect()), ..Default::default() };
        check(example, filter, |lon, lat| {
            let ll = LatLng::new(lat, lon).unwrap();
            cells.iter().any(|c| ll.to_cell(c.resolution()) == *c)
        })?;
    }

    #[test]
    fn circle_results_lie_inside_and_match_brute_force(
        example in any::<usize>(),
        cx in -0.1..1.1f64, cy in -0.1..1.1f64, row in prop::option::of(any::<usize>()),
        radius in 1.5..5.1f64,
    ) {
        // Radii from 30 m to 125 km.
        let radius_m = 10f64.powf(radius);
        let (lon, lat) = anchor(cx, cy, row);
        let center = Point::new(lon, lat);
        let filter = GeoFilter {
            point: Some(vec![center.x(), center.y()]),
            radius_m: Some(radius_m),
            ..Default::default()
        };
        check(example, filter, |lon, lat| Haversine.distance(center, Point::new(lon, lat)) <= radius_m)?;
    }
}

/// Keywords, a time range and an area together allow exactly the rows that pass all three,
/// however the area is planned: listed, or left as a test for the walk (`plan_with(.., 0)`).
#[test]
fn filters_combine_as_sets() {
    use nadir_query::request::TimeRange;
    let fx = fixture::shared();
    let index = fx.engine.index();
    let [w, s, e, n] = region();
    // Rows are acquired one second apart from 2020-09-13T12:26:40Z: this keeps the first 2000.
    let time = TimeRange {
        from: Some("2020-09-13".into()),
        to: Some("2020-09-13T13:00:00Z".into()),
    };
    let (from, to) = time.bounds().unwrap();
    let in_time = |r: u32| index.record(r).acquired_ms.is_some_and(|t| t >= from && t <= to);
    let scenes = ["synthetic-00001", "synthetic-00007"];
    for (share, keywords) in [
        (0.5, None),
        (0.5, Some("00001 OR 00007")),
        (0.05, None),
        (1.2, None),
    ] {
        let (dx, dy) = ((e - w) * f64::sqrt(share), (n - s) * f64::sqrt(share));
        let bbox = vec![w - 0.01, s - 0.01, w + dx, s + dy];
        let inside = |x: f64, y: f64| x > bbox[0] && x < bbox[2] && y > bbox[1] && y < bbox[3];
        let mut expected: Vec<u32> = rows_inside(index, inside)
            .into_iter()
            .filter(|&r| in_time(r))
            .collect();
        if keywords.is_some() {
            expected.retain(|&r| scenes.contains(&index.record(r).scene.as_str()));
        }
        assert!(!expected.is_empty(), "share {share}");
        let req = SearchRequest {
            positives: vec![Example {
                patch: Some(index.record(0).id.to_string()),
                ..Default::default()
            }],
            geofilter: Some(GeoFilter {
                bbox: Some(bbox.clone()),
                ..Default::default()
            }),
            keywords: keywords.map(str::to_string),
            time: Some(time.clone()),
            k: K,
            negative_weight: 0.5,
            ..Default::default()
        };
        for list_limit in [usize::MAX, 0] {
            let plan = fx.engine.plan_with(&req, list_limit).unwrap();
            assert_eq!(
                candidate_rows(index, &plan.candidates),
                expected,
                "share {share}, keywords {keywords:?}, list limit {list_limit}"
            );
            let want: Vec<u32> = brute_force(index, &plan.vector, &expected, 0, K)
                .into_iter()
                .map(|(r, _)| r)
                .collect();
            let got: Vec<u32> = search::execute(index, &plan)
                .0
                .into_iter()
                .map(|(r, _)| r)
                .collect();
            assert_eq!(got, want, "share {share}, keywords {keywords:?}");
        }
    }
}

/// Areas wider than 180 degrees of longitude are read as drawn (planar longitude and latitude,
/// as GeoJSON does), never as crossing the antimeridian: a box from -170 to 170 degrees, or a
/// polygon with a 210-degree edge, holds the rows between (it held none before).
#[test]
fn areas_wider_than_half_the_world_hold_what_lies_between() {
    let fx = fixture::shared();
    let index = fx.engine.index();
    let [_, s, _, n] = region();
    let (s, n) = (s - 0.5, n + 0.5);
    let all = rows_inside(index, |_, y| y >= s && y <= n);
    assert!(!all.is_empty());
    let boxes = [
        GeoFilter {
            bbox: Some(vec![-170.0, s, 170.0, n]),
            ..Default::default()
        },
        GeoFilter {
            geojson: Some(
                json!({"type": "Polygon", "coordinates": [[[-90.0, s], [120.0, s], [120.0, n], [-90.0, n], [-90.0, s]]]}),
            ),
            ..Default::default()
        },
    ];
    for filter in boxes {
        let mut rows = fx.engine.rows_in(Some(&filter)).unwrap();
        rows.sort_unstable();
        assert_eq!(rows, all, "{filter:?}");
        // And a search inside it answers from those rows.
        let req = SearchRequest {
            positives: vec![Example {
                patch: Some(index.record(all[0]).id.to_string()),
                ..Default::default()
            }],
            geofilter: Some(filter),
            k: K,
            ..Default::default()
        };
        let hits = fx.engine.search(&req).unwrap().hits;
        assert_eq!(hits.len(), K);
        assert!(hits
            .iter()
            .all(|h| all.contains(&fx.engine.row_of(&h.patch_id).unwrap())));
    }
}
