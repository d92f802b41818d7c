//! A BERT encoder in burn whose structure mirrors Hugging Face's `BertModel` field by field, so that
//! every tensor of an HF checkpoint has exactly one home, and every bias vector can be named by the
//! paper's notation (b_q, b_k, b_v, b_m1, b_LN1, b_m2, b_m3, b_LN2).
//!
//! burn paths differ from HF names in three mechanical ways, undone by [`hf_name`]:
//! `attention.self` → `attention.self_attn` (`self` is a Rust keyword), `LayerNorm` →
//! `layer_norm`, and LayerNorm `weight`/`bias` → `gamma`/`beta` (burn's names).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::module::{ModuleVisitor, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::prelude::*;
use burn::tensor::activation::{softmax, tanh};

use crate::tokenize::Batch;

pub mod names;
pub mod peft;

pub use names::{BERT, Family, HeadLayout, Positions, ROBERTA, hf_name, stored_transposed};

// ---------------------------------------------------------------------------------------------
// config

/// The fields of an HF BERT `config.json` that shape the model.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_max_pos() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_ln_eps() -> f64 {
    1e-12
}
fn default_dropout() -> f64 {
    0.1
}
fn default_act() -> String {
    "gelu".into()
}

impl BertConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let cfg: BertConfig = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a BERT config.json", path.display()))?;
        cfg.validate()
            .with_context(|| format!("{}", path.display()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        names::family_for(self.model_type.as_deref())?;
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            bail!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        self.activation()?;
        Ok(())
    }

    /// The feed-forward activation `hidden_act` names.
    pub fn activation(&self) -> Result<Activation> {
        self.hidden_act.parse()
    }

    /// The model family `model_type` names (BERT when absent).
    pub fn family(&self) -> &'static Family {
        names::family_for(self.model_type.as_deref()).unwrap_or(&BERT)
    }

    /// The padding index, from which RoBERTa numbers positions.
    pub fn padding_idx(&self) -> usize {
        // HF's defaults: BertConfig pad_token_id 0, RobertaConfig 1
        let default = if self.family().positions == Positions::AfterPadding {
            1
        } else {
            0
        };
        self.pad_token_id.map_or(default, |p| p as usize)
    }

    /// The longest input the position table holds: `max_position_embeddings`, less the padding
    /// index + 1 where positions start after it (RoBERTa: 514 → 512).
    pub fn max_tokens(&self) -> usize {
        match self.family().positions {
            Positions::Absolute => self.max_position_embeddings,
            Positions::AfterPadding => self
                .max_position_embeddings
                .saturating_sub(self.padding_idx() + 1),
        }
    }

    /// A randomly initialised encoder of this shape ([`BertModel::init`]).
    pub fn init(&self, dev: &Device) -> BertModel {
        BertModel::init(self, dev)
    }

    /// bert-base-cased's shape (for `repro inspect --shape bert-base` and the benchmarks).
    pub fn bert_base_cased() -> Self {
        BertConfig {
            vocab_size: 28996,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            hidden_act: "gelu".into(),
            model_type: Some("bert".into()),
            pad_token_id: Some(0),
        }
    }

    /// A shape by name (`repro inspect --shape`, `repro bench --shape`).
    pub fn named_shape(name: &str) -> Result<Self> {
        match name {
            "bert-base-cased" => Ok(Self::bert_base_cased()),
            "bert-large-cased" => Ok(Self::bert_large_cased()),
            "roberta-base" => Ok(Self::roberta_base()),
            _ => bail!(
                "--shape `{name}`: valid shapes are bert-base-cased, bert-large-cased, roberta-base"
            ),
        }
    }

    /// roberta-base's shape (its config.json on the hub).
    pub fn roberta_base() -> Self {
        BertConfig {
            vocab_size: 50265,
            max_position_embeddings: 514,
            type_vocab_size: 1,
            layer_norm_eps: 1e-5,
            model_type: Some("roberta".into()),
            pad_token_id: Some(1),
            ..Self::bert_base_cased()
        }
    }

    /// bert-large-cased's shape.
    pub fn bert_large_cased() -> Self {
        BertConfig {
            hidden_size: 1024,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            intermediate_size: 4096,
            ..Self::bert_base_cased()
        }
    }
}

