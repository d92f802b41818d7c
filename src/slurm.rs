//! Scale-out on a Slurm cluster: a grid's pending runs become one job array whose tasks each run
//! `repro run GRID --shard-plan PLAN --shard $SLURM_ARRAY_TASK_ID/N` against one shared store.
//! The plan assigns runs to shards once, at submission, balanced by the store's estimated cost
//! (longest first onto the least loaded shard), so every task sees the same assignment however
//! the store changes while they run. Per-run locks, atomic records and resume-after-kill (the
//! store's) make preemption and requeueing safe: a requeued task resumes its own shard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::runner::{Estimator, PlannedRun};
use crate::store::{RunState, Store};

/// Which shard each run belongs to, fixed when the job is submitted.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardPlan {
    pub shards: usize,
    /// run id → shard index (0-based)
    pub runs: BTreeMap<String, usize>,
    /// estimated seconds per shard (0 where the store had no estimate)
    pub estimated_seconds: Vec<f64>,
}

impl ShardPlan {
    /// Assign `runs` to `shards` shards: longest estimated run first onto the shard with the
    /// least estimated work (runs without an estimate count as the mean of those with one, or
    /// 1 when none has one: then the plan is round robin).
    pub fn balanced(runs: &[&PlannedRun], shards: usize, store: &Store) -> ShardPlan {
        let mut est = Estimator::new(store);
        let known: Vec<Option<f64>> = runs.iter().map(|r| est.seconds(&r.cell.config)).collect();
        let with: Vec<f64> = known.iter().flatten().copied().collect();
        let fallback = if with.is_empty() {
            1.0
        } else {
            with.iter().sum::<f64>() / with.len() as f64
        };
        let mut order: Vec<(usize, f64)> = known
            .iter()
            .enumerate()
            .map(|(i, k)| (i, k.unwrap_or(fallback)))
            .collect();
        // longest first; ties keep plan order (stable sort)
        order.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut load = vec![0f64; shards.max(1)];
        let mut plan = ShardPlan {
            shards: shards.max(1),
            ..ShardPlan::default()
        };
        for (i, secs) in order {
            let (s, _) = load
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(&b.0)))
                .expect("at least one shard");
            load[s] += secs;
            plan.runs.insert(runs[i].id.clone(), s);
        }
        plan.estimated_seconds = if with.is_empty() {
            vec![0.0; plan.shards]
        } else {
            load
        };
        plan
    }

    pub fn load(path: &Path) -> Result<ShardPlan> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the shard plan", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow!("{}: not a shard plan: {e}", path.display()))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::store::write_atomic(path, &serde_json::to_vec_pretty(self)?)
    }

    /// The newest plan written into a store (`STORE/slurm/*.plan.json`), if any.
    pub fn latest(store: &Store) -> Option<(PathBuf, ShardPlan)> {
        let dir = store.root.join("slurm");
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".plan.json"))
            .collect();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        let p = files.pop()?;
        ShardPlan::load(&p).ok().map(|plan| (p, plan))
    }
}

/// What the sbatch script asks of the cluster.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub partition: Option<String>,
    /// Slurm time format (`MM`, `HH:MM:SS`, `D-HH:MM:SS`, …)
    pub time: Option<String>,
    pub gpus_per_task: Option<usize>,
    pub cpus_per_task: Option<usize>,
    pub mem: Option<String>,
    /// at most this many array tasks at once (`%K`)
    pub array_parallelism: Option<usize>,
    pub requeue: bool,
    /// extra `#SBATCH` lines, passed through
    pub sbatch_args: Vec<String>,
}

