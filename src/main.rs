//! `repro`: the command line. Thin: parse arguments, call the library, print.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use bitfit_repro::finetune::TrainConfig;
use bitfit_repro::settings::{self, SETTINGS};
use bitfit_repro::{backend::Backend, data, hub, inspect, model, tokenize};

#[derive(Parser)]
#[command(
    name = "repro",
    version,
    about = "Reproduce BitFit: bias-only fine-tuning of BERT encoders, with burn"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Architecture, parameter counts per group and per bias kind (b_q … b_LN2), and each
    /// method's trainable share. MODEL is an HF model folder or a hub id in the HF cache.
    Inspect {
        /// model folder or hub id (omit with --shape)
        model: Option<String>,
        /// count for a named shape instead of a checkpoint: bert-base-cased, bert-large-cased
        #[arg(long)]
        shape: Option<String>,
        /// also load the weights on this backend and check every tensor fits
        #[arg(long, default_value = "ndarray")]
        backend: Backend,
        /// print JSON instead of tables
        #[arg(long)]
        json: bool,
    },
    /// Row counts and label distributions of the GLUE tasks found in a data folder.
    Data {
        /// GLUE folder (TSV layout or nyu-mll/glue parquet layout), or hf:nyu-mll/glue
        #[arg(long, default_value = hub::DEFAULT_DATA)]
        data: String,
        /// tasks to list (default: all found)
        tasks: Vec<String>,
        /// print, as JSON, the training rows of the harness's subset of this many examples
        /// (one task; what `train_size` selects), e.g. for scripts/reference_trainer.py
        #[arg(long)]
        subset: Option<usize>,
        /// the subset's seed (`data_seed`)
        #[arg(long, default_value_t = 0)]
        data_seed: u64,
    },
    /// One fine-tuning run from flags (the counterpart of the reference run_glue.py); prints
    /// per-epoch metrics and writes the run record as JSON.
    Train(TrainArgs),
    /// Train every run of a grid that the store does not hold yet (resumes after a crash).
    Run(RunArgs),
    /// Show which runs of a grid are done, running, failed or pending.
    Status {
        grid: PathBuf,
        /// override a setting: key=value (TOML value; a list becomes an axis)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Download a hub model (config, weights, tokenizer) or dataset (nyu-mll/glue parquet files)
    /// into the Hugging Face cache, where `--model ID` / `data = "hf:ID"` find it. Needs internet.
    Fetch {
        /// hub id, e.g. bert-base-cased or nyu-mll/glue
        id: String,
        /// the id is a dataset
        #[arg(long)]
        dataset: bool,
        #[arg(long, default_value = "main")]
        revision: String,
        /// dataset configs to fetch (comma-separated, e.g. rte,mrpc); default all
        #[arg(long)]
        configs: Option<String>,
    },
    /// Training-step speed and peak memory per backend and method on a model shape (random
    /// weights), as a table and JSON; compare with scripts/bench_pytorch.py.
    Bench(BenchArgs),
    /// Aggregate stored runs (polars) into paper_tables/: aggregate.parquet/.csv, Tables 1-3
    /// beside the paper's numbers (Markdown, LaTeX, CSV) and the figures (PNG, SVG). No retraining.
    Report {
        /// result stores (default: every folder under results/ that holds a runs/ folder)
        #[arg(long = "results")]
        results: Vec<PathBuf>,
        #[arg(long, default_value = "paper_tables")]
        out: PathBuf,
        /// best epoch: per-metric (each dev split and metric at its own max over epochs, as the
        /// reference code) or single (every metric at the epoch best on the headline metric)
        #[arg(long, default_value = "per-metric", value_name = "per-metric|single")]
        epoch_rule: bitfit_repro::report::EpochRule,
        /// leave degenerate runs (constant predictions, MCC/F1/Spearman exactly 0) out of the
        /// means; by default every finished run is averaged and the degenerate ones counted
        #[arg(long)]
        exclude_degenerate: bool,
    },
    /// Copy a finished run's trained tensors (kept with `save_trained = true`) to a delta file:
    /// safetensors with the base model's digest, task, labels, method and max length.
    Export {
        /// a run folder (results/GRID/runs/ID) or a run id
        run: String,
        /// stores to search for a run id (default: every folder under results/ that holds runs/)
        #[arg(long = "results")]
        results: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Apply a delta to its base model and score a dev split (the run's score, exactly), or
    /// predict a test split as JSON lines.
    Eval {
        #[arg(long)]
        delta: PathBuf,
        /// the delta's task by default
        #[arg(long)]
        task: Option<String>,
        /// dev or test
        #[arg(long, default_value = "dev")]
        split: String,
        /// score only the first N dev examples (as a run's `eval_size`)
        #[arg(long)]
        eval_size: Option<usize>,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Serve many tasks from one base model: JSON lines {"task", "text", "text_pair"} on stdin
    /// (or --input) → {"task", "label", "score"} lines; only the deltas switch between tasks.
    Predict {
        /// one delta per task
        #[arg(long = "delta", required = true)]
        deltas: Vec<PathBuf>,
        /// read requests from this file instead of stdin
        #[arg(long)]
        input: Option<PathBuf>,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Write the GLUE leaderboard's submission (one TSV per task + submission.zip) from a folder
    /// of deltas; tasks without one are listed in MISSING.txt, not faked.
    Submit {
        /// a folder of delta files (*.safetensors), one per task
        #[arg(long)]
        deltas: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Run a grid on a Slurm cluster: write (and with --submit, sbatch) a job array whose tasks
    /// each train one shard of the pending runs against the grid's shared store.
    Slurm(SlurmArgs),
    /// Tokenise a sentence (or a pair) with a model's tokenizer and print the ids.
    Tokenize {
        model: String,
        text: String,
        pair: Option<String>,
        #[arg(long, default_value_t = 128)]
        max_length: usize,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// model folder whose config.json gives the shape
    #[arg(long, default_value = hub::DEFAULT_MODEL)]
    model: String,
    /// a named shape instead: bert-base-cased, bert-large-cased
    #[arg(long)]
    shape: Option<String>,
    #[arg(long, value_delimiter = ',', default_value = "ndarray,flex")]
    backends: Vec<Backend>,
    #[arg(long, value_delimiter = ',', default_value = "full_ft,bitfit,b_q+b_m2")]
    methods: Vec<String>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// measured steps (median reported)
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// SQuAD's span head (BertForQuestionAnswering) instead of the classifier; run_qa's windows
    /// are 384 tokens: --span --seq-len 384
    #[arg(long)]
    span: bool,
    /// also write the rows as JSON here
    #[arg(long)]
    json: Option<PathBuf>,
    /// run one cell in this process and print its JSON row (used by the parent)
    #[arg(long, hide = true)]
    one: bool,
    #[arg(long, hide = true)]
    backend: Option<Backend>,
    #[arg(long, hide = true)]
    method: Option<String>,
}

fn bench(a: BenchArgs) -> Result<()> {
    use bitfit_repro::bench;
    let (name, cfg) = match a.shape.as_deref() {
        Some(s) => (s.to_string(), model::BertConfig::named_shape(s)?),
        None => {
            let dir = hub::resolve_model(&a.model)?;
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                name,
                model::BertConfig::from_file(&dir.join("config.json"))?,
            )
        }
    };
    if a.one {
        let backend = a.backend.unwrap_or_default();
        let method =
            bitfit_repro::finetune::Method::parse(a.method.as_deref().unwrap_or("full_ft"))?;
        let workload = bench::Workload {
            shape_name: name,
            config: cfg,
            batch: a.batch_size,
            seq: a.seq_len,
            warmup: a.warmup,
            steps: a.steps,
            span: a.span,
        };
        let row = bench::bench_one(&workload, backend, &method)?;
        println!("{}", serde_json::to_string(&row)?);
        return Ok(());
    }
    for m in &a.methods {
        bitfit_repro::finetune::Method::parse(m)?;
    }
    let mut shared = vec![
        format!("--batch-size={}", a.batch_size),
        format!("--seq-len={}", a.seq_len),
        format!("--steps={}", a.steps),
        format!("--warmup={}", a.warmup),
        format!("--model={}", a.model),
    ];
    if let Some(s) = &a.shape {
        shared.push(format!("--shape={s}"));
    }
    if a.span {
        shared.push("--span".into());
    }
    let rows = bench::bench_all(&a.backends, &a.methods, |backend, method| {
        let mut args = vec!["bench".to_string()];
        args.extend(shared.iter().cloned());
        args.extend([
            "--one".into(),
            format!("--backend={backend}"),
            format!("--method={method}"),
        ]);
        args
    })?;
    print!("{}", bench::render(&rows));
    if let Some(p) = a.json {
        bitfit_repro::store::write_atomic(&p, &serde_json::to_vec_pretty(&rows)?)?;
    }
    Ok(())
}

#[derive(clap::Args)]
struct RunArgs {
    /// the grid file (experiments/*.toml)
    grid: PathBuf,
    /// override a setting: key=value in TOML syntax, e.g. --set epochs=3 --set seeds=[0,1] --set store=DIR
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// print the expanded runs and their state; train nothing
    #[arg(long)]
    dry_run: bool,
    /// train runs that failed before, too
    #[arg(long)]
    retry_failed: bool,
    /// local worker processes sharing the store: a number, or `auto` (one per CPU core, fewer
    /// where the available memory would not hold them)
    #[arg(long, default_value = "1", value_name = "N|auto")]
    jobs: String,
    /// this machine's part of the grid: i/n (0-based), e.g. 0/4
    #[arg(long)]
    shard: Option<String>,
    /// stop starting runs once the time left (e.g. 2h30m, 90m, 3600) cannot finish them, judged
    /// from the store's own measured times; exits 0 with what is done and left
    #[arg(long, value_name = "DURATION")]
    time_limit: Option<String>,
    /// the same limit as an absolute moment (seconds since the Unix epoch; used by workers)
    #[arg(long, hide = true)]
    deadline: Option<u64>,
    /// a shard plan written by `repro slurm` (run id → shard); with --shard i/n this worker
    /// trains the runs the plan gives shard i
    #[arg(long, value_name = "FILE")]
    shard_plan: Option<PathBuf>,
    /// no progress output (used by worker processes)
    #[arg(long, hide = true)]
    quiet: bool,
}

fn run_grid(a: RunArgs) -> Result<()> {
    use bitfit_repro::runner;
    // flags first: a bad one must not leave a new store behind
    let jobs = match a.jobs.as_str() {
        "auto" => runner::auto_jobs(),
        n => match n.parse::<usize>() {
            Ok(0) => anyhow::bail!("--jobs 0: give at least 1 worker process"),
            Ok(n) => n,
            Err(_) => anyhow::bail!("--jobs {n}: a number of worker processes, or auto"),
        },
    };
    let deadline = match (&a.time_limit, a.deadline) {
        (Some(t), _) => Some(runner::unix_now() + runner::parse_duration(t)?),
        (None, d) => d,
    };
    if a.dry_run {
        return runner::status(&a.grid, &a.set);
    }
    let out = runner::run_grid(&runner::Request {
        grid_file: a.grid,
        set: a.set,
        jobs,
        shard: a.shard,
        shard_plan: a.shard_plan,
        retry_failed: a.retry_failed,
        deadline,
        quiet: a.quiet,
    })?;
    let s = &out.summary;
    if !a.quiet {
        println!(
            "grid {}: {} trained, {} diverged, {} failed, {} already done, {} taken by other workers — store {}",
            out.grid,
            s.trained,
            s.diverged,
            s.failed,
            s.skipped_done,
            s.skipped_locked,
            out.store.display()
        );
        if let Some(t) = out.time_limit {
            println!(
                "time limit: {} done, {} left (estimated {}), {} not started for lack of time",
                t.done,
                t.left,
                t.estimated_seconds
                    .map_or("unknown: no comparable finished run yet".into(), |t| {
                        runner::human_seconds(t)
                    }),
                s.skipped_time
            );
        }
    }
    if s.failed > 0 {
        anyhow::bail!(
            "{} run(s) failed; see their log.txt in the store, fix, and rerun with --retry-failed",
            s.failed
        );
    }
    Ok(())
}

/// `repro train`'s flags: one per run setting (`bitfit_repro::settings::SETTINGS`, `_` spelled
/// `-`), with the settings' own defaults and docs; the run is a one-cell grid of what is given.
struct TrainArgs {
    /// (setting key, raw value) in flag order
    values: Vec<(String, String)>,
    out: Option<PathBuf>,
}

impl clap::FromArgMatches for TrainArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut values = Vec::new();
        for s in SETTINGS {
            if let Some(v) = m.get_one::<String>(s.key) {
                values.push((s.key.to_string(), v.clone()));
            }
        }
        if m.get_flag("no_eval_train") {
            values.push(("eval_train".into(), "false".into()));
        }
        Ok(TrainArgs {
            values,
            out: m.get_one::<PathBuf>("out").cloned(),
        })
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for TrainArgs {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        use clap::{Arg, ArgAction};
        let defaults = TrainConfig::default();
        for s in SETTINGS {
            let mut arg = Arg::new(s.key)
                // clap keeps flag names for the program's life
                .long(&*Box::leak(s.key.replace('_', "-").into_boxed_str()))
                .value_name("VALUE");
            arg = if s.key == "task" {
                arg.required(true).help(s.doc.to_string())
            } else {
                arg.help(format!("{} [default: {}]", s.doc, (s.show)(&defaults)))
            };
            if settings::is_switch(s) {
                // `--pad-to-max-length` alone means true
                arg = arg.num_args(0..=1).default_missing_value("true");
            }
            cmd = cmd.arg(arg);
        }
        cmd.arg(
            Arg::new("no_eval_train")
                .long("no-eval-train")
                .action(ArgAction::SetTrue)
                .help("skip scoring the training set after each epoch (= --eval-train false)"),
        )
        .arg(
            Arg::new("out")
                .long("out")
                .value_parser(clap::value_parser!(PathBuf))
                .help("write the run record (config, epochs, bias changes) here as JSON"),
        )
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

fn train(a: TrainArgs) -> Result<()> {
    use bitfit_repro::finetune;
    let mut cell = std::collections::BTreeMap::new();
    for (key, raw) in &a.values {
        let value = settings::parse_value(raw);
        settings::check(key, &value, &format!("--{}", key.replace('_', "-")))?;
        cell.insert(key.clone(), value);
    }
    let cfg = settings::resolve(&cell)?;
    let task = cfg.task;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
            .expect("valid template"),
    );
    if cfg.save_trained && a.out.is_none() {
        anyhow::bail!("--save-trained: give --out FILE (the delta is written beside it)");
    }
    let trained = finetune::train(&cfg, None, |ev| match ev {
        finetune::train::Event::Note(note) => bar.suspend(|| eprintln!("note: {note}")),
        ev => bitfit_repro::runner::show_step(&bar, &ev),
    })?;
    let result = trained.result;
    bar.finish_and_clear();
    println!(
        "{task} {} lr {:e} seed {}: {} train examples, trainable {} of {} ({:.4}%), {:.1} train examples/s",
        cfg.method,
        cfg.lr,
        cfg.seed,
        result.train_examples,
        result.trainable_params,
        result.total_params,
        100.0 * result.trainable_share,
        result.train_examples_per_second
    );
    for e in &result.epochs {
        let fmt = |s: &bitfit_repro::finetune::train::Scores| {
            s.iter()
                .map(|(k, v)| format!("{k} {:.1}", 100.0 * v))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let dev: Vec<String> = e
            .dev
            .iter()
            .map(|(n, s)| format!("{n}: {}", fmt(s)))
            .collect();
        let train = e
            .train
            .as_ref()
            .map(|s| format!(" | train: {}", fmt(s)))
            .unwrap_or_default();
        println!(
            "epoch {:>2}: loss {:.4} | {}{} ({:.0} s)",
            e.epoch,
            e.train_loss,
            dev.join(" | "),
            train,
            e.seconds
        );
    }
    println!(
        "best epoch {} by dev {}{}",
        result.best_epoch,
        result.headline,
        if result.diverged { " (DIVERGED)" } else { "" }
    );
    if let Some(out) = a.out {
        bitfit_repro::store::write_atomic(&out, &serde_json::to_vec_pretty(&result)?)?;
        println!("run record written to {}", out.display());
        if let Some(tensors) = trained.tensors {
            let delta = bitfit_repro::delta::Delta::of_trained(&cfg, tensors)?;
            let path = out.with_extension("delta.safetensors");
            delta.save(&path)?;
            println!(
                "trained tensors ({} scalars) written to {}",
                delta.scalars(),
                path.display()
            );
        }
    }
    Ok(())
}

#[derive(clap::Args)]
struct SlurmArgs {
    /// the grid file (experiments/*.toml)
    grid: PathBuf,
    /// override a setting: key=value (TOML value; a list becomes an axis)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[arg(long)]
    partition: Option<String>,
    /// each task's wall-time limit (Slurm format: 90, 2:00:00, 1-12:00:00); tasks stop starting
    /// runs 5 minutes before it (repro run --time-limit)
    #[arg(long)]
    time: Option<String>,
    #[arg(long)]
    gpus_per_task: Option<usize>,
    #[arg(long)]
    cpus_per_task: Option<usize>,
    /// memory per task (Slurm format, e.g. 16G)
    #[arg(long)]
    mem: Option<String>,
    /// at most this many array tasks at once
    #[arg(long)]
    array_parallelism: Option<usize>,
    /// array tasks (default: the pending runs, at most 16)
    #[arg(long)]
    tasks: Option<usize>,
    /// an extra #SBATCH line, passed through (repeatable), e.g. --sbatch-arg=--account=nlp
    #[arg(long = "sbatch-arg", value_name = "LINE")]
    sbatch_args: Vec<String>,
    /// let Slurm requeue preempted tasks (a requeued task resumes its shard)
    #[arg(long)]
    requeue: bool,
    /// resubmit only the runs that failed
    #[arg(long)]
    retry_failed: bool,
    /// call sbatch and print the job id (default: write the script only)
    #[arg(long)]
    submit: bool,
}

fn slurm(a: SlurmArgs) -> Result<()> {
    use bitfit_repro::slurm;
    let job = slurm::prepare(&slurm::Request {
        grid_file: a.grid,
        set: a.set,
        resources: slurm::Resources {
            partition: a.partition,
            time: a.time,
            gpus_per_task: a.gpus_per_task,
            cpus_per_task: a.cpus_per_task,
            mem: a.mem,
            array_parallelism: a.array_parallelism,
            requeue: a.requeue,
            sbatch_args: a.sbatch_args,
        },
        tasks: a.tasks,
        retry_failed: a.retry_failed,
    })?;
    for w in &job.warnings {
        eprintln!("warning: {w}");
    }
    let est: Vec<String> = job
        .estimated_seconds
        .iter()
        .map(|&s| {
            if s > 0.0 {
                bitfit_repro::runner::human_seconds(s)
            } else {
                "?".into()
            }
        })
        .collect();
    println!(
        "grid {}: {} runs in {} array tasks (estimated per task: {}); script {}",
        job.grid,
        job.runs,
        job.tasks,
        est.join(", "),
        job.script.display()
    );
    if a.submit {
        let id = job.submit()?;
        println!("submitted job {id}; logs in {}", job.logs(&id));
    }
    Ok(())
}

/// `repro export`: a finished run's delta, found by run folder or run id.
fn export(run: &str, results: &[PathBuf], out: &std::path::Path) -> Result<()> {
    let (dir, delta) = bitfit_repro::delta::export(run, results, out)?;
    println!(
        "{} ({} {}): {} tensors, {} scalars, {} bytes → {}",
        dir.display(),
        delta.meta.task,
        delta.meta.method,
        delta.tensors.len(),
        delta.scalars(),
        std::fs::metadata(out)?.len(),
        out.display()
    );
    Ok(())
}

#[derive(clap::Args)]
struct ServeArgs {
    /// the base model the deltas were trained on (folder or hub id)
    #[arg(long, default_value = hub::DEFAULT_MODEL)]
    model: String,
    /// GLUE folder (TSV or nyu-mll/glue parquet layout) or hf:nyu-mll/glue
    #[arg(long, default_value = hub::DEFAULT_DATA)]
    data: String,
    /// ndarray, flex, tch, tch-cuda
    #[arg(long, default_value = "ndarray")]
    backend: Backend,
}

fn predictor(a: &ServeArgs, deltas: &[PathBuf]) -> Result<bitfit_repro::predict::Predictor> {
    let base = hub::resolve_model(&a.model)?;
    bitfit_repro::predict::Predictor::new(&base, deltas, &a.backend.device()?)
}

fn main() -> ExitCode {
    bitfit_repro::backend::default_matmul_threads();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Inspect {
            model,
            shape,
            backend,
            json,
        } => {
            let cfg = match (&model, shape.as_deref()) {
                (_, Some(s)) => model::BertConfig::named_shape(s)?,
                (Some(m), None) => {
                    let dir = hub::resolve_model(m)?;
                    let ckpt = model::Checkpoint::open(&dir)?;
                    let (_, report) = ckpt.load(&backend.device()?)?;
                    if !json {
                        println!(
                            "{}: {} tensors loaded{}",
                            report.file.display(),
                            report.applied,
                            if report.ignored.is_empty() {
                                String::new()
                            } else {
                                format!(", ignored (heads/buffers): {}", report.ignored.join(", "))
                            }
                        );
                    }
                    ckpt.config
                }
                (None, None) => anyhow::bail!("give a MODEL folder or --shape"),
            };
            let ins = inspect::inspect(&cfg);
            if json {
                println!("{}", serde_json::to_string_pretty(&ins)?);
            } else {
                print!("{}", ins.render());
            }
        }
        Cmd::Data {
            data: root,
            tasks,
            subset: Some(n),
            data_seed,
        } => {
            let [task] = tasks.as_slice() else {
                anyhow::bail!("--subset takes exactly one task, e.g. repro data SST-2 --subset 100")
            };
            let task: data::Task = task.parse()?;
            let rows = data::Glue::new(hub::resolve_data(&root)?)
                .load(task, data::Split::Train)?
                .len();
            let keep = bitfit_repro::finetune::train::subset_indices(rows, Some(n), data_seed);
            println!("{}", serde_json::to_string(&keep)?);
        }
        Cmd::Data {
            data: root,
            tasks,
            subset: None,
            ..
        } => {
            let glue = data::Glue::new(hub::resolve_data(&root)?);
            let tasks: Vec<data::Task> = if tasks.is_empty() {
                data::Task::all().to_vec()
            } else {
                tasks.iter().map(|t| t.parse()).collect::<Result<_>>()?
            };
            println!(
                "{:<6} {:<15} {:>7}  {:<40} file",
                "task", "split", "rows", "labels"
            );
            for l in data::listing(&glue, &tasks)? {
                println!(
                    "{:<6} {:<15} {:>7}  {:<40} {}",
                    l.task.name(),
                    l.split.to_string(),
                    l.rows,
                    l.labels,
                    l.file.display()
                );
            }
        }
        Cmd::Train(a) => train(a)?,
        Cmd::Slurm(a) => slurm(a)?,
        Cmd::Export { run, results, out } => export(&run, &results, &out)?,
        Cmd::Eval {
            delta,
            task,
            split,
            eval_size,
            serve,
        } => {
            let meta = bitfit_repro::delta::Delta::load(&delta)?.meta;
            let task: data::Task = match task {
                Some(t) => t.parse()?,
                None => meta.task,
            };
            let mut p = predictor(&serve, std::slice::from_ref(&delta))?;
            let data_dir = hub::resolve_data(&serve.data)?;
            match split.as_str() {
                "dev" => {
                    let mut out = serde_json::Map::new();
                    for (sp, scores) in p.score_dev(&data_dir, task, eval_size)? {
                        out.insert(sp.to_string(), serde_json::to_value(scores)?);
                    }
                    println!("{}", serde_json::Value::Object(out));
                }
                "test" => {
                    let ex = data::Glue::new(data_dir).load(task, data::Split::Test)?;
                    for (i, pr) in p.predict(task, &ex)?.iter().enumerate() {
                        println!(
                            "{}",
                            serde_json::json!({"index": i, "label": pr.label, "score": pr.score})
                        );
                    }
                }
                s => anyhow::bail!("--split {s}: dev or test"),
            }
        }
        Cmd::Predict {
            deltas,
            input,
            serve,
        } => {
            let mut p = predictor(&serve, &deltas)?;
            let t0 = std::time::Instant::now();
            let stdout = std::io::stdout().lock();
            let stderr = std::io::stderr().lock();
            let (ok, bad) = match input {
                Some(f) => {
                    let r = std::fs::File::open(&f)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                    bitfit_repro::predict::predict_lines(
                        &mut p,
                        std::io::BufReader::new(r),
                        stdout,
                        stderr,
                    )?
                }
                None => bitfit_repro::predict::predict_lines(
                    &mut p,
                    std::io::stdin().lock(),
                    stdout,
                    stderr,
                )?,
            };
            let secs = t0.elapsed().as_secs_f64();
            eprintln!(
                "{ok} lines predicted, {bad} in error, in {secs:.1} s ({:.1} lines/s after loading); peak RSS {:.0} MiB",
                ok as f64 / secs.max(1e-9),
                bitfit_repro::bench::peak_rss_mib()
            );
        }
        Cmd::Submit { deltas, out, serve } => {
            let files = bitfit_repro::delta::files_in(&deltas)?;
            let mut p = predictor(&serve, &files)?;
            let sub =
                bitfit_repro::predict::submit(&mut p, &hub::resolve_data(&serve.data)?, &out)?;
            for (f, n) in &sub.written {
                println!("{f}: {n} rows");
            }
            for (f, why) in &sub.missing {
                println!("{f}: not written ({why})");
            }
            println!("submission: {}", sub.zip.display());
        }
        Cmd::Report {
            results,
            out,
            epoch_rule,
            exclude_degenerate,
        } => {
            let stores = bitfit_repro::store::stores_or_default(&results)?;
            let refs: Vec<&std::path::Path> = stores.iter().map(|p| p.as_path()).collect();
            let rules = bitfit_repro::report::Rules {
                epoch: epoch_rule,
                exclude_degenerate,
            };
            let w = bitfit_repro::report::report(&refs, &out, &rules)?;
            print!("{}", w.table3);
            for s in &w.skipped {
                println!("skipped: {s}");
            }
            println!("written to {}/: {}", out.display(), w.files.join(", "));
        }
        Cmd::Bench(a) => bench(a)?,
        Cmd::Fetch {
            id,
            dataset,
            revision,
            configs,
        } => {
            let kind = if dataset {
                hub::RepoKind::Dataset
            } else {
                hub::RepoKind::Model
            };
            let dir = hub::fetch(
                &hub::hub_cache_dir(),
                &hub::hub_endpoint(),
                kind,
                &id,
                &revision,
                &hub::wanted(kind, configs.as_deref()),
            )?;
            println!("{id}@{revision} is in the cache at {}", dir.display());
        }
        Cmd::Run(a) => run_grid(a)?,
        Cmd::Status { grid, set } => bitfit_repro::runner::status(&grid, &set)?,
        Cmd::Tokenize {
            model,
            text,
            pair,
            max_length,
        } => {
            let dir = hub::resolve_model(&model)?;
            let tok = tokenize::BertTokenizer::from_model_dir(&dir, max_length)?;
            let e = tok.encode(&text, pair.as_deref())?;
            println!(
                "input_ids: {:?}\ntoken_type_ids: {:?}",
                e.input_ids, e.token_type_ids
            );
        }
    }
    Ok(())
}
