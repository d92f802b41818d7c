//! `repro bench`: training-step speed and memory of a model shape, per backend and method.
//!
//! Each (backend, method) cell runs in its own process (`repro bench --one …`), so the peak RSS
//! it reports (VmHWM) is that cell's alone. Weights are random: speed does not depend on values.
//! The workload: BertForSequenceClassification (pooler head, 2 labels), or with `span` SQuAD's
//! BertForQuestionAnswering (start/end logits per token, the mean of both cross-entropies);
//! every sequence `seq_len` real tokens (no padding), dropout on, the harness's AdamW + global
//! clipping. Beside each step, the backend's own rate on the model's largest matmul (the
//! feed-forward up-projection, `[batch·seq, H] × [H, I]`, no autodiff) is measured in the same
//! process, so a step's GFLOP/s reads as a share of what that backend's matmul reaches.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::prelude::{Device, Tensor};
use burn::tensor::Distribution;

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
    /// the backend's f32 matmul rate on the `[batch·seq, H] × [H, I]` product in this process
    /// ([`matmul_gflops`]); 0 in rows written before it was measured
    #[serde(default)]
    pub matmul_gflops_per_second: f64,
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

/// The median of `values` (the upper one of an even count); sorts them.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The backend's f32 matmul rate in GFLOP/s on `batch·seq × k × n` products (random values, no
/// autodiff), the better of two forms: one `[batch·seq, k] × [k, n]` product, and the batched
/// `[batch, seq, k] × [1, k, n]` one the model's linear layers run (burn-ndarray spreads batches
/// over its threads, one matmul thread each). Each form: the median of `reps` products after one
/// warm-up, each read back to the host so that an asynchronous device has finished it.
pub fn matmul_gflops(
    dev: &Device,
    batch: usize,
    seq: usize,
    k: usize,
    n: usize,
    reps: usize,
) -> f64 {
    let median_seconds = |product: &dyn Fn() -> Tensor<2>| {
        let mut times: Vec<f64> = (0..reps + 1)
            .map(|_| {
                let t0 = Instant::now();
                // one element back to the host: the product is complete
                let _ = product().slice([0..1, 0..1]).into_data();
                t0.elapsed().as_secs_f64()
            })
            .skip(1)
            .collect();
        median(&mut times)
    };
    let m = batch * seq;
    let a = Tensor::<2>::random([m, k], Distribution::Default, dev);
    let b = Tensor::<2>::random([k, n], Distribution::Default, dev);
    let flat = median_seconds(&|| a.clone().matmul(b.clone()));
    let (a3, b3) = (
        a.clone().reshape([batch, seq, k]),
        b.clone().reshape([1, k, n]),
    );
    let batched = median_seconds(&|| a3.clone().matmul(b3.clone()).reshape([m, n]));
    2.0 * (m * k * n) as f64 / flat.min(batched) / 1e9
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
    let inner = backend.device()?;
    let dev = inner.clone().autodiff();
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
    let median = median(&mut times);
    let fwd = forward_flops(cfg, batch, seq);
    // weight gradients of every matrix: Full-FT, and Diff-Pruning's search (through its diff)
    let weight_grads = matches!(method, Method::FullFt | Method::DiffPruning { .. });
    let gflop = fwd * if weight_grads { 3.0 } else { 2.0 } / 1e9;
    drop(trainer);
    // the training step's peak, before the matmul probe allocates its own operands
    let peak_rss = peak_rss_mib();
    let matmul = matmul_gflops(
        &inner,
        batch,
        seq,
        cfg.hidden_size,
        cfg.intermediate_size,
        5,
    );
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
        ms_per_step_min: times.iter().copied().fold(f64::INFINITY, f64::min),
        examples_per_second: batch as f64 / (median / 1000.0),
        peak_rss_mib: peak_rss,
        gflop_per_step: gflop,
        gflops_per_second: gflop / (median / 1000.0),
        trainable_params: trainable,
        matmul_gflops_per_second: matmul,
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
        "{:<16} {:<8} {:<10} {:>5} {:>4} {:>11} {:>9} {:>9} {:>12} {:>8} {:>9}\n",
        "shape",
        "backend",
        "method",
        "batch",
        "seq",
        "ms/step",
        "ex/s",
        "GFLOP/s",
        "% matmul",
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
            "{:<16} {:<8} {:<10} {:>5} {:>4} {:>11.0} {:>9.2} {:>9.1} {:>12} {:>8.0} {:>9}\n",
            shape,
            r.backend,
            r.method,
            r.batch_size,
            r.seq_len,
            r.ms_per_step_median,
            r.examples_per_second,
            r.gflops_per_second,
            matmul_share(r),
            r.peak_rss_mib,
            r.trainable_params
        ));
    }
    s
}

/// A step's GFLOP/s as a share of the same process's matmul rate (`-` where not measured).
fn matmul_share(r: &BenchRow) -> String {
    if r.matmul_gflops_per_second > 0.0 {
        format!(
            "{:.0}% of {:.0}",
            100.0 * r.gflops_per_second / r.matmul_gflops_per_second,
            r.matmul_gflops_per_second
        )
    } else {
        "-".into()
    }
}
