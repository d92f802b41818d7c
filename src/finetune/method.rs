//! Fine-tuning methods of the paper: which tensors of a `BertForSequenceClassification` train.
//!
//! Names follow the paper (`full_ft`, `bitfit`, bias subsets in b_q…b_LN2 notation, `frozen`,
//! `rand_uniform`, `rand_row_col`). Selection works on HF parameter names (without the `bert.`
//! prefix), so a reader can check every rule against the reference code.

use std::fmt;

use anyhow::{Result, bail};
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;

use super::masks::{Mask, build_masks};
use crate::model::{BertClassifier, BertConfig, BiasKind, HeadPooling, ParamInfo, hf_name};

/// How the reference code's `--bias_terms` keys are matched: it tests `key in name` by substring,
/// so `output` (b_m3) also catches b_m1 and `output_layernorm` (b_LN2) also catches b_LN1.
pub const REFERENCE_BIAS_KEYS: [(&str, &str); 8] = [
    ("intermediate", "intermediate.dense.bias"),
    ("key", "attention.self.key.bias"),
    ("query", "attention.self.query.bias"),
    ("value", "attention.self.value.bias"),
    ("output", "output.dense.bias"),
    ("output_layernorm", "output.LayerNorm.bias"),
    ("attention_layernorm", "attention.output.LayerNorm.bias"),
    ("all", "bias"),
];

/// A method the paper names: its spelling in grids and on the command line, the label tables and
/// figures print (the paper's notation), and its colour in the figures.
pub struct PaperMethod {
    pub spelling: &'static str,
    pub label: &'static str,
    pub colour: (u8, u8, u8),
}

/// The paper's methods in its order (Table 3: Full-FT, BitFit, the bias subsets, Frozen, the
/// random baselines): the one list `repro train --help`, `repro inspect`, the grid errors and
/// the report's rows, legends and colours come from. A new named method is a row here (and, if
/// it selects tensors a new way, a variant of [`Method`]).
pub const PAPER_METHODS: &[PaperMethod] = &[
    PaperMethod {
        spelling: "full_ft",
        label: "Full-FT",
        colour: (214, 39, 40),
    },
    PaperMethod {
        spelling: "bitfit",
        label: "BitFit",
        colour: (31, 119, 180),
    },
    PaperMethod {
        spelling: "b_q+b_m2",
        label: "b_m2+b_q",
        colour: (44, 160, 44),
    },
    PaperMethod {
        spelling: "b_m2",
        label: "b_m2",
        colour: (255, 127, 14),
    },
    PaperMethod {
        spelling: "b_q",
        label: "b_q",
        colour: (148, 103, 189),
    },
    PaperMethod {
        spelling: "frozen",
        label: "Frozen",
        colour: (127, 127, 127),
    },
    PaperMethod {
        spelling: "rand_uniform",
        label: "rand uniform",
        colour: (140, 86, 75),
    },
    PaperMethod {
        spelling: "rand_row_col",
        label: "rand row/col",
        colour: (227, 119, 194),
    },
];

/// The parameter-efficient baselines the paper only quoted (Table 1) and the one it did not,
/// at their usual settings: listed by `repro inspect` after the paper's methods.
pub const BASELINE_METHODS: &[&str] = &["lora", "lora+bitfit", "adapters:64", "diff_pruning"];

/// How tables and legends name the baselines at their usual settings (full spelling → name);
/// other settings go by their spelling.
pub const BASELINE_LABELS: &[(&str, &str)] = &[
    ("lora:r=8,alpha=16,targets=q+v", "LoRA"),
    ("lora+bitfit:r=8,alpha=16,targets=q+v", "LoRA+BitFit"),
    ("adapters:64", "Adapters"),
    (
        "diff_pruning:share=0.5%,finetune=3,finetune_lr=5e-5",
        "Diff-Prune",
    ),
];

/// The paper method spelled `spelling`, if it is one.
pub fn paper_method(spelling: &str) -> Option<&'static PaperMethod> {
    PAPER_METHODS.iter().find(|m| m.spelling == spelling)
}

/// What the `method` setting takes (grid errors, `repro train --help`).
pub const METHODS_DOC: &str = "full_ft, bitfit, b_q+b_m2, b_m2, b_q, frozen, rand_uniform, rand_row_col (the paper's); \
     any +-joined bias kinds (b_q b_k b_v b_m1 b_LN1 b_m2 b_m3 b_LN2); rand_uniform:N (budget); \
     ref:query,intermediate (the reference code's --bias_terms keys); \
     lora[:r=8,alpha=16,targets=q+v], lora+bitfit[:…] (LoRA, biases too); adapters[:64] (Houlsby); \
     diff_pruning[:share=0.5%,finetune=3,finetune_lr=5e-5] (Guo et al.)";

