//! Declarative experiment grids (TOML) that expand to runs.
//!
//! ```toml
//! name = "quickstart"            # default: the file stem; the store is results/<name>/
//! store = "results/quickstart"   # optional
//! [base]                         # settings shared by every run
//! model = "models/all-MiniLM-L6-v2"
//! epochs = 3
//! [axes]                         # cartesian product
//! task = ["SST-2", "MRPC"]
//! seed = [0, 1, 2]
//! [[zip]]                        # axes that vary together (one value from each, in step)
//! method = ["full_ft", "bitfit", "frozen"]
//! lr = [2e-5, 1e-3, 1e-3]
//! [[override]]                   # special cases
//! when = { task = "MNLI" }
//! set = { epochs = 32 }
//! ```
//! Every setting key may appear in `[base]`, as an axis, in a zip group or in an override.
//! Mistakes (unknown keys, wrong types, empty axes, unknown tasks/methods/bias names) are errors
//! that name the key, the file and the line, and the valid choices.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;
use toml::{Spanned, Value};

use crate::backend::Backend;
use crate::data::Task;
use crate::finetune::train::Schedule;
use crate::finetune::{AdamWConfig, Method, TrainConfig};
use crate::model::HeadPooling;

/// Every key a run setting can have, with what it takes (shown in errors).
pub const SETTINGS: &[(&str, &str)] = &[
    (
        "task",
        "a GLUE task: CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI",
    ),
    (
        "method",
        "full_ft, bitfit, frozen, b_q+b_m2 (bias kinds b_q b_k b_v b_m1 b_LN1 b_m2 b_m3 b_LN2), ref:query,…",
    ),
    ("lr", "a learning rate, e.g. 1e-3"),
    ("seed", "an integer run seed"),
    ("data_seed", "an integer seed for the training-size subset"),
    (
        "train_size",
        "an integer number of training examples, or \"all\"",
    ),
    ("model", "an HF model folder or hub id"),
    ("data", "a GLUE folder or hf:nyu-mll/glue"),
    ("backend", "ndarray, flex, tch, tch-cuda"),
    ("epochs", "an integer"),
    (
        "min_steps",
        "an integer floor on optimizer steps (more epochs for small training sets)",
    ),
    ("batch_size", "an integer"),
    ("max_length", "an integer"),
    ("head", "pooler, cls, mean"),
    ("eval_train", "true/false"),
    ("eval_size", "an integer number of dev examples, or \"all\""),
    ("pad_to_max_length", "true/false"),
    ("warmup_ratio", "a fraction; 0 = constant learning rate"),
    ("beta1", "a number"),
    ("beta2", "a number"),
    ("eps", "a number"),
    ("weight_decay", "a number"),
    ("max_grad_norm", "a number; 0 = no clipping"),
];

