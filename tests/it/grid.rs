//! Grid expansion, run identity and bad-grid errors.
use std::path::Path;

use bitfit_repro::finetune::Method;
use bitfit_repro::grid::Grid;
use bitfit_repro::store::run_id;

fn parse(src: &str) -> anyhow::Result<Grid> {
    Grid::parse(src, Path::new("exp/test.toml"))
}

const GRID: &str = r#"
name = "g"
[base]
epochs = 3
batch_size = 8
[axes]
task = ["RTE", "MRPC"]
seeds = [0, 1, 2]
[[zip]]
method = ["full_ft", "bitfit", "b_q+b_m2"]
lr = [2e-5, 1e-3, 1e-3]
[[override]]
when = { task = "rte", method = "bitfit" }
set = { epochs = 5 }
"#;

#[test]
fn cartesian_zip_and_overrides() {
    let g = parse(GRID).unwrap();
    assert_eq!(g.name, "g");
    assert_eq!(g.store, Path::new("results/g"));
    let cells = g.expand().unwrap();
    assert_eq!(cells.len(), 2 * 3 * 3);
    // zip keeps method and lr in step
    for c in &cells {
        let lr = c.config.lr;
        match &c.config.method {
            Method::FullFt => assert_eq!(lr, 2e-5),
            _ => assert_eq!(lr, 1e-3),
        }
    }
    // override: RTE + bitfit runs get 5 epochs, the rest 3
    for c in &cells {
        let want = if c.config.task.name() == "RTE" && c.config.method == Method::Bitfit {
            5
        } else {
            3
        };
        assert_eq!(c.config.epochs, want, "{:?}", c.settings);
    }
    let seeds: Vec<u64> = cells.iter().map(|c| c.config.seed).collect();
    assert_eq!(&seeds[..3], &[0, 0, 0], "method varies fastest (last axis)");
    assert_eq!(cells[0].config.batch_size, 8);
    assert_eq!(cells[0].config.max_length, 128, "reference default");
}

#[test]
fn cli_set_overrides_base_and_axes() {
    let mut g = parse(GRID).unwrap();
    g.apply_set("epochs=1").unwrap();
    // the CLI beats the file's [[override]] too
    assert!(g.expand().unwrap().iter().all(|c| c.config.epochs == 1));
    g.apply_set("seeds=[7]").unwrap();
    g.apply_set("store=/tmp/elsewhere").unwrap();
    g.apply_set("task=SST-2").unwrap();
    let cells = g.expand().unwrap();
    assert_eq!(cells.len(), 3);
    assert!(
        cells
            .iter()
            .all(|c| c.config.seed == 7 && c.config.epochs == 1)
    );
    assert_eq!(g.store, Path::new("/tmp/elsewhere"));
    let e = g.apply_set("lr=0.1").unwrap_err().to_string();
    assert!(e.contains("zipped"), "{e}");
    let e = g.apply_set("epochs").unwrap_err().to_string();
    assert!(e.contains("key=value"), "{e}");
    let e = g.apply_set("epochz=3").unwrap_err().to_string();
    assert!(
        e.contains("--set epochz") && e.contains("unknown key"),
        "{e}"
    );
}

