//! BitFit's deployment story end to end: runs keep their trained tensors, `repro export` gives
//! a delta file, `repro eval` applies it to the base model and reproduces the run's dev score
//! exactly, `repro predict` serves several tasks from one process, `repro submit` writes the
//! GLUE leaderboard's files; bad input is named.
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::{minilm, repo};

fn repro() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_repro"));
    c.current_dir(repo());
    c
}

fn ok(out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn err(out: Output) -> String {
    assert!(!out.status.success(), "should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const GRID: &str = r#"
name = "deltas"
[base]
model = "models/all-MiniLM-L6-v2"
data = "../shared/data/glue"
backend = "ndarray"
method = "bitfit"
lr = 1e-3
epochs = 1
batch_size = 8
max_length = 64
train_size = 32
eval_size = 64
save_trained = true
[axes]
task = ["SST-2", "MRPC", "STS-B"]
"#;

/// The last epoch's dev scores of each run in `store`, by task.
fn run_scores(store: &Path) -> Vec<(String, String, serde_json::Value)> {
    let mut v = Vec::new();
    for d in std::fs::read_dir(store.join("runs")).unwrap().flatten() {
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("result.json")).unwrap()).unwrap();
        let task = r["config"]["task"].as_str().unwrap().to_string();
        let last = r["epochs"].as_array().unwrap().last().unwrap()["dev"].clone();
        v.push((task, d.file_name().to_string_lossy().into_owned(), last));
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn deltas_export_eval_predict_submit() {
    if minilm().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("deltas.toml");
    std::fs::write(&grid, GRID).unwrap();
    let store = tmp.path().join("store");
    let text = ok(repro()
        .arg("run")
        .arg(&grid)
        .arg(format!("--set=store={}", store.display()))
        .output()
        .unwrap());
    assert!(text.contains("3 trained"), "{text}");

    let deltas = tmp.path().join("deltas");
    std::fs::create_dir_all(&deltas).unwrap();
    for (task, id, dev) in run_scores(&store) {
        // export by run id from the store; a BitFit delta is the biases + head: ~0.1% + head
        let file = deltas.join(format!("{task}.safetensors"));
        let text = ok(repro()
            .args(["export", &id, "--results"])
            .arg(&store)
            .arg("--out")
            .arg(&file)
            .output()
            .unwrap());
        assert!(text.contains(&task), "{text}");
        let size = std::fs::metadata(&file).unwrap().len();
        assert!(
            size < 200_000,
            "{task}: a BitFit delta of MiniLM is small, got {size} bytes"
        );
        // applied to the base model, it reproduces the run's last-epoch dev scores exactly
        let out = ok(repro()
            .args(["eval", "--eval-size", "64", "--delta"])
            .arg(&file)
            .output()
            .unwrap());
        let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(got, dev, "{task}: eval of the delta vs the run's record");
    }

    // many tasks from one process; bad lines are answered in place and the stream goes on
    let input = [
        r#"{"task": "SST-2", "text": "a gorgeous, witty, seductive movie."}"#,
        r#"{"task": "MRPC", "text": "He said hello.", "text_pair": "He greeted them."}"#,
        "not json",
        r#"{"task": "RTE", "text": "a", "text_pair": "b"}"#,
        r#"{"task": "STS-B", "text": "A man plays.", "text_pair": "A man is playing."}"#,
        r#"{"task": "SST-2", "text": "dull and lifeless."}"#,
    ]
    .join("\n");
    let mut child = repro()
        .arg("predict")
        .args([
            "--delta",
            &deltas.join("SST-2.safetensors").display().to_string(),
        ])
        .args([
            "--delta",
            &deltas.join("MRPC.safetensors").display().to_string(),
        ])
        .args([
            "--delta",
            &deltas.join("STS-B.safetensors").display().to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<serde_json::Value> = ok(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert!(["0", "1"].contains(&lines[0]["label"].as_str().unwrap()));
    assert_eq!(lines[1]["task"], "MRPC");
    assert_eq!(lines[2]["line"], 3);
    assert_eq!(lines[3]["line"], 4);
    assert!(
        lines[3]["error"]
            .as_str()
            .unwrap()
            .contains("no delta for task RTE")
    );
    assert!(lines[4]["score"].as_f64().unwrap().is_finite());
    assert!(
        stderr.contains("line 3:") && stderr.contains("line 4:"),
        "{stderr}"
    );

    // an empty request stream is one error
    let e = err(repro()
        .arg("predict")
        .args([
            "--delta",
            &deltas.join("SST-2.safetensors").display().to_string(),
        ])
        .arg("--input")
        .arg("/dev/null")
        .output()
        .unwrap());
    assert!(e.contains("empty input"), "{e}");

    // the leaderboard's files from the three deltas; the others are listed, not faked
    let sub = tmp.path().join("submission");
    ok(repro()
        .args(["submit", "--deltas"])
        .arg(&deltas)
        .arg("--out")
        .arg(&sub)
        .output()
        .unwrap());
    for (file, rows) in [("SST-2.tsv", 1821), ("MRPC.tsv", 1725), ("STS-B.tsv", 1379)] {
        let text = std::fs::read_to_string(sub.join(file)).unwrap();
        let mut it = text.lines();
        assert_eq!(it.next(), Some("index\tprediction"));
        let body: Vec<&str> = it.collect();
        assert_eq!(body.len(), rows, "{file}");
        for (i, l) in body.iter().enumerate() {
            let (idx, pred) = l.split_once('\t').unwrap();
            assert_eq!(idx, i.to_string());
            if file == "STS-B.tsv" {
                let v: f64 = pred.parse().unwrap();
                assert!((0.0..=5.0).contains(&v), "{l}");
            } else {
                assert!(pred == "0" || pred == "1", "{file}: {l}");
            }
        }
    }
    let missing = std::fs::read_to_string(sub.join("MISSING.txt")).unwrap();
    for f in [
        "CoLA.tsv",
        "QQP.tsv",
        "MNLI-m.tsv",
        "MNLI-mm.tsv",
        "QNLI.tsv",
        "RTE.tsv",
        "WNLI.tsv",
        "AX.tsv",
    ] {
        assert!(missing.contains(f), "{missing}");
    }
    let zip =
        zip::ZipArchive::new(std::fs::File::open(sub.join("submission.zip")).unwrap()).unwrap();
    let mut names: Vec<String> = (0..zip.len())
        .map(|i| zip.name_for_index(i).unwrap().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["MRPC.tsv", "SST-2.tsv", "STS-B.tsv"]);

    // a delta on another base model is refused, naming both digests
    let e = err(repro()
        .args(["eval", "--model", "tests/fixtures/tiny_bert", "--delta"])
        .arg(deltas.join("SST-2.safetensors"))
        .output()
        .unwrap());
    assert!(
        e.contains("made on base model models/all-MiniLM-L6-v2 (digest")
            && e.contains("tiny_bert (digest"),
        "{e}"
    );
}

#[test]
fn bad_deltas_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file").unwrap();
    let e = err(repro()
        .args(["eval", "--delta"])
        .arg(&junk)
        .output()
        .unwrap());
    assert!(
        e.contains("junk.safetensors") && e.contains("not a safetensors file"),
        "{e}"
    );
    let e = err(repro()
        .args(["eval", "--delta"])
        .arg(tmp.path().join("missing.safetensors"))
        .output()
        .unwrap());
    assert!(
        e.contains("missing.safetensors") && e.contains("cannot read"),
        "{e}"
    );
    // a safetensors file that is not a delta (a model checkpoint)
    let e = err(repro()
        .args([
            "eval",
            "--delta",
            "tests/fixtures/tiny_bert/model.safetensors",
        ])
        .output()
        .unwrap());
    assert!(e.contains("no delta metadata"), "{e}");
    // a run without saved tensors
    let e = err(repro()
        .args(["export", "results/fig2/runs/0b57adc7150c9e45", "--out"])
        .arg(tmp.path().join("x.safetensors"))
        .output()
        .unwrap());
    assert!(
        e.contains("kept no trained tensors") && e.contains("save_trained"),
        "{e}"
    );
    // a run id where there is no store to look in, and one no store holds
    let e = err(repro()
        .current_dir(tmp.path())
        .args(["export", "0b57adc7150c9e45", "--out", "x.safetensors"])
        .output()
        .unwrap());
    assert!(
        e.contains("results/") && e.contains("pass --results DIR"),
        "{e}"
    );
    let e = err(repro()
        .args(["export", "0000000000000000", "--out"])
        .arg(tmp.path().join("x.safetensors"))
        .output()
        .unwrap());
    assert!(
        e.contains("neither a run folder nor a run id in results/"),
        "{e}"
    );
}

/// A LoRA run's delta carries its extra modules: `repro eval` rebuilds them and reproduces the
/// run's dev scores exactly.
#[test]
fn lora_delta_reproduces_its_run() {
    if minilm().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("run.json");
    ok(repro()
        .args([
            "train",
            "--task",
            "RTE",
            "--method",
            "lora:r=4,alpha=8,targets=q+v",
            "--lr",
            "1e-3",
            "--train-size",
            "16",
            "--eval-size",
            "16",
            "--epochs",
            "1",
            "--max-length",
            "64",
            "--save-trained",
        ])
        .arg("--out")
        .arg(&rec)
        .output()
        .unwrap());
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
    let delta = tmp.path().join("run.delta.safetensors");
    let out = ok(repro()
        .args(["eval", "--eval-size", "16", "--delta"])
        .arg(&delta)
        .output()
        .unwrap());
    let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(got, r["epochs"][0]["dev"]);
}
