//! A run's trained tensors as a small file: BitFit's deployment story. A delta holds only what
//! the method trained (the biases and the task head for BitFit; everything for Full-FT), in the
//! family's HF naming and layout, as safetensors with metadata naming the base model (its
//! digest), the task and its label names, the method, the head and the tokenisation length.
//! Applied to the base model it gives back the trained model exactly.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;

use crate::data::Task;
use crate::finetune::TrainConfig;
use crate::model::{BertClassifier, BertClassifierConfig, Checkpoint, HeadPooling, NamedTensor};

/// What a delta says about itself (the safetensors `__metadata__`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeltaMeta {
    /// sha256 over the base model's files (as the store's `model_digest`)
    pub base_model_digest: String,
    /// the base model as the grid named it
    pub model: String,
    pub task: Task,
    /// label names in output order (empty for regression)
    pub labels: Vec<String>,
    pub method: String,
    pub head: HeadPooling,
    pub max_length: usize,
    /// the run it came from (empty when exported from `repro train`)
    pub run_id: String,
}

/// The delta's file name in a run's folder of the store.
pub const DELTA_FILE: &str = "delta.safetensors";

impl DeltaMeta {
    /// The metadata of a run's delta.
    pub fn of_run(cfg: &TrainConfig, base_model_digest: &str, run_id: &str) -> DeltaMeta {
        DeltaMeta {
            base_model_digest: base_model_digest.to_string(),
            model: cfg.model.to_string_lossy().into_owned(),
            task: cfg.task,
            labels: if cfg.task.is_regression() {
                Vec::new()
            } else {
                cfg.task.labels().iter().map(|l| l.to_string()).collect()
            },
            method: cfg.method.to_string(),
            head: cfg.head,
            max_length: cfg.max_length,
            run_id: run_id.to_string(),
        }
    }
}

/// `repro export`: copy the delta a finished run kept (`save_trained = true`) to `out`; `run` is
/// a run folder or a run id in one of the stores given (default: every store under `results/`).
/// Returns the run's folder and the delta.
pub fn export(run: &str, stores: &[PathBuf], out: &Path) -> Result<(PathBuf, Delta)> {
    let dir = crate::store::find_run(run, stores)?;
    let file = dir.join(DELTA_FILE);
    if !file.is_file() {
        bail!(
            "{}: the run kept no trained tensors; rerun it with `save_trained = true` (a grid setting) \
             or `repro train --save-trained --out FILE`",
            dir.display()
        );
    }
    let delta = Delta::load(&file)?;
    delta.save(out)?;
    Ok((dir, delta))
}

/// The delta files (`*.safetensors`) in a folder, sorted; an error when there are none.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no *.safetensors delta files", dir.display());
    }
    Ok(files)
}

/// A delta: metadata and the trained tensors (HF names and layout).
#[derive(Clone, Debug)]
pub struct Delta {
    pub meta: DeltaMeta,
    pub tensors: Vec<NamedTensor>,
}

impl Delta {
    /// The trained tensors of `model` (those that required gradients).
    pub fn of_model(model: &BertClassifier, meta: DeltaMeta) -> Delta {
        Delta {
            meta,
            tensors: model.hf_task_tensors(|_, trained| trained),
        }
    }

    /// The delta of a run trained outside a store (`repro train --save-trained`): its metadata
    /// names the base model by the digest of the folder `cfg.model` resolves to.
    pub fn of_trained(cfg: &TrainConfig, tensors: Vec<NamedTensor>) -> Result<Delta> {
        let base = crate::hub::resolve_model(&cfg.model.to_string_lossy())?;
        let digest = crate::store::Digests::default().model(&base)?;
        Ok(Delta {
            meta: DeltaMeta::of_run(cfg, &digest, ""),
            tensors,
        })
    }

    /// Scalars the delta holds.
    pub fn scalars(&self) -> usize {
        self.tensors.iter().map(|t| t.values.len()).sum()
    }

