//! `repro report`: aggregate stored runs with polars and print them beside the paper's numbers.
//! Reads only the results store: no retraining, deterministic output.
//!
//! Protocol: each run contributes the task's headline metric (×100) at its best dev epoch (the
//! reference code's reporting) and at its last epoch; runs are grouped by model, task, method,
//! training size and learning rate (mean ± sample std over seeds, n); per (model, task, method,
//! size) the learning rate with the best mean best-epoch score is selected. MNLI contributes
//! MNLI-m and MNLI-mm. Diverged and degenerate runs (MCC/F1/Spearman exactly 0: constant
//! predictions) are counted apart and not averaged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use polars::prelude::*;

use crate::finetune::RunResult;
use crate::store::{Store, write_atomic};

/// The paper's task columns, in its table order.
pub const PAPER_TASKS: [&str; 9] = ["QNLI", "SST-2", "MNLI-m", "MNLI-mm", "CoLA", "MRPC", "STS-B", "RTE", "QQP"];

/// One run × dev split, flattened.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRow {
    pub model: String,
    pub task: String,
    pub method: String,
    /// 0 = the whole training set
    pub train_size: i64,
    pub lr: f64,
    pub seed: i64,
    pub metric: String,
    pub best: f64,
    pub last: f64,
    pub excluded: bool,
}

