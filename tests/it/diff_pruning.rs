//! Diff-Pruning (Guo et al. 2021): the hard-concrete gate and its expected L0 against closed
//! forms, the projection against a hand example, the trainable set and the optimizer groups on
//! the tiny model, and `repro train` end to end on MiniLM (the share reached, the fixed mask).
use bitfit_repro::backend::Backend;
use bitfit_repro::finetune::diff_pruning::{
    self as dp, Drawn, STRETCH, expected_l0, gate, project, projection_threshold,
};
use bitfit_repro::finetune::train::Targets;
use bitfit_repro::finetune::{AdamWConfig, Method, Trainer};
use bitfit_repro::model::{BertClassifier, Checkpoint, HeadPooling, params};

use crate::common::{fixtures, minilm, repro, succeed};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn the_gate_and_its_expected_l0_follow_the_closed_forms() {
    let (l, r) = STRETCH;
    // z = clamp(σ(logit(u) + α)·(r − l) + l, 0, 1), worked by hand at u = 0.5 (logit 0)
    assert!((gate(0.0, 0.5) - 0.0).abs() < 1e-12, "σ(0)·3 − 1.5 = 0");
    assert!((gate(1.0, 0.5) - (sigmoid(1.0) * 3.0 - 1.5)).abs() < 1e-12);
    assert_eq!(gate(5.0, 0.5), 1.0, "clamped at 1");
    assert_eq!(gate(-5.0, 0.5), 0.0, "clamped at 0");
    // the noise is clamped to [1e-4, 0.9999]
    assert_eq!(gate(0.0, 0.0), gate(0.0, 1e-4));
    for alpha in [-2.0, 0.0, 0.7, 5.0] {
        // P(z > 0) = σ(α − log(−l/r)) and P(z = 1) = σ(α − log((1 − l)/(r − 1))): integrate the
        // gate over a fine grid of u (the noise clamp moves them by < 1e-4)
        let n = 200_000;
        let us = (0..n).map(|i| (i as f64 + 0.5) / n as f64);
        let (mut open, mut one) = (0usize, 0usize);
        for u in us {
            let z = gate(alpha, u);
            open += usize::from(z > 0.0);
            one += usize::from(z >= 1.0);
        }
        let p_open = open as f64 / n as f64;
        let p_one = one as f64 / n as f64;
        assert!(
            (p_open - expected_l0(alpha)).abs() < 2e-4,
            "α {alpha}: P(z>0) {p_open} vs {}",
            expected_l0(alpha)
        );
        assert!((expected_l0(alpha) - sigmoid(alpha - (-l / r).ln())).abs() < 1e-15);
        let want_one = sigmoid(alpha - ((1.0 - l) / (r - 1.0)).ln());
        assert!(
            (p_one - want_one).abs() < 2e-4,
            "α {alpha}: P(z=1) {p_one} vs {want_one}"
        );
    }
    // the initial gates are open with probability σ(5) ≈ 0.993
    assert!((expected_l0(dp::ALPHA_INIT) - 0.993_307).abs() < 1e-6);
}

#[test]
fn the_projection_keeps_the_largest_diffs_up_to_the_share() {
    // 10 parameters, 1 of them the dense head (always nonzero), share 30%: two diffs may stay
    let diffs = [0.5f32, -0.2, 0.05, 0.0, 0.3];
    let t = projection_threshold(&diffs.map(f32::abs), 1, 10, 0.3);
    assert!(t > 0.2 && t < 0.2 + 2e-6, "threshold just above 0.2: {t}");
    let drawn = vec![
        Drawn {
            path: "bert.a.weight".into(),
            w: vec![0.5, -0.4, 0.05],
            // the drawn gates scale the diffs: -0.4 · 0.5 = -0.2
            gate: vec![1.0, 0.5, 1.0],
        },
        Drawn {
            path: "bert.b.bias".into(),
            w: vec![0.0, 0.3],
            gate: vec![1.0, 1.0],
        },
    ];
    let (masks, p) = project(drawn, 1, 10, 0.3);
    assert_eq!((p.kept, p.diff_scalars), (2, 5));
    assert_eq!(masks["bert.a.weight"].1, [1.0, 0.0, 0.0]);
    assert_eq!(masks["bert.b.bias"].1, [0.0, 1.0]);
    // the raw w is what the fixed-mask phase starts from, not gate⊙w
    assert_eq!(masks["bert.a.weight"].0, [0.5, -0.4, 0.05]);
    // a share that admits everything keeps every nonzero diff, never a zero one
    let drawn = vec![Drawn {
        path: "bert.c".into(),
        w: vec![1e-3, 0.0, -2e-3],
        gate: vec![1.0; 3],
    }];
    let (masks, p) = project(drawn, 0, 3, 1.0);
    assert_eq!(p.kept, 2);
    assert_eq!(masks["bert.c"].1, [1.0, 0.0, 1.0]);
}