#[test]
fn exclusions_drop_matching_cells_after_overrides() {
    let src = format!(
        "{GRID}[[exclude]]\nwhen = {{ task = \"mrpc\", method = \"full_ft\" }}\nreason = \"another grid\"\n[[exclude]]\nwhen = {{ epochs = 5, seed = 2 }}\n"
    );
    let g = parse(&src).unwrap();
    let cells = g.expand().unwrap();
    // 18 cells, minus MRPC x full_ft (3 seeds), minus RTE x bitfit (epochs 5 by override) seed 2
    assert_eq!(cells.len(), 18 - 3 - 1);
    assert!(
        cells
            .iter()
            .all(|c| !(c.config.task.name() == "MRPC" && c.config.method == Method::FullFt))
    );
    assert!(
        cells
            .iter()
            .all(|c| !(c.config.epochs == 5 && c.config.seed == 2))
    );
    // an exclusion that matches nothing is a mistake in the file ...
    let bad = format!("{GRID}[[exclude]]\nwhen = {{ task = \"CoLA\" }}\n");
    let e = parse(&bad).unwrap().expand().unwrap_err().to_string();
    assert!(
        e.contains("exp/test.toml")
            && e.contains("[[exclude]] #1")
            && e.contains("matches no cell"),
        "{e}"
    );
    // ... unless the command line narrowed the grid
    let mut g = parse(&src).unwrap();
    g.apply_set("task=RTE").unwrap();
    assert_eq!(g.expand().unwrap().len(), 9 - 1);
    for bad in [
        format!("{GRID}[[exclude]]\nwhen = {{}}\n"),
        format!("{GRID}[[exclude]]\nwhen = {{ epochz = 1 }}\n"),
        format!("{GRID}[[exclude]]\nwhen = {{ task = \"RTE\" }}\nwhy = \"x\"\n"),
    ] {
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("exp/test.toml"), "{e}");
    }
}

#[test]
fn run_ids_are_stable_and_change_with_any_field() {
    let g = parse(GRID).unwrap();
    let cells = g.expand().unwrap();
    let c = &cells[0].config;
    let id = run_id(c, "m", "d");
    assert_eq!(
        id,
        run_id(&g.expand().unwrap()[0].config, "m", "d"),
        "same config, same id"
    );
    assert_eq!(id.len(), 16);
    let mut ids = std::collections::HashSet::new();
    for c in &cells {
        assert!(
            ids.insert(run_id(&c.config, "m", "d")),
            "distinct cells, distinct ids"
        );
    }
    assert_ne!(id, run_id(c, "m2", "d"), "model digest");
    assert_ne!(id, run_id(c, "m", "d2"), "data digest");
    type Variant = Box<dyn Fn(&mut bitfit_repro::finetune::TrainConfig)>;
    let variants: Vec<Variant> = vec![
        Box::new(|c| c.lr *= 2.0),
        Box::new(|c| c.epochs += 1),
        Box::new(|c| c.batch_size += 1),
        Box::new(|c| c.max_length += 1),
        Box::new(|c| c.seed += 1),
        Box::new(|c| c.data_seed += 1),
        Box::new(|c| c.train_size = Some(10)),
        Box::new(|c| c.eval_size = Some(10)),
        Box::new(|c| c.eval_train = !c.eval_train),
        Box::new(|c| c.pad_to_max_length = !c.pad_to_max_length),
        Box::new(|c| c.optimizer.eps = 1e-8),
        Box::new(|c| c.optimizer.max_grad_norm = None),
        Box::new(|c| c.head = bitfit_repro::model::HeadPooling::Mean),
        Box::new(|c| c.method = Method::Frozen),
        Box::new(|c| c.backend = bitfit_repro::backend::Backend::Flex),
    ];
    for (i, v) in variants.iter().enumerate() {
        let mut c2 = c.clone();
        v(&mut c2);
        assert_ne!(id, run_id(&c2, "m", "d"), "variant {i} must change the id");
    }
    // local paths are not part of the identity (digests are)
    let mut c3 = c.clone();
    c3.model = "/elsewhere/model".into();
    assert_eq!(id, run_id(&c3, "m", "d"));
}

