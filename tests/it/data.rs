//! GLUE readers: every task in ../shared/data/glue against the row counts and label
//! distributions of its README; the HF parquet layout and hub-cache resolution on files made here.
use bitfit_repro::data::{Glue, Label, Split, Task, label_counts};
use bitfit_repro::hub::{RepoKind, cache_repo_folder, cached_snapshot};

use crate::common::shared_data;

fn glue() -> Glue {
    Glue::new(shared_data().join("glue"))
}

/// (task, split, rows, label counts in Task::labels order; empty = regression/unlabelled)
const EXPECTED: &[(Task, Split, usize, &[usize])] = &[
    (Task::CoLA, Split::Train, 8551, &[2528, 6023]),
    (Task::CoLA, Split::Dev, 1043, &[322, 721]),
    (Task::CoLA, Split::Test, 1063, &[]),
    (Task::Sst2, Split::Train, 67349, &[29780, 37569]),
    (Task::Sst2, Split::Dev, 872, &[428, 444]),
    (Task::Sst2, Split::Test, 1821, &[]),
    (Task::Mrpc, Split::Train, 3668, &[1194, 2474]),
    (Task::Mrpc, Split::Dev, 408, &[129, 279]),
    (Task::Mrpc, Split::Test, 1725, &[]),
    (Task::StsB, Split::Train, 5749, &[]),
    (Task::StsB, Split::Dev, 1500, &[]),
    (Task::StsB, Split::Test, 1379, &[]),
    (Task::Rte, Split::Train, 2490, &[1249, 1241]),
    (Task::Rte, Split::Dev, 277, &[146, 131]),
    (Task::Rte, Split::Test, 3000, &[]),
    (Task::Wnli, Split::Train, 635, &[323, 312]),
    (Task::Wnli, Split::Dev, 71, &[40, 31]),
    (Task::Wnli, Split::Test, 146, &[]),
    (Task::Qnli, Split::Dev, 5463, &[2702, 2761]),
    (Task::Qnli, Split::Test, 5463, &[]),
    (Task::Ax, Split::Test, 1104, &[]),
];

#[test]
fn every_glue_tsv_has_the_readme_counts() {
    let g = glue();
    for &(task, split, rows, labels) in EXPECTED {
        let ex = g
            .load(task, split)
            .unwrap_or_else(|e| panic!("{task} {split}: {e:#}"));
        assert_eq!(ex.len(), rows, "{task} {split} rows");
        if !labels.is_empty() {
            assert_eq!(label_counts(task, &ex), labels, "{task} {split} labels");
        }
        let labelled = ex.iter().filter(|e| e.label != Label::None).count();
        let want_labelled = if split == Split::Test { 0 } else { rows };
        assert_eq!(labelled, want_labelled, "{task} {split} labelled rows");
        assert!(
            ex.iter().all(|e| !e.text_a.is_empty()),
            "{task} {split}: empty text"
        );
        assert_eq!(ex[0].text_b.is_some(), task.is_pair(), "{task} pairs");
    }
}

/// `repro data`'s listing: every split found, with the README's rows and label counts, test
/// splits unlabelled, regression as scores; `repro fetch`'s file choice per repo kind.
#[test]
fn data_listing_and_fetch_file_choice() {
    let l = bitfit_repro::data::listing(&glue(), &[Task::Rte, Task::StsB, Task::Qnli]).unwrap();
    let row = |t: Task, sp: Split| {
        l.iter()
            .find(|x| x.task == t && x.split == sp)
            .unwrap_or_else(|| panic!("{t} {sp} not listed"))
    };
    assert_eq!(l.len(), 3 + 3 + 2, "QNLI has no train split here");
    assert_eq!(row(Task::Rte, Split::Train).rows, 2490);
    assert_eq!(
        row(Task::Rte, Split::Dev).labels,
        "entailment:146 not_entailment:131"
    );
    assert_eq!(row(Task::Rte, Split::Test).labels, "(unlabelled)");
    assert_eq!(row(Task::StsB, Split::Dev).labels, "(scores)");
    assert!(row(Task::Qnli, Split::Dev).file.is_file());

    use bitfit_repro::hub::wanted;
    let model = wanted(RepoKind::Model, None);
    assert!(model("config.json") && model("model.safetensors") && !model("tf_model.h5"));
    let all = wanted(RepoKind::Dataset, None);
    assert!(all("rte/train-00000-of-00001.parquet") && !all("README.md"));
    let some = wanted(RepoKind::Dataset, Some("rte, mrpc"));
    assert!(some("rte/train-00000-of-00001.parquet") && some("mrpc/test-0.parquet"));
    assert!(!some("rte_extra/x.parquet") && !some("cola/train-0.parquet"));
}

