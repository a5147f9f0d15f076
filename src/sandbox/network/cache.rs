//! The result of each successful ADD, kept on disk (one JSON file per
//! network, sandbox and interface) so that DEL and CHECK, possibly after a
//! restart, hand plugins the same `prevResult` and capability args.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

use super::plugin_conf::capability_args;
use super::{Attachment, CniError, CniNetwork};

/// What a successful ADD left for DEL and CHECK.
pub(super) struct CachedAdd {
    pub(super) result: Value,
    pub(super) caps: Map<String, Value>,
}

impl CniNetwork {
    /// Where the ADD result for this attachment is cached.
    pub fn cache_path(&self, a: &Attachment<'_>) -> PathBuf {
        self.cache_dir
            .join(format!("{}-{}-{}", self.name, a.container_id, a.ifname))
    }

    pub(super) async fn write_cache(
        &self,
        a: &Attachment<'_>,
        result: &Value,
        caps: &Map<String, Value>,
    ) -> Result<(), CniError> {
        let path = self.cache_path(a);
        let entry = json!({
            "kind": "peapodCniResultV1",
            "networkName": self.name,
            "cniVersion": self.cni_version,
            "containerId": a.container_id,
            "ifName": a.ifname,
            "capabilityArgs": caps,
            "result": result,
        });
        let bytes = entry.to_string().into_bytes();
        let dir = self.cache_dir.clone();
        let tmp = temp_path(&dir, &path);
        let (target, tmp_for_task) = (path.clone(), tmp.clone());
        let written = tokio::task::spawn_blocking(move || {
            write_durably(&dir, &tmp_for_task, &target, &bytes)
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(|source| CniError::Cache { path, source })
    }

    /// The cached ADD; an unreadable or garbled cache only costs the plugins
    /// their `prevResult`, which DEL may legitimately lack.
    pub(super) async fn read_cache(
        &self,
        a: &Attachment<'_>,
    ) -> Result<Option<CachedAdd>, CniError> {
        let path = self.cache_path(a);
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CniError::Cache { path, source }),
        };
        let mut entry = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(entry)) => entry,
            Ok(_) => {
                tracing::warn!(path = %path.display(), "CNI result cache is not a JSON object; ignoring it");
                return Ok(None);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "CNI result cache is not valid JSON; ignoring it");
                return Ok(None);
            }
        };
        let Some(result @ Value::Object(_)) = entry.remove("result") else {
            tracing::warn!(path = %path.display(), "CNI result cache has no result object; ignoring it");
            return Ok(None);
        };
        let caps = match entry.remove("capabilityArgs") {
            Some(Value::Object(caps)) => caps,
            _ => capability_args(a),
        };
        Ok(Some(CachedAdd { result, caps }))
    }

    /// Drops the cached ADD; one already gone is fine.
    pub(super) async fn remove_cache(&self, a: &Attachment<'_>) -> Result<(), CniError> {
        let path = self.cache_path(a);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CniError::Cache { path, source }),
        }
    }
}

/// A temporary name beside `path`, unique within this process.
fn temp_path(dir: &Path, path: &Path) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Writes `bytes` to `tmp`, renames it over `target` and syncs both: a
/// crash leaves the old file or the new one, never a torn one.
fn write_durably(dir: &Path, tmp: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut f = std::fs::File::create(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(tmp, target)?;
    // Make the rename itself durable.
    std::fs::File::open(dir)?.sync_all()
}
