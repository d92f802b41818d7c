//! GLUE metrics, as scikit-learn and scipy compute them: accuracy, F1 (positive class 1),
//! Matthews correlation (multi-class form), Pearson and Spearman (average ranks for ties).

use std::collections::BTreeMap;

use crate::data::{Metric, Task};

pub fn accuracy(labels: &[usize], preds: &[usize]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    labels.iter().zip(preds).filter(|(a, b)| a == b).count() as f64 / labels.len() as f64
}

/// Binary F1 of class 1 (sklearn's default `pos_label=1`); 0 when undefined.
pub fn f1(labels: &[usize], preds: &[usize]) -> f64 {
    let (mut tp, mut fp, mut fneg) = (0f64, 0f64, 0f64);
    for (&y, &p) in labels.iter().zip(preds) {
        match (y == 1, p == 1) {
            (true, true) => tp += 1.0,
            (false, true) => fp += 1.0,
            (true, false) => fneg += 1.0,
            _ => {}
        }
    }
    if tp == 0.0 {
        0.0
    } else {
        2.0 * tp / (2.0 * tp + fp + fneg)
    }
}

/// Matthews correlation coefficient, sklearn's multi-class formula; 0 when undefined
/// (e.g. constant predictions).
pub fn matthews(labels: &[usize], preds: &[usize]) -> f64 {
    let k = labels
        .iter()
        .chain(preds)
        .copied()
        .max()
        .map_or(0, |m| m + 1);
    let mut t = vec![0f64; k];
    let mut p = vec![0f64; k];
    let mut c = 0f64;
    for (&y, &q) in labels.iter().zip(preds) {
        t[y] += 1.0;
        p[q] += 1.0;
        if y == q {
            c += 1.0;
        }
    }
    let s = labels.len() as f64;
    let tp: f64 = t.iter().zip(&p).map(|(a, b)| a * b).sum();
    let cov_yp = c * s - tp;
    let cov_pp = s * s - p.iter().map(|x| x * x).sum::<f64>();
    let cov_yy = s * s - t.iter().map(|x| x * x).sum::<f64>();
    let d = (cov_yy * cov_pp).sqrt();
    if d == 0.0 { 0.0 } else { cov_yp / d }
}

pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    if x.len() < 2 {
        return 0.0;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    let d = (sxx * syy).sqrt();
    if d == 0.0 { 0.0 } else { sxy / d }
}

/// Ranks 1..n with ties given their average rank (scipy's `rankdata(method="average")`).
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// Model outputs on one split, ready for scoring.
#[derive(Clone, Debug)]
pub enum Outputs {
    Classes {
        labels: Vec<usize>,
        preds: Vec<usize>,
    },
    Scores {
        labels: Vec<f64>,
        preds: Vec<f64>,
    },
}

/// Every metric of `task` (names as in [`Metric`]'s Display), as fractions (not ×100).
pub fn score(task: Task, out: &Outputs) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for metric in task.metrics() {
        let v = match (metric, out) {
            (Metric::Accuracy, Outputs::Classes { labels, preds }) => accuracy(labels, preds),
            (Metric::F1, Outputs::Classes { labels, preds }) => f1(labels, preds),
            (Metric::Matthews, Outputs::Classes { labels, preds }) => matthews(labels, preds),
            (Metric::Pearson, Outputs::Scores { labels, preds }) => pearson(preds, labels),
            (Metric::Spearman, Outputs::Scores { labels, preds }) => spearman(preds, labels),
            _ => continue,
        };
        m.insert(metric.to_string(), v);
    }
    m
}
