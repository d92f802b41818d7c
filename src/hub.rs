//! Where models and GLUE parquet files come from: a plain folder, the Hugging Face hub cache
//! (`~/.cache/huggingface/hub` layout), or a fetch of a hub repository into that cache.
//!
//! The cache layout (what `huggingface_hub` writes):
//! `<cache>/models--<org>--<name>/refs/main` holds a commit hash, and
//! `<cache>/models--<org>--<name>/snapshots/<hash>/` the files; datasets use `datasets--` instead.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The embedded default model (`scripts/fetch_minilm.sh` puts it there): the default of the
/// `model` setting and of the commands that take a model.
pub const DEFAULT_MODEL: &str = "models/all-MiniLM-L6-v2";
/// The GLUE folder beside the repository: the default of the `data` setting.
pub const DEFAULT_DATA: &str = "../shared/data/glue";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepoKind {
    Model,
    Dataset,
}

impl RepoKind {
    pub fn prefix(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }
}

/// The hub cache folder: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    dirs::home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cache")
        .join("huggingface")
        .join("hub")
}

/// `models--org--name` for `org/name` (and `models--name` for a bare name such as `bert-base-cased`).
pub fn cache_repo_folder(kind: RepoKind, repo_id: &str) -> String {
    format!("{}--{}", kind.prefix(), repo_id.replace('/', "--"))
}

/// The snapshot folder of `repo_id` in the cache at `cache`, for `revision` (a ref such as
/// `main`, or a commit hash). Falls back to the only snapshot when the ref file is absent.
pub fn cached_snapshot(
    cache: &Path,
    kind: RepoKind,
    repo_id: &str,
    revision: &str,
) -> Result<PathBuf> {
    let repo = cache.join(cache_repo_folder(kind, repo_id));
    let snaps = repo.join("snapshots");
    if !snaps.is_dir() {
        bail!(
            "{repo_id} is not in the Hugging Face cache ({} does not exist); fetch it with `repro fetch {repo_id}` \
             on a machine with internet, or pass a model folder",
            snaps.display()
        );
    }
    let ref_file = repo.join("refs").join(revision);
    let commit = if ref_file.is_file() {
        std::fs::read_to_string(&ref_file)?.trim().to_string()
    } else if snaps.join(revision).is_dir() {
        revision.to_string()
    } else {
        let all: Vec<_> = std::fs::read_dir(&snaps)?
            .flatten()
            .filter(|e| e.path().is_dir())
            .collect();
        match all.as_slice() {
            [one] => one.file_name().to_string_lossy().into_owned(),
            _ => bail!(
                "{repo_id}: no ref `{revision}` in {} and {} snapshots to choose from; pass a commit hash as revision",
                repo.join("refs").display(),
                all.len()
            ),
        }
    };
    let dir = snaps.join(&commit);
    if !dir.is_dir() {
        bail!(
            "{repo_id}: ref `{revision}` points at {commit}, but {} is missing",
            dir.display()
        );
    }
    Ok(dir)
}

/// Resolve what the user typed as a model: an existing folder with `config.json`, or a hub id
/// (`bert-base-cased`, `org/name`, optionally `@revision`) found in the hub cache.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let p = Path::new(spec);
    if p.is_dir() {
        if !p.join("config.json").is_file() {
            bail!(
                "{}: not a model folder (no config.json); expected an HF model folder",
                p.display()
            );
        }
        return Ok(p.to_path_buf());
    }
    if spec.starts_with('.') || spec.starts_with('/') || spec.matches('/').count() > 1 {
        bail!(
            "model folder {spec} does not exist; run scripts/fetch_minilm.sh or pass an HF model folder"
        );
    }
    let (id, rev) = spec.split_once('@').unwrap_or((spec, "main"));
    cached_snapshot(&hub_cache_dir(), RepoKind::Model, id, rev).with_context(|| {
        format!("model `{spec}` is neither a folder nor in the Hugging Face cache")
    })
}

/// Resolve a GLUE data root: a folder, or `hf:nyu-mll/glue` (any dataset id) from the hub cache.
pub fn resolve_data(spec: &str) -> Result<PathBuf> {
    if let Some(id) = spec.strip_prefix("hf:") {
        let (id, rev) = id.split_once('@').unwrap_or((id, "main"));
        return cached_snapshot(&hub_cache_dir(), RepoKind::Dataset, id, rev);
    }
    let p = Path::new(spec);
    if !p.is_dir() {
        bail!(
            "data folder {} does not exist; pass --data with a GLUE folder (TSV layout) or hf:nyu-mll/glue after `repro fetch --dataset nyu-mll/glue`",
            p.display()
        );
    }
    Ok(p.to_path_buf())
}

// ---------------------------------------------------------------------------------------------
// fetching into the cache (needs internet; tested offline against a loopback server)

