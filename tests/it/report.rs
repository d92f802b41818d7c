//! Aggregation, tables and figures from hand-made records with known numbers.
use std::collections::BTreeMap;

use bitfit_repro::finetune::RunResult;
use bitfit_repro::report::tables::{TABLES, paper_rows, render};
use bitfit_repro::report::{
    Cell, CellKey, EpochRule, Rules, RunRow, aggregate, best_lr, figures, paper_avg, rows_of,
};

/// The default rules: per-metric best epoch, degenerate runs averaged.
const ALL: Rules = Rules {
    epoch: EpochRule::PerMetric,
    exclude_degenerate: false,
};
/// The pre-change view of degenerate runs (`--exclude-degenerate`).
const EXCL: Rules = Rules {
    epoch: EpochRule::PerMetric,
    exclude_degenerate: true,
};

fn row(task: &str, lr: f64, seed: i64, metric: &str, best: f64, degenerate: bool) -> RunRow {
    RunRow {
        model: "m".into(),
        protocol: "p".into(),
        task: task.into(),
        method: "bitfit".into(),
        train_size: 0,
        lr,
        seed,
        headline: metric != "accuracy" || task != "CoLA",
        metric: metric.into(),
        best,
        last: best - 1.0,
        diverged: false,
        degenerate,
        examples: 2490,
        param_pct: 0.1,
    }
}

/// The key of a cell of `row`'s model and method at the whole training set.
fn key(protocol: &str, task: &str) -> CellKey {
    CellKey {
        model: "m".into(),
        protocol: protocol.into(),
        task: task.into(),
        train_size: 0,
        method: "bitfit".into(),
    }
}

fn table3() -> &'static bitfit_repro::report::tables::TableSpec {
    TABLES.iter().find(|t| t.id == "table3").unwrap()
}

#[test]
fn aggregate_selects_the_best_lr_and_counts_degenerate_runs() {
    let rows = vec![
        row("RTE", 1e-3, 0, "accuracy", 70.0, false),
        row("RTE", 1e-3, 1, "accuracy", 72.0, false),
        row("RTE", 1e-3, 2, "accuracy", 74.0, false),
        row("RTE", 1e-4, 0, "accuracy", 60.0, false),
        row("RTE", 1e-4, 1, "accuracy", 62.0, false),
        row("CoLA", 1e-3, 0, "mcc", 0.0, true), // degenerate: constant predictions
        row("CoLA", 1e-3, 0, "accuracy", 69.1, true),
        row("CoLA", 1e-3, 1, "mcc", 40.0, false),
        row("CoLA", 1e-3, 1, "accuracy", 75.0, false),
    ];
    let mut other = row("RTE", 1e-3, 0, "accuracy", 50.0, false);
    other.protocol = "q".into(); // another protocol (e.g. more epochs): never pooled with `p`
    let rows = [rows, vec![other]].concat();
    let agg = aggregate(&rows, &ALL).unwrap();
    assert_eq!(agg.height(), 5, "(protocol, task, lr, metric) groups");
    let best = best_lr(&agg).unwrap();
    let rte = &best[&key("p", "RTE")];
    assert_eq!(
        (
            rte.lr,
            rte.mean,
            rte.std,
            rte.n,
            rte.excluded,
            rte.degenerate
        ),
        (1e-3, 72.0, 2.0, 3, 0, 0)
    );
    assert_eq!(rte.examples, 2490.0);
    assert!((rte.param_pct - 0.1).abs() < 1e-12);
    assert_eq!(best[&key("q", "RTE")].mean, 50.0);
    // Changed with the "average every finished run" rule: the degenerate CoLA run (MCC 0) used to
    // be left out (40.0, n=1, 1 excl.); now it is averaged and counted: (0 + 40) / 2, n=2.
    let cola = &best[&key("p", "CoLA")];
    assert_eq!(
        (
            cola.mean,
            cola.n,
            cola.excluded,
            cola.degenerate,
            cola.diverged
        ),
        (20.0, 2, 0, 1, 0),
        "degenerate run averaged"
    );
    assert!((cola.std - 800f64.sqrt()).abs() < 1e-9, "{}", cola.std);
    // the secondary metric follows the same runs: (69.1 + 75.0) / 2 (was 75.0 alone)
    assert!(
        (cola.secondary["accuracy"] - 72.05).abs() < 1e-9,
        "secondary metric kept: {:?}",
        cola.secondary
    );
    // --exclude-degenerate gives the old view back
    let excl = best_lr(&aggregate(&rows, &EXCL).unwrap()).unwrap();
    let cola_x = &excl[&key("p", "CoLA")];
    assert_eq!(
        (cola_x.mean, cola_x.n, cola_x.excluded, cola_x.degenerate),
        (40.0, 1, 1, 1),
        "degenerate run left out"
    );
    assert_eq!(
        cola_x.secondary,
        BTreeMap::from([("accuracy".to_string(), 75.0)])
    );
    let md_x = render(table3(), &excl, &EXCL).unwrap().markdown;
    assert!(md_x.contains("40.0 (n=1, 1 degen. excl.)"), "{md_x}");
    assert!(
        md_x.contains("left out of the means") && md_x.contains("`--exclude-degenerate`"),
        "rules named: {md_x}"
    );

    let t = render(table3(), &best, &ALL).unwrap();
    let md = &t.markdown;
    assert!(md.contains("72.0 ±2.0 (n=3)"), "{md}");
    // was "40.0 (n=1, 1 excl.)" before degenerate runs were averaged by default
    assert!(md.contains("20.0 ±28.3 (n=2, 1 degen.)"), "{md}");
    // the header names the rules that produced the table
    assert!(md.contains("Rules: epoch rule `per-metric`"), "{md}");
    assert!(
        md.contains("degenerate ones included")
            && md.contains("best mean over all its finished runs"),
        "{md}"
    );
    assert!(md.contains("| paper: BitFit (R) | 0.09 | 90.2 | 92.1 | 81.4 | 82.2 | 58.8 | 90.4 | 89.2 | 72.3 | 84.0 | 82.4 |"), "{md}");
    assert!(
        md.contains("| ours: b_q (`b_q`) |  | not run |"),
        "methods without runs are marked: {md}"
    );
    assert!(
        md.contains("| ours − paper: BitFit |  |  |"),
        "tasks without runs have no difference: {md}"
    );
    assert!(md.contains("-0.3"), "RTE 72.0 vs paper 72.3: {md}");
    assert!(
        md.contains("missing QNLI, SST-2, MNLI-m, MNLI-mm, MRPC, STS-B, QQP"),
        "{md}"
    );
    // LaTeX (booktabs) and CSV carry the same numbers
    assert!(
        t.latex.contains("\\toprule") && t.latex.contains("\\bottomrule"),
        "{}",
        t.latex
    );
    assert!(t.latex.contains("72.0$\\pm$2.0"), "{}", t.latex);
    assert!(t.latex.contains("ours: BitFit (bitfit)"), "{}", t.latex);
    assert!(
        t.latex.contains("% Rules: epoch rule `per-metric`"),
        "{}",
        t.latex
    );
    assert!(
        t.latex
            .contains("epoch rule per-metric · degenerate runs averaged"),
        "LaTeX caption: {}",
        t.latex
    );
    // the CSV gained a degenerate count per task (value, std, n, degen) and a rules column;
    // CoLA's secondary accuracy is now the mean over both runs (was 75.0)
    assert!(t.csv.starts_with("table,model,protocol,train_size,row,group,method,param_pct,QNLI,QNLI_std,QNLI_n,QNLI_degen,"));
    let csv_row = t
        .csv
        .lines()
        .find(|l| l.contains(",ours,,bitfit,"))
        .unwrap();
    assert!(
        csv_row.contains(",72.0,2.0,3,0,") && csv_row.contains(",20.0,28.3,2,1,"),
        "{csv_row}"
    );
    assert!(
        csv_row.contains("CoLA:accuracy=72.0") || csv_row.contains("CoLA:accuracy=72.1"),
        "{csv_row}"
    );
    assert!(
        csv_row.ends_with(",epoch rule per-metric · degenerate runs averaged · lr by that mean"),
        "{csv_row}"
    );
    let diff = t
        .csv
        .lines()
        .find(|l| l.contains(",diff,,BitFit,"))
        .unwrap();
    assert!(diff.contains(",-0.3,"), "{diff}");

    // Table 1: Diff-Pruning and Adapters have no runs here; test rows are the paper's
    let t1 = render(
        TABLES.iter().find(|t| t.id == "table1").unwrap(),
        &best,
        &ALL,
    )
    .unwrap();
    assert!(
        t1.markdown
            .contains("| ours: Diff-Prune (`diff_pruning:share=0.5%,finetune=3,finetune_lr=5e-5`) |  | not run |"),
        "{}",
        t1.markdown
    );
    assert!(
        t1.markdown
            .contains("paper test: BitFit (R) | 0.08 | 92.0 |"),
        "{}",
        t1.markdown
    );
    // Table 2 compares with the paper model of the same family (bert-base for `m`)
    let t2 = render(
        TABLES.iter().find(|t| t.id == "table2").unwrap(),
        &best,
        &ALL,
    )
    .unwrap();
    assert!(
        t2.markdown.contains("ours − paper bert-base: BitFit"),
        "{}",
        t2.markdown
    );
}

