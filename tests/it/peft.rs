//! The baselines the paper only quoted: LoRA against the peft package and Houlsby adapters
//! against a reference module (scripts/make_fixtures.py), five golden optimizer steps each, and
//! their trainable counts.
use std::collections::BTreeMap;

use bitfit_repro::backend::Backend;
use bitfit_repro::data::Task;
use bitfit_repro::delta::{Delta, DeltaMeta};
use bitfit_repro::finetune::method::add_modules;
use bitfit_repro::finetune::train::Targets;
use bitfit_repro::finetune::{AdamWConfig, Method, Trainer, trainable_encoder_scalars};
use bitfit_repro::model::{BertClassifier, BertConfig, Checkpoint, HeadPooling, NamedTensor};

use crate::common::{Tensors, check_golden_steps, fixtures, golden_batch, test_backends};

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
    lr: f64,
    losses: Vec<f64>,
    grad_norms: Vec<f64>,
    trainable: Vec<String>,
    file: String,
}

fn run_golden(backend: Backend, tag: &str) {
    let g: Golden = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("golden_steps/peft_golden_steps.json")).unwrap(),
    )
    .unwrap();
    let run = &g.runs[tag];
    let file = Tensors::open(fixtures().join("golden_steps").join(&run.file));
    let dev = backend.device().unwrap().autodiff();
    let mut ckpt = Checkpoint::open(&fixtures().join("tiny_bert")).unwrap();
    ckpt.config.hidden_dropout_prob = 0.0;
    ckpt.config.attention_probs_dropout_prob = 0.0;
    let (bert, _) = ckpt.load(&dev).unwrap();
    let clf = BertClassifier::new(bert, &ckpt.config, 3, HeadPooling::Pooler, 0, &dev);
    let method = Method::parse(tag).unwrap();
    assert_eq!(method.to_string(), *tag, "spelling round-trips");
    // the extra modules, then the reference's initial values for them and the head
    let clf = add_modules(clf, &method, 0);
    let init: Vec<NamedTensor> = file
        .names()
        .into_iter()
        .filter_map(|n| n.strip_prefix("init.").map(str::to_string))
        .map(|n| NamedTensor {
            values: file.f32(&format!("init.{n}")),
            shape: file.shape(&format!("init.{n}")),
            name: n,
            require_grad: true,
        })
        .collect();
    let meta = DeltaMeta {
        base_model_digest: String::new(),
        model: String::new(),
        task: Task::Rte,
        labels: Vec::new(),
        method: tag.into(),
        head: HeadPooling::Pooler,
        max_length: 10,
        run_id: String::new(),
    };
    let clf = Delta {
        meta,
        tensors: init,
    }
    .apply(clf)
    .unwrap();
    let mut trainer = Trainer::new(clf, &method, AdamWConfig::default(), false);
    let mut ours: Vec<String> = trainer
        .model()
        .hf_task_tensors(|_, req| req)
        .into_iter()
        .map(|t| t.name)
        .collect();
    ours.sort();
    assert_eq!(ours, run.trainable, "{tag}: trainable tensors");
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
fn lora_matches_peft() {
    for backend in test_backends() {
        run_golden(backend, "lora:r=4,alpha=8,targets=q+v");
    }
}

#[test]
fn houlsby_adapters_match_the_reference_module() {
    for backend in test_backends() {
        run_golden(backend, "adapters:8");
    }
}

/// Exact trainable counts: the config-only count (`repro inspect`) equals what the trainer
/// trains on the tiny model (minus the head), and the bert-base shape's numbers by hand.
#[test]
fn peft_trainable_counts() {
    let dev = Backend::Ndarray.device().unwrap().autodiff();
    let ckpt = Checkpoint::open(&fixtures().join("tiny_bert")).unwrap();
    for m in [
        "lora",
        "lora+bitfit:r=2,alpha=4,targets=q+k+v",
        "adapters:8",
        "adapters",
    ] {
        let method = Method::parse(m).unwrap();
        let (bert, _) = ckpt.load(&dev).unwrap();
        let clf = BertClassifier::new(bert, &ckpt.config, 2, HeadPooling::Pooler, 0, &dev);
        let t = Trainer::for_method(clf, &method, 0, AdamWConfig::default(), false);
        let head = 32 * 2 + 2;
        assert_eq!(
            t.trainable - head,
            trainable_encoder_scalars(&method, &ckpt.config).unwrap(),
            "{m}"
        );
    }
    let base = BertConfig::bert_base_cased();
    let n = |m: &str| trainable_encoder_scalars(&Method::parse(m).unwrap(), &base).unwrap();
    assert_eq!(n("lora"), 12 * 2 * 8 * (768 + 768));
    assert_eq!(n("lora+bitfit"), 12 * 2 * 8 * (768 + 768) + 102_912);
    assert_eq!(
        n("adapters:64"),
        12 * 2 * (768 * 64 + 64 + 64 * 768 + 768) + 12 * 2 * 2 * 768
    );
    for bad in [
        "lora:r=0",
        "lora:targets=q+o",
        "lora:rank=4",
        "adapters:0",
        "adapters:x",
    ] {
        assert!(Method::parse(bad).is_err(), "{bad}");
    }
}
