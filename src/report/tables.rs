//! Tables 1-, 2- and 3-shaped (methods × GLUE tasks) in Markdown, LaTeX (booktabs) and CSV, each
//! block printed beside the paper's rows with ours − paper and the paper's confidence tag.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;

use super::{BestCells, Cell, PAPER_TASKS, Rules, Setting, avg_of, method_label};
use crate::finetune::method::PAPER_METHODS;

/// One row of a paper CSV in `paper_tables/reference/`.
#[derive(Clone, Debug, PartialEq)]
pub struct PaperRow {
    /// the CSV's `split` (Table 1) or `model` (Table 2) column; empty for Table 3
    pub group: String,
    pub method: String,
    pub param_pct: Option<f64>,
    pub vals: BTreeMap<String, f64>,
    /// the paper's printed Avg.
    pub avg: Option<f64>,
    pub confidence: String,
}

/// Rows of a paper CSV that carry numbers (Table 1's training-size line is skipped).
pub fn paper_rows(csv: &str, group_col: Option<&str>) -> Vec<PaperRow> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let idx = |n: &str| header.iter().position(|h| *h == n);
    let mut out = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let get = |n: &str| idx(n).and_then(|i| f.get(i)).copied().unwrap_or("");
        let vals: BTreeMap<String, f64> = PAPER_TASKS
            .iter()
            .filter_map(|t| get(t).parse::<f64>().ok().map(|v| (t.to_string(), v)))
            .collect();
        if get("method").is_empty() || vals.is_empty() {
            continue;
        }
        out.push(PaperRow {
            group: group_col.map_or(String::new(), |g| get(g).to_string()),
            method: get("method").to_string(),
            param_pct: get("param_pct").parse().ok(),
            vals,
            avg: get("avg").parse().ok(),
            confidence: get("confidence").to_string(),
        });
    }
    out
}

/// What one paper table shows and how our runs map onto it.
pub struct TableSpec {
    pub id: &'static str,
    pub title: &'static str,
    pub paper_csv: &'static str,
    /// the CSV column that splits its rows (dev/test, model)
    pub group_col: Option<&'static str>,
    /// our rows, in the paper's row order
    pub methods: TableRows,
    pub paper_protocol: &'static str,
}

/// One of our rows in a paper table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableRow {
    /// a method of [`PAPER_METHODS`], by its spelling; its label comes from there
    Method(&'static str),
    /// a method the paper compares with that this harness does not implement, by the paper's name
    NotImplemented(&'static str),
}

/// Our rows of a table, in the paper's row order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableRows {
    /// every method of [`PAPER_METHODS`], in its order (Table 3)
    PaperMethods,
    Listed(&'static [TableRow]),
}

impl TableRows {
    pub fn rows(&self) -> Vec<TableRow> {
        match self {
            TableRows::PaperMethods => PAPER_METHODS
                .iter()
                .map(|m| TableRow::Method(m.spelling))
                .collect(),
            TableRows::Listed(rows) => rows.to_vec(),
        }
    }

    /// The spellings of our methods among the rows, in order.
    pub fn methods(&self) -> Vec<&'static str> {
        self.rows()
            .into_iter()
            .filter_map(|r| match r {
                TableRow::Method(m) => Some(m),
                TableRow::NotImplemented(_) => None,
            })
            .collect()
    }
}

pub const TABLES: [TableSpec; 3] = [
    TableSpec {
        id: "table1",
        title: "Table 1 shape: Full-FT, Diff-Pruning, Adapters, BitFit (paper: BERT-large, GLUE dev and test)",
        paper_csv: include_str!("../../paper_tables/reference/table1_bert_large.csv"),
        group_col: Some("split"),
        methods: TableRows::Listed(&[
            TableRow::Method("full_ft"),
            TableRow::Method("diff_pruning:share=0.5%,finetune=3,finetune_lr=5e-5"),
            TableRow::Method("adapters:64"),
            TableRow::Method("bitfit"),
        ]),
        paper_protocol: "paper: BERT-large; dev rows = best of a learning-rate sweep; test rows = GLUE server \
                         (test labels are not public, so our test cells cannot be filled)",
    },
    TableSpec {
        id: "table2",
        title: "Table 2 shape: Full-FT vs BitFit per base model (paper: BERT-base, BERT-large, RoBERTa-base, GLUE dev)",
        paper_csv: include_str!("../../paper_tables/reference/table2_base_models.csv"),
        group_col: Some("model"),
        methods: TableRows::Listed(&[TableRow::Method("full_ft"), TableRow::Method("bitfit")]),
        paper_protocol: "paper: GLUE dev, best of a learning-rate sweep; ours − paper uses the paper model of our \
                         model's family (bert-base unless the name says large or roberta)",
    },
    TableSpec {
        id: "table3",
        title: "Table 3 shape: bias subsets and baselines (paper: BERT-base, GLUE dev)",
        paper_csv: include_str!("../../paper_tables/reference/table3_bias_subsets_bert_base.csv"),
        group_col: None,
        methods: TableRows::PaperMethods,
        paper_protocol: "paper: BERT-base, GLUE dev, best of a learning-rate sweep",
    },
];