#[test]
fn paper_average_averages_mnli_first() {
    let cell = |v: f64| Cell {
        lr: 1e-3,
        mean: v,
        std: 0.0,
        n: 1,
        excluded: 0,
        degenerate: 0,
        diverged: 0,
        examples: 1.0,
        param_pct: 0.1,
        secondary: BTreeMap::new(),
        secondary_std: BTreeMap::new(),
    };
    let mut cells: BTreeMap<String, Cell> = bitfit_repro::report::PAPER_TASKS
        .iter()
        .map(|t| (t.to_string(), cell(80.0)))
        .collect();
    cells.insert("MNLI-m".into(), cell(70.0));
    cells.insert("MNLI-mm".into(), cell(90.0));
    assert_eq!(paper_avg(&cells).unwrap(), 80.0);
    cells.insert("QQP".into(), cell(88.0));
    assert_eq!(paper_avg(&cells).unwrap(), 81.0);
    // every paper row with a printed Avg. recomputes from its cells (up to the paper's rounding)
    let mut checked = 0;
    for spec in &TABLES {
        for r in paper_rows(spec.paper_csv, spec.group_col) {
            let (Some(want), Ok(avg)) = (r.avg, bitfit_repro::report::avg_of(&r.vals)) else {
                continue;
            };
            assert!(
                (avg - want).abs() <= 0.0501 + 1e-9,
                "{} {} {}: {avg} vs paper {want}",
                spec.id,
                r.group,
                r.method
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked}");
    let bitfit = paper_rows(table3().paper_csv, None)
        .into_iter()
        .find(|r| r.method == "BitFit")
        .unwrap();
    let cells: BTreeMap<String, Cell> = bitfit
        .vals
        .iter()
        .map(|(t, v)| (t.clone(), cell(*v)))
        .collect();
    let mut partial = cells.clone();
    partial.remove("QQP");
    assert_eq!(paper_avg(&partial).unwrap_err(), vec!["QQP".to_string()]);
}

/// A hand-made run record: one epoch per entry of `dev` (accuracy), train accuracy `train`.
fn result(
    method: &str,
    seed: u64,
    size: Option<usize>,
    dq: f64,
    train: f64,
    dev: &[f64],
) -> RunResult {
    use bitfit_repro::finetune::train::{BiasChange, EpochRecord};
    use bitfit_repro::finetune::{Method, TrainConfig};
    use bitfit_repro::model::BiasKind;
    let mut cfg = TrainConfig::reference(
        "RTE".parse().unwrap(),
        "models/mini".into(),
        "data".into(),
        Method::parse(method).unwrap(),
        1e-3,
    );
    cfg.seed = seed;
    cfg.train_size = size;
    let scores = |v: f64| {
        [("accuracy".to_string(), v)]
            .into_iter()
            .collect::<BTreeMap<_, _>>()
    };
    let change = |kind: BiasKind, layer: usize, d: f64| BiasChange {
        name: kind.hf_name(layer),
        kind: Some(kind),
        layer: Some(layer),
        mean_abs_delta: d,
    };
    let best = dev
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
        + 1;
    RunResult {
        config: cfg,
        epochs: dev
            .iter()
            .enumerate()
            .map(|(i, d)| EpochRecord {
                epoch: i + 1,
                train_loss: 0.5,
                train: Some(scores(train)),
                dev: [("dev".to_string(), scores(*d))].into_iter().collect(),
                seconds: 1.0,
            })
            .collect(),
        best_epoch: best,
        headline: "accuracy".into(),
        trainable_params: 10,
        total_params: 100,
        trainable_share: 0.1,
        train_examples: size.unwrap_or(2490),
        steps: 2,
        wall_seconds: 1.0,
        train_examples_per_second: 10.0,
        bias_changes: vec![
            change(BiasKind::b_q, 0, dq),
            change(BiasKind::b_q, 1, 3.0 * dq),
            change(BiasKind::b_k, 0, 0.0),
            change(BiasKind::b_k, 1, 0.0),
            change(BiasKind::b_m2, 0, 0.0),
            BiasChange {
                name: "pooler.dense.bias".into(),
                kind: None,
                layer: None,
                mean_abs_delta: dq / 2.0,
            },
        ],
        diverged: false,
    }
}

#[test]
fn fig1_table_and_generalization_gap_from_records() {
    use bitfit_repro::report::{
        ANY_SIZE, BiasKey, bias_change_markdown, bias_change_means, generalization_gap_markdown,
        generalization_gaps, heat_maps,
    };
    // a run at a second learning rate that loses the cell: its large bias changes and its gap
    // must stay out of Fig. 1 and of the gap table, which describe the selected rate's runs
    let mut other_rate = result("bitfit", 0, None, 1.0, 1.0, &[0.5]);
    other_rate.config.lr = 1e-2;
    let results = vec![
        result("bitfit", 0, None, 1e-2, 0.9, &[0.7]),
        result("bitfit", 1, None, 3e-2, 0.8, &[0.7]),
        result("b_q", 0, None, 5e-2, 0.7, &[0.6]),
        other_rate,
    ];
    let rows: Vec<RunRow> = results.iter().flat_map(|r| rows_of(r, ALL.epoch)).collect();
    let best = best_lr(&aggregate(&rows, &ALL).unwrap()).unwrap();
    assert!(best.values().all(|c| c.lr == 1e-3), "the second rate loses");
    let means = bias_change_means(&results, &best, &ALL);
    let protocol = bitfit_repro::report::protocol_of(&results[0].config);
    assert_eq!(
        protocol,
        "16 ep · batch 8 · len 128 · full dev · pooler head · constant lr"
    );
    let key = |m: &str, k: &str, l: Option<usize>| BiasKey {
        cell: CellKey {
            model: "mini".to_string(),
            protocol: protocol.clone(),
            task: "RTE".to_string(),
            train_size: ANY_SIZE,
            method: m.to_string(),
        },
        row: k.to_string(),
        layer: l,
    };
    assert!(
        (means[&key("bitfit", "b_q", Some(0))] - 2e-2).abs() < 1e-12,
        "mean over seeds"
    );
    assert!((means[&key("bitfit", "b_q", Some(1))] - 6e-2).abs() < 1e-12);
    assert_eq!(
        means[&key("bitfit", "b_k", Some(0))],
        0.0,
        "b_k trained under bitfit: a real zero"
    );
    assert!(
        (means[&key("bitfit", "pooler", None)] - 1e-2).abs() < 1e-12,
        "pooler bias: its own row"
    );
    assert!(
        !means.contains_key(&key("b_q", "b_m2", Some(0))),
        "b_m2 is not trained under b_q: no cell"
    );
    let maps = heat_maps(&means);
    let md = bias_change_markdown(&maps);
    assert!(md.contains("| b_q | 2.00e-2 | 6.00e-2 | 4.00e-2 |"), "{md}");
    assert!(md.contains("| b_k | 0.00e0 | 0.00e0 | 0.00e0 |"), "{md}");
    assert!(md.contains("| pooler |  |  | 1.00e-2 |"), "{md}");
    let bitfit = maps.iter().find(|m| m.key.method == "bitfit").unwrap();
    let rows: Vec<&str> = bitfit.rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        rows,
        ["b_q", "b_k", "b_m2", "pooler"],
        "paper order, extra rows last"
    );
    let gap = generalization_gap_markdown(&generalization_gaps(&results, &best, &ALL));
    assert!(gap.contains("| mini | 16 ep · batch 8 · len 128 · full dev · pooler head · constant lr | RTE | all | bitfit | 85.0 | 70.0 | 15.0 | 2 |"), "{gap}");
    assert!(gap.contains("| mini | 16 ep · batch 8 · len 128 · full dev · pooler head · constant lr | RTE | all | b_q | 70.0 | 60.0 | 10.0 | 1 |"), "{gap}");
}

#[test]
fn crossing_is_interpolated_in_log_size() {
    use figures::crossing;
    // BitFit ahead at 100 (+2), behind at 10000 (-2): crossing halfway in log space = 1000
    let x = crossing(&[100.0, 10000.0], &[72.0, 80.0], &[70.0, 82.0]).unwrap();
    assert!((x - 1000.0).abs() < 1e-6, "{x}");
    assert_eq!(
        crossing(&[100.0, 1000.0], &[72.0, 80.0], &[70.0, 79.0]),
        None,
        "never crosses"
    );
}

#[test]
fn legend_goes_to_the_corner_it_hides_least() {
    use figures::{Corner, legend_corner};
    // rising curves (SST-2's Fig. 2): the lower right is free
    let rising = vec![
        vec![(0.1, 0.3), (0.5, 0.6), (0.9, 0.8)],
        vec![(0.1, 0.4), (0.5, 0.7), (0.9, 0.9)],
    ];
    assert_eq!(legend_corner(&rising), Corner::LowerRight);
    // SQuAD at 300 and 1,000 questions: BitFit falls into the lower right, Full-FT rises into the
    // upper right, the lower left is empty
    let squad = vec![
        vec![(0.15, 0.43), (0.85, 0.10)],
        vec![(0.15, 0.46), (0.85, 0.90)],
    ];
    assert_eq!(legend_corner(&squad), Corner::LowerLeft);
    // both lower corners taken: the upper right
    let valley = vec![vec![(0.1, 0.1), (0.5, 0.5), (0.9, 0.1)]];
    assert_eq!(legend_corner(&valley), Corner::UpperRight);
    assert_eq!(legend_corner(&[]), Corner::LowerRight, "nothing drawn");
}

/// A figure's header (title, protocol and note lines) fits its width: no ink in the outer 4 px
/// columns of the top 70 rows, where a line too long for the figure would run off its edges.
pub fn assert_header_fits(name: &str, w: usize, h: usize, rgb: &[u8]) {
    let inked = |x: usize, y: usize| {
        rgb[3 * (y * w + x)..3 * (y * w + x) + 3]
            .iter()
            .all(|c| *c < 200)
    };
    let edge = (0..70.min(h))
        .flat_map(|y| (0..4).chain(w - 4..w).map(move |x| (x, y)))
        .filter(|&(x, y)| inked(x, y))
        .count();
    assert_eq!(edge, 0, "{name}: the header runs off the figure's edges");
}

/// Decode an 8-bit RGB, non-interlaced PNG (all five row filters), checking every chunk CRC.
pub fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "signature");
    let (mut pos, mut w, mut h, mut idat) = (8, 0, 0, Vec::new());
    loop {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let data = &bytes[pos + 8..pos + 8 + len];
        let crc = u32::from_be_bytes(bytes[pos + 8 + len..pos + 12 + len].try_into().unwrap());
        assert_eq!(
            crc32fast::hash(&bytes[pos + 4..pos + 8 + len]),
            crc,
            "CRC of {:?}",
            std::str::from_utf8(kind)
        );
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().unwrap());
                h = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!(&data[8..], &[8, 2, 0, 0, 0], "8-bit RGB, no interlace");
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        pos += 12 + len;
    }
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&idat[..]), &mut raw).unwrap();
    let stride = w as usize * 3;
    assert_eq!(raw.len(), h as usize * (stride + 1), "decompressed size");
    let mut px = vec![0u8; h as usize * stride];
    for y in 0..h as usize {
        let f = raw[y * (stride + 1)];
        for x in 0..stride {
            let v = raw[y * (stride + 1) + 1 + x];
            let a = if x >= 3 {
                px[y * stride + x - 3] as i32
            } else {
                0
            };
            let b = if y > 0 {
                px[(y - 1) * stride + x] as i32
            } else {
                0
            };
            let c = if x >= 3 && y > 0 {
                px[(y - 1) * stride + x - 3] as i32
            } else {
                0
            };
            let pred = match f {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                _ => panic!("filter {f}"),
            };
            px[y * stride + x] = (v as i32 + pred) as u8;
        }
    }
    (w, h, px)
}

