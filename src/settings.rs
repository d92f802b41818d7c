//! Every run setting, defined once: its key, what it takes, how it is checked and where it lands
//! in a [`TrainConfig`]. The grid's keys (`[base]`, `[axes]`, `[[zip]]`, `[[override]]`,
//! `--set`), the `repro train` flags (`--batch-size` for `batch_size`, …) and the stored config
//! all come from [`SETTINGS`]; the defaults are [`TrainConfig::default`]'s (the reference code's).
//!
//! A new setting is one row here plus its field in [`TrainConfig`] (left out of the stored config
//! when unset — `#[serde(skip_serializing_if = …)]` — so the ids of finished runs do not move).

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use toml::Value;

use crate::backend::Backend;
use crate::data::Task;
use crate::finetune::train::Schedule;
use crate::finetune::{Method, TrainConfig};
use crate::model::HeadPooling;

/// One run setting.
pub struct Setting {
    /// the grid key (`repro train` flag: the same with `-` for `_`)
    pub key: &'static str,
    /// what it takes, shown in errors and in `repro train --help`
    pub doc: &'static str,
    /// a grid must give it (in `[base]` or as an axis)
    pub required_in_grid: bool,
    /// check `value` and set it on `config`
    pub apply: fn(&mut TrainConfig, &Value) -> Result<()>,
    /// the value `config` holds for this setting, as TOML (help text, defaults)
    pub show: fn(&TrainConfig) -> String,
}

fn string(v: &Value) -> Result<&str> {
    v.as_str()
        .ok_or_else(|| anyhow!("invalid type: {}, expected a string", v.type_str()))
}

fn integer(v: &Value) -> Result<usize> {
    match v.as_integer() {
        Some(n) if n >= 0 => Ok(n as usize),
        Some(n) => bail!("{n} is negative"),
        None => bail!("invalid type: {}, expected an integer", v.type_str()),
    }
}

fn positive(v: &Value) -> Result<usize> {
    match integer(v)? {
        0 => bail!("must be at least 1"),
        n => Ok(n),
    }
}

fn number(v: &Value) -> Result<f64> {
    match v {
        Value::Float(x) => Ok(*x),
        Value::Integer(n) => Ok(*n as f64),
        _ => bail!("invalid type: {}, expected a number", v.type_str()),
    }
}

fn boolean(v: &Value) -> Result<bool> {
    v.as_bool()
        .ok_or_else(|| anyhow!("invalid type: {}, expected a boolean", v.type_str()))
}

/// An integer, or `"all"` (None).
fn size_or_all(v: &Value) -> Result<Option<usize>> {
    match v {
        Value::String(s) if s == "all" => Ok(None),
        Value::String(s) => bail!("`{s}` is neither an integer nor \"all\""),
        _ => integer(v).map(Some),
    }
}

fn some_or_all(n: Option<usize>) -> String {
    n.map_or("\"all\"".into(), |n| n.to_string())
}

fn quoted(s: impl std::fmt::Display) -> String {
    format!("\"{s}\"")
}