fn model_name(r: &RunResult) -> String {
    r.config.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Flatten a run record into one row per dev split.
pub fn rows_of(r: &RunResult) -> Vec<RunRow> {
    let c = &r.config;
    let model = model_name(r);
    let best = r.epochs.iter().find(|e| e.epoch == r.best_epoch);
    let last = r.epochs.last();
    let mut out = Vec::new();
    let splits: Vec<String> = best.map(|e| e.dev.keys().cloned().collect()).unwrap_or_else(|| vec!["dev".into()]);
    for split in splits {
        let task = match (c.task.name(), split.as_str()) {
            ("MNLI", "dev") => "MNLI-m".to_string(),
            ("MNLI", _) => "MNLI-mm".to_string(),
            (t, _) => t.to_string(),
        };
        let get = |e: Option<&crate::finetune::train::EpochRecord>| {
            e.and_then(|e| e.dev.get(&split)).and_then(|s| s.get(&r.headline)).map_or(f64::NAN, |v| 100.0 * v)
        };
        let (b, l) = (get(best), get(last));
        let degenerate = matches!(r.headline.as_str(), "mcc" | "f1" | "spearman") && b == 0.0;
        out.push(RunRow {
            model: model.clone(),
            task,
            method: c.method.to_string(),
            train_size: c.train_size.map_or(0, |n| n as i64),
            lr: c.lr,
            seed: c.seed as i64,
            metric: r.headline.clone(),
            best: b,
            last: l,
            excluded: r.diverged || degenerate || !b.is_finite(),
        });
    }
    out
}

/// Every done run of the given stores.
pub fn load_results(stores: &[&Path]) -> Result<Vec<RunResult>> {
    let mut out = Vec::new();
    for s in stores {
        out.extend(Store::open(s)?.results()?.into_iter().map(|(_, r)| r));
    }
    Ok(out)
}


/// Fig. 1 data: mean |Δb| per (model, task, method, bias kind, layer), averaged over runs
/// (seeds) that did not diverge. Key → (sum, n).
pub fn bias_change_means(results: &[RunResult]) -> BTreeMap<(String, String, String, String, usize), f64> {
    let mut acc: BTreeMap<(String, String, String, String, usize), (f64, usize)> = BTreeMap::new();
    for r in results.iter().filter(|r| !r.diverged) {
        for b in &r.bias_changes {
            let (Some(kind), Some(layer)) = (b.kind, b.layer) else { continue };
            if b.mean_abs_delta == 0.0 && !r.config.method.trains(&b.name) {
                continue; // not trained under this method
            }
            let key = (model_name(r), r.config.task.name().to_string(), r.config.method.to_string(), kind.name().to_string(), layer);
            let e = acc.entry(key).or_default();
            e.0 += b.mean_abs_delta;
            e.1 += 1;
        }
    }
    acc.into_iter().map(|(k, (s, n))| (k, s / n as f64)).collect()
}

/// Fig. 1 as a Markdown table per (model, task, method): rows b_q…b_LN2, columns layers + Avg.
pub fn bias_change_markdown(means: &BTreeMap<(String, String, String, String, usize), f64>) -> String {
    let mut groups: BTreeMap<(String, String, String), BTreeMap<(String, usize), f64>> = BTreeMap::new();
    for ((m, t, meth, kind, layer), v) in means {
        groups.entry((m.clone(), t.clone(), meth.clone())).or_default().insert((kind.clone(), *layer), *v);
    }
    let mut s = String::from("Mean |Δb| over each bias vector's dimensions (Fig. 1 quantity), mean over seeds.\n\n");
    for ((m, t, meth), cells) in groups {
        let layers = cells.keys().map(|(_, l)| *l).max().map_or(0, |l| l + 1);
        let _ = writeln!(s, "### {m} · {t} · {meth}\n");
        let head: Vec<String> = (1..=layers).map(|l| l.to_string()).collect();
        let _ = writeln!(s, "| bias | {} | Avg. |", head.join(" | "));
        let _ = writeln!(s, "|---|{}---|", "---|".repeat(layers));
        for kind in crate::model::BiasKind::ALL {
            let vals: Vec<Option<f64>> = (0..layers).map(|l| cells.get(&(kind.name().to_string(), l)).copied()).collect();
            if vals.iter().all(Option::is_none) {
                continue;
            }
            let present: Vec<f64> = vals.iter().flatten().copied().collect();
            let avg = present.iter().sum::<f64>() / present.len() as f64;
            let cols: Vec<String> = vals.iter().map(|v| v.map_or("".into(), |v| format!("{v:.2e}"))).collect();
            let _ = writeln!(s, "| {} | {} | {avg:.2e} |", kind.name(), cols.join(" | "));
        }
        let _ = writeln!(s);
    }
    s
}

/// Generalization gap: train − dev headline metric (×100) at the best epoch, mean over runs.
pub fn generalization_gap_markdown(results: &[RunResult]) -> String {
    let mut acc: BTreeMap<(String, String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for r in results.iter().filter(|r| !r.diverged) {
        let Some(e) = r.epochs.iter().find(|e| e.epoch == r.best_epoch) else { continue };
        let (Some(train), Some(dev)) = (
            e.train.as_ref().and_then(|s| s.get(&r.headline)),
            e.dev.get("dev").and_then(|s| s.get(&r.headline)),
        ) else {
            continue;
        };
        acc.entry((model_name(r), r.config.task.name().to_string(), r.config.method.to_string()))
            .or_default()
            .push((100.0 * train, 100.0 * dev));
    }
    let mut s = String::from(
        "Generalization gap: train − dev headline metric ×100 at the best dev epoch, mean over runs (n).\n\n\
         | model | task | method | train | dev | gap | n |\n|---|---|---|---|---|---|---|\n",
    );
    for ((m, t, meth), v) in acc {
        let n = v.len() as f64;
        let (tr, dv) = (v.iter().map(|x| x.0).sum::<f64>() / n, v.iter().map(|x| x.1).sum::<f64>() / n);
        let _ = writeln!(s, "| {m} | {t} | {meth} | {tr:.1} | {dv:.1} | {:.1} | {} |", tr - dv, v.len());
    }
    s
}

/// Mean ± std (n) per (model, task, method, train_size, lr), with the excluded runs counted.
pub fn aggregate(rows: &[RunRow]) -> Result<DataFrame> {
    let col_s = |name: &str, f: &dyn Fn(&RunRow) -> String| Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>());
    let df = DataFrame::new_infer_height(vec![
        col_s("model", &|r| r.model.clone()),
        col_s("task", &|r| r.task.clone()),
        col_s("method", &|r| r.method.clone()),
        Column::new("train_size".into(), rows.iter().map(|r| r.train_size).collect::<Vec<_>>()),
        Column::new("lr".into(), rows.iter().map(|r| r.lr).collect::<Vec<_>>()),
        col_s("metric", &|r| r.metric.clone()),
        Column::new("best".into(), rows.iter().map(|r| r.best).collect::<Vec<_>>()),
        Column::new("last".into(), rows.iter().map(|r| r.last).collect::<Vec<_>>()),
        Column::new("excluded".into(), rows.iter().map(|r| r.excluded).collect::<Vec<_>>()),
    ])?;
    let keys = [col("model"), col("task"), col("method"), col("train_size"), col("lr")];
    let ok = col("excluded").not();
    let agg = df
        .lazy()
        .group_by(keys)
        .agg([
            col("metric").first().alias("metric"),
            col("best").filter(ok.clone()).mean().alias("best_mean"),
            col("best").filter(ok.clone()).std(1).alias("best_std"),
            col("last").filter(ok.clone()).mean().alias("last_mean"),
            col("last").filter(ok.clone()).std(1).alias("last_std"),
            col("best").filter(ok).count().alias("n"),
            col("excluded").sum().alias("n_excluded"),
        ])
        .sort(["model", "task", "method", "train_size", "lr"], Default::default())
        .collect()?;
    Ok(agg)
}

/// One aggregated cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub lr: f64,
    pub mean: f64,
    pub std: f64,
    pub n: u32,
    pub excluded: u32,
}

