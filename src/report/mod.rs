//! `repro report`: aggregate stored runs with polars and print them beside the paper's numbers.
//! Reads only the results store: no retraining, deterministic output.
//!
//! Protocol: each run contributes every dev metric (×100) at its best epoch and at its last
//! epoch. "Best epoch" follows [`EpochRule`]: by default each dev split and each metric takes
//! its own maximum over epochs, as the reference code reports (MNLI-m and MNLI-mm apart, MRPC
//! accuracy apart from MRPC F1); `--epoch-rule single` reads every metric at the one epoch that
//! is best on the headline metric. Runs are grouped by model, protocol ([`protocol_of`]), task,
//! method, training size, learning rate and metric (mean ± sample std over seeds, n); per
//! (model, protocol, task, method, size) the learning rate with the best mean best-epoch
//! headline score is selected — the same mean the tables print. MNLI contributes MNLI-m and
//! MNLI-mm. Every finished run is averaged, degenerate ones included (constant predictions on
//! the dev split, or MCC/F1/Spearman exactly 0: counted as `degen.`); `--exclude-degenerate`
//! leaves them out of the means. Diverged runs (or runs without a finite score) have no usable
//! score: never averaged, counted as `diverged`. See [`Rules`].
//!
//! The pipeline is typed end to end: run records → [`RunRow`]s ([`rows_of`]) → polars groups
//! them ([`aggregate`]) → typed [`AggRow`]s, once ([`agg_rows`]) → the tables' [`Cell`]s keyed
//! by [`CellKey`] ([`best_cells`]) → tables and figures. Fig. 1, the generalization gap and the
//! learning curves key their cells by the same [`CellKey`]; methods are labelled, coloured and
//! ordered from [`crate::finetune::method::PAPER_METHODS`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use polars::prelude::{DataFrame, ParquetWriter};

use crate::finetune::RunResult;
use crate::finetune::method::paper_method;
pub use crate::finetune::record::{EpochRule, RunStatus};
use crate::store::{Store, write_atomic};

pub mod figures;
mod frame;
pub mod tables;

pub use frame::{AggRow, agg_rows, aggregate};

/// The paper's task columns, in its table order.
pub const PAPER_TASKS: [&str; 9] = [
    "QNLI", "SST-2", "MNLI-m", "MNLI-mm", "CoLA", "MRPC", "STS-B", "RTE", "QQP",
];

/// The rules a report is computed under; every table names them in its header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub epoch: EpochRule,
    /// leave degenerate runs out of the means (the pre-change view); by default they are averaged
    pub exclude_degenerate: bool,
}

impl Rules {
    /// The rules in one sentence, for table headers.
    pub fn describe(&self) -> String {
        let epoch = match self.epoch {
            EpochRule::PerMetric => {
                "epoch rule `per-metric`: each dev split and each metric at its own best epoch (max over epochs, \
                 as the reference code reports; MNLI-m and MNLI-mm apart, secondary metrics apart)"
            }
            EpochRule::Single => {
                "epoch rule `single`: every metric at the one epoch best on the headline dev metric (MNLI: on \
                 matched + mismatched)"
            }
        };
        let (degen, lr) = if self.exclude_degenerate {
            (
                "degenerate runs (constant predictions on dev, or MCC/F1/Spearman exactly 0) left out of the means \
                 and counted (`degen. excl.`, `--exclude-degenerate`)",
                "learning rate chosen per cell by the best mean over the non-degenerate runs",
            )
        } else {
            (
                "every finished run averaged, degenerate ones included (constant predictions on dev, or \
                 MCC/F1/Spearman exactly 0; counted as `degen.`, inside n)",
                "learning rate chosen per cell by the best mean over all its finished runs (the mean shown)",
            )
        };
        format!(
            "{epoch}; {degen}; diverged runs (NaN/inf loss, no finite score) never averaged, counted (`diverged`); {lr}"
        )
    }

    /// The rules in a few words (figure captions, LaTeX captions).
    pub fn short(&self) -> String {
        let degen = if self.exclude_degenerate {
            "degenerate runs excluded"
        } else {
            "degenerate runs averaged"
        };
        format!("epoch rule {} · {degen} · lr by that mean", self.epoch)
    }
}

