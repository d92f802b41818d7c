//! One fine-tuning run, as the reference `run_glue.py` does it: AdamW, global-norm clipping,
//! constant learning rate by default, dev evaluation after every epoch (train too, optionally),
//! best and last epoch recorded, bias changes for Fig. 1.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::optim::GradientsParams;
use burn::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;

pub use super::method::apply_method;
use super::method::{Method, trainable_scalars};
use super::optim::{AdamW, AdamWConfig, StepStats};
pub use super::record::{BiasChange, EpochRecord, RunResult, Scores};
use crate::backend::Backend;
use crate::data::{Example, Glue, Label, Split, Task};
use crate::metrics::{Outputs, score};
use crate::model::{
    BertClassifier, BertClassifierConfig, BiasKind, Checkpoint, HeadPooling, batch_tensors,
    hf_tensors, params,
};
use crate::tokenize::{Batch, BertTokenizer, Encoded};

/// Learning-rate schedule. The reference code uses a constant rate.
#[derive(Clone, Copy, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Schedule {
    #[default]
    Constant,
    /// linear warm-up over `warmup_ratio` of the steps, then linear decay to 0
    Linear { warmup_ratio: f64 },
}

impl Schedule {
    pub fn lr(&self, base: f64, step: usize, total: usize) -> f64 {
        match *self {
            Schedule::Constant => base,
            // transformers' get_linear_schedule_with_warmup, evaluated at optimizer step `step`
            Schedule::Linear { warmup_ratio } => {
                let warm = (warmup_ratio.clamp(0.0, 1.0) * total as f64).round() as usize;
                if step < warm {
                    base * step as f64 / warm.max(1) as f64
                } else {
                    base * (total.saturating_sub(step)) as f64
                        / total.saturating_sub(warm).max(1) as f64
                }
            }
        }
    }
}

/// Everything that defines a run (its resolved configuration).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub task: Task,
    pub model: PathBuf,
    pub data: PathBuf,
    pub method: Method,
    pub lr: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub max_length: usize,
    /// seeds data order, head init, dropout and rand_* masks
    pub seed: u64,
    /// seeds the training-size subset only
    pub data_seed: u64,
    /// use a random subset of this many training examples (None: all)
    pub train_size: Option<usize>,
    pub backend: Backend,
    pub head: HeadPooling,
    pub schedule: Schedule,
    pub optimizer: AdamWConfig,
    /// also score the training set after every epoch (generalization-gap figure)
    pub eval_train: bool,
    /// pad every batch to max_length (the reference code) instead of to its longest member
    pub pad_to_max_length: bool,
    /// score only the first N examples of each dev split (smoke runs; None: all)
    pub eval_size: Option<usize>,
    /// floor on optimizer steps: train more epochs than `epochs` where a small training set would
    /// give fewer steps (Fig. 2's small sizes); None: exactly `epochs`. Left out of the stored
    /// config when unset, so the ids of runs without it do not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_steps: Option<usize>,
    /// keep the trained tensors as a delta file beside the run's record (`delta.safetensors`);
    /// left out of the stored config when false, so the ids of runs without it do not change
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub save_trained: bool,
    /// score only a `data_seed` sample of this many training examples for the train scores (the
    /// generalization gap) instead of the whole training set; None: all. Left out of the stored
    /// config when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_train_size: Option<usize>,
}

/// The reference code's settings (`run_glue.py`), for SST-2 with BitFit at lr 1e-3 on the
/// embedded MiniLM: the default of every run setting ([`crate::settings`]); a grid must name
/// its task, method and learning rate.
impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig::reference(
            Task::Sst2,
            PathBuf::from(crate::hub::DEFAULT_MODEL),
            PathBuf::from(crate::hub::DEFAULT_DATA),
            Method::Bitfit,
            1e-3,
        )
    }
}

impl TrainConfig {
    /// Epochs a run trains on `train_examples` examples: `epochs`, raised so that it makes at
    /// least `min_steps` optimizer steps.
    pub fn effective_epochs(&self, train_examples: usize) -> usize {
        let per_epoch = train_examples.div_ceil(self.batch_size).max(1);
        self.min_steps
            .map_or(self.epochs, |m| self.epochs.max(m.div_ceil(per_epoch)))
    }

    /// Epochs a run records: [`Self::effective_epochs`], then Diff-Pruning's fixed-mask epochs.
    pub fn total_epochs(&self, train_examples: usize) -> usize {
        self.effective_epochs(train_examples)
            + match &self.method {
                Method::DiffPruning { finetune, .. } => *finetune,
                _ => 0,
            }
    }

    /// The reference code's settings for `task` on `model` with `method` at `lr`.
    pub fn reference(task: Task, model: PathBuf, data: PathBuf, method: Method, lr: f64) -> Self {
        TrainConfig {
            task,
            model,
            data,
            method,
            lr,
            epochs: 16,
            batch_size: 8,
            max_length: 128,
            seed: 0,
            data_seed: 0,
            train_size: None,
            backend: Backend::Ndarray,
            head: HeadPooling::Pooler,
            schedule: Schedule::Constant,
            optimizer: AdamWConfig::default(),
            eval_train: true,
            pad_to_max_length: false,
            eval_size: None,
            min_steps: None,
            save_trained: false,
            eval_train_size: None,
        }
    }
}