#[test]
fn search_phase_trains_the_diff_and_gates_only() {
    let dev = Backend::Ndarray.device().unwrap().autodiff();
    dev.seed(0);
    let ckpt = Checkpoint::open(&fixtures().join("tiny_bert")).unwrap();
    let (bert, _) = ckpt.load(&dev).unwrap();
    let clf = BertClassifier::new(bert, &ckpt.config, 2, HeadPooling::Pooler, 0, &dev);
    let plain = params(&clf);
    let encoder: usize = plain
        .iter()
        .filter(|p| p.path.starts_with("bert."))
        .map(|p| p.numel)
        .sum();
    let tensors = plain.iter().filter(|p| p.path.starts_with("bert.")).count();
    let head: usize = plain
        .iter()
        .filter(|p| !p.path.starts_with("bert."))
        .map(|p| p.numel)
        .sum();
    let method = Method::parse("diff_pruning").unwrap();
    assert_eq!(
        method.to_string(),
        "diff_pruning:share=0.5%,finetune=3,finetune_lr=5e-5"
    );
    assert_eq!(Method::parse(&method.to_string()).unwrap(), method);
    for bad in [
        "diff_pruning:share=0",
        "diff_pruning:share=5",
        "diff_pruning:finetune=x",
        "diff_pruning:finetune=0",
        "diff_pruning:depth=2",
    ] {
        let e = Method::parse(bad).unwrap_err().to_string();
        assert!(e.contains(bad), "{e}");
    }
    let mut t = Trainer::for_method(clf, &method, 0, AdamWConfig::default(), false);
    // w and α per scalar, one α per tensor (the structured variant), and the dense head
    assert_eq!(t.trainable, 2 * encoder + tensors + head);
    assert_eq!(t.l0_weight, Some(dp::L0_WEIGHT));
    let gates = dp::gate_param_ids(t.model());
    assert_eq!(gates.len(), 2 * tensors);
    let before = dp::draw(t.model(), &mut rand::SeedableRng::seed_from_u64(1));
    assert!(before.iter().all(|d| d.w.iter().all(|&w| w == 0.0)));
    let word_embeddings = |t: &Trainer| -> Vec<f32> {
        t.model()
            .bert
            .embeddings
            .word_embeddings
            .weight
            .base()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap()
    };
    let base_before = word_embeddings(&t);
    let batch = bitfit_repro::tokenize::Batch {
        batch_size: 2,
        seq_len: 4,
        input_ids: vec![101, 7, 9, 102, 101, 11, 13, 102],
        token_type_ids: vec![0; 8],
        attention_mask: vec![1; 8],
    };
    let mut losses = Vec::new();
    for _ in 0..3 {
        let (loss, _) = t.step(&batch, &Targets::Classes(vec![0, 1]), 1e-3);
        losses.push(loss);
    }
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    // the gates train in their own group at lr 0.1: Adam moves each α by at most ≈ lr per step
    let alphas = dp::log_alphas(t.model());
    assert_eq!(alphas.len(), encoder);
    let moved: Vec<f32> = alphas.iter().map(|a| (a - 5.0).abs()).collect();
    let max = moved.iter().copied().fold(0.0, f32::max);
    assert!(
        max > 0.05 && max < 0.31,
        "α moved at most {max}: lr 0.1 for 3 steps"
    );
    assert!(moved.iter().filter(|m| **m > 0.0).count() > encoder / 2);
    let after = dp::draw(t.model(), &mut rand::SeedableRng::seed_from_u64(1));
    let moved = after
        .iter()
        .flat_map(|d| &d.w)
        .filter(|w| **w != 0.0)
        .count();
    assert!(
        moved > encoder / 2,
        "the diff trains: {moved} of {encoder} moved"
    );
    let base_after = word_embeddings(&t);
    assert_eq!(
        base_before, base_after,
        "the pretrained tensors stay frozen"
    );
}

#[test]
fn repro_train_reaches_the_share_and_scores_only_the_pruned_model() {
    if minilm().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run.json");
    let text = succeed(
        repro()
            .args([
                "train",
                "--task",
                "SST-2",
                "--method",
                "diff_pruning:finetune=1",
            ])
            .args(["--lr", "1e-3", "--epochs", "1", "--train-size", "32"])
            .args(["--eval-size", "48", "--out"])
            .arg(&out),
    );
    assert!(text.contains("Diff-Pruning: projected to"), "{text}");
    let r: bitfit_repro::finetune::RunResult =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(r.epochs.len(), 2, "1 search epoch + 1 fixed-mask epoch");
    assert!(
        r.epochs[0].dev.is_empty() && r.epochs[0].train.is_none(),
        "search: not scored"
    );
    assert!(r.epochs[1].dev["dev"].contains_key("accuracy"));
    assert_eq!(r.best_epoch, 2);
    // the share reached: at most 0.5% of the parameters (the head counted), and close to it
    assert!(
        r.trainable_share <= 0.005 && r.trainable_share > 0.004,
        "share {}",
        r.trainable_share
    );
    assert_eq!(r.total_params, 22_713_986, "MiniLM + the 2-way head");
}

