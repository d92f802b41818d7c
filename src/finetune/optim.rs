//! The reference code's optimizer, by hand: global-L2-norm gradient clipping (torch's
//! `clip_grad_norm_`) and transformers-4.2.1 `AdamW`. burn's built-ins differ (per-tensor clipping,
//! eps 1e-5, weight decay 1e-4, eps added after bias correction), so they are not used.
//!
//! Only parameters that have a gradient are touched: frozen tensors keep their exact bits and
//! get no optimizer state.

use std::collections::HashMap;

use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;

/// AdamW settings; defaults are the reference code's (transformers 4.2.1 `AdamW` defaults).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// clip the global L2 norm of all gradients to this (None: no clipping)
    pub max_grad_norm: Option<f64>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
        }
    }
}

struct Moments {
    m: Tensor<1>,
    v: Tensor<1>,
}

/// AdamW with bias correction folded into the step size and eps added to sqrt(v) before
/// correction, exactly as transformers 4.2.1:
/// `p -= lr·sqrt(1-β2^t)/(1-β1^t) · m / (sqrt(v) + eps)`, then `p -= lr·wd·p`.
pub struct AdamW {
    pub config: AdamWConfig,
    state: HashMap<ParamId, Moments>,
    /// optional 0/1 masks (flattened) multiplied into gradients before clipping (rand_* methods)
    masks: HashMap<ParamId, Tensor<1>>,
    /// parameters of an extra group (index ≥ 1 into `group_lr`): their own constant learning
    /// rate and their own global-norm clipping (Diff-Pruning's gate log-odds)
    groups: HashMap<ParamId, usize>,
    /// (learning rate, eps) of group i (index 0 unused: the main group takes the step's `lr`
    /// and the config's eps); extra groups have no weight decay
    group_lr: Vec<(f64, f64)>,
    step: i32,
}

/// What one optimizer step saw.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    /// global L2 norm of the gradients before clipping
    pub grad_norm: f64,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        AdamW {
            config,
            state: HashMap::new(),
            masks: HashMap::new(),
            groups: HashMap::new(),
            group_lr: vec![(0.0, 0.0)],
            step: 0,
        }
    }

    /// Put `ids` in a group of their own, as a second torch optimizer would hold them: constant
    /// learning rate `lr`, its own `eps`, no weight decay, and clipping of their global norm
    /// apart from the other parameters'.
    pub fn add_group(&mut self, ids: &[ParamId], lr: f64, eps: f64) {
        let g = self.group_lr.len();
        self.group_lr.push((lr, eps));
        for id in ids {
            self.groups.insert(*id, g);
        }
    }

    /// Restrict a parameter's updates to the scalars where `mask` is 1 (flattened, row-major).
    pub fn set_mask(&mut self, id: ParamId, mask: Tensor<1>) {
        self.masks.insert(id, mask);
    }

    /// Number of tensors with optimizer state (= tensors that have been updated).
    pub fn state_len(&self) -> usize {
        self.state.len()
    }

    /// Mask, clip and apply one update to every parameter of `module` that has a gradient.
    pub fn step<M: Module>(
        &mut self,
        lr: f64,
        module: M,
        mut grads: GradientsParams,
    ) -> (M, StepStats) {
        self.step += 1;
        if !self.masks.is_empty() {
            let mut masker = Masker {
                grads: &mut grads,
                masks: &self.masks,
            };
            module.visit(&mut masker);
        }
        let mut norm = SqNorm {
            grads: &grads,
            groups: &self.groups,
            acc: vec![None; self.group_lr.len()],
        };
        module.visit(&mut norm);
        let norms: Vec<f64> = norm
            .acc
            .into_iter()
            .map(|a| a.map(|a| a.into_scalar::<f64>().sqrt()).unwrap_or(0.0))
            .collect();
        // torch.nn.utils.clip_grad_norm_: coef = max_norm / (total + 1e-6), applied when < 1
        let scales: Vec<f64> = norms
            .iter()
            .map(|n| match self.config.max_grad_norm {
                Some(max) => (max / (n + 1e-6)).min(1.0),
                None => 1.0,
            })
            .collect();
        let grad_norm = norms[0];
        let mut update = Update {
            opt: self,
            grads: &mut grads,
            lr,
            scales,
        };
        let module = module.map(&mut update);
        (module, StepStats { grad_norm })
    }
}

struct Masker<'a> {
    grads: &'a mut GradientsParams,
    masks: &'a HashMap<ParamId, Tensor<1>>,
}

impl ModuleVisitor for Masker<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        // take a gradient out only to put it back masked: an unmasked tensor (the task head,
        // rand_row_col's LayerNorm gains) keeps its gradient untouched
        let Some(mask) = self.masks.get(&p.id) else {
            return;
        };
        if let Some(g) = self.grads.remove::<D>(p.id) {
            let shape = g.dims();
            let masked: Tensor<D> = (g.reshape([-1]) * mask.clone()).reshape(shape);
            self.grads.register(p.id, masked);
        }
    }
}

struct SqNorm<'a> {
    grads: &'a GradientsParams,
    groups: &'a HashMap<ParamId, usize>,
    /// per group
    acc: Vec<Option<Tensor<1>>>,
}

impl ModuleVisitor for SqNorm<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(p.id) {
            // accumulate in f64-free f32 like torch (norms of norms)
            let s = g.square().sum();
            let acc = &mut self.acc[self.groups.get(&p.id).copied().unwrap_or(0)];
            *acc = Some(match acc.take() {
                Some(a) => a + s,
                None => s,
            });
        }
    }
}

struct Update<'a> {
    opt: &'a mut AdamW,
    grads: &'a mut GradientsParams,
    lr: f64,
    /// clipping coefficient per group
    scales: Vec<f64>,
}

impl ModuleMapper for Update<'_> {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(g) = self.grads.remove::<D>(p.id) else {
            return p;
        };
        let c = self.opt.config;
        let t = self.opt.step;
        let group = self.opt.groups.get(&p.id).copied().unwrap_or(0);
        let (lr, eps, wd, scale) = match group {
            0 => (self.lr, c.eps, c.weight_decay, self.scales[0]),
            g => {
                let (lr, eps) = self.opt.group_lr[g];
                (lr, eps, 0.0, self.scales[g])
            }
        };
        let (id, w, mapper) = p.consume();
        let shape = w.dims();
        let (req, ad) = (w.is_require_grad(), w.is_autodiff());
        let w = w.inner();
        let mut g: Tensor<1> = g.reshape([-1]);
        if scale < 1.0 {
            g = g * scale;
        }
        let (m, v) = match self.opt.state.remove(&id) {
            Some(s) => (
                s.m * c.beta1 + g.clone() * (1.0 - c.beta1),
                s.v * c.beta2 + g.square() * (1.0 - c.beta2),
            ),
            None => (g.clone() * (1.0 - c.beta1), g.square() * (1.0 - c.beta2)),
        };
        let step_size = lr * (1.0 - c.beta2.powi(t)).sqrt() / (1.0 - c.beta1.powi(t));
        let delta: Tensor<D> = (m.clone() / (v.clone().sqrt() + eps)).reshape(shape) * step_size;
        let mut w = w - delta;
        if wd > 0.0 {
            w = w.clone() - w * (lr * wd);
        }
        self.opt.state.insert(id, Moments { m, v });
        let w = if ad {
            Tensor::from_inner(w).set_require_grad(req)
        } else {
            w
        };
        Param::from_mapped_value(id, w, mapper)
    }
}