/// Gold targets of a batch.
pub enum Targets {
    Classes(Vec<i64>),
    Scores(Vec<f32>),
    /// token indices of the answer's start and end in each window (SQuAD)
    Spans {
        start: Vec<i64>,
        end: Vec<i64>,
    },
}

/// A model with its optimizer: the unit the golden-step test drives directly.
pub struct Trainer {
    model: Option<BertClassifier>,
    pub opt: AdamW,
    pub device: Device,
    pub regression: bool,
    /// trainable scalars under the method (and its masks): [`trainable_scalars`]
    pub trainable: usize,
    /// every scalar of the model
    pub total: usize,
    /// Diff-Pruning's search phase: the weight of the expected-L0 penalty added to the loss
    pub l0_weight: Option<f64>,
}

impl Trainer {
    /// `model` must live on an autodiff device.
    pub fn new(
        model: BertClassifier,
        method: &Method,
        optimizer: AdamWConfig,
        regression: bool,
    ) -> Self {
        let device = model.classifier.weight.val().device();
        let model = apply_method(model, method);
        let ps = params(&model);
        Trainer {
            model: Some(model),
            opt: AdamW::new(optimizer),
            device,
            regression,
            trainable: trainable_scalars(&ps, &[]),
            total: ps.iter().map(|p| p.numel).sum(),
            l0_weight: None,
        }
    }

    /// [`Trainer::new`] with the method's gradient masks drawn from `seed` and set (the rand_*
    /// methods; none for the others): how training and the benchmark build their trainer.
    pub fn for_method(
        model: BertClassifier,
        method: &Method,
        seed: u64,
        optimizer: AdamWConfig,
        regression: bool,
    ) -> Self {
        let model = super::method::add_modules(model, method, seed);
        let mut t = Trainer::new(model, method, optimizer, regression);
        let ps = params(t.model());
        let masks = super::method::masks(method, &ps, seed);
        t.set_masks(&masks);
        t.trainable = trainable_scalars(&ps, &masks);
        if matches!(method, Method::DiffPruning { .. }) {
            use super::diff_pruning as dp;
            t.opt
                .add_group(&dp::gate_param_ids(t.model()), dp::ALPHA_LR, dp::ALPHA_EPS);
            t.l0_weight = Some(dp::L0_WEIGHT);
        }
        t
    }

    /// Restrict updates of masked parameters (rand_* methods) to their mask's scalars.
    pub fn set_masks(&mut self, masks: &[super::masks::Mask]) {
        let dev = self.device.clone().without_autodiff();
        for m in masks {
            let t =
                Tensor::<1>::from_data(TensorData::new(m.values.clone(), [m.values.len()]), &dev);
            self.opt.set_mask(m.id, t);
        }
    }

    pub fn model(&self) -> &BertClassifier {
        self.model.as_ref().expect("model present between steps")
    }

    pub fn into_model(self) -> BertClassifier {
        self.model.expect("model present between steps")
    }

    /// One optimizer step on `batch`; returns the loss before the update.
    pub fn step(&mut self, batch: &Batch, targets: &Targets, lr: f64) -> (f64, StepStats) {
        let model = self.model.take().expect("model present between steps");
        let (ids, tt, mask) = batch_tensors(batch, &self.device);
        let loss = match targets {
            Targets::Spans { start, end } => {
                let logits = model.forward_spans(ids, tt, mask.clone());
                span_loss(logits, mask, start, end, &self.device)
            }
            _ => loss(model.forward(ids, tt, mask), targets, &self.device),
        };
        let loss = match self
            .l0_weight
            .and_then(|w| super::diff_pruning::expected_open_gates(&model).map(|g| g * w))
        {
            Some(penalty) => loss + penalty,
            None => loss,
        };
        let loss_value = loss.clone().into_scalar::<f64>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let (model, stats) = self.opt.step(lr, model, grads);
        self.model = Some(model);
        (loss_value, stats)
    }
}

/// BertForQuestionAnswering's loss: the mean of the start and the end cross-entropy over the
/// window's tokens. Padding positions are masked out of the softmax (HF pads every window to 384
/// and lets padding logits into it; here a window scores the same padded or not).
pub fn span_loss(
    logits: Tensor<3>,
    mask: Tensor<2>,
    start: &[i64],
    end: &[i64],
    dev: &Device,
) -> Tensor<1> {
    let [b, s, _] = logits.dims();
    let pad = (mask - 1.0) * 1e4;
    let ce = burn::nn::loss::CrossEntropyLossConfig::new().init(dev);
    let side = |k: usize, y: &[i64]| {
        let l = logits.clone().slice([0..b, 0..s, k..k + 1]).reshape([b, s]) + pad.clone();
        let y = Tensor::<1, Int>::from_data(TensorData::new(y.to_vec(), [y.len()]), dev);
        ce.forward(l, y)
    };
    (side(0, start) + side(1, end)) / 2.0
}