#[test]
fn stsb_scores_and_quirky_rows_parse() {
    let g = glue();
    let ex = g.load(Task::StsB, Split::Dev).unwrap();
    let scores: Vec<f32> = ex
        .iter()
        .map(|e| match e.label {
            Label::Score(s) => s,
            _ => panic!(),
        })
        .collect();
    assert!(scores.iter().all(|s| (0.0..=5.0).contains(s)));
    assert_eq!(ex[0].text_a, "A man with a hard hat is dancing.");
    // MRPC: the BOM must not hide the `Quality` column; CoLA: no header, sentence in column 4
    let m = g.load(Task::Mrpc, Split::Dev).unwrap();
    assert!(m[0].text_b.is_some());
    let c = g.load(Task::CoLA, Split::Dev).unwrap();
    assert_eq!(
        c[0].text_a,
        "The sailors rode the breeze clear of the rocks."
    );
    assert_eq!(c[0].label, Label::Class(1));
    // quoting off: bare quotes stay in the text
    let r = g.load(Task::Rte, Split::Train).unwrap();
    assert_eq!(r.len(), 2490);
    assert!(
        r.iter()
            .any(|e| e.text_a.contains('"') || e.text_b.as_deref().unwrap_or("").contains('"'))
    );
}

#[test]
fn missing_tasks_name_the_path_and_the_fix() {
    let e = glue()
        .load(Task::Mnli, Split::Train)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("MNLI/train.tsv") && e.contains("mnli/train-") && e.contains("download"),
        "{e}"
    );
    let e = glue().load(Task::Qqp, Split::Dev).unwrap_err().to_string();
    assert!(e.contains("QQP/dev.tsv"), "{e}");
    assert!(
        "XNLI"
            .parse::<Task>()
            .unwrap_err()
            .to_string()
            .contains("valid tasks")
    );
    assert_eq!("sst2".parse::<Task>().unwrap(), Task::Sst2);
    assert_eq!("STS-B".parse::<Task>().unwrap(), Task::StsB);
}

fn write_parquet(path: &std::path::Path, mut df: polars::prelude::DataFrame) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(path).unwrap();
    polars::prelude::ParquetWriter::new(f)
        .finish(&mut df)
        .unwrap();
}

#[test]
fn hf_parquet_layout_from_the_hub_cache() {
    use polars::prelude::*;
    let cache = tempfile::tempdir().unwrap();
    let repo = cache
        .path()
        .join(cache_repo_folder(RepoKind::Dataset, "nyu-mll/glue"));
    assert!(repo.ends_with("datasets--nyu-mll--glue"));
    let snap = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd\n").unwrap();
    // HF MNLI ClassLabel order is entailment, neutral, contradiction; the GLUE TSV order is
    // contradiction, entailment, neutral. Test rows carry -1.
    let mnli = df!(
        "premise" => ["p0", "p1", "p2", "p3"],
        "hypothesis" => ["h0", "h1", "h2", "h3"],
        "label" => [0i64, 1, 2, -1],
        "idx" => [0i32, 1, 2, 3],
    )
    .unwrap();
    write_parquet(
        &snap.join("mnli/validation_matched-00000-of-00001.parquet"),
        mnli,
    );
    let stsb =
        df!("sentence1" => ["a"], "sentence2" => ["b"], "label" => [3.8f32], "idx" => [0i32])
            .unwrap();
    write_parquet(&snap.join("stsb/validation-00000-of-00001.parquet"), stsb);
    let sst = df!("sentence" => ["good", "bad"], "label" => [1i64, 0], "idx" => [0i32, 1]).unwrap();
    write_parquet(&snap.join("sst2/train-00000-of-00002.parquet"), sst.clone());
    write_parquet(&snap.join("sst2/train-00001-of-00002.parquet"), sst);

    let root = cached_snapshot(cache.path(), RepoKind::Dataset, "nyu-mll/glue", "main").unwrap();
    assert_eq!(root, snap);
    let g = Glue::new(root);
    let ex = g.load(Task::Mnli, Split::Dev).unwrap();
    let labels: Vec<Label> = ex.iter().map(|e| e.label).collect();
    let names = Task::Mnli.labels();
    assert_eq!(names[1], "entailment");
    assert_eq!(
        labels,
        vec![
            Label::Class(1),
            Label::Class(2),
            Label::Class(0),
            Label::None
        ]
    );
    assert_eq!(ex[2].text_a, "p2");
    assert_eq!(ex[2].text_b.as_deref(), Some("h2"));
    let s = g.load(Task::StsB, Split::Dev).unwrap();
    assert_eq!(s[0].label, Label::Score(3.8));
    let t = g.load(Task::Sst2, Split::Train).unwrap();
    assert_eq!(t.len(), 4, "both shards read");
    assert_eq!(t[0].label, Label::Class(1));
    // a wrong column is named
    let bad = df!("text" => ["x"], "label" => [0i64]).unwrap();
    write_parquet(&snap.join("rte/validation-00000-of-00001.parquet"), bad);
    let e = format!("{:#}", g.load(Task::Rte, Split::Dev).unwrap_err());
    assert!(e.contains("no column `sentence1`"), "{e}");
}

