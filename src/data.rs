//! GLUE tasks: readers for the original GLUE TSV layout and for the Hugging Face parquet layout of
//! `nyu-mll/glue`, label maps, and the examples the training loop consumes. SQuAD is a task here
//! too (its name, metrics and files); its reader and evaluation live in [`crate::squad`].
//!
//! TSV quirks handled (see `shared/data/README.md`): CoLA train/dev have no header, MRPC files start
//! with a UTF-8 BOM, quoting is off (plain tab split: sentences contain bare `"`).

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

/// A GLUE task (plus the AX diagnostic set), named as in the paper's tables.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Task {
    #[serde(rename = "CoLA")]
    CoLA,
    #[serde(rename = "SST-2")]
    Sst2,
    #[serde(rename = "MRPC")]
    Mrpc,
    #[serde(rename = "STS-B")]
    StsB,
    #[serde(rename = "QQP")]
    Qqp,
    #[serde(rename = "MNLI")]
    Mnli,
    #[serde(rename = "QNLI")]
    Qnli,
    #[serde(rename = "RTE")]
    Rte,
    #[serde(rename = "WNLI")]
    Wnli,
    #[serde(rename = "AX")]
    Ax,
    /// SQuAD v1.1 span extraction ([`crate::squad`])
    #[serde(rename = "SQuAD")]
    Squad,
}

/// Which part of a task's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    /// dev; for MNLI the matched dev set
    Dev,
    /// MNLI mismatched dev set
    DevMismatched,
    /// unlabelled test set (AX: the diagnostic set)
    Test,
}

/// The metric that a task is scored with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Accuracy,
    F1,
    Matthews,
    Pearson,
    Spearman,
    /// SQuAD's exact match (the official v1.1 script)
    ExactMatch,
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::Matthews => "mcc",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearman",
            Metric::ExactMatch => "em",
        })
    }
}

/// The gold label of one example.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Label {
    /// index into [`Task::labels`]
    Class(usize),
    /// STS-B similarity score (0..5)
    Score(f32),
    /// test sets carry no label
    None,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: Label,
}

/// How the columns of one task are laid out in each format.
struct Layout {
    /// folder name in the GLUE TSV layout
    tsv_dir: &'static str,
    /// config name in `nyu-mll/glue`
    hf_config: &'static str,
    /// header names of the text columns in the TSV files (CoLA: column indices, no header)
    tsv_text: (&'static str, Option<&'static str>),
    tsv_label: &'static str,
    /// column names in the parquet files
    hf_text: (&'static str, Option<&'static str>),
    /// label strings in the GLUE TSV files, in the order of the model's output units
    labels: &'static [&'static str],
    /// label names of the HF `ClassLabel`, in its integer order
    hf_labels: &'static [&'static str],
}

const ALL: [Task; 11] = [
    Task::CoLA,
    Task::Sst2,
    Task::Mrpc,
    Task::StsB,
    Task::Qqp,
    Task::Mnli,
    Task::Qnli,
    Task::Rte,
    Task::Wnli,
    Task::Ax,
    Task::Squad,
];

const BINARY: &[&str] = &["0", "1"];
const NLI3: &[&str] = &["contradiction", "entailment", "neutral"];
const NLI2: &[&str] = &["entailment", "not_entailment"];