/// Each mistake must produce an error naming the problem (and the file:line where it has one).
#[test]
fn bad_grids_name_the_problem() {
    let base = "[axes]\ntask = [\"RTE\"]\nmethod = [\"bitfit\"]\nlr = [1e-3]\n";
    let cases: &[(&str, &[&str])] = &[
        (
            "[base]\nepoch = 3\n",
            &["exp/test.toml:2", "unknown key `epoch`", "epochs"],
        ),
        (
            "[base]\nepochs = \"three\"\n",
            &["exp/test.toml:2", "`epochs`", "expected an integer"],
        ),
        (
            "[axes]\nseed = []\n",
            &["exp/test.toml:2", "axis `seed` is empty"],
        ),
        (
            "[axes]\ntask = [\"RTEE\"]\nmethod = [\"bitfit\"]\nlr = [1e-3]\n",
            &["exp/test.toml:2", "unknown task `RTEE`", "valid tasks"],
        ),
        (
            "[axes]\ntask = [\"RTE\"]\nmethod = [\"bitfitt\"]\nlr = [1e-3]\n",
            &["exp/test.toml:3", "unknown method `bitfitt`", "valid"],
        ),
        (
            "[axes]\ntask = [\"RTE\"]\nmethod = [\"b_q+b_x\"]\nlr = [1e-3]\n",
            &["exp/test.toml:3", "unknown bias term `b_x`", "b_LN2"],
        ),
        (
            "[axes]\ntask = [\"RTE\"]\n[[zip]]\nmethod = [\"bitfit\", \"full_ft\"]\nlr = [1e-3]\n",
            &["exp/test.toml:4", "[[zip]] #1", "equally long"],
        ),
        (
            "[base]\nbackend = \"cuda\"\n",
            &["exp/test.toml:2", "unknown backend", "ndarray"],
        ),
        ("[base]\nlr = -1.0\n", &["exp/test.toml:2", "positive"]),
        (
            "[base]\nseed = 0\n[axes]\nseed = [1, 2]\n",
            &["exp/test.toml:4", "already set at exp/test.toml:2"],
        ),
        (
            "[basse]\nepochs = 3\n",
            &["exp/test.toml:1", "unknown field `basse`", "[base]"],
        ),
        ("[axes]\nseed = 3\n", &["exp/test.toml:2", "must be a list"]),
        (
            "[base]\nseed = [1, 2]\n",
            &["exp/test.toml:2", "belong in [axes]"],
        ),
        (
            "[base]\nhead = \"max\"\n",
            &["exp/test.toml:2", "pooler, cls, mean"],
        ),
        (
            "[base]\ntrain_size = \"half\"\n",
            &["exp/test.toml:2", "\"all\""],
        ),
        ("[base]\nepochs = 0\n", &["exp/test.toml:2", "at least 1"]),
        ("[base\nepochs = 3\n", &["exp/test.toml:1"]),
        ("name = \"a/b\"\n", &["plain folder name"]),
        (
            "[base]\nwarmup_ratio = 1.5\n",
            &["exp/test.toml:2", "between 0 and 1"],
        ),
    ];
    for (src, needles) in cases {
        let full = if src.contains("[axes]") {
            src.to_string()
        } else {
            format!("{src}{base}")
        };
        let err = match parse(&full) {
            Ok(_) => panic!("grid should be rejected:\n{full}"),
            Err(e) => format!("{e:#}"),
        };
        for n in *needles {
            assert!(
                err.contains(n),
                "error for\n{full}\nshould contain `{n}`, got: {err}"
            );
        }
    }
    // missing required keys
    let err = parse("[base]\nepochs = 1\n").unwrap_err().to_string();
    assert!(err.contains("no `task` given"), "{err}");
    let err = parse("[axes]\ntask = [\"RTE\"]\nmethod = [\"bitfit\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no `lr` given"), "{err}");
}

#[test]
fn shipped_grids_parse() {
    for f in ["experiments/smoke.toml", "experiments/quickstart.toml"] {
        let g = Grid::from_file(&crate::common::repo().join(f))
            .unwrap_or_else(|e| panic!("{f}: {e:#}"));
        assert!(!g.expand().unwrap().is_empty());
    }
    let smoke = Grid::from_file(&crate::common::repo().join("experiments/smoke.toml")).unwrap();
    assert_eq!(
        smoke.expand().unwrap().len(),
        8,
        "2 tasks x 2 methods x 2 seeds"
    );
}

