//! Where backups are kept: a local directory or a bucket of S3-compatible
//! storage, behind one interface (object_store). Each backup is two
//! objects side by side, the archive and its manifest; the manifest is
//! written last, so a backup whose upload was cut off is never listed.

use crate::{BackupError, Progress, Result};
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::path::Path;
use std::sync::Arc;
use switchyard_core::backup::Destination;
use switchyard_core::config::S3Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Archives larger than this are uploaded in parts of this size.
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// An opened destination.
#[derive(Debug, Clone)]
pub struct Target {
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjectPath>,
    shown: String,
}

fn storage(shown: &str, e: impl std::fmt::Display) -> BackupError {
    BackupError::Storage(format!("{shown}: {e}"))
}

impl Target {
    /// Opens `destination` to read from: a directory must already exist
    /// (listing, restoring or pruning never creates one; a mistyped path is
    /// an error, not an empty destination).
    pub fn open_existing(destination: &Destination, s3: &S3Config) -> Result<Self> {
        if let Destination::Dir(dir) = destination {
            if !dir.is_dir() {
                return Err(BackupError::NotFound(format!(
                    "{destination}: no such directory"
                )));
            }
        }
        Self::open(destination, s3)
    }

    /// Opens `destination` to write to; a directory is created if missing.
    pub fn open(destination: &Destination, s3: &S3Config) -> Result<Self> {
        let shown = destination.to_string();
        match destination {
            Destination::Dir(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| storage(&shown, e))?;
                let store =
                    LocalFileSystem::new_with_prefix(dir).map_err(|e| storage(&shown, e))?;
                Ok(Self {
                    store: Arc::new(store),
                    prefix: None,
                    shown,
                })
            }
            Destination::S3 { bucket, prefix } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(&s3.region);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                    builder = builder
                        .with_access_key_id(id.expose())
                        .with_secret_access_key(secret.expose());
                }
                if let Some(token) = &s3.session_token {
                    builder = builder.with_token(token.expose());
                }
                let store = builder.build().map_err(|e| storage(&shown, e))?;
                Ok(Self {
                    store: Arc::new(store),
                    prefix: (!prefix.is_empty()).then(|| ObjectPath::from(prefix.as_str())),
                    shown,
                })
            }
        }
    }

    fn path(&self, name: &str) -> ObjectPath {
        match &self.prefix {
            Some(p) => p.clone().join(name),
            None => ObjectPath::from(name),
        }
    }

    /// The destination as configured, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Uploads a file, in parts when it is large.
    pub async fn put_file(&self, name: &str, file: &Path, progress: &dyn Progress) -> Result<()> {
        let path = self.path(name);
        let size = tokio::fs::metadata(file).await?.len();
        let mut f = tokio::fs::File::open(file).await?;
        if size as usize <= PART_BYTES {
            let mut buf = Vec::with_capacity(size as usize);
            f.read_to_end(&mut buf).await?;
            self.store
                .put(&path, PutPayload::from(buf))
                .await
                .map_err(|e| storage(&self.shown, e))?;
            progress.bytes("uploaded", size, Some(size));
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| storage(&self.shown, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; 1024 * 1024];
        let mut sent = 0u64;
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                writer.abort().await.ok();
                return Err(storage(&self.shown, e));
            }
            writer.write(&buf[..n]);
            sent += n as u64;
            progress.bytes("uploaded", sent, Some(size));
        }
        writer.finish().await.map_err(|e| storage(&self.shown, e))?;
        Ok(())
    }

    pub async fn put_bytes(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.path(name), PutPayload::from(bytes))
            .await
            .map_err(|e| storage(&self.shown, e))?;
        Ok(())
    }

    /// Downloads an object to a file; returns its size.
    pub async fn get_to_file(
        &self,
        name: &str,
        file: &Path,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let got = self
            .store
            .get(&self.path(name))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    BackupError::NotFound(format!("{name} is not in {}", self.shown))
                }
                e => storage(&self.shown, e),
            })?;
        let total = got.meta.size;
        let mut stream = got.into_stream();
        let mut out = tokio::fs::File::create(file).await?;
        let mut done = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| storage(&self.shown, e))?;
            out.write_all(&chunk).await?;
            done += chunk.len() as u64;
            progress.bytes("downloaded", done, Some(total));
        }
        out.flush().await?;
        Ok(done)
    }

    pub async fn get_bytes(&self, name: &str) -> Result<bytes::Bytes> {
        let got = self
            .store
            .get(&self.path(name))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    BackupError::NotFound(format!("{name} is not in {}", self.shown))
                }
                e => storage(&self.shown, e),
            })?;
        got.bytes().await.map_err(|e| storage(&self.shown, e))
    }

    /// The names of the objects directly under the destination.
    pub async fn names(&self) -> Result<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(self.prefix.as_ref())
            .await
            .map_err(|e| storage(&self.shown, e))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|o| o.location.filename().map(str::to_owned))
            .collect())
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage(&self.shown, e)),
        }
    }
}