fn loss(logits: Tensor<2>, targets: &Targets, dev: &Device) -> Tensor<1> {
    match targets {
        Targets::Spans { .. } => unreachable!("span targets go through span_loss"),
        Targets::Classes(y) => {
            let y = Tensor::<1, Int>::from_data(TensorData::new(y.clone(), [y.len()]), dev);
            burn::nn::loss::CrossEntropyLossConfig::new()
                .init(dev)
                .forward(logits, y)
        }
        Targets::Scores(y) => {
            let n = y.len();
            let y = Tensor::<2>::from_data(TensorData::new(y.clone(), [n, 1]), dev);
            (logits - y).square().mean()
        }
    }
}

fn targets(task: Task, ex: &[&Example]) -> Targets {
    if task.is_regression() {
        Targets::Scores(
            ex.iter()
                .map(|e| {
                    if let Label::Score(s) = e.label {
                        s
                    } else {
                        0.0
                    }
                })
                .collect(),
        )
    } else {
        Targets::Classes(
            ex.iter()
                .map(|e| {
                    if let Label::Class(c) = e.label {
                        c as i64
                    } else {
                        0
                    }
                })
                .collect(),
        )
    }
}

/// Tokenise examples (single sentences or pairs).
pub fn encode_all(tok: &BertTokenizer, ex: &[Example]) -> Result<Vec<Encoded>> {
    ex.iter()
        .map(|e| tok.encode(&e.text_a, e.text_b.as_deref()))
        .collect()
}

/// Where tokenised splits are cached: a folder and the key (model + data digests) that names
/// the files in it. Not part of a run's identity; the runner gives one per grid store.
#[derive(Clone, Debug)]
pub struct TokenCache {
    pub dir: PathBuf,
    pub key: String,
}

impl TokenCache {
    /// Tokenise a whole split through the cache: the file
    /// `tokens-<key>-<task>-<split>-<max_length>.json` is written once and reused by every run
    /// that reads the same model and data files.
    fn encode_split(
        &self,
        cfg: &TrainConfig,
        tok: &BertTokenizer,
        split: Split,
        ex: &[Example],
    ) -> Result<Vec<Encoded>> {
        let path = self.dir.join(format!(
            "tokens-{}-{}-{split}-{}.json",
            self.key,
            cfg.task.name(),
            cfg.max_length
        ));
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(enc) = serde_json::from_slice::<Vec<Encoded>>(&bytes)
            && enc.len() == ex.len()
        {
            return Ok(enc);
        }
        let enc = encode_all(tok, ex)?;
        crate::store::write_atomic(&path, &serde_json::to_vec(&enc)?)?;
        Ok(enc)
    }
}

fn encode_split(
    cache: Option<&TokenCache>,
    cfg: &TrainConfig,
    tok: &BertTokenizer,
    split: Split,
    ex: &[Example],
) -> Result<Vec<Encoded>> {
    match cache {
        Some(c) => c.encode_split(cfg, tok, split, ex),
        None => encode_all(tok, ex),
    }
}

/// The reproducible training-size subset: a `data_seed` shuffle of the indices, first `n`.
pub fn subset_indices(len: usize, n: Option<usize>, data_seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    if let Some(n) = n.filter(|&n| n < len) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(data_seed);
        idx.shuffle(&mut rng);
        idx.truncate(n);
        idx.sort_unstable();
    }
    idx
}

/// The training examples scored for the train metrics: all, or an `eval_train_size` sample of
/// the training subset drawn apart from the subset itself (seed `data_seed` ^ "scor").
fn train_score_sample(cfg: &TrainConfig, n_train: usize) -> Vec<usize> {
    subset_indices(n_train, cfg.eval_train_size, cfg.data_seed ^ 0x7363_6f72)
}