/// One run × dev split × metric, flattened.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRow {
    pub model: String,
    /// the training protocol (see [`protocol_of`]); runs pool only within one
    pub protocol: String,
    pub task: String,
    pub method: String,
    /// 0 = the whole training set
    pub train_size: i64,
    pub lr: f64,
    pub seed: i64,
    pub metric: String,
    /// the task's headline metric (tables, best-lr choice); the others are kept as secondary
    pub headline: bool,
    /// ×100 at the best epoch under the epoch rule the row was built with ([`rows_of`])
    pub best: f64,
    /// ×100 at the last epoch
    pub last: f64,
    /// no usable score (diverged): never averaged
    pub diverged: bool,
    /// constant predictions or MCC/F1/Spearman exactly 0: averaged unless excluded
    pub degenerate: bool,
    /// training examples the run saw per epoch (the x axis of Fig. 2)
    pub examples: i64,
    /// trainable share of the model's parameters, in percent
    pub param_pct: f64,
}

impl RunRow {
    /// The cell this row is averaged in.
    pub fn key(&self) -> CellKey {
        CellKey {
            model: self.model.clone(),
            protocol: self.protocol.clone(),
            task: self.task.clone(),
            train_size: self.train_size,
            method: self.method.clone(),
        }
    }

    /// Whether this row enters the means under `rules`.
    pub fn averaged(&self, rules: &Rules) -> bool {
        !(self.diverged || (rules.exclude_degenerate && self.degenerate))
    }
}

fn model_name(r: &RunResult) -> String {
    r.config
        .model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The settings a run shares with the runs it is averaged with, beyond the table axes (model,
/// task, method, train size, lr): runs of different protocols are never pooled.
pub fn protocol_of(c: &crate::finetune::TrainConfig) -> String {
    let dev = c
        .eval_size
        .map_or("full dev".to_string(), |n| format!("dev first {n}"));
    let sched = match c.schedule {
        crate::finetune::train::Schedule::Constant => "constant lr".to_string(),
        crate::finetune::train::Schedule::Linear { warmup_ratio } => {
            format!("linear lr warm-up {warmup_ratio}")
        }
    };
    let pad = if c.pad_to_max_length { " padded" } else { "" };
    let head = format!("{:?}", c.head).to_lowercase();
    let floor = c
        .min_steps
        .map_or(String::new(), |m| format!(" (≥{m} steps)"));
    format!(
        "{} ep{floor} · batch {} · len {}{pad} · {dev} · {head} head · {sched}",
        c.epochs, c.batch_size, c.max_length
    )
}

/// A (model, protocol) setting: tables get one block and figures one file per setting.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Setting {
    pub model: String,
    pub protocol: String,
}

/// The key of one report cell, shared by the aggregate, the tables, the figures, Fig. 1's
/// bias-change means, the generalization gap and the learning curves: runs with the same key
/// are averaged together (over seeds; the aggregate also splits a cell by learning rate and
/// metric). Ordered field by field: setting, task, training size, method.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellKey {
    pub model: String,
    /// the training protocol (see [`protocol_of`]); runs pool only within one
    pub protocol: String,
    /// the task as the tables name it (MNLI-m / MNLI-mm) for rows of [`rows_of`]; as the run
    /// names it (MNLI) for the keys of [`CellKey::of_run`]
    pub task: String,
    /// 0 = the whole training set; [`ANY_SIZE`] where every size is pooled (Fig. 1)
    pub train_size: i64,
    pub method: String,
}

/// `train_size` of a key that pools every training size: Fig. 1 averages the bias changes of a
/// (model, protocol, task, method) over all its runs, whatever their training-set size.
pub const ANY_SIZE: i64 = -1;

impl CellKey {
    /// The key of a run record (its task as the run names it: MNLI, not MNLI-m / MNLI-mm).
    pub fn of_run(r: &RunResult) -> CellKey {
        CellKey {
            model: model_name(r),
            protocol: protocol_of(&r.config),
            task: r.config.task.name().to_string(),
            train_size: r.config.train_size.map_or(0, |n| n as i64),
            method: r.config.method.to_string(),
        }
    }