/// Plural spellings researchers type for axes.
fn canonical_key(k: &str) -> &str {
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

/// Settings of one run, every field optional; the typed form of a settings table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    task: Option<String>,
    method: Option<String>,
    lr: Option<f64>,
    seed: Option<u64>,
    data_seed: Option<u64>,
    train_size: Option<SizeOrAll>,
    model: Option<String>,
    data: Option<String>,
    backend: Option<String>,
    epochs: Option<usize>,
    min_steps: Option<usize>,
    batch_size: Option<usize>,
    max_length: Option<usize>,
    head: Option<String>,
    eval_train: Option<bool>,
    eval_size: Option<SizeOrAll>,
    pad_to_max_length: Option<bool>,
    warmup_ratio: Option<f64>,
    beta1: Option<f64>,
    beta2: Option<f64>,
    eps: Option<f64>,
    weight_decay: Option<f64>,
    max_grad_norm: Option<f64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum SizeOrAll {
    N(usize),
    All(String),
}

impl SizeOrAll {
    fn get(&self) -> Result<Option<usize>> {
        match self {
            SizeOrAll::N(n) => Ok(Some(*n)),
            SizeOrAll::All(s) if s == "all" => Ok(None),
            SizeOrAll::All(s) => bail!("`{s}` is neither an integer nor \"all\""),
        }
    }
}

type SpannedTable = BTreeMap<Spanned<String>, Spanned<Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GridFile {
    name: Option<String>,
    description: Option<String>,
    store: Option<String>,
    #[serde(default)]
    base: SpannedTable,
    #[serde(default)]
    axes: SpannedTable,
    #[serde(default)]
    zip: Vec<SpannedTable>,
    #[serde(default, rename = "override")]
    overrides: Vec<OverrideFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideFile {
    when: SpannedTable,
    set: SpannedTable,
}

/// Where a setting came from, for error messages.
#[derive(Clone, Debug)]
struct Origin(String);

/// A parsed, validated grid.
#[derive(Clone, Debug)]
pub struct Grid {
    pub name: String,
    pub description: Option<String>,
    pub store: PathBuf,
    pub file: PathBuf,
    base: BTreeMap<String, Value>,
    /// cartesian axes and zip groups: each entry a list of keys and, per position, their values
    axes: Vec<(Vec<String>, Vec<Vec<Value>>)>,
    overrides: Vec<(BTreeMap<String, Value>, BTreeMap<String, Value>)>,
    origins: BTreeMap<String, Origin>,
}

/// One expanded cell of a grid: its settings and the training configuration they resolve to.
#[derive(Clone, Debug)]
pub struct Cell {
    pub settings: BTreeMap<String, Value>,
    pub config: TrainConfig,
}

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

fn valid_keys() -> String {
    SETTINGS
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Check one key/value; `at` says where it came from.
fn check_setting(key: &str, value: &Value, at: &str) -> Result<()> {
    let Some((_, what)) = SETTINGS.iter().find(|(k, _)| *k == key) else {
        bail!("{at}: unknown key `{key}`; valid keys: {}", valid_keys());
    };
    let mut t = toml::Table::new();
    t.insert(key.to_string(), value.clone());
    let s: Settings = Value::Table(t).try_into().map_err(|e: toml::de::Error| {
        anyhow!(
            "{at}: key `{key}` = {value}: {} (expected {what})",
            e.message().trim()
        )
    })?;
    let semantic = || -> Result<()> {
        if let Some(t) = &s.task {
            t.parse::<Task>()?;
        }
        if let Some(m) = &s.method {
            Method::parse(m)?;
        }
        if let Some(b) = &s.backend {
            b.parse::<Backend>()?;
        }
        if let Some(h) = &s.head {
            h.parse::<HeadPooling>()?;
        }
        if let Some(n) = &s.train_size {
            n.get()?;
        }
        if let Some(n) = &s.eval_size {
            n.get()?;
        }
        for (k, v) in [("lr", s.lr), ("eps", s.eps)] {
            if v.is_some_and(|v| v <= 0.0 || !v.is_finite()) {
                bail!("`{k}` must be a positive number");
            }
        }
        if s.warmup_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            bail!("`warmup_ratio` must be between 0 and 1");
        }
        for (k, v) in [
            ("epochs", s.epochs),
            ("batch_size", s.batch_size),
            ("max_length", s.max_length),
        ] {
            if v == Some(0) {
                bail!("`{k}` must be at least 1");
            }
        }
        Ok(())
    };
    semantic().map_err(|e| anyhow!("{at}: key `{key}` = {value}: {e}"))
}

impl Grid {
    pub fn from_file(path: &Path) -> Result<Grid> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("{}: cannot read grid file: {e}", path.display()))?;
        Grid::parse(&src, path)
    }

    /// Parse grid text; `path` names the file in errors and gives the default name.
    pub fn parse(src: &str, path: &Path) -> Result<Grid> {
        let file = path.display().to_string();
        let g: GridFile = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| line_of(src, s.start)).unwrap_or(0);
            let msg = e.message().trim().replace('\n', " ");
            let hint = if msg.contains("unknown field") {
                " (top-level keys: name, description, store, [base], [axes], [[zip]], [[override]])"
            } else {
                ""
            };
            anyhow!("{file}:{line}: {msg}{hint}")
        })?;
        let at = |s: &Spanned<String>| format!("{file}:{}", line_of(src, s.span().start));
        let mut origins = BTreeMap::new();
        let mut base = BTreeMap::new();
        for (k, v) in &g.base {
            let key = canonical_key(k.get_ref()).to_string();
            let where_ = format!("{} [base]", at(k));
            if v.get_ref().is_array() {
                bail!(
                    "{where_}: key `{key}` is a list; lists belong in [axes] (or a [[zip]] group)"
                );
            }
            check_setting(&key, v.get_ref(), &where_)?;
            origins.insert(key.clone(), Origin(where_));
            base.insert(key, v.get_ref().clone());
        }
        let mut axes: Vec<(Vec<String>, Vec<Vec<Value>>)> = Vec::new();
        let claim = |key: &str,
                     where_: &str,
                     origins: &mut BTreeMap<String, Origin>|
         -> Result<()> {
            if let Some(Origin(prev)) = origins.get(key) {
                bail!("{where_}: key `{key}` is already set at {prev}; set each key in one place");
            }
            origins.insert(key.to_string(), Origin(where_.to_string()));
            Ok(())
        };
        for (k, v) in &g.axes {
            let key = canonical_key(k.get_ref()).to_string();
            let where_ = format!("{} [axes]", at(k));
            let values = axis_values(&key, v.get_ref(), &where_)?;
            claim(&key, &where_, &mut origins)?;
            axes.push((vec![key], values.into_iter().map(|v| vec![v]).collect()));
        }
        for (gi, group) in g.zip.iter().enumerate() {
            let mut keys = Vec::new();
            let mut cols: Vec<Vec<Value>> = Vec::new();
            for (k, v) in group {
                let key = canonical_key(k.get_ref()).to_string();
                let where_ = format!("{} [[zip]] #{}", at(k), gi + 1);
                let values = axis_values(&key, v.get_ref(), &where_)?;
                if let Some(first) = cols.first()
                    && first.len() != values.len()
                {
                    bail!(
                        "{where_}: key `{key}` has {} values but `{}` in the same zip group has {}; zipped lists must be equally long",
                        values.len(),
                        keys[0],
                        first.len()
                    );
                }
                claim(&key, &where_, &mut origins)?;
                keys.push(key);
                cols.push(values);
            }
            if keys.is_empty() {
                bail!(
                    "{file}: [[zip]] #{} is empty; give it two or more lists of equal length",
                    gi + 1
                );
            }
            let rows = (0..cols[0].len())
                .map(|r| cols.iter().map(|c| c[r].clone()).collect())
                .collect();
            axes.push((keys, rows));
        }
        let mut overrides = Vec::new();
        for (oi, o) in g.overrides.iter().enumerate() {
            let mut when = BTreeMap::new();
            let mut set = BTreeMap::new();
            for (part, src_t, dst) in [("when", &o.when, &mut when), ("set", &o.set, &mut set)] {
                for (k, v) in src_t {
                    let key = canonical_key(k.get_ref()).to_string();
                    let where_ = format!("{} [[override]] #{} {part}", at(k), oi + 1);
                    check_setting(&key, v.get_ref(), &where_)?;
                    dst.insert(key, v.get_ref().clone());
                }
            }
            if when.is_empty() {
                bail!(
                    "{file}: [[override]] #{}: `when` is empty; name the cells it applies to",
                    oi + 1
                );
            }
            overrides.push((when, set));
        }
        let name = g.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "grid".into())
        });
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            bail!("{file}: name `{name}` must be a plain folder name (no slashes)");
        }
        let store = g
            .store
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new("results").join(&name));
        let grid = Grid {
            name,
            description: g.description,
            store,
            file: path.to_path_buf(),
            base,
            axes,
            overrides,
            origins,
        };
        grid.check_required()?;
        Ok(grid)
    }

    fn check_required(&self) -> Result<()> {
        for key in ["task", "method", "lr"] {
            if !self.origins.contains_key(key) {
                bail!(
                    "{}: no `{key}` given; set it in [base] or as an axis ({})",
                    self.file.display(),
                    SETTINGS
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, w)| *w)
                        .unwrap_or("")
                );
            }
        }
        Ok(())
    }

    /// Apply `--set key=value` (value in TOML syntax; bare words are strings; lists become axes).
    pub fn apply_set(&mut self, assignment: &str) -> Result<()> {
        let (k, raw) = assignment.split_once('=').ok_or_else(|| {
            anyhow!(
                "--set {assignment}: expected key=value, e.g. --set epochs=3 or --set seeds=[0,1]"
            )
        })?;
        let key = canonical_key(k.trim()).to_string();
        let raw = raw.trim();
        let value: Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| Value::String(raw.to_string()));
        let at = format!("--set {key}");
        if key == "store" {
            self.store = PathBuf::from(value.as_str().unwrap_or(raw));
            return Ok(());
        }
        // the CLI wins: drop the key from wherever the file set it, overrides included
        self.base.remove(&key);
        for (_, set) in &mut self.overrides {
            set.remove(&key);
        }
        for (keys, rows) in &mut self.axes {
            if let Some(i) = keys.iter().position(|x| *x == key) {
                if keys.len() > 1 {
                    bail!(
                        "{at}: `{key}` is zipped with {:?} in the grid file; change the file instead",
                        keys
                    );
                }
                keys.remove(i);
                rows.clear();
            }
        }
        self.axes.retain(|(keys, _)| !keys.is_empty());
        if value.is_array() {
            let values = axis_values(&key, &value, &at)?;
            self.axes.push((
                vec![key.clone()],
                values.into_iter().map(|v| vec![v]).collect(),
            ));
        } else {
            check_setting(&key, &value, &at)?;
            self.base.insert(key.clone(), value);
        }
        self.origins.insert(key, Origin(at));
        Ok(())
    }

    /// All cells, in a stable order: axes sorted by key, then zip groups in file order; values in
    /// list order, the last axis varying fastest.
    pub fn expand(&self) -> Result<Vec<Cell>> {
        let mut cells: Vec<BTreeMap<String, Value>> = vec![self.base.clone()];
        for (keys, rows) in &self.axes {
            let mut next = Vec::with_capacity(cells.len() * rows.len());
            for c in &cells {
                for row in rows {
                    let mut c = c.clone();
                    for (k, v) in keys.iter().zip(row) {
                        c.insert(k.clone(), v.clone());
                    }
                    next.push(c);
                }
            }
            cells = next;
        }
        for c in cells.iter_mut() {
            for (when, set) in &self.overrides {
                if when
                    .iter()
                    .all(|(k, v)| c.get(k).is_some_and(|x| same(x, v)))
                {
                    for (k, v) in set {
                        c.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        cells
            .into_iter()
            .map(|settings| {
                let config = resolve(&settings)?;
                Ok(Cell { settings, config })
            })
            .collect()
    }
}

/// Task names compare loosely (`sst2` = `SST-2`); everything else exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(x), Some(y)) => match (x.parse::<Task>(), y.parse::<Task>()) {
            (Ok(p), Ok(q)) => p == q,
            _ => x == y,
        },
        _ => a == b,
    }
}

