//! The polars side of the report: run rows into a frame, grouped per cell, learning rate and
//! metric ([`aggregate`]), and the result back as typed rows ([`agg_rows`]). The only place that
//! names the frame's columns; everything downstream reads [`AggRow`]s.

use anyhow::Result;
use polars::prelude::*;

use super::{CellKey, Rules, RunRow};

/// The columns one aggregate row is grouped by, in the aggregate's sort order: the [`CellKey`]
/// (method before training size, the order the aggregate files have always had), the learning
/// rate and the metric.
const GROUP_KEY: [&str; 7] = [
    "model",
    "protocol",
    "task",
    "method",
    "train_size",
    "lr",
    "metric",
];

/// One row of the aggregate: one metric of one cell at one learning rate, over the runs
/// averaged under the report's [`Rules`].
#[derive(Clone, Debug, PartialEq)]
pub struct AggRow {
    pub key: CellKey,
    pub lr: f64,
    pub metric: String,
    /// the task's headline metric (tables, best-lr choice); the others are secondary
    pub headline: bool,
    /// mean ×100 at the best epoch (NaN when no run is averaged)
    pub best_mean: f64,
    /// sample std ×100 at the best epoch (NaN for n < 2)
    pub best_std: f64,
    /// mean ×100 at the last epoch
    pub last_mean: f64,
    /// sample std ×100 at the last epoch
    pub last_std: f64,
    /// runs averaged
    pub n: u32,
    /// runs left out of the mean (n + n_excluded = every finished run)
    pub n_excluded: u32,
    /// degenerate runs (inside n unless excluded)
    pub n_degenerate: u32,
    /// diverged runs (always excluded)
    pub n_diverged: u32,
    /// mean training examples per run
    pub examples: f64,
    /// trainable parameters, % of the model
    pub param_pct: f64,
}

/// Mean ± std (n) per cell ([`CellKey`]), learning rate and metric over the rows averaged under
/// `rules` ([`RunRow::averaged`]); `n_excluded` counts the runs left out of the mean (n +
/// n_excluded = every finished run), `n_degenerate` and `n_diverged` the degenerate and diverged
/// ones (a degenerate run is in n by default). The rows come from [`super::rows_of`] with
/// `rules.epoch`; the `epoch_rule` and `degenerate_runs` columns name the rules.
pub fn aggregate(rows: &[RunRow], rules: &Rules) -> Result<DataFrame> {
    let col_s = |name: &str, f: &dyn Fn(&RunRow) -> String| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>())
    };
    let col_f = |name: &str, f: &dyn Fn(&RunRow) -> f64| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>())
    };
    let df = DataFrame::new_infer_height(vec![
        col_s("model", &|r| r.model.clone()),
        col_s("protocol", &|r| r.protocol.clone()),
        col_s("task", &|r| r.task.clone()),
        col_s("method", &|r| r.method.clone()),
        Column::new(
            "train_size".into(),
            rows.iter().map(|r| r.train_size).collect::<Vec<_>>(),
        ),
        col_f("lr", &|r| r.lr),
        col_s("metric", &|r| r.metric.clone()),
        Column::new(
            "headline".into(),
            rows.iter().map(|r| r.headline).collect::<Vec<_>>(),
        ),
        col_f("best", &|r| r.best),
        col_f("last", &|r| r.last),
        Column::new(
            "averaged".into(),
            rows.iter().map(|r| r.averaged(rules)).collect::<Vec<_>>(),
        ),
        Column::new(
            "degenerate".into(),
            rows.iter().map(|r| r.degenerate).collect::<Vec<_>>(),
        ),
        Column::new(
            "diverged".into(),
            rows.iter().map(|r| r.diverged).collect::<Vec<_>>(),
        ),
        col_f("examples", &|r| r.examples as f64),
        col_f("param_pct", &|r| r.param_pct),
    ])?;
    let keys = GROUP_KEY.map(col);
    let ok = col("averaged");
    let agg = df
        .lazy()
        .group_by(keys)
        .agg([
            col("headline").first().alias("headline"),
            col("best").filter(ok.clone()).mean().alias("best_mean"),
            col("best").filter(ok.clone()).std(1).alias("best_std"),
            col("last").filter(ok.clone()).mean().alias("last_mean"),
            col("last").filter(ok.clone()).std(1).alias("last_std"),
            col("best").filter(ok).count().alias("n"),
            col("averaged").not().sum().alias("n_excluded"),
            col("degenerate").sum().alias("n_degenerate"),
            col("diverged").sum().alias("n_diverged"),
            col("examples").mean().alias("examples"),
            col("param_pct").mean().alias("param_pct"),
        ])
        .sort(GROUP_KEY, Default::default())
        .with_columns([
            lit(rules.epoch.to_string()).alias("epoch_rule"),
            lit(if rules.exclude_degenerate {
                "excluded"
            } else {
                "averaged"
            })
            .alias("degenerate_runs"),
        ])
        .collect()?;
    Ok(agg)
}