#[test]
fn figures_render_as_png_and_svg_with_content() {
    use bitfit_repro::report::{
        bias_change_means, generalization_gaps, heat_maps, learning_curves,
    };
    // a training-size sweep where BitFit wins small and Full-FT wins large, 2 seeds each
    let mut results = Vec::new();
    for (size, bitfit, full) in [(100, 0.62, 0.58), (1000, 0.70, 0.69), (2490, 0.72, 0.76)] {
        for seed in 0..2u64 {
            let j = seed as f64 * 0.02;
            results.push(result(
                "bitfit",
                seed,
                Some(size),
                2e-2,
                0.8,
                &[bitfit - 0.05 + j, bitfit + j],
            ));
            results.push(result(
                "full_ft",
                seed,
                Some(size),
                1e-3,
                0.95,
                &[full - 0.05 + j, full + j],
            ));
        }
    }
    let rows: Vec<RunRow> = results.iter().flat_map(|r| rows_of(r, ALL.epoch)).collect();
    let best = best_lr(&aggregate(&rows, &ALL).unwrap()).unwrap();
    let means = bias_change_means(&results, &best, &ALL);
    let curves = learning_curves(&results, &best, &ALL);
    let figs = figures::all(
        &heat_maps(&means),
        &best,
        &curves,
        &generalization_gaps(&results, &best, &ALL),
        &ALL,
    )
    .unwrap();
    let names: Vec<&str> = figs.figures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "fig1_bias_change_mini_RTE_bitfit",
            "fig1_bias_change_mini_RTE_full_ft",
            "fig2_train_size_mini",
            "learning_curves_mini",
            "generalization_gap_mini"
        ],
        "skipped: {:?}",
        figs.skipped
    );
    if let Ok(dir) = std::env::var("BITFIT_FIGURE_DIR") {
        // look at them: BITFIT_FIGURE_DIR=/tmp/figs cargo test --release -- figures_render
        for f in &figs.figures {
            std::fs::write(format!("{dir}/{}.png", f.name), &f.png).unwrap();
            std::fs::write(format!("{dir}/{}.svg", f.name), &f.svg).unwrap();
        }
    }
    for f in &figs.figures {
        let (w, h, px) = decode_png(&f.png);
        assert_eq!((w, h), f.size, "{}", f.name);
        assert!(w >= 600 && h >= 250, "{}: {w}x{h}", f.name);
        let n = px.len() as f64;
        let mean = px.iter().map(|v| *v as f64).sum::<f64>() / n;
        let var = px.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(var > 100.0, "{}: pixel variance {var} (blank?)", f.name);
        let dark = px.chunks(3).filter(|p| p.iter().all(|c| *c < 60)).count();
        assert!(dark > 500, "{}: {dark} dark pixels: no text drawn?", f.name);
        assert_header_fits(&f.name, w as usize, h as usize, &px);
        assert!(
            f.svg.starts_with("<svg") && f.svg.contains("</svg>"),
            "{}",
            f.name
        );
    }
    let svg = |n: &str| &figs.figures.iter().find(|f| f.name == n).unwrap().svg;
    let fig1 = svg("fig1_bias_change_mini_RTE_bitfit");
    for s in ["b_q", "b_k", "pooler", "Avg.", "layer", "Fig. 1"] {
        assert!(fig1.contains(s), "Fig. 1 SVG lacks {s}");
    }
    // b_q layer 2 = 6e-2 is the maximum: its cell is the darkest blue, and printed ×10^-2
    assert!(
        fig1.contains("\n6.00\n") && fig1.contains("×10⁻²"),
        "values readable: {fig1}"
    );
    let fig2 = svg("fig2_train_size_mini");
    assert!(fig2.contains("BitFit = Full-FT at ≈"), "crossing marked");
    // a tick at every measured size, not only at the powers of ten: 2,490 is labelled
    assert!(fig2.contains("\n2.5k\n"), "size ticks: {fig2}");
    assert!(fig2.contains("training examples (log scale)") && fig2.contains("dev accuracy ×100"));
    assert!(
        fig2.contains("BitFit") && fig2.contains("Full-FT"),
        "legend"
    );
    assert!(
        fig2.contains("epoch rule per-metric · degenerate runs averaged"),
        "Fig. 2 names the tables' rules"
    );
    let gap = svg("generalization_gap_mini");
    assert!(
        gap.contains("train − dev") && gap.contains("RTE · 100") && gap.contains("RTE · 2.5k"),
        "one bar group per size"
    );
    assert!(svg("learning_curves_mini").contains("epoch"));
    assert!(
        svg("learning_curves_mini").contains("no best-epoch choice"),
        "curves say which runs and epochs"
    );
    assert!(
        gap.contains("single best epoch"),
        "the gap says which epoch it reads"
    );
    // the heat map's darkest cell is the b_q layer-2 value
    let f1 = &figs.figures[0];
    let (w, _, px) = decode_png(&f1.png);
    let dark_blue = figures::blues(1.0);
    let hits = px
        .chunks(3)
        .filter(|p| (p[0], p[1], p[2]) == (dark_blue.0, dark_blue.1, dark_blue.2))
        .count();
    assert!(hits > 500, "{hits} pixels of the top colour (w={w})");
}

