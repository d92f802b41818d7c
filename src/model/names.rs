//! The one table between Hugging Face's tensor names and ours, and what a model family provides.
//!
//! Every HF tensor of an encoder has one row here: its name, its shape from the config, the
//! paper's bias kind (b_q … b_LN2) where it is a layer bias, and the group `repro inspect`
//! counts it in. Loading (the key remapping), the bias kinds, the gradient masks' layout and
//! `repro inspect` all read this table. burn paths differ from HF names in three mechanical
//! ways, all written here once: `attention.self` → `attention.self_attn` (`self` is a Rust
//! keyword), `LayerNorm` → `layer_norm`, and LayerNorm `weight`/`bias` → `gamma`/`beta`.
//!
//! A new family whose layers have BERT's structure (RoBERTa) is a new [`Family`] value and a line
//! in [`FAMILIES`].

use anyhow::{Result, bail};

use super::{BertConfig, BiasKind};

/// One tensor as HF names it.
#[derive(Debug)]
pub struct TensorName {
    /// HF name; for layer tensors the part after `encoder.layer.{ℓ}.`
    pub hf: &'static str,
    /// the paper's notation, for the layer biases
    pub kind: Option<BiasKind>,
    /// the parameter group `repro inspect` counts it in
    pub group: &'static str,
    /// HF shape (Linear weights `[out, in]`)
    pub shape: fn(&BertConfig) -> Vec<usize>,
}

const fn t(
    hf: &'static str,
    kind: Option<BiasKind>,
    group: &'static str,
    shape: fn(&BertConfig) -> Vec<usize>,
) -> TensorName {
    TensorName {
        hf,
        kind,
        group,
        shape,
    }
}

fn h(c: &BertConfig) -> Vec<usize> {
    vec![c.hidden_size]
}
fn hh(c: &BertConfig) -> Vec<usize> {
    vec![c.hidden_size, c.hidden_size]
}
fn i(c: &BertConfig) -> Vec<usize> {
    vec![c.intermediate_size]
}

const EMB: &str = "embeddings";
const EMB_LN: &str = "embeddings LayerNorm";
const QKV: &str = "attention q/k/v";
const M1: &str = "attention output (m1)";
const LN1: &str = "attention LayerNorm (LN1)";
const M2: &str = "MLP intermediate (m2)";
const M3: &str = "MLP output (m3)";
const LN2: &str = "output LayerNorm (LN2)";
const POOL: &str = "pooler";

/// BERT's embeddings.
pub const BERT_EMBEDDINGS: &[TensorName] = &[
    t("embeddings.word_embeddings.weight", None, EMB, |c| {
        vec![c.vocab_size, c.hidden_size]
    }),
    t("embeddings.position_embeddings.weight", None, EMB, |c| {
        vec![c.max_position_embeddings, c.hidden_size]
    }),
    t("embeddings.token_type_embeddings.weight", None, EMB, |c| {
        vec![c.type_vocab_size, c.hidden_size]
    }),
    t("embeddings.LayerNorm.weight", None, EMB_LN, h),
    t("embeddings.LayerNorm.bias", None, EMB_LN, h),
];

/// One BERT layer, under `encoder.layer.{ℓ}.`, with the paper's bias kinds.
pub const BERT_LAYER: &[TensorName] = &[
    t("attention.self.query.weight", None, QKV, hh),
    t("attention.self.query.bias", Some(BiasKind::b_q), QKV, h),
    t("attention.self.key.weight", None, QKV, hh),
    t("attention.self.key.bias", Some(BiasKind::b_k), QKV, h),
    t("attention.self.value.weight", None, QKV, hh),
    t("attention.self.value.bias", Some(BiasKind::b_v), QKV, h),
    t("attention.output.dense.weight", None, M1, hh),
    t("attention.output.dense.bias", Some(BiasKind::b_m1), M1, h),
    t("attention.output.LayerNorm.weight", None, LN1, h),
    t(
        "attention.output.LayerNorm.bias",
        Some(BiasKind::b_LN1),
        LN1,
        h,
    ),
    t("intermediate.dense.weight", None, M2, |c| {
        vec![c.intermediate_size, c.hidden_size]
    }),
    t("intermediate.dense.bias", Some(BiasKind::b_m2), M2, i),
    t("output.dense.weight", None, M3, |c| {
        vec![c.hidden_size, c.intermediate_size]
    }),
    t("output.dense.bias", Some(BiasKind::b_m3), M3, h),
    t("output.LayerNorm.weight", None, LN2, h),
    t("output.LayerNorm.bias", Some(BiasKind::b_LN2), LN2, h),
];

/// BERT's pooler (dense + tanh on [CLS]).
pub const BERT_POOLER: &[TensorName] = &[
    t("pooler.dense.weight", None, POOL, hh),
    t("pooler.dense.bias", None, POOL, h),
];