/// Best learning rate per (model, method, train_size, task): (model, method, size) → task → cell.
pub fn best_lr(agg: &DataFrame) -> Result<BTreeMap<(String, String, i64), BTreeMap<String, Cell>>> {
    let s = |n: &str| -> Result<Vec<String>> {
        Ok(agg.column(n)?.str()?.iter().map(|v| v.unwrap_or("").to_string()).collect())
    };
    let f = |n: &str| -> Result<Vec<f64>> {
        Ok(agg.column(n)?.cast(&DataType::Float64)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    let (model, task, method) = (s("model")?, s("task")?, s("method")?);
    let (size, lr, mean, std, n, ex) =
        (f("train_size")?, f("lr")?, f("best_mean")?, f("best_std")?, f("n")?, f("n_excluded")?);
    let mut out: BTreeMap<(String, String, i64), BTreeMap<String, Cell>> = BTreeMap::new();
    for i in 0..agg.height() {
        let cell = Cell { lr: lr[i], mean: mean[i], std: std[i], n: n[i] as u32, excluded: ex[i] as u32 };
        let by_task = out.entry((model[i].clone(), method[i].clone(), size[i] as i64)).or_default();
        let better = match by_task.get(&task[i]) {
            None => true,
            Some(c) => cell.mean.is_finite() && (!c.mean.is_finite() || cell.mean > c.mean),
        };
        if better {
            by_task.insert(task[i].clone(), cell);
        }
    }
    Ok(out)
}

/// The paper's Avg.: mean over the 8 tasks with MNLI-m and MNLI-mm averaged first; None (with
/// the missing tasks) when any is absent.
pub fn paper_avg(cells: &BTreeMap<String, Cell>) -> std::result::Result<f64, Vec<String>> {
    let get = |t: &str| cells.get(t).map(|c| c.mean).filter(|v| v.is_finite());
    let missing: Vec<String> = PAPER_TASKS.iter().filter(|t| get(t).is_none()).map(|t| t.to_string()).collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    let mnli = (get("MNLI-m").unwrap() + get("MNLI-mm").unwrap()) / 2.0;
    let others: f64 = ["QNLI", "SST-2", "CoLA", "MRPC", "STS-B", "RTE", "QQP"].iter().map(|t| get(t).unwrap()).sum();
    Ok((others + mnli) / 8.0)
}

/// Paper method name of a harness method (Table 3 rows).
pub fn paper_method(m: &str) -> Option<&'static str> {
    Some(match m {
        "full_ft" => "Full-FT",
        "bitfit" => "BitFit",
        "b_q+b_m2" => "b_m2+b_q",
        "b_m2" => "b_m2",
        "b_q" => "b_q",
        "frozen" => "Frozen",
        "rand_uniform" => "rand uniform",
        "rand_row_col" => "rand row/col",
        _ => return None,
    })
}

/// Reference rows of a paper CSV (`method` column → task → (value, confidence)).
pub fn paper_table(csv: &str) -> BTreeMap<String, (BTreeMap<String, f64>, String)> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let idx = |n: &str| header.iter().position(|h| *h == n);
    let mut out = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let Some(m) = idx("method").and_then(|i| f.get(i)) else { continue };
        let conf = idx("confidence").and_then(|i| f.get(i)).unwrap_or(&"").to_string();
        let vals = PAPER_TASKS
            .iter()
            .filter_map(|t| idx(t).and_then(|i| f.get(i)).and_then(|v| v.parse::<f64>().ok()).map(|v| (t.to_string(), v)))
            .collect();
        out.insert(m.to_string(), (vals, conf));
    }
    out
}

fn fmt_cell(c: Option<&Cell>) -> String {
    match c {
        Some(c) if c.mean.is_finite() => {
            let std = if c.n > 1 { format!(" ±{:.1}", c.std) } else { String::new() };
            let ex = if c.excluded > 0 { format!(", {} excl.", c.excluded) } else { String::new() };
            format!("{:.1}{std} (n={}{ex})", c.mean, c.n)
        }
        Some(c) => format!("— (0 usable, {} excl.)", c.excluded),
        None => "n/a".into(),
    }
}

