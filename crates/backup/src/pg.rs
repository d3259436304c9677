//! PostgreSQL's own tools, `pg_dump` and `pg_restore`: found (on PATH or in
//! `PG_BIN_DIR`), checked against the server's major version, and run with
//! arguments (never a shell) and the password in the environment rather
//! than on the command line.

use crate::{BackupError, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// A PostgreSQL client tool and its major version.
#[derive(Debug, Clone)]
pub struct PgTool {
    pub path: PathBuf,
    pub major: u32,
    /// What `--version` printed, e.g. `pg_dump (PostgreSQL) 15.19`.
    pub version: String,
}

/// The major version in `pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)`.
pub fn major_of(version: &str) -> Option<u32> {
    let after = version.split(')').nth(1).unwrap_or(version);
    let number = after.split_whitespace().next()?;
    number.split('.').next()?.parse().ok()
}

fn install_hint() -> &'static str {
    "install the PostgreSQL client of the server's major version or newer (Debian: \
     postgresql-client-NN; the container image carries it), or set PG_BIN_DIR to its directory"
}

/// Finds `name` in `bin_dir`, else on PATH, and reads its version.
pub async fn find(name: &str, bin_dir: Option<&Path>) -> Result<PgTool> {
    let path = match bin_dir {
        Some(dir) => dir.join(name),
        None => std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(|| PathBuf::from(name)),
    };
    let out = tokio::process::Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            BackupError::Tool(format!(
                "cannot run {} ({e}): {}",
                path.display(),
                install_hint()
            ))
        })?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let major = major_of(&version).ok_or_else(|| {
        BackupError::Tool(format!(
            "{} --version said `{version}`, which names no PostgreSQL version",
            path.display()
        ))
    })?;
    Ok(PgTool {
        path,
        major,
        version,
    })
}

/// Fails unless `tool` can handle a server (or archive) of `major`.
pub fn require_at_least(tool: &PgTool, major: u32, what: &str) -> Result<()> {
    if tool.major < major {
        return Err(BackupError::Tool(format!(
            "{} is version {}, older than {what} (PostgreSQL {major}): {}",
            tool.path.display(),
            tool.major,
            install_hint()
        )));
    }
    Ok(())
}

/// A libpq connection URL without its password, and the password (passed
/// in `PGPASSWORD`, so that it never shows in the process list).
pub fn split_password(url: &str) -> Result<(String, Option<String>)> {
    let mut parsed = url::Url::parse(url)
        .map_err(|e| BackupError::Invalid(format!("the database URL does not parse: {e}")))?;
    let password = parsed.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    if password.is_some() {
        parsed
            .set_password(None)
            .map_err(|()| BackupError::Invalid("the database URL cannot hold a password".into()))?;
    }
    Ok((parsed.to_string(), password))
}

async fn run(tool: &PgTool, args: &[String], url: &str) -> Result<()> {
    let (dbname, password) = split_password(url)?;
    let mut cmd = tokio::process::Command::new(&tool.path);
    cmd.args(args)
        .arg(format!("--dbname={dbname}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| BackupError::Tool(format!("cannot run {}: {e}", tool.path.display())))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.trim();
        return Err(BackupError::Tool(format!(
            "{} failed ({}): {}",
            tool.path.file_name().map_or_else(
                || tool.path.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            ),
            out.status,
            if said.is_empty() {
                "it said nothing"
            } else {
                said
            }
        )));
    }
    Ok(())
}

/// `pg_dump` in custom format (compressed) of the snapshot `snapshot`.
pub async fn dump(tool: &PgTool, url: &str, snapshot: &str, out: &Path) -> Result<()> {
    let args = vec![
        "--format=custom".to_owned(),
        "--compress=6".to_owned(),
        "--no-owner".to_owned(),
        "--no-privileges".to_owned(),
        format!("--snapshot={snapshot}"),
        format!("--file={}", out.display()),
    ];
    run(tool, &args, url).await
}

/// `pg_restore` of a custom-format archive into `url`, in one transaction;
/// with `clean`, the archive's objects are dropped first.
pub async fn restore(tool: &PgTool, url: &str, archive: &Path, clean: bool) -> Result<()> {
    let mut args = vec![
        "--no-owner".to_owned(),
        "--no-privileges".to_owned(),
        "--exit-on-error".to_owned(),
        "--single-transaction".to_owned(),
    ];
    if clean {
        args.push("--clean".to_owned());
        args.push("--if-exists".to_owned());
    }
    args.push(archive.display().to_string());
    run(tool, &args, url).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_passwords_are_read() {
        assert_eq!(
            major_of("pg_dump (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(major_of("pg_restore (PostgreSQL) 17.2"), Some(17));
        assert_eq!(major_of("nonsense"), None);
        let (url, password) =
            split_password("postgres://app:s%40c+ret@db:5432/switchyard?sslmode=require").unwrap();
        assert_eq!(url, "postgres://app@db:5432/switchyard?sslmode=require");
        assert_eq!(password.as_deref(), Some("s@c+ret"));
        let (url, password) = split_password("postgres://postgres@127.0.0.1/x").unwrap();
        assert_eq!(url, "postgres://postgres@127.0.0.1/x");
        assert_eq!(password, None);
    }
}
