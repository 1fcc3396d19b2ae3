//! Raster-to-vector conversion of label maps: 4-connected component labelling of a row-major `u8`
//! raster and exact tracing of every component's pixel-edge boundary into a valid [`geo::Polygon`] in
//! pixel coordinates (counter-clockwise exterior, clockwise holes, corner vertices only). This module
//! owns only the topology; smoothing, simplification and georeferencing belong to callers.

use geo::{Coord, LineString, Polygon};

/// One connected region of a class: 4-connected pixels of the same value.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// The label value shared by every pixel of the region.
    pub class: u8,
    /// Number of pixels in the region (equals the polygon's area).
    pub pixels: usize,
    /// Outline in pixel coordinates; holes cover enclosed pixels of other regions (or ignored pixels).
    pub polygon: Polygon<f64>,
}

/// Component id of pixels that belong to no component (ignored pixels).
const NONE: u32 = u32::MAX;

/// Traces every 4-connected region of equal labels in a row-major `labels` raster of `width` x `height`
/// pixels into a polygon in pixel coordinates (x to the right, y down, pixel (c, r) covers
/// [c, c+1] x [r, r+1]).
///
/// Pixels equal to `ignore` (if `Some`) produce no region. Regions with fewer than `min_pixels` pixels
/// are dropped; their area still appears as holes of the enclosing region, if any. Each polygon is the
/// exact union of its region's pixels: rings are closed, consist of corner vertices only (no repeated or
/// collinear consecutive vertices), the exterior is counter-clockwise and holes are clockwise (signed
/// area as stored), and every ring is simple. Where two pixels of the same region touch only
/// diagonally at a vertex, the rings are split there, so a hole may touch the exterior or another hole
/// at a single vertex (valid per OGC) but no ring touches itself.
///
/// Regions are returned in order of their first pixel in row-major order. Runs in O(pixels).
///
/// # Errors
/// Returns an error if `labels.len() != width * height` or the raster has `u32::MAX` or more pixels.
pub fn polygonize(
    labels: &[u8],
    width: usize,
    height: usize,
    ignore: Option<u8>,
    min_pixels: usize,
) -> Result<Vec<Region>, String> {
    let n = width
        .checked_mul(height)
        .ok_or_else(|| format!("raster size {width} x {height} overflows usize"))?;
    if labels.len() != n {
        return Err(format!(
            "labels has {} values but the raster is {width} x {height} = {n} pixels",
            labels.len()
        ));
    }
    if n >= NONE as usize {
        return Err(format!("raster of {n} pixels is too large (limit {})", NONE - 1));
    }
    let comps = label_components(labels, width, height, ignore);
    let grid = Grid {
        comp: &comps.comp,
        width,
        height,
    };

    // One pass over the raster: every ring has at least one edge running east along the top side of a
    // pixel of its region, so starting a trace at every not-yet-traced top boundary finds all rings.
    let mut rings: Vec<Vec<Vec<(i64, i64)>>> = vec![Vec::new(); comps.pixels.len()];
    let mut traced = BitSet::new(n);
    for r in 0..height {
        for c in 0..width {
            let i = r * width + c;
            let k = comps.comp[i];
            if k == NONE || comps.pixels[k as usize] < min_pixels {
                continue;
            }
            if (r > 0 && comps.comp[i - width] == k) || traced.get(i) {
                continue;
            }
            let ring = grid.trace_ring(k, c as i64, r as i64, &mut traced)?;
            rings[k as usize].push(ring);
        }
    }

    let mut regions = Vec::new();
    for (k, comp_rings) in rings.into_iter().enumerate() {
        let pixels = comps.pixels[k];
        if pixels < min_pixels || comp_rings.is_empty() {
            continue;
        }
        let ext_idx = comp_rings
            .iter()
            .enumerate()
            .max_by_key(|(_, ring)| signed_area2(ring).abs())
            .map_or(0, |(idx, _)| idx);
        let mut exterior = None;
        let mut holes = Vec::with_capacity(comp_rings.len().saturating_sub(1));
        for (idx, ring) in comp_rings.into_iter().enumerate() {
            let ls = to_line_string(&ring);
            if idx == ext_idx {
                exterior = Some(ls);
            } else {
                holes.push(ls);
            }
        }
        let Some(exterior) = exterior else { continue };
        regions.push(Region {
            class: labels[comps.first[k]],
            pixels,
            polygon: Polygon::new(exterior, holes),
        });
    }
    Ok(regions)
}

