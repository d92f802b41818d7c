//! Compute backends, picked at run time: `ndarray` (default, embedded), `flex` (burn's newer
//! pure-Rust CPU backend) and `tch` (libtorch, CPU or CUDA; only with the `tch` cargo feature).

use std::fmt;

use anyhow::{Result, bail};
use burn::prelude::Device;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    #[default]
    Ndarray,
    Flex,
    /// libtorch on the CPU
    Tch,
    /// libtorch on CUDA device 0
    TchCuda,
}

impl Backend {
    pub const ALL: [Backend; 4] = [
        Backend::Ndarray,
        Backend::Flex,
        Backend::Tch,
        Backend::TchCuda,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Ndarray => "ndarray",
            Backend::Flex => "flex",
            Backend::Tch => "tch",
            Backend::TchCuda => "tch-cuda",
        }
    }

    /// Whether this binary was built with the backend.
    pub fn compiled(self) -> bool {
        match self {
            Backend::Ndarray | Backend::Flex => true,
            Backend::Tch | Backend::TchCuda => cfg!(feature = "tch"),
        }
    }

    /// The inference device (no autodiff).
    #[allow(deprecated)]
    pub fn device(self) -> Result<Device> {
        if !self.compiled() {
            bail!(
                "backend `{}` is not in this build; rebuild with `--features tch` (see README: libtorch backend)",
                self.name()
            );
        }
        Ok(match self {
            Backend::Ndarray => Device::ndarray(),
            Backend::Flex => Device::flex(),
            #[cfg(feature = "tch")]
            Backend::Tch => Device::libtorch(),
            #[cfg(feature = "tch")]
            Backend::TchCuda => Device::libtorch_cuda(0),
            #[cfg(not(feature = "tch"))]
            Backend::Tch | Backend::TchCuda => unreachable!("checked by compiled()"),
        })
    }
}

/// burn-ndarray's matmul (matrixmultiply) starts its own helper threads inside rayon's batch
/// workers, so on 2 cores three threads compete for two. One matrixmultiply thread per rayon
/// worker measured ≈10% faster full-FT steps on MiniLM's shape (BENCHMARKS.md). A value the user
/// set is kept. Call first thing in `main`, before any thread exists.
pub fn default_matmul_threads() {
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        // SAFETY: called at the top of main, while the process is single-threaded
        unsafe { std::env::set_var("MATMUL_NUM_THREADS", "1") };
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Backend::ALL
            .iter()
            .copied()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                anyhow::anyhow!("unknown backend `{s}`; valid: ndarray, flex, tch, tch-cuda")
            })
    }
}