impl Task {
    pub fn all() -> &'static [Task] {
        &ALL
    }

    /// The name used in the paper's tables and in file/CLI output (`CoLA`, `SST-2`, `STS-B` …).
    pub fn name(self) -> &'static str {
        self.layout().tsv_dir
    }

    fn layout(self) -> Layout {
        match self {
            Task::CoLA => Layout {
                tsv_dir: "CoLA",
                hf_config: "cola",
                tsv_text: ("3", None),
                tsv_label: "1",
                hf_text: ("sentence", None),
                labels: BINARY,
                hf_labels: &["unacceptable", "acceptable"],
            },
            Task::Sst2 => Layout {
                tsv_dir: "SST-2",
                hf_config: "sst2",
                tsv_text: ("sentence", None),
                tsv_label: "label",
                hf_text: ("sentence", None),
                labels: BINARY,
                hf_labels: &["negative", "positive"],
            },
            Task::Mrpc => Layout {
                tsv_dir: "MRPC",
                hf_config: "mrpc",
                tsv_text: ("#1 String", Some("#2 String")),
                tsv_label: "Quality",
                hf_text: ("sentence1", Some("sentence2")),
                labels: BINARY,
                hf_labels: &["not_equivalent", "equivalent"],
            },
            Task::StsB => Layout {
                tsv_dir: "STS-B",
                hf_config: "stsb",
                tsv_text: ("sentence1", Some("sentence2")),
                tsv_label: "score",
                hf_text: ("sentence1", Some("sentence2")),
                labels: &[],
                hf_labels: &[],
            },
            Task::Qqp => Layout {
                tsv_dir: "QQP",
                hf_config: "qqp",
                tsv_text: ("question1", Some("question2")),
                tsv_label: "is_duplicate",
                hf_text: ("question1", Some("question2")),
                labels: BINARY,
                hf_labels: &["not_duplicate", "duplicate"],
            },
            Task::Mnli => Layout {
                tsv_dir: "MNLI",
                hf_config: "mnli",
                tsv_text: ("sentence1", Some("sentence2")),
                tsv_label: "gold_label",
                hf_text: ("premise", Some("hypothesis")),
                labels: NLI3,
                hf_labels: &["entailment", "neutral", "contradiction"],
            },
            Task::Qnli => Layout {
                tsv_dir: "QNLI",
                hf_config: "qnli",
                tsv_text: ("question", Some("sentence")),
                tsv_label: "label",
                hf_text: ("question", Some("sentence")),
                labels: NLI2,
                hf_labels: &["entailment", "not_entailment"],
            },
            Task::Rte => Layout {
                tsv_dir: "RTE",
                hf_config: "rte",
                tsv_text: ("sentence1", Some("sentence2")),
                tsv_label: "label",
                hf_text: ("sentence1", Some("sentence2")),
                labels: NLI2,
                hf_labels: &["entailment", "not_entailment"],
            },
            Task::Wnli => Layout {
                tsv_dir: "WNLI",
                hf_config: "wnli",
                tsv_text: ("sentence1", Some("sentence2")),
                tsv_label: "label",
                hf_text: ("sentence1", Some("sentence2")),
                labels: BINARY,
                hf_labels: &["not_entailment", "entailment"],
            },
            Task::Ax => Layout {
                tsv_dir: "AX",
                hf_config: "ax",
                tsv_text: ("sentence1", Some("sentence2")),
                tsv_label: "",
                hf_text: ("premise", Some("hypothesis")),
                labels: NLI3,
                hf_labels: &["entailment", "neutral", "contradiction"],
            },
            // JSON, not TSV or parquet: only the names are used ([`crate::squad`] reads it)
            Task::Squad => Layout {
                tsv_dir: "SQuAD",
                hf_config: "squad",
                tsv_text: ("question", Some("context")),
                tsv_label: "",
                hf_text: ("question", Some("context")),
                labels: &[],
                hf_labels: &[],
            },
        }
    }

    /// Output labels in the order of the model's output units (GLUE TSV strings; HF processors'
    /// order). Empty for the regression task STS-B.
    pub fn labels(self) -> &'static [&'static str] {
        self.layout().labels
    }

    pub fn is_regression(self) -> bool {
        self == Task::StsB
    }

    /// Span extraction (SQuAD): a start and an end logit per token instead of a label.
    pub fn is_span(self) -> bool {
        self == Task::Squad
    }

    /// Number of model outputs: classes, 1 for regression, 2 (start, end) per token for spans.
    pub fn num_outputs(self) -> usize {
        if self.is_regression() {
            1
        } else if self.is_span() {
            2
        } else {
            self.labels().len()
        }
    }

    pub fn is_pair(self) -> bool {
        self.layout().tsv_text.1.is_some()
    }

    /// The paper's headline metric followed by the secondary ones that are logged.
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            Task::CoLA => &[Metric::Matthews, Metric::Accuracy],
            Task::Mrpc | Task::Qqp => &[Metric::F1, Metric::Accuracy],
            Task::StsB => &[Metric::Spearman, Metric::Pearson],
            Task::Squad => &[Metric::ExactMatch, Metric::F1],
            _ => &[Metric::Accuracy],
        }
    }

    /// Dev splits to evaluate on (MNLI: matched and mismatched).
    pub fn dev_splits(self) -> &'static [Split] {
        match self {
            Task::Mnli => &[Split::Dev, Split::DevMismatched],
            Task::Ax => &[],
            _ => &[Split::Dev],
        }
    }

    fn tsv_file(self, split: Split) -> &'static str {
        match (self, split) {
            (Task::Ax, _) => "diagnostic.tsv",
            (Task::Mnli, Split::Dev) => "dev_matched.tsv",
            (Task::Mnli, Split::DevMismatched) => "dev_mismatched.tsv",
            (Task::Mnli, Split::Test) => "test_matched.tsv",
            (_, Split::Train) => "train.tsv",
            (_, Split::Dev) | (_, Split::DevMismatched) => "dev.tsv",
            (_, Split::Test) => "test.tsv",
        }
    }

    fn hf_split(self, split: Split) -> &'static str {
        match (self, split) {
            (Task::Ax, _) => "test",
            (Task::Mnli, Split::Dev) => "validation_matched",
            (Task::Mnli, Split::DevMismatched) => "validation_mismatched",
            (Task::Mnli, Split::Test) => "test_matched",
            (_, Split::Train) => "train",
            (_, Split::Dev) | (_, Split::DevMismatched) => "validation",
            (_, Split::Test) => "test",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Task {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Task> {
        let norm = |x: &str| x.to_ascii_lowercase().replace(['-', '_'], "");
        ALL.iter()
            .copied()
            .find(|t| norm(t.name()) == norm(s))
            .ok_or_else(|| {
                let names: Vec<_> = ALL.iter().map(|t| t.name()).collect();
                anyhow!("unknown task `{s}`; valid tasks: {}", names.join(", "))
            })
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::DevMismatched => "dev_mismatched",
            Split::Test => "test",
        })
    }
}

