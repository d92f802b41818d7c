//! SQuAD v1.1: the official evaluation (against numbers from the official script,
//! scripts/squad_eval_fixture.py), the reader's errors, the article split, windows and targets
//! (against HF's tokenizer and run_qa, scripts/make_fixtures.py --only squad), the span head and
//! its loss (against BertForQuestionAnswering), post-processing, and `repro train` end to end.
use std::collections::HashMap;
use std::path::Path;

use bitfit_repro::backend::Backend;
use bitfit_repro::finetune::train::span_loss;
use bitfit_repro::model::{BertClassifier, Checkpoint, HeadPooling};
use bitfit_repro::squad::{self, Answer, SquadExample, Window};
use bitfit_repro::tokenize::{BertTokenizer, Encoded};
use burn::prelude::*;
use serde_json::Value;

use crate::common::{Tensors, fixtures, max_abs_diff, minilm, repro, shared_data, succeed};

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn evaluation_matches_the_official_script() {
    let case = json(&fixtures().join("squad/eval_case.json"));
    for pair in case["normalize"].as_array().unwrap() {
        let (input, want) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        assert_eq!(squad::normalize_answer(input), want, "normalize {input:?}");
    }
    let dataset = serde_json::to_vec(&case["dataset"]).unwrap();
    let examples = squad::parse(&dataset, Path::new("eval_case.json")).unwrap();
    let predictions: HashMap<String, String> = case["predictions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let per_q = case["per_question"].as_object().unwrap();
    assert_eq!(per_q.len(), examples.len());
    for ex in &examples {
        let want = &per_q[&ex.id];
        let (em, f1) = match predictions.get(&ex.id) {
            Some(p) => (
                squad::max_over_golds(squad::exact_match, p, &ex.answers),
                squad::max_over_golds(squad::f1, p, &ex.answers),
            ),
            None => (0.0, 0.0),
        };
        let rule = case["rules"][&ex.id].as_str().unwrap_or("");
        assert_eq!(
            em,
            want["exact_match"].as_f64().unwrap(),
            "EM of {} ({rule})",
            ex.id
        );
        assert!(
            (f1 - want["f1"].as_f64().unwrap()).abs() < 1e-12,
            "F1 of {} ({rule}): {f1} vs {}",
            ex.id,
            want["f1"]
        );
    }
    let (em, f1) = squad::evaluate(&examples, &predictions);
    let official = &case["official"];
    assert!((100.0 * em - official["exact_match"].as_f64().unwrap()).abs() < 1e-9);
    assert!((100.0 * f1 - official["f1"].as_f64().unwrap()).abs() < 1e-9);
}

#[test]
fn hand_worked_scores() {
    // "the" and punctuation go; tokens are a multiset
    assert_eq!(
        squad::exact_match("The Denver Broncos!", "denver broncos"),
        1.0
    );
    assert_eq!(squad::exact_match("Denver", "denver broncos"), 0.0);
    // prediction {denver, broncos, won}, gold {denver, broncos}: P 2/3, R 1, F1 0.8
    assert!((squad::f1("Denver Broncos won", "the Denver Broncos") - 0.8).abs() < 1e-12);
    // repeated tokens count once per occurrence: P 1/2 (one "a b" of "a b a b"... here "x x")
    assert!((squad::f1("x x", "x") - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(squad::f1("", "denver"), 0.0);
    assert_eq!(squad::f1("a an the", "the"), 0.0, "nothing left: 0, not 1");
    let golds = [
        Answer {
            text: "Santa Clara".into(),
            start: 0,
        },
        Answer {
            text: "Santa Clara, California".into(),
            start: 0,
        },
    ];
    assert_eq!(
        squad::max_over_golds(squad::exact_match, "santa clara california", &golds),
        1.0
    );
}

#[test]
fn bad_files_name_the_file_and_the_question() {
    let p = Path::new("bad/dev.json");
    let err = |bytes: &[u8]| squad::parse(bytes, p).unwrap_err().to_string();
    let e = err(b"  \n");
    assert!(e.contains("bad/dev.json") && e.contains("empty"), "{e}");
    let e = err(b"{\"data\": [\xff]}");
    assert!(e.contains("bad/dev.json") && e.contains("not UTF-8"), "{e}");
    let e = err(b"{\"version\": \"1.1\"}");
    assert!(e.contains("no `data` list"), "{e}");
    let one = |qa: &str| {
        format!(
            r#"{{"data": [{{"title": "T", "paragraphs": [{{"context": "Paris is in France.", "qas": [{qa}]}}]}}]}}"#
        )
    };
    let e =
        err(one(r#"{"id": "q1", "answers": [{"text": "Paris", "answer_start": 0}]}"#).as_bytes());
    assert!(e.contains("question q1") && e.contains("`question`"), "{e}");
    let e = err(one(
        r#"{"id": "q2", "question": "Where?", "answers": [{"text": "France", "answer_start": 3}]}"#,
    )
    .as_bytes());
    assert!(
        e.contains("bad/dev.json") && e.contains("question q2") && e.contains("answer_start 3"),
        "{e}"
    );
    let e = err(
        one(r#"{"id": "q3", "question": "Where?", "answers": [{"text": "France"}]}"#).as_bytes(),
    );
    assert!(
        e.contains("question q3") && e.contains("answer_start"),
        "{e}"
    );
    let e = err(one(r#"{"question": "Where?", "answers": []}"#).as_bytes());
    assert!(e.contains("missing `id`"), "{e}");
    let ok = squad::parse(
        one(r#"{"id": "q4", "question": "Where?", "answers": [{"text": "France", "answer_start": 12}]}"#)
            .as_bytes(),
        p,
    )
    .unwrap();
    assert_eq!(ok[0].answers[0].start, 12);
}

#[test]
fn the_dev_set_splits_by_article() {
    let root = shared_data().join("squad");
    let (train, note) = squad::load(&root, bitfit_repro::data::Split::Train).unwrap();
    let (eval, _) = squad::load(&root, bitfit_repro::data::Split::Dev).unwrap();
    assert!(note.unwrap().contains("train-v1.1.json"));
    assert_eq!((train.len(), eval.len()), (7793, 2777));
    let titles = |v: &[SquadExample]| {
        v.iter()
            .map(|e| e.title.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (a, b) = (titles(&train), titles(&eval));
    assert_eq!((a.len(), b.len()), (36, 12));
    assert!(a.is_disjoint(&b), "no article in both parts");
    // with a train file beside it, the dev file is scored whole
    let tmp = tempfile::tempdir().unwrap();
    let small = r#"{"data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": [{"id": "t1", "question": "Where?", "answers": [{"text": "France", "answer_start": 12}]}]}]}]}"#;
    std::fs::write(tmp.path().join("train-v1.1.json"), small).unwrap();
    std::fs::copy(root.join("dev-v1.1.json"), tmp.path().join("dev-v1.1.json")).unwrap();
    let (train, note) = squad::load(tmp.path(), bitfit_repro::data::Split::Train).unwrap();
    let (dev, _) = squad::load(tmp.path(), bitfit_repro::data::Split::Dev).unwrap();
    assert!(note.is_none());
    assert_eq!((train.len(), dev.len()), (1, 10570));
    let e = squad::load(
        &shared_data().join("glue"),
        bitfit_repro::data::Split::Train,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("dev-v1.1.json") && e.contains("data"), "{e}");
}

#[test]
fn windows_offsets_and_targets_match_hf() {
    let Some(dir) = minilm() else { return };
    let cases = json(&fixtures().join("squad/qa_windows.json"));
    let ints = |v: &Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let mut n = 0;
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let max_length = case["max_length"].as_u64().unwrap() as usize;
        let stride = case["stride"].as_u64().unwrap() as usize;
        let tok = BertTokenizer::from_model_dir(&dir, max_length)
            .unwrap()
            .windows(stride)
            .unwrap();
        let question = case["question"].as_str().unwrap();
        let context = case["context"].as_str().unwrap();
        let start = case["answer_start"].as_u64().unwrap() as usize;
        let text = case["answer_text"].as_str().unwrap();
        let got = tok.encode_windows(question.trim_start(), context).unwrap();
        let want = case["windows"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{name} {max_length}: windows");
        // the same windows through squad::windows: offsets kept for context tokens only
        let ex = SquadExample {
            id: name.into(),
            article: 0,
            title: String::new(),
            context: context.into(),
            question: question.into(),
            answers: vec![Answer {
                text: text.into(),
                start,
            }],
        };
        let ws = squad::windows(&tok, std::slice::from_ref(&ex)).unwrap();
        for (i, ((g, w), sw)) in got.iter().zip(want).zip(&ws).enumerate() {
            let at = format!("{name} {max_length}/{stride} window {i}");
            assert_eq!(g.enc.input_ids, ints(&w["input_ids"]), "{at}: ids");
            assert_eq!(
                g.enc.token_type_ids,
                ints(&w["token_type_ids"]),
                "{at}: types"
            );
            let offsets: Vec<(usize, usize)> = w["offsets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| {
                    (
                        o[0].as_u64().unwrap() as usize,
                        o[1].as_u64().unwrap() as usize,
                    )
                })
                .collect();
            assert_eq!(g.offsets, offsets, "{at}: offsets");
            let seq: Vec<Option<usize>> = w["sequence_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| usize::try_from(s.as_i64().unwrap()).ok())
                .collect();
            assert_eq!(g.sequence_ids, seq, "{at}: sequence ids");
            let target = (
                w["start_position"].as_u64().unwrap() as usize,
                w["end_position"].as_u64().unwrap() as usize,
            );
            assert_eq!(sw.target, target, "{at}: training target");
            assert_eq!(sw.enc, g.enc);
            for (o, s) in sw.offsets.iter().zip(&seq) {
                assert_eq!(
                    o.is_some(),
                    *s == Some(1),
                    "{at}: only context offsets kept"
                );
            }
            n += 1;
        }
    }
    assert!(n >= 8, "{n} windows checked");
}

#[test]
fn span_head_and_loss_match_bert_for_question_answering() {
    let dev = Backend::Ndarray.device().unwrap();
    let ckpt = Checkpoint::open(&fixtures().join("tiny_bert")).unwrap();
    let (bert, _) = ckpt.load(&dev).unwrap();
    let mut qa = BertClassifier::new(bert, &ckpt.config, 2, HeadPooling::Span, 0, &dev);
    assert!(
        qa.bert.pooler.is_none(),
        "BertForQuestionAnswering has no pooler"
    );
    let r = Tensors::open(fixtures().join("squad/qa_reference.safetensors"));
    qa.set_head(&r.f32("qa_outputs.weight"), &r.f32("qa_outputs.bias"), &dev);
    let names: Vec<String> = qa
        .hf_task_tensors(|_, _| true)
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(names.iter().any(|n| n == "qa_outputs.weight"), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.contains("pooler") || n.starts_with("classifier"))
    );

    let tensors = |prefix: &str| {
        let shape = r.shape(&format!("{prefix}input_ids"));
        let (b, s) = (shape[0], shape[1]);
        let int = |k: &str| {
            Tensor::<2, Int>::from_data(
                TensorData::new(r.i64(&format!("{prefix}{k}")), [b, s]),
                &dev,
            )
        };
        let m: Vec<f32> = r
            .i64(&format!("{prefix}attention_mask"))
            .iter()
            .map(|&x| x as f32)
            .collect();
        (
            int("input_ids"),
            int("token_type_ids"),
            Tensor::<2>::from_data(TensorData::new(m, [b, s]), &dev),
            b,
            s,
        )
    };
    let (ids, tt, mask, b, s) = tensors("");
    let logits: Vec<f32> = qa
        .forward_spans(ids, tt, mask)
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    let side = |k: usize| -> Vec<f32> { (0..b * s).map(|i| logits[i * 2 + k]).collect() };
    let ds = max_abs_diff(&side(0), &r.f32("start_logits"));
    let de = max_abs_diff(&side(1), &r.f32("end_logits"));
    assert!(ds <= 1e-4 && de <= 1e-4, "start {ds}, end {de}");

    let (ids, tt, mask, _, _) = tensors("loss_");
    let loss = span_loss(
        qa.forward_spans(ids, tt, mask.clone()),
        mask,
        &r.i64("loss_start_positions"),
        &r.i64("loss_end_positions"),
        &dev,
    )
    .into_scalar::<f32>();
    let want = r.f32("loss")[0];
    assert!(
        (loss - want).abs() <= 1e-4 * want.abs(),
        "loss {loss} vs {want}"
    );
}

fn window(example: usize, offsets: Vec<Option<(usize, usize)>>) -> Window {
    let n = offsets.len();
    Window {
        example,
        enc: Encoded {
            input_ids: vec![1; n],
            token_type_ids: vec![0; n],
        },
        offsets,
        target: (0, 0),
    }
}

#[test]
fn post_processing_takes_the_best_valid_span_over_windows() {
    let context = "Zoë went to Paris in 1999.";
    // tokens: [CLS] q [SEP] Zoë went to Paris in 1999 . [SEP]
    let offs = vec![
        None,
        None,
        None,
        Some((0, 3)),
        Some((4, 8)),
        Some((9, 11)),
        Some((12, 17)),
        Some((18, 20)),
        Some((21, 25)),
        Some((25, 26)),
        None,
    ];
    let w = window(0, offs.clone());
    let mut start = vec![0f32; 11];
    let mut end = vec![0f32; 11];
    // the best raw pair (CLS, CLS) is outside the context; next: end before start; then Paris
    start[0] = 9.0;
    end[0] = 9.0;
    start[8] = 5.0;
    end[6] = 5.0;
    start[6] = 4.0;
    end[6] = 5.0;
    let got = squad::best_answer(context, &[(&w, &start, &end)], 20, 30);
    assert_eq!(got, "Paris");
    // a span longer than the limit is skipped
    let got = squad::best_answer(context, &[(&w, &start, &end)], 20, 0);
    assert_eq!(got, "empty");
    // a second window with a better pair wins; text cut by characters (ë is one)
    let w2 = window(0, offs);
    let mut s2 = vec![0f32; 11];
    let mut e2 = vec![0f32; 11];
    s2[3] = 6.0;
    e2[4] = 6.0;
    let got = squad::best_answer(context, &[(&w, &start, &end), (&w2, &s2, &e2)], 20, 30);
    assert_eq!(got, "Zoë went");
    // n_best = 1 keeps only the top start and end: (CLS, CLS) → nothing valid
    assert_eq!(
        squad::best_answer(context, &[(&w, &start, &end)], 1, 30),
        "empty"
    );
}

#[test]
fn repro_train_runs_squad_end_to_end() {
    if minilm().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let text = succeed(repro().args([
        "train",
        "--task",
        "SQuAD",
        "--data",
        &shared_data().join("squad").to_string_lossy(),
        "--method",
        "bitfit",
        "--lr",
        "1e-3",
        "--epochs",
        "1",
        "--train-size",
        "12",
        "--eval-size",
        "12",
        "--max-length",
        "128",
        "--out",
        &tmp.path().join("run.json").to_string_lossy(),
    ]));
    assert!(text.contains("train part of dev-v1.1.json"), "{text}");
    let r: bitfit_repro::finetune::RunResult =
        serde_json::from_slice(&std::fs::read(tmp.path().join("run.json")).unwrap()).unwrap();
    assert_eq!(r.headline, "em");
    assert_eq!(r.config.head, HeadPooling::Span);
    let dev = &r.epochs[0].dev["dev"];
    for k in ["em", "f1"] {
        assert!((0.0..=1.0).contains(&dev[k]), "{k} = {}", dev[k]);
    }
    assert!(dev["f1"] >= dev["em"], "F1 is at least EM");
    assert_eq!(
        r.train_examples, 12,
        "a SQuAD size counts questions, not windows"
    );
    // the smoke grid: both methods through grid, store and report
    let store = tmp.path().join("store");
    succeed(
        repro()
            .args(["run", "experiments/smoke_squad.toml"])
            .arg(format!("--set=store={}", store.display())),
    );
    let tables = tmp.path().join("tables");
    succeed(
        repro()
            .args(["report", "--results"])
            .arg(&store)
            .arg("--out")
            .arg(&tables),
    );
    let csv = std::fs::read_to_string(tables.join("aggregate.csv")).unwrap();
    for want in ["SQuAD", "bitfit", "full_ft", ",em,", ",f1,"] {
        assert!(csv.contains(want), "aggregate lacks {want}: {csv}");
    }
    // BitFit on the span model: every bias of the encoder (no pooler) and the qa_outputs head
    let ckpt = Checkpoint::open(&minilm().unwrap()).unwrap();
    let c = &ckpt.config;
    let (h, i, l) = (c.hidden_size, c.intermediate_size, c.num_hidden_layers);
    // embeddings.LayerNorm, then per layer q, k, v, attention output, its LayerNorm, intermediate,
    // output, its LayerNorm
    let biases = h + l * (7 * h + i);
    assert_eq!(r.trainable_params, biases + 2 * h + 2);
}

#[test]
fn post_processing_matches_hf_utils_qa_on_minilm_logits() {
    // MiniLM with a seeded span head: HF's windows, logits and utils_qa predictions
    // (scripts/make_fixtures.py --only squad --utils-qa …) against ours
    let Some(dir) = minilm() else { return };
    let path = fixtures().join("squad/qa_postprocess.json");
    let fx = json(&path);
    let dev = Backend::Ndarray.device().unwrap();
    let ckpt = Checkpoint::open(&dir).unwrap();
    let (bert, _) = ckpt.load(&dev).unwrap();
    let mut qa = BertClassifier::new(bert, &ckpt.config, 2, HeadPooling::Span, 0, &dev);
    let floats = |v: &Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let w: Vec<f32> = fx["qa_outputs"]["weight"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    qa.set_head(&w, &floats(&fx["qa_outputs"]["bias"]), &dev);
    let max_length = fx["max_length"].as_u64().unwrap() as usize;
    let stride = fx["stride"].as_u64().unwrap() as usize;
    let tok = BertTokenizer::from_model_dir(&dir, max_length)
        .unwrap()
        .windows(stride)
        .unwrap();
    let questions = fx["questions"].as_array().unwrap();
    let mut multi = 0;
    for q in questions {
        let ex = SquadExample {
            id: q["id"].as_str().unwrap().into(),
            article: 0,
            title: String::new(),
            context: q["context"].as_str().unwrap().into(),
            question: q["question"].as_str().unwrap().into(),
            answers: q["answers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| Answer {
                    text: a["text"].as_str().unwrap().into(),
                    start: a["answer_start"].as_u64().unwrap() as usize,
                })
                .collect(),
        };
        let windows = squad::windows(&tok, std::slice::from_ref(&ex)).unwrap();
        let want = q["windows"].as_array().unwrap();
        assert_eq!(windows.len(), want.len(), "{}: windows", ex.id);
        multi += usize::from(windows.len() > 1);
        let mut ours: Vec<(Vec<f32>, Vec<f32>)> = Vec::new();
        let mut theirs: Vec<(Vec<f32>, Vec<f32>)> = Vec::new();
        for (win, fw) in windows.iter().zip(want) {
            let ids: Vec<u32> = fw["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(win.enc.input_ids, ids, "{}: window ids", ex.id);
            let b = bitfit_repro::tokenize::Batch::collate(&[&win.enc], 0, None);
            let (i, t, m) = bitfit_repro::model::batch_tensors(&b, &dev);
            let v: Vec<f32> = qa
                .forward_spans(i, t, m)
                .into_data()
                .try_into_vec_as::<f32>()
                .unwrap();
            let s: Vec<f32> = v.iter().step_by(2).copied().collect();
            let e: Vec<f32> = v.iter().skip(1).step_by(2).copied().collect();
            let (fs, fe) = (floats(&fw["start_logits"]), floats(&fw["end_logits"]));
            let d = max_abs_diff(&s, &fs).max(max_abs_diff(&e, &fe));
            assert!(d <= 1e-3, "{}: logits differ by {d}", ex.id);
            ours.push((s, e));
            theirs.push((fs, fe));
        }
        let answer = |logits: &[(Vec<f32>, Vec<f32>)]| {
            let ws: Vec<squad::WindowLogits> = windows
                .iter()
                .zip(logits)
                .map(|(w, (s, e))| (w, s.as_slice(), e.as_slice()))
                .collect();
            squad::best_answer(&ex.context, &ws, squad::N_BEST, squad::MAX_ANSWER_TOKENS)
        };
        let prediction = q["prediction"].as_str().unwrap();
        assert_eq!(
            answer(&theirs),
            prediction,
            "{}: post-processing of HF's logits",
            ex.id
        );
        assert_eq!(answer(&ours), prediction, "{}: our logits", ex.id);
    }
    assert!(
        questions.len() >= 6 && multi >= 2,
        "{} questions, {multi} with several windows",
        questions.len()
    );
}
