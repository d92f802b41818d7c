//! Serving deltas: one base encoder in memory, many tasks. Each task keeps only its head; its
//! trained encoder tensors (BitFit: the bias vectors) are written into the shared encoder when a
//! batch of that task comes, after the previous task's are put back to the base values. Used by
//! `repro eval` (one delta, a scored split), `repro predict` (JSON lines in, JSON lines out) and
//! `repro submit` (the GLUE leaderboard's files).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::prelude::*;

use crate::data::{Example, Glue, Split, Task};
use crate::delta::Delta;
use crate::finetune::train::{Scores, evaluate};
use crate::model::{BertClassifier, BertClassifierConfig, BertModel, Checkpoint, NamedTensor};
use crate::tokenize::{Batch, BertTokenizer, Encoded};

/// One task's part: its delta (encoder tensors), its head and its tokenizer.
struct TaskModel {
    delta: Delta,
    /// the delta's encoder tensors only (applied on every switch to this task)
    encoder_part: Delta,
    /// this task's head (the shared encoder is moved in for each batch)
    head: Option<Head>,
    tok: BertTokenizer,
}

/// A classifier without its encoder.
struct Head {
    dropout: burn::nn::Dropout,
    dense: Option<burn::nn::Linear>,
    classifier: burn::nn::Linear,
    pooling: crate::model::HeadPooling,
    family: &'static crate::model::Family,
}

impl Head {
    fn split(clf: BertClassifier) -> (BertModel, Head) {
        let BertClassifier {
            bert,
            dropout,
            dense,
            classifier,
            pooling,
            family,
        } = clf;
        (
            bert,
            Head {
                dropout,
                dense,
                classifier,
                pooling,
                family,
            },
        )
    }

    fn join(self, bert: BertModel) -> BertClassifier {
        BertClassifier {
            bert,
            dropout: self.dropout,
            dense: self.dense,
            classifier: self.classifier,
            pooling: self.pooling,
            family: self.family,
        }
    }
}

/// A base model serving any number of deltas.
pub struct Predictor {
    encoder: Option<BertModel>,
    /// base values of every encoder tensor some delta changes
    base: BTreeMap<String, NamedTensor>,
    tasks: Vec<TaskModel>,
    /// which task's encoder tensors are in the encoder now
    current: Option<usize>,
    dev: Device,
    pub base_digest: String,
}

/// One prediction: the label name (classification) and the probability of that label, or the
/// predicted score (regression: label empty).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub label: String,
    pub score: f64,
}

impl Predictor {
    /// Load `base` once and every delta in `deltas` (each checked against the base's digest).
    pub fn new(base: &Path, deltas: &[PathBuf], dev: &Device) -> Result<Predictor> {
        let base_digest = crate::store::Digests::default().model(base)?;
        let ckpt = Checkpoint::open(base)?;
        let (encoder, _) = ckpt.load(dev)?;
        let prefix = ckpt.config.family().prefix;
        let mut base_vals = BTreeMap::new();
        let mut tasks = Vec::new();
        let mut encoder = Some(encoder);
        for file in deltas {
            let delta = Delta::load(file)?;
            delta.check_base(&base_digest, base, file)?;
            if delta.meta.task.is_span() {
                bail!(
                    "{}: a {} delta (span extraction); repro eval/predict/submit serve sequence \
                     classification only — score SQuAD runs with repro train or a grid",
                    file.display(),
                    delta.meta.task
                );
            }
            if tasks
                .iter()
                .any(|t: &TaskModel| t.delta.meta.task == delta.meta.task)
            {
                bail!(
                    "{}: a second delta for {}; give one per task",
                    file.display(),
                    delta.meta.task
                );
            }
            let (enc_t, head_t): (Vec<NamedTensor>, Vec<NamedTensor>) = delta
                .tensors
                .iter()
                .cloned()
                .partition(|t| t.name.starts_with(prefix));
            // the head: a shell classifier around the base encoder, with the delta's head tensors
            let shell = BertClassifierConfig {
                num_labels: delta.meta.task.num_outputs(),
                pooling: delta.meta.head,
                seed: 0,
            }
            .init(encoder.take().expect("encoder present"), &ckpt.config, dev);
            // LoRA/adapter deltas: one shared encoder cannot hold two methods' extra modules
            let shell = if matches!(
                crate::finetune::Method::parse(&delta.meta.method),
                Ok(crate::finetune::Method::Lora { .. } | crate::finetune::Method::Adapters { .. })
            ) {
                if deltas.len() > 1 {
                    bail!(
                        "{}: a {} delta adds modules to the encoder; serve it alone (one --delta)",
                        file.display(),
                        delta.meta.method
                    );
                }
                delta.with_modules(shell)?
            } else {
                shell
            };
            let base_named = shell.hf_task_tensors(|n, _| enc_t.iter().any(|t| t.name == n));
            for t in base_named {
                base_vals.entry(t.name.clone()).or_insert(t);
            }
            let head_delta = Delta {
                meta: delta.meta.clone(),
                tensors: head_t,
            };
            let mut shell = head_delta
                .apply(shell)
                .with_context(|| format!("{}", file.display()))?;
            // check the encoder part fits too, without keeping it applied
            let encoder_part = Delta {
                meta: delta.meta.clone(),
                tensors: enc_t,
            };
            let shell_checked = encoder_part
                .apply(shell)
                .with_context(|| format!("{}", file.display()))?;
            shell = shell_checked;
            let restore = Delta {
                meta: delta.meta.clone(),
                tensors: encoder_part
                    .tensors
                    .iter()
                    .map(|t| base_vals[&t.name].clone())
                    .collect(),
            };
            shell = restore.apply(shell)?;
            let (enc, head) = Head::split(shell);
            encoder = Some(enc);
            let tok = BertTokenizer::from_model_dir(base, delta.meta.max_length)?;
            tasks.push(TaskModel {
                delta,
                encoder_part,
                head: Some(head),
                tok,
            });
        }
        Ok(Predictor {
            encoder,
            base: base_vals,
            tasks,
            current: None,
            dev: dev.clone(),
            base_digest,
        })
    }

