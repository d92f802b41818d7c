//! The burn BERT against PyTorch transformers on the same weights (fixtures from
//! scripts/make_fixtures.py), and checkpoint loading errors.
use std::collections::BTreeMap;
use std::path::Path;

use bitfit_repro::backend::Backend;
use bitfit_repro::finetune::encoder_param_shapes;
use bitfit_repro::model::{BertClassifier, BertConfig, BiasKind, Checkpoint, HeadPooling, params};
use burn::prelude::*;

use crate::common::{Tensors, fixtures, max_abs_diff, minilm, test_backends};

const TOL: f32 = 1e-4;

fn inputs(t: &Tensors, dev: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2>) {
    let shape = t.shape("input_ids");
    let (b, s) = (shape[0], shape[1]);
    let ids = Tensor::<2, Int>::from_data(TensorData::new(t.i64("input_ids"), [b, s]), dev);
    let tt = Tensor::<2, Int>::from_data(TensorData::new(t.i64("token_type_ids"), [b, s]), dev);
    let m: Vec<f32> = t.i64("attention_mask").iter().map(|&x| x as f32).collect();
    (
        ids,
        tt,
        Tensor::<2>::from_data(TensorData::new(m, [b, s]), dev),
    )
}

fn vec(t: Tensor<3>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}
fn vec2(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

/// Forward of a checkpoint against the reference hidden states and pooled outputs.
fn check_forward(model_dir: &Path, reference: &Path, backend: Backend) -> Checkpoint {
    let dev = backend.device().unwrap();
    let ckpt = Checkpoint::open(model_dir).unwrap();
    let (bert, _) = ckpt.load(&dev).unwrap();
    let r = Tensors::open(reference);
    let (ids, tt, mask) = inputs(&r, &dev);
    let hidden = bert.forward(ids, tt, mask);
    let pooled = bert.pool(hidden.clone());
    let dh = max_abs_diff(&vec(hidden), &r.f32("last_hidden_state"));
    let dp = max_abs_diff(&vec2(pooled), &r.f32("pooler_output"));
    eprintln!(
        "{} on {backend}: max|Δ| hidden {dh:.2e}, pooled {dp:.2e}",
        model_dir.display()
    );
    assert!(
        dh <= TOL,
        "{backend}: last hidden state differs from PyTorch by {dh}"
    );
    assert!(
        dp <= TOL,
        "{backend}: pooled output differs from PyTorch by {dp}"
    );
    ckpt
}

#[test]
fn tiny_bert_matches_pytorch_on_every_backend() {
    for backend in test_backends() {
        check_forward(
            &fixtures().join("tiny_bert"),
            &fixtures().join("tiny_bert_reference.safetensors"),
            backend,
        );
    }
}

#[test]
fn tiny_bert_classifier_logits_match_pytorch() {
    let dev = Backend::Ndarray.device().unwrap();
    let ckpt = Checkpoint::open(&fixtures().join("tiny_bert")).unwrap();
    let (bert, report) = ckpt.load(&dev).unwrap();
    // the fixture was saved as BertForSequenceClassification: `bert.` prefix + a 3-way head
    assert!(
        report.ignored.iter().any(|k| k == "classifier.weight"),
        "{:?}",
        report.ignored
    );
    let (w, b) = report
        .classifier
        .clone()
        .expect("checkpoint has a classifier");
    let mut clf = BertClassifier::new(bert, &ckpt.config, 3, HeadPooling::Pooler, 0, &dev);
    clf.set_head(&w, &b, &dev);
    let r = Tensors::open(fixtures().join("tiny_bert_reference.safetensors"));
    let (ids, tt, mask) = inputs(&r, &dev);
    let logits = vec2(clf.forward(ids, tt, mask));
    let d = max_abs_diff(&logits, &r.f32("logits"));
    assert!(d <= TOL, "logits differ by {d}");
}

#[test]
fn minilm_matches_pytorch() {
    let Some(dir) = minilm() else { return };
    for backend in test_backends() {
        let ckpt = check_forward(
            &dir,
            &fixtures().join("minilm_reference.safetensors"),
            backend,
        );
        assert_eq!(ckpt.config.num_hidden_layers, 6);
        assert_eq!(ckpt.config.hidden_size, 384);
    }
}

#[test]
fn every_hf_tensor_has_one_home_and_bias_names_resolve() {
    let dev = Backend::Ndarray.device().unwrap();
    let ckpt = Checkpoint::open(&fixtures().join("tiny_bert")).unwrap();
    let (bert, _) = ckpt.load(&dev).unwrap();
    let ours: BTreeMap<String, Vec<usize>> = params(&bert)
        .into_iter()
        .map(|p| (p.hf_name, p.shape))
        .collect();
    // burn Linear weights are [in, out]; HF stores [out, in]
    let expected: BTreeMap<String, Vec<usize>> = encoder_param_shapes(&ckpt.config)
        .into_iter()
        .map(|(n, mut s)| {
            if s.len() == 2 && !n.contains("embeddings") {
                s.reverse();
            }
            (n, s)
        })
        .collect();
    assert_eq!(ours, expected);
    let file = Tensors::open(fixtures().join("tiny_bert/model.safetensors"));
    let file_names: Vec<String> = file
        .names()
        .into_iter()
        .filter_map(|n| n.strip_prefix("bert.").map(str::to_string))
        .collect();
    for n in &file_names {
        assert!(
            ours.contains_key(n),
            "checkpoint tensor {n} has no home in the burn model"
        );
    }
    for layer in 0..ckpt.config.num_hidden_layers {
        for k in BiasKind::ALL {
            let name = k.hf_name(layer);
            assert!(
                ours.contains_key(&name),
                "{k} of layer {layer} ({name}) not found"
            );
            assert_eq!(BiasKind::parse_hf(&name), Some((layer, k)));
        }
    }
}

#[test]
fn loaded_values_equal_checkpoint_values() {
    // b_q of layer 1 and the transposed query weight, read back from the burn model
    let dev = Backend::Ndarray.device().unwrap();
    let ckpt = Checkpoint::open(&fixtures().join("tiny_bert")).unwrap();
    let (bert, _) = ckpt.load(&dev).unwrap();
    let file = Tensors::open(fixtures().join("tiny_bert/model.safetensors"));
    let q = &bert.encoder.layer[1].attention.self_attn.query;
    let b: Vec<f32> = q
        .bias
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    assert_eq!(
        b,
        file.f32("bert.encoder.layer.1.attention.self.query.bias")
    );
    let w: Vec<f32> = q
        .weight
        .val()
        .transpose()
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    assert_eq!(
        w,
        file.f32("bert.encoder.layer.1.attention.self.query.weight")
    );
    let g: Vec<f32> = bert.encoder.layer[0]
        .output
        .layer_norm
        .gamma
        .val()
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    assert_eq!(g, file.f32("bert.encoder.layer.0.output.LayerNorm.weight"));
}

/// Rewrite the tiny checkpoint with `edit` applied to its tensor map, into a temp folder.
fn edited_checkpoint(
    edit: impl FnOnce(&mut BTreeMap<String, (Vec<usize>, Vec<f32>)>),
) -> tempfile::TempDir {
    let src = fixtures().join("tiny_bert");
    let file = Tensors::open(src.join("model.safetensors"));
    let mut map: BTreeMap<String, (Vec<usize>, Vec<f32>)> = file
        .names()
        .into_iter()
        .map(|n| (n.clone(), (file.shape(&n), file.f32(&n))))
        .collect();
    edit(&mut map);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = map
        .into_iter()
        .map(|(n, (s, v))| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    let dev = Backend::Ndarray.device().unwrap();
    match Checkpoint::open(dir).unwrap().load(&dev) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn missing_unexpected_and_misshaped_tensors_are_listed() {
    let dir = edited_checkpoint(|m| {
        m.remove("bert.encoder.layer.0.attention.self.key.bias");
        m.remove("bert.pooler.dense.weight");
    });
    let e = load_err(dir.path());
    assert!(e.contains("missing tensors"), "{e}");
    assert!(e.contains("encoder.layer.0.attention.self.key.bias"), "{e}");
    assert!(e.contains("pooler.dense.weight"), "{e}");

    let dir = edited_checkpoint(|m| {
        m.insert(
            "bert.encoder.layer.0.attention.self.extra.bias".into(),
            (vec![4], vec![0.0; 4]),
        );
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("unexpected tensors") && e.contains("encoder.layer.0.attention.self.extra.bias"),
        "{e}"
    );

    let dir = edited_checkpoint(|m| {
        m.insert(
            "bert.encoder.layer.1.intermediate.dense.bias".into(),
            (vec![7], vec![0.0; 7]),
        );
    });
    let e = load_err(dir.path());
    assert!(e.contains("mis-shaped"), "{e}");
}

#[test]
fn unprefixed_and_gamma_beta_checkpoints_load() {
    // MiniLM stores names without `bert.`; old BERT checkpoints use LayerNorm.gamma/beta
    let dir = edited_checkpoint(|m| {
        let old = std::mem::take(m);
        for (k, v) in old {
            let k = k
                .strip_prefix("bert.")
                .unwrap_or(&k)
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            m.insert(k, v);
        }
    });
    let dev = Backend::Ndarray.device().unwrap();
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    let (bert, report) = ckpt.load(&dev).unwrap();
    assert_eq!(report.applied, params(&bert).len());
    let r = Tensors::open(fixtures().join("tiny_bert_reference.safetensors"));
    let (ids, tt, mask) = inputs(&r, &dev);
    let d = max_abs_diff(
        &vec(bert.forward(ids, tt, mask)),
        &r.f32("last_hidden_state"),
    );
    assert!(d <= TOL, "{d}");
}

#[test]
fn config_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"hidden_size": 30, "num_attention_heads": 4}"#,
    )
    .unwrap();
    let e = format!(
        "{:#}",
        BertConfig::from_file(&dir.path().join("config.json")).unwrap_err()
    );
    assert!(e.contains("config.json"), "{e}");
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"vocab_size": 10, "hidden_size": 30, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 8}"#,
    )
    .unwrap();
    let e = format!(
        "{:#}",
        BertConfig::from_file(&dir.path().join("config.json")).unwrap_err()
    );
    assert!(e.contains("not divisible"), "{e}");
    std::fs::copy(
        fixtures().join("tiny_bert/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let e = format!(
        "{:#}",
        Checkpoint::open(dir.path()).err().expect("no weights file")
    );
    assert!(
        e.contains("no model.safetensors or pytorch_model.bin"),
        "{e}"
    );
}

#[test]
fn legacy_pytorch_model_bin_loads_and_matches() {
    // torch.save'd state dict: no `bert.` prefix, LayerNorm gamma/beta
    let ckpt = check_forward(
        &fixtures().join("tiny_bert_bin"),
        &fixtures().join("tiny_bert_reference.safetensors"),
        Backend::Ndarray,
    );
    assert!(ckpt.weights.ends_with("pytorch_model.bin"));
}