/// Where the GLUE data lives. Either layout is detected per task and split.
#[derive(Clone, Debug)]
pub struct Glue {
    pub root: PathBuf,
}

/// The file a split was read from and its format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataFile {
    Tsv(PathBuf),
    Parquet(Vec<PathBuf>),
    /// SQuAD's JSON file
    Json(PathBuf),
}

impl DataFile {
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            DataFile::Tsv(p) | DataFile::Json(p) => vec![p.as_path()],
            DataFile::Parquet(ps) => ps.iter().map(|p| p.as_path()).collect(),
        }
    }
}

impl Glue {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Glue { root: root.into() }
    }

    /// Find the file(s) holding `task`/`split`: `<root>/<TASK>/<split>.tsv` (GLUE layout) or
    /// `<root>/<config>/<split>-*.parquet` (HF `nyu-mll/glue` layout).
    pub fn locate(&self, task: Task, split: Split) -> Result<DataFile> {
        if task == Task::Squad {
            return Ok(DataFile::Json(crate::squad::locate(&self.root, split)?.0));
        }
        if task == Task::Ax && split != Split::Test {
            bail!(
                "GLUE AX is a diagnostic test set only (AX/diagnostic.tsv); it has no {split} split"
            );
        }
        if split == Split::DevMismatched && task != Task::Mnli {
            bail!("GLUE {task}: only MNLI has a mismatched dev set");
        }
        let l = task.layout();
        let tsv = self.root.join(l.tsv_dir).join(task.tsv_file(split));
        if tsv.is_file() {
            return Ok(DataFile::Tsv(tsv));
        }
        let pq_dir = self.root.join(l.hf_config);
        let prefix = format!("{}-", task.hf_split(split));
        let mut parts: Vec<PathBuf> = std::fs::read_dir(&pq_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                n.starts_with(&prefix) && n.ends_with(".parquet")
            })
            .collect();
        if !parts.is_empty() {
            parts.sort();
            return Ok(DataFile::Parquet(parts));
        }
        bail!(
            "GLUE {task} {split}: neither {} (GLUE TSV layout) nor {}/{}*.parquet (nyu-mll/glue layout) exists; \
             point --data at a GLUE folder (GLUE's download_glue_data.py) or fetch the parquet files with \
             `repro fetch --dataset nyu-mll/glue`",
            tsv.display(),
            pq_dir.display(),
            prefix
        )
    }

    /// Read every example of `task`/`split` (SQuAD: question and context, no label; training
    /// reads it with [`crate::squad::load`]).
    pub fn load(&self, task: Task, split: Split) -> Result<Vec<Example>> {
        if task == Task::Squad {
            let (ex, _) = crate::squad::load(&self.root, split)?;
            return Ok(ex
                .into_iter()
                .map(|e| Example {
                    text_a: e.question,
                    text_b: Some(e.context),
                    label: Label::None,
                })
                .collect());
        }
        match self.locate(task, split)? {
            DataFile::Tsv(p) => read_tsv(task, split, &p),
            DataFile::Json(p) => bail!("{}: a JSON file is SQuAD's, not {task}'s", p.display()),
            DataFile::Parquet(ps) => {
                let mut all = Vec::new();
                for p in &ps {
                    all.extend(read_parquet(task, p)?);
                }
                Ok(all)
            }
        }
    }
}

