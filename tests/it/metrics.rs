//! Metric functions against scikit-learn / scipy values (tests/fixtures/metrics.json).
use bitfit_repro::metrics::{accuracy, f1, matthews, pearson, spearman};
use serde_json::Value;

use crate::common::fixtures;

fn v(x: &Value) -> Vec<f64> {
    x.as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_f64().unwrap())
        .collect()
}
fn u(x: &Value) -> Vec<usize> {
    x.as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_u64().unwrap() as usize)
        .collect()
}
fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-9, "{what}: {a} vs sklearn/scipy {b}");
}

#[test]
fn metrics_equal_sklearn_and_scipy() {
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("metrics.json")).unwrap())
            .unwrap();
    let b = &m["binary"];
    let (y, p) = (u(&b["labels"]), u(&b["preds"]));
    close(
        accuracy(&y, &p),
        b["accuracy"].as_f64().unwrap(),
        "accuracy",
    );
    close(f1(&y, &p), b["f1"].as_f64().unwrap(), "f1");
    close(matthews(&y, &p), b["mcc"].as_f64().unwrap(), "mcc");
    let mc = &m["multiclass"];
    let (y, p) = (u(&mc["labels"]), u(&mc["preds"]));
    close(
        matthews(&y, &p),
        mc["mcc"].as_f64().unwrap(),
        "multi-class mcc",
    );
    close(
        accuracy(&y, &p),
        mc["accuracy"].as_f64().unwrap(),
        "multi-class accuracy",
    );
    let c = &m["constant"];
    close(
        matthews(&u(&c["labels"]), &u(&c["preds"])),
        c["mcc"].as_f64().unwrap(),
        "constant mcc",
    );
    close(
        f1(&u(&c["labels"]), &u(&c["preds"])),
        c["f1"].as_f64().unwrap(),
        "constant f1",
    );
    for k in ["regression", "regression_ties"] {
        let r = &m[k];
        let (x, yv) = (v(&r["x"]), v(&r["y"]));
        close(pearson(&x, &yv), r["pearson"].as_f64().unwrap(), "pearson");
        close(
            spearman(&x, &yv),
            r["spearman"].as_f64().unwrap(),
            "spearman",
        );
    }
}