/// Score `model` (inference copy, no autodiff) on examples.
pub fn evaluate(
    model: &BertClassifier,
    task: Task,
    ex: &[Example],
    enc: &[Encoded],
    pad_id: u32,
    pad_to: Option<usize>,
    dev: &Device,
) -> Scores {
    const EVAL_BATCH: usize = 64;
    // batches of similar length waste no compute on padding: score in length order, then put
    // the predictions back in example order (dropout is off, so a batch's other members do not
    // change an example's logits)
    let mut order: Vec<usize> = (0..enc.len()).collect();
    order.sort_by_key(|&i| enc[i].input_ids.len());
    let mut preds_c = vec![0usize; enc.len()];
    let mut preds_s = vec![0f64; enc.len()];
    for chunk in order.chunks(EVAL_BATCH) {
        let refs: Vec<&Encoded> = chunk.iter().map(|&i| &enc[i]).collect();
        let b = Batch::collate(&refs, pad_id, pad_to);
        let (ids, tt, mask) = batch_tensors(&b, dev);
        let logits = model.forward(ids, tt, mask);
        if task.is_regression() {
            let v: Vec<f32> = logits
                .into_data()
                .try_into_vec_as::<f32>()
                .expect("f32 tensor");
            for (&i, p) in chunk.iter().zip(v) {
                preds_s[i] = f64::from(p);
            }
        } else {
            let am: Vec<i64> = logits
                .argmax(1)
                .into_data()
                .try_into_vec_as::<i64>()
                .expect("int tensor");
            for (&i, p) in chunk.iter().zip(am) {
                preds_c[i] = p as usize;
            }
        }
    }
    let out = if task.is_regression() {
        let labels = ex
            .iter()
            .map(|e| {
                if let Label::Score(s) = e.label {
                    s as f64
                } else {
                    0.0
                }
            })
            .collect();
        Outputs::Scores {
            labels,
            preds: preds_s,
        }
    } else {
        let labels = ex
            .iter()
            .map(|e| if let Label::Class(c) = e.label { c } else { 0 })
            .collect();
        Outputs::Classes {
            labels,
            preds: preds_c,
        }
    };
    let mut scores = score(task, &out);
    let (key, v) = prediction_spread(&out);
    scores.insert(key.to_string(), v);
    scores
}

/// Diagnostic stored beside the metrics (keys start with `pred_`): the share of the most
/// frequent predicted class (1.0 = constant predictions), or the std of regression predictions
/// (0.0 = constant). The report counts such runs as degenerate.
pub fn prediction_spread(out: &Outputs) -> (&'static str, f64) {
    match out {
        Outputs::Classes { preds, .. } => {
            let mut counts = BTreeMap::new();
            for p in preds {
                *counts.entry(*p).or_insert(0usize) += 1;
            }
            let top = counts.values().copied().max().unwrap_or(0);
            (
                "pred_majority_share",
                top as f64 / preds.len().max(1) as f64,
            )
        }
        Outputs::Scores { preds, .. } => {
            let n = preds.len().max(1) as f64;
            let mean = preds.iter().sum::<f64>() / n;
            (
                "pred_std",
                (preds.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / n).sqrt(),
            )
        }
    }
}

/// Every bias vector of the encoder (HF name without `bert.` → values).
pub fn bias_vectors(model: &BertClassifier) -> Vec<(String, Vec<f32>)> {
    hf_tensors(model, |name, _| {
        name.starts_with("bert.") && name.ends_with(".bias")
    })
    .into_iter()
    .map(|t| (t.name["bert.".len()..].to_string(), t.values))
    .collect()
}

/// Mean |Δ| of every bias vector between two snapshots.
pub fn bias_changes(
    before: &[(String, Vec<f32>)],
    after: &[(String, Vec<f32>)],
) -> Vec<BiasChange> {
    before
        .iter()
        .zip(after)
        .map(|((name, a), (_, b))| {
            let d = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs() as f64)
                .sum::<f64>()
                / a.len().max(1) as f64;
            let parsed = BiasKind::parse_hf(name);
            BiasChange {
                name: name.clone(),
                kind: parsed.map(|p| p.1),
                layer: parsed.map(|p| p.0),
                mean_abs_delta: d,
            }
        })
        .collect()
}

/// What [`train`] reports while it runs.
pub enum Event<'a> {
    /// after every optimizer step
    Step {
        epoch: usize,
        step: usize,
        steps_per_epoch: usize,
        loss: f64,
    },
    /// after every epoch's evaluation
    Epoch(&'a EpochRecord),
    /// something the run's log should say (e.g. a train_size above the split's size)
    Note(String),
}

/// A run's data, tokenised: GLUE examples, or SQuAD questions cut into windows.
enum TaskData {
    Glue(GlueData),
    Squad(SquadData),
}

impl TaskData {
    fn load(
        cfg: &TrainConfig,
        model_dir: &std::path::Path,
        cache: Option<&TokenCache>,
        on_event: &mut impl FnMut(Event),
    ) -> Result<TaskData> {
        Ok(if cfg.task.is_span() {
            TaskData::Squad(SquadData::load(cfg, model_dir, on_event)?)
        } else {
            TaskData::Glue(GlueData::load(cfg, model_dir, cache, on_event)?)
        })
    }

    /// Training units: examples (GLUE) or windows (SQuAD); one epoch steps over all of them.
    fn n_train(&self) -> usize {
        match self {
            TaskData::Glue(d) => d.train_enc.len(),
            TaskData::Squad(d) => d.train_windows.len(),
        }
    }

    /// Training examples: GLUE's, or SQuAD's questions (what a training-set size counts).
    fn n_examples(&self) -> usize {
        match self {
            TaskData::Glue(d) => d.train_ex.len(),
            TaskData::Squad(d) => d.n_questions,
        }
    }