#[test]
fn constant_predictions_are_degenerate_and_not_a_metric() {
    use bitfit_repro::finetune::train::prediction_spread;
    use bitfit_repro::metrics::Outputs;
    let constant = Outputs::Classes {
        labels: vec![0, 1, 1, 0],
        preds: vec![1, 1, 1, 1],
    };
    assert_eq!(prediction_spread(&constant), ("pred_majority_share", 1.0));
    let mixed = Outputs::Classes {
        labels: vec![0, 1, 1, 0],
        preds: vec![1, 0, 1, 1],
    };
    assert_eq!(prediction_spread(&mixed), ("pred_majority_share", 0.75));
    assert_eq!(
        prediction_spread(&Outputs::Scores {
            labels: vec![1.0, 2.0],
            preds: vec![3.0, 3.0]
        }),
        ("pred_std", 0.0)
    );

    // an all-positive classifier: accuracy 50, F1 66.7 — not zero, still degenerate
    let mut r = result("bitfit", 0, None, 1e-2, 0.5, &[0.5]);
    r.epochs[0]
        .dev
        .get_mut("dev")
        .unwrap()
        .insert("pred_majority_share".into(), 1.0);
    let rows = rows_of(&r, EpochRule::PerMetric);
    assert_eq!(
        rows.len(),
        1,
        "pred_* is a diagnostic, not a metric row: {rows:?}"
    );
    // was `excluded`; now flagged degenerate (and averaged unless --exclude-degenerate)
    assert!(rows[0].degenerate && !rows[0].diverged);
    assert!(rows[0].averaged(&ALL) && !rows[0].averaged(&EXCL));
    assert!(
        rows_of(&r, EpochRule::Single)[0].degenerate,
        "same epoch under both rules for one split"
    );
    r.epochs[0]
        .dev
        .get_mut("dev")
        .unwrap()
        .insert("pred_majority_share".into(), 0.9);
    assert!(!rows_of(&r, EpochRule::PerMetric)[0].degenerate);
    // a diverged run is never averaged, under either degenerate rule
    r.diverged = true;
    let row = &rows_of(&r, EpochRule::PerMetric)[0];
    assert!(row.diverged && !row.averaged(&ALL) && !row.averaged(&EXCL));
}