fn parse_label(task: Task, raw: &str, path: &Path, line: usize) -> Result<Label> {
    let raw = raw.trim();
    if task.is_regression() {
        let v: f32 = raw.parse().with_context(|| {
            format!(
                "{}:{line}: STS-B score `{raw}` is not a number",
                path.display()
            )
        })?;
        return Ok(Label::Score(v));
    }
    task.labels()
        .iter()
        .position(|l| *l == raw)
        .map(Label::Class)
        .ok_or_else(|| {
            anyhow!(
                "{}:{line}: label `{raw}` is not one of {:?} for {task}",
                path.display(),
                task.labels()
            )
        })
}

/// Read one GLUE TSV file (quoting off, tab split per line).
pub fn read_tsv(task: Task, split: Split, path: &Path) -> Result<Vec<Example>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let l = task.layout();
    let mut lines = text.lines().enumerate();
    // CoLA train/dev have no header: fixed columns source, label, mark, sentence.
    let headerless = task == Task::CoLA && split != Split::Test;
    let (col_a, col_b, col_label) = if headerless {
        (3usize, None, Some(1usize))
    } else {
        let (_, header) = lines
            .next()
            .ok_or_else(|| anyhow!("{}: empty file", path.display()))?;
        let cols: Vec<&str> = header.split('\t').collect();
        let find = |name: &str| -> Result<usize> {
            cols.iter().position(|c| c.trim() == name).ok_or_else(|| {
                anyhow!(
                    "{}: header has no column `{name}` (columns: {:?}) — is this {task}?",
                    path.display(),
                    cols
                )
            })
        };
        let (a, b) = if task == Task::CoLA {
            ("sentence", None)
        } else {
            l.tsv_text
        };
        let label = if split == Split::Test || task == Task::Ax {
            None
        } else {
            Some(find(l.tsv_label)?)
        };
        (find(a)?, b.map(find).transpose()?, label)
    };
    let needed = [Some(col_a), col_b, col_label]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = Vec::new();
    for (i, line) in lines {
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < needed {
            if task == Task::Qqp {
                continue; // HF's QqpProcessor skips QQP's few malformed rows
            }
            bail!(
                "{}:{}: {} columns, expected at least {needed}",
                path.display(),
                i + 1,
                f.len()
            );
        }
        let label = match col_label {
            Some(c) => parse_label(task, f[c], path, i + 1)?,
            None => Label::None,
        };
        out.push(Example {
            text_a: f[col_a].to_string(),
            text_b: col_b.map(|c| f[c].to_string()),
            label,
        });
    }
    Ok(out)
}

