//! Archive files: compression and checksums, off the async threads.

use crate::{BackupError, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackupError::Invalid(format!("a file task failed: {e}")))?
}

/// The size and SHA-256 (hex) of a file.
pub async fn sha256(path: &Path) -> Result<(u64, String)> {
    let path = path.to_owned();
    blocking(move || {
        let mut f = std::fs::File::open(&path)?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1024 * 1024];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            size += n as u64;
        }
        Ok((size, hex::encode(hash.finalize())))
    })
    .await
}

/// Compresses `from` into `to` (gzip).
pub async fn gzip(from: &Path, to: &Path) -> Result<()> {
    let (from, to): (PathBuf, PathBuf) = (from.to_owned(), to.to_owned());
    blocking(move || {
        let mut input = std::io::BufReader::new(std::fs::File::open(&from)?);
        let output = std::io::BufWriter::new(std::fs::File::create(&to)?);
        let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::new(6));
        std::io::copy(&mut input, &mut encoder)?;
        encoder.finish()?.flush()?;
        Ok(())
    })
    .await
}

/// Decompresses `from` (gzip) into `to`; a damaged stream is an error that
/// says so.
pub async fn gunzip(from: &Path, to: &Path) -> Result<()> {
    let (from, to): (PathBuf, PathBuf) = (from.to_owned(), to.to_owned());
    blocking(move || {
        let input = std::io::BufReader::new(std::fs::File::open(&from)?);
        let mut decoder = flate2::read::GzDecoder::new(input);
        let mut output = std::io::BufWriter::new(std::fs::File::create(&to)?);
        std::io::copy(&mut decoder, &mut output).map_err(|e| {
            BackupError::Invalid(format!("{} does not decompress: {e}", from.display()))
        })?;
        output.flush()?;
        Ok(())
    })
    .await
}
