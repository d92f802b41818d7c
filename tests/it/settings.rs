//! Every run setting is defined once (`settings::SETTINGS`): the grid keys, the `repro train`
//! flags and the stored config come from that one table.
use std::collections::BTreeMap;
use std::process::Command;

use bitfit_repro::finetune::{Method, TrainConfig};
use bitfit_repro::settings::{self, SETTINGS};

use crate::common::{minilm, repo};

fn repro() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_repro"));
    c.current_dir(repo());
    c
}

/// Each setting shows the default it holds, and applying that shown value changes nothing: the
/// table's defaults are TrainConfig::default()'s.
#[test]
fn shown_defaults_round_trip() {
    let d = TrainConfig::default();
    for s in SETTINGS {
        let shown = (s.show)(&d);
        if s.key == "min_steps" {
            assert_eq!(shown, "none", "min_steps is unset by default");
            continue;
        }
        let mut c = d.clone();
        (s.apply)(&mut c, &settings::parse_value(&shown))
            .unwrap_or_else(|e| panic!("{}: shown default `{shown}` does not apply: {e}", s.key));
        assert_eq!(
            c, d,
            "{}: applying its shown default `{shown}` changed the config",
            s.key
        );
    }
    let keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), keys.len(), "a key is defined twice");
}

#[test]
fn a_grid_cell_resolves_through_the_table() {
    let mut cell = BTreeMap::new();
    for (k, v) in [
        ("task", "RTE"),
        ("method", "b_q+b_m2"),
        ("lr", "3e-4"),
        ("train_size", "\"all\""),
        ("warmup_ratio", "0.1"),
        ("max_grad_norm", "0"),
        ("pad_to_max_length", "true"),
    ] {
        let value = settings::parse_value(v);
        settings::check(k, &value, "test").unwrap();
        cell.insert(k.to_string(), value);
    }
    let c = settings::resolve(&cell).unwrap();
    assert_eq!(c.task.name(), "RTE");
    assert_eq!(c.method, Method::parse("b_m2+b_q").unwrap());
    assert_eq!(c.lr, 3e-4);
    assert_eq!(c.train_size, None);
    assert!(c.pad_to_max_length);
    assert_eq!(c.optimizer.max_grad_norm, None, "0 = no clipping");
    assert_eq!(
        c.schedule,
        bitfit_repro::finetune::train::Schedule::Linear { warmup_ratio: 0.1 }
    );
    let e = settings::check("batch_size", &settings::parse_value("0"), "--batch-size")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--batch-size") && e.contains("at least 1"),
        "{e}"
    );
}

/// `repro train --help` lists a flag for every setting and every method the paper names.
#[test]
fn train_flags_come_from_the_settings() {
    let out = repro().args(["train", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    for s in SETTINGS {
        let flag = format!("--{}", s.key.replace('_', "-"));
        assert!(
            help.contains(&flag),
            "`{flag}` missing from repro train --help:\n{help}"
        );
    }
    for m in bitfit_repro::finetune::method::PAPER_METHODS {
        assert!(help.contains(m.spelling), "{} missing:\n{help}", m.spelling);
    }
    // an unknown value names the flag
    let out = repro()
        .args(["train", "--task", "RTE", "--head", "max"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--head") && err.contains("pooler, cls, mean"),
        "{err}"
    );
}

/// `repro train` is a one-cell grid: its stored config is what the grid would resolve.
#[test]
fn repro_train_is_a_one_cell_grid() {
    if minilm().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out_file = tmp.path().join("run.json");
    let out = repro()
        .args([
            "train",
            "--task",
            "RTE",
            "--method",
            "b_q+b_m2",
            "--lr",
            "1e-3",
            "--train-size",
            "8",
            "--eval-size",
            "8",
            "--epochs",
            "1",
            "--max-length",
            "32",
            "--pad-to-max-length",
            "--no-eval-train",
            "--seed",
            "3",
        ])
        .arg("--out")
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    let stored: TrainConfig = serde_json::from_value(rec["config"].clone()).unwrap();
    let mut cell = BTreeMap::new();
    for (k, v) in [
        ("task", "\"RTE\""),
        ("method", "\"b_q+b_m2\""),
        ("lr", "1e-3"),
        ("train_size", "8"),
        ("eval_size", "8"),
        ("epochs", "1"),
        ("max_length", "32"),
        ("pad_to_max_length", "true"),
        ("eval_train", "false"),
        ("seed", "3"),
    ] {
        cell.insert(k.to_string(), settings::parse_value(v));
    }
    assert_eq!(stored, settings::resolve(&cell).unwrap());
    assert_eq!(rec["epochs"].as_array().unwrap().len(), 1);
    assert!(rec["epochs"][0]["train"].is_null(), "--no-eval-train");
}

/// A train_size above the training split is said in the dry run (and in the run's log).
#[test]
fn oversized_train_size_is_reported() {
    if minilm().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = repro()
        .args([
            "run",
            "experiments/smoke.toml",
            "--dry-run",
            "--set=train_size=100000",
        ])
        .arg(format!("--set=store={}", tmp.path().join("s").display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("train_size 100000 exceeds the 3668 training examples of MRPC"),
        "{text}"
    );
}

/// `eval_train_size`: the train metrics come from a sample of that many training examples.
#[test]
fn eval_train_size_scores_a_sample() {
    if minilm().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out_file = tmp.path().join("run.json");
    let out = repro()
        .args([
            "train",
            "--task",
            "RTE",
            "--train-size",
            "16",
            "--eval-train-size",
            "5",
            "--eval-size",
            "8",
            "--epochs",
            "1",
            "--max-length",
            "32",
        ])
        .arg("--out")
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(rec["config"]["eval_train_size"], 5);
    let acc = rec["epochs"][0]["train"]["accuracy"].as_f64().unwrap();
    assert!(
        (acc * 5.0 - (acc * 5.0).round()).abs() < 1e-9,
        "accuracy {acc} is not k/5"
    );
    let dev = rec["epochs"][0]["dev"]["dev"]["accuracy"].as_f64().unwrap();
    assert!(
        (dev * 8.0 - (dev * 8.0).round()).abs() < 1e-9,
        "dev accuracy {dev} is not k/8"
    );
}