/// Seconds of a Slurm time limit: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`.
pub fn parse_slurm_time(t: &str) -> Result<u64> {
    let err = || anyhow!("--time {t}: expected a Slurm time such as 90, 2:00:00 or 1-12:00:00");
    let num = |s: &str| s.parse::<u64>().map_err(|_| err());
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (num(d)?, r),
        None => (0, t),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let secs = match (t.contains('-'), parts.as_slice()) {
        (false, [m]) => num(m)? * 60,
        (false, [m, s]) => num(m)? * 60 + num(s)?,
        (_, [h, m, s]) => num(h)? * 3600 + num(m)? * 60 + num(s)?,
        (true, [h]) => num(h)? * 3600,
        (true, [h, m]) => num(h)? * 3600 + num(m)? * 60,
        _ => return Err(err()),
    };
    Ok(days * 86400 + secs)
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The sbatch script of a job array of `tasks` tasks. `argv` is the `repro run` command each
/// task runs, without its shard (appended as `--shard $SLURM_ARRAY_TASK_ID/tasks`); `logs` is
/// the folder for one log file per task.
pub fn script(
    name: &str,
    tasks: usize,
    res: &Resources,
    workdir: &Path,
    argv: &[String],
    logs: &Path,
) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let mut line = |l: String| {
        s.push_str("#SBATCH ");
        s.push_str(&l);
        s.push('\n');
    };
    line(format!("--job-name=repro-{name}"));
    let array = match res.array_parallelism {
        Some(k) => format!("0-{}%{k}", tasks - 1),
        None => format!("0-{}", tasks - 1),
    };
    line(format!("--array={array}"));
    line(format!("--output={}/%A_%a.log", logs.display()));
    line("--ntasks=1".into());
    if let Some(p) = &res.partition {
        line(format!("--partition={p}"));
    }
    if let Some(t) = &res.time {
        line(format!("--time={t}"));
    }
    if let Some(g) = res.gpus_per_task {
        line(format!("--gpus-per-task={g}"));
    }
    if let Some(c) = res.cpus_per_task {
        line(format!("--cpus-per-task={c}"));
    }
    if let Some(m) = &res.mem {
        line(format!("--mem={m}"));
    }
    if res.requeue {
        line("--requeue".into());
    }
    for a in &res.sbatch_args {
        line(a.trim_start_matches("#SBATCH").trim().to_string());
    }
    s.push_str("set -euo pipefail\n");
    s.push_str(&format!("cd {}\n", quote(&workdir.display().to_string())));
    s.push_str(
        "echo \"repro: array task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT on $(hostname), restart ${SLURM_RESTART_COUNT:-0}\"\n",
    );
    let cmd: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    s.push_str(&format!(
        "exec {} --shard \"$SLURM_ARRAY_TASK_ID/{tasks}\"\n",
        cmd.join(" ")
    ));
    s
}

/// Pending runs of a grid (not done, not diverged; failed ones only with `retry_failed`).
pub fn pending<'a>(
    runs: &'a [PlannedRun],
    store: &Store,
    retry_failed: bool,
) -> Vec<&'a PlannedRun> {
    runs.iter()
        .filter(|r| match store.state(&r.id) {
            RunState::Done | RunState::Diverged => false,
            RunState::Failed(_) => retry_failed,
            _ => !retry_failed,
        })
        .collect()
}

/// Refuse a partition the cluster does not have (when `sinfo` can tell).
pub fn check_partition(p: &str) -> Result<()> {
    let Ok(out) = std::process::Command::new("sinfo")
        .args(["-h", "-o", "%R"])
        .output()
    else {
        return Ok(());
    };
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    if out.status.success() && !names.iter().any(|n| n == p) {
        bail!(
            "--partition {p}: the cluster has no such partition (sinfo lists: {})",
            names.join(", ")
        );
    }
    Ok(())
}

/// What `repro slurm` is asked for: the grid (a file and its `--set` overrides), the cluster's
/// resources, how many array tasks, and whether only failed runs are resubmitted.
pub struct Request {
    pub grid_file: PathBuf,
    pub set: Vec<String>,
    pub resources: Resources,
    /// array tasks (default: the pending runs, at most 16)
    pub tasks: Option<usize>,
    pub retry_failed: bool,
}

/// A job array written to the store's `slurm/` folder, ready for sbatch.
pub struct Job {
    pub grid: String,
    /// pending runs the array trains
    pub runs: usize,
    pub tasks: usize,
    /// each task's estimated seconds (0 where the store has nothing to estimate from)
    pub estimated_seconds: Vec<f64>,
    /// the sbatch script; the shard plan and, once submitted, the job id sit beside it
    pub script: PathBuf,
    /// what the user should know before submitting (a store other nodes cannot see)
    pub warnings: Vec<String>,
}