/// A fine-tuning method.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// every parameter
    FullFt,
    /// every `*bias*` parameter (all layer biases, embeddings LayerNorm bias, pooler bias) + classifier
    Bitfit,
    /// the chosen bias kinds in every layer + pooler bias + classifier (exact paper notation)
    BiasTerms(Vec<BiasKind>),
    /// the reference code's substring selection with its `--bias_terms` keys + pooler bias + classifier
    ReferenceBiasTerms(Vec<String>),
    /// classifier only
    Frozen,
    /// `budget` random scalars over every tensor of the BERT model (None: its all-bias count) + classifier
    RandUniform { budget: Option<usize> },
    /// random rows/columns of every encoder weight matrix, LayerNorm gains + classifier
    RandRowCol,
    /// LoRA (Hu et al. 2021): rank-`r` updates scaled by alpha/r on the chosen attention
    /// projections + classifier; with `bitfit`, every bias trains too (`lora+bitfit`)
    Lora {
        r: usize,
        alpha: usize,
        targets: Vec<LoraTarget>,
        bitfit: bool,
    },
    /// Houlsby adapters of `size` bottleneck units after the attention output and the
    /// feed-forward output of every layer + the layers' LayerNorms + classifier
    Adapters { size: usize },
    /// Diff-Pruning (Guo et al. 2021, [`super::diff_pruning`]): a gated diff on every encoder
    /// tensor, projected to `share_ppm` parts per million of the parameters, then `finetune`
    /// epochs at `finetune_lr` with the mask fixed + classifier
    DiffPruning {
        share_ppm: u32,
        finetune: usize,
        /// the fixed-mask phase's learning rate, as written (e.g. `5e-5`)
        finetune_lr: String,
    },
}

/// `diff_pruning[:share=0.5%,finetune=3,finetune_lr=5e-5]` (the reference's defaults)
fn parse_diff_pruning(s: &str) -> Result<Method> {
    let opts = s.strip_prefix("diff_pruning").unwrap_or("");
    let opts = opts.strip_prefix(':').unwrap_or(opts);
    let (mut share_ppm, mut finetune, mut finetune_lr) = (5000u32, 3usize, "5e-5".to_string());
    for kv in opts.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            anyhow::anyhow!(
                "method `{s}`: `{kv}` is not key=value (e.g. diff_pruning:share=0.5%,finetune=3)"
            )
        })?;
        match k {
            "share" => {
                let pct: f64 = v
                    .strip_suffix('%')
                    .and_then(|p| p.parse().ok())
                    .filter(|p: &f64| *p > 0.0 && *p <= 100.0)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "method `{s}`: share `{v}` is not a percentage in (0, 100] (e.g. share=0.5%)"
                        )
                    })?;
                share_ppm = (pct * 1e4).round() as u32;
            }
            "finetune" => {
                finetune = v.parse().ok().filter(|n: &usize| *n > 0).ok_or_else(|| {
                    anyhow::anyhow!(
                        "method `{s}`: finetune = `{v}` is not a positive number of epochs (the fixed-mask phase is the one scored)"
                    )
                })?
            }
            "finetune_lr" => {
                v.parse::<f64>().ok().filter(|x| *x > 0.0).ok_or_else(|| {
                    anyhow::anyhow!("method `{s}`: finetune_lr = `{v}` is not a positive number")
                })?;
                finetune_lr = v.to_string();
            }
            _ => bail!(
                "method `{s}`: unknown Diff-Pruning option `{k}`; valid: share, finetune, finetune_lr"
            ),
        }
    }
    Ok(Method::DiffPruning {
        share_ppm,
        finetune,
        finetune_lr,
    })
}

/// The attention projections LoRA can update.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    Q,
    K,
    V,
}

impl LoraTarget {
    fn name(self) -> &'static str {
        match self {
            LoraTarget::Q => "q",
            LoraTarget::K => "k",
            LoraTarget::V => "v",
        }
    }
}