pub const OUR_PROTOCOL: &str = "ours: headline dev metric ×100 (CoLA MCC, MRPC/QQP F1, STS-B Spearman, else accuracy) \
     at the best epoch, mean ±std over seeds (n = runs averaged); n/a = no run of that task";

/// The header line that names the rules a table was computed under.
pub fn rules_line(rules: &Rules) -> String {
    format!("Rules: {}", rules.describe())
}

/// The paper group our model is compared with.
fn comparison_group(spec: &TableSpec, model: &str) -> String {
    match spec.group_col {
        Some("split") => "dev".into(),
        Some("model") => {
            let m = model.to_lowercase();
            if m.contains("roberta") {
                "roberta-base".into()
            } else if m.contains("large") {
                "bert-large".into()
            } else {
                "bert-base".into()
            }
        }
        _ => String::new(),
    }
}

/// One rendered table in its three formats.
pub struct Rendered {
    pub markdown: String,
    pub latex: String,
    pub csv: String,
}

/// One method's cells in a table block: task → cell.
type TaskCells<'a> = BTreeMap<&'a str, &'a Cell>;

/// The paper's Avg. of our cells ([`super::paper_avg`]).
fn cells_avg(cells: &TaskCells) -> std::result::Result<f64, Vec<String>> {
    let means: BTreeMap<String, f64> = cells.iter().map(|(t, c)| (t.to_string(), c.mean)).collect();
    avg_of(&means)
}

/// One printed row of a table block, in every output format.
struct Row {
    /// `ours`, `paper` or `diff`
    kind: &'static str,
    label: String,
    /// the CSV's `method` and `group` columns
    method: String,
    group: String,
    pct: String,
    /// one cell per task of [`PAPER_TASKS`]
    md: Vec<String>,
    tex: Vec<String>,
    /// four CSV fields per task: value, std, n, degenerate runs
    csv: Vec<String>,
    /// Avg. as printed, and as the CSV's number (empty when there is none)
    avg: String,
    avg_csv: String,
    confidence: String,
    /// `task:metric=value;…` (our rows only)
    secondary: String,
}

impl Row {
    /// Our row of a method with the same word in every cell (`not run`, `not implemented`).
    fn marked(label: String, method: &str, word: &str) -> Row {
        let cells = vec![word.to_string(); PAPER_TASKS.len()];
        Row {
            kind: "ours",
            label,
            method: method.to_string(),
            group: String::new(),
            pct: String::new(),
            md: cells.clone(),
            tex: cells,
            csv: vec![String::new(); PAPER_TASKS.len() * CSV_PER_TASK],
            avg: word.to_string(),
            avg_csv: String::new(),
            confidence: String::new(),
            secondary: String::new(),
        }
    }

    fn ours(method: &str, paper_name: &str, cells: &TaskCells, rules: &Rules) -> Row {
        let pct: Vec<f64> = cells.values().map(|c| c.param_pct).collect();
        let (avg, avg_csv) = match cells_avg(cells) {
            Ok(a) => (format!("{a:.1}"), format!("{a:.1}")),
            Err(missing) => (format!("— (missing {})", missing.join(", ")), String::new()),
        };
        Row {
            kind: "ours",
            label: format!("ours: {paper_name} (`{method}`)"),
            method: method.to_string(),
            group: String::new(),
            pct: format!("{:.3}", pct.iter().sum::<f64>() / pct.len() as f64),
            md: PAPER_TASKS
                .iter()
                .map(|t| md_cell(cells.get(t).copied(), rules))
                .collect(),
            tex: PAPER_TASKS
                .iter()
                .map(|t| tex_cell(cells.get(t).copied()))
                .collect(),
            csv: PAPER_TASKS
                .iter()
                .flat_map(|t| {
                    let c = cells.get(t).copied();
                    [
                        opt(c.map(|c| c.mean)),
                        opt(c.map(|c| c.std)),
                        c.map_or(String::new(), |c| c.n.to_string()),
                        c.map_or(String::new(), |c| c.degenerate.to_string()),
                    ]
                })
                .collect(),
            avg,
            avg_csv,
            confidence: String::new(),
            secondary: cells
                .iter()
                .flat_map(|(t, c)| {
                    c.secondary
                        .iter()
                        .map(move |(m, v)| format!("{t}:{m}={v:.1}"))
                })
                .collect::<Vec<_>>()
                .join(";"),
        }
    }