/// The feed-forward activation (config.json `hidden_act`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Activation {
    /// exact erf GELU (`gelu`)
    #[default]
    Gelu,
    /// tanh-approximate GELU (`gelu_new`, `gelu_pytorch_tanh`)
    GeluTanh,
    /// ReLU (`relu`)
    Relu,
}

impl std::str::FromStr for Activation {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            _ => {
                bail!("hidden_act `{s}` is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// paper notation

/// The bias kinds of one BERT layer, in the paper's notation (Table 3 / Fig. 1 rows).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[allow(non_camel_case_types)]
pub enum BiasKind {
    b_q,
    b_k,
    b_v,
    b_m1,
    b_LN1,
    b_m2,
    b_m3,
    b_LN2,
}

impl BiasKind {
    pub const ALL: [BiasKind; 8] = [
        BiasKind::b_q,
        BiasKind::b_k,
        BiasKind::b_v,
        BiasKind::b_m1,
        BiasKind::b_LN1,
        BiasKind::b_m2,
        BiasKind::b_m3,
        BiasKind::b_LN2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BiasKind::b_q => "b_q",
            BiasKind::b_k => "b_k",
            BiasKind::b_v => "b_v",
            BiasKind::b_m1 => "b_m1",
            BiasKind::b_LN1 => "b_LN1",
            BiasKind::b_m2 => "b_m2",
            BiasKind::b_m3 => "b_m3",
            BiasKind::b_LN2 => "b_LN2",
        }
    }

    /// HF parameter name under `encoder.layer.ℓ.` (from the name table, [`names`]).
    pub fn hf_suffix(self) -> &'static str {
        BERT.bias_suffix(self)
    }

    /// The HF name of this bias in layer `layer` (0-based).
    pub fn hf_name(self, layer: usize) -> String {
        format!("encoder.layer.{layer}.{}", self.hf_suffix())
    }

    /// Which kind (and layer) an HF parameter name is, if it is a layer bias.
    pub fn parse_hf(name: &str) -> Option<(usize, BiasKind)> {
        match BERT.row(name)? {
            (Some(layer), t) => t.kind.map(|k| (layer, k)),
            _ => None,
        }
    }
}

impl fmt::Display for BiasKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BiasKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<BiasKind> {
        BiasKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = BiasKind::ALL.iter().map(|k| k.name()).collect();
                anyhow!("unknown bias term `{s}`; valid: {}", names.join(", "))
            })
    }
}

// ---------------------------------------------------------------------------------------------
// modules

/// How the sequence-classification head reads the encoder output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadPooling {
    /// HF's BertForSequenceClassification: pooler (dense + tanh on [CLS]) → dropout → linear.
    #[default]
    Pooler,
    /// [CLS] hidden state → dropout → linear (pooler unused).
    Cls,
    /// mean of the non-padding hidden states → dropout → linear (pooler unused).
    Mean,
    /// span extraction, HF's `BertForQuestionAnswering` (SQuAD): a linear layer `qa_outputs`
    /// (hidden → start, end) on every token's hidden state; no pooler, no dropout.
    Span,
}

impl fmt::Display for HeadPooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeadPooling::Pooler => "pooler",
            HeadPooling::Cls => "cls",
            HeadPooling::Mean => "mean",
            HeadPooling::Span => "span",
        })
    }
}

impl std::str::FromStr for HeadPooling {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pooler" => Ok(HeadPooling::Pooler),
            "cls" => Ok(HeadPooling::Cls),
            "mean" => Ok(HeadPooling::Mean),
            "span" => Ok(HeadPooling::Span),
            _ => bail!("unknown head pooling `{s}`; valid: pooler, cls, mean, span (SQuAD)"),
        }
    }
}