    /// The batch of training units `idx` and its targets.
    fn batch(&self, task: Task, idx: &[usize]) -> (Batch, Targets) {
        match self {
            TaskData::Glue(d) => {
                let enc: Vec<&Encoded> = idx.iter().map(|&j| &d.train_enc[j]).collect();
                let ex: Vec<&Example> = idx.iter().map(|&j| &d.train_ex[j]).collect();
                (Batch::collate(&enc, d.pad_id, d.pad_to), targets(task, &ex))
            }
            TaskData::Squad(d) => {
                let w: Vec<&crate::squad::Window> =
                    idx.iter().map(|&j| &d.train_windows[j]).collect();
                let enc: Vec<&Encoded> = w.iter().map(|w| &w.enc).collect();
                let targets = Targets::Spans {
                    start: w.iter().map(|w| w.target.0 as i64).collect(),
                    end: w.iter().map(|w| w.target.1 as i64).collect(),
                };
                (Batch::collate(&enc, d.pad_id, d.pad_to), targets)
            }
        }
    }

    fn evaluate(
        &self,
        cfg: &TrainConfig,
        model: &BertClassifier,
        dev: &Device,
    ) -> (Option<Scores>, BTreeMap<String, Scores>) {
        match self {
            TaskData::Glue(d) => d.evaluate(cfg, model, dev),
            TaskData::Squad(d) => d.evaluate(cfg, model, dev),
        }
    }
}

/// SQuAD questions and their windows: the training subset (and the sample of it scored for the
/// train metrics) and the dev questions.
struct SquadData {
    /// training questions (their windows are the training units)
    n_questions: usize,
    train_windows: Vec<crate::squad::Window>,
    /// the training questions scored for the train metrics, with their windows
    train_scored: (Vec<crate::squad::SquadExample>, Vec<crate::squad::Window>),
    dev: (Vec<crate::squad::SquadExample>, Vec<crate::squad::Window>),
    pad_id: u32,
    pad_to: Option<usize>,
}

impl SquadData {
    fn load(
        cfg: &TrainConfig,
        model_dir: &std::path::Path,
        on_event: &mut impl FnMut(Event),
    ) -> Result<SquadData> {
        use crate::squad;
        let root = crate::hub::resolve_data(&cfg.data.to_string_lossy())?;
        let tok = BertTokenizer::from_model_dir(model_dir, cfg.max_length)?
            .windows(squad::stride_for(cfg.max_length))?;
        let (all_train, mut dev_ex, note) = squad::load_train_dev(&root)?;
        if let Some(n) = note {
            on_event(Event::Note(n));
        }
        if let Some(n) = cfg.train_size.filter(|&n| n > all_train.len()) {
            on_event(Event::Note(train_size_note(n, all_train.len(), cfg.task)));
        }
        let keep = subset_indices(all_train.len(), cfg.train_size, cfg.data_seed);
        let train: Vec<squad::SquadExample> = keep.iter().map(|&i| all_train[i].clone()).collect();
        let train_windows = squad::windows(&tok, &train).context("windows of the training set")?;
        let scored = train_score_sample(cfg, train.len());
        let train_scored = if cfg.eval_train && scored.len() < train.len() {
            let ex: Vec<squad::SquadExample> = scored.iter().map(|&i| train[i].clone()).collect();
            let w = squad::windows(&tok, &ex)?;
            (ex, w)
        } else if cfg.eval_train {
            (train, train_windows.clone())
        } else {
            (Vec::new(), Vec::new())
        };
        if let Some(n) = cfg.eval_size {
            dev_ex.truncate(n);
        }
        let dev_windows = squad::windows(&tok, &dev_ex).context("windows of the dev set")?;
        Ok(SquadData {
            n_questions: keep.len(),
            train_windows,
            train_scored,
            dev: (dev_ex, dev_windows),
            pad_id: tok.pad_id,
            pad_to: cfg.pad_to_max_length.then_some(cfg.max_length),
        })
    }

    fn evaluate(
        &self,
        cfg: &TrainConfig,
        model: &BertClassifier,
        dev: &Device,
    ) -> (Option<Scores>, BTreeMap<String, Scores>) {
        let score = |(ex, w): &(Vec<crate::squad::SquadExample>, Vec<crate::squad::Window>)| {
            evaluate_squad(model, ex, w, self.pad_id, self.pad_to, dev)
        };
        let train = cfg.eval_train.then(|| score(&self.train_scored));
        let devs = BTreeMap::from([(Split::Dev.to_string(), score(&self.dev))]);
        (train, devs)
    }
}