    /// The (model, protocol) setting of this key.
    pub fn setting(&self) -> Setting {
        Setting {
            model: self.model.clone(),
            protocol: self.protocol.clone(),
        }
    }
}

/// The printed name of a method: its label in [`crate::finetune::method::PAPER_METHODS`] (the
/// paper's notation), a baseline's name at its usual settings ([`crate::finetune::method::BASELINE_LABELS`]), else its spelling.
pub fn method_label(method: &str) -> &str {
    match paper_method(method) {
        Some(m) => m.label,
        None => crate::finetune::method::BASELINE_LABELS
            .iter()
            .find(|(s, _)| *s == method)
            .map_or(method, |(_, l)| l),
    }
}

/// How a training size is printed: `all` for the whole set.
pub fn size_label(size: i64) -> String {
    if size == 0 {
        "all".to_string()
    } else {
        size.to_string()
    }
}

/// Flatten a run record into one row per dev split and metric (headline first), the best
/// value read under `rule`.
pub fn rows_of(r: &RunResult, rule: EpochRule) -> Vec<RunRow> {
    let run = CellKey::of_run(r);
    let last = r.epochs.last();
    let mut out = Vec::new();
    let mut splits: std::collections::BTreeSet<String> = r
        .epochs
        .iter()
        .flat_map(|e| e.dev.keys().cloned())
        .collect();
    if splits.is_empty() {
        splits.insert("dev".into());
    }
    for split in splits {
        let task = match (run.task.as_str(), split.as_str()) {
            ("MNLI", "dev") => "MNLI-m".to_string(),
            ("MNLI", _) => "MNLI-mm".to_string(),
            (t, _) => t.to_string(),
        };
        let status = r.status(&split, rule);
        let mut metrics = vec![r.headline.clone()];
        // `pred_*` keys are diagnostics, not metrics
        let others: std::collections::BTreeSet<&String> = r
            .epochs
            .iter()
            .filter_map(|e| e.dev.get(&split))
            .flat_map(|s| s.keys())
            .filter(|k| **k != r.headline && !k.starts_with("pred_"))
            .collect();
        metrics.extend(others.into_iter().cloned());
        for m in metrics {
            out.push(RunRow {
                model: run.model.clone(),
                protocol: run.protocol.clone(),
                task: task.clone(),
                method: run.method.clone(),
                train_size: run.train_size,
                lr: r.config.lr,
                seed: r.config.seed as i64,
                headline: m == r.headline,
                best: 100.0 * r.best_score(&split, &m, rule),
                last: last
                    .and_then(|e| e.dev.get(&split))
                    .and_then(|s| s.get(&m))
                    .map_or(f64::NAN, |v| 100.0 * v),
                metric: m,
                diverged: status == RunStatus::Diverged,
                degenerate: status == RunStatus::Degenerate,
                examples: r.train_examples as i64,
                param_pct: 100.0 * r.trainable_share,
            });
        }
    }
    out
}

/// Every done run of the given stores, each run once: a run id found in two stores (two grids
/// that share a cell: the same settings, model and data) is the same run and counts once, from
/// the first store that holds it.
pub fn load_results(stores: &[&Path]) -> Result<Vec<RunResult>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for s in stores {
        for (id, r) in Store::open(s)?.results()? {
            if seen.insert(id) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// Fig. 1 key: the cell (every training size pooled: `train_size` is [`ANY_SIZE`]), the bias row
/// (paper bias kind b_q … b_LN2, or `emb_LN` / `pooler` for the two vectors outside the layers)
/// and the layer (None outside the layers).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BiasKey {
    pub cell: CellKey,
    pub row: String,
    pub layer: Option<usize>,
}

/// Row label of a bias vector outside the encoder layers.
fn extra_row(name: &str) -> Option<&'static str> {
    if name.starts_with("embeddings.LayerNorm") {
        Some("emb_LN")
    } else if name.starts_with("pooler.") {
        Some("pooler")
    } else {
        None
    }
}

