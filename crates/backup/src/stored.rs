//! Backups as stored at a destination: their manifests, listed and read,
//! and archives fetched and checked against them.

use crate::destination::Target;
use crate::{files, BackupError, Progress, Result};
use std::path::{Path, PathBuf};
use switchyard_core::backup::{BackupId, Manifest};

pub(crate) async fn list(target: &Target) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for name in target.names().await? {
        let Some(id) = name
            .strip_suffix(".json")
            .and_then(|s| s.parse::<BackupId>().ok())
        else {
            continue;
        };
        match read_manifest(target, &id).await {
            Ok(m) => out.push(m),
            Err(e) => tracing::warn!(error = %e, backup = %id, "skipping an unreadable manifest"),
        }
    }
    out.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id))
    });
    Ok(out)
}

pub(crate) async fn read_manifest(target: &Target, id: &BackupId) -> Result<Manifest> {
    let bytes = target.get_bytes(&Manifest::file_name(id)).await?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| BackupError::Corrupt {
        id: id.to_string(),
        why: format!("its manifest does not parse: {e}"),
    })?;
    if &manifest.id != id || manifest.format != Manifest::FORMAT {
        return Err(BackupError::Corrupt {
            id: id.to_string(),
            why: format!(
                "its manifest names {} (format {}), not this backup in format {}",
                manifest.id,
                manifest.format,
                Manifest::FORMAT
            ),
        });
    }
    Ok(manifest)
}

/// Downloads the archive into `dir` and checks its size and SHA-256
/// against the manifest.
pub(crate) async fn fetch_checked(
    target: &Target,
    manifest: &Manifest,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    progress.phase(&format!("downloading {}", manifest.archive));
    let archive = dir.join(&manifest.archive);
    target
        .get_to_file(&manifest.archive, &archive, progress)
        .await?;
    progress.phase("checking the archive's SHA-256");
    let (size, sha) = files::sha256(&archive).await?;
    let corrupt = |why: String| BackupError::Corrupt {
        id: manifest.id.to_string(),
        why,
    };
    if size != manifest.size_bytes {
        return Err(corrupt(format!(
            "it is {size} bytes, the manifest says {} (truncated or replaced)",
            manifest.size_bytes
        )));
    }
    if sha != manifest.sha256 {
        return Err(corrupt(format!(
            "its SHA-256 is {sha}, the manifest says {}",
            manifest.sha256
        )));
    }
    Ok(archive)
}