/// `lora[+bitfit][:r=8,alpha=16,targets=q+v]`
fn parse_lora(s: &str) -> Result<Method> {
    let (head, opts) = s.split_once(':').unwrap_or((s, ""));
    let bitfit = match head {
        "lora" => false,
        "lora+bitfit" => true,
        _ => bail!("method `{s}`: expected lora or lora+bitfit"),
    };
    let (mut r, mut alpha, mut targets) = (8, 16, vec![LoraTarget::Q, LoraTarget::V]);
    for kv in opts.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            anyhow::anyhow!(
                "method `{s}`: `{kv}` is not key=value (e.g. lora:r=8,alpha=16,targets=q+v)"
            )
        })?;
        let int = |v: &str| {
            v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                anyhow::anyhow!("method `{s}`: {k} = `{v}` is not a positive integer")
            })
        };
        match k {
            "r" => r = int(v)?,
            "alpha" => alpha = int(v)?,
            "targets" => {
                targets = v
                    .split('+')
                    .map(|t| match t {
                        "q" => Ok(LoraTarget::Q),
                        "k" => Ok(LoraTarget::K),
                        "v" => Ok(LoraTarget::V),
                        _ => Err(anyhow::anyhow!(
                            "method `{s}`: LoRA target `{t}`; valid: q, k, v (joined by +)"
                        )),
                    })
                    .collect::<Result<_>>()?;
                targets.sort();
                targets.dedup();
            }
            _ => bail!("method `{s}`: unknown LoRA option `{k}`; valid: r, alpha, targets"),
        }
    }
    Ok(Method::Lora {
        r,
        alpha,
        targets,
        bitfit,
    })
}

impl Method {
    /// Parse the CLI/grid spelling: `full_ft`, `bitfit`, `frozen`, `rand_uniform`,
    /// `rand_uniform:100000`, `rand_row_col`, `b_q+b_m2` (any `+`-joined bias kinds) or
    /// `ref:query,intermediate` (reference substring keys).
    pub fn parse(s: &str) -> Result<Method> {
        Ok(match s {
            "full_ft" => Method::FullFt,
            "bitfit" => Method::Bitfit,
            "frozen" => Method::Frozen,
            "rand_uniform" => Method::RandUniform { budget: None },
            "rand_row_col" => Method::RandRowCol,
            "adapters" => Method::Adapters { size: 64 },
            _ if s.starts_with("adapters:") => {
                let n = &s["adapters:".len()..];
                let size = n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    anyhow::anyhow!("method `{s}`: bottleneck size `{n}` is not a positive integer (e.g. adapters:64)")
                })?;
                Method::Adapters { size }
            }
            _ if s == "lora" || s.starts_with("lora:") || s.starts_with("lora+bitfit") => {
                parse_lora(s)?
            }
            _ if s == "diff_pruning" || s.starts_with("diff_pruning:") => parse_diff_pruning(s)?,
            _ if s.starts_with("rand_uniform:") => {
                let n = &s["rand_uniform:".len()..];
                let n: usize = n.replace('_', "").parse().map_err(|_| {
                    anyhow::anyhow!("method `{s}`: budget `{n}` is not a whole number (e.g. rand_uniform:100000)")
                })?;
                Method::RandUniform { budget: Some(n) }
            }
            _ if s.starts_with("ref:") => {
                let keys: Vec<String> = s[4..].split(',').map(|k| k.trim().to_string()).collect();
                for k in &keys {
                    if !REFERENCE_BIAS_KEYS.iter().any(|(n, _)| n == k) {
                        let valid: Vec<_> = REFERENCE_BIAS_KEYS.iter().map(|(n, _)| *n).collect();
                        bail!(
                            "method `{s}`: unknown reference bias key `{k}`; valid: {}",
                            valid.join(", ")
                        );
                    }
                }
                let mut keys = keys;
                keys.sort();
                keys.dedup();
                Method::ReferenceBiasTerms(keys)
            }
            _ if s.starts_with("b_") => {
                let mut kinds = Vec::new();
                for part in s.split('+') {
                    let k: BiasKind = part.trim().parse()?;
                    if !kinds.contains(&k) {
                        kinds.push(k);
                    }
                }
                kinds.sort();
                Method::BiasTerms(kinds)
            }
            _ => bail!("unknown method `{s}`; valid: {METHODS_DOC}"),
        })
    }

    /// Whether the encoder parameter `hf` (HF name without `bert.`) trains under this method.
    /// The classifier head always trains. Masked methods (rand_*) train the whole tensor here and
    /// restrict it with a gradient mask.
    pub fn trains(&self, hf: &str) -> bool {
        match self {
            Method::FullFt => true,
            Method::Bitfit => hf.contains("bias"),
            Method::Frozen => false,
            Method::BiasTerms(kinds) => {
                hf == "pooler.dense.bias"
                    || BiasKind::parse_hf(hf).is_some_and(|(_, k)| kinds.contains(&k))
            }
            Method::ReferenceBiasTerms(keys) => {
                hf == "pooler.dense.bias"
                    || keys.iter().any(|k| {
                        let pat = REFERENCE_BIAS_KEYS
                            .iter()
                            .find(|(n, _)| n == k)
                            .map(|(_, p)| *p)
                            .unwrap_or("");
                        hf.contains(pat)
                    })
            }
            // the reference spreads the budget over all of `model.bert` (embeddings, encoder, pooler)
            Method::RandUniform { .. } => true,
            Method::Lora { bitfit, .. } => {
                hf.contains(".lora_") || (*bitfit && hf.contains("bias"))
            }
            Method::Adapters { .. } => {
                hf.contains(".adapter.") || (hf.starts_with("encoder.") && hf.contains("LayerNorm"))
            }
            // the diff and its gates train; the pretrained tensors and the fixed mask do not
            Method::DiffPruning { .. } => hf.contains(".diff_pruning.") && !hf.ends_with(".mask"),
            Method::RandRowCol => {
                // encoder/pooler LayerNorm gains (unmasked) and weight matrices (masked)
                hf.ends_with(".weight") && (hf.starts_with("encoder.") || hf.starts_with("pooler."))
            }
        }
    }

    pub fn is_masked(&self) -> bool {
        matches!(self, Method::RandUniform { .. } | Method::RandRowCol)
    }

    /// Whether a training step takes the gradient of every encoder weight matrix: Full-FT, the
    /// masked random subsets and Diff-Pruning's gated diffs cost about a Full-FT step; the other
    /// methods skip the frozen weights' gradients (≈0.65× a Full-FT step on MiniLM,
    /// BENCHMARKS.md; Frozen, with no backward pass through the encoder, costs less still but is
    /// counted with them). The run-time estimate compares runs within one of these two classes.
    pub fn takes_weight_gradients(&self) -> bool {
        self.is_masked() || matches!(self, Method::FullFt | Method::DiffPruning { .. })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::FullFt => f.write_str("full_ft"),
            Method::Bitfit => f.write_str("bitfit"),
            Method::Frozen => f.write_str("frozen"),
            Method::RandUniform { budget: None } => f.write_str("rand_uniform"),
            Method::RandUniform { budget: Some(n) } => write!(f, "rand_uniform:{n}"),
            Method::RandRowCol => f.write_str("rand_row_col"),
            Method::BiasTerms(k) => {
                let names: Vec<_> = k.iter().map(|k| k.name()).collect();
                f.write_str(&names.join("+"))
            }
            Method::ReferenceBiasTerms(k) => write!(f, "ref:{}", k.join(",")),
            Method::Lora {
                r,
                alpha,
                targets,
                bitfit,
            } => {
                let t: Vec<&str> = targets.iter().map(|t| t.name()).collect();
                let head = if *bitfit { "lora+bitfit" } else { "lora" };
                write!(f, "{head}:r={r},alpha={alpha},targets={}", t.join("+"))
            }
            Method::Adapters { size } => write!(f, "adapters:{size}"),
            Method::DiffPruning {
                share_ppm,
                finetune,
                finetune_lr,
            } => write!(
                f,
                "diff_pruning:share={}%,finetune={finetune},finetune_lr={finetune_lr}",
                f64::from(*share_ppm) / 1e4
            ),
        }
    }
}