/// A hand-made run record of `task` with the given dev scores per epoch: `epochs[i]` lists
/// (split, metric, value) of epoch i + 1. `best_epoch` is computed as training does (sum of the
/// headline metric over the dev splits, ties to the earlier epoch).
fn record(task: &str, lr: f64, seed: u64, epochs: &[&[(&str, &str, f64)]]) -> RunResult {
    use bitfit_repro::finetune::train::EpochRecord;
    use bitfit_repro::finetune::{Method, TrainConfig};
    let task: bitfit_repro::data::Task = task.parse().unwrap();
    let mut cfg = TrainConfig::reference(
        task,
        "models/mini".into(),
        "data".into(),
        Method::parse("bitfit").unwrap(),
        lr,
    );
    cfg.seed = seed;
    let headline = task.metrics()[0].to_string();
    let epochs: Vec<EpochRecord> = epochs
        .iter()
        .enumerate()
        .map(|(i, scores)| {
            let mut dev: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
            for (split, metric, v) in scores.iter() {
                dev.entry(split.to_string())
                    .or_default()
                    .insert(metric.to_string(), *v);
            }
            EpochRecord {
                epoch: i + 1,
                train_loss: 0.5,
                train: None,
                dev,
                seconds: 1.0,
            }
        })
        .collect();
    let h = |e: &EpochRecord| {
        e.dev
            .values()
            .map(|s| s.get(&headline).copied().unwrap_or(f64::MIN))
            .sum::<f64>()
    };
    let best_epoch = epochs
        .iter()
        .max_by(|a, b| h(a).total_cmp(&h(b)).then(b.epoch.cmp(&a.epoch)))
        .map_or(0, |e| e.epoch);
    RunResult {
        config: cfg,
        epochs,
        best_epoch,
        headline,
        trainable_params: 10,
        total_params: 100,
        trainable_share: 0.1,
        train_examples: 2490,
        steps: 2,
        wall_seconds: 1.0,
        train_examples_per_second: 10.0,
        bias_changes: vec![],
        diverged: false,
    }
}

