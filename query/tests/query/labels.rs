//! Labels and active learning on the shared synthetic index: the store through the engine
//! (unknown patches refused, relabelling replaces), GeoJSON import of points and polygons,
//! export and re-import, probes with spatial cross-validation, and suggestions that are spread
//! over space and never labelled.

use std::collections::HashSet;

use nadir_query::labels::{self, LabelSource, NewLabel};
use nadir_query::learn::{self, SuggestMode, SuggestRequest};
use nadir_query::{Engine, Error, GeoFilter};
use serde_json::json;

use crate::fixture::{self, dot, rows_inside};

fn label(engine: &Engine, row: u32, class: &str, positive: bool) -> NewLabel {
    NewLabel {
        patch_id: engine.index().record(row).id.to_string(),
        class: class.into(),
        positive,
        source: LabelSource::Suggestion,
        query: None,
    }
}

#[test]
fn store_through_the_engine() {
    let e = &fixture::shared().engine;
    let store = e.labels().unwrap();
    let mut bad = label(e, 0, "t-store", true);
    bad.patch_id = "00000000000000ff".into();
    assert!(matches!(
        labels::add_checked(e, &bad),
        Err(Error::UnknownPatch(_))
    ));
    let a = labels::add_checked(e, &label(e, 0, "t-store", true)).unwrap();
    let b = labels::add_checked(e, &label(e, 0, "t-store", false)).unwrap();
    assert!(b.id > a.id);
    let list = store.list(Some("t-store")).unwrap();
    assert_eq!(list.len(), 1);
    assert!(!list[0].positive && list[0].source == LabelSource::Suggestion);
    // The same file seen by a second store (another process would see the same).
    let other = nadir_query::LabelStore::open(e.index().dir()).unwrap();
    assert_eq!(other.list(Some("t-store")).unwrap(), list);
}

