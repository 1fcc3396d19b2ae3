//! Segmentation scores: a confusion matrix over labelled pixels, per-class IoU and mIoU.

use serde::Serialize;

/// Counts of (truth, prediction) over labelled pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Confusion {
    k: usize,
    counts: Vec<u64>,
}

impl Confusion {
    pub fn new(classes: usize) -> Self {
        Self {
            k: classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Adds pixels; truth `IGNORE` is skipped, and so is a prediction outside the classes
    /// (`IGNORE`: no prediction), which counts as neither right nor wrong.
    pub fn add(&mut self, truth: &[u8], pred: &[u8]) {
        for (&t, &p) in truth.iter().zip(pred) {
            let (t, p) = (usize::from(t), usize::from(p));
            if t < self.k && p < self.k {
                self.counts[t * self.k + p] += 1;
            }
        }
    }

    pub fn merge(&mut self, other: &Confusion) {
        self.counts
            .iter_mut()
            .zip(&other.counts)
            .for_each(|(a, b)| *a += b);
    }

    /// IoU of each class; None where the class is in neither truth nor prediction.
    pub fn iou(&self) -> Vec<Option<f64>> {
        (0..self.k)
            .map(|c| {
                let tp = self.counts[c * self.k + c];
                let truth: u64 = (0..self.k).map(|p| self.counts[c * self.k + p]).sum();
                let pred: u64 = (0..self.k).map(|t| self.counts[t * self.k + c]).sum();
                let union = truth + pred - tp;
                (union > 0).then(|| tp as f64 / union as f64)
            })
            .collect()
    }

    /// The mean IoU over the classes that appear.
    pub fn miou(&self) -> f64 {
        let v: Vec<f64> = self.iou().into_iter().flatten().collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }

    /// Share of labelled pixels predicted right.
    pub fn accuracy(&self) -> f64 {
        let total: u64 = self.counts.iter().sum();
        let right: u64 = (0..self.k).map(|c| self.counts[c * self.k + c]).sum();
        if total == 0 {
            0.0
        } else {
            right as f64 / total as f64
        }
    }

    /// Labelled pixels counted.
    pub fn pixels(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Scores in a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    pub miou: f64,
    pub accuracy: f64,
    /// Per class, None where the class is in neither truth nor prediction.
    pub iou: Vec<Option<f64>>,
    pub pixels: u64,
}

impl From<&Confusion> for Scores {
    fn from(c: &Confusion) -> Self {
        Scores {
            miou: c.miou(),
            accuracy: c.accuracy(),
            iou: c.iou(),
            pixels: c.pixels(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IGNORE;

    #[test]
    fn iou_by_hand() {
        let mut c = Confusion::new(3);
        // truth: 0 0 1 1 255 ; pred: 0 1 1 1 0
        c.add(&[0, 0, 1, 1, IGNORE], &[0, 1, 1, 1, 0]);
        let iou = c.iou();
        assert_eq!(iou[0], Some(0.5)); // tp 1, truth 2, pred 1
        assert_eq!(iou[1], Some(2.0 / 3.0)); // tp 2, truth 2, pred 3
        assert_eq!(iou[2], None);
        assert!((c.miou() - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(c.accuracy(), 0.75);
        assert_eq!(c.pixels(), 4);
    }
}
