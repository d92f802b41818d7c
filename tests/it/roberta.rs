//! RoBERTa, the paper's third family, against PyTorch transformers on a tiny random-init model
//! (fixtures from scripts/make_fixtures.py): the encoder, the task head, the byte-level BPE
//! tokenizer, five golden optimizer steps, loading errors and parameter accounting.
use std::collections::BTreeMap;

use bitfit_repro::backend::Backend;
use bitfit_repro::finetune::train::Targets;
use bitfit_repro::finetune::{AdamWConfig, Method, Trainer, trainable_encoder_scalars};
use bitfit_repro::inspect::inspect;
use bitfit_repro::model::{BertClassifier, BertConfig, Checkpoint, HeadPooling};
use bitfit_repro::tokenize::BertTokenizer;
use burn::prelude::*;

use crate::common::{
    Tensors, check_golden_steps, fixtures, golden_batch, max_abs_diff, test_backends,
};

const TOL: f32 = 1e-4;

fn tiny() -> std::path::PathBuf {
    fixtures().join("tiny_roberta")
}

fn tensor2(t: &Tensors, name: &str, dev: &Device) -> Tensor<2, Int> {
    let s = t.shape(name);
    Tensor::from_data(TensorData::new(t.i64(name), [s[0], s[1]]), dev)
}

/// The tiny RoBERTa with its checkpoint head (classifier.dense + classifier.out_proj).
fn classifier(dev: &Device, dropout_off: bool) -> BertClassifier {
    let mut ckpt = Checkpoint::open(&tiny()).unwrap();
    if dropout_off {
        ckpt.config.hidden_dropout_prob = 0.0;
        ckpt.config.attention_probs_dropout_prob = 0.0;
    }
    let (enc, report) = ckpt.load(dev).unwrap();
    assert!(
        report
            .ignored
            .iter()
            .any(|k| k == "classifier.out_proj.weight"),
        "{:?}",
        report.ignored
    );
    assert!(enc.pooler.is_none(), "RoBERTa's task model has no pooler");
    BertClassifier::new(enc, &ckpt.config, 3, HeadPooling::Pooler, 0, dev)
}

fn set_head(clf: &mut BertClassifier, t: &Tensors, prefix: &str, dev: &Device) {
    clf.set_dense(
        &t.f32(&format!("{prefix}classifier.dense.weight")),
        &t.f32(&format!("{prefix}classifier.dense.bias")),
        dev,
    );
    clf.set_head(
        &t.f32(&format!("{prefix}classifier.out_proj.weight")),
        &t.f32(&format!("{prefix}classifier.out_proj.bias")),
        dev,
    );
}

#[test]
fn tiny_roberta_matches_pytorch_on_every_backend() {
    let weights = Tensors::open(tiny().join("model.safetensors"));
    let r = Tensors::open(fixtures().join("tiny_roberta_reference.safetensors"));
    for backend in test_backends() {
        let dev = backend.device().unwrap();
        let mut clf = classifier(&dev, false);
        set_head(&mut clf, &weights, "", &dev);
        let ids = tensor2(&r, "input_ids", &dev);
        let tt = tensor2(&r, "token_type_ids", &dev);
        let mask = tensor2(&r, "attention_mask", &dev).float();
        let hidden = clf.bert.forward(ids.clone(), tt.clone(), mask.clone());
        let dh = max_abs_diff(
            &hidden.into_data().try_into_vec_as::<f32>().unwrap(),
            &r.f32("last_hidden_state"),
        );
        let logits = clf.forward(ids, tt, mask);
        let dl = max_abs_diff(
            &logits.into_data().try_into_vec_as::<f32>().unwrap(),
            &r.f32("logits"),
        );
        eprintln!("tiny RoBERTa on {backend}: max|Δ| hidden {dh:.2e}, logits {dl:.2e}");
        assert!(dh <= TOL, "{backend}: hidden states differ by {dh}");
        assert!(dl <= TOL, "{backend}: logits differ by {dl}");
    }
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    text_pair: Option<String>,
    max_length: usize,
    input_ids: Vec<u32>,
}

