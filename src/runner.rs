//! `repro run` / `repro status`: plan a grid's runs against its store and train the ones not
//! done yet, with resume after a crash, per-run locks, local workers and shards.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::Digest;

use crate::finetune::train::{Event, TokenCache, train, train_size_note};
use crate::grid::{Cell, Grid};
use crate::hub;
use crate::store::{Digests, RunLock, RunRecord, RunState, Store, run_id};

/// One run of a grid, with its identity.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    pub id: String,
    pub cell: Cell,
    pub model_digest: String,
    pub data_digest: String,
    /// the grid store's token cache, keyed by the model and data digests
    pub token_cache: TokenCache,
}

/// Expand the grid, resolve model/data locations, hash them and compute each run's id.
/// Cells that resolve to the same id (e.g. duplicated axis values) appear once.
pub fn plan(grid: &Grid) -> Result<Vec<PlannedRun>> {
    let mut digests = Digests::default();
    let mut out: Vec<PlannedRun> = Vec::new();
    for cell in grid.expand()? {
        let model_spec = cell.config.model.to_string_lossy().into_owned();
        let data_spec = cell.config.data.to_string_lossy().into_owned();
        // resolved here only to hash the files: the config keeps the grid's names (a folder or a
        // hub id), which train() resolves, so stored records carry no machine-local paths
        let model_dir = hub::resolve_model(&model_spec)
            .with_context(|| format!("{}: model `{model_spec}`", grid.file.display()))?;
        let data_dir = hub::resolve_data(&data_spec)
            .with_context(|| format!("{}: data `{data_spec}`", grid.file.display()))?;
        let model_digest = digests.model(&model_dir)?;
        let data_digest = digests.data(&data_dir, cell.config.task)?;
        let id = run_id(&cell.config, &model_digest, &data_digest);
        let key = hex::encode(
            &sha2::Sha256::digest(format!("{model_digest}{data_digest}").as_bytes())[..8],
        );
        if out.iter().any(|r| r.id == id) {
            continue;
        }
        out.push(PlannedRun {
            id,
            cell,
            model_digest,
            data_digest,
            token_cache: TokenCache {
                dir: grid.store.join("cache"),
                key,
            },
        });
    }
    Ok(out)
}

/// Settings that differ between runs (the grid's axes), for one-line descriptions.
fn varying_keys(runs: &[PlannedRun]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    if let Some(first) = runs.first() {
        for k in first
            .cell
            .settings
            .keys()
            .chain(runs.iter().flat_map(|r| r.cell.settings.keys()))
        {
            if keys.contains(k) {
                continue;
            }
            let vals: Vec<Option<&toml::Value>> =
                runs.iter().map(|r| r.cell.settings.get(k)).collect();
            if vals.iter().any(|v| *v != vals[0]) {
                keys.push(k.clone());
            }
        }
    }
    keys
}

fn describe(run: &PlannedRun, keys: &[String]) -> String {
    keys.iter()
        .map(|k| {
            let v = run
                .cell
                .settings
                .get(k)
                .map(|v| v.to_string().trim_matches('"').to_string())
                .unwrap_or("-".into());
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which runs belong to shard `i` of `n` (round robin over the plan order).
pub fn in_shard(index: usize, shard: Option<(usize, usize)>) -> bool {
    shard.is_none_or(|(i, n)| index % n == i)
}

/// This worker's runs: its shard of `runs`, by the shard plan when there is one (a Slurm job
/// array's, fixed at submission; runs outside the plan belong to no shard), else round robin.
pub fn mine<'a>(
    runs: &'a [PlannedRun],
    shard: Option<(usize, usize)>,
    plan: Option<&crate::slurm::ShardPlan>,
) -> Vec<(usize, &'a PlannedRun)> {
    runs.iter()
        .enumerate()
        .filter(|(i, r)| match (plan, shard) {
            (Some(p), Some((s, _))) => p.runs.get(&r.id) == Some(&s),
            (Some(p), None) => p.runs.contains_key(&r.id),
            (None, _) => in_shard(*i, shard),
        })
        .collect()
}

/// Parse `i/n` (0-based i).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let err = || anyhow::anyhow!("--shard {s}: expected i/n with 0 <= i < n, e.g. --shard 0/4");
    let (i, n) = s.split_once('/').ok_or_else(err)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| err())?,
        n.trim().parse().map_err(|_| err())?,
    );
    if n == 0 || i >= n {
        return Err(err());
    }
    Ok((i, n))
}