#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
    /// RoBERTa: positions start after this padding index and skip padding; None: 0, 1, 2, …
    #[module(skip)]
    pub padding_idx: Option<usize>,
}

#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub dropout: Dropout,
    pub num_heads: usize,
    /// LoRA updates of the projections (the `lora` methods; None otherwise)
    pub lora_query: Option<peft::Lora>,
    pub lora_key: Option<peft::Lora>,
    pub lora_value: Option<peft::Lora>,
}

#[derive(Module, Debug)]
pub struct BertSelfOutput {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
    /// Houlsby adapter after the attention output (the `adapters` method; None otherwise)
    pub adapter: Option<peft::Adapter>,
}

#[derive(Module, Debug)]
pub struct BertAttention {
    pub self_attn: BertSelfAttention,
    pub output: BertSelfOutput,
}

#[derive(Module, Debug)]
pub struct BertIntermediate {
    pub dense: Linear,
    #[module(skip)]
    pub act: Activation,
}

#[derive(Module, Debug)]
pub struct BertOutput {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
    /// Houlsby adapter after the feed-forward output (the `adapters` method; None otherwise)
    pub adapter: Option<peft::Adapter>,
}

#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: BertIntermediate,
    pub output: BertOutput,
}

#[derive(Module, Debug)]
pub struct BertEncoder {
    pub layer: Vec<BertLayer>,
}

#[derive(Module, Debug)]
pub struct BertPooler {
    pub dense: Linear,
}

/// HF `BertModel` (or `RobertaModel`): embeddings → N post-LN layers → pooler (none for RoBERTa,
/// whose task head does not read it).
#[derive(Module, Debug)]
pub struct BertModel {
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    pub pooler: Option<BertPooler>,
}

fn linear(i: usize, o: usize, dev: &Device) -> Linear {
    LinearConfig::new(i, o).init(dev)
}
fn ln(cfg: &BertConfig, dev: &Device) -> LayerNorm {
    LayerNormConfig::new(cfg.hidden_size)
        .with_epsilon(cfg.layer_norm_eps)
        .init(dev)
}

