//! SQuAD v1.1: the reader, the article split of the dev set, windows over long contexts as HF's
//! `run_qa.py` builds them, its post-processing (n-best spans), and the official v1.1 evaluation
//! (`evaluate-v1.1.py`: normalisation, exact match and token F1, max over the gold answers).
//!
//! Data: a folder with `dev-v1.1.json`, and `train-v1.1.json` where one has it. With both, runs
//! train on the train file and are scored on the whole dev file (the paper's setting). With the
//! dev file alone (all that `shared/data/squad` holds), the dev set is split by article
//! ([`in_eval_part`]): every fourth article, in file order, is the evaluation part, the rest the
//! train part, so that no article (and no paragraph) is in both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::data::Split;
use crate::tokenize::{Encoded, WindowTokenizer};

/// HF run_qa's defaults: windows of 384 tokens (`max_length` of a SQuAD run unless a grid sets
/// it) overlapping by a stride of 128 tokens (at most half the window for shorter ones).
pub const DEFAULT_MAX_LENGTH: usize = 384;
pub const DEFAULT_STRIDE: usize = 128;

/// The stride between windows of `max_length` tokens: 128, or half the window when shorter.
pub fn stride_for(max_length: usize) -> usize {
    DEFAULT_STRIDE.min(max_length / 2)
}
/// run_qa's `n_best_size`: start and end candidates per window.
pub const N_BEST: usize = 20;
/// run_qa's `max_answer_length`, in tokens.
pub const MAX_ANSWER_TOKENS: usize = 30;

pub const DEV_FILE: &str = "dev-v1.1.json";
pub const TRAIN_FILE: &str = "train-v1.1.json";

/// One gold answer: its text and the character (Unicode scalar) index where it starts in the
/// context, as `answer_start` gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub text: String,
    pub start: usize,
}

/// One question with its paragraph.
#[derive(Clone, Debug, PartialEq)]
pub struct SquadExample {
    pub id: String,
    /// index of the article in its file (file order)
    pub article: usize,
    pub title: String,
    pub context: String,
    pub question: String,
    pub answers: Vec<Answer>,
}

/// Which questions of a file a split reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// every question of the file
    Whole,
    /// the articles of the dev file that are not in [`Part::Eval`]
    Train,
    /// every fourth article of the dev file ([`in_eval_part`])
    Eval,
}

/// The fixed article split of a dev file used alone: article `i` (0-based, file order) is in
/// the evaluation part when `i % 4 == 3` (SQuAD v1.1 dev: 12 of its 48 articles, 2,777 of its
/// 10,570 questions; the other 36 articles, 7,793 questions, are the train part).
pub fn in_eval_part(article: usize) -> bool {
    article % 4 == 3
}

/// The file a split reads and which part of it: the train file when the folder has one (dev then
/// the whole dev file), else the article split of the dev file.
pub fn locate(root: &Path, split: Split) -> Result<(PathBuf, Part)> {
    let dev = root.join(DEV_FILE);
    let train = root.join(TRAIN_FILE);
    if !dev.is_file() {
        bail!(
            "SQuAD: {} not found; point `data` at a folder holding {DEV_FILE} (and {TRAIN_FILE} to \
             train on the real train set), e.g. data = \"../shared/data/squad\"",
            dev.display()
        );
    }
    let has_train = train.is_file();
    Ok(match (split, has_train) {
        (Split::Train, true) => (train, Part::Whole),
        (Split::Train, false) => (dev, Part::Train),
        (Split::Dev, true) => (dev, Part::Whole),
        (Split::Dev, false) => (dev, Part::Eval),
        (s, _) => bail!("SQuAD has no {s} split (train and dev only)"),
    })
}

/// The questions of `split` under `root` ([`locate`]), with a note for the run's log when the
/// dev set is split by article.
pub fn load(root: &Path, split: Split) -> Result<(Vec<SquadExample>, Option<String>)> {
    let (path, part) = locate(root, split)?;
    Ok((select(read(&path)?, part), split_note(root, part)))
}