/// Parameter shapes of a BERT encoder of a given shape, by HF name, from the config alone (the
/// name table, [`crate::model::names`]): the numbers `repro inspect` prints.
pub fn encoder_param_shapes(cfg: &BertConfig) -> Vec<(String, Vec<usize>)> {
    cfg.family().encoder_tensors(cfg)
}

// ---------------------------------------------------------------------------------------------
// applying a method to a model

struct SetTrainable<'a> {
    method: &'a Method,
    /// the pooler feeds nothing when the head reads [CLS] or the mean: never train it then
    pooler_used: bool,
    path: Vec<String>,
}

impl ModuleMapper for SetTrainable<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        let train = match path.strip_prefix("bert.") {
            Some(enc) if enc.starts_with("pooler.") && !self.pooler_used => false,
            Some(enc) => self.method.trains(&hf_name(enc)),
            None => true, // the task head
        };
        p.set_require_grad(train)
    }
}

/// Mark exactly the tensors `method` trains as requiring gradients (all others: no gradient is
/// computed for them at all).
pub fn apply_method(model: BertClassifier, method: &Method) -> BertClassifier {
    let pooler_used = model.pooling == HeadPooling::Pooler;
    model.map(&mut SetTrainable {
        method,
        pooler_used,
        path: Vec::new(),
    })
}