/// Markdown: our methods × tasks beside the paper's Table 3 (bert-base) numbers.
pub fn table_markdown(
    best: &BTreeMap<(String, String, i64), BTreeMap<String, Cell>>,
    paper: &BTreeMap<String, (BTreeMap<String, f64>, String)>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Ours: headline dev metric ×100 at the best epoch, mean ±std over seeds (n), best learning rate per cell. \
         Paper: Table 3 (BERT-base, dev); confidence tag after the row. n/a = not run.\n"
    );
    for ((model, method, size), cells) in best {
        let size = if *size == 0 { "all".to_string() } else { size.to_string() };
        let _ = writeln!(s, "### {model} · {method} · train size {size}\n");
        let _ = writeln!(s, "| | {} | Avg. |", PAPER_TASKS.join(" | "));
        let _ = writeln!(s, "|---|{}---|", "---|".repeat(PAPER_TASKS.len()));
        let avg = match paper_avg(cells) {
            Ok(a) => format!("{a:.1}"),
            Err(missing) => format!("— (missing {})", missing.join(", ")),
        };
        let ours: Vec<String> = PAPER_TASKS.iter().map(|t| fmt_cell(cells.get(*t))).collect();
        let _ = writeln!(s, "| ours | {} | {avg} |", ours.join(" | "));
        let lrs: Vec<String> = PAPER_TASKS.iter().map(|t| cells.get(*t).map_or("".into(), |c| format!("{:e}", c.lr))).collect();
        let _ = writeln!(s, "| lr | {} | |", lrs.join(" | "));
        if let Some((vals, conf)) = paper_method(method).and_then(|m| paper.get(m)) {
            let p: Vec<String> = PAPER_TASKS.iter().map(|t| vals.get(*t).map_or("".into(), |v| format!("{v:.1}"))).collect();
            let d: Vec<String> = PAPER_TASKS
                .iter()
                .map(|t| match (cells.get(*t).map(|c| c.mean).filter(|v| v.is_finite()), vals.get(*t)) {
                    (Some(a), Some(b)) => format!("{:+.1}", a - b),
                    _ => String::new(),
                })
                .collect();
            let _ = writeln!(s, "| paper ({conf}) | {} | |", p.join(" | "));
            let _ = writeln!(s, "| ours − paper | {} | |", d.join(" | "));
        }
        let _ = writeln!(s);
    }
    s
}

/// Aggregate the stores and write `aggregate.parquet`, `aggregate.csv` and `table3.md` to `out`.
pub fn report(stores: &[&Path], out: &Path, paper_csv: &str) -> Result<String> {
    let results = load_results(stores)?;
    let rows: Vec<RunRow> = results.iter().flat_map(rows_of).collect();
    if rows.is_empty() {
        anyhow::bail!("no finished runs in {:?}; run a grid first (repro run experiments/quickstart.toml)", stores);
    }
    let mut agg = aggregate(&rows)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf).finish(&mut agg)?;
    write_atomic(&out.join("aggregate.parquet"), &buf)?;
    let mut csv = String::from("model,task,method,train_size,lr,metric,best_mean,best_std,last_mean,last_std,n,n_excluded\n");
    let s = |n: &str| -> Result<Vec<String>> {
        let c = agg.column(n)?.cast(&DataType::String)?;
        Ok(c.str()?.iter().map(|v| v.unwrap_or("").to_string()).collect())
    };
    let cols: Vec<Vec<String>> = ["model", "task", "method", "train_size", "lr", "metric", "best_mean", "best_std", "last_mean", "last_std", "n", "n_excluded"]
        .iter()
        .map(|n| s(n))
        .collect::<Result<_>>()?;
    for i in 0..agg.height() {
        let row: Vec<&str> = cols.iter().map(|c| c[i].as_str()).collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    write_atomic(&out.join("aggregate.csv"), csv.as_bytes())?;
    let md = table_markdown(&best_lr(&agg)?, &paper_table(paper_csv));
    write_atomic(&out.join("table3.md"), md.as_bytes())?;
    let means = bias_change_means(&results);
    let mut csv = String::from("model,task,method,bias,layer,mean_abs_delta\n");
    for ((m, t, meth, kind, layer), v) in &means {
        csv.push_str(&format!("{m},{t},{meth},{kind},{},{v:e}\n", layer + 1));
    }
    write_atomic(&out.join("fig1_bias_change.csv"), csv.as_bytes())?;
    write_atomic(&out.join("fig1_bias_change.md"), bias_change_markdown(&means).as_bytes())?;
    write_atomic(&out.join("generalization_gap.md"), generalization_gap_markdown(&results).as_bytes())?;
    Ok(md)
}