/// The aggregate as typed rows, in its order (nulls, e.g. the std of one run, read as NaN).
pub fn agg_rows(agg: &DataFrame) -> Result<Vec<AggRow>> {
    let s = |n: &str| -> Result<Vec<String>> {
        Ok(agg
            .column(n)?
            .str()?
            .iter()
            .map(|v| v.unwrap_or("").to_string())
            .collect())
    };
    let f = |n: &str| -> Result<Vec<f64>> {
        Ok(agg
            .column(n)?
            .cast(&DataType::Float64)?
            .f64()?
            .iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect())
    };
    let (model, protocol, task, method, metric) = (
        s("model")?,
        s("protocol")?,
        s("task")?,
        s("method")?,
        s("metric")?,
    );
    let headline: Vec<bool> = agg
        .column("headline")?
        .bool()?
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect();
    let (size, lr) = (f("train_size")?, f("lr")?);
    let (best_mean, best_std, last_mean, last_std) = (
        f("best_mean")?,
        f("best_std")?,
        f("last_mean")?,
        f("last_std")?,
    );
    let (n, excluded, degenerate, diverged) = (
        f("n")?,
        f("n_excluded")?,
        f("n_degenerate")?,
        f("n_diverged")?,
    );
    let (examples, param_pct) = (f("examples")?, f("param_pct")?);
    Ok((0..agg.height())
        .map(|i| AggRow {
            key: CellKey {
                model: model[i].clone(),
                protocol: protocol[i].clone(),
                task: task[i].clone(),
                train_size: size[i] as i64,
                method: method[i].clone(),
            },
            lr: lr[i],
            metric: metric[i].clone(),
            headline: headline[i],
            best_mean: best_mean[i],
            best_std: best_std[i],
            last_mean: last_mean[i],
            last_std: last_std[i],
            n: n[i] as u32,
            n_excluded: excluded[i] as u32,
            n_degenerate: degenerate[i] as u32,
            n_diverged: diverged[i] as u32,
            examples: examples[i],
            param_pct: param_pct[i],
        })
        .collect())
}

/// The aggregate as CSV, every column of the frame in its order, each value as polars writes it
/// (by hand: polars is built without its csv feature). Like the parquet file it is the frame
/// itself: its numbers keep polars' formatting, which typed rows would not reproduce.
pub(super) fn aggregate_csv(agg: &DataFrame) -> Result<String> {
    let names: Vec<&str> = agg.get_column_names().iter().map(|n| n.as_str()).collect();
    let mut csv = names.join(",") + "\n";
    let cols: Vec<Vec<String>> = agg
        .columns()
        .iter()
        .map(|c| -> Result<Vec<String>> {
            let c = c.cast(&DataType::String)?;
            Ok(c.str()?
                .iter()
                .map(|v| v.unwrap_or("").to_string())
                .collect())
        })
        .collect::<Result<_>>()?;
    for i in 0..agg.height() {
        let row: Vec<String> = cols
            .iter()
            .map(|c| super::tables::csv_field(&c[i]))
            .collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    Ok(csv)
}