/// Every campaign grid parses, and expands to exactly the run count its header comment states
/// (the first "N runs" in it), so a grid edited without its comment, or a comment planned against
/// the wrong count, fails here rather than misleading whoever budgets the campaign.
#[test]
fn paper_grids_expand_to_their_stated_run_counts() {
    let dir = crate::common::repo().join("experiments/paper");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let words: Vec<&str> = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .flat_map(str::split_whitespace)
            .collect();
        let stated = words
            .windows(2)
            .find_map(|w| {
                let runs = w[1].trim_end_matches(|c: char| !c.is_alphanumeric()) == "runs";
                runs.then(|| w[0].replace(',', "").parse::<usize>().ok())?
            })
            .unwrap_or_else(|| panic!("{name}: its header comment states no \"N runs\""));
        let grid = Grid::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        match grid.expand() {
            Ok(cells) => assert_eq!(
                cells.len(),
                stated,
                "{name}: expands to {} runs",
                cells.len()
            ),
            // the one grid whose model is not reachable here; tests/it/roberta.rs runs it from a
            // Hugging Face cache layout
            Err(e) if name == "table2_roberta.toml" => {
                assert!(format!("{e:#}").contains("roberta-base"), "{name}: {e:#}")
            }
            Err(e) => panic!("{name}: {e:#}"),
        }
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} grids in {}", dir.display());
}

#[test]
fn time_limit_durations_parse() {
    use bitfit_repro::runner::{human_seconds, parse_duration};
    assert_eq!(parse_duration("2h30m").unwrap(), 9000);
    assert_eq!(parse_duration("90m").unwrap(), 5400);
    assert_eq!(parse_duration("45s").unwrap(), 45);
    assert_eq!(parse_duration("3600").unwrap(), 3600);
    assert_eq!(parse_duration("1h5m10s").unwrap(), 3910);
    for bad in ["", "h", "2x", "1.5h", "10m5"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    assert_eq!(human_seconds(40.0), "40s");
    assert_eq!(human_seconds(750.0), "12m 30s");
    assert_eq!(human_seconds(3900.0), "1h 05m");
}

/// The planned run of `runs` at training-set size `n` with `method` at `lr`.
fn planned_config<'a>(
    runs: &'a [bitfit_repro::runner::PlannedRun],
    n: usize,
    method: &Method,
    lr: f64,
) -> &'a bitfit_repro::finetune::TrainConfig {
    let r = runs.iter().find(|r| {
        let c = &r.cell.config;
        c.train_size == Some(n) && c.method == *method && c.lr == lr
    });
    &r.unwrap_or_else(|| panic!("no planned run at {n} with {method:?} at {lr}"))
        .cell
        .config
}

/// A run of a training-set size the store has not finished yet is estimated per epoch as a line
/// in the size (the dev set's fixed scoring cost plus a cost per training example), fitted over
/// the sizes finished: here fig2's committed SST-2 runs at 100, 300 and 1,000 examples, from
/// which its 10,000-example runs are estimated.
#[test]
fn time_estimates_extrapolate_over_training_size() {
    use bitfit_repro::runner::{Estimator, fit_line, plan};
    let (a, b) = fit_line(&[(100.0, 12.0), (300.0, 16.0), (1000.0, 30.0)]).unwrap();
    assert!(
        (a - 10.0).abs() < 1e-9 && (b - 0.02).abs() < 1e-12,
        "{a} {b}"
    );
    assert_eq!(fit_line(&[(100.0, 5.0), (100.0, 7.0)]), None, "one size");
    assert_eq!(fit_line(&[(100.0, 9.0), (1000.0, 5.0)]), None, "falling");
    assert_eq!(fit_line(&[]), None);
    // a negative intercept (noise) is clamped: the line goes through the origin
    let (a, b) = fit_line(&[(100.0, 0.5), (1000.0, 20.0)]).unwrap();
    assert!(a == 0.0 && b > 0.019 && b < 0.021, "{a} {b}");

    if crate::common::minilm().is_none() {
        return;
    }
    let root = crate::common::repo();
    let grid = Grid::from_file(&root.join("experiments/paper/fig2.toml")).unwrap();
    let runs = plan(&grid).unwrap();
    let store = bitfit_repro::store::Store::open(root.join(&grid.store)).unwrap();
    let mut est = Estimator::new(&store);
    for (method, lr) in [("bitfit", 1e-3), ("full_ft", 5e-5)] {
        let method = Method::parse(method).unwrap();
        let mut per_epoch = |n: usize| {
            let c = planned_config(&runs, n, &method, lr);
            est.seconds(c).unwrap() / c.effective_epochs(n) as f64
        };
        let (at_1k, at_10k) = (per_epoch(1000), per_epoch(10000));
        // more examples cost more per epoch, but the dev set's scoring is not scaled by 10
        assert!(
            at_10k > 2.0 * at_1k && at_10k < 9.5 * at_1k,
            "{method}: {at_1k:.0} s an epoch at 1,000, {at_10k:.0} s at 10,000"
        );
    }
}

