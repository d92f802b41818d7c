//! The results store: one folder per run, named by a content-addressed run id.
//!
//! ```text
//! <store>/runs/<id>/config.json    resolved configuration + digests (written when the run starts)
//! <store>/runs/<id>/epochs.jsonl   one EpochRecord per line, appended as epochs finish
//! <store>/runs/<id>/result.json    the final RunResult; a run is done iff this parses
//! <store>/runs/<id>/status.json    running / done / diverged / failed (+ error, pid, times)
//! <store>/runs/<id>/log.txt        what the run printed
//! <store>/runs/<id>/attempts.log   one line per (re)start: its time
//! <store>/runs/<id>/lock           flock(2)-held while a worker trains the run (not committed)
//! ```
//! Every file is written atomically (temp file + rename), so a kill -9 at any moment leaves
//! either the old or the new file, never half of one; the lock dies with its process.
//!
//! The records are meant to be committed (`results/<grid>/runs/`): they name the model and data
//! as the grid does and hold no host names, process ids or machine-local paths, so a fresh clone
//! holds every finished run and `repro run` trains only what is missing.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow};
use sha2::{Digest, Sha256};

use crate::data::{Glue, Task};
use crate::finetune::TrainConfig;
use crate::finetune::train::{EpochRecord, RunResult};