impl BertModel {
    /// A randomly initialised model of the given shape (weights are then loaded over it).
    pub fn init(cfg: &BertConfig, dev: &Device) -> Self {
        let h = cfg.hidden_size;
        let family = cfg.family();
        let hd = DropoutConfig::new(cfg.hidden_dropout_prob);
        // validated when the config was read; a hand-built config with an unknown name gets GELU
        let act = cfg.activation().unwrap_or_default();
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| BertLayer {
                attention: BertAttention {
                    self_attn: BertSelfAttention {
                        query: linear(h, h, dev),
                        key: linear(h, h, dev),
                        value: linear(h, h, dev),
                        dropout: DropoutConfig::new(cfg.attention_probs_dropout_prob).init(),
                        num_heads: cfg.num_attention_heads,
                        lora_query: None,
                        lora_key: None,
                        lora_value: None,
                    },
                    output: BertSelfOutput {
                        dense: linear(h, h, dev),
                        layer_norm: ln(cfg, dev),
                        dropout: hd.init(),
                        adapter: None,
                    },
                },
                intermediate: BertIntermediate {
                    dense: linear(h, cfg.intermediate_size, dev),
                    act,
                },
                output: BertOutput {
                    dense: linear(cfg.intermediate_size, h, dev),
                    layer_norm: ln(cfg, dev),
                    dropout: hd.init(),
                    adapter: None,
                },
            })
            .collect();
        BertModel {
            embeddings: BertEmbeddings {
                word_embeddings: EmbeddingConfig::new(cfg.vocab_size, h).init(dev),
                position_embeddings: EmbeddingConfig::new(cfg.max_position_embeddings, h).init(dev),
                token_type_embeddings: EmbeddingConfig::new(cfg.type_vocab_size, h).init(dev),
                layer_norm: ln(cfg, dev),
                dropout: hd.init(),
                padding_idx: (family.positions == Positions::AfterPadding)
                    .then(|| cfg.padding_idx()),
            },
            encoder: BertEncoder { layer: layers },
            pooler: (family.head == HeadLayout::Pooler).then(|| BertPooler {
                dense: linear(h, h, dev),
            }),
        }
    }

    /// Last hidden states `[batch, seq, hidden]`.
    /// `mask` is the attention mask as floats (1 = token, 0 = padding), `[batch, seq]`.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        mask: Tensor<2>,
    ) -> Tensor<3> {
        let [b, s] = input_ids.dims();
        let dev = input_ids.device();
        let e = &self.embeddings;
        let pos = match e.padding_idx {
            None => Tensor::<1, Int>::arange(0..s as i64, &dev)
                .reshape([1, s])
                .expand([b, s]),
            // HF's create_position_ids_from_input_ids: cumsum(mask) * mask + padding_idx
            Some(p) => (mask.clone().cumsum(1) * mask.clone()).int() + p as i64,
        };
        let x = e.word_embeddings.forward(input_ids)
            + e.position_embeddings.forward(pos)
            + e.token_type_embeddings.forward(token_type_ids);
        let mut x = e.dropout.forward(e.layer_norm.forward(x));
        // additive mask [b, 1, 1, s]: 0 for tokens, -10000 for padding (as transformers 4.2.1)
        let add_mask = ((mask - 1.0) * 10000.0).reshape([b, 1, 1, s]);
        for layer in &self.encoder.layer {
            x = layer.forward(x, add_mask.clone());
        }
        x
    }

    /// HF pooler output: tanh(dense(hidden[:, 0])). Panics for a family without a pooler
    /// (RoBERTa), whose head reads the first token itself.
    pub fn pool(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, _, h] = hidden.dims();
        let cls = hidden.slice([0..b, 0..1]).reshape([b, h]);
        let pooler = self
            .pooler
            .as_ref()
            .expect("this model family has no pooler");
        tanh(pooler.dense.forward(cls))
    }
}

impl BertLayer {
    fn forward(&self, x: Tensor<3>, add_mask: Tensor<4>) -> Tensor<3> {
        let a = &self.attention;
        let ctx = a.self_attn.forward(x.clone(), add_mask);
        let o = &a.output;
        let h = peft::with_adapter(o.adapter.as_ref(), o.dropout.forward(o.dense.forward(ctx)));
        let x = o.layer_norm.forward(h + x);
        let inter = self.intermediate.forward(x.clone());
        let o = &self.output;
        let h = peft::with_adapter(
            o.adapter.as_ref(),
            o.dropout.forward(o.dense.forward(inter)),
        );
        o.layer_norm.forward(h + x)
    }
}

impl BertSelfAttention {
    fn forward(&self, x: Tensor<3>, add_mask: Tensor<4>) -> Tensor<3> {
        let [b, s, h] = x.dims();
        let nh = self.num_heads;
        let hd = h / nh;
        let heads = |t: Tensor<3>| t.reshape([b, s, nh, hd]).swap_dims(1, 2); // [b, nh, s, hd]
        let q = heads(peft::with_lora(
            &self.query,
            self.lora_query.as_ref(),
            x.clone(),
        ));
        let k = heads(peft::with_lora(
            &self.key,
            self.lora_key.as_ref(),
            x.clone(),
        ));
        let v = heads(peft::with_lora(&self.value, self.lora_value.as_ref(), x));
        let scores = q.matmul(k.transpose()) / (hd as f64).sqrt() + add_mask;
        let probs = self.dropout.forward(softmax(scores, 3));
        probs.matmul(v).swap_dims(1, 2).reshape([b, s, h])
    }
}

impl BertIntermediate {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self.dense.forward(x);
        match self.act {
            // Exact erf GELU, one autodiff node: every backend's gelu_backward is the exact
            // derivative (burn-ndarray's through patches/burn-ndarray; its published default
            // differentiates the tanh approximation and failed the golden-step test).
            Activation::Gelu => burn::tensor::activation::gelu(x),
            Activation::GeluTanh => burn::tensor::activation::gelu_approximate(x),
            Activation::Relu => burn::tensor::activation::relu(x),
        }
    }
}