fn axis_values(key: &str, v: &Value, at: &str) -> Result<Vec<Value>> {
    let Some(list) = v.as_array() else {
        bail!(
            "{at}: axis `{key}` must be a list, e.g. {key} = [..]; single values belong in [base]"
        );
    };
    if list.is_empty() {
        bail!("{at}: axis `{key}` is empty; give at least one value");
    }
    for x in list {
        check_setting(key, x, at)?;
    }
    Ok(list.clone())
}

/// Turn one cell's settings (validated) into a training configuration, with the defaults of the
/// reference code for anything unset.
pub fn resolve(settings: &BTreeMap<String, Value>) -> Result<TrainConfig> {
    let table: toml::Table = settings
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let s: Settings = Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| anyhow!("{}", e.message()))?;
    let task: Task = s
        .task
        .as_deref()
        .ok_or_else(|| anyhow!("no task"))?
        .parse()?;
    let method = Method::parse(s.method.as_deref().ok_or_else(|| anyhow!("no method"))?)?;
    let lr = s.lr.ok_or_else(|| anyhow!("no lr"))?;
    let model = PathBuf::from(s.model.unwrap_or_else(|| "models/all-MiniLM-L6-v2".into()));
    let data = PathBuf::from(s.data.unwrap_or_else(|| "../shared/data/glue".into()));
    let mut c = TrainConfig::reference(task, model, data, method, lr);
    let d = AdamWConfig::default();
    c.optimizer = AdamWConfig {
        beta1: s.beta1.unwrap_or(d.beta1),
        beta2: s.beta2.unwrap_or(d.beta2),
        eps: s.eps.unwrap_or(d.eps),
        weight_decay: s.weight_decay.unwrap_or(d.weight_decay),
        max_grad_norm: match s.max_grad_norm {
            Some(x) if x <= 0.0 => None,
            Some(x) => Some(x),
            None => d.max_grad_norm,
        },
    };
    c.seed = s.seed.unwrap_or(0);
    c.data_seed = s.data_seed.unwrap_or(0);
    c.train_size = s.train_size.map(|x| x.get()).transpose()?.flatten();
    c.eval_size = s.eval_size.map(|x| x.get()).transpose()?.flatten();
    c.backend = s
        .backend
        .as_deref()
        .map(str::parse)
        .transpose()?
        .unwrap_or_default();
    c.epochs = s.epochs.unwrap_or(c.epochs);
    c.min_steps = s.min_steps;
    c.batch_size = s.batch_size.unwrap_or(c.batch_size);
    c.max_length = s.max_length.unwrap_or(c.max_length);
    c.head = s
        .head
        .as_deref()
        .map(str::parse)
        .transpose()?
        .unwrap_or_default();
    c.eval_train = s.eval_train.unwrap_or(c.eval_train);
    c.pad_to_max_length = s.pad_to_max_length.unwrap_or(false);
    c.schedule = match s.warmup_ratio {
        Some(r) if r > 0.0 => Schedule::Linear { warmup_ratio: r },
        _ => Schedule::Constant,
    };
    Ok(c)
}
