//! The simulated analyst of the standard interactive-segmentation protocol (as in RITM and
//! SimpleClick): each next click goes to the interior point, farthest from its boundary, of the
//! largest error region; a positive click if that region is missed target, a negative one if it is
//! a false alarm. The image border counts as boundary. One target is one class of one image
//! (binary: the class or not), scored by IoU over labelled pixels.

use crate::config::IGNORE;

/// The next click for target `class`: (x, y, positive) at a pixel centre, or None when the mask is
/// already right. `truth` holds class indices ([`IGNORE`] unlabelled), `pred` the session's mask.
pub fn next_click(truth: &[u8], pred: &[u8], class: u8, w: usize, h: usize) -> Option<(f64, f64, bool)> {
    let missed: Vec<bool> = truth
        .iter()
        .zip(pred)
        .map(|(&t, &p)| t == class && p != class)
        .collect();
    let false_alarm: Vec<bool> = truth
        .iter()
        .zip(pred)
        .map(|(&t, &p)| t != class && t != IGNORE && p == class)
        .collect();
    let best = |mask: &[bool]| -> Option<(usize, f32)> {
        let d = distance_sq(mask, w, h);
        d.iter()
            .enumerate()
            .filter(|(i, _)| mask[*i])
            .fold(None, |acc: Option<(usize, f32)>, (i, &v)| match acc {
                Some((_, b)) if b >= v => acc,
                _ => Some((i, v)),
            })
    };
    let (fn_best, fp_best) = (best(&missed), best(&false_alarm));
    let (i, positive) = match (fn_best, fp_best) {
        (None, None) => return None,
        (Some((i, _)), None) => (i, true),
        (None, Some((i, _))) => (i, false),
        (Some((a, da)), Some((b, db))) => {
            if da >= db {
                (a, true)
            } else {
                (b, false)
            }
        }
    };
    Some(((i % w) as f64 + 0.5, (i / w) as f64 + 0.5, positive))
}

/// IoU of `pred == class` against `truth == class` over labelled pixels (1 when both are empty).
pub fn binary_iou(truth: &[u8], pred: &[u8], class: u8) -> f64 {
    let (mut inter, mut union) = (0u64, 0u64);
    for (&t, &p) in truth.iter().zip(pred) {
        if t == IGNORE {
            continue;
        }
        let (a, b) = (t == class, p == class);
        inter += u64::from(a && b);
        union += u64::from(a || b);
    }
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Squared Euclidean distance of every pixel of `mask` to the nearest pixel outside it (the
/// image border included: outside pixels count as outside the mask); 0 outside the mask.
/// Felzenszwalb and Huttenlocher's linear-time transform, columns then rows.
pub fn distance_sq(mask: &[bool], w: usize, h: usize) -> Vec<f32> {
    // Padding of one pixel all round makes the border a boundary.
    let (pw, ph) = (w + 2, h + 2);
    let inf = 1e20f32;
    let mut g = vec![0f32; pw * ph];
    for y in 0..h {
        for x in 0..w {
            if mask[y * w + x] {
                g[(y + 1) * pw + x + 1] = inf;
            }
        }
    }
    let mut col = vec![0f32; ph];
    let mut out = vec![0f32; ph.max(pw)];
    for x in 0..pw {
        for y in 0..ph {
            col[y] = g[y * pw + x];
        }
        dt_1d(&col, &mut out[..ph]);
        for y in 0..ph {
            g[y * pw + x] = out[y];
        }
    }
    let mut row = vec![0f32; pw];
    for y in 0..ph {
        row.copy_from_slice(&g[y * pw..(y + 1) * pw]);
        dt_1d(&row, &mut out[..pw]);
        g[y * pw..(y + 1) * pw].copy_from_slice(&out[..pw]);
    }
    let mut d = vec![0f32; w * h];
    for y in 0..h {
        d[y * w..(y + 1) * w].copy_from_slice(&g[(y + 1) * pw + 1..(y + 1) * pw + 1 + w]);
    }
    d
}

/// The 1-D squared distance transform of `f` (the lower envelope of parabolas).
fn dt_1d(f: &[f32], d: &mut [f32]) {
    let n = f.len();
    let fq = |q: usize| f64::from(f[q]) + (q * q) as f64;
    let mut v = vec![0usize; n];
    let mut z = vec![0f64; n + 1];
    let mut k = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        let mut s = (fq(q) - fq(v[k])) / (2.0 * (q - v[k]) as f64);
        // z[0] is minus infinity, so k never goes below 0.
        while s <= z[k] {
            k -= 1;
            s = (fq(q) - fq(v[k])) / (2.0 * (q - v[k]) as f64);
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    k = 0;
    for (q, dq) in d.iter_mut().enumerate().take(n) {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        *dq = ((q as f64 - p as f64).powi(2) + f64::from(f[p])) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_equal_brute_force() {
        let (w, h) = (9, 7);
        let mask: Vec<bool> = (0..w * h).map(|i| (i * 7 + i / 3) % 5 != 0).collect();
        let d = distance_sq(&mask, w, h);
        for y in 0..h {
            for x in 0..w {
                if !mask[y * w + x] {
                    assert_eq!(d[y * w + x], 0.0);
                    continue;
                }
                let mut best = f32::INFINITY;
                for yy in -1..=h as i64 {
                    for xx in -1..=w as i64 {
                        let outside = xx < 0
                            || yy < 0
                            || xx >= w as i64
                            || yy >= h as i64
                            || !mask[yy as usize * w + xx as usize];
                        if outside {
                            best = best.min(((xx - x as i64).pow(2) + (yy - y as i64).pow(2)) as f32);
                        }
                    }
                }
                assert_eq!(d[y * w + x], best, "({x}, {y})");
            }
        }
    }

    #[test]
    fn the_first_click_is_the_centre_of_the_target_and_a_false_alarm_gets_a_negative() {
        let (w, h) = (20, 10);
        let mut truth = vec![0u8; w * h];
        for y in 2..9 {
            for x in 3..10 {
                truth[y * w + x] = 1;
            }
        }
        let none = vec![IGNORE; w * h];
        let (x, y, pos) = next_click(&truth, &none, 1, w, h).unwrap();
        assert!(pos && (x - 6.5).abs() < 1e-9 && (y - 5.5).abs() < 1e-9, "{x} {y}");
        // Everything predicted as the target: the false alarm on the right is larger.
        let all = vec![1u8; w * h];
        let (x, _, pos) = next_click(&truth, &all, 1, w, h).unwrap();
        assert!(!pos && x > 10.0);
        assert!(next_click(&truth, &truth, 1, w, h).is_none());
        assert_eq!(binary_iou(&truth, &truth, 1), 1.0);
        assert!((binary_iou(&truth, &all, 1) - 49.0 / 200.0).abs() < 1e-12);
    }
}