    fn paper(r: &PaperRow) -> Row {
        let g = if r.group.is_empty() {
            String::new()
        } else {
            format!(" {}", r.group)
        };
        let cells: Vec<String> = PAPER_TASKS
            .iter()
            .map(|t| opt(r.vals.get(*t).copied()))
            .collect();
        let avg = r.avg.map_or(String::new(), |a| format!("{a:.1}"));
        Row {
            kind: "paper",
            label: format!("paper{g}: {} ({})", r.method, r.confidence),
            method: r.method.clone(),
            group: r.group.clone(),
            pct: r.param_pct.map_or(String::new(), |p| format!("{p}")),
            csv: cells
                .iter()
                .flat_map(|v| [v.clone(), String::new(), String::new(), String::new()])
                .collect(),
            md: cells.clone(),
            tex: cells,
            avg_csv: avg.clone(),
            avg,
            confidence: r.confidence.clone(),
            secondary: String::new(),
        }
    }

    /// Ours − paper per task, and of the two Avg. when both exist.
    fn diff(cells: &TaskCells, pr: &PaperRow) -> Row {
        let d: Vec<Option<f64>> = PAPER_TASKS
            .iter()
            .map(|t| {
                Some(cells.get(t).map(|c| c.mean).filter(|v| v.is_finite())? - pr.vals.get(*t)?)
            })
            .collect();
        let shown: Vec<String> = d
            .iter()
            .map(|d| d.map_or(String::new(), |d| format!("{d:+.1}")))
            .collect();
        let avg = match (cells_avg(cells), avg_of(&pr.vals)) {
            (Ok(a), Ok(b)) => Some(a - b),
            _ => None,
        };
        let g = if pr.group.is_empty() {
            String::new()
        } else {
            format!(" {}", pr.group)
        };
        Row {
            kind: "diff",
            label: format!("ours − paper{g}: {}", pr.method),
            method: pr.method.clone(),
            group: pr.group.clone(),
            pct: String::new(),
            md: shown.clone(),
            tex: shown,
            csv: d
                .iter()
                .flat_map(|d| {
                    [
                        d.map_or(String::new(), |d| format!("{d:.1}")),
                        String::new(),
                        String::new(),
                        String::new(),
                    ]
                })
                .collect(),
            avg: avg.map_or(String::new(), |a| format!("{a:+.1}")),
            avg_csv: avg.map_or(String::new(), |a| format!("{a:.1}")),
            confidence: pr.confidence.clone(),
            secondary: String::new(),
        }
    }
}

/// CSV fields per task column: value, std, n, degenerate runs.
const CSV_PER_TASK: usize = 4;

/// The run counts beside a cell: degenerate (`degen.`, or `degen. excl.` when left out of the
/// mean) and diverged runs.
fn counts(c: &Cell, rules: &Rules) -> String {
    let mut s = String::new();
    if c.degenerate > 0 {
        let excl = if rules.exclude_degenerate {
            " excl."
        } else {
            ""
        };
        let _ = write!(s, ", {} degen.{excl}", c.degenerate);
    }
    if c.diverged > 0 {
        let _ = write!(s, ", {} diverged", c.diverged);
    }
    s
}

fn md_cell(c: Option<&Cell>, rules: &Rules) -> String {
    match c {
        Some(c) if c.mean.is_finite() => {
            let std = if c.n > 1 {
                format!(" ±{:.1}", c.std)
            } else {
                String::new()
            };
            format!("{:.1}{std} (n={}{})", c.mean, c.n, counts(c, rules))
        }
        Some(c) => format!("— (n=0{})", counts(c, rules)),
        None => "n/a".into(),
    }
}

fn tex_escape(s: &str) -> String {
    s.replace('\\', "\\textbackslash{}")
        .replace('&', "\\&")
        .replace('%', "\\%")
        .replace('_', "\\_")
        .replace('#', "\\#")
}

fn tex_cell(c: Option<&Cell>) -> String {
    match c {
        Some(c) if c.mean.is_finite() && c.n > 1 => format!("{:.1}$\\pm${:.1}", c.mean, c.std),
        Some(c) if c.mean.is_finite() => format!("{:.1}", c.mean),
        Some(_) => "--".into(),
        None => "n/a".into(),
    }
}

/// A CSV field, quoted when it needs to be.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or(String::new(), |v| format!("{v:.1}"))
}