/// A run's training and dev questions, each file read once (the dev file alone holds both
/// parts), with the note of [`load`].
pub fn load_train_dev(
    root: &Path,
) -> Result<(Vec<SquadExample>, Vec<SquadExample>, Option<String>)> {
    let (train_path, train_part) = locate(root, Split::Train)?;
    let (dev_path, dev_part) = locate(root, Split::Dev)?;
    let train_all = read(&train_path)?;
    let dev_all = if dev_path == train_path {
        train_all.clone()
    } else {
        read(&dev_path)?
    };
    Ok((
        select(train_all, train_part),
        select(dev_all, dev_part),
        split_note(root, train_part),
    ))
}

fn split_note(root: &Path, part: Part) -> Option<String> {
    (part != Part::Whole).then(|| {
        format!(
            "SQuAD: no {TRAIN_FILE} in {}: training on the train part of {DEV_FILE} (articles i % 4 != 3) \
             and scoring on its evaluation part (i % 4 == 3)",
            root.display()
        )
    })
}

/// The questions of `part` among a file's.
fn select(all: Vec<SquadExample>, part: Part) -> Vec<SquadExample> {
    let keep = |e: &SquadExample| match part {
        Part::Whole => true,
        Part::Train => !in_eval_part(e.article),
        Part::Eval => in_eval_part(e.article),
    };
    all.into_iter().filter(keep).collect()
}

/// Read a SQuAD v1.1 JSON file (`data` → articles → `paragraphs` → `qas`). Every answer must
/// sit in its context at `answer_start`; a malformed file is an error that names the file and
/// the question.
pub fn read(path: &Path) -> Result<Vec<SquadExample>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes, path)
}

fn list<'v>(
    file: &dyn std::fmt::Display,
    o: &'v serde_json::Value,
    key: &str,
    at: &dyn Fn() -> String,
) -> Result<&'v Vec<serde_json::Value>> {
    o.get(key)
        .and_then(|x| x.as_array())
        .ok_or_else(|| anyhow!("{file}: {}: missing list `{key}`", at()))
}

/// [`read`] on bytes already in memory; `path` names the file in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Vec<SquadExample>> {
    let file = path.display();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        bail!("{file}: empty file; expected SQuAD v1.1 JSON ({{\"data\": [...]}})");
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "{file}: not UTF-8 (invalid byte at offset {}); SQuAD files are UTF-8 JSON",
            e.valid_up_to()
        )
    })?;
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| anyhow!("{file}:{}:{}: not valid JSON: {e}", e.line(), e.column()))?;
    let articles = v.get("data").and_then(|d| d.as_array()).ok_or_else(|| {
        anyhow!("{file}: no `data` list at the top level; is this a SQuAD v1.1 file?")
    })?;
    let str_field = |o: &serde_json::Value, key: &str, at: &dyn Fn() -> String| {
        o.get(key)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{file}: {}: missing text field `{key}`", at()))
    };
    let mut out = Vec::new();
    for (ai, article) in articles.iter().enumerate() {
        let at_article = || format!("article {ai}");
        let title = article
            .get("title")
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .to_string();
        for (pi, paragraph) in list(&file, article, "paragraphs", &at_article)?
            .iter()
            .enumerate()
        {
            let at_par = || format!("article {ai} paragraph {pi}");
            let context = str_field(paragraph, "context", &at_par)?;
            let chars: Vec<char> = context.chars().collect();
            for (qi, qa) in list(&file, paragraph, "qas", &at_par)?.iter().enumerate() {
                let id = qa
                    .get("id")
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        anyhow!("{file}: article {ai} paragraph {pi} question {qi}: missing `id`")
                    })?;
                let at_q = || format!("question {id}");
                let question = str_field(qa, "question", &at_q)?;
                let mut answers = Vec::new();
                for a in list(&file, qa, "answers", &at_q)? {
                    let text = str_field(a, "text", &at_q)?;
                    let start = a
                        .get("answer_start")
                        .and_then(|x| x.as_u64())
                        .ok_or_else(|| {
                            anyhow!(
                                "{file}: question {id}: an answer has no integer `answer_start`"
                            )
                        })? as usize;
                    if text.trim().is_empty() {
                        bail!(
                            "{file}: question {id}: an answer's text is empty; SQuAD v1.1 answers are spans of the context"
                        );
                    }
                    let n = text.chars().count();
                    let found: String = chars.iter().skip(start).take(n).collect();
                    if found != text {
                        bail!(
                            "{file}: question {id}: answer {text:?} is not at answer_start {start} of its \
                             context (found {found:?}); fix answer_start (a character index)"
                        );
                    }
                    answers.push(Answer { text, start });
                }
                if answers.is_empty() {
                    bail!(
                        "{file}: question {id}: no answers (SQuAD v1.1 questions have at least one; \
                         v2.0's unanswerable questions are not supported)"
                    );
                }
                out.push(SquadExample {
                    id,
                    article: ai,
                    title: title.clone(),
                    context: context.clone(),
                    question,
                    answers,
                });
            }
        }
    }
    if out.is_empty() {
        bail!("{file}: no questions found");
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// windows

/// One window of a question and (part of) its context: `[CLS] question [SEP] context part [SEP]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// index of the example in the list the windows were built from
    pub example: usize,
    pub enc: Encoded,
    /// character offsets into the context of the context tokens (None for the question and the
    /// special tokens): what post-processing may answer with
    pub offsets: Vec<Option<(usize, usize)>>,
    /// training target (token indices of the first gold answer's start and end), (0, 0) — the
    /// [CLS] token — when that answer is not wholly inside the window (run_qa's rule)
    pub target: (usize, usize),
}