/// Whether `r` was trained at the learning rate its cell's tables selected (`best`; for MNLI the
/// MNLI-m cell's). Fig. 1 and the generalization gap read only these runs, as the learning curves
/// do, so that they describe the configuration the tables report rather than a mix of the sweep's
/// rates (a bias moves about in proportion to the rate; a gap grows with it).
pub fn at_selected_lr(r: &RunResult, best: &BestCells, rules: &Rules) -> bool {
    rows_of(r, rules.epoch)
        .into_iter()
        .find(|row| row.headline)
        .and_then(|row| best.get(&row.key()))
        .is_some_and(|cell| cell.lr == r.config.lr)
}

/// Fig. 1 data: mean |Δb| per (model, protocol, task, method, bias row, layer), averaged over
/// the runs that did not diverge and were trained at their cell's selected learning rate (seeds,
/// and every training size at that size's rate; [`at_selected_lr`]). Vectors the method does not
/// train get no cell.
pub fn bias_change_means(
    results: &[RunResult],
    best: &BestCells,
    rules: &Rules,
) -> BTreeMap<BiasKey, f64> {
    let mut acc: BTreeMap<BiasKey, (f64, usize)> = BTreeMap::new();
    for r in results
        .iter()
        .filter(|r| !r.diverged && at_selected_lr(r, best, rules))
    {
        let cell = CellKey {
            train_size: ANY_SIZE,
            ..CellKey::of_run(r)
        };
        for b in &r.bias_changes {
            let (row, layer) = match (b.kind, b.layer) {
                (Some(kind), Some(layer)) => (kind.name(), Some(layer)),
                _ => match extra_row(&b.name) {
                    Some(row) => (row, None),
                    None => continue,
                },
            };
            if b.mean_abs_delta == 0.0 && !r.config.method.trains(&b.name) {
                continue; // not trained under this method
            }
            let key = BiasKey {
                cell: cell.clone(),
                row: row.to_string(),
                layer,
            };
            let e = acc.entry(key).or_default();
            e.0 += b.mean_abs_delta;
            e.1 += 1;
        }
    }
    acc.into_iter()
        .map(|(k, (s, n))| (k, s / n as f64))
        .collect()
}

/// Fig. 1 rows in display order: b_q … b_LN2, then emb_LN and pooler.
pub const FIG1_ROWS: [&str; 10] = [
    "b_q", "b_k", "b_v", "b_m1", "b_LN1", "b_m2", "b_m3", "b_LN2", "emb_LN", "pooler",
];

/// One Fig. 1 heat map: rows (label, per-layer values, Avg.) for one cell (every training size
/// pooled).
#[derive(Clone, Debug, PartialEq)]
pub struct HeatMap {
    pub key: CellKey,
    pub layers: usize,
    pub rows: Vec<(String, Vec<Option<f64>>, f64)>,
}

/// Group the Fig. 1 means into one heat map per cell. A row's Avg. is the mean over its layers
/// (emb_LN and pooler have one vector, shown in the Avg. column only).
pub fn heat_maps(means: &BTreeMap<BiasKey, f64>) -> Vec<HeatMap> {
    // cell → (bias row, layer) → mean
    let mut groups: BTreeMap<&CellKey, BTreeMap<(&str, Option<usize>), f64>> = BTreeMap::new();
    for (k, v) in means {
        groups
            .entry(&k.cell)
            .or_default()
            .insert((k.row.as_str(), k.layer), *v);
    }
    groups
        .into_iter()
        .map(|(key, cells)| {
            let layers = cells
                .keys()
                .filter_map(|(_, l)| *l)
                .max()
                .map_or(0, |l| l + 1);
            let rows = FIG1_ROWS
                .iter()
                .filter_map(|row| {
                    let vals: Vec<Option<f64>> = (0..layers)
                        .map(|l| cells.get(&(*row, Some(l))).copied())
                        .collect();
                    let present: Vec<f64> = vals.iter().flatten().copied().collect();
                    let avg = if present.is_empty() {
                        *cells.get(&(*row, None))?
                    } else {
                        present.iter().sum::<f64>() / present.len() as f64
                    };
                    Some((row.to_string(), vals, avg))
                })
                .collect();
            HeatMap {
                key: key.clone(),
                layers,
                rows,
            }
        })
        .collect()
}

