//! `repro inspect`: architecture, parameter counts per group and per paper bias kind, and the
//! trainable share of each fine-tuning method.

use std::fmt::Write;

use crate::finetune::{Method, encoder_param_shapes, trainable_encoder_scalars};
use crate::model::{BertConfig, BiasKind};

/// Methods whose share `repro inspect` lists: the paper's
/// ([`crate::finetune::method::PAPER_METHODS`]), then the baselines it only quoted.
pub fn listed_methods() -> Vec<Method> {
    crate::finetune::method::PAPER_METHODS
        .iter()
        .map(|m| m.spelling)
        .chain(crate::finetune::method::BASELINE_METHODS.iter().copied())
        .map(|m| Method::parse(m).expect("listed methods parse"))
        .collect()
}

/// Counts that `repro inspect` reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Inspection {
    pub config: BertConfig,
    pub total: usize,
    /// (group, scalars)
    pub groups: Vec<(String, usize)>,
    /// (bias kind, scalars per layer, scalars over all layers)
    pub bias_kinds: Vec<(String, usize, usize)>,
    /// (method, trainable encoder scalars, share of the encoder in %)
    pub methods: Vec<(String, Option<usize>, Option<f64>)>,
}

pub fn inspect(cfg: &BertConfig) -> Inspection {
    let shapes = encoder_param_shapes(cfg);
    let numel = |s: &Vec<usize>| s.iter().product::<usize>();
    let total: usize = shapes.iter().map(|(_, s)| numel(s)).sum();
    let mut groups: Vec<(String, usize)> = Vec::new();
    for (n, s) in &shapes {
        let g = cfg.family().group_of(n);
        match groups.iter_mut().find(|(x, _)| x == g) {
            Some((_, c)) => *c += numel(s),
            None => groups.push((g.to_string(), numel(s))),
        }
    }
    let bias_kinds = BiasKind::ALL
        .iter()
        .map(|k| {
            let per_layer = shapes
                .iter()
                .find(|(n, _)| *n == k.hf_name(0))
                .map(|(_, s)| numel(s))
                .unwrap_or(0);
            (
                k.name().to_string(),
                per_layer,
                per_layer * cfg.num_hidden_layers,
            )
        })
        .collect();
    let methods = listed_methods()
        .iter()
        .map(|m| {
            let n = trainable_encoder_scalars(m, cfg);
            (m.to_string(), n, n.map(|n| 100.0 * n as f64 / total as f64))
        })
        .collect();
    Inspection {
        config: cfg.clone(),
        total,
        groups,
        bias_kinds,
        methods,
    }
}

impl Inspection {
    pub fn render(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: {} layers, hidden {}, {} heads, intermediate {}, vocab {}, max positions {}, type vocab {}, \
             layer_norm_eps {:e}, act {}",
            c.family().label,
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.intermediate_size,
            c.vocab_size,
            c.max_position_embeddings,
            c.type_vocab_size,
            c.layer_norm_eps,
            c.hidden_act
        );
        let _ = writeln!(
            s,
            "encoder parameters: {} ({:.2}M)\n",
            fmt_int(self.total),
            self.total as f64 / 1e6
        );
        let _ = writeln!(s, "{:<28} {:>14} {:>9}", "group", "parameters", "share");
        for (g, n) in &self.groups {
            let _ = writeln!(
                s,
                "{:<28} {:>14} {:>8.3}%",
                g,
                fmt_int(*n),
                100.0 * *n as f64 / self.total as f64
            );
        }
        let _ = writeln!(
            s,
            "\n{:<8} {:>10} {:>12} {:>9}",
            "bias", "per layer", "all layers", "share"
        );
        for (k, per, all) in &self.bias_kinds {
            let _ = writeln!(
                s,
                "{:<8} {:>10} {:>12} {:>8.4}%",
                k,
                fmt_int(*per),
                fmt_int(*all),
                100.0 * *all as f64 / self.total as f64
            );
        }
        let w = self
            .methods
            .iter()
            .map(|m| m.0.len())
            .max()
            .unwrap_or(0)
            .max(16);
        let _ = writeln!(
            s,
            "\n{:<w$} {:>14} {:>10}   (encoder scalars; the task head trains in every method)",
            "method", "trainable", "share"
        );
        for (m, n, p) in &self.methods {
            let n = n.map(fmt_int).unwrap_or_else(|| "per draw".into());
            let p = p.map(|p| format!("{p:.4}%")).unwrap_or_default();
            let _ = writeln!(s, "{:<w$} {:>14} {:>10}", m, n, p);
        }
        if let Some(paper) = c.family().paper_rand_uniform_budget {
            let _ = writeln!(
                s,
                "\nrand_uniform's default budget is this model's all-bias count; the paper used {} for {}",
                fmt_int(paper.1),
                paper.0
            );
        }
        s
    }
}

/// 102912 → "102,912"
pub fn fmt_int(n: usize) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, ch) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