/// Result of connected component labelling; component ids follow the row-major order of first pixels.
struct Components {
    /// Component id per pixel, `NONE` for ignored pixels.
    comp: Vec<u32>,
    /// Pixel count per component.
    pixels: Vec<usize>,
    /// Index of the first pixel (row-major) per component.
    first: Vec<usize>,
}

/// Labels 4-connected components of equal values with an explicit-stack flood fill (no recursion).
fn label_components(labels: &[u8], width: usize, height: usize, ignore: Option<u8>) -> Components {
    let n = width * height;
    let mut comp = vec![NONE; n];
    let mut pixels = Vec::new();
    let mut first = Vec::new();
    let mut stack = Vec::new();
    for start in 0..n {
        let value = labels[start];
        if comp[start] != NONE || ignore == Some(value) {
            continue;
        }
        let k = pixels.len() as u32;
        comp[start] = k;
        stack.push(start);
        let mut count = 0usize;
        while let Some(p) = stack.pop() {
            count += 1;
            let (c, r) = (p % width, p / width);
            let mut visit = |q: usize| {
                if comp[q] == NONE && labels[q] == value {
                    comp[q] = k;
                    stack.push(q);
                }
            };
            if c > 0 {
                visit(p - 1);
            }
            if c + 1 < width {
                visit(p + 1);
            }
            if r > 0 {
                visit(p - width);
            }
            if r + 1 < height {
                visit(p + width);
            }
        }
        pixels.push(count);
        first.push(start);
    }
    Components { comp, pixels, first }
}

/// Direction of a boundary edge between two lattice vertices (y grows downwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    East,
    South,
    West,
    North,
}

impl Dir {
    fn delta(self) -> (i64, i64) {
        match self {
            Dir::East => (1, 0),
            Dir::South => (0, 1),
            Dir::West => (-1, 0),
            Dir::North => (0, -1),
        }
    }

    /// Turn towards the side the region lies on.
    fn toward(self) -> Dir {
        match self {
            Dir::East => Dir::South,
            Dir::South => Dir::West,
            Dir::West => Dir::North,
            Dir::North => Dir::East,
        }
    }

    /// Turn away from the side the region lies on.
    fn away(self) -> Dir {
        match self {
            Dir::East => Dir::North,
            Dir::North => Dir::West,
            Dir::West => Dir::South,
            Dir::South => Dir::East,
        }
    }

    /// Pixel on the region side of the unit edge leaving vertex (x, y) in this direction. With this
    /// convention the region lies to the left in a y-up frame, so exteriors get positive signed area
    /// (counter-clockwise) and holes negative (clockwise).
    fn owner(self, x: i64, y: i64) -> (i64, i64) {
        match self {
            Dir::East => (x, y),
            Dir::South => (x - 1, y),
            Dir::West => (x - 1, y - 1),
            Dir::North => (x, y - 1),
        }
    }
}

struct Grid<'a> {
    comp: &'a [u32],
    width: usize,
    height: usize,
}

