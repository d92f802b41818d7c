//! `repro bench`: training-step speed and memory of a model shape, per backend and method.
//!
//! Each (backend, method) cell runs in its own process (`repro bench --one …`), so the peak RSS
//! it reports (VmHWM) is that cell's alone. Weights are random: speed does not depend on values.
//! The workload: BertForSequenceClassification (pooler head, 2 labels), or with `span` SQuAD's
//! BertForQuestionAnswering (start/end logits per token, the mean of both cross-entropies);
//! every sequence `seq_len` real tokens (no padding), dropout on, the harness's AdamW + global
//! clipping.

use std::time::Instant;

use anyhow::{Context, Result};

use crate::backend::Backend;
use crate::finetune::train::Targets;
use crate::finetune::{AdamWConfig, Method, Trainer};
use crate::model::{BertClassifierConfig, BertConfig, HeadPooling};
use crate::tokenize::Batch;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BenchRow {
    pub shape: String,
    /// `pooler` (sequence classification) or `span` (SQuAD); older rows have none
    #[serde(default)]
    pub head: String,
    pub backend: String,
    pub method: String,
    pub batch_size: usize,
    pub seq_len: usize,
    pub threads: usize,
    pub steps: usize,
    pub ms_per_step_median: f64,
    pub ms_per_step_min: f64,
    pub examples_per_second: f64,
    pub peak_rss_mib: f64,
    /// model FLOPs of one step: 3× forward with weight gradients (full_ft, diff_pruning), 2×
    /// without
    pub gflop_per_step: f64,
    pub gflops_per_second: f64,
    pub trainable_params: usize,
}

/// Forward FLOPs of one batch: 2·tokens·(matmul parameters) + attention score/value products.
pub fn forward_flops(cfg: &BertConfig, batch: usize, seq: usize) -> f64 {
    let (h, i, l) = (
        cfg.hidden_size as f64,
        cfg.intermediate_size as f64,
        cfg.num_hidden_layers as f64,
    );
    let tokens = (batch * seq) as f64;
    let per_layer =
        2.0 * tokens * (4.0 * h * h + 2.0 * h * i) + 4.0 * batch as f64 * (seq * seq) as f64 * h;
    l * per_layer + 2.0 * batch as f64 * h * h
}

/// Peak resident set size of this process (Linux VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The workload of one benchmark: a model shape, a batch of `batch` × `seq` tokens, and how
/// many steps to warm up and to measure.
#[derive(Clone, Debug)]
pub struct Workload {
    pub shape_name: String,
    pub config: BertConfig,
    pub batch: usize,
    pub seq: usize,
    pub warmup: usize,
    pub steps: usize,
    /// SQuAD's span head instead of the classifier
    pub span: bool,
}

/// One cell, in this process.
pub fn bench_one(w: &Workload, backend: Backend, method: &Method) -> Result<BenchRow> {
    let (cfg, batch, seq) = (&w.config, w.batch, w.seq);
    let dev = backend.device()?.autodiff();
    dev.seed(0);
    let pooling = if w.span {
        HeadPooling::Span
    } else {
        HeadPooling::Pooler
    };
    let head = BertClassifierConfig {
        num_labels: 2,
        pooling,
        seed: 0,
    };
    let model = head.init(cfg.init(&dev), cfg, &dev);
    let mut trainer = Trainer::for_method(model, method, 0, AdamWConfig::default(), false);
    let trainable = trainer.trainable;
    let n = batch * seq;
    let ids: Vec<i64> = (0..n)
        .map(|k| 1 + ((k * 7919) % (cfg.vocab_size - 1)) as i64)
        .collect();
    let b = Batch {
        batch_size: batch,
        seq_len: seq,
        input_ids: ids,
        token_type_ids: vec![0; n],
        attention_mask: vec![1; n],
    };
    let targets = if w.span {
        let start: Vec<i64> = (0..batch).map(|k| ((k * 37) % seq) as i64).collect();
        let end = start.iter().map(|&s| (s + 3).min(seq as i64 - 1)).collect();
        Targets::Spans { start, end }
    } else {
        Targets::Classes((0..batch).map(|k| (k % 2) as i64).collect())
    };
    let mut times = Vec::new();
    for s in 0..w.warmup + w.steps {
        let t0 = Instant::now();
        let (loss, _) = trainer.step(&b, &targets, 1e-5);
        anyhow::ensure!(loss.is_finite(), "bench loss is not finite");
        if s >= w.warmup {
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let fwd = forward_flops(cfg, batch, seq);
    // weight gradients of every matrix: Full-FT, and Diff-Pruning's search (through its diff)
    let weight_grads = matches!(method, Method::FullFt | Method::DiffPruning { .. });
    let gflop = fwd * if weight_grads { 3.0 } else { 2.0 } / 1e9;
    Ok(BenchRow {
        shape: w.shape_name.clone(),
        head: pooling.to_string(),
        backend: backend.name().to_string(),
        method: method.to_string(),
        batch_size: batch,
        seq_len: seq,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        steps: w.steps,
        ms_per_step_median: median,
        ms_per_step_min: times[0],
        examples_per_second: batch as f64 / (median / 1000.0),
        peak_rss_mib: peak_rss_mib(),
        gflop_per_step: gflop,
        gflops_per_second: gflop / (median / 1000.0),
        trainable_params: trainable,
    })
}

/// Run every (backend, method) cell in a child process of this binary, started with the
/// arguments `cell_args(backend, method)` gives (the binary's own flags: main.rs knows them), which
/// must make it print that cell's [`BenchRow`] as JSON.
pub fn bench_all(
    backends: &[Backend],
    methods: &[String],
    cell_args: impl Fn(Backend, &str) -> Vec<String>,
) -> Result<Vec<BenchRow>> {
    let exe = std::env::current_exe().context("locating the repro binary")?;
    let mut rows = Vec::new();
    for b in backends {
        for m in methods {
            let out = std::process::Command::new(&exe)
                .args(cell_args(*b, m))
                .output()
                .context("starting a bench process")?;
            if !out.status.success() {
                anyhow::bail!(
                    "bench {b} {m} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let row: BenchRow = serde_json::from_slice(&out.stdout).with_context(|| {
                format!(
                    "bench {b} {m}: unreadable output {}",
                    String::from_utf8_lossy(&out.stdout)
                )
            })?;
            eprintln!(
                "{}",
                render(std::slice::from_ref(&row))
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            rows.push(row);
        }
    }
    Ok(rows)
}

pub fn render(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:<16} {:<8} {:<10} {:>5} {:>4} {:>11} {:>9} {:>9} {:>8} {:>9}\n",
        "shape",
        "backend",
        "method",
        "batch",
        "seq",
        "ms/step",
        "ex/s",
        "GFLOP/s",
        "RSS MiB",
        "trainable"
    );
    for r in rows {
        let shape = if r.head == "span" {
            format!("{} span", r.shape)
        } else {
            r.shape.clone()
        };
        s.push_str(&format!(
            "{:<16} {:<8} {:<10} {:>5} {:>4} {:>11.0} {:>9.2} {:>9.1} {:>8.0} {:>9}\n",
            shape,
            r.backend,
            r.method,
            r.batch_size,
            r.seq_len,
            r.ms_per_step_median,
            r.examples_per_second,
            r.gflops_per_second,
            r.peak_rss_mib,
            r.trainable_params
        ));
    }
    s
}
