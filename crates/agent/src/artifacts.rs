//! What a task changed: snapshots of the workspace (path → size and
//! SHA-256) taken before and after, and the difference between them.

use crate::workspace::Workspace;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub size_bytes: u64,
    pub sha256: String,
}

/// Every regular file of a workspace, by relative path. Symlinks are not
/// followed (and not listed).
pub type Snapshot = BTreeMap<String, FileState>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    pub path: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub change: Change,
}

fn hash_file(path: &std::path::Path) -> std::io::Result<FileState> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok(FileState {
        size_bytes: size,
        sha256: hex::encode(hasher.finalize()),
    })
}

pub fn snapshot(ws: &Workspace) -> Snapshot {
    let mut files = Snapshot::new();
    let walker = ignore::WalkBuilder::new(ws.root())
        .standard_filters(false)
        .follow_links(false)
        .build();
    for entry in walker.filter_map(Result::ok) {
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        if let Ok(state) = hash_file(entry.path()) {
            files.insert(ws.relative(entry.path()), state);
        }
    }
    files
}

/// Files added, modified or deleted between two snapshots, by path.
pub fn diff(before: &Snapshot, after: &Snapshot) -> Vec<Artifact> {
    let mut out = Vec::new();
    for (path, now) in after {
        let change = match before.get(path) {
            None => Some(Change::Added),
            Some(was) if was != now => Some(Change::Modified),
            Some(_) => None,
        };
        if let Some(change) = change {
            out.push(Artifact {
                path: path.clone(),
                size_bytes: now.size_bytes,
                sha256: now.sha256.clone(),
                change,
            });
        }
    }
    for (path, was) in before {
        if !after.contains_key(path) {
            out.push(Artifact {
                path: path.clone(),
                size_bytes: was.size_bytes,
                sha256: was.sha256.clone(),
                change: Change::Deleted,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_classified() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::create(dir.path()).unwrap();
        std::fs::write(ws.root().join("keep"), "same").unwrap();
        std::fs::write(ws.root().join("change"), "old").unwrap();
        std::fs::write(ws.root().join("gone"), "bye").unwrap();
        let before = snapshot(&ws);
        std::fs::write(ws.root().join("change"), "new!").unwrap();
        std::fs::remove_file(ws.root().join("gone")).unwrap();
        std::fs::create_dir(ws.root().join("d")).unwrap();
        std::fs::write(ws.root().join("d/new"), "hello").unwrap();
        let changes = diff(&before, &snapshot(&ws));
        let summary: Vec<(&str, Change, u64)> = changes
            .iter()
            .map(|a| (a.path.as_str(), a.change, a.size_bytes))
            .collect();
        assert_eq!(
            summary,
            [
                ("change", Change::Modified, 4),
                ("d/new", Change::Added, 5),
                ("gone", Change::Deleted, 3)
            ]
        );
        assert_eq!(changes[1].sha256, hex::encode(Sha256::digest(b"hello")));
    }
}
