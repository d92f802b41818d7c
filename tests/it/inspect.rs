//! Parameter accounting against the paper and the reference code's trainable sets.
use bitfit_repro::finetune::{Method, trainable_encoder_scalars};
use bitfit_repro::inspect::inspect;
use bitfit_repro::model::BertConfig;

fn share(cfg: &BertConfig, m: &str) -> f64 {
    let ins = inspect(cfg);
    let n = trainable_encoder_scalars(&Method::parse(m).unwrap(), cfg).unwrap();
    100.0 * n as f64 / ins.total as f64
}

/// The paper prints shares truncated to two decimals (0.0950% → "0.09%").
fn truncated(p: f64) -> f64 {
    (p * 100.0).floor() / 100.0
}

#[test]
fn bert_base_counts_agree_with_the_paper() {
    let cfg = BertConfig::bert_base_cased();
    let ins = inspect(&cfg);
    assert_eq!(
        ins.total, 108_310_272,
        "bert-base-cased BertModel parameters"
    );
    let n = |m: &str| trainable_encoder_scalars(&Method::parse(m).unwrap(), &cfg).unwrap();
    assert_eq!(n("bitfit"), 102_912);
    assert_eq!(
        n("b_q+b_m2"),
        46_080 + 768,
        "b_q+b_m2 in every layer + pooler bias"
    );
    assert_eq!(n("b_m2+b_q"), n("b_q+b_m2"));
    assert_eq!(n("frozen"), 0);
    assert_eq!(n("full_ft"), ins.total);
    assert_eq!(
        n("rand_uniform"),
        102_912,
        "default budget = the all-bias count"
    );
    assert_eq!(truncated(share(&cfg, "bitfit")), 0.09);
    assert_eq!(truncated(share(&cfg, "b_q+b_m2")), 0.04);
    let large = BertConfig::bert_large_cased();
    assert_eq!(
        truncated(share(&large, "bitfit")),
        0.08,
        "Table 1: BitFit 0.08% on BERT-large"
    );
    let kinds: Vec<(String, usize)> = ins
        .bias_kinds
        .iter()
        .map(|(k, per, _)| (k.clone(), *per))
        .collect();
    assert_eq!(kinds[5], ("b_m2".to_string(), 3072));
    assert_eq!(kinds[0], ("b_q".to_string(), 768));
    assert!(ins.render().contains("102,912"));
}

#[test]
fn reference_substring_mode_differs_from_exact_notation_where_the_paper_says() {
    let cfg = BertConfig::bert_base_cased();
    let n = |m: &str| trainable_encoder_scalars(&Method::parse(m).unwrap(), &cfg).unwrap();
    // `output` catches b_m3 and b_m1; `output_layernorm` catches b_LN2 and b_LN1
    assert_eq!(n("ref:output"), n("b_m3+b_m1"));
    assert_eq!(n("ref:output_layernorm"), n("b_LN2+b_LN1"));
    assert_eq!(n("ref:query,intermediate"), n("b_q+b_m2"));
    assert_eq!(n("ref:all"), n("bitfit"));
    assert!(
        Method::parse("ref:querry")
            .unwrap_err()
            .to_string()
            .contains("valid")
    );
    assert!(
        Method::parse("b_x")
            .unwrap_err()
            .to_string()
            .contains("b_LN1")
    );
    assert!(
        Method::parse("dora")
            .unwrap_err()
            .to_string()
            .contains("valid")
    );
}

/// One method list: `repro inspect` has a row for every method the paper names.
#[test]
fn inspect_lists_every_paper_method() {
    let text = inspect(&BertConfig::bert_base_cased()).render();
    for m in bitfit_repro::finetune::method::PAPER_METHODS {
        assert!(
            text.lines().any(|l| l.starts_with(m.spelling)),
            "no row for {}:\n{text}",
            m.spelling
        );
    }
}