/// One RTE run with a single epoch of dev accuracy `acc`; `constant` marks constant predictions.
fn rte(lr: f64, seed: u64, acc: f64, constant: bool) -> RunResult {
    let share = if constant { 1.0 } else { 0.6 };
    record(
        "RTE",
        lr,
        seed,
        &[&[
            ("dev", "accuracy", acc),
            ("dev", "pred_majority_share", share),
        ]],
    )
}

fn cells_of(results: &[RunResult], rules: &Rules) -> BTreeMap<String, Cell> {
    let rows: Vec<RunRow> = results
        .iter()
        .flat_map(|r| rows_of(r, rules.epoch))
        .collect();
    let best = best_lr(&aggregate(&rows, rules).unwrap()).unwrap();
    let rows: std::collections::BTreeSet<_> = best
        .keys()
        .map(|k| (k.setting(), k.method.clone(), k.train_size))
        .collect();
    assert_eq!(rows.len(), 1, "one (setting, method, size)");
    best.into_iter().map(|(k, c)| (k.task, c)).collect()
}

#[test]
fn a_degenerate_run_is_averaged_by_default_and_left_out_with_exclude() {
    // two good runs (70, 74) and one that predicts one class (50): the paper averages its seeds
    let results = vec![
        rte(1e-3, 0, 0.70, false),
        rte(1e-3, 1, 0.74, false),
        rte(1e-3, 2, 0.50, true),
    ];
    let all = &cells_of(&results, &ALL)["RTE"];
    assert!(
        (all.mean - 194.0 / 3.0).abs() < 1e-9,
        "mean over three: {}",
        all.mean
    );
    assert_eq!(
        (all.n, all.degenerate, all.excluded, all.diverged),
        (3, 1, 0, 0)
    );
    let excl = &cells_of(&results, &EXCL)["RTE"];
    assert_eq!(
        (excl.mean, excl.n, excl.degenerate, excl.excluded),
        (72.0, 2, 1, 1),
        "mean over the two good runs"
    );
    // the table cell shows the count beside the mean
    let best = |rules: &Rules| {
        let rows: Vec<RunRow> = results
            .iter()
            .flat_map(|r| rows_of(r, rules.epoch))
            .collect();
        best_lr(&aggregate(&rows, rules).unwrap()).unwrap()
    };
    let md = render(table3(), &best(&ALL), &ALL).unwrap().markdown;
    assert!(md.contains("| 64.7 ±12.9 (n=3, 1 degen.) |"), "{md}");
    let md = render(table3(), &best(&EXCL), &EXCL).unwrap().markdown;
    assert!(md.contains("| 72.0 ±2.8 (n=2, 1 degen. excl.) |"), "{md}");
    // a diverged run has no usable score: counted, never averaged
    let mut div = rte(1e-3, 3, 0.99, false);
    div.diverged = true;
    let with_div = [results.clone(), vec![div]].concat();
    let c = &cells_of(&with_div, &ALL)["RTE"];
    assert_eq!((c.n, c.degenerate, c.diverged, c.excluded), (3, 1, 1, 1));
    assert!((c.mean - 194.0 / 3.0).abs() < 1e-9, "{}", c.mean);
    let rows: Vec<RunRow> = with_div
        .iter()
        .flat_map(|r| rows_of(r, ALL.epoch))
        .collect();
    let md = render(
        table3(),
        &best_lr(&aggregate(&rows, &ALL).unwrap()).unwrap(),
        &ALL,
    )
    .unwrap()
    .markdown;
    assert!(md.contains("(n=3, 1 degen., 1 diverged)"), "{md}");
}

