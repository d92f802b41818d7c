//! `repro slurm`: the job-array script, the cost-balanced shard plan and the errors. The real
//! cluster test (submit, requeue a task mid-run, every cell exactly once) is
//! scripts/slurm_ci.sh, which .ci/run runs after the tests.
use std::process::Command;

use bitfit_repro::grid::Grid;
use bitfit_repro::runner::{PlannedRun, mine, plan};
use bitfit_repro::slurm::{Resources, ShardPlan, parse_slurm_time, pending, script};
use bitfit_repro::store::{RunState, Store};

use crate::common::{minilm, repo};

fn repro() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_repro"));
    c.current_dir(repo());
    c
}

#[test]
fn slurm_times_parse() {
    assert_eq!(parse_slurm_time("90").unwrap(), 5400);
    assert_eq!(parse_slurm_time("10:30").unwrap(), 630);
    assert_eq!(parse_slurm_time("2:00:00").unwrap(), 7200);
    assert_eq!(parse_slurm_time("1-12").unwrap(), 86400 + 12 * 3600);
    assert_eq!(parse_slurm_time("1-00:30").unwrap(), 86400 + 1800);
    assert_eq!(parse_slurm_time("2-01:00:05").unwrap(), 2 * 86400 + 3605);
    for bad in ["", "x", "1:2:3:4", "-5", "1h"] {
        assert!(parse_slurm_time(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_script_runs_one_shard_per_array_task() {
    let res = Resources {
        partition: Some("gpu".into()),
        time: Some("2:00:00".into()),
        gpus_per_task: Some(1),
        cpus_per_task: Some(4),
        mem: Some("16G".into()),
        array_parallelism: Some(2),
        requeue: true,
        sbatch_args: vec!["--account=nlp".into(), "#SBATCH --qos=low".into()],
    };
    let argv = vec![
        "/opt/repro".to_string(),
        "run".into(),
        "/g/grid's.toml".into(),
    ];
    let s = script(
        "g",
        3,
        &res,
        std::path::Path::new("/work"),
        &argv,
        std::path::Path::new("/store/slurm"),
    );
    for want in [
        "#!/bin/bash\n",
        "#SBATCH --array=0-2%2\n",
        "#SBATCH --output=/store/slurm/%A_%a.log\n",
        "#SBATCH --partition=gpu\n",
        "#SBATCH --time=2:00:00\n",
        "#SBATCH --gpus-per-task=1\n",
        "#SBATCH --cpus-per-task=4\n",
        "#SBATCH --mem=16G\n",
        "#SBATCH --requeue\n",
        "#SBATCH --account=nlp\n",
        "#SBATCH --qos=low\n",
        "cd '/work'\n",
        "exec '/opt/repro' 'run' '/g/grid'\\''s.toml' --shard \"$SLURM_ARRAY_TASK_ID/3\"\n",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
}

/// The plan gives every run it is handed one shard, balanced by the store's estimated cost.
#[test]
fn shard_plans_balance_estimated_cost() {
    if minilm().is_none() {
        return;
    }
    // the whole plan of a committed grid, done runs included, so that the test does not depend on
    // how far the campaign has got (its pending tail can be a few runs too unequal to balance);
    // the store's measured times give every run an estimate
    let g = Grid::from_file(&repo().join("experiments/paper/fig2_squad.toml")).unwrap();
    let runs = plan(&g).unwrap();
    let store = Store::open(repo().join(&g.store)).unwrap();
    let all: Vec<&PlannedRun> = runs.iter().collect();
    assert!(all.len() > 10);
    // `slurm` hands the plan only what is pending: the store's finished runs stay out
    let todo = pending(&runs, &store, false);
    assert!(
        todo.len() < runs.len()
            && todo
                .iter()
                .all(|r| !matches!(store.state(&r.id), RunState::Done))
    );
    let p = ShardPlan::balanced(&all, 4, &store);
    assert_eq!(p.runs.len(), all.len());
    assert_eq!(p.shards, 4);
    let (lo, hi) = p
        .estimated_seconds
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
    assert!(
        lo > 0.0 && hi / lo < 1.3,
        "unbalanced: {:?}",
        p.estimated_seconds
    );
    // each shard's worker takes exactly its runs; together they cover the plan once
    let mut seen = 0;
    for s in 0..4 {
        let mut n = 0;
        for (_, r) in mine(&runs, Some((s, 4)), Some(&p)) {
            assert_eq!(p.runs[&r.id], s);
            n += 1;
        }
        seen += n;
    }
    assert_eq!(seen, all.len());
}

#[test]
fn slurm_writes_the_job_and_names_bad_input() {
    if minilm().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let set_store = format!("--set=store={}", store.display());
    let out = repro()
        .args([
            "slurm",
            "experiments/smoke.toml",
            "--tasks",
            "3",
            &set_store,
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("8 runs in 3 array tasks"), "{stdout}");
    if store.starts_with("/tmp") {
        assert!(
            stderr.contains("warning: store") && stderr.contains("shared file system"),
            "{stderr}"
        );
    }
    let slurm_dir = store.join("slurm");
    let files: Vec<String> = std::fs::read_dir(&slurm_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let plan_file = files.iter().find(|f| f.ends_with(".plan.json")).unwrap();
    let p = ShardPlan::load(&slurm_dir.join(plan_file)).unwrap();
    assert_eq!((p.shards, p.runs.len()), (3, 8));
    let sb = files.iter().find(|f| f.ends_with(".sbatch")).unwrap();
    let text = std::fs::read_to_string(slurm_dir.join(sb)).unwrap();
    assert!(
        text.contains("--shard-plan=") && text.contains("#SBATCH --array=0-2\n"),
        "{text}"
    );

    // nothing to resubmit, sbatch missing, zero tasks: one clear line each
    let out = repro()
        .args([
            "slurm",
            "experiments/smoke.toml",
            "--retry-failed",
            &set_store,
        ])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("no failed run to resubmit"),
        "{e}"
    );
    let out = repro()
        .env("PATH", "/nonexistent")
        .args(["slurm", "experiments/smoke.toml", "--submit", &set_store])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("sbatch") && e.contains("login node"),
        "{e}"
    );
    // a submission: the job id printed and kept beside the script
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let sbatch = bin.join("sbatch");
    std::fs::write(&sbatch, "#!/bin/sh\necho \"Submitted batch job 4242\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sbatch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = repro()
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .args(["slurm", "experiments/smoke.toml", "--submit", &set_store])
        .output()
        .unwrap();
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{o}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = format!(
        "submitted job 4242; logs in {}/4242_*.log",
        slurm_dir.display()
    );
    assert!(o.contains(&logs), "{o}");
    let jobs: Vec<_> = std::fs::read_dir(&slurm_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "job"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(jobs, ["4242"]);
    let out = repro()
        .args([
            "slurm",
            "experiments/smoke.toml",
            "--tasks",
            "0",
            &set_store,
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tasks 0"));
}