/// tokenizer.json and the vocab.json + merges.txt fallback give RobertaTokenizerFast's ids:
/// `<s> A </s></s> B </s>`, longest-first truncation, token types all 0, pad id from `<pad>`.
#[test]
fn roberta_tokenizer_ids_equal_hf() {
    let cases: Vec<Case> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("roberta_tokenizer_cases.json")).unwrap(),
    )
    .unwrap();
    assert!(
        cases
            .iter()
            .any(|c| c.text_pair.is_some() && c.max_length == 12)
    );
    for dir in [tiny(), fixtures().join("tiny_roberta_vocab_only")] {
        for c in &cases {
            let tok = BertTokenizer::from_model_dir(&dir, c.max_length).unwrap();
            assert_eq!(tok.pad_id, 1, "<pad>");
            let e = tok.encode(&c.text, c.text_pair.as_deref()).unwrap();
            assert_eq!(
                e.input_ids,
                c.input_ids,
                "{} ({}): {:?} / {:?} (max {})",
                dir.display(),
                tok.source,
                c.text,
                c.text_pair,
                c.max_length
            );
            assert!(e.token_type_ids.iter().all(|&t| t == 0));
        }
    }
}

#[derive(serde::Deserialize)]
struct Golden {
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    token_type_ids: Vec<Vec<i64>>,
    labels: Vec<i64>,
    steps: usize,
    runs: BTreeMap<String, GoldenRun>,
}

#[derive(serde::Deserialize)]
struct GoldenRun {
    method: String,
    lr: f64,
    losses: Vec<f64>,
    grad_norms: Vec<f64>,
    trainable: Vec<String>,
    file: String,
}

fn run_golden(backend: Backend, tag: &str) {
    let g: Golden = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("golden_steps/roberta_golden_steps.json"))
            .unwrap(),
    )
    .unwrap();
    let run = &g.runs[tag];
    let file = Tensors::open(fixtures().join("golden_steps").join(&run.file));
    let dev = backend.device().unwrap().autodiff();
    let mut clf = classifier(&dev, true);
    set_head(&mut clf, &file, "init.", &dev);
    let method = Method::parse(&run.method).unwrap();
    let mut trainer = Trainer::new(clf, &method, AdamWConfig::default(), false);
    let mut ours: Vec<String> = trainer
        .model()
        .hf_task_tensors(|_, req| req)
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut theirs = run.trainable.clone();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "{tag}: trainable tensors");
    let b = golden_batch(&g.input_ids, &g.token_type_ids, &g.attention_mask);
    let targets = Targets::Classes(g.labels.clone());
    check_golden_steps(
        &mut trainer,
        &b,
        &targets,
        run.lr,
        &run.losses[..g.steps],
        &run.grad_norms[..g.steps],
        &file,
        &format!("{backend} {tag}"),
    );
}

#[test]
fn roberta_golden_steps() {
    for backend in test_backends() {
        run_golden(backend, "full_ft");
        run_golden(backend, "bitfit");
    }
}

/// A folder whose config.json names one family and whose weights are another's is one error
/// naming both.
#[test]
fn wrong_family_checkpoint_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        tiny().join("model.safetensors"),
        tmp.path().join("model.safetensors"),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(tiny().join("config.json"))
        .unwrap()
        .replace("\"roberta\"", "\"bert\"");
    std::fs::write(tmp.path().join("config.json"), cfg).unwrap();
    let dev = Backend::Ndarray.device().unwrap();
    let e = Checkpoint::open(tmp.path())
        .unwrap()
        .load(&dev)
        .map(|_| ())
        .expect_err("a RoBERTa checkpoint under a BERT config must not load");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("roberta")
            && msg.contains("`roberta.` prefix")
            && msg.contains("model_type `bert`"),
        "{msg}"
    );
}