/// Fig. 1 as a Markdown table per heat map: rows b_q…b_LN2, columns layers + Avg.
pub fn bias_change_markdown(maps: &[HeatMap]) -> String {
    let mut s = String::from(
        "Mean |Δb| over each bias vector's dimensions (Fig. 1 quantity), mean over the runs at each \
         cell's selected learning rate (seeds; training sizes pooled, each at its own rate).\n\n",
    );
    for h in maps {
        let k = &h.key;
        let _ = writeln!(
            s,
            "### {} · {} · {} ({})\n",
            k.model, k.task, k.method, k.protocol
        );
        let head: Vec<String> = (1..=h.layers).map(|l| l.to_string()).collect();
        let _ = writeln!(s, "| bias | {} | Avg. |", head.join(" | "));
        let _ = writeln!(s, "|---|{}---|", "---|".repeat(h.layers));
        for (row, vals, avg) in &h.rows {
            let cols: Vec<String> = vals
                .iter()
                .map(|v| v.map_or("".into(), |v| format!("{v:.2e}")))
                .collect();
            let _ = writeln!(s, "| {row} | {} | {avg:.2e} |", cols.join(" | "));
        }
        let _ = writeln!(s);
    }
    s
}

/// Generalization gap of one cell: train and dev headline metric ×100 at each run's single best
/// epoch (best on the headline dev metric), per run.
#[derive(Clone, Debug, PartialEq)]
pub struct Gap {
    pub key: CellKey,
    pub train: Vec<f64>,
    pub dev: Vec<f64>,
}

impl Gap {
    pub fn gaps(&self) -> Vec<f64> {
        self.train
            .iter()
            .zip(&self.dev)
            .map(|(t, d)| t - d)
            .collect()
    }
}

/// Train − dev headline metric at each run's single best epoch (train and dev read at the same
/// epoch, whatever the tables' epoch rule), per cell, over runs at the cell's selected learning
/// rate ([`at_selected_lr`]) that recorded train-set metrics and are neither diverged nor
/// degenerate (whatever the tables' degenerate rule: a constant predictor has no gap to speak of).
pub fn generalization_gaps(results: &[RunResult], best: &BestCells, rules: &Rules) -> Vec<Gap> {
    let mut acc: BTreeMap<CellKey, Gap> = BTreeMap::new();
    for r in results.iter().filter(|r| {
        r.status("dev", EpochRule::Single) == RunStatus::Ok && at_selected_lr(r, best, rules)
    }) {
        let Some(e) = r.best_record() else { continue };
        let (Some(train), Some(dev)) = (
            e.train.as_ref().and_then(|s| s.get(&r.headline)),
            e.dev.get("dev").and_then(|s| s.get(&r.headline)),
        ) else {
            continue;
        };
        let key = CellKey::of_run(r);
        let g = acc.entry(key.clone()).or_insert_with(|| Gap {
            key,
            train: vec![],
            dev: vec![],
        });
        g.train.push(100.0 * train);
        g.dev.push(100.0 * dev);
    }
    acc.into_values().collect()
}

/// Mean and sample standard deviation (NaN for n < 2).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = if v.len() < 2 {
        f64::NAN
    } else {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    };
    (mean, std)
}

/// Generalization gap as a Markdown table.
pub fn generalization_gap_markdown(gaps: &[Gap]) -> String {
    let mut s = String::from(
        "Generalization gap: train − dev headline metric ×100, both read at each run's single best epoch (the \
         epoch best on the headline dev metric; the tables' epoch rule does not apply), mean over the runs at \
         the cell's selected learning rate (n; diverged and degenerate runs left out, whatever the tables' \
         degenerate rule).\n\n\
         | model | protocol | task | train size | method | train | dev | gap | n |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for g in gaps {
        let (tr, dv) = (mean_std(&g.train).0, mean_std(&g.dev).0);
        let k = &g.key;
        let size = size_label(k.train_size);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {size} | {} | {tr:.1} | {dv:.1} | {:.1} | {} |",
            k.model,
            k.protocol,
            k.task,
            k.method,
            tr - dv,
            g.train.len()
        );
    }
    s
}

/// Learning curve of one cell at its best learning rate: dev headline metric ×100 per epoch,
/// mean ± std over seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub key: CellKey,
    pub lr: f64,
    /// (epoch, mean, std, n)
    pub points: Vec<(usize, f64, f64, usize)>,
}