/// Path segments burn spells differently from HF: (burn, HF).
pub const SEGMENT_RENAMES: [(&str, &str); 2] = [("self_attn", "self"), ("layer_norm", "LayerNorm")];

/// LayerNorm parameters: (burn, HF).
pub const LAYER_NORM_PARAMS: [(&str, &str); 2] = [("gamma", "weight"), ("beta", "bias")];

/// How a family numbers positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Positions {
    /// 0, 1, 2, … (BERT)
    Absolute,
    /// after the padding index, skipping padding: HF's `create_position_ids_from_input_ids`
    /// (RoBERTa: the first token is at padding_idx + 1)
    AfterPadding,
}

/// The sequence-classification head a family's HF task model has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadLayout {
    /// BertForSequenceClassification: pooler (dense + tanh on [CLS]) → dropout → classifier
    Pooler,
    /// RobertaForSequenceClassification: <s> → dropout → classifier.dense → tanh → dropout →
    /// classifier.out_proj (no pooler)
    Dense,
}

/// What a model family provides: the names its checkpoints use, the tensor table, the config
/// `model_type`s it reads, its position numbering and task head, and the checkpoint keys it knows
/// but does not load. Tokenizers come from the model folder (`tokenizer.json`), whatever the
/// family; [`crate::tokenize`] builds one from the older vocabulary files when it is missing.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    /// how the paper writes it
    pub label: &'static str,
    /// the paper's rand_uniform budget for this family's base model, where it states one
    pub paper_rand_uniform_budget: Option<(&'static str, usize)>,
    /// config.json `model_type` values of this family
    pub model_types: &'static [&'static str],
    /// the encoder's prefix in HF task checkpoints (`bert.`); our task models use it too
    pub prefix: &'static str,
    pub embeddings: &'static [TensorName],
    pub layer: &'static [TensorName],
    pub pooler: &'static [TensorName],
    /// checkpoint keys of heads and buffers that loading skips (prefixes and suffixes)
    pub ignored_prefixes: &'static [&'static str],
    pub ignored_suffixes: &'static [&'static str],
    pub positions: Positions,
    pub head: HeadLayout,
    /// burn path of a head tensor → its HF name (first path segment), in the family's task model
    pub head_names: &'static [(&'static str, &'static str)],
}

/// BERT (HF `BertModel`).
pub static BERT: Family = Family {
    name: "bert",
    label: "BERT",
    paper_rand_uniform_budget: None,
    model_types: &["bert"],
    prefix: "bert.",
    embeddings: BERT_EMBEDDINGS,
    layer: BERT_LAYER,
    pooler: BERT_POOLER,
    ignored_prefixes: &["cls.", "classifier.", "qa_outputs."],
    ignored_suffixes: &["position_ids"],
    positions: Positions::Absolute,
    head: HeadLayout::Pooler,
    head_names: &[("classifier", "classifier")],
};

/// RoBERTa (HF `RobertaModel`): BERT's layers, so the same bias kinds; no token types (a type
/// vocabulary of 1), positions after the padding index, and a dense + tanh head instead of the
/// pooler (`RobertaForSequenceClassification` has none; a pretraining checkpoint's pooler and LM
/// head are skipped).
pub static ROBERTA: Family = Family {
    name: "roberta",
    label: "RoBERTa",
    paper_rand_uniform_budget: Some(("roberta-base", 105_000)),
    model_types: &["roberta"],
    prefix: "roberta.",
    embeddings: BERT_EMBEDDINGS,
    layer: BERT_LAYER,
    pooler: &[],
    ignored_prefixes: &["lm_head.", "classifier.", "pooler.", "qa_outputs."],
    ignored_suffixes: &["position_ids"],
    positions: Positions::AfterPadding,
    head: HeadLayout::Dense,
    head_names: &[
        ("dense", "classifier.dense"),
        ("classifier", "classifier.out_proj"),
    ],
};

/// Every family the harness loads.
pub static FAMILIES: &[&Family] = &[&BERT, &ROBERTA];

/// The family of a config.json's `model_type` (none given: BERT).
pub fn family_for(model_type: Option<&str>) -> Result<&'static Family> {
    let Some(t) = model_type else {
        return Ok(&BERT);
    };
    if let Some(f) = FAMILIES.iter().find(|f| f.model_types.contains(&t)) {
        return Ok(f);
    }
    let known: Vec<&str> = FAMILIES
        .iter()
        .flat_map(|f| f.model_types.iter().copied())
        .collect();
    bail!(
        "model_type `{t}` is not supported (only `{}`)",
        known.join("`, `")
    )
}

