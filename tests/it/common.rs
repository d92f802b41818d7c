//! Paths and fixture readers shared by the tests.
#![allow(dead_code)]
use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    repo().join("tests/fixtures")
}

/// `../shared/data` (CI lays shared/ beside the clone), or `$BITFIT_SHARED_DATA`.
pub fn shared_data() -> PathBuf {
    std::env::var_os("BITFIT_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data"))
}

/// The MiniLM folder, or None (with a message) when it is absent and not required.
/// CI sets BITFIT_REQUIRE_MINILM=1, so there a missing model fails instead of skipping.
pub fn minilm() -> Option<PathBuf> {
    let dir = std::env::var_os("BITFIT_MINILM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models/all-MiniLM-L6-v2"));
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    if std::env::var_os("BITFIT_REQUIRE_MINILM").is_some() {
        panic!(
            "BITFIT_REQUIRE_MINILM is set but {} has no model.safetensors; run scripts/fetch_minilm.sh",
            dir.display()
        );
    }
    eprintln!(
        "SKIPPED: all-MiniLM-L6-v2 not found at {} (run scripts/fetch_minilm.sh)",
        dir.display()
    );
    None
}

/// The repro binary, run from the repository root.
pub fn repro() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_repro"));
    c.current_dir(repo());
    c
}

/// Run `cmd`, assert that it succeeded, and return its stdout followed by its stderr.
pub fn succeed(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

pub struct Tensors {
    bytes: Vec<u8>,
}

impl Tensors {
    pub fn open(path: impl Into<PathBuf>) -> Tensors {
        let path = path.into();
        Tensors {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }
    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).unwrap()
    }
    pub fn names(&self) -> Vec<String> {
        self.st()
            .names()
            .into_iter()
            .map(|s| s.to_string())
            .collect()
    }
    pub fn shape(&self, name: &str) -> Vec<usize> {
        self.st().tensor(name).unwrap().shape().to_vec()
    }
    pub fn f32(&self, name: &str) -> Vec<f32> {
        let st = self.st();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("fixture has no tensor {name}"));
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
    pub fn i64(&self, name: &str) -> Vec<i64> {
        let st = self.st();
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::I64, "{name}");
        t.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

/// max |a - b|
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The backends this build has: ndarray and flex, plus libtorch with `--features tch` (the
/// documented libtorch check runs the same tests on it), and libtorch on CUDA where
/// `BITFIT_TEST_CUDA=1` says a GPU is there (scripts/gpu_check.sh).
pub fn test_backends() -> Vec<bitfit_repro::backend::Backend> {
    use bitfit_repro::backend::Backend;
    let mut v: Vec<Backend> = [Backend::Ndarray, Backend::Flex, Backend::Tch]
        .into_iter()
        .filter(|b| b.compiled())
        .collect();
    if gpu_tests() {
        v.push(Backend::TchCuda);
    }
    v
}

/// Whether to run the equivalence tests on the GPU too (`BITFIT_TEST_CUDA=1`, a `tch` build).
pub fn gpu_tests() -> bool {
    bitfit_repro::backend::Backend::TchCuda.compiled()
        && std::env::var_os("BITFIT_TEST_CUDA").is_some_and(|v| v == "1")
}

/// A batch from a golden fixture's nested lists.
pub fn golden_batch(
    input_ids: &[Vec<i64>],
    token_type_ids: &[Vec<i64>],
    attention_mask: &[Vec<i64>],
) -> bitfit_repro::tokenize::Batch {
    bitfit_repro::tokenize::Batch {
        batch_size: input_ids.len(),
        seq_len: input_ids[0].len(),
        input_ids: input_ids.concat(),
        token_type_ids: token_type_ids.concat(),
        attention_mask: attention_mask.concat(),
    }
}

/// Drive `trainer` through a golden run's steps on `batch` and check it against the PyTorch
/// reference: each step's loss (≤ 1e-4 relative) and gradient norm (≤ 1e-3 relative), then every
/// trained tensor in `file` (≤ 1e-4 of its largest magnitude). `label` names the case in failures.
#[allow(clippy::too_many_arguments)]
pub fn check_golden_steps(
    trainer: &mut bitfit_repro::finetune::Trainer,
    batch: &bitfit_repro::tokenize::Batch,
    targets: &bitfit_repro::finetune::train::Targets,
    lr: f64,
    losses: &[f64],
    grad_norms: &[f64],
    file: &Tensors,
    label: &str,
) {
    for (s, (want_loss, want_norm)) in losses.iter().zip(grad_norms).enumerate() {
        let (loss, stats) = trainer.step(batch, targets, lr);
        let rel = (loss - want_loss).abs() / want_loss.abs();
        assert!(
            rel <= 1e-4,
            "{label} step {s}: loss {loss} vs PyTorch {want_loss} (rel {rel:.2e})"
        );
        let reln = (stats.grad_norm - want_norm).abs() / want_norm;
        assert!(
            reln <= 1e-3,
            "{label} step {s}: grad norm {} vs {want_norm}",
            stats.grad_norm
        );
    }
    let mut worst = 0f32;
    for t in trainer.model().hf_task_tensors(|_, req| req) {
        let reference = file.f32(&t.name);
        let scale = reference.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-3);
        let d = max_abs_diff(&t.values, &reference) / scale;
        worst = worst.max(d);
        assert!(
            d <= 1e-4,
            "{label}: {} differs from PyTorch after {} steps (max rel {d:.2e})",
            t.name,
            losses.len()
        );
    }
    eprintln!(
        "{label}: {} steps match, worst tensor rel diff {worst:.2e}",
        losses.len()
    );
}