/// Score `model` on SQuAD questions from their windows: start and end logits per window (in
/// length-sorted batches), the best span per question over its windows
/// ([`crate::squad::best_answer`]), and the official exact match and F1 (keys `em`, `f1`, as
/// fractions), with the share of questions answered by the fallback "empty" (`pred_empty_share`).
pub fn evaluate_squad(
    model: &BertClassifier,
    examples: &[crate::squad::SquadExample],
    windows: &[crate::squad::Window],
    pad_id: u32,
    pad_to: Option<usize>,
    dev: &Device,
) -> Scores {
    use crate::squad;
    const EVAL_BATCH: usize = 32;
    let mut order: Vec<usize> = (0..windows.len()).collect();
    order.sort_by_key(|&i| windows[i].enc.input_ids.len());
    let mut logits: Vec<(Vec<f32>, Vec<f32>)> = vec![(Vec::new(), Vec::new()); windows.len()];
    for chunk in order.chunks(EVAL_BATCH) {
        let refs: Vec<&Encoded> = chunk.iter().map(|&i| &windows[i].enc).collect();
        let b = Batch::collate(&refs, pad_id, pad_to);
        let (ids, tt, mask) = batch_tensors(&b, dev);
        let v: Vec<f32> = model
            .forward_spans(ids, tt, mask)
            .into_data()
            .try_into_vec_as::<f32>()
            .expect("f32 tensor");
        for (row, &i) in chunk.iter().enumerate() {
            let n = windows[i].enc.input_ids.len();
            let at = |t: usize, k: usize| v[(row * b.seq_len + t) * 2 + k];
            logits[i] = (
                (0..n).map(|t| at(t, 0)).collect(),
                (0..n).map(|t| at(t, 1)).collect(),
            );
        }
    }
    let mut per_example: Vec<Vec<squad::WindowLogits>> = vec![Vec::new(); examples.len()];
    for (w, (s, e)) in windows.iter().zip(&logits) {
        per_example[w.example].push((w, s, e));
    }
    let predictions: std::collections::HashMap<String, String> = examples
        .iter()
        .zip(&per_example)
        .map(|(ex, ws)| {
            (
                ex.id.clone(),
                squad::best_answer(&ex.context, ws, squad::N_BEST, squad::MAX_ANSWER_TOKENS),
            )
        })
        .collect();
    let (em, f1) = squad::evaluate(examples, &predictions);
    let empty = predictions.values().filter(|p| *p == "empty").count();
    Scores::from([
        (crate::data::Metric::ExactMatch.to_string(), em),
        (crate::data::Metric::F1.to_string(), f1),
        (
            "pred_empty_share".to_string(),
            empty as f64 / examples.len().max(1) as f64,
        ),
    ])
}

/// A GLUE run's examples, tokenised: the training subset and every dev split.
struct GlueData {
    train_ex: Vec<Example>,
    train_enc: Vec<Encoded>,
    /// the training examples scored for the train metrics (all of them unless eval_train_size)
    train_scored: Vec<usize>,
    /// (split name, examples, encodings)
    devs: Vec<(String, Vec<Example>, Vec<Encoded>)>,
    pad_id: u32,
    /// batches padded to this length (the reference code) instead of to their longest member
    pad_to: Option<usize>,
}

impl GlueData {
    fn load(
        cfg: &TrainConfig,
        model_dir: &std::path::Path,
        cache: Option<&TokenCache>,
        on_event: &mut impl FnMut(Event),
    ) -> Result<GlueData> {
        let task = cfg.task;
        let glue = Glue::new(crate::hub::resolve_data(&cfg.data.to_string_lossy())?);
        let tok = BertTokenizer::from_model_dir(model_dir, cfg.max_length)?;
        let all_train = glue.load(task, Split::Train)?;
        if let Some(n) = cfg.train_size.filter(|&n| n > all_train.len()) {
            on_event(Event::Note(train_size_note(n, all_train.len(), task)));
        }
        let keep = subset_indices(all_train.len(), cfg.train_size, cfg.data_seed);
        let train_ex: Vec<Example> = keep.iter().map(|&i| all_train[i].clone()).collect();
        let train_enc: Vec<Encoded> = if cache.is_some() {
            let all = encode_split(cache, cfg, &tok, Split::Train, &all_train)
                .context("tokenising the training set")?;
            keep.iter().map(|&i| all[i].clone()).collect()
        } else {
            encode_all(&tok, &train_ex).context("tokenising the training set")?
        };
        let mut devs = Vec::new();
        for &split in task.dev_splits() {
            let mut ex = glue.load(task, split)?;
            let mut enc = encode_split(cache, cfg, &tok, split, &ex)?;
            if let Some(n) = cfg.eval_size {
                ex.truncate(n);
                enc.truncate(n);
            }
            devs.push((split.to_string(), ex, enc));
        }
        let train_scored = train_score_sample(cfg, train_ex.len());
        Ok(GlueData {
            train_ex,
            train_enc,
            train_scored,
            devs,
            pad_id: tok.pad_id,
            pad_to: cfg.pad_to_max_length.then_some(cfg.max_length),
        })
    }

    /// Scores of the training set (when `eval_train`) and of every dev split.
    fn evaluate(
        &self,
        cfg: &TrainConfig,
        model: &BertClassifier,
        dev: &Device,
    ) -> (Option<Scores>, BTreeMap<String, Scores>) {
        let score = |ex: &[Example], enc: &[Encoded]| {
            evaluate(model, cfg.task, ex, enc, self.pad_id, self.pad_to, dev)
        };
        let train = cfg.eval_train.then(|| {
            if self.train_scored.len() == self.train_ex.len() {
                score(&self.train_ex, &self.train_enc)
            } else {
                let ex: Vec<Example> = self
                    .train_scored
                    .iter()
                    .map(|&i| self.train_ex[i].clone())
                    .collect();
                let enc: Vec<Encoded> = self
                    .train_scored
                    .iter()
                    .map(|&i| self.train_enc[i].clone())
                    .collect();
                score(&ex, &enc)
            }
        });
        let devs = self
            .devs
            .iter()
            .map(|(name, ex, enc)| (name.clone(), score(ex, enc)))
            .collect();
        (train, devs)
    }
}

