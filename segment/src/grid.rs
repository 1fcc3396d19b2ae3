//! Square windows over an image: the chips a training image is cut into, the overlapping windows
//! a scene is predicted in, and the weight that blends overlapping predictions.

use nadir_indexer::raster::Window;

/// Start offsets of windows of `side` along `len` with step `step`: from 0, the last one shifted
/// back to end at `len` (so every pixel is covered and every window lies inside when
/// `len >= side`); a single window at 0 when `len <= side`.
pub fn starts(len: u32, side: u32, step: u32) -> Vec<u32> {
    if len <= side {
        return vec![0];
    }
    let step = step.clamp(1, side);
    let mut out: Vec<u32> = (0..).map(|i| i * step).take_while(|&s| s + side <= len).collect();
    if out.last().is_some_and(|&s| s + side < len) {
        out.push(len - side);
    }
    out
}

/// The windows of side `side`, step `step`, covering a `width` x `height` image, row by row.
pub fn windows(width: u32, height: u32, side: u32, step: u32) -> Vec<Window> {
    let xs = starts(width, side, step);
    starts(height, side, step)
        .into_iter()
        .flat_map(|y| {
            xs.iter().map(move |&x| Window {
                x,
                y,
                width: side,
                height: side,
            })
        })
        .collect()
}

/// The blending weight of each pixel of a `side` x `side` window, row-major: a separable Hann
/// bump `sin²(π (i + ½) / side)`, floored at 1e-3 so that a pixel only edge windows see still gets
/// a prediction. Overlapping windows' probabilities are averaged with these weights, which hides
/// the seams a hard cut between windows shows.
pub fn blend_weights(side: u32) -> Vec<f32> {
    let n = side as usize;
    let ramp: Vec<f32> = (0..n)
        .map(|i| {
            let t = std::f64::consts::PI * (i as f64 + 0.5) / n as f64;
            (t.sin().powi(2) as f32).max(1e-3)
        })
        .collect();
    let mut out = Vec::with_capacity(n * n);
    for &ry in &ramp {
        out.extend(ramp.iter().map(|&rx| rx * ry));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn windows_cover_every_pixel(w in 1u32..700, h in 1u32..700, side in 16u32..300, frac in 0.25f64..=1.0) {
            let step = ((f64::from(side) * frac) as u32).max(1);
            let wins = windows(w, h, side, step);
            let mut covered = vec![false; (w * h) as usize];
            for win in &wins {
                prop_assert!(w <= side || win.x + side <= w);
                prop_assert!(h <= side || win.y + side <= h);
                for y in win.y..(win.y + side).min(h) {
                    for x in win.x..(win.x + side).min(w) {
                        covered[(y * w + x) as usize] = true;
                    }
                }
            }
            prop_assert!(covered.iter().all(|&c| c));
        }
    }

    #[test]
    fn weights_peak_in_the_middle_and_never_vanish() {
        let w = blend_weights(8);
        assert_eq!(w.len(), 64);
        assert!(w.iter().all(|&v| v > 0.0 && v <= 1.0));
        assert!(w[3 * 8 + 3] > w[0] && w[3 * 8 + 3] > w[7 * 8 + 7]);
        assert_eq!(starts(10, 4, 4), vec![0, 4, 6]);
        assert_eq!(starts(3, 4, 2), vec![0]);
    }
}