/// Move a tokenised batch onto `dev`: ids, token types, float mask.
pub fn batch_tensors(b: &Batch, dev: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2>) {
    let shape = [b.batch_size, b.seq_len];
    let ids = Tensor::<2, Int>::from_data(TensorData::new(b.input_ids.clone(), shape), dev);
    let tt = Tensor::<2, Int>::from_data(TensorData::new(b.token_type_ids.clone(), shape), dev);
    let mask: Vec<f32> = b.attention_mask.iter().map(|&m| m as f32).collect();
    let mask = Tensor::<2>::from_data(TensorData::new(mask, shape), dev);
    (ids, tt, mask)
}

// ---------------------------------------------------------------------------------------------
// classification head

/// HF `BertForSequenceClassification` or `RobertaForSequenceClassification` (num_labels
/// outputs; 1 = regression), with the pooling choice of [`HeadPooling`]. For RoBERTa,
/// `classifier` is the head's `out_proj` and `dense` its `classifier.dense`.
#[derive(Module, Debug)]
pub struct BertClassifier {
    pub bert: BertModel,
    pub dropout: Dropout,
    /// RoBERTa's dense + tanh layer before the output projection (None for BERT)
    pub dense: Option<Linear>,
    pub classifier: Linear,
    #[module(skip)]
    pub pooling: HeadPooling,
    #[module(skip)]
    pub family: &'static Family,
}

/// The task head of a [`BertClassifier`], burn's Config + init pattern: `init` wraps an encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct BertClassifierConfig {
    /// outputs: the task's classes, or 1 for regression (STS-B)
    pub num_labels: usize,
    /// how the head reads the encoder output
    pub pooling: HeadPooling,
    /// seeds the head's weight draw (the run seed)
    pub seed: u64,
}

impl BertClassifierConfig {
    /// Wrap `bert` (of shape `cfg`) with a new head: weight N(0, 0.02), bias 0, as HF's
    /// `_init_weights`. The weight is drawn from `seed` on the CPU so every backend starts from
    /// the same head.
    pub fn init(&self, bert: BertModel, cfg: &BertConfig, dev: &Device) -> BertClassifier {
        BertClassifier::new(bert, cfg, self.num_labels, self.pooling, self.seed, dev)
    }
}