/// Print the plan with each run's state; returns counts per state label.
pub fn print_status(
    grid: &Grid,
    runs: &[PlannedRun],
    store: &Store,
) -> BTreeMap<&'static str, usize> {
    let keys = varying_keys(runs);
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut rows = BTreeMap::new();
    println!(
        "grid {} ({} runs) — store {}",
        grid.name,
        runs.len(),
        store.root.display()
    );
    for r in runs {
        let st = store.state(&r.id);
        *counts.entry(st.label()).or_default() += 1;
        let extra = match (&st, store.result(&r.id)) {
            (RunState::Done, Some(res)) => res
                .best_headline()
                .map(|v| {
                    format!(
                        "dev {} {:.1} (epoch {})",
                        res.headline,
                        100.0 * v,
                        res.best_epoch
                    )
                })
                .unwrap_or_default(),
            (RunState::Failed(e), _) => e.lines().next().unwrap_or("").chars().take(80).collect(),
            _ => String::new(),
        };
        let cfg = &r.cell.config;
        let note = cfg.train_size.and_then(|n| {
            let all = train_rows(&mut rows, cfg);
            (all > 0 && n > all).then(|| format!("  ({})", train_size_note(n, all, cfg.task)))
        });
        println!(
            "  {}  {:<11} {}  {}{}",
            r.id,
            st.label(),
            describe(r, &keys),
            extra,
            note.unwrap_or_default()
        );
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!("{}", summary.join(", "));
    let left = left_estimates(runs, store, false);
    if !left.is_empty() {
        let known: Vec<f64> = left.iter().flatten().copied().collect();
        let unknown = left.len() - known.len();
        let time = match (known.len(), unknown) {
            (0, _) => "time unknown until a comparable run has finished".to_string(),
            (k, u) => format!(
                "≈{} of training on one worker{} (estimated from the store's finished runs)",
                human_seconds(known.iter().sum()),
                if u > 0 {
                    format!(" for {k} of them; {u} have no comparable finished run yet")
                } else {
                    String::new()
                }
            ),
        };
        let runs = if left.len() == 1 { "run" } else { "runs" };
        println!("left: {} {runs}, {time}", left.len());
    }
    if let Some((file, plan)) = crate::slurm::ShardPlan::latest(store) {
        println!("by shard ({}):", file.display());
        for shard in 0..plan.shards {
            let ids: Vec<&String> = plan
                .runs
                .iter()
                .filter(|(_, s)| **s == shard)
                .map(|(id, _)| id)
                .collect();
            let mut c: BTreeMap<&'static str, usize> = BTreeMap::new();
            for id in &ids {
                *c.entry(store.state(id).label()).or_default() += 1;
            }
            let parts: Vec<String> = c.iter().map(|(k, v)| format!("{v} {k}")).collect();
            println!("  shard {shard}: {} runs: {}", ids.len(), parts.join(", "));
        }
    }
    for r in runs {
        if let RunState::Failed(e) = store.state(&r.id) {
            println!(
                "failed {} ({}): {}",
                r.id,
                describe(r, &keys),
                e.lines().next().unwrap_or("")
            );
            let log =
                std::fs::read_to_string(store.run_dir(&r.id).join("log.txt")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            for l in &lines[lines.len().saturating_sub(3)..] {
                println!("    | {l}");
            }
        }
    }
    counts
}

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub retry_failed: bool,
    pub shard: Option<(usize, usize)>,
    /// no progress bars, no per-run lines (child workers)
    pub quiet: bool,
    /// start no run that cannot finish before this moment (seconds since the Unix epoch)
    pub deadline: Option<u64>,
    /// the shard assignment of a Slurm job array (see [`crate::slurm`])
    pub shard_plan: Option<crate::slurm::ShardPlan>,
}

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub trained: usize,
    pub failed: usize,
    pub diverged: usize,
    pub skipped_done: usize,
    pub skipped_locked: usize,
    /// not started: the time left before the deadline could not finish them
    pub skipped_time: usize,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Parse a duration such as `2h30m`, `90m`, `45s`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<u64> {
    let err =
        || anyhow::anyhow!("--time-limit {s}: expected a duration such as 2h30m, 90m, 45s or 3600");
    let t = s.trim();
    if t.is_empty() {
        return Err(err());
    }
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    let (mut total, mut num) = (0u64, String::new());
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(err()),
        };
        let n: u64 = num.parse().map_err(|_| err())?;
        total += n * unit;
        num.clear();
    }
    if !num.is_empty() {
        return Err(err());
    }
    Ok(total)
}