/// Read one parquet file of the HF `nyu-mll/glue` layout with polars.
pub fn read_parquet(task: Task, path: &Path) -> Result<Vec<Example>> {
    use polars::prelude::{DataType, ParquetReader, SerReader};
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let df = anyhow::Context::with_context(ParquetReader::new(file).finish(), || {
        format!("reading parquet {}", path.display())
    })?;
    let l = task.layout();
    let text_col = |name: &str| -> Result<Vec<String>> {
        let s = df.column(name).with_context(|| {
            format!(
                "{}: no column `{name}` (columns: {:?}) — is this {task}?",
                path.display(),
                df.get_column_names()
            )
        })?;
        let s = s
            .str()
            .with_context(|| format!("{}: column `{name}` is not text", path.display()))?;
        Ok(s.iter().map(|v| v.unwrap_or("").to_string()).collect())
    };
    let a = text_col(l.hf_text.0)?;
    let b = l.hf_text.1.map(text_col).transpose()?;
    let labels: Vec<Label> = match df.column("label") {
        Err(_) => vec![Label::None; a.len()],
        Ok(c) => {
            let c = c.cast(&DataType::Float64)?;
            let c = c.f64()?;
            c.to_vec()
                .into_iter()
                .enumerate()
                .map(|(row, v)| -> Result<Label> {
                    let v = v.unwrap_or(-1.0);
                    if task.is_regression() {
                        return Ok(if v < 0.0 {
                            Label::None
                        } else {
                            Label::Score(v as f32)
                        });
                    }
                    if v < 0.0 {
                        return Ok(Label::None); // HF marks unlabelled test rows with -1
                    }
                    let name = l.hf_labels.get(v as usize).ok_or_else(|| {
                        anyhow!(
                            "{}: row {row}: label {v} outside the {} classes of {task}",
                            path.display(),
                            l.hf_labels.len()
                        )
                    })?;
                    Ok(Label::Class(hf_name_to_index(task, name)))
                })
                .collect::<Result<_>>()?
        }
    };
    Ok((0..a.len())
        .map(|i| Example {
            text_a: a[i].clone(),
            text_b: b.as_ref().map(|b| b[i].clone()),
            label: labels[i],
        })
        .collect())
}

/// Map an HF ClassLabel name onto the index of the GLUE TSV label list.
fn hf_name_to_index(task: Task, name: &str) -> usize {
    let l = task.layout();
    if let Some(i) = l.labels.iter().position(|x| *x == name) {
        return i; // NLI tasks share label names across layouts
    }
    // binary tasks: the TSV labels are "0"/"1" in the same order as the HF names
    l.hf_labels
        .iter()
        .position(|x| *x == name)
        .expect("name comes from hf_labels")
}

/// One split of a task as `repro data` lists it.
pub struct SplitListing {
    pub task: Task,
    pub split: Split,
    pub rows: usize,
    /// `label:count …`, `(scores)` for regression, `(unlabelled)` for a test split
    pub labels: String,
    pub file: PathBuf,
}

/// `repro data`: every split of `tasks` found under `glue` (dev-mismatched for MNLI only), with
/// its row count and label distribution.
pub fn listing(glue: &Glue, tasks: &[Task]) -> Result<Vec<SplitListing>> {
    let mut out = Vec::new();
    for &t in tasks {
        for split in [Split::Train, Split::Dev, Split::DevMismatched, Split::Test] {
            if split == Split::DevMismatched && t != Task::Mnli {
                continue;
            }
            let Ok(file) = glue.locate(t, split) else {
                continue;
            };
            let ex = glue.load(t, split)?;
            let labels = if t.is_regression() {
                String::from("(scores)")
            } else {
                let c = label_counts(t, &ex);
                if c.iter().sum::<usize>() == 0 {
                    "(unlabelled)".into()
                } else {
                    t.labels()
                        .iter()
                        .zip(c)
                        .map(|(l, n)| format!("{l}:{n}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            };
            out.push(SplitListing {
                task: t,
                split,
                rows: ex.len(),
                labels,
                file: file.paths()[0].to_path_buf(),
            });
        }
    }
    Ok(out)
}

/// Count examples per label index (for README checks and `repro data`).
pub fn label_counts(task: Task, examples: &[Example]) -> Vec<usize> {
    let mut c = vec![0; task.labels().len()];
    for e in examples {
        if let Label::Class(i) = e.label {
            c[i] += 1;
        }
    }
    c
}