/// Plan a grid's pending runs onto `tasks` array tasks (balanced by the store's estimates) and
/// write the shard plan and the sbatch script under `<store>/slurm/`. Every task runs this same
/// binary on the grid (`repro run … --shard-plan PLAN --shard i/n`), stopping 5 minutes before
/// the time limit.
pub fn prepare(req: &Request) -> Result<Job> {
    let time_limit = req
        .resources
        .time
        .as_deref()
        .map(parse_slurm_time)
        .transpose()?;
    if req.tasks == Some(0) {
        bail!("--tasks 0: give at least one array task");
    }
    if let Some(p) = &req.resources.partition {
        check_partition(p)?;
    }
    let grid = crate::grid::Grid::load(&req.grid_file, &req.set)?;
    let runs = crate::runner::plan(&grid)?;
    let store = Store::open(&grid.store)?;
    let pending = pending(&runs, &store, req.retry_failed);
    if pending.is_empty() {
        bail!(
            "grid {}: {} ({} runs planned); nothing to submit",
            grid.name,
            if req.retry_failed {
                "no failed run to resubmit"
            } else {
                "no run left to train"
            },
            runs.len()
        );
    }
    let tasks = req
        .tasks
        .unwrap_or(pending.len().min(16))
        .min(pending.len());
    let store_dir = std::path::absolute(&grid.store)?;
    let mut warnings = Vec::new();
    if store_dir.starts_with("/tmp") {
        warnings.push(format!(
            "store {} is under /tmp, which other nodes do not see; put it on a shared file system with working flock (--set store=DIR)",
            store_dir.display()
        ));
    }
    let stamp = crate::runner::unix_now();
    let dir = store_dir.join("slurm");
    std::fs::create_dir_all(&dir)?;
    let plan = ShardPlan::balanced(&pending, tasks, &store);
    let plan_file = dir.join(format!("{stamp}.plan.json"));
    plan.save(&plan_file)?;
    let mut argv = vec![
        std::env::current_exe()?.display().to_string(),
        "run".into(),
        std::path::absolute(&req.grid_file)?.display().to_string(),
    ];
    argv.extend(req.set.iter().map(|s| format!("--set={s}")));
    argv.push(format!("--set=store={}", store_dir.display()));
    argv.push(format!("--shard-plan={}", plan_file.display()));
    if let Some(t) = time_limit {
        argv.push(format!("--time-limit={}", t.saturating_sub(300).max(60)));
    }
    if req.retry_failed {
        argv.push("--retry-failed".into());
    }
    let text = script(
        &grid.name,
        tasks,
        &req.resources,
        &std::env::current_dir()?,
        &argv,
        &dir,
    );
    let script = dir.join(format!("{stamp}.sbatch"));
    crate::store::write_atomic(&script, text.as_bytes())?;
    Ok(Job {
        grid: grid.name.clone(),
        runs: pending.len(),
        tasks,
        estimated_seconds: plan.estimated_seconds.clone(),
        script,
        warnings,
    })
}

impl Job {
    /// Submit with sbatch; the job id is returned and written beside the script (`<stamp>.job`).
    pub fn submit(&self) -> Result<String> {
        let id = sbatch(&self.script)?;
        crate::store::write_atomic(&self.script.with_extension("job"), id.as_bytes())?;
        Ok(id)
    }

    /// Where the array tasks' logs go once submitted: `<store>/slurm/<job id>_<task>.log`.
    pub fn logs(&self, job_id: &str) -> String {
        let dir = self.script.parent().unwrap_or(Path::new("."));
        format!("{}/{job_id}_*.log", dir.display())
    }
}

/// Submit a script with sbatch; returns the job id.
fn sbatch(script: &Path) -> Result<String> {
    let out = std::process::Command::new("sbatch")
        .arg(script)
        .output()
        .map_err(|e| {
            anyhow!("sbatch: {e}; run on a Slurm login node, or leave out --submit and submit the script yourself")
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "sbatch {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    text.split_whitespace()
        .last()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("sbatch printed no job id: {text}"))
}