/// The size of a run's whole training split (0 when it cannot be read), remembered per data
/// folder and task in `cache`.
fn train_rows(cache: &mut BTreeMap<String, usize>, cfg: &crate::finetune::TrainConfig) -> usize {
    let key = format!("{}|{}", cfg.data.display(), cfg.task.name());
    *cache.entry(key).or_insert_with(|| {
        hub::resolve_data(&cfg.data.to_string_lossy())
            .and_then(|d| crate::data::Glue::new(d).load(cfg.task, crate::data::Split::Train))
            .map_or(0, |v| v.len())
    })
}

/// Estimates a run's wall time from the store's own finished runs, from the closest match:
/// the same cell shape (task, method, backend, sizes, protocol) per epoch; else the same task,
/// backend and method class (whether a step takes every weight's gradient:
/// [`crate::finetune::Method::takes_weight_gradients`]) per epoch as a line in the training-set size
/// (an epoch's fixed part — scoring the dev set — plus a part per training example, fitted over
/// the sizes finished; while they give no line — one size, or noise that makes it fall — the two
/// parts are read from each run's measured training rate: [`cost_split`]); else any run on the backend with that method class, per
/// training example and epoch. None when the store has nothing comparable yet.
pub struct Estimator {
    done: Vec<crate::finetune::train::RunResult>,
    train_rows: BTreeMap<String, usize>,
}

/// Least squares of `y = fixed + slope · x` over `points` (x: training examples, y: seconds per
/// epoch): None unless the points span at least two sizes and give a positive slope; a negative
/// intercept (noise) is clamped to 0, the slope refitted through the origin.
pub fn fit_line(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x / n, b + y / n));
    let sxx: f64 = points.iter().map(|&(x, _)| (x - mx) * (x - mx)).sum();
    let sxy: f64 = points.iter().map(|&(x, y)| (x - mx) * (y - my)).sum();
    if points.is_empty() || sxx <= 1e-9 * mx * mx.max(1.0) {
        return None;
    }
    let slope = sxy / sxx;
    if slope <= 0.0 {
        return None;
    }
    let fixed = my - slope * mx;
    if fixed >= 0.0 {
        return Some((fixed, slope));
    }
    let through_origin = points.iter().map(|&(x, y)| x * y).sum::<f64>()
        / points.iter().map(|&(x, _)| x * x).sum::<f64>();
    Some((0.0, through_origin))
}

/// A finished run's cost in two parts: seconds per epoch that do not grow with the training set
/// (scoring the dev set and the train sample, loading), and seconds per (training example ×
/// epoch) spent in optimizer steps — from the run's measured training rate
/// (`train_examples_per_second`, over `steps × batch_size` rows; SQuAD's rows are windows, its
/// examples questions). A run without a usable rate counts as all training.
pub fn cost_split(r: &crate::finetune::train::RunResult) -> (f64, f64) {
    let epochs = r.epochs.len().max(1) as f64;
    let rows = (r.steps * r.config.batch_size) as f64;
    let train = rows / r.train_examples_per_second;
    let train = if train.is_finite() && train > 0.0 {
        train.min(r.wall_seconds)
    } else {
        r.wall_seconds
    };
    (
        (r.wall_seconds - train) / epochs,
        train / (epochs * r.train_examples.max(1) as f64),
    )
}

/// A finished run's cost: seconds per epoch and per (training example × epoch).
fn per_epoch(r: &crate::finetune::train::RunResult) -> (f64, f64) {
    let epochs = r.epochs.len().max(1) as f64;
    (
        r.wall_seconds / epochs,
        r.wall_seconds / (epochs * r.train_examples.max(1) as f64),
    )
}