    /// Write as safetensors (atomically: temp file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|t| {
                let b: Vec<u8> = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
                (t.name.clone(), b, t.shape.clone())
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(n, b, s)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| anyhow!("{n}: {e}"))
            })
            .collect::<Result<_>>()?;
        let meta_json = serde_json::to_string(&self.meta)?;
        let mut md = HashMap::new();
        md.insert("bitfit_repro_delta".to_string(), meta_json);
        let data = safetensors::tensor::serialize(views, Some(md))
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        crate::store::write_atomic(path, &data)
    }

    /// Read a delta file; a missing, corrupt or foreign file is one error naming it.
    pub fn load(path: &Path) -> Result<Delta> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("{}: cannot read the delta file", path.display()))?;
        let (_, md) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow!("{}: not a safetensors file ({e})", path.display()))?;
        let meta_json = md
            .metadata()
            .as_ref()
            .and_then(|m| m.get("bitfit_repro_delta"))
            .ok_or_else(|| {
                anyhow!(
                    "{}: no delta metadata; write deltas with `save_trained = true` or `repro export`",
                    path.display()
                )
            })?;
        let meta: DeltaMeta = serde_json::from_str(meta_json)
            .map_err(|e| anyhow!("{}: unreadable delta metadata: {e}", path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let mut tensors = Vec::new();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                bail!("{}: tensor {name} is not f32", path.display());
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.push(NamedTensor {
                name,
                shape: view.shape().to_vec(),
                values,
                require_grad: true,
            });
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Delta { meta, tensors })
    }

    /// Refuse a base model other than the one the delta was trained on.
    pub fn check_base(&self, base_digest: &str, base: &Path, file: &Path) -> Result<()> {
        if self.meta.base_model_digest != base_digest {
            bail!(
                "{}: made on base model {} (digest {}), not on {} (digest {}); give the base model it was trained on",
                file.display(),
                self.meta.model,
                short(&self.meta.base_model_digest),
                base.display(),
                short(base_digest)
            );
        }
        Ok(())
    }

    /// Write the delta's tensors into `model` (same family and shapes; anything else is an
    /// error naming the tensor).
    pub fn apply(&self, model: BertClassifier) -> Result<BertClassifier> {
        let by_name: BTreeMap<&str, &NamedTensor> =
            self.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut setter = Setter {
            family: model.family,
            pooling: model.pooling,
            path: Vec::new(),
            tensors: by_name,
            applied: Vec::new(),
            error: None,
        };
        let model = model.map(&mut setter);
        if let Some(e) = setter.error {
            bail!(e);
        }
        let missing: Vec<&str> = setter
            .tensors
            .keys()
            .filter(|n| !setter.applied.contains(&n.to_string()))
            .copied()
            .collect();
        if !missing.is_empty() {
            bail!(
                "the delta has tensors the model does not: {}",
                missing.join(", ")
            );
        }
        Ok(model)
    }

    /// `model` with the extra modules the delta's method trains (LoRA, adapters), whose values
    /// the delta then sets.
    pub fn with_modules(&self, model: BertClassifier) -> Result<BertClassifier> {
        let method = crate::finetune::Method::parse(&self.meta.method)
            .map_err(|e| anyhow!("delta metadata: {e}"))?;
        Ok(crate::finetune::method::add_modules(model, &method, 0))
    }

    /// A classifier for this delta's task on the base checkpoint, with the delta applied.
    pub fn build(&self, ckpt: &Checkpoint, dev: &Device) -> Result<BertClassifier> {
        let (bert, _) = ckpt.load(dev)?;
        let head = BertClassifierConfig {
            num_labels: self.meta.task.num_outputs(),
            pooling: self.meta.head,
            seed: 0,
        };
        let model = self.with_modules(head.init(bert, &ckpt.config, dev))?;
        self.apply(model)
    }
}

fn short(d: &str) -> &str {
    &d[..d.len().min(12)]
}

struct Setter<'a> {
    family: &'static crate::model::Family,
    pooling: crate::model::HeadPooling,
    path: Vec<String>,
    tensors: BTreeMap<&'a str, &'a NamedTensor>,
    applied: Vec<String>,
    error: Option<String>,
}

impl ModuleMapper for Setter<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = crate::model::hf_task_name(self.family, self.pooling, &self.path.join("."));
        let Some(t) = self.tensors.get(name.as_str()) else {
            return p;
        };
        let current = p.val();
        let dims = current.dims();
        let dev = current.device();
        let transposed = crate::model::stored_transposed(&name, D);
        let mut want: Vec<usize> = dims.to_vec();
        if transposed {
            want.reverse();
        }
        if t.shape != want {
            self.error.get_or_insert(format!(
                "delta tensor {name} has shape {:?}, the model's is {want:?}",
                t.shape
            ));
            return p;
        }
        let values = if transposed {
            // HF [out, in] → burn [in, out]
            let (o, i) = (t.shape[0], t.shape[1]);
            let mut v = vec![0f32; o * i];
            for r in 0..o {
                for c in 0..i {
                    v[c * o + r] = t.values[r * i + c];
                }
            }
            v
        } else {
            t.values.clone()
        };
        self.applied.push(name);
        let new: Tensor<D> = Tensor::from_data(TensorData::new(values, dims), &dev);
        Param::from_tensor(new).set_require_grad(false)
    }
}
