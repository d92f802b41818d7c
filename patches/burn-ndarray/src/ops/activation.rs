use crate::{
    NdArray, SharedArray, execute_with_float_dtype, execute_with_numeric_dtype, ops::NdArrayMathOps,
};
use burn_backend::element::cast::ToElement;
use burn_backend::{ElementConversion, TensorMetadata, ops::ActivationOps, tensor::FloatTensor};
use core::f64::consts::{FRAC_1_SQRT_2, PI};
use libm::erf;
use ndarray::Axis;

impl ActivationOps<Self> for NdArray {
    fn relu(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        execute_with_numeric_dtype!(tensor, |array| NdArrayMathOps::clamp_min(array, 0.elem()))
    }

    /// Exact (erf) GELU in one pass: x * Φ(x).
    fn gelu(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        execute_with_float_dtype!(tensor, FloatElem, |array: SharedArray<FloatElem>| {
            crate::parallel::par_mapv_into(array, |x: FloatElem| {
                let x = x.to_f64();
                (0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2))).elem()
            })
        })
    }

    /// The derivative of the exact GELU above, Φ(x) + x·φ(x), in one pass. (The trait's default
    /// differentiates the tanh approximation, which does not match the default `gelu`.)
    fn gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let inv_sqrt_2pi = 1.0 / (2.0 * PI).sqrt();
        execute_with_float_dtype!(
            (x, grad),
            FloatElem,
            |x: SharedArray<FloatElem>, grad: SharedArray<FloatElem>| {
                let mut out = grad.into_owned();
                let step = |g: &mut FloatElem, &x: &FloatElem| {
                    let x = x.to_f64();
                    let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
                    let pdf = inv_sqrt_2pi * (-0.5 * x * x).exp();
                    *g = (g.to_f64() * (cdf + x * pdf)).elem();
                };
                #[cfg(feature = "multi-threads")]
                if out.len() >= crate::parallel::PAR_ELEMWISE_MIN && out.shape() == x.shape() {
                    ndarray::Zip::from(&mut out).and(&x).par_for_each(step);
                    return out.into_shared();
                }
                out.zip_mut_with(&x, step);
                out.into_shared()
            }
        )
    }

    /// Softmax along `dim` in two passes over each lane (max, then exp and sum, then scale),
    /// instead of the default's five whole-tensor ops.
    fn softmax(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        execute_with_float_dtype!(tensor, FloatElem, |array: SharedArray<FloatElem>| {
            let mut out = array.into_owned();
            let lane_softmax = |mut lane: ndarray::ArrayViewMut1<FloatElem>| {
                let max = lane
                    .iter()
                    .fold(f64::NEG_INFINITY, |m, &v| m.max(v.to_f64()));
                let mut sum = 0.0;
                lane.mapv_inplace(|v: FloatElem| {
                    let e = (v.to_f64() - max).exp();
                    sum += e;
                    e.elem()
                });
                let inv = 1.0 / sum;
                lane.mapv_inplace(|v: FloatElem| (v.to_f64() * inv).elem());
            };
            #[cfg(feature = "multi-threads")]
            if out.len() >= crate::parallel::PAR_ELEMWISE_MIN {
                ndarray::Zip::from(out.lanes_mut(Axis(dim))).par_for_each(lane_softmax);
                return out.into_shared();
            }
            out.lanes_mut(Axis(dim)).into_iter().for_each(lane_softmax);
            out.into_shared()
        })
    }
}