/// The message for a `train_size` larger than the training split (the run trains on all of it).
pub fn train_size_note(train_size: usize, rows: usize, task: Task) -> String {
    format!(
        "train_size {train_size} exceeds the {rows} training examples of {task}: the run trains on all {rows}"
    )
}

/// The checkpoint's encoder on `dev` with a new task head, as `cfg` asks.
fn build_model(
    cfg: &TrainConfig,
    model_dir: &std::path::Path,
    dev: &Device,
) -> Result<BertClassifier> {
    let ckpt = Checkpoint::open(model_dir)?;
    if cfg.max_length > ckpt.config.max_tokens() {
        anyhow::bail!(
            "max_length {} exceeds the {} positions of the model ({}); lower max_length",
            cfg.max_length,
            ckpt.config.max_tokens(),
            model_dir.join("config.json").display()
        );
    }
    let (bert, _) = ckpt.load(dev)?;
    let head = BertClassifierConfig {
        num_labels: cfg.task.num_outputs(),
        pooling: cfg.head,
        seed: cfg.seed,
    };
    Ok(head.init(bert, &ckpt.config, dev))
}

/// Scalars of the task head (every parameter outside the encoder).
fn head_scalars(model: &BertClassifier) -> usize {
    params(model)
        .iter()
        .filter(|p| !p.path.starts_with("bert."))
        .map(|p| p.numel)
        .sum()
}

/// What Diff-Pruning's projection left: what it kept, the burn paths of the tensors its diff
/// touches, and the model's parameters.
struct Pruned {
    projection: super::diff_pruning::Projection,
    touched: std::collections::HashSet<String>,
    total: usize,
}

/// Diff-Pruning's projection and the start of its fixed-mask phase: draw the search phase's
/// gates once, cut the diffs to `share` of the model's parameters, and build a fresh model (the
/// pretrained encoder, the trained head) whose encoder tensors are `θ₀ + mask⊙w` with the raw
/// phase-1 `w`, under a new optimizer.
fn diff_pruning_refit(
    cfg: &TrainConfig,
    model_dir: &std::path::Path,
    dev: &Device,
    search: &Trainer,
    share: f64,
) -> Result<(Trainer, Pruned)> {
    use super::diff_pruning as dp;
    let mut fresh = build_model(cfg, model_dir, dev)?;
    let total: usize = params(&fresh).iter().map(|p| p.numel).sum();
    let head = head_scalars(&fresh);
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x6469_6666); // "diff"
    let drawn = dp::draw(search.model(), &mut rng);
    let (masks, projection) = dp::project(drawn, head, total, share);
    // the head trained densely in the search phase: carry it over
    let trained = search.model();
    fresh.classifier = trained.classifier.clone();
    fresh.dense = trained.dense.clone();
    let touched = masks
        .iter()
        .filter(|(_, (_, m))| m.iter().any(|&x| x > 0.0))
        .map(|(path, _)| path.clone())
        .collect();
    let mut attach = dp::Fixed { by_path: masks };
    let fixed = fresh.apply_reparameterization(&mut attach);
    if let Some(path) = attach.by_path.keys().next() {
        anyhow::bail!(
            "Diff-Pruning: the fixed-mask model has no tensor `{path}` of the search model"
        );
    }
    let trainer = Trainer::new(fixed, &cfg.method, cfg.optimizer, cfg.task.is_regression());
    Ok((
        trainer,
        Pruned {
            projection,
            touched,
            total,
        },
    ))
}

/// What a run leaves: its record, and its trained tensors when `save_trained` asks for them (HF
/// names and layout: the body of a [`crate::delta::Delta`]).
pub struct Trained {
    pub result: RunResult,
    pub tensors: Option<Vec<crate::model::NamedTensor>>,
}

