//! ANN recall on the shared index: recall@10 against brute force with no filter and with bbox
//! filters that keep 100 %, 10 %, 1 % and 0.1 % of the rows. The exact-scan threshold is set to
//! zero so that the graph answers (HNSW, filtered HNSW), and the strategy is checked; with the
//! default threshold this index is small enough to be scanned exactly. Queries are rows of the
//! index, so the graph meets the query's own vector, whose dot with itself may round above 1 (the
//! graph's distance is `-dot`, so that is harmless).

use nadir_query::plan::{Candidates, Plan};
use nadir_query::search::{self, Strategy};
use nadir_query::{Example, GeoFilter, SearchRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::fixture::{self, brute_force, candidate_rows};

const K: usize = 10;
const QUERIES: usize = 30;
const MIN_RECALL: f64 = 0.95;

/// A query like a random row, within a random bbox keeping about `share` of the region.
fn request(rng: &mut StdRng, share: Option<f64>) -> SearchRequest {
    let fx = fixture::shared();
    let index = fx.engine.index();
    let row = rng.random_range(0..index.len() as u32);
    let geofilter = share.map(|s| {
        let [w, so, e, n] = fx.spec.region;
        let bbox = if s >= 1.0 {
            vec![w - 0.01, so - 0.01, e + 0.01, n + 0.01]
        } else {
            let (dx, dy) = ((e - w) * s.sqrt(), (n - so) * s.sqrt());
            let x = rng.random_range(w..e - dx);
            let y = rng.random_range(so..n - dy);
            vec![x, y, x + dx, y + dy]
        };
        GeoFilter {
            bbox: Some(bbox),
            ..Default::default()
        }
    });
    SearchRequest {
        positives: vec![Example {
            patch: Some(index.record(row).id.to_string()),
            ..Default::default()
        }],
        geofilter,
        k: K,
        negative_weight: 0.5,
        ..Default::default()
    }
}

/// recall@k of one planned query run with `threshold`, and the strategy used.
fn recall(plan: &Plan, threshold: usize) -> (f64, Strategy, usize) {
    let index = fixture::shared().engine.index();
    let (found, strategy) = search::execute_with(index, plan, threshold);
    let allowed = candidate_rows(index, &plan.candidates);
    let example = *plan.exclude.iter().next().expect("one example");
    let truth = brute_force(index, &plan.vector, &allowed, example, K);
    if truth.is_empty() {
        return (1.0, strategy, allowed.len());
    }
    let hits = truth
        .iter()
        .filter(|(r, _)| found.iter().any(|(f, _)| f == r))
        .count();
    (hits as f64 / truth.len() as f64, strategy, allowed.len())
}

#[test]
fn recall_at_10_holds_on_every_path() {
    let fx = fixture::shared();
    let n = fx.engine.index().len();
    let mut rng = StdRng::seed_from_u64(11);
    let mut report = Vec::new();
    for share in [None, Some(1.0), Some(0.1), Some(0.01), Some(0.001)] {
        let (mut sum, mut exact_sum, mut lazy_sum, mut allowed_sum) = (0.0, 0.0, 0.0, 0usize);
        let mut lazy_areas = 0;
        for _ in 0..QUERIES {
            let req = request(&mut rng, share);
            let plan = fx.engine.plan(&req).unwrap();
            // The area left as a test the walk applies to each row it meets (nothing listed).
            let lazy = fx.engine.plan_with(&req, 0).unwrap();
            let (r, strategy, _) = recall(&lazy, 0);
            lazy_sum += r;
            if share.is_some_and(|s| s < 1.0) {
                assert_ne!(strategy, Strategy::Hnsw, "share {share:?}");
                lazy_areas += usize::from(matches!(lazy.candidates, Candidates::Area { .. }));
            }
            let (r, strategy, allowed) = recall(&plan, 0);
            let want = match share {
                None => Strategy::Hnsw,
                // Nothing to walk for: an empty set is "scanned".
                Some(_) if allowed == 0 => Strategy::Exact,
                // A filter that keeps every row is planned as no filter.
                Some(_) if allowed == n => Strategy::Hnsw,
                Some(_) => Strategy::HnswFiltered,
            };
            assert_eq!(strategy, want, "share {share:?}");
            sum += r;
            allowed_sum += allowed;
            // This index fits the default threshold: an exact scan, exact results.
            let (r, strategy, _) = recall(&plan, search::EXACT_SCAN_BYTES);
            assert_eq!(strategy, Strategy::Exact);
            exact_sum += r;
        }
        let (mean, exact) = (sum / QUERIES as f64, exact_sum / QUERIES as f64);
        let lazy = lazy_sum / QUERIES as f64;
        let kept = allowed_sum as f64 / (QUERIES * n) as f64;
        report.push(format!(
            "filter {share:?}: kept {:.3} %, recall@10 graph {mean:.4}, area tested in the walk \
             {lazy:.4}, exact {exact:.4}",
            100.0 * kept
        ));
        assert_eq!(exact, 1.0, "share {share:?}");
        // Areas that hold rows stay tests when nothing may be listed.
        if share.is_some_and(|s| (0.01..1.0).contains(&s)) {
            assert!(lazy_areas > QUERIES / 2, "share {share:?}: {lazy_areas} areas");
        }
        assert!(
            mean >= MIN_RECALL && lazy >= MIN_RECALL,
            "share {share:?}: recall@10 {mean:.4}\n{}",
            report.join("\n")
        );
    }
    println!("{}", report.join("\n"));
}