/// Insert the extra modules a method trains (LoRA's low-rank updates, Houlsby's adapters), drawn
/// from the run seed; other methods leave the model as it is.
pub fn add_modules(mut model: BertClassifier, method: &Method, seed: u64) -> BertClassifier {
    use crate::model::peft::{Adapter, Lora, rng};
    let dev = model.classifier.weight.val().device();
    let mut rng = rng(seed);
    match method {
        Method::Lora {
            r, alpha, targets, ..
        } => {
            for layer in &mut model.bert.encoder.layer {
                let sa = &mut layer.attention.self_attn;
                let [inp, out] = sa.query.weight.dims();
                for t in targets {
                    let l = Some(Lora::init(inp, out, *r, *alpha as f64, &mut rng, &dev));
                    match t {
                        LoraTarget::Q => sa.lora_query = l,
                        LoraTarget::K => sa.lora_key = l,
                        LoraTarget::V => sa.lora_value = l,
                    }
                }
            }
        }
        Method::Adapters { size } => {
            for layer in &mut model.bert.encoder.layer {
                let h = layer.output.dense.weight.dims()[1];
                layer.attention.output.adapter = Some(Adapter::init(h, *size, &mut rng, &dev));
                layer.output.adapter = Some(Adapter::init(h, *size, &mut rng, &dev));
            }
        }
        Method::DiffPruning { .. } => {
            return model.apply_reparameterization(super::diff_pruning::Search);
        }
        _ => {}
    }
    model
}

/// The gradient masks of `method` over a classifier's parameters (after [`apply_method`]),
/// drawn from the run seed: rand_uniform's budget defaults to the encoder's all-bias count.
/// Empty for methods without masks.
pub fn masks(method: &Method, params: &[ParamInfo], seed: u64) -> Vec<Mask> {
    let all_bias: usize = params
        .iter()
        .filter(|p| p.hf_name.starts_with("bert.") && p.hf_name.ends_with(".bias"))
        .map(|p| p.numel)
        .sum();
    build_masks(method, params, seed, all_bias)
}

/// The one definition of "trainable scalars": every tensor that trains counts its scalars, or
/// only those its mask frees where a mask restricts it. `tensors`: (trains, scalars, scalars
/// freed by its mask if it has one).
fn count_trainable(tensors: impl IntoIterator<Item = (bool, usize, Option<usize>)>) -> usize {
    tensors
        .into_iter()
        .filter(|t| t.0)
        .map(|(_, numel, freed)| freed.unwrap_or(numel))
        .sum()
}

/// Trainable scalars of a model's parameters (after [`apply_method`]) under `masks`: the run
/// record's `trainable_params` and `repro bench`'s count.
pub fn trainable_scalars(params: &[ParamInfo], masks: &[Mask]) -> usize {
    count_trainable(params.iter().map(|p| {
        let freed = masks.iter().find(|m| m.id == p.id).map(|m| m.ones);
        (p.require_grad, p.numel, freed)
    }))
}

/// Trainable scalars of `method` on an encoder of shape `cfg`, excluding the classifier head,
/// from the config alone (`repro inspect`). Masked methods: rand_uniform frees its budget
/// (before the rare repeated draws); rand_row_col depends on the draw, so None. Diff-Pruning:
/// its target share of the encoder (a run records the share it reached).
pub fn trainable_encoder_scalars(method: &Method, cfg: &BertConfig) -> Option<usize> {
    match method {
        Method::RandUniform { budget } => Some(
            budget.unwrap_or_else(|| trainable_encoder_scalars(&Method::Bitfit, cfg).unwrap_or(0)),
        ),
        Method::RandRowCol => None,
        // the target: the share of the model the projection cuts the diff to (the head counted)
        Method::DiffPruning { share_ppm, .. } => {
            let all: usize = encoder_param_shapes(cfg)
                .iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .sum();
            Some((all as f64 * f64::from(*share_ppm) / 1e6).round() as usize)
        }
        m => {
            let (h, l) = (cfg.hidden_size, cfg.num_hidden_layers);
            // the extra modules are not in the checkpoint's table
            let extra = match m {
                Method::Lora { r, targets, .. } => l * targets.len() * r * (h + h),
                Method::Adapters { size } => l * 2 * (h * size + size + size * h + h),
                _ => 0,
            };
            Some(
                extra
                    + count_trainable(
                        encoder_param_shapes(cfg)
                            .iter()
                            .map(|(n, s)| (m.trains(n), s.iter().product::<usize>(), None)),
                    ),
            )
        }
    }
}
