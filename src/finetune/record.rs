//! The record of one finished run (`result.json` in the store): its configuration, every
//! epoch's scores, the bias changes of Fig. 1 — and the one place that decides which epoch a
//! score is read at ([`EpochRule`], [`RunResult::best_record_for`]), shared by training, the
//! runner's status lines and the report.

use std::collections::BTreeMap;

use super::train::TrainConfig;
use crate::model::BiasKind;

/// JSON has no NaN/inf: serde_json writes them as `null`; read `null` back as NaN so a diverged
/// run's record (NaN weights, NaN loss) still parses.
mod nan_as_null {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Metrics of one split: metric name → value (fraction, not ×100).
pub type Scores = BTreeMap<String, f64>;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    #[serde(deserialize_with = "nan_as_null::deserialize")]
    pub train_loss: f64,
    pub train: Option<Scores>,
    /// split name (`dev`, `dev_mismatched`) → scores
    pub dev: BTreeMap<String, Scores>,
    pub seconds: f64,
}

/// Mean |Δb| of one trained bias vector (Fig. 1 cell).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BiasChange {
    /// HF name, e.g. `encoder.layer.3.attention.self.query.bias`
    pub name: String,
    /// paper kind (b_q …), None for embeddings/pooler
    pub kind: Option<BiasKind>,
    pub layer: Option<usize>,
    #[serde(deserialize_with = "nan_as_null::deserialize")]
    pub mean_abs_delta: f64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunResult {
    pub config: TrainConfig,
    pub epochs: Vec<EpochRecord>,
    /// 1-based epoch with the best headline dev metric
    pub best_epoch: usize,
    /// the task's headline metric name (mcc, f1, spearman, accuracy)
    pub headline: String,
    pub trainable_params: usize,
    pub total_params: usize,
    pub trainable_share: f64,
    pub train_examples: usize,
    pub steps: usize,
    pub wall_seconds: f64,
    #[serde(deserialize_with = "nan_as_null::deserialize")]
    pub train_examples_per_second: f64,
    pub bias_changes: Vec<BiasChange>,
    /// a NaN/inf loss stopped the run
    pub diverged: bool,
}

/// Which epoch a run's dev scores are read at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EpochRule {
    /// each dev split and each metric at its own maximum over epochs, as the reference code
    /// reports (`max` of every learning curve in `glue_evaluator.py`)
    #[default]
    PerMetric,
    /// every metric at the one epoch that is best on the headline metric
    /// ([`RunResult::best_epoch`]; MNLI: on the sum of matched and mismatched)
    Single,
}

impl std::fmt::Display for EpochRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EpochRule::PerMetric => "per-metric",
            EpochRule::Single => "single",
        })
    }
}

impl std::str::FromStr for EpochRule {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "per-metric" => Ok(EpochRule::PerMetric),
            "single" => Ok(EpochRule::Single),
            _ => Err(format!("unknown epoch rule {s:?}: per-metric or single")),
        }
    }
}

/// Whether one run's score on one dev split can be averaged, as the report classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunStatus {
    Ok,
    /// constant predictions at the reporting epoch, or MCC/F1/Spearman exactly 0: averaged by
    /// default, left out with `--exclude-degenerate`
    Degenerate,
    /// NaN/inf loss, or no finite headline score: never averaged
    Diverged,
}

/// The best-epoch lookup: the one place that decides which epoch a score is read at.
impl RunResult {
    /// The 1-based epoch best on the headline dev metric (summed over dev splits: MNLI-m +
    /// MNLI-mm); ties go to the earlier epoch; epochs not scored on dev (Diff-Pruning's search)
    /// never count; 0 when there is no scored epoch.
    pub fn headline_best_epoch(epochs: &[EpochRecord], headline: &str) -> usize {
        epochs
            .iter()
            .filter(|e| !e.dev.is_empty())
            .max_by(|a, b| {
                let h = |e: &EpochRecord| {
                    e.dev
                        .values()
                        .map(|s| s.get(headline).copied().unwrap_or(f64::MIN))
                        .sum::<f64>()
                };
                h(a).total_cmp(&h(b)).then(b.epoch.cmp(&a.epoch))
            })
            .map_or(0, |e| e.epoch)
    }

    /// The headline dev score (a fraction) of the first dev split at the best epoch, if any.
    pub fn best_headline(&self) -> Option<f64> {
        self.best_record()
            .and_then(|e| e.dev.values().next())
            .and_then(|s| s.get(&self.headline))
            .copied()
    }

    /// The epoch record at [`RunResult::best_epoch`] (best on the headline dev metric).
    pub fn best_record(&self) -> Option<&EpochRecord> {
        self.epochs.iter().find(|e| e.epoch == self.best_epoch)
    }

    /// The epoch record that reports `metric` on dev split `split` under `rule`: the run's best
    /// epoch ([`EpochRule::Single`]), or the earliest epoch where that split's metric is highest
    /// among its finite values ([`EpochRule::PerMetric`]; None when it has none).
    pub fn best_record_for(
        &self,
        split: &str,
        metric: &str,
        rule: EpochRule,
    ) -> Option<&EpochRecord> {
        match rule {
            EpochRule::Single => self.best_record(),
            EpochRule::PerMetric => {
                let value = |e: &EpochRecord| {
                    e.dev
                        .get(split)
                        .and_then(|s| s.get(metric))
                        .copied()
                        .filter(|v| v.is_finite())
                };
                // ties: the earlier epoch (as for `best_epoch`)
                self.epochs.iter().filter(|e| value(e).is_some()).fold(
                    None,
                    |best: Option<&EpochRecord>, e| match best {
                        Some(b) if value(b) >= value(e) => Some(b),
                        _ => Some(e),
                    },
                )
            }
        }
    }

    /// `metric` (a fraction, not ×100) on dev split `split` at its best epoch under `rule`;
    /// NaN when the run has no such score.
    pub fn best_score(&self, split: &str, metric: &str, rule: EpochRule) -> f64 {
        self.best_record_for(split, metric, rule)
            .and_then(|e| e.dev.get(split))
            .and_then(|s| s.get(metric))
            .copied()
            .unwrap_or(f64::NAN)
    }

    /// Whether this run's score on `split` is usable, degenerate or diverged. Degeneracy is
    /// judged at the epoch that reports the headline score under `rule` (for every task but
    /// MNLI the same epoch under both rules): constant predictions there (the `pred_*`
    /// diagnostics), or an MCC/F1/Spearman of exactly 0.
    pub fn status(&self, split: &str, rule: EpochRule) -> RunStatus {
        let head = self.best_score(split, &self.headline, rule);
        if self.diverged || !head.is_finite() {
            return RunStatus::Diverged;
        }
        let scores = self
            .best_record_for(split, &self.headline, rule)
            .and_then(|e| e.dev.get(split));
        let constant = scores.is_some_and(|s| {
            s.get("pred_majority_share").is_some_and(|v| *v >= 1.0)
                || s.get("pred_std").is_some_and(|v| *v == 0.0)
        });
        let zero = matches!(self.headline.as_str(), "mcc" | "f1" | "spearman") && head == 0.0;
        if constant || zero {
            RunStatus::Degenerate
        } else {
            RunStatus::Ok
        }
    }
}