/// Write `bytes` to `path` atomically: a temp file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{:016x}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut f = File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// The result stores a command reads: the ones given, else every folder under `results/` that
/// holds a `runs/` folder (sorted).
pub fn stores_or_default(given: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir("results")
        .map_err(|e| anyhow!("results/: {e}; run a grid first or pass --results DIR"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("runs").is_dir())
        .collect();
    v.sort();
    Ok(v)
}

/// A run's folder from a folder path, or from a run id looked up in the stores given (default:
/// `stores_or_default`'s).
pub fn find_run(run: &str, given: &[PathBuf]) -> Result<PathBuf> {
    let p = PathBuf::from(run);
    if p.is_dir() {
        return Ok(p);
    }
    let stores = stores_or_default(given)?;
    stores
        .iter()
        .map(|r| r.join("runs").join(run))
        .find(|d| d.is_dir())
        .ok_or_else(|| {
            anyhow!(
                "run `{run}` is neither a run folder nor a run id in {}",
                stores
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn sha256_files(paths: &[&Path]) -> Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for p in paths {
        let mut f = File::open(p).with_context(|| format!("hashing {}", p.display()))?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Digests of the model and data files, cached per (path, size, mtime) so a grid hashes each
/// file once.
#[derive(Default)]
pub struct Digests {
    cache: HashMap<(PathBuf, u64, Option<SystemTime>), String>,
}

impl Digests {
    fn file(&mut self, p: &Path) -> Result<String> {
        let meta = std::fs::metadata(p).with_context(|| format!("reading {}", p.display()))?;
        let key = (p.to_path_buf(), meta.len(), meta.modified().ok());
        if let Some(d) = self.cache.get(&key) {
            return Ok(d.clone());
        }
        let d = sha256_files(&[p])?;
        self.cache.insert(key, d.clone());
        Ok(d)
    }

    /// config.json, weights and tokenizer files of a model folder.
    pub fn model(&mut self, dir: &Path) -> Result<String> {
        let mut parts = Vec::new();
        for f in [
            "config.json",
            "model.safetensors",
            "pytorch_model.bin",
            "tokenizer.json",
            "vocab.txt",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ] {
            let p = dir.join(f);
            if p.is_file() {
                parts.push(format!("{f}:{}", self.file(&p)?));
            }
        }
        if parts.is_empty() {
            return Err(anyhow!("{}: no model files to hash", dir.display()));
        }
        Ok(hex::encode(Sha256::digest(parts.join("\n").as_bytes())))
    }

    /// The train and dev files of `task`.
    pub fn data(&mut self, root: &Path, task: Task) -> Result<String> {
        let glue = Glue::new(root);
        let mut parts = Vec::new();
        let mut splits = vec![crate::data::Split::Train];
        splits.extend_from_slice(task.dev_splits());
        for split in splits {
            for p in glue.locate(task, split)?.paths() {
                parts.push(format!("{split}:{}", self.file(p)?));
            }
        }
        Ok(hex::encode(Sha256::digest(parts.join("\n").as_bytes())))
    }
}

/// The identity of a run: a hash of its resolved configuration (without local paths) and of the
/// digests of the model and data it reads.
pub fn run_id(cfg: &TrainConfig, model_digest: &str, data_digest: &str) -> String {
    let mut v = serde_json::to_value(cfg).expect("config serialises");
    if let Some(o) = v.as_object_mut() {
        o.remove("model");
        o.remove("data");
        o.insert("model_digest".into(), model_digest.into());
        o.insert("data_digest".into(), data_digest.into());
    }
    // serde_json's Map is ordered by key (no preserve_order feature), so this is canonical
    let canonical = serde_json::to_string(&v).expect("json");
    hex::encode(&Sha256::digest(canonical.as_bytes())[..8])
}

/// What the store knows about one run.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    Pending,
    Running,
    /// started, not finished, no live worker (killed): will be restarted
    Interrupted,
    Done,
    Diverged,
    Failed(String),
}

impl RunState {
    pub fn label(&self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Interrupted => "interrupted",
            RunState::Done => "done",
            RunState::Diverged => "diverged",
            RunState::Failed(_) => "failed",
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub status: String,
    pub started: u64,
    pub finished: Option<u64>,
    pub error: Option<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The record written when a run starts.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub grid: String,
    /// the cell's settings as written in the grid (before defaults)
    pub settings: BTreeMap<String, serde_json::Value>,
    pub config: TrainConfig,
    pub model_digest: String,
    pub data_digest: String,
}

pub struct Store {
    pub root: PathBuf,
}

/// Held while a worker trains a run; dropping it (or the process dying) releases it.
pub struct RunLock {
    _file: File,
    pub id: String,
}

impl Store {
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        std::fs::create_dir_all(root.join("runs"))
            .with_context(|| format!("creating store {}", root.display()))?;
        Ok(Store { root })
    }

    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.root.join("runs").join(id)
    }

    /// The final record of a run, if it is complete.
    pub fn result(&self, id: &str) -> Option<RunResult> {
        let bytes = std::fs::read(self.run_dir(id).join("result.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn status(&self, id: &str) -> Option<Status> {
        let bytes = std::fs::read(self.run_dir(id).join("status.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn lock_file(&self, id: &str) -> Result<File> {
        let dir = self.run_dir(id);
        std::fs::create_dir_all(&dir)?;
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .with_context(|| format!("opening {}", dir.join("lock").display()))
    }

    fn is_locked(&self, id: &str) -> bool {
        let p = self.run_dir(id).join("lock");
        if !p.is_file() {
            return false;
        }
        match File::open(&p) {
            Ok(f) => f.try_lock_shared().is_err(),
            Err(_) => false,
        }
    }

    pub fn state(&self, id: &str) -> RunState {
        match self.state_ignoring_lock(id) {
            RunState::Interrupted | RunState::Pending if self.is_locked(id) => RunState::Running,
            s => s,
        }
    }

    /// The state from the files alone (for the worker that holds the lock itself).
    pub fn state_ignoring_lock(&self, id: &str) -> RunState {
        if let Some(r) = self.result(id) {
            return if r.diverged {
                RunState::Diverged
            } else {
                RunState::Done
            };
        }
        if !self.run_dir(id).is_dir() {
            return RunState::Pending;
        }
        match self.status(id) {
            Some(s) if s.status == "failed" => RunState::Failed(s.error.unwrap_or_default()),
            Some(_) => RunState::Interrupted,
            None => RunState::Pending,
        }
    }

    /// Take the run's lock if no other worker holds it.
    pub fn try_lock(&self, id: &str) -> Result<Option<RunLock>> {
        let f = self.lock_file(id)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(RunLock {
                _file: f,
                id: id.to_string(),
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }

    fn set_status(
        &self,
        id: &str,
        status: &str,
        error: Option<String>,
        started: u64,
    ) -> Result<()> {
        let s = Status {
            status: status.into(),
            started,
            finished: (status != "running").then(now),
            error,
        };
        write_atomic(
            &self.run_dir(id).join("status.json"),
            &serde_json::to_vec_pretty(&s)?,
        )
    }

    /// Start (or restart) a run: fresh config, empty epoch log, status running.
    pub fn begin(&self, _lock: &RunLock, rec: &RunRecord) -> Result<u64> {
        let dir = self.run_dir(&rec.id);
        write_atomic(&dir.join("config.json"), &serde_json::to_vec_pretty(rec)?)?;
        write_atomic(&dir.join("epochs.jsonl"), b"")?;
        let t = now();
        self.set_status(&rec.id, "running", None, t)?;
        // one line per attempt: how often a cell was (re)started, and when
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("attempts.log"))?;
        writeln!(f, "{t} started")?;
        Ok(t)
    }

    /// Append one epoch (rewritten atomically: the file stays a valid JSON-lines file).
    pub fn append_epoch(&self, _lock: &RunLock, id: &str, e: &EpochRecord) -> Result<()> {
        let p = self.run_dir(id).join("epochs.jsonl");
        let mut text = std::fs::read(&p).unwrap_or_default();
        text.extend_from_slice(serde_json::to_string(e)?.as_bytes());
        text.push(b'\n');
        write_atomic(&p, &text)
    }

    pub fn write_log(&self, id: &str, log: &str) -> Result<()> {
        write_atomic(&self.run_dir(id).join("log.txt"), log.as_bytes())
    }

    /// Record the final result: result.json first (the run is done from then on), then status.
    pub fn finish(&self, _lock: &RunLock, started: u64, r: &RunResult) -> Result<()> {
        let id = &_lock.id;
        write_atomic(
            &self.run_dir(id).join("result.json"),
            &serde_json::to_vec_pretty(r)?,
        )?;
        self.set_status(
            id,
            if r.diverged { "diverged" } else { "done" },
            None,
            started,
        )
    }

    pub fn fail(&self, _lock: &RunLock, started: u64, error: &str) -> Result<()> {
        self.set_status(&_lock.id, "failed", Some(error.to_string()), started)
    }

    /// Every complete run in the store (for `repro report`).
    pub fn results(&self) -> Result<Vec<(String, RunResult)>> {
        let mut out = Vec::new();
        let dir = self.root.join("runs");
        let mut ids: Vec<String> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        ids.sort();
        for id in ids {
            if let Some(r) = self.result(&id) {
                out.push((id, r));
            }
        }
        Ok(out)
    }
}
