//! Diff-Pruning (Guo, Rush, Kim, ACL 2021), as the authors' reference code (dguo98/DiffPruning)
//! runs it, in three phases:
//!
//! 1. **Search**: every BERT tensor becomes `θ = θ₀ + z₂·z⊙w` — the frozen pretrained θ₀, a dense
//!    diff `w` (0 at the start) and stretched hard-concrete gates: `z` per scalar and `z₂` per
//!    tensor (the structured variant, on in the reference), both with log-odds α = 5 at the start
//!    and sampled afresh at every step. The loss adds λ·Σ E[L0] = λ·Σ σ(α − log(−l/r)) over every
//!    gate (λ = 1.25e-7). `w` trains with the run's learning rate and optimizer settings (the
//!    campaign's protocol: constant lr, eps 1e-6; the reference decays lr linearly and uses eps
//!    1e-8: `schedule`/`eps` settings); the α's with their own AdamW group at lr 0.1, eps 1e-8,
//!    no weight decay, each group clipped to a global norm of 1.0 on its own. The task head
//!    trains densely.
//! 2. **Projection**: the diffs `z₂·z⊙w` (one gate draw) are cut by magnitude to the target share
//!    of the model's parameters, the threshold found by the reference's bisection; entries at or
//!    above it survive. The dense head counts as nonzero (the reference ranks its diff with the
//!    rest; a linear head is 770–1,538 scalars, but RoBERTa's dense head would take most of a
//!    0.5% budget).
//! 3. **Fixed-mask fine-tuning**: `θ = θ₀ + mask⊙w`, `w` starting from the raw phase-1 diff, no
//!    gates and no penalty, a fresh optimizer at the fine-tuning learning rate (5e-5), 3 epochs.
//!
//! Only phase-3 epochs are scored on dev: earlier scores are not those of a model at the target
//! sparsity. Implemented with burn's parameter [`Reparameterization`]: the model code is
//! unchanged, `Param::val` materialises `θ` on every use.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, Reparameterization, Reparameterizer};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::sigmoid;

/// The stretch interval (l, r) of the hard-concrete gate.
pub const STRETCH: (f64, f64) = (-1.5, 1.5);
/// Initial gate log-odds: P(z > 0) = σ(5) ≈ 0.993.
pub const ALPHA_INIT: f64 = 5.0;
/// Weight of the expected-L0 penalty.
pub const L0_WEIGHT: f64 = 1.25e-7;
/// Learning rate of the gate log-odds (constant) and their AdamW eps (the reference's
/// `adam_epsilon` default; the penalty's gradient is ~1e-9 per gate, so eps sets their pace).
pub const ALPHA_LR: f64 = 0.1;
pub const ALPHA_EPS: f64 = 1e-8;
/// The uniform noise is clamped to this interval.
pub const U_CLAMP: (f64, f64) = (1e-4, 0.9999);

/// The gate for log-odds `alpha` and uniform noise `u`: `clamp(σ(log u − log(1−u) + α)·(r−l) + l,
/// 0, 1)` (temperature 1, as the reference).
pub fn gate(alpha: f64, u: f64) -> f64 {
    let (l, r) = STRETCH;
    let u = u.clamp(U_CLAMP.0, U_CLAMP.1);
    let s = 1.0 / (1.0 + (-(u.ln() - (1.0 - u).ln() + alpha)).exp());
    (s * (r - l) + l).clamp(0.0, 1.0)
}

/// E[z > 0] = P(gate open) = σ(α − log(−l/r)) (Louizos et al. 2018, eq. 12; temperature 1).
pub fn expected_l0(alpha: f64) -> f64 {
    let (l, r) = STRETCH;
    1.0 / (1.0 + (-(alpha - (-l / r).ln())).exp())
}