impl Estimator {
    pub fn new(store: &Store) -> Estimator {
        let done = store
            .results()
            .unwrap_or_default()
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| !r.diverged)
            .collect();
        Estimator {
            done,
            train_rows: BTreeMap::new(),
        }
    }

    /// Training examples the run will see (its subset, or the whole training split).
    fn examples(&mut self, cfg: &crate::finetune::TrainConfig) -> usize {
        let all = train_rows(&mut self.train_rows, cfg);
        cfg.train_size.map_or(all, |n| n.min(all.max(1)))
    }

    pub fn seconds(&mut self, cfg: &crate::finetune::TrainConfig) -> Option<f64> {
        let full = |m: &crate::finetune::Method| m.takes_weight_gradients();
        let same_shape = |r: &crate::finetune::TrainConfig| {
            r.task == cfg.task
                && r.method == cfg.method
                && r.backend == cfg.backend
                && r.train_size == cfg.train_size
                && r.batch_size == cfg.batch_size
                && r.max_length == cfg.max_length
                && r.eval_train == cfg.eval_train
                && r.eval_size == cfg.eval_size
                && r.pad_to_max_length == cfg.pad_to_max_length
        };
        let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let n = self.examples(cfg);
        let epochs = cfg.total_epochs(n) as f64;
        if let Some(s) = mean(
            self.done
                .iter()
                .filter(|r| same_shape(&r.config))
                .map(|r| per_epoch(r).0)
                .collect(),
        ) {
            return Some(s * epochs);
        }
        let n = n as f64;
        let class = |r: &crate::finetune::TrainConfig| {
            r.backend == cfg.backend && full(&r.method) == full(&cfg.method)
        };
        let same_task: Vec<&crate::finetune::train::RunResult> = self
            .done
            .iter()
            .filter(|r| class(&r.config) && r.config.task == cfg.task)
            .collect();
        let sizes: Vec<(f64, f64)> = same_task
            .iter()
            .map(|r| (r.train_examples as f64, per_epoch(r).0))
            .collect();
        if let Some((fixed, per_example)) = fit_line(&sizes) {
            return Some((fixed + per_example * n) * epochs);
        }
        let (fixed, per_example): (Vec<f64>, Vec<f64>) =
            same_task.iter().map(|r| cost_split(r)).unzip();
        if let (Some(fixed), Some(per_example)) = (mean(fixed), mean(per_example)) {
            return Some((fixed + per_example * n) * epochs);
        }
        let rate = mean(
            self.done
                .iter()
                .filter(|r| class(&r.config))
                .map(|r| per_epoch(r).1)
                .collect(),
        )?;
        Some(rate * n * epochs)
    }

    /// Learn from the runs finished since (by this worker or any other on the store).
    pub fn refresh(&mut self, store: &Store) {
        self.done = Estimator::new(store).done;
    }
}

/// The runs of a grid the store has not finished, and their estimated total time (None when
/// some run has no estimate yet).
pub fn remaining(runs: &[PlannedRun], store: &Store, retry_failed: bool) -> (usize, Option<f64>) {
    let left = left_estimates(runs, store, retry_failed);
    (left.len(), left.iter().copied().sum::<Option<f64>>())
}

/// Each run the store has not finished: its estimated seconds (None: nothing comparable yet).
fn left_estimates(runs: &[PlannedRun], store: &Store, retry_failed: bool) -> Vec<Option<f64>> {
    let mut est = Estimator::new(store);
    runs.iter()
        .filter(|r| !finished(&store.state(&r.id), retry_failed))
        .map(|r| est.seconds(&r.cell.config))
        .collect()
}