impl BertClassifier {
    /// [`BertClassifierConfig::init`] with the config's fields as arguments.
    pub fn new(
        mut bert: BertModel,
        cfg: &BertConfig,
        num_labels: usize,
        pooling: HeadPooling,
        seed: u64,
        dev: &Device,
    ) -> Self {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal};
        let h = cfg.hidden_size;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, 0.02).expect("valid normal");
        let w: Vec<f32> = (0..h * num_labels)
            .map(|_| normal.sample(&mut rng))
            .collect();
        let mut classifier = linear(h, num_labels, dev);
        classifier.weight =
            Param::from_tensor(Tensor::from_data(TensorData::new(w, [h, num_labels]), dev));
        classifier.bias = Some(Param::from_tensor(Tensor::zeros([num_labels], dev)));
        let family = cfg.family();
        let dense = (family.head == HeadLayout::Dense && pooling != HeadPooling::Span).then(|| {
            let w: Vec<f32> = (0..h * h).map(|_| normal.sample(&mut rng)).collect();
            let mut d = linear(h, h, dev);
            d.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [h, h]), dev));
            d.bias = Some(Param::from_tensor(Tensor::zeros([h], dev)));
            d
        });
        if pooling == HeadPooling::Span {
            // BertForQuestionAnswering is built without a pooler
            bert.pooler = None;
        }
        BertClassifier {
            bert,
            dropout: DropoutConfig::new(cfg.hidden_dropout_prob).init(),
            dense,
            classifier,
            pooling,
            family,
        }
    }

    /// Set RoBERTa's `classifier.dense` from HF-layout tensors (`[hidden, hidden]`, out × in).
    pub fn set_dense(&mut self, weight_out_in: &[f32], bias: &[f32], dev: &Device) {
        self.dense = Some(linear_from_hf(weight_out_in, bias, dev));
    }

    /// The tensors for which `keep(hf_name, require_grad)` holds, named as the family's HF task
    /// model names them (`roberta.encoder…`, `classifier.out_proj.weight`, …).
    pub fn hf_task_tensors(&self, keep: impl Fn(&str, bool) -> bool) -> Vec<NamedTensor> {
        hf_tensors(self, |_, _| true)
            .into_iter()
            .zip(params(self))
            .map(|(mut t, p)| {
                t.name = self.hf_task_name(&p.path);
                t
            })
            .filter(|t| keep(&t.name, t.require_grad))
            .collect()
    }

    /// The HF task model's name of the tensor at `burn_path`: the family's, with the span head
    /// named `qa_outputs` as in `BertForQuestionAnswering`.
    pub fn hf_task_name(&self, burn_path: &str) -> String {
        hf_task_name(self.family, self.pooling, burn_path)
    }

    /// Start and end logits `[batch, seq_len, 2]` of the span head ([`HeadPooling::Span`]).
    pub fn forward_spans(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        mask: Tensor<2>,
    ) -> Tensor<3> {
        assert_eq!(
            self.pooling,
            HeadPooling::Span,
            "forward_spans needs the span head"
        );
        let hidden = self.bert.forward(input_ids, token_type_ids, mask);
        self.classifier.forward(hidden)
    }

    /// Set the output layer from HF-layout tensors (`classifier.weight`, RoBERTa's
    /// `classifier.out_proj.weight`: `[num_labels, hidden]`).
    pub fn set_head(&mut self, weight_out_in: &[f32], bias: &[f32], dev: &Device) {
        self.classifier = linear_from_hf(weight_out_in, bias, dev);
    }

    /// Logits `[batch, num_labels]`.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        mask: Tensor<2>,
    ) -> Tensor<2> {
        assert_ne!(
            self.pooling,
            HeadPooling::Span,
            "the span head gives per-token logits: forward_spans"
        );
        let hidden = self.bert.forward(input_ids, token_type_ids, mask.clone());
        let [b, s, h] = hidden.dims();
        let features = match self.pooling {
            HeadPooling::Pooler if self.bert.pooler.is_some() => self.bert.pool(hidden),
            // RoBERTa's head reads the <s> state itself
            HeadPooling::Pooler | HeadPooling::Cls => hidden.slice([0..b, 0..1]).reshape([b, h]),
            HeadPooling::Span => unreachable!("asserted above"),
            HeadPooling::Mean => {
                let m = mask.reshape([b, s, 1]);
                let summed = (hidden * m.clone()).sum_dim(1).reshape([b, h]);
                summed / m.sum_dim(1).reshape([b, 1]).clamp_min(1.0)
            }
        };
        let x = self.dropout.forward(features);
        let x = match &self.dense {
            // RobertaClassificationHead: dropout → dense → tanh → dropout → out_proj
            Some(dense) => self.dropout.forward(tanh(dense.forward(x))),
            None => x,
        };
        self.classifier.forward(x)
    }
}

/// The HF task model's name of the tensor at `burn_path` in a [`BertClassifier`] of `family`
/// with head `pooling`: the family's names, the span head named `qa_outputs`.
pub fn hf_task_name(family: &Family, pooling: HeadPooling, burn_path: &str) -> String {
    match burn_path.strip_prefix("classifier.") {
        Some(rest) if pooling == HeadPooling::Span => format!("qa_outputs.{rest}"),
        _ => family.hf_task_name(burn_path),
    }
}

