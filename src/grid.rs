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
//! [[exclude]]                    # cells another grid trains (same settings, same run ids)
//! when = { task = "SST-2", method = "full_ft" }
//! reason = "in fig2's store"     # optional, for the reader
//! ```
//! Every setting key may appear in `[base]`, as an axis, in a zip group, in an override or in an
//! exclusion (matched after the overrides; one that matches no cell is an error).
//! Mistakes (unknown keys, wrong types, empty axes, unknown tasks/methods/bias names) are errors
//! that name the key, the file and the line, and the valid choices.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;
use toml::{Spanned, Value};

use crate::data::Task;
use crate::finetune::TrainConfig;
use crate::settings;

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
    #[serde(default, rename = "exclude")]
    excludes: Vec<ExcludeFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExcludeFile {
    when: SpannedTable,
    #[allow(dead_code)]
    reason: Option<String>,
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
    /// `[[exclude]]` conditions: cells matching every key of one are not part of the grid
    excludes: Vec<BTreeMap<String, Value>>,
    /// a `--set` replaced part of the file's grid: an exclusion may then match nothing
    narrowed: bool,
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

impl Grid {
    pub fn from_file(path: &Path) -> Result<Grid> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("{}: cannot read grid file: {e}", path.display()))?;
        Grid::parse(&src, path)
    }

    /// A grid file with `--set key=value` overrides applied in order.
    pub fn load(path: &Path, set: &[String]) -> Result<Grid> {
        let mut g = Grid::from_file(path)?;
        for s in set {
            g.apply_set(s)?;
        }
        Ok(g)
    }

    /// Parse grid text; `path` names the file in errors and gives the default name.
    pub fn parse(src: &str, path: &Path) -> Result<Grid> {
        let file = path.display().to_string();
        let g: GridFile = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| line_of(src, s.start)).unwrap_or(0);
            let msg = e.message().trim().replace('\n', " ");
            let hint = if msg.contains("unknown field") {
                " (top-level keys: name, description, store, [base], [axes], [[zip]], [[override]], [[exclude]])"
            } else {
                ""
            };
            anyhow!("{file}:{line}: {msg}{hint}")
        })?;
        let at = |s: &Spanned<String>| format!("{file}:{}", line_of(src, s.span().start));
        let mut origins = BTreeMap::new();
        let mut base = BTreeMap::new();
        for (k, v) in &g.base {
            let key = settings::canonical_key(k.get_ref()).to_string();
            let where_ = format!("{} [base]", at(k));
            if v.get_ref().is_array() {
                bail!(
                    "{where_}: key `{key}` is a list; lists belong in [axes] (or a [[zip]] group)"
                );
            }
            settings::check(&key, v.get_ref(), &where_)?;
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
            let key = settings::canonical_key(k.get_ref()).to_string();
            let where_ = format!("{} [axes]", at(k));
            let values = axis_values(&key, v.get_ref(), &where_)?;
            claim(&key, &where_, &mut origins)?;
            axes.push((vec![key], values.into_iter().map(|v| vec![v]).collect()));
        }
        for (gi, group) in g.zip.iter().enumerate() {
            let mut keys = Vec::new();
            let mut cols: Vec<Vec<Value>> = Vec::new();
            for (k, v) in group {
                let key = settings::canonical_key(k.get_ref()).to_string();
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
                    let key = settings::canonical_key(k.get_ref()).to_string();
                    let where_ = format!("{} [[override]] #{} {part}", at(k), oi + 1);
                    settings::check(&key, v.get_ref(), &where_)?;
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
        let mut excludes = Vec::new();
        for (ei, x) in g.excludes.iter().enumerate() {
            let mut when = BTreeMap::new();
            for (k, v) in &x.when {
                let key = settings::canonical_key(k.get_ref()).to_string();
                let where_ = format!("{} [[exclude]] #{} when", at(k), ei + 1);
                settings::check(&key, v.get_ref(), &where_)?;
                when.insert(key, v.get_ref().clone());
            }
            if when.is_empty() {
                bail!(
                    "{file}: [[exclude]] #{}: `when` is empty; name the cells to leave out",
                    ei + 1
                );
            }
            excludes.push(when);
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
            excludes,
            narrowed: false,
            origins,
        };
        grid.check_required()?;
        Ok(grid)
    }

    fn check_required(&self) -> Result<()> {
        for key in settings::SETTINGS
            .iter()
            .filter(|s| s.required_in_grid)
            .map(|s| s.key)
        {
            if !self.origins.contains_key(key) {
                bail!(
                    "{}: no `{key}` given; set it in [base] or as an axis ({})",
                    self.file.display(),
                    settings::find(key).map_or("", |s| s.doc)
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
        let key = settings::canonical_key(k.trim()).to_string();
        let raw = raw.trim();
        let value = settings::parse_value(raw);
        let at = format!("--set {key}");
        if key == "store" {
            self.store = PathBuf::from(value.as_str().unwrap_or(raw));
            return Ok(());
        }
        self.narrowed = true;
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
            settings::check(&key, &value, &at)?;
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
        let matches = |c: &BTreeMap<String, Value>, when: &BTreeMap<String, Value>| {
            when.iter()
                .all(|(k, v)| c.get(k).is_some_and(|x| same(x, v)))
        };
        for c in cells.iter_mut() {
            for (when, set) in &self.overrides {
                if matches(c, when) {
                    for (k, v) in set {
                        c.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        for (ei, when) in self.excludes.iter().enumerate() {
            let before = cells.len();
            cells.retain(|c| !matches(c, when));
            if cells.len() == before && !self.narrowed {
                bail!(
                    "{}: [[exclude]] #{} ({}) matches no cell of the grid; fix its `when` or delete it",
                    self.file.display(),
                    ei + 1,
                    when.iter()
                        .map(|(k, v)| format!("{k} = {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
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
        settings::check(key, x, at)?;
    }
    Ok(list.clone())
}

pub use crate::settings::resolve;