    /// The tasks served, in delta order.
    pub fn tasks(&self) -> Vec<Task> {
        self.tasks.iter().map(|t| t.delta.meta.task).collect()
    }

    fn index(&self, task: Task) -> Result<usize> {
        self.tasks
            .iter()
            .position(|t| t.delta.meta.task == task)
            .ok_or_else(|| {
                let have: Vec<String> = self.tasks().iter().map(|t| t.to_string()).collect();
                anyhow!("no delta for task {task} (served: {})", have.join(", "))
            })
    }

    /// The classifier of task `i`: the shared encoder, with that task's tensors, in its head.
    fn switch(&mut self, i: usize) -> Result<BertClassifier> {
        let head = self.tasks[i].head.take().expect("head present");
        let mut clf = head.join(self.encoder.take().expect("encoder present"));
        if self.current != Some(i) {
            if let Some(prev) = self.current {
                let restore = Delta {
                    meta: self.tasks[prev].delta.meta.clone(),
                    tensors: self.tasks[prev]
                        .encoder_part
                        .tensors
                        .iter()
                        .map(|t| self.base[&t.name].clone())
                        .collect(),
                };
                clf = restore.apply(clf)?;
            }
            clf = self.tasks[i].encoder_part.apply(clf)?;
            self.current = Some(i);
        }
        Ok(clf)
    }

    /// Give the encoder back after a batch.
    fn release(&mut self, i: usize, clf: BertClassifier) {
        let (enc, head) = Head::split(clf);
        self.encoder = Some(enc);
        self.tasks[i].head = Some(head);
    }

    /// Tokenise examples for task `task`.
    pub fn encode(&self, task: Task, ex: &[Example]) -> Result<Vec<Encoded>> {
        let i = self.index(task)?;
        crate::finetune::train::encode_all(&self.tasks[i].tok, ex)
    }

    /// Score labelled examples of `task` (the run's metrics).
    pub fn score(&mut self, task: Task, ex: &[Example]) -> Result<Scores> {
        let i = self.index(task)?;
        let enc = self.encode(task, ex)?;
        let clf = self.switch(i)?;
        let pad = self.tasks[i].tok.pad_id;
        let s = evaluate(&clf, task, ex, &enc, pad, None, &self.dev);
        self.release(i, clf);
        Ok(s)
    }

    /// `repro eval`: score every dev split of `task` in the GLUE folder `data` (its first
    /// `eval_size` examples when given, as a run's `eval_size`).
    pub fn score_dev(
        &mut self,
        data: &Path,
        task: Task,
        eval_size: Option<usize>,
    ) -> Result<Vec<(Split, Scores)>> {
        let glue = Glue::new(data);
        let mut out = Vec::new();
        for &sp in task.dev_splits() {
            let mut ex = glue.load(task, sp)?;
            if let Some(n) = eval_size {
                ex.truncate(n);
            }
            out.push((sp, self.score(task, &ex)?));
        }
        Ok(out)
    }