/// Run one fine-tuning job from its configuration, reporting progress to `on_event`. Tokenised
/// splits go through `cache` when one is given.
pub fn train(
    cfg: &TrainConfig,
    cache: Option<&TokenCache>,
    mut on_event: impl FnMut(Event),
) -> Result<Trained> {
    let started = Instant::now();
    let task = cfg.task;
    // the config names model and data as the grid does (a folder or a hub id): resolve here, so
    // stored records carry no machine-local paths
    let model_dir = crate::hub::resolve_model(&cfg.model.to_string_lossy())?;
    let data = TaskData::load(cfg, &model_dir, cache, &mut on_event)?;

    let infer_dev = cfg.backend.device()?;
    let dev = infer_dev.clone().autodiff();
    dev.seed(cfg.seed);
    let model = build_model(cfg, &model_dir, &dev)?;
    let mut trainer = Trainer::for_method(
        model,
        &cfg.method,
        cfg.seed,
        cfg.optimizer,
        task.is_regression(),
    );
    let before = bias_vectors(trainer.model());

    let n_train = data.n_train();
    let steps_per_epoch = n_train.div_ceil(cfg.batch_size);
    let n_epochs = cfg.effective_epochs(n_train);
    let total_steps = steps_per_epoch * n_epochs;
    // Diff-Pruning: `n_epochs` of search, then the projection and `finetune` epochs with the mask
    // fixed; only those are scored on dev
    let diff_pruning = match &cfg.method {
        Method::DiffPruning {
            share_ppm,
            finetune,
            finetune_lr,
        } => Some((
            f64::from(*share_ppm) / 1e6,
            *finetune,
            finetune_lr.parse::<f64>().context("finetune_lr")?,
        )),
        _ => None,
    };
    let all_epochs = cfg.total_epochs(n_train);
    let mut projected: Option<Pruned> = None;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..n_train).collect();
    let mut epochs = Vec::new();
    let mut step = 0usize;
    let mut diverged = false;
    let mut train_time = 0.0;
    'epochs: for epoch in 1..=all_epochs {
        let t0 = Instant::now();
        let searching = diff_pruning.is_some() && epoch <= n_epochs;
        if let Some((share, _, _)) = diff_pruning
            && epoch == n_epochs + 1
        {
            let (next, pruned) = diff_pruning_refit(cfg, &model_dir, &dev, &trainer, share)?;
            let (projection, total) = (&pruned.projection, pruned.total);
            on_event(Event::Note(format!(
                "Diff-Pruning: projected to {} of {} parameters ({:.3}%, threshold {:.3e}); {} epochs with the mask fixed",
                projection.kept,
                total,
                100.0 * projection.kept as f64 / total as f64,
                projection.threshold,
                all_epochs - n_epochs
            )));
            trainer = next;
            projected = Some(pruned);
        }
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for (i, chunk) in order.chunks(cfg.batch_size).enumerate() {
            let (batch, targets) = data.batch(task, chunk);
            let lr = match diff_pruning {
                Some((_, finetune, lr)) if !searching => {
                    cfg.schedule
                        .lr(lr, step - total_steps, steps_per_epoch * finetune)
                }
                _ => cfg.schedule.lr(cfg.lr, step, total_steps),
            };
            let (loss, _) = trainer.step(&batch, &targets, lr);
            step += 1;
            if !loss.is_finite() {
                diverged = true;
                train_time += t0.elapsed().as_secs_f64();
                break 'epochs;
            }
            loss_sum += loss;
            on_event(Event::Step {
                epoch,
                step: i + 1,
                steps_per_epoch,
                loss,
            });
        }
        train_time += t0.elapsed().as_secs_f64();
        let (train_scores, dev_scores) = if searching {
            (None, BTreeMap::new())
        } else {
            data.evaluate(cfg, &trainer.model().valid(), &infer_dev)
        };
        epochs.push(EpochRecord {
            epoch,
            train_loss: loss_sum / steps_per_epoch.max(1) as f64,
            train: train_scores,
            dev: dev_scores,
            seconds: t0.elapsed().as_secs_f64(),
        });
        on_event(Event::Epoch(epochs.last().expect("just pushed")));
    }
    let headline = task.metrics()[0].to_string();
    let best_epoch = RunResult::headline_best_epoch(&epochs, &headline);
    // Diff-Pruning's effective weights (θ₀ + mask⊙w) as plain tensors
    let final_model = match &projected {
        Some(_) => trainer.model().clone().materialize(),
        None => trainer.model().clone(),
    };
    let after = bias_vectors(&final_model);
    let (trainable, total) = match &projected {
        // the diff's nonzero scalars + the dense head: the share the projection reached
        Some(p) => (p.projection.kept + head_scalars(&final_model), p.total),
        None => (trainer.trainable, trainer.total),
    };
    let tensors = cfg.save_trained.then(|| match &projected {
        // the tensors the diff touches, and the head
        Some(p) => {
            let touched: std::collections::HashSet<String> = p
                .touched
                .iter()
                .map(|path| final_model.hf_task_name(path))
                .collect();
            final_model.hf_task_tensors(|name, trained| trained || touched.contains(name))
        }
        None => final_model.hf_task_tensors(|_, trained| trained),
    });
    let result = RunResult {
        config: cfg.clone(),
        epochs,
        best_epoch,
        headline,
        trainable_params: trainable,
        total_params: total,
        trainable_share: trainable as f64 / total as f64,
        train_examples: data.n_examples(),
        steps: step,
        wall_seconds: started.elapsed().as_secs_f64(),
        train_examples_per_second: (step * cfg.batch_size).min(n_train * all_epochs) as f64
            / train_time.max(1e-9),
        bias_changes: bias_changes(&before, &after),
        diverged,
    };
    Ok(Trained { result, tensors })
}