/// `1h 05m`, `12m 30s`, `40s`.
pub fn human_seconds(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

/// Whether a run needs no training in this invocation: done, diverged, or failed (unless retried).
fn finished(state: &RunState, retry_failed: bool) -> bool {
    matches!(state, RunState::Done | RunState::Diverged)
        || (matches!(state, RunState::Failed(_)) && !retry_failed)
}

/// Why a run was not trained by this worker.
enum Skip {
    Done,
    Locked,
    NoTime,
}

/// Decide whether this worker trains `run` now, and take its lock if so.
fn claim(
    store: &Store,
    run: &PlannedRun,
    opts: &RunOptions,
    estimator: Option<&mut Estimator>,
    started_any: bool,
) -> Result<std::result::Result<RunLock, Skip>> {
    let state = store.state(&run.id);
    if finished(&state, opts.retry_failed) {
        return Ok(Err(Skip::Done));
    }
    if state == RunState::Running {
        return Ok(Err(Skip::Locked));
    }
    if let (Some(deadline), Some(est)) = (opts.deadline, estimator) {
        // 10% margin on the store's estimate. A run with no estimate yet is started while time
        // is left, and always when this worker has started nothing yet (however short the
        // limit, the first run teaches the store what runs cost).
        let left = deadline.saturating_sub(unix_now()) as f64;
        let skip = match est.seconds(&run.cell.config) {
            Some(t) => 1.1 * t > left,
            None => left <= 0.0 && started_any,
        };
        if skip {
            return Ok(Err(Skip::NoTime));
        }
    }
    // a `repro status` probing the lock holds it for an instant: retry before giving up
    let mut lock = None;
    for _ in 0..5 {
        lock = store.try_lock(&run.id)?;
        if lock.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(40));
    }
    let Some(lock) = lock else {
        return Ok(Err(Skip::Locked));
    };
    // another worker may have finished (or failed) it between the state check and the lock
    if finished(&store.state_ignoring_lock(&run.id), opts.retry_failed) {
        return Ok(Err(Skip::Done));
    }
    Ok(Ok(lock))
}

/// The store's record of a run about to start (`config.json`).
fn record_of(grid: &Grid, run: &PlannedRun) -> RunRecord {
    RunRecord {
        id: run.id.clone(),
        grid: grid.name.clone(),
        settings: run
            .cell
            .settings
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect(),
        config: run.cell.config.clone(),
        model_digest: run.model_digest.clone(),
        data_digest: run.data_digest.clone(),
    }
}

/// Show a training step on a run's progress bar.
pub fn show_step(bar: &indicatif::ProgressBar, ev: &Event) {
    if let Event::Step {
        epoch,
        step,
        steps_per_epoch,
        loss,
    } = ev
    {
        bar.set_length(*steps_per_epoch as u64);
        bar.set_position(*step as u64);
        bar.set_message(format!("epoch {epoch} loss {loss:.4}"));
    }
}

/// Train one locked run: progress on `bar`, every epoch appended to the store as it ends, notes
/// and epochs in the returned log. A panic becomes an error; so does a failed epoch write.
fn train_locked(
    run: &PlannedRun,
    desc: &str,
    store: &Store,
    lock: &RunLock,
    bar: &indicatif::ProgressBar,
    multi: &indicatif::MultiProgress,
) -> Result<(Result<crate::finetune::train::Trained>, String)> {
    let mut log = format!("run {} ({desc})\n", run.id);
    let mut epoch_err = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(&run.cell.config, Some(&run.token_cache), |ev| match ev {
            Event::Step { .. } => show_step(bar, &ev),
            Event::Epoch(e) => {
                log.push_str(&format!(
                    "epoch {}: loss {:.4} dev {:?} train {:?}\n",
                    e.epoch, e.train_loss, e.dev, e.train
                ));
                if let Err(err) = store.append_epoch(lock, &run.id, e) {
                    epoch_err = Some(err);
                }
            }
            Event::Note(note) => {
                log.push_str(&format!("note: {note}\n"));
                multi.suspend(|| eprintln!("{}: {note}", run.id));
            }
        })
    }));
    if let Some(e) = epoch_err {
        return Err(e.context(format!("writing epochs of run {}", run.id)));
    }
    let outcome = outcome.unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
        Err(anyhow::anyhow!(
            "panic: {}",
            msg.unwrap_or_else(|| "unknown".into())
        ))
    });
    Ok((outcome, log))
}

