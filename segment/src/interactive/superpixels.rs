//! SLIC superpixels (Achanta et al., 2012) of a session's image, computed once: compact regions of
//! similar colour about `size` pixels across whose borders follow the image's edges. A click then
//! labels the cells of its whole superpixel, and a class's probability is averaged over each
//! superpixel, so that masks follow edges at full resolution.

use image::RgbImage;

/// A label per pixel, row-major, and how many there are.
#[derive(Debug, Clone)]
pub(crate) struct Superpixels {
    pub labels: Vec<u32>,
    pub count: usize,
}

/// Colour against distance: larger is more compact (the paper's m, for CIELAB in 0-100).
const COMPACTNESS: f32 = 10.0;
const ITERATIONS: usize = 6;

impl Superpixels {
    /// The superpixels of `image`, about `size` x `size` px each.
    pub fn new(image: &RgbImage, size: usize) -> Self {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let s = size.max(2);
        let lab: Vec<[f32; 3]> = image.pixels().map(|p| rgb_to_lab(p.0)).collect();
        // Centres on a grid: (L, a, b, x, y).
        let mut centres: Vec<[f32; 5]> = Vec::new();
        let mut y = s / 2;
        while y < h {
            let mut x = s / 2;
            while x < w {
                let c = lab[y * w + x];
                centres.push([c[0], c[1], c[2], x as f32, y as f32]);
                x += s;
            }
            y += s;
        }
        if centres.is_empty() {
            let c = lab[0];
            centres.push([c[0], c[1], c[2], 0.0, 0.0]);
        }
        let mut label = vec![0u32; w * h];
        let mut dist = vec![f32::INFINITY; w * h];
        let spatial = (COMPACTNESS / s as f32).powi(2);
        let si = s as isize;
        for _ in 0..ITERATIONS {
            dist.fill(f32::INFINITY);
            for (k, c) in centres.iter().enumerate() {
                let (cx, cy) = (c[3] as isize, c[4] as isize);
                let (x0, x1) = ((cx - si).max(0) as usize, ((cx + si) as usize).min(w - 1));
                let (y0, y1) = ((cy - si).max(0) as usize, ((cy + si) as usize).min(h - 1));
                for py in y0..=y1 {
                    let dy = py as f32 - c[4];
                    for px in x0..=x1 {
                        let i = py * w + px;
                        let l = lab[i];
                        let dx = px as f32 - c[3];
                        let d = (l[0] - c[0]).powi(2)
                            + (l[1] - c[1]).powi(2)
                            + (l[2] - c[2]).powi(2)
                            + spatial * (dx * dx + dy * dy);
                        if d < dist[i] {
                            dist[i] = d;
                            label[i] = k as u32;
                        }
                    }
                }
            }
            let mut sums = vec![[0f64; 6]; centres.len()];
            for (i, &k) in label.iter().enumerate() {
                let l = lab[i];
                let acc = &mut sums[k as usize];
                acc[0] += f64::from(l[0]);
                acc[1] += f64::from(l[1]);
                acc[2] += f64::from(l[2]);
                acc[3] += (i % w) as f64;
                acc[4] += (i / w) as f64;
                acc[5] += 1.0;
            }
            for (c, acc) in centres.iter_mut().zip(&sums) {
                if acc[5] > 0.0 {
                    for j in 0..5 {
                        c[j] = (acc[j] / acc[5]) as f32;
                    }
                }
            }
        }
        let (labels, count) = connected(&label, w, h, (s * s / 4).max(1));
        Self { labels, count }
    }
}

/// Relabels 4-connected pieces of equal labels 0..n; a piece under `min` pixels joins the piece
/// met just before it (left or above), as SLIC's connectivity step does.
fn connected(label: &[u32], w: usize, h: usize, min: usize) -> (Vec<u32>, usize) {
    const NONE: u32 = u32::MAX;
    let mut out = vec![NONE; w * h];
    let mut next = 0u32;
    let mut stack = Vec::new();
    let mut piece = Vec::new();
    for start in 0..w * h {
        if out[start] != NONE {
            continue;
        }
        // A neighbour already labelled, to join if this piece is small.
        let (sx, sy) = (start % w, start / w);
        let adjacent = if sx > 0 {
            Some(out[start - 1])
        } else if sy > 0 {
            Some(out[start - w])
        } else {
            None
        };
        piece.clear();
        stack.push(start);
        out[start] = next;
        while let Some(i) = stack.pop() {
            piece.push(i);
            let (x, y) = (i % w, i / w);
            let mut visit = |j: usize| {
                if out[j] == NONE && label[j] == label[i] {
                    out[j] = next;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < w {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - w);
            }
            if y + 1 < h {
                visit(i + w);
            }
        }
        match adjacent {
            Some(a) if piece.len() < min => {
                for &i in &piece {
                    out[i] = a;
                }
            }
            _ => next += 1,
        }
    }
    (out, next as usize)
}

/// sRGB (0-255) to CIELAB (D65).
fn rgb_to_lab(p: [u8; 3]) -> [f32; 3] {
    let lin = |v: u8| {
        let c = f32::from(v) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let (r, g, b) = (lin(p[0]), lin(p[1]), lin(p[2]));
    let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.950_47;
    let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.088_83;
    let f = |t: f32| {
        if t > 0.008_856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superpixels_follow_a_colour_edge_and_are_connected() {
        // Two colours split at x = 21 (not on the grid), 64 x 48 px, superpixels of 8 px.
        let img = RgbImage::from_fn(64, 48, |x, _| {
            if x < 21 {
                image::Rgb([200, 30, 30])
            } else {
                image::Rgb([20, 40, 220])
            }
        });
        let sp = Superpixels::new(&img, 8);
        assert!(sp.count >= 20 && sp.count <= 80, "{} superpixels", sp.count);
        let w = 64;
        // No superpixel straddles the edge.
        let mut side = vec![None; sp.count];
        for (i, &l) in sp.labels.iter().enumerate() {
            let left = i % w < 21;
            let s = side[l as usize].get_or_insert(left);
            assert_eq!(*s, left, "superpixel {l} crosses the edge");
        }
        // Every label 0..count is used.
        let mut used = vec![false; sp.count];
        for &l in &sp.labels {
            used[l as usize] = true;
        }
        assert!(used.iter().all(|&u| u));
    }
}
