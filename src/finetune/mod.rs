//! Fine-tuning: the paper's methods ([`method`]), the reference optimizer ([`optim`]) and the
//! training loop ([`train`]).

pub mod diff_pruning;
pub mod masks;
pub mod method;
pub mod optim;
pub mod record;
pub mod train;

pub use method::{Method, REFERENCE_BIAS_KEYS, encoder_param_shapes, trainable_encoder_scalars};
pub use optim::{AdamW, AdamWConfig};
pub use train::{RunResult, TrainConfig, Trainer, train};