/// `$HF_ENDPOINT` or the public hub.
pub fn hub_endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .unwrap_or_else(|_| "https://huggingface.co".into())
        .trim_end_matches('/')
        .to_string()
}

/// The files a BERT model needs (the rest of a hub repo — other frameworks' weights — is skipped).
pub const MODEL_FILES: [&str; 7] = [
    "config.json",
    "model.safetensors",
    "pytorch_model.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
];

/// `repro fetch`'s choice of files: a model's [`MODEL_FILES`]; a dataset's parquet files, of
/// the comma-separated configs only (`--configs rte,mrpc`) when given.
pub fn wanted(kind: RepoKind, configs: Option<&str>) -> impl Fn(&str) -> bool {
    let folders: Option<Vec<String>> =
        configs.map(|c| c.split(',').map(|x| format!("{}/", x.trim())).collect());
    move |f: &str| match kind {
        RepoKind::Model => MODEL_FILES.contains(&f),
        RepoKind::Dataset => {
            f.ends_with(".parquet")
                && folders
                    .as_ref()
                    .is_none_or(|c| c.iter().any(|p| f.starts_with(p.as_str())))
        }
    }
}

#[derive(serde::Deserialize)]
struct RepoInfo {
    sha: String,
    siblings: Vec<Sibling>,
}

#[derive(serde::Deserialize)]
struct Sibling {
    rfilename: String,
}

/// Download the files of `repo_id` at `revision` that `want` selects into the hub cache at
/// `cache`, in huggingface_hub's layout (blobs named by ETag, snapshot symlinks, refs), so that
/// Python tools and this harness share it. Returns the snapshot folder.
pub fn fetch(
    cache: &Path,
    endpoint: &str,
    kind: RepoKind,
    repo_id: &str,
    revision: &str,
    want: &dyn Fn(&str) -> bool,
) -> Result<PathBuf> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(fetch_async(cache, endpoint, kind, repo_id, revision, want))
}

async fn fetch_async(
    cache: &Path,
    endpoint: &str,
    kind: RepoKind,
    repo_id: &str,
    revision: &str,
    want: &dyn Fn(&str) -> bool,
) -> Result<PathBuf> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("bitfit-repro/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let auth = |r: reqwest::RequestBuilder| match std::env::var("HF_TOKEN") {
        Ok(t) if !t.is_empty() => r.bearer_auth(t),
        _ => r,
    };
    let api = format!(
        "{endpoint}/api/{}/{repo_id}/revision/{revision}",
        kind.prefix()
    );
    let info: RepoInfo = auth(client.get(&api))
        .send()
        .await
        .with_context(|| format!("GET {api}"))?
        .error_for_status()
        .with_context(|| {
            format!(
                "GET {api}: is `{repo_id}` a {} id on the hub?",
                kind.prefix().trim_end_matches('s')
            )
        })?
        .json()
        .await
        .with_context(|| format!("GET {api}: unexpected answer"))?;
    let mut files: Vec<String> = info
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .filter(|f| want(f))
        .collect();
    if files.iter().any(|f| f == "model.safetensors") {
        files.retain(|f| f != "pytorch_model.bin"); // one weights file is enough
    }
    if files.is_empty() {
        bail!("{repo_id}@{revision}: none of its files are wanted here");
    }
    let repo = cache.join(cache_repo_folder(kind, repo_id));
    let snapshot = repo.join("snapshots").join(&info.sha);
    let url_prefix = match kind {
        RepoKind::Model => format!("{endpoint}/{repo_id}/resolve/{}", info.sha),
        RepoKind::Dataset => format!("{endpoint}/datasets/{repo_id}/resolve/{}", info.sha),
    };
    for f in &files {
        let link = snapshot.join(f);
        if link.exists() {
            continue; // already in the cache
        }
        let url = format!("{url_prefix}/{f}");
        let resp = auth(client.get(&url))
            .send()
            .await
            .with_context(|| format!("GET {url}"))?
            .error_for_status()?;
        let etag = resp
            .headers()
            .get("x-linked-etag")
            .or_else(|| resp.headers().get("etag"))
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim_start_matches("W/").trim_matches('"').to_string())
            .unwrap_or_else(|| format!("{}-{}", info.sha, f.replace('/', "-")));
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("downloading {url}"))?;
        let blob = repo.join("blobs").join(&etag);
        crate::store::write_atomic(&blob, &bytes)?;
        std::fs::create_dir_all(link.parent().expect("file in snapshot"))?;
        let depth = f.matches('/').count() + 2;
        let rel: PathBuf = std::iter::repeat_n("..", depth)
            .collect::<PathBuf>()
            .join("blobs")
            .join(&etag);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&rel, &link)
            .with_context(|| format!("linking {}", link.display()))?;
        #[cfg(not(unix))]
        std::fs::copy(&blob, &link).map(|_| ())?;
    }
    crate::store::write_atomic(&repo.join("refs").join(revision), info.sha.as_bytes())?;
    Ok(snapshot)
}