#[test]
fn the_models_sampled_gates_follow_the_closed_forms() {
    use burn::module::{Param, Reparameterization};
    use burn::prelude::*;
    let dev = Backend::Ndarray.device().unwrap();
    dev.seed(3);
    let n = 100_000;
    for alpha in [-1.0, 0.7] {
        // w = 1 and a zero base: the materialised tensor is the gate sample itself
        let state = dp::DiffPrune {
            w: Param::from_tensor(Tensor::<1>::ones([n], &dev)),
            log_alpha: Some(Param::from_tensor(Tensor::<1>::full([n], alpha, &dev))),
            group_log_alpha: None,
            mask: None,
        };
        let z: Vec<f32> = state
            .apply(Tensor::<1>::zeros([n], &dev))
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert!(z.iter().all(|v| (0.0..=1.0).contains(v)));
        let open = z.iter().filter(|v| **v > 0.0).count() as f64 / n as f64;
        // binomial std at n = 1e5 is < 0.0016
        assert!(
            (open - expected_l0(alpha)).abs() < 0.008,
            "α {alpha}: {open} vs {}",
            expected_l0(alpha)
        );
    }
    // the fixed-mask phase: θ₀ + mask⊙w, no noise
    let state = dp::DiffPrune {
        w: Param::from_tensor(Tensor::<1>::from_data([0.5f32, -1.0, 2.0], &dev)),
        log_alpha: None,
        group_log_alpha: None,
        mask: Some(Param::from_tensor(Tensor::<1>::from_data(
            [1f32, 0.0, 1.0],
            &dev,
        ))),
    };
    let v: Vec<f32> = state
        .apply(Tensor::<2>::from_data([[1f32, 1.0, 1.0]], &dev))
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    assert_eq!(v, [1.5, 1.0, 3.0]);
}

#[test]
fn the_fixed_mask_phase_is_theta0_plus_mask_times_w() {
    use burn::module::Module;
    use std::collections::HashMap;
    let dev = Backend::Ndarray.device().unwrap().autodiff();
    let ckpt = Checkpoint::open(&fixtures().join("tiny_bert")).unwrap();
    let (bert, _) = ckpt.load(&dev).unwrap();
    let clf = BertClassifier::new(bert, &ckpt.config, 2, HeadPooling::Pooler, 0, &dev);
    let path = "bert.encoder.layer.0.attention.self_attn.query.bias";
    fn query_bias(m: &BertClassifier) -> Vec<f32> {
        m.bert.encoder.layer[0]
            .attention
            .self_attn
            .query
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap()
    }
    let before = query_bias(&clf);
    let n = before.len();
    let w: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
    let mask: Vec<f32> = (0..n).map(|i| f32::from(u8::from(i % 3 == 0))).collect();
    let mut fixed = dp::Fixed {
        by_path: HashMap::from([
            (path.to_string(), (w.clone(), mask.clone())),
            ("bert.no.such.tensor".to_string(), (vec![0.0], vec![1.0])),
        ]),
    };
    let clf = clf.apply_reparameterization(&mut fixed);
    // the matching path is taken, a path the model lacks is left for the caller to report
    assert_eq!(fixed.by_path.len(), 1);
    assert!(fixed.by_path.contains_key("bert.no.such.tensor"));
    let merged = clf.valid().materialize();
    let after = query_bias(&merged);
    for i in 0..n {
        assert!(
            (after[i] - (before[i] + mask[i] * w[i])).abs() < 1e-6,
            "scalar {i}"
        );
    }
}

#[test]
fn an_unscored_search_epoch_is_never_the_best() {
    use bitfit_repro::finetune::RunResult;
    use bitfit_repro::finetune::train::EpochRecord;
    let epoch = |n: usize, mcc: Option<f64>| EpochRecord {
        epoch: n,
        train_loss: 0.5,
        train: None,
        dev: mcc
            .map(|m| [("dev".to_string(), [("mcc".to_string(), m)].into())].into())
            .unwrap_or_default(),
        seconds: 1.0,
    };
    // CoLA's MCC can be ≤ 0: the scored epochs still win over the search epochs
    let epochs = [
        epoch(1, None),
        epoch(2, None),
        epoch(3, Some(-0.05)),
        epoch(4, Some(-0.1)),
    ];
    assert_eq!(RunResult::headline_best_epoch(&epochs, "mcc"), 3);
    assert_eq!(RunResult::headline_best_epoch(&epochs[..2], "mcc"), 0);
}