/// Learning curves (dev metric per epoch, no best-epoch choice) at each cell's selected learning
/// rate, over the runs the cell averages under `rules` (diverged runs never).
pub fn learning_curves(results: &[RunResult], best: &BestCells, rules: &Rules) -> Vec<Curve> {
    /// epoch → the runs' dev scores ×100
    type Epochs = BTreeMap<usize, Vec<f64>>;
    let mut acc: BTreeMap<CellKey, (f64, Epochs)> = BTreeMap::new();
    for r in results.iter().filter(|r| !r.diverged) {
        let lr = r.config.lr;
        for row in rows_of(r, rules.epoch)
            .into_iter()
            .filter(|row| row.headline && row.averaged(rules))
        {
            let key = row.key();
            let Some(cell) = best.get(&key) else {
                continue;
            };
            if cell.lr != lr {
                continue;
            }
            let split = if row.task == "MNLI-mm" {
                "dev_mismatched"
            } else {
                "dev"
            };
            let e = acc.entry(key).or_insert_with(|| (lr, BTreeMap::new()));
            for ep in &r.epochs {
                if let Some(v) = ep.dev.get(split).and_then(|s| s.get(&r.headline)) {
                    e.1.entry(ep.epoch).or_default().push(100.0 * v);
                }
            }
        }
    }
    acc.into_iter()
        .map(|(key, (lr, eps))| Curve {
            key,
            lr,
            points: eps
                .into_iter()
                .map(|(e, v)| {
                    let (m, s) = mean_std(&v);
                    (e, m, s, v.len())
                })
                .collect(),
        })
        .collect()
}

/// One aggregated cell (the headline metric at the selected learning rate).
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub lr: f64,
    pub mean: f64,
    pub std: f64,
    /// runs averaged
    pub n: u32,
    /// runs left out of the mean (diverged, plus degenerate under `--exclude-degenerate`)
    pub excluded: u32,
    /// degenerate runs (inside n by default, among `excluded` under `--exclude-degenerate`)
    pub degenerate: u32,
    /// diverged runs (always among `excluded`)
    pub diverged: u32,
    /// mean training examples per run (the whole set when train_size = 0)
    pub examples: f64,
    /// trainable parameters, % of the model
    pub param_pct: f64,
    /// the other dev metrics at the same learning rate: name → mean ×100
    pub secondary: BTreeMap<String, f64>,
    /// their sample std ×100 (NaN for n < 2)
    pub secondary_std: BTreeMap<String, f64>,
}

/// The tables' cells: each cell's headline metric at its selected learning rate.
pub type BestCells = BTreeMap<CellKey, Cell>;

/// Best learning rate per cell, by the mean best-epoch headline metric as aggregated (the mean
/// the tables print: every finished run by default, so one surviving seed cannot win a cell);
/// the secondary metrics are read at that learning rate. [`best_cells`] over [`agg_rows`].
pub fn best_lr(agg: &DataFrame) -> Result<BestCells> {
    Ok(best_cells(&agg_rows(agg)?))
}

/// [`best_lr`] over the aggregate's typed rows (in the aggregate's order: on equal means the
/// smaller learning rate stays).
pub fn best_cells(rows: &[AggRow]) -> BestCells {
    let mut out = BestCells::new();
    for a in rows.iter().filter(|a| a.headline) {
        let cell = Cell {
            lr: a.lr,
            mean: a.best_mean,
            std: a.best_std,
            n: a.n,
            excluded: a.n_excluded,
            degenerate: a.n_degenerate,
            diverged: a.n_diverged,
            examples: a.examples,
            param_pct: a.param_pct,
            secondary: BTreeMap::new(),
            secondary_std: BTreeMap::new(),
        };
        let better = match out.get(&a.key) {
            None => true,
            Some(c) => cell.mean.is_finite() && (!c.mean.is_finite() || cell.mean > c.mean),
        };
        if better {
            out.insert(a.key.clone(), cell);
        }
    }
    for a in rows.iter().filter(|a| !a.headline) {
        if let Some(c) = out.get_mut(&a.key)
            && c.lr == a.lr
        {
            c.secondary.insert(a.metric.clone(), a.best_mean);
            c.secondary_std.insert(a.metric.clone(), a.best_std);
        }
    }
    out
}