impl Grid<'_> {
    fn is(&self, (x, y): (i64, i64), k: u32) -> bool {
        x >= 0
            && y >= 0
            && (x as usize) < self.width
            && (y as usize) < self.height
            && self.comp[y as usize * self.width + x as usize] == k
    }

    /// Traces the ring of component `k` that contains the east-running top edge of pixel (x0, y0),
    /// returning its corner vertices (not closed). Marks every east edge it walks in `traced`.
    ///
    /// Turn rule: at each vertex prefer turning away from the region, then straight, then towards it.
    /// The only ambiguous vertices are those where two diagonal pixels belong to `k` and the other two
    /// do not; both diagonal pixels are then in the same component, and preferring the turn away
    /// joins them through the vertex, which splits the boundary into rings that each visit the vertex
    /// once (the other choice would always make one ring touch itself there).
    fn trace_ring(&self, k: u32, x0: i64, y0: i64, traced: &mut BitSet) -> Result<Vec<(i64, i64)>, String> {
        // Each directed unit edge has exactly one successor and one predecessor, so the walk is a cycle;
        // the bound only guards against a logic error turning into an endless loop.
        let max_steps = 4 * self.width * self.height + 4;
        let mut ring = Vec::new();
        traced.set(y0 as usize * self.width + x0 as usize);
        let (mut x, mut y, mut dir) = (x0 + 1, y0, Dir::East);
        for _ in 0..max_steps {
            let next = if self.is(dir.away().owner(x, y), k) {
                dir.away()
            } else if self.is(dir.owner(x, y), k) {
                dir
            } else {
                dir.toward()
            };
            if next != dir {
                ring.push((x, y));
            }
            if next == Dir::East {
                if (x, y) == (x0, y0) {
                    return Ok(ring);
                }
                traced.set(y as usize * self.width + x as usize);
            }
            let (dx, dy) = next.delta();
            x += dx;
            y += dy;
            dir = next;
        }
        Err(format!(
            "internal error: boundary trace from pixel ({x0}, {y0}) did not close"
        ))
    }
}

/// Twice the signed area of an unclosed ring (positive = counter-clockwise in a y-up frame).
fn signed_area2(ring: &[(i64, i64)]) -> i64 {
    let Some(&last) = ring.last() else { return 0 };
    let mut prev = last;
    let mut sum = 0;
    for &p in ring {
        sum += prev.0 * p.1 - p.0 * prev.1;
        prev = p;
    }
    sum
}

fn to_line_string(ring: &[(i64, i64)]) -> LineString<f64> {
    let mut coords: Vec<Coord<f64>> = ring
        .iter()
        .map(|&(x, y)| Coord {
            x: x as f64,
            y: y as f64,
        })
        .collect();
    if let Some(&first) = coords.first() {
        coords.push(first);
    }
    LineString::new(coords)
}