    /// Predictions for examples of `task`, in their order (batches of similar length).
    pub fn predict(&mut self, task: Task, ex: &[Example]) -> Result<Vec<Prediction>> {
        const BATCH: usize = 64;
        let i = self.index(task)?;
        let enc = self.encode(task, ex)?;
        let clf = self.switch(i)?;
        let pad = self.tasks[i].tok.pad_id;
        let labels = self.tasks[i].delta.meta.labels.clone();
        let mut order: Vec<usize> = (0..enc.len()).collect();
        order.sort_by_key(|&k| enc[k].input_ids.len());
        let mut out = vec![
            Prediction {
                label: String::new(),
                score: 0.0
            };
            enc.len()
        ];
        for chunk in order.chunks(BATCH) {
            let refs: Vec<&Encoded> = chunk.iter().map(|&k| &enc[k]).collect();
            let b = Batch::collate(&refs, pad, None);
            let (ids, tt, mask) = crate::model::batch_tensors(&b, &self.dev);
            let logits = clf.forward(ids, tt, mask);
            let n = logits.dims()[1];
            let v: Vec<f32> = if task.is_regression() {
                logits.into_data().try_into_vec_as::<f32>().expect("f32")
            } else {
                burn::tensor::activation::softmax(logits, 1)
                    .into_data()
                    .try_into_vec_as::<f32>()
                    .expect("f32")
            };
            for (row, &k) in chunk.iter().enumerate() {
                let r = &v[row * n..(row + 1) * n];
                out[k] = if task.is_regression() {
                    Prediction {
                        label: String::new(),
                        score: f64::from(r[0]),
                    }
                } else {
                    let (best, p) = r
                        .iter()
                        .enumerate()
                        .fold((0, f32::MIN), |m, (j, &p)| if p > m.1 { (j, p) } else { m });
                    Prediction {
                        label: labels
                            .get(best)
                            .cloned()
                            .unwrap_or_else(|| best.to_string()),
                        score: f64::from(p),
                    }
                };
            }
        }
        self.release(i, clf);
        Ok(out)
    }
}

/// One line of `repro predict`'s input.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    task: String,
    text: String,
    #[serde(default)]
    text_pair: Option<String>,
}

/// `repro predict`: JSON lines `{"task", "text", "text_pair"}` in, one JSON line out per input
/// line, in input order: `{"task", "label", "score"}`, or `{"line", "error"}` for a line that
/// cannot be served (also said on stderr; the stream goes on). Batches within each task.
/// Returns (lines served, lines in error).
pub fn predict_lines(
    p: &mut Predictor,
    input: impl BufRead,
    mut out: impl Write,
    mut err: impl Write,
) -> Result<(usize, usize)> {
    let mut results: Vec<Option<serde_json::Value>> = Vec::new();
    let mut by_task: BTreeMap<Task, Vec<(usize, Example)>> = BTreeMap::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.context("reading the input")?;
        results.push(None);
        if line.trim().is_empty() {
            results.pop();
            continue;
        }
        let slot = results.len() - 1;
        let parsed = serde_json::from_str::<Request>(&line)
            .map_err(|e| anyhow!("{e}"))
            .and_then(|r| {
                let task: Task = r.task.parse()?;
                p.index(task)?;
                Ok((task, r))
            });
        match parsed {
            Ok((task, r)) => by_task.entry(task).or_default().push((
                slot,
                Example {
                    text_a: r.text,
                    text_b: r.text_pair,
                    label: crate::data::Label::None,
                },
            )),
            Err(e) => {
                writeln!(err, "line {}: {e:#}", n + 1)?;
                results[slot] = Some(serde_json::json!({"line": n + 1, "error": format!("{e:#}")}));
            }
        }
    }
    if results.is_empty() {
        bail!("empty input: give JSON lines such as {{\"task\": \"SST-2\", \"text\": \"…\"}}");
    }
    for (task, items) in by_task {
        let ex: Vec<Example> = items.iter().map(|(_, e)| e.clone()).collect();
        let preds = p.predict(task, &ex)?;
        for ((slot, _), pred) in items.iter().zip(preds) {
            results[*slot] = Some(serde_json::json!({
                "task": task.name(),
                "label": pred.label,
                "score": pred.score,
            }));
        }
    }
    let mut errors = 0;
    for r in &results {
        let r = r.as_ref().expect("every line answered");
        errors += usize::from(r.get("error").is_some());
        writeln!(out, "{r}")?;
    }
    Ok((results.len() - errors, errors))
}