/// A Linear layer from HF-layout tensors (weight `[out, in]`).
fn linear_from_hf(weight_out_in: &[f32], bias: &[f32], dev: &Device) -> Linear {
    let n = bias.len();
    let h = weight_out_in.len() / n;
    let mut w = vec![0f32; h * n];
    for o in 0..n {
        for i in 0..h {
            w[i * n + o] = weight_out_in[o * h + i];
        }
    }
    let mut l = linear(h, n, dev);
    l.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [h, n]), dev));
    l.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(bias.to_vec(), [n]),
        dev,
    )));
    l
}

// ---------------------------------------------------------------------------------------------
// parameters by name

/// One parameter tensor: its burn path, HF name, shape and trainability.
#[derive(Clone, Debug)]
pub struct ParamInfo {
    pub path: String,
    pub hf_name: String,
    pub shape: Vec<usize>,
    pub numel: usize,
    pub require_grad: bool,
    pub id: burn::module::ParamId,
}

#[derive(Default)]
struct Lister {
    path: Vec<String>,
    out: Vec<ParamInfo>,
}

impl ModuleVisitor for Lister {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let path = self.path.join(".");
        let shape = p.lazy_shape().to_vec();
        self.out.push(ParamInfo {
            hf_name: hf_name(&path),
            numel: shape.iter().product(),
            shape,
            path,
            require_grad: p.is_require_grad(),
            id: p.id,
        });
    }
}

/// Every float parameter of a module, in declaration order.
pub fn params<M: Module>(m: &M) -> Vec<ParamInfo> {
    let mut l = Lister::default();
    m.visit(&mut l);
    l.out
}

// ---------------------------------------------------------------------------------------------
// loading HF checkpoints

/// What loading a checkpoint found.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub file: PathBuf,
    pub applied: usize,
    /// checkpoint keys that belong to known heads (`cls.*`, `classifier.*`) or buffers
    /// (`position_ids`) and were ignored
    pub ignored: Vec<String>,
    /// the checkpoint's `classifier.weight`/`classifier.bias` (HF layout), if it has them
    pub classifier: Option<(Vec<f32>, Vec<f32>)>,
}

/// A BERT checkpoint folder: its config and weights file.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: BertConfig,
    pub weights: PathBuf,
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Self> {
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let st = dir.join("model.safetensors");
        let bin = dir.join("pytorch_model.bin");
        let weights = if st.is_file() {
            st
        } else if bin.is_file() {
            bin
        } else {
            bail!(
                "{}: no model.safetensors or pytorch_model.bin; an HF model folder needs one of them",
                dir.display()
            )
        };
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            config,
            weights,
        })
    }

    /// Build the encoder on `dev` and load the checkpoint's tensors into it.
    pub fn load(&self, dev: &Device) -> Result<(BertModel, LoadReport)> {
        let mut model = BertModel::init(&self.config, dev);
        let report = load_weights(&mut model, &self.weights, self.config.family())?;
        Ok((model, report))
    }
}