#[test]
fn import_points_polygons_and_round_trip() {
    let e = &fixture::shared().engine;
    let index = e.index();
    let points: Vec<serde_json::Value> = [5u32, 50, 500]
        .iter()
        .map(|&r| {
            let (lon, lat) = index.record(r).centroid.unwrap();
            json!({"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [lon, lat]}})
        })
        .chain([json!({"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [0.0, 0.0]}})])
        .collect();
    let fc = json!({"type": "FeatureCollection", "features": points});
    let r = labels::import_geojson(e, &fc, "t-points", true).unwrap();
    assert_eq!((r.added, r.unmatched), (3, 1));
    let got: HashSet<String> = e
        .labels()
        .unwrap()
        .list(Some("t-points"))
        .unwrap()
        .into_iter()
        .map(|l| l.patch_id)
        .collect();
    let want: HashSet<String> = [5u32, 50, 500]
        .iter()
        .map(|&r| index.record(r).id.to_string())
        .collect();
    assert_eq!(got, want);

    // A polygon labels every patch whose centroid is inside, negative here.
    let (w, s, east, n) = (10.2, 44.2, 10.35, 44.3);
    let poly = json!({"type": "Polygon", "coordinates": [[[w, s], [east, s], [east, n], [w, n], [w, s]]]});
    let r = labels::import_geojson(e, &poly, "t-poly", false).unwrap();
    let inside = rows_inside(index, |x, y| x > w && x < east && y > s && y < n);
    assert!(!inside.is_empty());
    assert_eq!(r.added, inside.len());
    let stored = e.labels().unwrap().list(Some("t-poly")).unwrap();
    assert!(stored
        .iter()
        .all(|l| !l.positive && l.source == LabelSource::Import));

    // Export, forget, re-import: the same labels.
    let exported = labels::export_geojson(e, Some("t-poly")).unwrap();
    let features = exported["features"].as_array().unwrap();
    assert_eq!(features.len(), inside.len());
    assert_eq!(features[0]["geometry"]["type"], "Polygon");
    for l in &stored {
        assert!(e.labels().unwrap().remove(&l.patch_id, "t-poly").unwrap());
    }
    let r = labels::import_geojson(e, &exported, "ignored: the features name their class", true).unwrap();
    assert_eq!(r.added, inside.len());
    let again = e.labels().unwrap().list(Some("t-poly")).unwrap();
    let key = |v: &[nadir_query::Label]| -> HashSet<(String, bool)> {
        v.iter().map(|l| (l.patch_id.clone(), l.positive)).collect()
    };
    assert_eq!(key(&again), key(&stored));

    // Bad input is refused whole, with a message.
    for (bad, msg) in [
        (
            json!({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}),
            "import points",
        ),
        (json!({"type": "Point", "coordinates": ["a", 1]}), "coordinate"),
        (json!({"features": []}), "no \"type\""),
        (json!({"type": "Point", "coordinates": [0, 900]}), "not a WGS84"),
        (
            json!({"type": "Point", "coordinates": [0, 0], "crs": {"type": "name", "properties": {"name": "urn:x:Mars"}}}),
            "crs \"urn:x:Mars\" is not read",
        ),
    ] {
        let e = labels::import_geojson(e, &bad, "t-bad", true)
            .unwrap_err()
            .to_string();
        assert!(e.contains(msg), "{e}");
    }
    assert!(labels::import_geojson(e, &poly, " ", true).is_err());
}

/// A class = the patches of the cluster of row 0: a few labelled, then learn and suggest.
#[test]
fn probes_cross_validate_and_suggest_spread_out() {
    let e = &fixture::shared().engine;
    let index = e.index();
    let anchor = index.vector(0).to_vec();
    let in_class = |r: u32| dot(&anchor, index.vector(r)) > 0.4;
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for r in 0..index.len() as u32 {
        if in_class(r) && pos.len() < 40 {
            pos.push(r);
        } else if !in_class(r) && neg.len() < 120 && r % 3 == 0 {
            neg.push(r);
        }
    }
    assert_eq!(pos.len(), 40);
    let store = e.labels().unwrap();
    let mut batch: Vec<NewLabel> = pos.iter().map(|&r| label(e, r, "t-cluster", true)).collect();
    batch.extend(neg.iter().map(|&r| label(e, r, "t-cluster", false)));
    store.add_many(&batch).unwrap();

    let report = learn::learn(e, "t-cluster").unwrap();
    assert_eq!(
        (report.positives, report.negatives, report.weak_negatives),
        (40, 120, 0)
    );
    let cv = report.cross_validation.expect("labels spread over many cells");
    assert_eq!(cv.folds, learn::MAX_FOLDS);
    assert_eq!(cv.evaluated, 160);
    assert!(cv.precision.unwrap() > 0.9 && cv.recall.unwrap() > 0.9, "{cv:?}");
    eprintln!(
        "probe: 160 labels, dim {}: {:.2} ms (cross-validation included: {:.1} ms)",
        report.dim, report.train_ms, report.took_ms
    );

    let labelled: HashSet<String> = batch.iter().map(|l| l.patch_id.clone()).collect();
    let req = SuggestRequest {
        n: 25,
        geofilter: None,
        mode: SuggestMode::Uncertain,
    };
    let s = learn::suggest(e, "t-cluster", &req).unwrap();
    assert_eq!(s.suggestions.len(), 25);
    let res = h3o::Resolution::try_from(s.diversity_resolution.expect("georeferenced")).unwrap();
    let mut cells = HashSet::new();
    for sug in &s.suggestions {
        assert!(!labelled.contains(&sug.patch.patch_id));
        let [lon, lat] = sug.patch.centroid.unwrap();
        let cell = h3o::LatLng::new(lat, lon).unwrap().to_cell(res);
        assert!(cells.insert(cell), "two suggestions in cell {cell}");
    }

    // Likely positives: best first, in the cluster, inside the geofilter.
    let bbox = [10.0, 44.0, 11.0, 45.0];
    let req = SuggestRequest {
        n: 10,
        geofilter: Some(GeoFilter {
            bbox: Some(bbox.to_vec()),
            ..Default::default()
        }),
        mode: SuggestMode::Likely,
    };
    let s = learn::suggest(e, "t-cluster", &req).unwrap();
    assert_eq!(s.suggestions.len(), 10);
    let mut last = 1.0;
    for sug in &s.suggestions {
        assert!(
            sug.probability <= last && sug.probability > 0.9,
            "{}",
            sug.probability
        );
        last = sug.probability;
        let row = e.row_of(&sug.patch.patch_id).unwrap();
        assert!(in_class(row) && !labelled.contains(&sug.patch.patch_id));
        let [lon, lat] = sug.patch.centroid.unwrap();
        assert!(lon >= bbox[0] && lon <= bbox[2] && lat >= bbox[1] && lat <= bbox[3]);
    }

    // Scores for every unlabelled patch in the area, calibrated to separate the cluster.
    let scores = learn::scores(e, "t-cluster", req.geofilter.as_ref()).unwrap();
    let inside = rows_inside(index, |x, y| {
        x >= bbox[0] && x <= bbox[2] && y >= bbox[1] && y <= bbox[3]
    });
    let unlabelled = inside
        .iter()
        .filter(|&&r| !labelled.contains(&index.record(r).id.to_string()))
        .count();
    assert_eq!(scores.patch_ids.len(), unlabelled);
    let wrong = scores
        .patch_ids
        .iter()
        .zip(&scores.probabilities)
        .filter(|(id, p)| (**p >= 0.5) != in_class(e.row_of(id).unwrap()))
        .count();
    assert!(
        wrong * 50 < unlabelled,
        "{wrong} of {unlabelled} on the wrong side"
    );
}

#[test]
fn classes_without_negatives_or_labels() {
    let e = &fixture::shared().engine;
    assert!(matches!(learn::learn(e, "t-nothing"), Err(Error::NotFound(_))));
    labels::add_checked(e, &label(e, 7, "t-only-neg", false)).unwrap();
    let err = learn::learn(e, "t-only-neg").unwrap_err().to_string();
    assert!(err.contains("no positive label"), "{err}");
    for r in [1u32, 2, 3] {
        labels::add_checked(e, &label(e, r, "t-only-pos", true)).unwrap();
    }
    let report = learn::learn(e, "t-only-pos").unwrap();
    assert_eq!(report.weak_negatives, 50);
    if let Some(cv) = report.cross_validation {
        assert!(cv.precision.is_none(), "no real negative, no precision");
    }
    let bad = SuggestRequest {
        n: 0,
        ..Default::default()
    };
    assert!(learn::suggest(e, "t-only-pos", &bad).is_err());
    // A few negatives do not replace the background: weak ones top them up to 50.
    for r in [4u32, 5] {
        labels::add_checked(e, &label(e, r, "t-only-pos", false)).unwrap();
    }
    let report = learn::learn(e, "t-only-pos").unwrap();
    assert_eq!((report.negatives, report.weak_negatives), (2, 48));
    // The discovery curve, in the order the labels were given.
    assert_eq!(report.discovery, [1, 2, 3, 3, 3]);
    // The default suggestions are the most probable patches.
    let req = SuggestRequest {
        n: 10,
        ..Default::default()
    };
    let s = learn::suggest(e, "t-only-pos", &req).unwrap();
    assert_eq!(s.mode, SuggestMode::Likely);
    assert!(s
        .suggestions
        .windows(2)
        .all(|w| w[0].probability >= w[1].probability));
    // Probable patches: the labelled positives first, then the unlabelled above the bar.
    let req = learn::ProbableRequest {
        min_probability: 0.5,
        geofilter: None,
    };
    let rows = learn::probable(e, "t-only-pos", &req).unwrap();
    assert_eq!(rows.iter().filter(|p| p.labelled).count(), 3);
    assert!(rows[..3].iter().all(|p| p.labelled));
    assert!(rows[3..].iter().all(|p| !p.labelled && p.probability >= 0.5));
    let everything = learn::ProbableRequest {
        min_probability: 0.0,
        geofilter: None,
    };
    // Every patch but the labelled negatives.
    assert_eq!(
        learn::probable(e, "t-only-pos", &everything).unwrap().len(),
        e.index().len() - 2
    );
    let bad = learn::ProbableRequest {
        min_probability: f32::NAN,
        geofilter: None,
    };
    assert!(learn::probable(e, "t-only-pos", &bad).is_err());
}
