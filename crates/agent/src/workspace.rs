//! A task's workspace: one directory that every tool path is confined to.
//!
//! A path from the model is resolved lexically first (`.` dropped, `..`
//! popped; climbing above the root, or an absolute path elsewhere, is
//! refused), then checked against the file system: the deepest existing
//! ancestor is canonicalised (following symlinks) and must still lie inside
//! the root, so a symlink — however it got there — cannot lead out.

use std::path::{Component, Path, PathBuf};

/// What a tool tells the model when it cannot do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    #[error("refused: {0}")]
    Refused(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

impl ToolError {
    pub fn io(what: &str, e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => ToolError::NotFound(what.to_owned()),
            std::io::ErrorKind::PermissionDenied => {
                ToolError::Refused(format!("{what}: permission denied"))
            }
            _ => ToolError::Failed(format!("{what}: {e}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// Creates (if needed) and opens a workspace at `root`.
    pub fn create(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(Self {
            root: root.canonicalize()?,
        })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path relative to the root, for messages and artifact lists.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Resolves a path given by the model to a location inside the
    /// workspace, or refuses it.
    pub fn resolve(&self, raw: &str) -> Result<PathBuf, ToolError> {
        if raw.is_empty() {
            return Err(ToolError::Invalid("the path is empty".into()));
        }
        if raw.contains('\0') {
            return Err(ToolError::Invalid("the path contains a NUL byte".into()));
        }
        let given = Path::new(raw);
        let relative = if given.is_absolute() {
            given.strip_prefix(&self.root).map_err(|_| {
                ToolError::Refused(format!(
                    "`{raw}` is outside the workspace (paths are relative to it)"
                ))
            })?
        } else {
            given
        };
        let mut clean = PathBuf::new();
        for part in relative.components() {
            match part {
                Component::Normal(p) => clean.push(p),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !clean.pop() {
                        return Err(ToolError::Refused(format!(
                            "`{raw}` leads outside the workspace"
                        )));
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(ToolError::Refused(format!(
                        "`{raw}` is not a workspace path"
                    )));
                }
            }
        }
        let candidate = self.root.join(&clean);
        // The deepest part of the path that exists, resolved through any
        // symlinks, must still be inside the root.
        let mut existing = candidate.as_path();
        let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
        loop {
            if existing.symlink_metadata().is_ok() {
                break;
            }
            match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name);
                    existing = parent;
                }
                _ => break,
            }
        }
        let real = existing
            .canonicalize()
            .map_err(|e| ToolError::io(raw, &e))?;
        if !real.starts_with(&self.root) {
            return Err(ToolError::Refused(format!(
                "`{raw}` resolves outside the workspace (through a symlink)"
            )));
        }
        let mut resolved = real;
        for name in rest.iter().rev() {
            resolved.push(name);
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::create(&dir.path().join("ws")).unwrap();
        let root = ws.root().to_path_buf();
        assert_eq!(ws.resolve("a/b.txt").unwrap(), root.join("a/b.txt"));
        assert_eq!(ws.resolve("./a/../c").unwrap(), root.join("c"));
        assert_eq!(
            ws.resolve(root.join("x").to_str().unwrap()).unwrap(),
            root.join("x")
        );
        for bad in ["../x", "a/../../x", "/etc/passwd", "", "a\0b"] {
            assert!(ws.resolve(bad).is_err(), "{bad:?}");
        }
        // A symlink planted inside cannot lead out, for reads or writes.
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        assert!(matches!(
            ws.resolve("etc-link/passwd"),
            Err(ToolError::Refused(_))
        ));
        assert!(matches!(
            ws.resolve("etc-link/new-file"),
            Err(ToolError::Refused(_))
        ));
        assert!(matches!(ws.resolve("etc-link"), Err(ToolError::Refused(_))));
        // A symlink that stays inside is fine.
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("alias")).unwrap();
        assert_eq!(ws.resolve("alias/f").unwrap(), root.join("real/f"));
        assert_eq!(ws.relative(&root.join("real/f")), "real/f");
    }
}