/// Load an HF BERT checkpoint (`bert.` prefix or not; LayerNorm `weight/bias` or the old
/// `gamma/beta`; PyTorch `[out, in]` Linear weights) into `model`. Any missing, unexpected or
/// mis-shaped tensor is an error that lists all of them.
pub fn load_weights(model: &mut BertModel, file: &Path, family: &Family) -> Result<LoadReport> {
    use burn_store::{ModuleSnapshot, PyTorchToBurnAdapter};
    let remap = family.load_remap();
    let is_bin = file.extension().is_some_and(|e| e == "bin");
    let result = if is_bin {
        // PytorchStore always applies PyTorchToBurnAdapter itself
        let mut store = burn_store::PytorchStore::from_file(file)
            .allow_partial(true)
            .validate(false);
        for (a, b) in &remap {
            store = store.with_key_remapping(a, b);
        }
        model
            .load_from(&mut store)
            .map_err(|e| anyhow!("{}: {e}", file.display()))?
    } else {
        let mut store = burn_store::SafetensorsStore::from_file(file)
            .with_from_adapter(PyTorchToBurnAdapter)
            .allow_partial(true)
            .validate(false);
        for (a, b) in &remap {
            store = store.with_key_remapping(a, b);
        }
        model
            .load_from(&mut store)
            .map_err(|e| anyhow!("{}: {e}", file.display()))?
    };
    if let Some(other) = result.unused.iter().find_map(|k| family.foreign_prefix(k)) {
        bail!(
            "{}: the tensors are a {} model's (`{}` prefix) but config.json says model_type `{}`; \
             the folder mixes two families",
            file.display(),
            other.name,
            other.prefix,
            family.name
        );
    }
    let mut problems = Vec::new();
    let missing: Vec<String> = result.missing.iter().map(|(p, _)| hf_name(p)).collect();
    if !missing.is_empty() {
        problems.push(format!("missing tensors: {}", missing.join(", ")));
    }
    let mut ignored = Vec::new();
    let mut unexpected = Vec::new();
    for k in &result.unused {
        let hf = hf_name(k);
        if family.is_ignored(&hf) {
            ignored.push(hf)
        } else {
            unexpected.push(hf)
        }
    }
    if !unexpected.is_empty() {
        problems.push(format!("unexpected tensors: {}", unexpected.join(", ")));
    }
    if !result.errors.is_empty() {
        let errs: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        problems.push(format!(
            "mis-shaped or unreadable tensors: {}",
            errs.join("; ")
        ));
    }
    if !problems.is_empty() {
        bail!(
            "{} does not fit the model of config.json: {}",
            file.display(),
            problems.join(" | ")
        );
    }
    let classifier = if is_bin { None } else { read_classifier(file)? };
    Ok(LoadReport {
        file: file.to_path_buf(),
        applied: result.applied.len(),
        ignored,
        classifier,
    })
}

/// The `classifier.weight`/`classifier.bias` of a safetensors checkpoint, as f32.
fn read_classifier(file: &Path) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let get = |n: &str| -> Option<Vec<f32>> {
        let t = st.tensor(n).ok()?;
        (t.dtype() == safetensors::Dtype::F32).then(|| {
            t.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    };
    Ok(match (get("classifier.weight"), get("classifier.bias")) {
        (Some(w), Some(b)) => Some((w, b)),
        _ => None,
    })
}

/// One tensor in HF naming and layout.
#[derive(Clone, Debug)]
pub struct NamedTensor {
    /// HF name (`bert.encoder…` inside a classifier, `encoder…` for a bare encoder)
    pub name: String,
    /// HF shape (Linear weights as `[out, in]`)
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
    pub require_grad: bool,
}

struct Exporter<F: Fn(&str, bool) -> bool> {
    path: Vec<String>,
    keep: F,
    out: Vec<NamedTensor>,
}

impl<F: Fn(&str, bool) -> bool> ModuleVisitor for Exporter<F> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let name = hf_name(&self.path.join("."));
        if !(self.keep)(&name, p.is_require_grad()) {
            return;
        }
        let t = p.val();
        let mut shape = t.dims().to_vec();
        let values: Vec<f32> = if stored_transposed(&name, D) {
            shape.reverse();
            let t2: Tensor<2> = t.reshape([shape[1], shape[0]]);
            t2.transpose()
                .into_data()
                .try_into_vec_as::<f32>()
                .expect("f32 tensor")
        } else {
            t.into_data().try_into_vec_as::<f32>().expect("f32 tensor")
        };
        self.out.push(NamedTensor {
            name,
            shape,
            values,
            require_grad: p.is_require_grad(),
        });
    }
}

/// The tensors of `module` for which `keep(hf_name, require_grad)` holds, in HF naming and layout.
pub fn hf_tensors<M: Module>(module: &M, keep: impl Fn(&str, bool) -> bool) -> Vec<NamedTensor> {
    let mut e = Exporter {
        path: Vec::new(),
        keep,
        out: Vec::new(),
    };
    module.visit(&mut e);
    e.out
}