/// The reference's projection threshold: bisection on [0, 1] (until the interval is under 1e-6)
/// for the smallest `t` with `(#|d| > t + always) / total ≤ share`. Entries with `|d| >= t`
/// survive.
pub fn projection_threshold(abs_diffs: &[f32], always: usize, total: usize, share: f64) -> f32 {
    let sparsity =
        |t: f32| (abs_diffs.iter().filter(|&&d| d > t).count() + always) as f64 / total as f64;
    let (mut lo, mut hi) = (0f32, 1f32);
    while lo + 1e-6 < hi {
        let mid = (lo + hi) / 2.0;
        if sparsity(mid) <= share {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// The state of one diff-pruned tensor.
#[derive(Module, Debug)]
pub struct DiffPrune {
    /// the dense diff vector `w` (flattened, row-major)
    pub w: Param<Tensor<1>>,
    /// per-scalar gate log-odds α (search phase)
    pub log_alpha: Option<Param<Tensor<1>>>,
    /// the tensor's gate log-odds (search phase; the structured variant)
    pub group_log_alpha: Option<Param<Tensor<1>>>,
    /// the fixed 0/1 mask after the projection (not trained)
    pub mask: Option<Param<Tensor<1>>>,
}

/// Sampled gates for log-odds `alpha` (fresh noise from the device's generator).
fn sample_gate(alpha: Tensor<1>) -> Tensor<1> {
    let (l, r) = STRETCH;
    let u = Tensor::<1>::random(
        alpha.dims(),
        Distribution::Uniform(U_CLAMP.0, U_CLAMP.1),
        &alpha.device(),
    );
    let logit = u.clone().log() - (u.neg() + 1.0).log();
    (sigmoid(logit + alpha) * (r - l) + l).clamp(0.0, 1.0)
}

impl Reparameterization for DiffPrune {
    const NAME: &'static str = "diff_pruning";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let shape = base.dims();
        let w = self.w.val();
        let diff = match (&self.mask, &self.log_alpha) {
            (Some(mask), _) => w * mask.val(),
            (None, Some(alpha)) => {
                let d = w * sample_gate(alpha.val());
                match &self.group_log_alpha {
                    Some(g) => d * sample_gate(g.val()),
                    None => d,
                }
            }
            (None, None) => w,
        };
        base + diff.reshape(shape)
    }
}

fn filled(n: usize, value: f64, dev: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::<1>::full([n], value, dev))
}

/// Phase 1: a diff with open gates on every encoder tensor (`bert.…`); the head stays dense.
pub struct Search;

impl Reparameterizer for Search {
    type Reparam = DiffPrune;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<DiffPrune>) {
        if !path.starts_with("bert.") {
            return (param, None);
        }
        let n = param.lazy_shape().num_elements();
        let dev = param.lazy_device();
        let state = DiffPrune {
            w: filled(n, 0.0, &dev),
            log_alpha: Some(filled(n, ALPHA_INIT, &dev)),
            group_log_alpha: Some(filled(1, ALPHA_INIT, &dev)),
            mask: None,
        };
        (param, Some(state))
    }
}

/// Phase 3: each encoder tensor's raw phase-1 `w` and its projection mask, by burn path.
pub struct Fixed {
    pub by_path: Masks,
}

impl Reparameterizer for &mut Fixed {
    type Reparam = DiffPrune;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<DiffPrune>) {
        let Some((w, mask)) = self.by_path.remove(path) else {
            return (param, None);
        };
        let dev = param.lazy_device();
        let n = w.len();
        let t = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), &dev);
        let state = DiffPrune {
            w: Param::from_tensor(t(w)),
            log_alpha: None,
            group_log_alpha: None,
            mask: Some(Param::from_tensor(t(mask)).set_require_grad(false)),
        };
        (param, Some(state))
    }
}

/// Every diff-pruning state tensor of a module, as burn's traversal shows them: a visitor sees a
/// reparameterized parameter's base first, then the reparameterization's own parameters inside
/// a module named [`DiffPrune::NAME`] (`…weight.diff_pruning.w`, `.log_alpha`, …).
struct States<F> {
    path: Vec<String>,
    on: F,
}

impl<F: FnMut(&str, &str, &Param<Tensor<1>>)> ModuleVisitor for States<F> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let n = self.path.len();
        if D != 1 || n < 3 || self.path[n - 2] != DiffPrune::NAME {
            return;
        }
        let base = self.path[..n - 2].join(".");
        let field = self.path[n - 1].clone();
        let p1: Param<Tensor<1>> = Param::initialized(p.id, p.val().reshape([-1]));
        (self.on)(&base, &field, &p1);
    }
}

fn each_state<M: Module>(module: &M, on: impl FnMut(&str, &str, &Param<Tensor<1>>)) {
    let mut v = States {
        path: Vec::new(),
        on,
    };
    module.visit(&mut v);
}

fn is_gate(field: &str) -> bool {
    field == "log_alpha" || field == "group_log_alpha"
}

