//! Token ids equal HF's (fixtures from scripts/make_fixtures.py), through tokenizer.json and
//! through the vocab.txt fallback; dynamic padding.
use bitfit_repro::tokenize::{Batch, BertTokenizer, Encoded};

use crate::common::{fixtures, minilm};

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    text_pair: Option<String>,
    max_length: usize,
    input_ids: Vec<u32>,
    token_type_ids: Vec<u32>,
}

fn cases() -> Vec<Case> {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("tokenizer_cases.json")).unwrap())
        .unwrap()
}

fn check(dir: &std::path::Path) {
    let cases = cases();
    assert!(
        cases
            .iter()
            .any(|c| c.text_pair.is_some() && c.max_length == 16),
        "fixture lacks a truncated pair"
    );
    for c in &cases {
        let tok = BertTokenizer::from_model_dir(dir, c.max_length).unwrap();
        let e = tok.encode(&c.text, c.text_pair.as_deref()).unwrap();
        assert_eq!(
            e.input_ids, c.input_ids,
            "ids for {:?} / {:?} (max {})",
            c.text, c.text_pair, c.max_length
        );
        assert_eq!(
            e.token_type_ids, c.token_type_ids,
            "token types for {:?}",
            c.text
        );
        assert!(e.input_ids.len() <= c.max_length);
    }
}

#[test]
fn tokenizer_json_ids_equal_hf() {
    let Some(dir) = minilm() else { return };
    check(&dir);
}

#[test]
fn vocab_txt_fallback_ids_equal_hf() {
    let Some(dir) = minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for f in ["vocab.txt", "tokenizer_config.json", "config.json"] {
        std::fs::copy(dir.join(f), tmp.path().join(f)).unwrap();
    }
    let tok = BertTokenizer::from_model_dir(tmp.path(), 128).unwrap();
    assert!(tok.source.ends_with("vocab.txt"), "{}", tok.source);
    check(tmp.path());
}

#[test]
fn missing_tokenizer_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let e = BertTokenizer::from_model_dir(tmp.path(), 128)
        .err()
        .expect("no tokenizer files");
    assert!(
        e.to_string()
            .contains("neither tokenizer.json nor vocab.txt"),
        "{e}"
    );
}

#[test]
fn batches_pad_to_their_longest_member() {
    let a = Encoded {
        input_ids: vec![101, 7, 8, 102],
        token_type_ids: vec![0, 0, 0, 0],
    };
    let b = Encoded {
        input_ids: vec![101, 9, 102, 5, 102],
        token_type_ids: vec![0, 0, 0, 1, 1],
    };
    let batch = Batch::collate(&[&a, &b], 0, None);
    assert_eq!((batch.batch_size, batch.seq_len), (2, 5));
    assert_eq!(
        batch.input_ids,
        vec![101, 7, 8, 102, 0, 101, 9, 102, 5, 102]
    );
    assert_eq!(batch.token_type_ids, vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 0, 1, 1, 1, 1, 1]);
    let fixed = Batch::collate(&[&a], 0, Some(8));
    assert_eq!(fixed.seq_len, 8);
    assert_eq!(fixed.attention_mask.iter().sum::<i64>(), 4);
}