/// run_qa's `prepare_train_features` target for one window: the first and last token of the
/// answer's characters `[start_char, end_char)`, or (0, 0) when the window does not hold them.
/// Its quirk is kept: when the answer ends a window's context with one token, the start scan runs
/// onto the final [SEP] (offsets (0, 0)), so the target is (SEP, SEP − 1).
pub fn window_target(
    offsets: &[(usize, usize)],
    sequence_ids: &[Option<usize>],
    start_char: usize,
    end_char: usize,
) -> (usize, usize) {
    let Some(first) = sequence_ids.iter().position(|s| *s == Some(1)) else {
        return (0, 0);
    };
    let last = sequence_ids
        .iter()
        .rposition(|s| *s == Some(1))
        .expect("a first implies a last");
    if !(offsets[first].0 <= start_char && offsets[last].1 >= end_char) {
        return (0, 0);
    }
    let mut s = first;
    while s < offsets.len() && offsets[s].0 <= start_char {
        s += 1;
    }
    let mut e = last;
    while offsets[e].1 >= end_char {
        e -= 1;
    }
    (s - 1, e + 1)
}

/// Every window of every example (questions left-stripped, as run_qa does), in example order.
pub fn windows(tok: &WindowTokenizer, examples: &[SquadExample]) -> Result<Vec<Window>> {
    let mut out = Vec::new();
    for (i, ex) in examples.iter().enumerate() {
        let first = &ex.answers[0];
        let (start_char, end_char) = (first.start, first.start + first.text.chars().count());
        for w in tok
            .encode_windows(ex.question.trim_start(), &ex.context)
            .with_context(|| format!("tokenising question {}", ex.id))?
        {
            let target = window_target(&w.offsets, &w.sequence_ids, start_char, end_char);
            let offsets = w
                .offsets
                .iter()
                .zip(&w.sequence_ids)
                .map(|(&o, s)| (*s == Some(1)).then_some(o))
                .collect();
            out.push(Window {
                example: i,
                enc: w.enc,
                offsets,
                target,
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// post-processing

/// A window with its start and end logits (one per token).
pub type WindowLogits<'a> = (&'a Window, &'a [f32], &'a [f32]);

/// The answer text for one example from the logits of its windows, as run_qa's
/// `postprocess_qa_predictions` (SQuAD v1.1: no null answer): per window the `n_best` highest
/// start and end logits, pairs inside the context with `start <= end` and at most
/// `max_answer_tokens` tokens, scored `start_logit + end_logit`; the best over all windows,
/// its text cut from the context by character offsets ("empty" when no pair qualifies).
pub fn best_answer(
    context: &str,
    windows: &[WindowLogits],
    n_best: usize,
    max_answer_tokens: usize,
) -> String {
    let mut best: Option<(f32, usize, usize)> = None;
    for (w, start_logits, end_logits) in windows {
        let len = w
            .offsets
            .len()
            .min(start_logits.len())
            .min(end_logits.len());
        let starts = top_indices(&start_logits[..len], n_best);
        let ends = top_indices(&end_logits[..len], n_best);
        for &s in &starts {
            for &e in &ends {
                let (Some(so), Some(eo)) = (w.offsets[s], w.offsets[e]) else {
                    continue;
                };
                if e < s || e - s + 1 > max_answer_tokens {
                    continue;
                }
                let score = start_logits[s] + end_logits[e];
                // strictly greater: the first candidate of a tie wins, as Python's stable sort
                if best.is_none_or(|(b, _, _)| score > b) {
                    best = Some((score, so.0, eo.1));
                }
            }
        }
    }
    match best {
        Some((_, a, b)) => context.chars().skip(a).take(b.saturating_sub(a)).collect(),
        None => "empty".to_string(),
    }
}

/// Indices of the `n` largest values, largest first (numpy's `argsort(x)[-1:-n-1:-1]`).
fn top_indices(x: &[f32], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[b].total_cmp(&x[a]));
    idx.truncate(n);
    idx
}

// ---------------------------------------------------------------------------------------------
// the official v1.1 evaluation

/// Python's `str.isspace()` (what `str.split()` splits on): Unicode White_Space plus the
/// information separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// A character of Python's `\w` (Unicode): alphanumeric or `_`.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `normalize_answer` of the official script: lower case, drop ASCII punctuation
/// (`string.punctuation`), replace the words a/an/the by a space (`\b(a|an|the)\b`), collapse
/// whitespace.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punc: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    // `\b(a|an|the)\b`: a maximal run of word characters equal to an article
    let mut no_articles = String::with_capacity(no_punc.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if matches!(word.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in no_punc.chars() {
        if is_word(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut no_articles);
            no_articles.push(c);
        }
    }
    flush(&mut word, &mut no_articles);
    no_articles
        .split(is_py_space)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `exact_match_score`: the normalised strings are equal.
pub fn exact_match(prediction: &str, gold: &str) -> f64 {
    f64::from(u8::from(
        normalize_answer(prediction) == normalize_answer(gold),
    ))
}

/// `f1_score`: F1 of the normalised tokens (multiset overlap); 0 when they share none.
pub fn f1(prediction: &str, gold: &str) -> f64 {
    let p = normalize_answer(prediction);
    let g = normalize_answer(gold);
    let p: Vec<&str> = p.split(' ').filter(|t| !t.is_empty()).collect();
    let g: Vec<&str> = g.split(' ').filter(|t| !t.is_empty()).collect();
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for t in &g {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &p {
        if let Some(c) = counts.get_mut(t)
            && *c > 0
        {
            *c -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / p.len() as f64;
    let recall = same as f64 / g.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// `metric_max_over_ground_truths`.
pub fn max_over_golds(metric: fn(&str, &str) -> f64, prediction: &str, golds: &[Answer]) -> f64 {
    golds
        .iter()
        .map(|g| metric(prediction, &g.text))
        .fold(0.0, f64::max)
}

/// The official `evaluate(dataset, predictions)`: mean exact match and F1 over every question
/// (a question without a prediction scores 0), as fractions (the script prints them ×100).
pub fn evaluate(examples: &[SquadExample], predictions: &HashMap<String, String>) -> (f64, f64) {
    let (mut em, mut f) = (0.0, 0.0);
    for ex in examples {
        if let Some(p) = predictions.get(&ex.id) {
            em += max_over_golds(exact_match, p, &ex.answers);
            f += max_over_golds(f1, p, &ex.answers);
        }
    }
    let n = examples.len().max(1) as f64;
    (em / n, f / n)
}