/// Train every run of `runs` (in this worker's shard) that is not done, one after another.
pub fn execute(
    grid: &Grid,
    runs: &[PlannedRun],
    store: &Store,
    opts: &RunOptions,
) -> Result<Summary> {
    let keys = varying_keys(runs);
    let tty = std::io::stderr().is_terminal() && !opts.quiet;
    let multi = indicatif::MultiProgress::new();
    if !tty {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mine = mine(runs, opts.shard, opts.shard_plan.as_ref());
    let overall = multi.add(indicatif::ProgressBar::new(mine.len() as u64));
    overall.set_style(
        indicatif::ProgressStyle::with_template("runs [{bar:30}] {pos}/{len} {msg}")
            .expect("template"),
    );
    let mut s = Summary::default();
    let mut estimator = opts.deadline.map(|_| Estimator::new(store));
    for (n, (_, run)) in mine.iter().enumerate() {
        overall.set_position(n as u64);
        let started_any = s.trained + s.diverged + s.failed > 0;
        let lock = match claim(store, run, opts, estimator.as_mut(), started_any)? {
            Ok(lock) => lock,
            Err(Skip::Done) => {
                s.skipped_done += 1;
                continue;
            }
            Err(Skip::Locked) => {
                s.skipped_locked += 1;
                continue;
            }
            Err(Skip::NoTime) => {
                s.skipped_time += 1;
                continue;
            }
        };
        let desc = describe(run, &keys);
        overall.set_message(desc.clone());
        let started = store.begin(&lock, &record_of(grid, run))?;
        let bar = multi.add(indicatif::ProgressBar::new(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "  {prefix} [{bar:30}] {pos}/{len} {msg} {per_sec}",
            )
            .expect("template"),
        );
        bar.set_prefix(run.id.clone());
        let t0 = Instant::now();
        let (outcome, mut log) = train_locked(run, &desc, store, &lock, &bar, &multi)?;
        bar.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        let counter = format!("[{}/{}]", n + 1, mine.len());
        match outcome {
            Ok(trained) => {
                let result = trained.result;
                if let Some(tensors) = trained.tensors {
                    let delta = crate::delta::Delta {
                        meta: crate::delta::DeltaMeta::of_run(
                            &run.cell.config,
                            &run.model_digest,
                            &run.id,
                        ),
                        tensors,
                    };
                    delta.save(&store.run_dir(&run.id).join(crate::delta::DELTA_FILE))?;
                }
                store.write_log(&run.id, &log)?;
                store.finish(&lock, started, &result)?;
                if let Some(est) = estimator.as_mut() {
                    est.refresh(store);
                }
                if result.diverged {
                    s.diverged += 1;
                } else {
                    s.trained += 1;
                }
                if !opts.quiet {
                    let state = if result.diverged { "diverged" } else { "done" };
                    let score = result.best_headline().map(|v| {
                        format!(
                            "dev {} {:.1} (epoch {})",
                            result.headline,
                            100.0 * v,
                            result.best_epoch
                        )
                    });
                    multi.suspend(|| {
                        println!(
                            "{counter} {state} {} {desc}: {} in {secs:.0} s",
                            run.id,
                            score.unwrap_or_default()
                        )
                    });
                }
            }
            Err(e) => {
                let msg = format!("{e:#}");
                log.push_str(&format!("FAILED: {msg}\n"));
                store.write_log(&run.id, &log)?;
                store.fail(&lock, started, &msg)?;
                s.failed += 1;
                multi.suspend(|| eprintln!("{counter} failed {} {desc}: {msg}", run.id));
            }
        }
    }
    overall.finish_and_clear();
    Ok(s)
}

/// Memory one training worker may need at its peak (MiniLM Full-FT at batch 32 × 128 peaks at
/// ≈2.1 GiB in BENCHMARKS.md; a margin for larger batches and the token cache).
pub const WORKER_MEMORY_BYTES: u64 = 3 << 30;

/// `--jobs auto`: one worker per CPU core (one training process keeps about one core busy),
/// fewer where `MemAvailable` would not hold [`WORKER_MEMORY_BYTES`] each; at least 1.
pub fn auto_jobs() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| (kb * 1024 / WORKER_MEMORY_BYTES) as usize);
    cores.min(mem.unwrap_or(cores)).max(1)
}

/// What `repro run GRID` is asked for (its flags, parsed).
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub grid_file: std::path::PathBuf,
    /// `--set key=value` overrides, in order
    pub set: Vec<String>,
    /// worker processes on this machine (this one and `jobs - 1` children)
    pub jobs: usize,
    /// `i/n`, as given
    pub shard: Option<String>,
    pub shard_plan: Option<std::path::PathBuf>,
    pub retry_failed: bool,
    /// start no run that cannot finish before this moment (seconds since the Unix epoch)
    pub deadline: Option<u64>,
    /// no progress output (child workers)
    pub quiet: bool,
}