impl Family {
    /// Every encoder tensor of a model of shape `cfg`: (HF name, HF shape), in checkpoint order.
    pub fn encoder_tensors(&self, cfg: &BertConfig) -> Vec<(String, Vec<usize>)> {
        let mut v: Vec<(String, Vec<usize>)> = self
            .embeddings
            .iter()
            .map(|t| (t.hf.to_string(), (t.shape)(cfg)))
            .collect();
        for l in 0..cfg.num_hidden_layers {
            v.extend(
                self.layer
                    .iter()
                    .map(|t| (format!("encoder.layer.{l}.{}", t.hf), (t.shape)(cfg))),
            );
        }
        v.extend(
            self.pooler
                .iter()
                .map(|t| (t.hf.to_string(), (t.shape)(cfg))),
        );
        v
    }

    /// The table row of an encoder tensor's HF name (without the prefix), with its layer.
    pub fn row(&self, hf: &str) -> Option<(Option<usize>, &'static TensorName)> {
        if let Some(rest) = hf.strip_prefix("encoder.layer.") {
            let (layer, suffix) = rest.split_once('.')?;
            let layer = layer.parse().ok()?;
            return self
                .layer
                .iter()
                .find(|t| t.hf == suffix)
                .map(|t| (Some(layer), t));
        }
        self.embeddings
            .iter()
            .chain(self.pooler)
            .find(|t| t.hf == hf)
            .map(|t| (None, t))
    }

    /// The `repro inspect` group of an encoder tensor.
    pub fn group_of(&self, hf: &str) -> &'static str {
        self.row(hf).map_or("other", |(_, t)| t.group)
    }

    /// The HF suffix (under `encoder.layer.{ℓ}.`) of a bias kind.
    pub fn bias_suffix(&self, kind: BiasKind) -> &'static str {
        self.layer
            .iter()
            .find(|t| t.kind == Some(kind))
            .map_or("", |t| t.hf)
    }

    /// The HF name, in this family's task model, of a burn parameter path of a classifier (its
    /// encoder under `bert.`, its head at the top level).
    pub fn hf_task_name(&self, burn_path: &str) -> String {
        if let Some(enc) = burn_path.strip_prefix("bert.") {
            return format!("{}{}", self.prefix, hf_name(enc));
        }
        let (first, rest) = burn_path.split_once('.').unwrap_or((burn_path, ""));
        let first = self
            .head_names
            .iter()
            .find(|(b, _)| *b == first)
            .map_or(first, |(_, h)| *h);
        if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        }
    }

    /// The family whose prefix a checkpoint key carries, if it is another family's.
    pub fn foreign_prefix(&self, key: &str) -> Option<&'static Family> {
        FAMILIES
            .iter()
            .copied()
            .find(|f| f.prefix != self.prefix && key.starts_with(f.prefix))
    }

    /// Checkpoint keys loading skips without complaint (other heads, buffers).
    pub fn is_ignored(&self, key: &str) -> bool {
        self.ignored_prefixes.iter().any(|p| key.starts_with(p))
            || self.ignored_suffixes.iter().any(|s| key.ends_with(s))
    }

    /// Regex key remappings from a checkpoint's names to burn paths, applied in order: drop the
    /// family prefix, old `gamma`/`beta` LayerNorm names to `weight`/`bias` (burn's adapter then
    /// maps those to `gamma`/`beta`), and the renamed path segments.
    pub fn load_remap(&self) -> Vec<(String, String)> {
        let mut v = vec![(format!("^{}", regex_escape(self.prefix)), String::new())];
        for (burn, hf) in LAYER_NORM_PARAMS {
            v.push((format!(r"LayerNorm\.{burn}$"), format!("LayerNorm.{hf}")));
        }
        for (burn, hf) in SEGMENT_RENAMES {
            v.push((format!(r"\.{hf}\."), format!(".{burn}.")));
        }
        v
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = ".^$*+?()[]{}|\\".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// The HF parameter name of a burn parameter path (of an encoder, or of a task model whose
/// encoder lives under the family prefix).
pub fn hf_name(burn_path: &str) -> String {
    let mut parts: Vec<&str> = burn_path.split('.').collect();
    let is_ln = parts.len() >= 2 && parts[parts.len() - 2] == "layer_norm";
    for p in parts.iter_mut() {
        if let Some((_, hf)) = SEGMENT_RENAMES.iter().find(|(b, _)| b == p) {
            *p = hf;
        } else if is_ln && let Some((_, hf)) = LAYER_NORM_PARAMS.iter().find(|(b, _)| b == p) {
            *p = hf;
        }
    }
    parts.join(".")
}

/// Whether burn stores this tensor transposed relative to HF: Linear weights (every 2-D tensor
/// but the embeddings) are `[in, out]` in burn and `[out, in]` in PyTorch.
pub fn stored_transposed(hf_name: &str, rank: usize) -> bool {
    rank == 2 && !hf_name.contains("embeddings")
}