/// Fixed-size bit set (one bit per pixel) marking traced east edges.
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: usize) -> Self {
        BitSet(vec![0; n.div_ceil(64)])
    }

    fn get(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{Area, Contains, Point, Validation, Winding};
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// Parses rows of digits into a raster.
    fn grid(rows: &[&str]) -> (Vec<u8>, usize, usize) {
        let width = rows.first().map_or(0, |r| r.len());
        let labels: Vec<u8> = rows
            .iter()
            .flat_map(|r| {
                assert_eq!(r.len(), width);
                r.bytes().map(|b| b - b'0')
            })
            .collect();
        (labels, width, rows.len())
    }

    fn ring_vertices(ls: &LineString<f64>) -> Vec<(i64, i64)> {
        let c = &ls.0;
        assert!(c.len() >= 5, "ring too short: {c:?}");
        assert_eq!(c.first(), c.last(), "ring not closed");
        c[..c.len() - 1]
            .iter()
            .map(|p| (p.x as i64, p.y as i64))
            .collect()
    }

    /// Checks ring shape invariants: closed, axis-aligned, corners only, no vertex visited twice.
    fn check_ring(ls: &LineString<f64>) {
        let v = ring_vertices(ls);
        let m = v.len();
        assert_eq!(
            v.iter().collect::<HashSet<_>>().len(),
            m,
            "ring visits a vertex twice: {v:?}"
        );
        for i in 0..m {
            let (a, b, d) = (v[i], v[(i + 1) % m], v[(i + 2) % m]);
            assert!(a.0 == b.0 || a.1 == b.1, "segment not axis-aligned: {a:?} {b:?}");
            let cross = (b.0 - a.0) * (d.1 - b.1) - (b.1 - a.1) * (d.0 - b.0);
            assert_ne!(cross, 0, "collinear or repeated vertices {a:?} {b:?} {d:?}");
        }
    }

    /// Checks per-region invariants shared by all tests.
    fn check_region(region: &Region) {
        let poly = &region.polygon;
        assert_eq!(poly.unsigned_area(), region.pixels as f64);
        assert!(
            poly.is_valid(),
            "invalid polygon: {:?}: {:?}",
            poly,
            poly.validation_errors()
        );
        assert!(poly.exterior().is_ccw(), "exterior not counter-clockwise");
        check_ring(poly.exterior());
        for hole in poly.interiors() {
            assert!(hole.is_cw(), "hole not clockwise");
            check_ring(hole);
        }
    }

    fn run(rows: &[&str], ignore: Option<u8>, min_pixels: usize) -> Vec<Region> {
        let (labels, w, h) = grid(rows);
        let regions = polygonize(&labels, w, h, ignore, min_pixels).unwrap();
        regions.iter().for_each(check_region);
        regions
    }

    fn summary(region: &Region) -> (u8, usize, usize, Vec<usize>) {
        let poly = &region.polygon;
        let holes = poly.interiors().iter().map(|h| h.0.len() - 1).collect();
        (region.class, region.pixels, poly.exterior().0.len() - 1, holes)
    }

    #[test]
    fn single_pixel() {
        let regions = run(&["7"], None, 0);
        assert_eq!(regions.len(), 1);
        assert_eq!(summary(&regions[0]), (7, 1, 4, vec![]));
        let ext = ring_vertices(regions[0].polygon.exterior());
        let expected: HashSet<_> = [(0, 0), (1, 0), (1, 1), (0, 1)].into_iter().collect();
        assert_eq!(ext.into_iter().collect::<HashSet<_>>(), expected);
    }

    #[test]
    fn full_raster_is_one_rectangle() {
        let regions = run(&["2222", "2222", "2222"], None, 0);
        assert_eq!(regions.len(), 1);
        assert_eq!(summary(&regions[0]), (2, 12, 4, vec![]));
        let ext = ring_vertices(regions[0].polygon.exterior());
        let expected: HashSet<_> = [(0, 0), (4, 0), (4, 3), (0, 3)].into_iter().collect();
        assert_eq!(ext.into_iter().collect::<HashSet<_>>(), expected);
    }

    #[test]
    fn l_shape() {
        let regions = run(&["10", "10", "11"], None, 0);
        assert_eq!(regions.len(), 2);
        assert_eq!(summary(&regions[0]), (1, 4, 6, vec![]));
        assert_eq!(summary(&regions[1]), (0, 2, 4, vec![]));
    }

    #[test]
    fn ring_with_hole() {
        let regions = run(&["111", "121", "111"], None, 0);
        assert_eq!(regions.len(), 2);
        assert_eq!(summary(&regions[0]), (1, 8, 4, vec![4]));
        assert_eq!(summary(&regions[1]), (2, 1, 4, vec![]));
    }

    #[test]
    fn checkerboard_diagonals_are_separate_regions() {
        let regions = run(&["10", "01"], None, 0);
        assert_eq!(regions.len(), 4);
        let classes: Vec<u8> = regions.iter().map(|r| r.class).collect();
        assert_eq!(classes, vec![1, 0, 0, 1]);
        for region in &regions {
            assert_eq!(summary(region), (region.class, 1, 4, vec![]));
        }
    }

    #[test]
    fn hole_touching_exterior_at_a_vertex() {
        // Both diagonal orientations of the pinch vertex.
        for rows in [["110", "101", "111"], ["011", "101", "111"]] {
            let regions = run(&rows, None, 0);
            assert_eq!(regions.len(), 3);
            let ring = regions.iter().find(|r| r.class == 1).unwrap();
            assert_eq!(summary(ring), (1, 7, 6, vec![4]), "{rows:?}");
            let ext: HashSet<_> = ring_vertices(ring.polygon.exterior()).into_iter().collect();
            let hole: HashSet<_> = ring_vertices(&ring.polygon.interiors()[0]).into_iter().collect();
            assert_eq!(
                ext.intersection(&hole).count(),
                1,
                "hole touches exterior at one vertex"
            );
        }
    }

    #[test]
    fn holes_touching_each_other_at_a_vertex() {
        for rows in [["1111", "1011", "1101", "1111"], ["1111", "1101", "1011", "1111"]] {
            let regions = run(&rows, None, 0);
            assert_eq!(regions.len(), 3);
            assert_eq!(summary(&regions[0]), (1, 14, 4, vec![4, 4]), "{rows:?}");
        }
    }

    #[test]
    fn hole_with_island() {
        let regions = run(&["11111", "10001", "10101", "10001", "11111"], None, 0);
        assert_eq!(regions.len(), 3);
        assert_eq!(summary(&regions[0]), (1, 16, 4, vec![4]));
        assert_eq!(summary(&regions[1]), (0, 8, 4, vec![4]));
        assert_eq!(summary(&regions[2]), (1, 1, 4, vec![]));
        let centre = Point::new(2.5, 2.5);
        assert!(!regions[0].polygon.contains(&centre));
        assert!(!regions[1].polygon.contains(&centre));
        assert!(regions[2].polygon.contains(&centre));

        let regions = run(&["11111", "12221", "12321", "12221", "11111"], None, 0);
        let summaries: Vec<_> = regions.iter().map(summary).collect();
        assert_eq!(
            summaries,
            vec![(1, 16, 4, vec![4]), (2, 8, 4, vec![4]), (3, 1, 4, vec![])]
        );
    }

    #[test]
    fn ignore_value() {
        let regions = run(&["000", "010", "000"], Some(0), 0);
        assert_eq!(regions.len(), 1);
        assert_eq!(summary(&regions[0]), (1, 1, 4, vec![]));

        let regions = run(&["111", "101", "111"], Some(0), 0);
        assert_eq!(regions.len(), 1);
        assert_eq!(summary(&regions[0]), (1, 8, 4, vec![4]));

        assert!(run(&["00", "00"], Some(0), 0).is_empty());
    }

    #[test]
    fn min_pixels_drops_small_regions_but_keeps_their_holes() {
        let regions = run(&["111", "121", "111"], None, 2);
        assert_eq!(regions.len(), 1);
        assert_eq!(summary(&regions[0]), (1, 8, 4, vec![4]));
        assert!(run(&["12", "34"], None, 2).is_empty());
        assert_eq!(run(&["12", "34"], None, 1).len(), 4);
    }

    #[test]
    fn regions_ordered_by_first_pixel() {
        let regions = run(&["3302", "1102", "1444"], None, 0);
        let classes: Vec<u8> = regions.iter().map(|r| r.class).collect();
        assert_eq!(classes, vec![3, 0, 2, 1, 4]);
    }

    #[test]
    fn length_mismatch_and_empty() {
        let err = polygonize(&[1, 2, 3], 2, 2, None, 0).unwrap_err();
        assert!(err.contains("3 values") && err.contains("2 x 2"), "{err}");
        assert!(polygonize(&[], usize::MAX, 2, None, 0).is_err());
        assert!(polygonize(&[], 0, 5, None, 0).unwrap().is_empty());
        assert!(polygonize(&[], 0, 0, None, 0).unwrap().is_empty());
    }

    /// Brute-force 4-connected components by minimum-label propagation until a fixed point. Returns
    /// (class, pixel count) per component, ordered by first pixel.
    fn brute_force_components(labels: &[u8], w: usize, h: usize, ignore: Option<u8>) -> Vec<(u8, usize)> {
        let mut id: Vec<usize> = (0..labels.len()).collect();
        let mut changed = true;
        while changed {
            changed = false;
            for r in 0..h {
                for c in 0..w {
                    let i = r * w + c;
                    let neighbours = [
                        (c > 0).then(|| i - 1),
                        (c + 1 < w).then(|| i + 1),
                        (r > 0).then(|| i - w),
                        (r + 1 < h).then(|| i + w),
                    ];
                    for j in neighbours.into_iter().flatten() {
                        if labels[j] == labels[i] && id[j] < id[i] {
                            id[i] = id[j];
                            changed = true;
                        }
                    }
                }
            }
        }
        let mut counts = std::collections::BTreeMap::new();
        for (i, &root) in id.iter().enumerate() {
            if ignore != Some(labels[i]) {
                *counts.entry(root).or_insert(0usize) += 1;
            }
        }
        counts
            .into_iter()
            .map(|(root, count)| (labels[root], count))
            .collect()
    }

    fn raster() -> impl Strategy<Value = (Vec<u8>, usize, usize)> {
        (1usize..12, 1usize..12)
            .prop_flat_map(|(w, h)| (proptest::collection::vec(0u8..3, w * h), Just(w), Just(h)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_rasters((labels, w, h) in raster(), ignore in prop_oneof![Just(None), Just(Some(0u8))]) {
            let regions = polygonize(&labels, w, h, ignore, 0).unwrap();
            regions.iter().for_each(check_region);

            let expected = brute_force_components(&labels, w, h, ignore);
            let got: Vec<(u8, usize)> = regions.iter().map(|r| (r.class, r.pixels)).collect();
            prop_assert_eq!(got, expected);

            for r in 0..h {
                for c in 0..w {
                    let label = labels[r * w + c];
                    let centre = Point::new(c as f64 + 0.5, r as f64 + 0.5);
                    let containing: Vec<&Region> =
                        regions.iter().filter(|reg| reg.polygon.contains(&centre)).collect();
                    if ignore == Some(label) {
                        prop_assert!(containing.is_empty(), "ignored pixel ({}, {}) covered", c, r);
                    } else {
                        prop_assert_eq!(containing.len(), 1, "pixel ({}, {}) covered once", c, r);
                        prop_assert_eq!(containing[0].class, label);
                    }
                }
            }
        }

        #[test]
        fn random_rasters_min_pixels((labels, w, h) in raster(), min_pixels in 0usize..6) {
            let regions = polygonize(&labels, w, h, None, min_pixels).unwrap();
            regions.iter().for_each(check_region);
            let expected: Vec<(u8, usize)> = brute_force_components(&labels, w, h, None)
                .into_iter()
                .filter(|&(_, count)| count >= min_pixels)
                .collect();
            let got: Vec<(u8, usize)> = regions.iter().map(|r| (r.class, r.pixels)).collect();
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn large_random_blobs() {
        const SIZE: usize = 1024;
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut labels = vec![0u8; SIZE * SIZE];
        for _ in 0..4000 {
            let (cx, cy) = ((next() % SIZE as u64) as i64, (next() % SIZE as u64) as i64);
            let radius = 2 + (next() % 24) as i64;
            let class = 1 + (next() % 5) as u8;
            for y in (cy - radius).max(0)..(cy + radius).min(SIZE as i64) {
                for x in (cx - radius).max(0)..(cx + radius).min(SIZE as i64) {
                    let (dx, dy) = (x - cx, y - cy);
                    // Slightly noisy disc boundary to create ragged edges and pinch vertices.
                    if dx * dx + dy * dy + (next() % 7) as i64 <= radius * radius {
                        labels[y as usize * SIZE + x as usize] = class;
                    }
                }
            }
        }
        let regions = polygonize(&labels, SIZE, SIZE, Some(0), 0).unwrap();
        assert!(regions.len() > 1000, "{} regions", regions.len());
        let ignored = labels.iter().filter(|&&l| l == 0).count();
        let pixels: usize = regions.iter().map(|r| r.pixels).sum();
        assert_eq!(pixels, SIZE * SIZE - ignored);
        let area: f64 = regions.iter().map(|r| r.polygon.unsigned_area()).sum();
        assert_eq!(area, pixels as f64);
    }
}