/// What one `repro run` did.
pub struct Outcome {
    pub grid: String,
    pub store: std::path::PathBuf,
    /// this process's runs (its children report through the store)
    pub summary: Summary,
    /// with a deadline (and not quiet): where this worker's runs stand
    pub time_limit: Option<TimeLeft>,
}

/// This worker's runs (its shard) after a time-limited `repro run`.
pub struct TimeLeft {
    pub done: usize,
    pub left: usize,
    /// what the left ones need (None: nothing comparable has finished yet)
    pub estimated_seconds: Option<f64>,
}

/// `repro run`: plan the grid, start `jobs - 1` worker processes of this binary on it (quiet,
/// the same flags), train this worker's share, wait for the workers. A bad flag or grid fails
/// before the store is created.
pub fn run_grid(req: &Request) -> Result<Outcome> {
    let grid = Grid::load(&req.grid_file, &req.set)?;
    let shard = req.shard.as_deref().map(parse_shard).transpose()?;
    let shard_plan = req
        .shard_plan
        .as_deref()
        .map(crate::slurm::ShardPlan::load)
        .transpose()?;
    let runs = plan(&grid)?;
    let store = Store::open(&grid.store)?;
    let mut children = Vec::new();
    if req.jobs > 1 {
        let mut args = vec!["run".to_string(), req.grid_file.display().to_string()];
        args.extend(req.set.iter().map(|s| format!("--set={s}")));
        if let Some(s) = &req.shard {
            args.push(format!("--shard={s}"));
        }
        if let Some(p) = &req.shard_plan {
            args.push(format!("--shard-plan={}", p.display()));
        }
        if req.retry_failed {
            args.push("--retry-failed".into());
        }
        if let Some(d) = req.deadline {
            args.push(format!("--deadline={d}"));
        }
        args.push("--quiet".into());
        children = spawn_workers(req.jobs - 1, &args)?;
    }
    let opts = RunOptions {
        retry_failed: req.retry_failed,
        shard,
        quiet: req.quiet,
        deadline: req.deadline,
        shard_plan,
    };
    let summary = execute(&grid, &runs, &store, &opts)?;
    wait_workers(children)?;
    let time_limit = (req.deadline.is_some() && !req.quiet).then(|| {
        let mine: Vec<PlannedRun> = mine(&runs, shard, opts.shard_plan.as_ref())
            .into_iter()
            .map(|(_, r)| r.clone())
            .collect();
        let (left, estimated_seconds) = remaining(&mine, &store, req.retry_failed);
        TimeLeft {
            done: mine.len() - left,
            left,
            estimated_seconds,
        }
    });
    Ok(Outcome {
        grid: grid.name.clone(),
        store: store.root.clone(),
        summary,
        time_limit,
    })
}

/// `repro status` and `repro run --dry-run`: the grid's runs and their state.
pub fn status(grid_file: &std::path::Path, set: &[String]) -> Result<()> {
    let grid = Grid::load(grid_file, set)?;
    let runs = plan(&grid)?;
    let store = Store::open(&grid.store)?;
    print_status(&grid, &runs, &store);
    Ok(())
}

/// Start `n` extra worker processes of this binary with `args` (`repro run`'s flags: the same
/// grid, quiet), sharing the store and its locks.
pub fn spawn_workers(n: usize, args: &[String]) -> Result<Vec<std::process::Child>> {
    let exe = std::env::current_exe().context("locating the repro binary")?;
    let mut children = Vec::new();
    for _ in 0..n {
        let child = std::process::Command::new(&exe)
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting a worker process")?;
        children.push(child);
    }
    Ok(children)
}

/// Wait for workers; an error if any of them failed.
pub fn wait_workers(children: Vec<std::process::Child>) -> Result<()> {
    let mut bad = 0;
    for mut c in children {
        if !c.wait()?.success() {
            bad += 1;
        }
    }
    if bad > 0 {
        bail!("{bad} worker process(es) exited with an error");
    }
    Ok(())
}