/// Σ σ(α − log(−l/r)) over every gate of `module` (per scalar and per tensor), on its device:
/// the expected number of open gates, before the weight λ.
pub fn expected_open_gates<M: Module>(module: &M) -> Option<Tensor<1>> {
    let (l, r) = STRETCH;
    let mut acc: Option<Tensor<1>> = None;
    each_state(module, |_, field, p| {
        if is_gate(field) {
            let s = sigmoid(p.val() - (-l / r).ln()).sum();
            acc = Some(match acc.take() {
                Some(a) => a + s,
                None => s,
            });
        }
    });
    acc
}

/// The ids of the gate log-odds (their own optimizer group).
pub fn gate_param_ids<M: Module>(module: &M) -> Vec<burn::module::ParamId> {
    let mut ids = Vec::new();
    each_state(module, |_, field, p| {
        if is_gate(field) {
            ids.push(p.id);
        }
    });
    ids
}

/// Every per-scalar gate log-odds α of `module`, flattened in traversal order (diagnostics, tests).
pub fn log_alphas<M: Module>(module: &M) -> Vec<f32> {
    let mut out = Vec::new();
    each_state(module, |_, field, p| {
        if field == "log_alpha" {
            out.extend(p.val().into_data().try_into_vec_as::<f32>().expect("f32"));
        }
    });
    out
}

/// One tensor's phase-1 state read back: its burn path, raw `w`, and one gate draw of `z₂·z`.
pub struct Drawn {
    pub path: String,
    pub w: Vec<f32>,
    pub gate: Vec<f32>,
}

/// Read every diff-pruned tensor of `module` and draw its gates once from `rng` (the reference
/// projects the diff of its last sampled gates).
pub fn draw<M: Module>(module: &M, rng: &mut rand::rngs::StdRng) -> Vec<Drawn> {
    use rand::Rng;
    // base path → field → values, in traversal order
    let mut states: Vec<(String, HashMap<String, Vec<f32>>)> = Vec::new();
    each_state(module, |base, field, p| {
        if states.last().is_none_or(|(b, _)| b != base) {
            states.push((base.to_string(), HashMap::new()));
        }
        let v = p.val().into_data().try_into_vec_as::<f32>().expect("f32");
        states
            .last_mut()
            .expect("pushed")
            .1
            .insert(field.to_string(), v);
    });
    states
        .into_iter()
        .map(|(path, mut f)| {
            let w = f.remove("w").expect("a diff state has w");
            let group = f
                .get("group_log_alpha")
                .map_or(1.0, |g| gate(f64::from(g[0]), rng.random::<f64>()) as f32);
            let gate_vals = match f.get("log_alpha") {
                Some(a) => a
                    .iter()
                    .map(|&a| group * gate(f64::from(a), rng.random::<f64>()) as f32)
                    .collect(),
                None => vec![group; w.len()],
            };
            Drawn {
                path,
                w,
                gate: gate_vals,
            }
        })
        .collect()
}

/// Each diff-pruned tensor's raw phase-1 `w` and its 0/1 mask, by burn path.
pub type Masks = HashMap<String, (Vec<f32>, Vec<f32>)>;

/// What the projection kept.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    pub threshold: f32,
    /// nonzero diff scalars kept
    pub kept: usize,
    /// every scalar of the diff-pruned tensors
    pub diff_scalars: usize,
}

/// Phase 2: cut the drawn diffs `gate⊙w` to `share` of `total` parameters (`always` of them —
/// the dense head — counted as nonzero), returning each tensor's raw `w` and 0/1 mask by path.
pub fn project(drawn: Vec<Drawn>, always: usize, total: usize, share: f64) -> (Masks, Projection) {
    let abs: Vec<f32> = drawn
        .iter()
        .flat_map(|d| d.w.iter().zip(&d.gate).map(|(w, g)| (w * g).abs()))
        .collect();
    let threshold = projection_threshold(&abs, always, total, share);
    let mut kept = 0;
    let mut out = HashMap::new();
    for d in drawn {
        let mask: Vec<f32> =
            d.w.iter()
                .zip(&d.gate)
                .map(|(w, g)| {
                    let keep = (w * g).abs() >= threshold && w * g != 0.0;
                    kept += usize::from(keep);
                    f32::from(u8::from(keep))
                })
                .collect();
        out.insert(d.path, (d.w, mask));
    }
    let projection = Projection {
        threshold,
        kept,
        diff_scalars: abs.len(),
    };
    (out, projection)
}