/// With one training-set size finished, a larger size is estimated from each run's two measured
/// parts (`cost_split`: the per-epoch scoring that does not grow with the training set, the
/// optimizer steps that do), not by scaling the whole epoch: here fig2_squad's committed BitFit
/// runs at 300 questions alone, from which its 1,000- and 3,000-question runs are estimated.
#[test]
fn time_estimates_from_one_size_scale_only_the_training_part() {
    use bitfit_repro::runner::{Estimator, cost_split, plan};
    if crate::common::minilm().is_none() {
        return;
    }
    let root = crate::common::repo();
    let grid = Grid::from_file(&root.join("experiments/paper/fig2_squad.toml")).unwrap();
    let runs = plan(&grid).unwrap();
    let committed = bitfit_repro::store::Store::open(root.join(&grid.store)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = bitfit_repro::store::Store::open(tmp.path()).unwrap();
    let method = Method::parse("bitfit").unwrap();
    let mut at_300 = Vec::new();
    for (id, r) in committed.results().unwrap() {
        if r.config.method == method && r.config.train_size == Some(300) {
            let dir = store.run_dir(&id);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("result.json"), serde_json::to_vec(&r).unwrap()).unwrap();
            at_300.push(r);
        }
    }
    assert!(
        at_300.len() >= 2,
        "fig2_squad has BitFit runs at 300 questions"
    );
    let mean = |f: &dyn Fn(&bitfit_repro::finetune::train::RunResult) -> f64| {
        at_300.iter().map(f).sum::<f64>() / at_300.len() as f64
    };
    let (fixed, per_question) = (mean(&|r| cost_split(r).0), mean(&|r| cost_split(r).1));
    let epoch_300 = mean(&|r| r.wall_seconds / r.epochs.len() as f64);
    // the parts add up to the measured epoch, and scoring 1,300 questions is a real share of it
    assert!((fixed + 300.0 * per_question - epoch_300).abs() < 1e-6 * epoch_300);
    assert!(
        fixed > 0.1 * epoch_300 && fixed < 0.9 * epoch_300,
        "{fixed} of {epoch_300}"
    );
    let mut est = Estimator::new(&store);
    for n in [1000, 3000] {
        let c = planned_config(&runs, n, &method, 1e-3);
        let epochs = c.total_epochs(n) as f64;
        let per_epoch = est.seconds(c).unwrap() / epochs;
        assert!(
            (per_epoch - (fixed + n as f64 * per_question)).abs() < 1e-6 * per_epoch,
            "{n}: {per_epoch}"
        );
        // the whole epoch scaled by the size would overestimate by the scoring part
        assert!(
            per_epoch < 0.9 * epoch_300 * n as f64 / 300.0,
            "{n}: {per_epoch}"
        );
    }
}