#[test]
fn model_cache_resolution_follows_refs() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--bert-base-cased");
    for h in ["aaa", "bbb"] {
        std::fs::create_dir_all(repo.join("snapshots").join(h)).unwrap();
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "bbb").unwrap();
    let d = cached_snapshot(cache.path(), RepoKind::Model, "bert-base-cased", "main").unwrap();
    assert!(d.ends_with("snapshots/bbb"));
    let d = cached_snapshot(cache.path(), RepoKind::Model, "bert-base-cased", "aaa").unwrap();
    assert!(d.ends_with("snapshots/aaa"));
    let e = cached_snapshot(cache.path(), RepoKind::Model, "bert-base-cased", "v2")
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 snapshots"), "{e}");
    let e = cached_snapshot(cache.path(), RepoKind::Model, "roberta-base", "main")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not in the Hugging Face cache"), "{e}");
}

/// `repro fetch`'s download code against a loopback server that speaks the hub's API: the cache
/// it writes (blobs, snapshot links, refs) is what the resolver and the loaders read.
#[test]
fn fetch_writes_the_hub_cache_layout() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let sha = "5a5e";
    let config = std::fs::read(crate::common::fixtures().join("tiny_bert/config.json")).unwrap();
    let weights =
        std::fs::read(crate::common::fixtures().join("tiny_bert/model.safetensors")).unwrap();
    let api = format!(
        r#"{{"sha":"{sha}","siblings":[{{"rfilename":"config.json"}},{{"rfilename":"model.safetensors"}},{{"rfilename":"pytorch_model.bin"}},{{"rfilename":"tf_model.h5"}}]}}"#
    );
    let server = std::thread::spawn(move || {
        let mut served = Vec::new();
        for stream in listener.incoming().take(3) {
            let mut stream = stream.unwrap();
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            reader.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap().to_string();
            let (body, etag): (Vec<u8>, &str) = match path.as_str() {
                "/api/models/org/tiny/revision/main" => (api.clone().into_bytes(), "api"),
                p if p == format!("/org/tiny/resolve/{sha}/config.json") => {
                    (config.clone(), "etag-config")
                }
                p if p == format!("/org/tiny/resolve/{sha}/model.safetensors") => {
                    (weights.clone(), "etag-weights")
                }
                _ => (b"not found".to_vec(), ""),
            };
            let status = if etag.is_empty() {
                "404 Not Found"
            } else {
                "200 OK"
            };
            write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: \"{etag}\"\r\nConnection: close\r\n\r\n", body.len()).unwrap();
            stream.write_all(&body).unwrap();
            served.push(path);
        }
        served
    });
    let cache = tempfile::tempdir().unwrap();
    let snap = bitfit_repro::hub::fetch(
        cache.path(),
        &endpoint,
        RepoKind::Model,
        "org/tiny",
        "main",
        &bitfit_repro::hub::wanted(RepoKind::Model, None),
    )
    .unwrap();
    let served = server.join().unwrap();
    assert_eq!(
        served.len(),
        3,
        "api + 2 files (pytorch_model.bin skipped: safetensors present; tf_model.h5 not wanted)"
    );
    let repo = cache.path().join("models--org--tiny");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        sha
    );
    assert!(repo.join("blobs/etag-weights").is_file());
    assert!(
        std::fs::symlink_metadata(snap.join("model.safetensors"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // the resolver finds it, and the model loads from it
    let found = cached_snapshot(cache.path(), RepoKind::Model, "org/tiny", "main").unwrap();
    assert_eq!(found, snap);
    let dev = bitfit_repro::backend::Backend::Ndarray.device().unwrap();
    let (_, report) = bitfit_repro::model::Checkpoint::open(&found)
        .unwrap()
        .load(&dev)
        .unwrap();
    assert!(report.applied > 0);
}
