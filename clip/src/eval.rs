//! Retrieval and zero-shot metrics of a shared embedding space, as CLIP papers compute them:
//! R@K is, per query, 1 when a correct item is among the top K, averaged over queries.

use serde::Serialize;

/// Text-to-image and image-to-text recall at 1, 5 and 10 (fractions, not percents).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrievalMetrics {
    pub t2i: [f32; 3],
    pub i2t: [f32; 3],
    /// Mean of the six recalls.
    pub mean_recall: f32,
}

const KS: [usize; 3] = [1, 5, 10];

/// The element-wise mean of several sets' metrics (each set weighs the same).
pub fn macro_average(metrics: &[RetrievalMetrics]) -> RetrievalMetrics {
    let n = metrics.len().max(1) as f32;
    let mut out = RetrievalMetrics {
        t2i: [0.0; 3],
        i2t: [0.0; 3],
        mean_recall: 0.0,
    };
    for m in metrics {
        for k in 0..3 {
            out.t2i[k] += m.t2i[k] / n;
            out.i2t[k] += m.i2t[k] / n;
        }
        out.mean_recall += m.mean_recall / n;
    }
    out
}

/// `scores[t][i]`: similarity of text `t` and image `i`; `text_image[t]`: the image of text `t`.
pub fn retrieval_metrics(scores: &[Vec<f32>], text_image: &[usize]) -> RetrievalMetrics {
    let n_img = scores.first().map_or(0, Vec::len);
    let mut t2i = [0f32; 3];
    for (t, row) in scores.iter().enumerate() {
        let rank = rank_of(row, text_image[t]);
        for (k, slot) in KS.iter().zip(t2i.iter_mut()) {
            if rank < *k {
                *slot += 1.0;
            }
        }
    }
    // Image-to-text counts the images that have a caption (a scene set's images may have none).
    let mut captioned = vec![false; n_img];
    for &i in text_image {
        if i < n_img {
            captioned[i] = true;
        }
    }
    let n_queries = captioned.iter().filter(|&&c| c).count();
    let mut i2t = [0f32; 3];
    for i in (0..n_img).filter(|&i| captioned[i]) {
        let column: Vec<f32> = scores.iter().map(|row| row[i]).collect();
        // Best rank among the image's own captions.
        let best = (0..scores.len())
            .filter(|&t| text_image[t] == i)
            .map(|t| rank_of(&column, t))
            .min()
            .unwrap_or(usize::MAX);
        for (k, slot) in KS.iter().zip(i2t.iter_mut()) {
            if best < *k {
                *slot += 1.0;
            }
        }
    }
    t2i.iter_mut().for_each(|x| *x /= scores.len().max(1) as f32);
    i2t.iter_mut().for_each(|x| *x /= n_queries.max(1) as f32);
    let mean_recall = (t2i.iter().sum::<f32>() + i2t.iter().sum::<f32>()) / 6.0;
    RetrievalMetrics {
        t2i,
        i2t,
        mean_recall,
    }
}

/// Number of items scored strictly higher than `target` (ties resolve in the target's favour).
fn rank_of(row: &[f32], target: usize) -> usize {
    let s = row[target];
    row.iter().filter(|&&x| x > s).count()
}

/// Zero-shot accuracy: `scores[i][c]` similarity of image `i` and the prompt of class `c`.
pub fn zero_shot_accuracy(scores: &[Vec<f32>], classes: &[usize]) -> f32 {
    let correct = scores
        .iter()
        .zip(classes)
        .filter(|(row, &c)| {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(j, _)| j);
            best == Some(c)
        })
        .count();
    correct as f32 / scores.len().max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_by_hand() {
        // 3 texts, 2 images; text 0 and 1 describe image 0, text 2 image 1.
        let scores = vec![vec![0.9, 0.1], vec![0.2, 0.8], vec![0.3, 0.7]];
        let m = retrieval_metrics(&scores, &[0, 0, 1]);
        assert_eq!(m.t2i, [2.0 / 3.0, 1.0, 1.0]);
        // Image 0: text 0 ranks first. Image 1: text 1 (0.8) beats text 2 (0.7), so rank 1.
        assert_eq!(m.i2t, [0.5, 1.0, 1.0]);
    }

    #[test]
    fn images_without_captions_are_distractors_not_queries() {
        // Image 2 has no caption: it competes in text-to-image, but is no image-to-text query.
        let scores = vec![vec![0.9, 0.1, 0.95], vec![0.2, 0.8, 0.0]];
        let m = retrieval_metrics(&scores, &[0, 1]);
        assert_eq!(m.t2i, [0.5, 1.0, 1.0]);
        assert_eq!(m.i2t, [1.0, 1.0, 1.0]);
    }

    #[test]
    fn zero_shot_by_hand() {
        let scores = vec![vec![0.1, 0.9], vec![0.8, 0.2], vec![0.6, 0.4]];
        assert_eq!(zero_shot_accuracy(&scores, &[1, 0, 1]), 2.0 / 3.0);
    }
}