#[test]
fn the_learning_rate_is_selected_on_the_mean_the_table_shows() {
    // lr 1e-3: one good seed (80) and two constant predictors (50, 50) → 60 over all runs, 80
    // over the one survivor; lr 1e-4: 70 and 72 → 71 either way
    let results = vec![
        rte(1e-3, 0, 0.80, false),
        rte(1e-3, 1, 0.50, true),
        rte(1e-3, 2, 0.50, true),
        rte(1e-4, 0, 0.70, false),
        rte(1e-4, 1, 0.72, false),
    ];
    let all = &cells_of(&results, &ALL)["RTE"];
    assert_eq!(
        (all.lr, all.mean, all.n, all.degenerate),
        (1e-4, 71.0, 2, 0),
        "one surviving seed cannot win the cell"
    );
    let excl = &cells_of(&results, &EXCL)["RTE"];
    assert_eq!(
        (excl.lr, excl.mean, excl.n, excl.degenerate),
        (1e-3, 80.0, 1, 2),
        "the old view: the survivor wins"
    );
}

#[test]
fn per_metric_rule_takes_each_metrics_own_best_epoch() {
    // MRPC: F1 peaks at epoch 1, accuracy at epoch 2
    let r = record(
        "MRPC",
        1e-3,
        0,
        &[
            &[
                ("dev", "f1", 0.80),
                ("dev", "accuracy", 0.70),
                ("dev", "pred_majority_share", 0.6),
            ],
            &[
                ("dev", "f1", 0.75),
                ("dev", "accuracy", 0.78),
                ("dev", "pred_majority_share", 0.6),
            ],
            &[
                ("dev", "f1", 0.74),
                ("dev", "accuracy", 0.72),
                ("dev", "pred_majority_share", 0.6),
            ],
        ],
    );
    assert_eq!(r.best_epoch, 1);
    let value = |rule: EpochRule, m: &str| {
        rows_of(&r, rule)
            .into_iter()
            .find(|row| row.metric == m)
            .unwrap()
    };
    // per-metric (the reference code's max of each learning curve): F1 80 at epoch 1, accuracy 78 at epoch 2
    assert_eq!(
        (
            value(EpochRule::PerMetric, "f1").best,
            value(EpochRule::PerMetric, "accuracy").best
        ),
        (80.0, 78.0)
    );
    // single: both at epoch 1, the epoch best on F1
    assert_eq!(
        (
            value(EpochRule::Single, "f1").best,
            value(EpochRule::Single, "accuracy").best
        ),
        (80.0, 70.0)
    );
    assert_eq!(
        value(EpochRule::PerMetric, "accuracy").last,
        72.0,
        "the last epoch is the last epoch under both rules"
    );
    assert_eq!(
        r.best_record_for("dev", "accuracy", EpochRule::PerMetric)
            .unwrap()
            .epoch,
        2
    );
    assert_eq!(
        r.best_record_for("dev", "accuracy", EpochRule::Single)
            .unwrap()
            .epoch,
        1
    );
    // the secondary metric in the table follows the rule
    let single = Rules {
        epoch: EpochRule::Single,
        exclude_degenerate: false,
    };
    assert_eq!(
        cells_of(std::slice::from_ref(&r), &ALL)["MRPC"].secondary["accuracy"],
        78.0
    );
    assert_eq!(
        cells_of(std::slice::from_ref(&r), &single)["MRPC"].secondary["accuracy"],
        70.0
    );
    let rows: Vec<RunRow> = rows_of(&r, EpochRule::Single);
    let md = render(
        table3(),
        &best_lr(&aggregate(&rows, &single).unwrap()).unwrap(),
        &single,
    )
    .unwrap()
    .markdown;
    assert!(
        md.contains(
            "Rules: epoch rule `single`: every metric at the one epoch best on the headline"
        ),
        "{md}"
    );
}

#[test]
fn mnli_matched_and_mismatched_take_their_maxima_separately() {
    // matched peaks at epoch 1 (80), mismatched at epoch 2 (79); the sum picks epoch 2
    let r = record(
        "MNLI",
        1e-4,
        0,
        &[
            &[
                ("dev", "accuracy", 0.80),
                ("dev_mismatched", "accuracy", 0.70),
            ],
            &[
                ("dev", "accuracy", 0.76),
                ("dev_mismatched", "accuracy", 0.79),
            ],
        ],
    );
    assert_eq!(r.best_epoch, 2);
    let best = |rule: EpochRule| -> Vec<(String, f64)> {
        rows_of(&r, rule)
            .into_iter()
            .map(|row| (row.task, row.best))
            .collect()
    };
    assert_eq!(
        best(EpochRule::PerMetric),
        [("MNLI-m".to_string(), 80.0), ("MNLI-mm".to_string(), 79.0)]
    );
    assert_eq!(
        best(EpochRule::Single),
        [("MNLI-m".to_string(), 76.0), ("MNLI-mm".to_string(), 79.0)]
    );
    let cells = cells_of(std::slice::from_ref(&r), &ALL);
    assert_eq!((cells["MNLI-m"].mean, cells["MNLI-mm"].mean), (80.0, 79.0));
}