/// Every setting, in the order `repro train --help` lists them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "task",
        doc: "a GLUE task (CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI) or SQuAD (v1.1 span extraction)",
        required_in_grid: true,
        apply: |c, v| {
            c.task = string(v)?.parse::<Task>()?;
            Ok(())
        },
        show: |c| quoted(c.task.name()),
    },
    Setting {
        key: "method",
        doc: crate::finetune::method::METHODS_DOC,
        required_in_grid: true,
        apply: |c, v| {
            c.method = Method::parse(string(v)?)?;
            Ok(())
        },
        show: |c| quoted(&c.method),
    },
    Setting {
        key: "lr",
        doc: "a learning rate, e.g. 1e-3",
        required_in_grid: true,
        apply: |c, v| {
            c.lr = number(v)?;
            if c.lr <= 0.0 || !c.lr.is_finite() {
                bail!("`lr` must be a positive number");
            }
            Ok(())
        },
        show: |c| format!("{:e}", c.lr),
    },
    Setting {
        key: "seed",
        doc: "an integer run seed (data order, head init, dropout, rand_* masks)",
        required_in_grid: false,
        apply: |c, v| {
            c.seed = integer(v)? as u64;
            Ok(())
        },
        show: |c| c.seed.to_string(),
    },
    Setting {
        key: "data_seed",
        doc: "an integer seed for the training-size subset",
        required_in_grid: false,
        apply: |c, v| {
            c.data_seed = integer(v)? as u64;
            Ok(())
        },
        show: |c| c.data_seed.to_string(),
    },
    Setting {
        key: "train_size",
        doc: "an integer number of training examples, or \"all\"",
        required_in_grid: false,
        apply: |c, v| {
            c.train_size = size_or_all(v)?;
            Ok(())
        },
        show: |c| some_or_all(c.train_size),
    },
    Setting {
        key: "model",
        doc: "an HF model folder or hub id",
        required_in_grid: false,
        apply: |c, v| {
            c.model = string(v)?.into();
            Ok(())
        },
        show: |c| quoted(c.model.display()),
    },
    Setting {
        key: "data",
        doc: "a GLUE folder or hf:nyu-mll/glue; for SQuAD a folder with dev-v1.1.json (and train-v1.1.json if you have it)",
        required_in_grid: false,
        apply: |c, v| {
            c.data = string(v)?.into();
            Ok(())
        },
        show: |c| quoted(c.data.display()),
    },
    Setting {
        key: "backend",
        doc: "ndarray, flex, tch, tch-cuda",
        required_in_grid: false,
        apply: |c, v| {
            c.backend = string(v)?.parse::<Backend>()?;
            Ok(())
        },
        show: |c| quoted(c.backend),
    },
    Setting {
        key: "epochs",
        doc: "an integer",
        required_in_grid: false,
        apply: |c, v| {
            c.epochs = positive(v)?;
            Ok(())
        },
        show: |c| c.epochs.to_string(),
    },
    Setting {
        key: "min_steps",
        doc: "an integer floor on optimizer steps (more epochs for small training sets)",
        required_in_grid: false,
        apply: |c, v| {
            c.min_steps = Some(integer(v)?);
            Ok(())
        },
        show: |c| c.min_steps.map_or("none".into(), |n| n.to_string()),
    },
    Setting {
        key: "batch_size",
        doc: "an integer",
        required_in_grid: false,
        apply: |c, v| {
            c.batch_size = positive(v)?;
            Ok(())
        },
        show: |c| c.batch_size.to_string(),
    },
    Setting {
        key: "max_length",
        doc: "an integer (SQuAD: 384 unless given; windows overlap by 128 tokens, or half the window)",
        required_in_grid: false,
        apply: |c, v| {
            c.max_length = positive(v)?;
            Ok(())
        },
        show: |c| c.max_length.to_string(),
    },
    Setting {
        key: "head",
        doc: "pooler, cls, mean (GLUE); SQuAD always trains the span head",
        required_in_grid: false,
        apply: |c, v| {
            c.head = string(v)?.parse::<HeadPooling>()?;
            Ok(())
        },
        show: |c| quoted(c.head),
    },
    Setting {
        key: "eval_train",
        doc: "true/false",
        required_in_grid: false,
        apply: |c, v| {
            c.eval_train = boolean(v)?;
            Ok(())
        },
        show: |c| c.eval_train.to_string(),
    },
    Setting {
        key: "eval_size",
        doc: "an integer number of dev examples, or \"all\"",
        required_in_grid: false,
        apply: |c, v| {
            c.eval_size = size_or_all(v)?;
            Ok(())
        },
        show: |c| some_or_all(c.eval_size),
    },
    Setting {
        key: "eval_train_size",
        doc: "an integer number of training examples scored for the train metrics (a data_seed sample), or \"all\"",
        required_in_grid: false,
        apply: |c, v| {
            c.eval_train_size = size_or_all(v)?;
            Ok(())
        },
        show: |c| some_or_all(c.eval_train_size),
    },
    Setting {
        key: "pad_to_max_length",
        doc: "true/false",
        required_in_grid: false,
        apply: |c, v| {
            c.pad_to_max_length = boolean(v)?;
            Ok(())
        },
        show: |c| c.pad_to_max_length.to_string(),
    },
    Setting {
        key: "save_trained",
        doc: "true/false: keep the trained tensors as delta.safetensors beside the run's record (repro export/eval/predict/submit)",
        required_in_grid: false,
        apply: |c, v| {
            c.save_trained = boolean(v)?;
            Ok(())
        },
        show: |c| c.save_trained.to_string(),
    },
    Setting {
        key: "warmup_ratio",
        doc: "a fraction; 0 = constant learning rate",
        required_in_grid: false,
        apply: |c, v| {
            let r = number(v)?;
            if !(0.0..=1.0).contains(&r) {
                bail!("`warmup_ratio` must be between 0 and 1");
            }
            c.schedule = if r > 0.0 {
                Schedule::Linear { warmup_ratio: r }
            } else {
                Schedule::Constant
            };
            Ok(())
        },
        show: |c| match c.schedule {
            Schedule::Constant => "0".into(),
            Schedule::Linear { warmup_ratio } => warmup_ratio.to_string(),
        },
    },
    Setting {
        key: "beta1",
        doc: "a number",
        required_in_grid: false,
        apply: |c, v| {
            c.optimizer.beta1 = number(v)?;
            Ok(())
        },
        show: |c| c.optimizer.beta1.to_string(),
    },
    Setting {
        key: "beta2",
        doc: "a number",
        required_in_grid: false,
        apply: |c, v| {
            c.optimizer.beta2 = number(v)?;
            Ok(())
        },
        show: |c| c.optimizer.beta2.to_string(),
    },
    Setting {
        key: "eps",
        doc: "a number",
        required_in_grid: false,
        apply: |c, v| {
            c.optimizer.eps = number(v)?;
            if c.optimizer.eps <= 0.0 || !c.optimizer.eps.is_finite() {
                bail!("`eps` must be a positive number");
            }
            Ok(())
        },
        show: |c| format!("{:e}", c.optimizer.eps),
    },
    Setting {
        key: "weight_decay",
        doc: "a number",
        required_in_grid: false,
        apply: |c, v| {
            c.optimizer.weight_decay = number(v)?;
            Ok(())
        },
        show: |c| c.optimizer.weight_decay.to_string(),
    },
    Setting {
        key: "max_grad_norm",
        doc: "a number; 0 = no clipping",
        required_in_grid: false,
        apply: |c, v| {
            let x = number(v)?;
            c.optimizer.max_grad_norm = (x > 0.0).then_some(x);
            Ok(())
        },
        show: |c| c.optimizer.max_grad_norm.unwrap_or(0.0).to_string(),
    },
];