/// roberta-base's shares as the paper counts them (the encoder of the task model: no pooler).
#[test]
fn roberta_base_counts() {
    let cfg = BertConfig::roberta_base();
    let ins = inspect(&cfg);
    assert_eq!(ins.total, 124_055_040, "RobertaModel without the pooler");
    let n = |m: &str| trainable_encoder_scalars(&Method::parse(m).unwrap(), &cfg).unwrap();
    assert_eq!(
        n("bitfit"),
        102_144,
        "12 × 8,448 layer biases + the embeddings LayerNorm bias"
    );
    assert_eq!(n("b_q+b_m2"), 12 * (768 + 3072));
    let share = 100.0 * n("bitfit") as f64 / ins.total as f64;
    assert!((share - 0.082).abs() < 0.001, "{share}");
    assert!(ins.render().contains("RoBERTa"), "{}", ins.render());
}

fn repro() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_repro"));
    c.current_dir(crate::common::repo());
    c
}

fn ok(out: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

/// The RoBERTa smoke grid trains end to end, and the report puts it in its own model block,
/// beside the paper's RoBERTa-base row.
#[test]
fn roberta_smoke_grid_runs_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let text = ok(&repro()
        .args(["run", "experiments/smoke_roberta.toml"])
        .arg(format!("--set=store={}", store.display()))
        .output()
        .unwrap());
    assert!(text.contains("2 trained"), "{text}");
    let out_dir = tmp.path().join("tables");
    ok(&repro()
        .args(["report", "--results"])
        .arg(&store)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap());
    let t2 = std::fs::read_to_string(out_dir.join("table2.md")).unwrap();
    assert!(t2.contains("## tiny_roberta"), "{t2}");
    assert!(t2.contains("ours − paper roberta-base"), "{t2}");
}

/// The roberta-base grid resolves `roberta-base` from the Hugging Face cache layout: one RTE
/// cell of it, trained on the tiny RoBERTa placed there.
#[test]
fn roberta_base_grid_runs_from_the_hub_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("hub/models--roberta-base");
    let snap = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    for f in std::fs::read_dir(tiny()).unwrap().flatten() {
        std::fs::copy(f.path(), snap.join(f.file_name())).unwrap();
    }
    let store = tmp.path().join("store");
    let text = ok(&repro()
        .env("HF_HUB_CACHE", tmp.path().join("hub"))
        .args([
            "run",
            "experiments/paper/table2_roberta.toml",
            "--set=task=RTE",
            "--set=seed=0",
            "--set=train_size=16",
            "--set=eval_size=16",
            "--set=epochs=1",
            "--set=max_length=64",
            "--set=backend=ndarray",
        ])
        .arg(format!("--set=store={}", store.display()))
        .output()
        .unwrap());
    assert!(text.contains("6 trained"), "{text}");
    let rec = std::fs::read_dir(store.join("runs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let cfg = std::fs::read_to_string(rec.join("config.json")).unwrap();
    assert!(cfg.contains("\"model\": \"roberta-base\""), "{cfg}");
}

/// A legacy `pytorch_model.bin` of the bare encoder (no `roberta.` prefix) loads to the same model.
#[test]
fn unprefixed_roberta_bin_loads_and_matches() {
    let dev = Backend::Ndarray.device().unwrap();
    let ckpt = Checkpoint::open(&fixtures().join("tiny_roberta_bin")).unwrap();
    assert!(ckpt.weights.ends_with("pytorch_model.bin"));
    let (enc, _) = ckpt.load(&dev).unwrap();
    let r = Tensors::open(fixtures().join("tiny_roberta_reference.safetensors"));
    let hidden = enc.forward(
        tensor2(&r, "input_ids", &dev),
        tensor2(&r, "token_type_ids", &dev),
        tensor2(&r, "attention_mask", &dev).float(),
    );
    let d = max_abs_diff(
        &hidden.into_data().try_into_vec_as::<f32>().unwrap(),
        &r.f32("last_hidden_state"),
    );
    assert!(d <= TOL, "hidden states differ by {d}");
}
