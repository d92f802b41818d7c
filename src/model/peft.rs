//! The extra modules of the parameter-efficient baselines the paper only quoted: LoRA's low-rank
//! update beside a frozen projection, and Houlsby's bottleneck adapter after a sublayer's output
//! projection. Both start as (near) identities of the pretrained model.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal, Uniform};

/// LoRA (Hu et al. 2021): `x·A·B · alpha/r` added to a frozen projection's output. `a` is
/// `[in, r]` (PEFT's `lora_A.weight` transposed), `b` is `[r, out]` (`lora_B.weight` transposed).
#[derive(Module, Debug)]
pub struct Lora {
    pub a: Param<Tensor<2>>,
    pub b: Param<Tensor<2>>,
    #[module(skip)]
    pub scaling: f64,
}

impl Lora {
    /// A as PEFT initialises it (Kaiming uniform with a = √5: U(±1/√in)), B zero, drawn from
    /// `rng` on the CPU so every backend starts alike.
    pub fn init(
        inp: usize,
        out: usize,
        r: usize,
        alpha: f64,
        rng: &mut rand::rngs::StdRng,
        dev: &Device,
    ) -> Lora {
        let bound = 1.0 / (inp as f32).sqrt();
        let u = Uniform::new_inclusive(-bound, bound).expect("valid bounds");
        let a: Vec<f32> = (0..inp * r).map(|_| u.sample(rng)).collect();
        Lora {
            a: Param::from_tensor(Tensor::from_data(TensorData::new(a, [inp, r]), dev)),
            b: Param::from_tensor(Tensor::zeros([r, out], dev)),
            scaling: alpha / r as f64,
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [bsz, s, inp] = x.dims();
        let out = self.b.dims()[1];
        let x2: Tensor<2> = x.reshape([bsz * s, inp]);
        (x2.matmul(self.a.val()).matmul(self.b.val()) * self.scaling).reshape([bsz, s, out])
    }
}

/// A projection plus its optional LoRA update.
pub fn with_lora(base: &Linear, lora: Option<&Lora>, x: Tensor<3>) -> Tensor<3> {
    match lora {
        Some(l) => base.forward(x.clone()) + l.forward(x),
        None => base.forward(x),
    }
}

/// Houlsby et al. (2019)'s adapter: `h + up(gelu(down(h)))`, a bottleneck of `size` units with a
/// residual connection, inserted after a sublayer's output projection (and its dropout), before
/// the residual LayerNorm. Weights N(0, 0.01), biases 0: near the identity at the start.
#[derive(Module, Debug)]
pub struct Adapter {
    pub down: Linear,
    pub up: Linear,
}

impl Adapter {
    pub fn init(hidden: usize, size: usize, rng: &mut rand::rngs::StdRng, dev: &Device) -> Adapter {
        let normal = Normal::new(0.0f32, 0.01).expect("valid normal");
        let mut lin = |i: usize, o: usize| {
            let w: Vec<f32> = (0..i * o).map(|_| normal.sample(rng)).collect();
            let mut l = LinearConfig::new(i, o).init(dev);
            l.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [i, o]), dev));
            l.bias = Some(Param::from_tensor(Tensor::zeros([o], dev)));
            l
        };
        let down = lin(hidden, size);
        let up = lin(size, hidden);
        Adapter { down, up }
    }

    pub fn forward(&self, h: Tensor<3>) -> Tensor<3> {
        let z = self.down.forward(h.clone());
        let z = burn::tensor::activation::gelu(z);
        h + self.up.forward(z)
    }
}

/// A sublayer output plus its optional adapter.
pub fn with_adapter(adapter: Option<&Adapter>, h: Tensor<3>) -> Tensor<3> {
    match adapter {
        Some(a) => a.forward(h),
        None => h,
    }
}

/// A seeded generator for the extra modules (independent of the head's and the masks').
pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed ^ 0x7065_6674) // "peft"
}