/// The setting called `key` (after [`canonical_key`]).
pub fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// A true/false setting (a bare `--flag` on the command line means true).
pub fn is_switch(s: &Setting) -> bool {
    matches!((s.show)(&TrainConfig::default()).as_str(), "true" | "false")
}

/// Every key, comma-separated (error messages).
pub fn valid_keys() -> String {
    SETTINGS
        .iter()
        .map(|s| s.key)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Plural spellings researchers type for axes.
pub fn canonical_key(k: &str) -> &str {
    match k {
        "tasks" => "task",
        "methods" => "method",
        "lrs" | "learning_rate" | "learning_rates" => "lr",
        "seeds" => "seed",
        "data_seeds" => "data_seed",
        "train_sizes" => "train_size",
        other => other,
    }
}

/// Check one key/value; `at` says where it came from (file:line and section, or `--set key`).
pub fn check(key: &str, value: &Value, at: &str) -> Result<()> {
    let Some(s) = find(key) else {
        bail!("{at}: unknown key `{key}`; valid keys: {}", valid_keys());
    };
    (s.apply)(&mut TrainConfig::default(), value)
        .map_err(|e| anyhow!("{at}: key `{key}` = {value}: {e:#} (expected {})", s.doc))
}

/// Turn one cell's settings into a training configuration: [`TrainConfig::default`] (the
/// reference code's settings) with every given key applied.
pub fn resolve(settings: &BTreeMap<String, Value>) -> Result<TrainConfig> {
    let mut c = TrainConfig::default();
    for (key, value) in settings {
        let s = find(key).ok_or_else(|| anyhow!("unknown key `{key}`"))?;
        (s.apply)(&mut c, value).map_err(|e| anyhow!("key `{key}` = {value}: {e:#}"))?;
    }
    // SQuAD trains the span head on windows of run_qa's default length unless told otherwise
    if c.task.is_span() {
        if settings.contains_key("head") && c.head != HeadPooling::Span {
            bail!(
                "key `head` = \"{}\": SQuAD trains the span head (qa_outputs); remove `head` or set it to \"span\"",
                c.head
            );
        }
        c.head = HeadPooling::Span;
        if !settings.contains_key("max_length") {
            c.max_length = crate::squad::DEFAULT_MAX_LENGTH;
        }
    } else if c.head == HeadPooling::Span {
        bail!(
            "key `head` = \"span\" is SQuAD's span head; {} takes pooler, cls or mean",
            c.task
        );
    }
    Ok(c)
}

/// A command-line value as TOML: `3` → integer, `1e-3` → float, `true` → boolean, `[0,1]` →
/// list; anything that is not a TOML literal (`SST-2`, `b_q+b_m2`) is a string.
pub fn parse_value(raw: &str) -> Value {
    let raw = raw.trim();
    match toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
    {
        // a folder named like a date is a string, not a TOML datetime
        Some(Value::Datetime(_)) | None => match raw.parse::<f64>() {
            // `.001`, `1.` (not TOML floats, but numbers)
            Ok(x) if raw.contains('.') && !raw.contains('/') => Value::Float(x),
            _ => Value::String(raw.to_string()),
        },
        Some(v) => v,
    }
}