/// Which unlabelled rows a leaderboard file predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestRows {
    /// the task's test split (MNLI: matched)
    Test,
    /// MNLI's mismatched test split (not readable by this harness's GLUE reader yet)
    MnliMismatched,
    /// the diagnostic set AX, predicted with the MNLI model
    Ax,
}

/// The GLUE leaderboard's file for each task, the task whose model predicts it, and its rows.
pub const SUBMISSION_FILES: [(&str, Task, TestRows); 11] = [
    ("CoLA.tsv", Task::CoLA, TestRows::Test),
    ("SST-2.tsv", Task::Sst2, TestRows::Test),
    ("MRPC.tsv", Task::Mrpc, TestRows::Test),
    ("STS-B.tsv", Task::StsB, TestRows::Test),
    ("QQP.tsv", Task::Qqp, TestRows::Test),
    ("MNLI-m.tsv", Task::Mnli, TestRows::Test),
    ("MNLI-mm.tsv", Task::Mnli, TestRows::MnliMismatched),
    ("QNLI.tsv", Task::Qnli, TestRows::Test),
    ("RTE.tsv", Task::Rte, TestRows::Test),
    ("WNLI.tsv", Task::Wnli, TestRows::Test),
    ("AX.tsv", Task::Mnli, TestRows::Ax),
];

/// What `submit` wrote and what it could not.
#[derive(Debug, Default)]
pub struct Submission {
    /// (file, rows)
    pub written: Vec<(String, usize)>,
    /// (file, why not)
    pub missing: Vec<(String, String)>,
    pub zip: PathBuf,
}

/// `repro submit`: the leaderboard's TSV files (`index`, `prediction`) for every task with a
/// delta, from the test splits in `data`, and `submission.zip` of them. Tasks without a delta
/// (or without test data here) are listed in `MISSING.txt`, never faked.
pub fn submit(p: &mut Predictor, data: &Path, out: &Path) -> Result<Submission> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let glue = Glue::new(data);
    let served = p.tasks();
    let mut sub = Submission::default();
    for (file, task, split) in SUBMISSION_FILES {
        if !served.contains(&task) {
            sub.missing
                .push((file.to_string(), format!("no delta for {task}")));
            continue;
        }
        let loaded = match split {
            TestRows::Test => glue.load(task, Split::Test),
            TestRows::Ax => glue.load(Task::Ax, Split::Test),
            TestRows::MnliMismatched => Err(anyhow!(
                "MNLI's mismatched test split is not read by this harness"
            )),
        };
        let ex = match loaded {
            Ok(ex) => ex,
            Err(e) => {
                sub.missing.push((file.to_string(), format!("{e:#}")));
                continue;
            }
        };
        // the leaderboard matches rows by index: a row the reader skipped would shift the rest
        let (file_task, _) = match split {
            TestRows::Ax => (Task::Ax, ()),
            _ => (task, ()),
        };
        if let Ok(crate::data::DataFile::Tsv(path)) = glue.locate(file_task, Split::Test) {
            let rows = std::fs::read_to_string(&path)
                .map(|t| t.lines().skip(1).filter(|l| !l.trim().is_empty()).count())
                .unwrap_or(ex.len());
            if rows != ex.len() {
                bail!(
                    "{}: {rows} rows but {} read; the submission's indices would not match the leaderboard's",
                    path.display(),
                    ex.len()
                );
            }
        }
        let preds = p.predict(task, &ex)?;
        let mut tsv = String::from("index\tprediction\n");
        for (i, pr) in preds.iter().enumerate() {
            if task.is_regression() {
                tsv.push_str(&format!("{i}\t{:.3}\n", pr.score.clamp(0.0, 5.0)));
            } else {
                tsv.push_str(&format!("{i}\t{}\n", pr.label));
            }
        }
        crate::store::write_atomic(&out.join(file), tsv.as_bytes())?;
        sub.written.push((file.to_string(), preds.len()));
    }
    let missing: String = sub
        .missing
        .iter()
        .map(|(f, why)| format!("{f}\t{why}\n"))
        .collect();
    crate::store::write_atomic(&out.join("MISSING.txt"), missing.as_bytes())?;
    sub.zip = out.join("submission.zip");
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (f, _) in &sub.written {
            z.start_file(f.as_str(), opts)?;
            z.write_all(&std::fs::read(out.join(f))?)?;
        }
        z.finish()?;
    }
    crate::store::write_atomic(&sub.zip, buf.get_ref())?;
    Ok(sub)
}