/// Render one table for every (model, protocol, train size) in the results that ran any of its
/// methods.
pub fn render(spec: &TableSpec, best: &BestCells, rules: &Rules) -> Result<Rendered> {
    let paper = paper_rows(spec.paper_csv, spec.group_col);
    let methods = spec.methods.methods();
    // one block per (setting, train size): method → task → cell
    let mut blocks: BTreeMap<(Setting, i64), BTreeMap<&str, TaskCells>> = BTreeMap::new();
    for (key, cell) in best {
        if methods.contains(&key.method.as_str()) {
            blocks
                .entry((key.setting(), key.train_size))
                .or_default()
                .entry(key.method.as_str())
                .or_default()
                .insert(key.task.as_str(), cell);
        }
    }
    let rules_line = rules_line(rules);
    let mut md = format!(
        "# {}\n\n{OUR_PROTOCOL}.\n{rules_line}.\n{}.\n\n",
        spec.title, spec.paper_protocol
    );
    let mut tex = format!(
        "% {} -- generated by `repro report`\n% {OUR_PROTOCOL}.\n% {rules_line}.\n% {}.\n",
        spec.title, spec.paper_protocol
    );
    let mut csv = String::from("table,model,protocol,train_size,row,group,method,param_pct");
    for t in PAPER_TASKS {
        let _ = write!(csv, ",{t},{t}_std,{t}_n,{t}_degen");
    }
    csv.push_str(",avg,confidence,secondary,rules\n");
    if blocks.is_empty() {
        md.push_str("No runs of this table's methods in the results.\n");
        tex.push_str("% no runs of this table's methods in the results\n");
    }
    for ((Setting { model, protocol }, size), ours) in &blocks {
        let size_s = super::size_label(*size);
        let group = comparison_group(spec, model);
        let mut rows = Vec::new();
        for row in spec.methods.rows() {
            rows.push(match row {
                TableRow::NotImplemented(p) => {
                    Row::marked(format!("ours: {p}"), p, "not implemented")
                }
                TableRow::Method(m) => {
                    let p = method_label(m);
                    match ours.get(m) {
                        None => Row::marked(format!("ours: {p} (`{m}`)"), m, "not run"),
                        Some(cells) => Row::ours(m, p, cells, rules),
                    }
                }
            });
        }
        rows.extend(paper.iter().map(Row::paper));
        for m in &methods {
            if let (Some(cells), Some(pr)) = (
                ours.get(m),
                paper
                    .iter()
                    .find(|r| r.method == method_label(m) && r.group == group),
            ) {
                rows.push(Row::diff(cells, pr));
            }
        }

        let _ = writeln!(md, "## {model} · train size {size_s} · {protocol}\n");
        let _ = writeln!(
            md,
            "| row | params % | {} | Avg. |",
            PAPER_TASKS.join(" | ")
        );
        let _ = writeln!(md, "|---|---|{}---|", "---|".repeat(PAPER_TASKS.len()));
        let _ = writeln!(
            tex,
            "\\begin{{table}}[t]\n\\centering\\small\n\\caption{{{} -- ours: {}, train size {}, {}; {}}}\n\\begin{{tabular}}{{ll{}r}}\n\\toprule\nRow & \\% params & {} & Avg. \\\\",
            tex_escape(spec.title),
            tex_escape(model),
            size_s,
            tex_escape(protocol),
            tex_escape(&rules.short()),
            "r".repeat(PAPER_TASKS.len()),
            PAPER_TASKS
                .iter()
                .map(|t| tex_escape(t))
                .collect::<Vec<_>>()
                .join(" & ")
        );
        let mut last_kind = "";
        for row in &rows {
            if row.kind != last_kind {
                tex.push_str("\\midrule\n"); // under the header and between ours / paper / diff
            }
            last_kind = row.kind;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                row.label,
                row.pct,
                row.md.join(" | "),
                row.avg
            );
            let _ = writeln!(
                tex,
                "{} & {} & {} & {} \\\\",
                tex_escape(&row.label.replace('`', "")),
                tex_escape(&row.pct),
                row.tex
                    .iter()
                    .map(|v| if v.contains('$') {
                        v.clone()
                    } else {
                        tex_escape(v)
                    })
                    .collect::<Vec<_>>()
                    .join(" & "),
                tex_escape(&row.avg)
            );
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{},{},{},{},{}",
                spec.id,
                csv_field(model),
                csv_field(protocol),
                size,
                row.kind,
                csv_field(&row.group),
                csv_field(&row.method),
                row.pct,
                row.csv
                    .iter()
                    .map(|v| csv_field(v))
                    .collect::<Vec<_>>()
                    .join(","),
                row.avg_csv,
                csv_field(&row.confidence),
                csv_field(&row.secondary),
                csv_field(&rules.short())
            );
        }
        let _ = writeln!(md);
        tex.push_str("\\bottomrule\n\\end{tabular}\n\\end{table}\n\n");
    }
    Ok(Rendered {
        markdown: md,
        latex: tex,
        csv,
    })
}