/// The paper's Avg.: mean over the 8 tasks with MNLI-m and MNLI-mm averaged first; the missing
/// tasks when any is absent.
pub fn paper_avg(cells: &BTreeMap<String, Cell>) -> std::result::Result<f64, Vec<String>> {
    let vals: BTreeMap<String, f64> = cells.iter().map(|(t, c)| (t.clone(), c.mean)).collect();
    avg_of(&vals)
}

/// The paper's Avg. over plain task → value.
pub fn avg_of(vals: &BTreeMap<String, f64>) -> std::result::Result<f64, Vec<String>> {
    let get = |t: &str| vals.get(t).copied().filter(|v| v.is_finite());
    let missing: Vec<String> = PAPER_TASKS
        .iter()
        .filter(|t| get(t).is_none())
        .map(|t| t.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    let mnli = (get("MNLI-m").unwrap() + get("MNLI-mm").unwrap()) / 2.0;
    let others: f64 = ["QNLI", "SST-2", "CoLA", "MRPC", "STS-B", "RTE", "QQP"]
        .iter()
        .map(|t| get(t).unwrap())
        .sum();
    Ok((others + mnli) / 8.0)
}

/// Everything `repro report` wrote.
pub struct Written {
    pub files: Vec<String>,
    /// the Table 3 Markdown (printed to the terminal)
    pub table3: String,
    /// figures skipped, with the reason
    pub skipped: Vec<String>,
}

/// Aggregate the stores under `rules` and write the tables and figures to `out`.
pub fn report(stores: &[&Path], out: &Path, rules: &Rules) -> Result<Written> {
    let results = load_results(stores)?;
    let rows: Vec<RunRow> = results
        .iter()
        .flat_map(|r| rows_of(r, rules.epoch))
        .collect();
    if rows.is_empty() {
        anyhow::bail!(
            "no finished runs in {:?}; run a grid first (repro run experiments/quickstart.toml)",
            stores
        );
    }
    let mut agg = aggregate(&rows, rules)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut files = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        write_atomic(&out.join(name), bytes)?;
        files.push(name.to_string());
        Ok(())
    };
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf).finish(&mut agg)?;
    put("aggregate.parquet", &buf)?;
    put("aggregate.csv", frame::aggregate_csv(&agg)?.as_bytes())?;
    let best = best_cells(&agg_rows(&agg)?);
    let mut table3 = String::new();
    for spec in tables::TABLES {
        let t = tables::render(&spec, &best, rules)?;
        put(&format!("{}.md", spec.id), t.markdown.as_bytes())?;
        put(&format!("{}.tex", spec.id), t.latex.as_bytes())?;
        put(&format!("{}.csv", spec.id), t.csv.as_bytes())?;
        if spec.id == "table3" {
            table3 = t.markdown;
        }
    }
    let means = bias_change_means(&results, &best, rules);
    let mut csv = String::from("model,protocol,task,method,bias,layer,mean_abs_delta\n");
    for (k, v) in &means {
        let layer = k.layer.map_or(String::new(), |l| (l + 1).to_string());
        let f = |x: &str| tables::csv_field(x);
        csv.push_str(&format!(
            "{},{},{},{},{},{layer},{v:e}\n",
            f(&k.cell.model),
            f(&k.cell.protocol),
            f(&k.cell.task),
            f(&k.cell.method),
            k.row
        ));
    }
    put("fig1_bias_change.csv", csv.as_bytes())?;
    let (maps, gaps) = (
        heat_maps(&means),
        generalization_gaps(&results, &best, rules),
    );
    put(
        "fig1_bias_change.md",
        bias_change_markdown(&maps).as_bytes(),
    )?;
    put(
        "generalization_gap.md",
        generalization_gap_markdown(&gaps).as_bytes(),
    )?;
    let figs = figures::all(
        &maps,
        &best,
        &learning_curves(&results, &best, rules),
        &gaps,
        rules,
    )?;
    for f in &figs.figures {
        put(&format!("{}.png", f.name), &f.png)?;
        put(&format!("{}.svg", f.name), f.svg.as_bytes())?;
    }
    Ok(Written {
        files,
        table3,
        skipped: figs.skipped,
    })
}