#[test]
fn a_run_in_two_stores_counts_once() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let put = |store: &std::path::Path, id: &str, r: &RunResult| {
        let dir = store.join("runs").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("result.json"), serde_json::to_vec(r).unwrap()).unwrap();
    };
    // two grids sharing a cell hold the same run (same id) in their own stores
    put(a.path(), "00000000000000aa", &rte(1e-3, 0, 0.6, false));
    put(b.path(), "00000000000000aa", &rte(1e-3, 0, 0.6, false));
    put(b.path(), "00000000000000bb", &rte(1e-3, 1, 0.7, false));
    let results = bitfit_repro::report::load_results(&[a.path(), b.path()]).unwrap();
    let seeds: Vec<u64> = results.iter().map(|r| r.config.seed).collect();
    assert_eq!(
        seeds,
        [0, 1],
        "the shared run once, then the other store's own run"
    );
}

#[test]
fn squad_fig2_has_an_exact_match_and_an_f1_panel() {
    // SQuAD runs at two sizes: em headline, f1 secondary
    let mut results = Vec::new();
    for (size, em, f1) in [(100, 0.20, 0.30), (1000, 0.40, 0.55)] {
        for (method, shift) in [("bitfit", 0.0), ("full_ft", 0.05)] {
            for seed in 0..2u64 {
                let mut r = result(method, seed, Some(size), 1e-3, 0.5, &[0.0]);
                r.config.task = "SQuAD".parse().unwrap();
                r.config.head = bitfit_repro::model::HeadPooling::Span;
                r.headline = "em".into();
                let j = seed as f64 * 0.01;
                let s: BTreeMap<String, f64> = [
                    ("em".to_string(), em + shift + j),
                    ("f1".to_string(), f1 + shift + j),
                ]
                .into();
                r.epochs[0].dev = [("dev".to_string(), s.clone())].into();
                r.epochs[0].train = Some(s);
                results.push(r);
            }
        }
    }
    let rows: Vec<RunRow> = results.iter().flat_map(|r| rows_of(r, ALL.epoch)).collect();
    let best = best_lr(&aggregate(&rows, &ALL).unwrap()).unwrap();
    let figs = figures::all(&[], &best, &[], &[], &ALL).unwrap();
    let fig2 = figs
        .figures
        .iter()
        .find(|f| f.name.starts_with("fig2_train_size"))
        .unwrap_or_else(|| panic!("no Fig. 2: {:?}", figs.skipped));
    for s in [
        "SQuAD · exact match",
        "SQuAD · F1",
        "dev exact match ×100",
        "dev F1 ×100",
    ] {
        assert!(fig2.svg.contains(s), "Fig. 2 (SQuAD) lacks {s}");
    }
    // the F1 panel plots the F1 means: Full-FT at 1,000 examples = (60 + 61) / 2
    let cell = best
        .iter()
        .find(|(k, _)| k.method == "full_ft" && k.train_size == 1000)
        .unwrap()
        .1;
    assert!((cell.secondary["f1"] - 60.5).abs() < 1e-9);
    assert!((cell.secondary_std["f1"] - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-9);
}

#[test]
fn parameters_vs_score_plots_one_point_per_method() {
    // three methods on two tasks at one size: each point averages both tasks
    let mut results = Vec::new();
    for (method, share, acc) in [
        ("full_ft", 1.0, 0.80),
        ("bitfit", 0.001, 0.78),
        ("frozen", 0.00003, 0.60),
    ] {
        for task in ["RTE", "MRPC"] {
            for seed in 0..2u64 {
                let mut r = result(
                    method,
                    seed,
                    Some(500),
                    1e-3,
                    0.9,
                    &[acc + seed as f64 * 0.02],
                );
                r.config.task = task.parse().unwrap();
                r.trainable_share = share;
                if task == "MRPC" {
                    r.headline = "f1".into();
                    let s: BTreeMap<String, f64> = [("f1".to_string(), acc + 0.1)].into();
                    r.epochs[0].dev = [("dev".to_string(), s)].into();
                }
                results.push(r);
            }
        }
    }
    // the block's figure from the records
    let figure = |results: &[RunResult]| {
        let rows: Vec<RunRow> = results.iter().flat_map(|r| rows_of(r, ALL.epoch)).collect();
        let best = best_lr(&aggregate(&rows, &ALL).unwrap()).unwrap();
        let figs = figures::all(&[], &best, &[], &[], &ALL).unwrap();
        let names: Vec<String> = figs.figures.iter().map(|f| f.name.clone()).collect();
        figs.figures
            .into_iter()
            .find(|f| f.name == "params_vs_score_mini_500")
            .unwrap_or_else(|| panic!("{names:?}"))
    };
    let fig = figure(&results);
    // Full-FT: (RTE (80 + 82) / 2 + MRPC F1 90) / 2 = 85.5; BitFit 83.5; Frozen 65.5
    for s in [
        "Full-FT (85.5)",
        "BitFit (83.5)",
        "Frozen (65.5)",
        "averaged over MRPC, RTE",
        "log scale",
    ] {
        assert!(fig.svg.contains(s), "params figure lacks {s}");
    }
    let (w, h, _) = decode_png(&fig.png);
    assert_eq!((w, h), fig.size);
    // a fourth method on RTE only: the block's points then average the one task all share
    let mut r = result("b_q", 0, Some(500), 1e-3, 0.9, &[0.7]);
    r.trainable_share = 0.0001;
    results.push(r);
    let fig = figure(&results);
    for s in ["Full-FT (81.0)", "averaged over RTE (", "(70.0)"] {
        assert!(fig.svg.contains(s), "params figure lacks {s}");
    }
}
