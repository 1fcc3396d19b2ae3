//! Execution: filtered ANN search, rerank, top-k. With no filter the HNSW graph answers; with a
//! filter that keeps few rows (their vectors fit in [`EXACT_SCAN_BYTES`]) an exact scan of those
//! rows is both faster and exact (`nadir bench query` at 1M rows: a graph walk keeping 1 % of the
//! rows takes 15 ms, 0.1 % over 100 ms, where scanning those 10k or 1k rows takes 3 ms or 0.4 ms);
//! otherwise the graph walk returns only allowed rows (it still routes through the others): rows
//! in a bitmap of the listed ones, or, for an area too large to list, rows whose centroid the
//! area contains. Candidates are then rescored exactly, the examples dropped, and the best `k`
//! kept.

use std::collections::HashSet;

use nadir_indexer::ann::{dot, dot_rows, TopK};
use nadir_indexer::Index;
use serde::Serialize;
use utoipa::ToSchema;

use crate::plan::{centroid_inside, Candidates, Plan};

/// Filtered sets whose vectors take at most this many bytes are scanned exactly.
pub const EXACT_SCAN_BYTES: usize = 32 << 20;

/// How a query was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Exact scan of every allowed row.
    Exact,
    /// HNSW over the whole index.
    Hnsw,
    /// HNSW visiting only allowed rows.
    HnswFiltered,
}

/// The ef (search breadth) for `k` results. It does not grow as a filter narrows: the walk counts
/// only accepted rows towards `ef` and keeps going until it has that many (rejected rows still
/// route it), so the same breadth gives the same recall (`nadir bench query`, forced graph walks).
fn ef_for(k: usize) -> usize {
    (2 * k).max(64)
}

/// Runs a plan: (row, score) best first, at most `k`.
pub fn execute(index: &Index, plan: &Plan) -> (Vec<(u32, f32)>, Strategy) {
    execute_with(index, plan, EXACT_SCAN_BYTES)
}

/// [`execute`] with another exact-scan threshold: allowed sets whose vectors take at most
/// `exact_scan_bytes` are scanned (0: the graph answers whenever there is one; tests and benchmarks
/// use it to reach the HNSW paths on small indexes).
pub fn execute_with(index: &Index, plan: &Plan, exact_scan_bytes: usize) -> (Vec<(u32, f32)>, Strategy) {
    let n = index.len();
    let want = plan.k + plan.exclude.len();
    let allowed = plan.candidates.count(n);
    let scan_fits = allowed * index.dim() * 4 <= exact_scan_bytes;
    let vectors = index.vectors();
    let Some(ann) = index.ann().filter(|_| !scan_fits) else {
        let found = scan(index, &plan.vector, plan.candidates.rows(index), want);
        return (rerank(index, plan, found), Strategy::Exact);
    };
    let walk =
        |accept: Option<&dyn Fn(u32) -> bool>| ann.search(vectors, &plan.vector, want, ef_for(want), accept);
    let (found, strategy) = match &plan.candidates {
        Candidates::All => (walk(None), Strategy::Hnsw),
        Candidates::Rows(rows) => {
            let mut bits = vec![0u64; n.div_ceil(64)];
            for &r in rows {
                bits[r as usize / 64] |= 1 << (r % 64);
            }
            let accept = move |r: u32| bits[r as usize / 64] >> (r % 64) & 1 == 1;
            (walk(Some(&accept)), Strategy::HnswFiltered)
        }
        Candidates::Area { area, .. } => {
            let inside = area.containment();
            let accept = |r: u32| centroid_inside(index, &inside, r);
            (walk(Some(&accept)), Strategy::HnswFiltered)
        }
    };
    (rerank(index, plan, found), strategy)
}

/// Exact top-`want` over `rows`, scored in batches (one SIMD dispatch and the rows' cache lines
/// requested up front per batch: allowed rows are scattered over the index).
fn scan(index: &Index, q: &[f32], rows: impl Iterator<Item = u32>, want: usize) -> Vec<(u32, f32)> {
    const BATCH: usize = 256;
    let mut top = TopK::new(want);
    let (mut batch, mut scores) = (Vec::with_capacity(BATCH), Vec::with_capacity(BATCH));
    let mut rows = rows.peekable();
    while rows.peek().is_some() {
        batch.clear();
        batch.extend(rows.by_ref().take(BATCH));
        dot_rows(q, index.vectors(), &batch, &mut scores);
        for (&r, &s) in batch.iter().zip(&scores) {
            top.push(r, s);
        }
    }
    top.into_sorted()
}

/// Exact scores, examples and low scores dropped, best first, `k` kept.
fn rerank(index: &Index, plan: &Plan, found: Vec<(u32, f32)>) -> Vec<(u32, f32)> {
    let mut seen = HashSet::with_capacity(found.len());
    let mut out: Vec<(u32, f32)> = found
        .into_iter()
        .filter(|(r, _)| !plan.exclude.contains(r) && seen.insert(*r))
        .map(|(r, _)| (r, dot(&plan.vector, index.vector(r))))
        .filter(|(_, s)| plan.min_score.is_none_or(|m| *s >= m))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(plan.k);
    out
}
