//! What the store keeps per image (its record, stored as JSON), and the
//! in-memory index that finds an image by id, tag or digest.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::manifest::RunConfig;
use super::reference::{Reference, ReferenceError};

/// One layer of an image, bottom first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerRecord {
    /// Digest of the blob as the registry serves it.
    pub digest: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Names the unpacked directory: this layer on top of the ones below.
    pub chain_id: String,
    /// Compressed size, from the manifest.
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    /// `sha256:<config digest>`.
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Config plus compressed layers, in bytes.
    pub size: u64,
    /// The platform manifest pulled (not the index).
    pub manifest_digest: String,
    pub layers: Vec<LayerRecord>,
    pub run: RunConfig,
    /// When it was last pulled; the newer image wins a tag both claim.
    pub pulled_at: i64,
}

#[derive(Default)]
pub(super) struct Index {
    pub(super) images: HashMap<String, Arc<ImageRecord>>,
    /// `repo:tag` → image id.
    pub(super) tags: HashMap<String, String>,
    /// `repo@digest` → image id.
    pub(super) digests: HashMap<String, String>,
}

impl Index {
    pub(super) fn insert(&mut self, rec: Arc<ImageRecord>) {
        if let Some(old) = self.images.remove(&rec.id) {
            self.unlink(&old);
        }
        for t in &rec.repo_tags {
            self.tags.insert(t.clone(), rec.id.clone());
        }
        for d in &rec.repo_digests {
            self.digests.insert(d.clone(), rec.id.clone());
        }
        self.images.insert(rec.id.clone(), rec);
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<Arc<ImageRecord>> {
        let rec = self.images.remove(id)?;
        self.unlink(&rec);
        Some(rec)
    }

    fn unlink(&mut self, rec: &ImageRecord) {
        for t in &rec.repo_tags {
            if self.tags.get(t) == Some(&rec.id) {
                self.tags.remove(t);
            }
        }
        for d in &rec.repo_digests {
            if self.digests.get(d) == Some(&rec.id) {
                self.digests.remove(d);
            }
        }
    }

    /// An image by id (`sha256:<hex>`, the bare hex, or a unique prefix of
    /// it), by `repo:tag` or by `repo@digest`, with the reference normalised.
    /// Also says whether it was found by tag, and which.
    pub(super) fn resolve(
        &self,
        name: &str,
    ) -> Result<Option<(String, Option<String>)>, ReferenceError> {
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if !hex.is_empty()
            && hex.len() <= 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            let full = format!("sha256:{hex}");
            if self.images.contains_key(&full) {
                return Ok(Some((full, None)));
            }
            let mut matches = self.images.keys().filter(|id| id[7..].starts_with(hex));
            if let (Some(id), None) = (matches.next(), matches.next()) {
                return Ok(Some((id.clone(), None)));
            }
            if name.starts_with("sha256:") || hex.len() == 64 {
                return Ok(None);
            }
        }
        let r = Reference::parse(name)?;
        Ok(match (&r.digest, r.repo_tag()) {
            (Some(d), _) => self
                .digests
                .get(&r.with_digest(d))
                .map(|id| (id.clone(), None)),
            (None, Some(tag)) => self.tags.get(&tag).map(|id| (id.clone(), Some(tag))),
            (None, None) => None,
        })
    }

    pub(super) fn resolve_id(&self, name: &str) -> Result<Option<String>, ReferenceError> {
        Ok(self.resolve(name)?.map(|(id, _)| id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, tags: &[&str], digests: &[&str]) -> Arc<ImageRecord> {
        Arc::new(ImageRecord {
            id: id.to_string(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            size: 1,
            manifest_digest: String::new(),
            layers: vec![],
            run: RunConfig::default(),
            pulled_at: 0,
        })
    }

    #[test]
    fn resolve_by_id_prefix_tag_and_digest() {
        let a = format!("sha256:{}", "a1".repeat(32));
        let b = format!("sha256:{}", "a2".repeat(32));
        let d = format!("sha256:{}", "dd".repeat(32));
        let mut ix = Index::default();
        ix.insert(rec(&a, &["docker.io/library/busybox:latest"], &[]));
        ix.insert(rec(
            &b,
            &["127.0.0.1:5000/app:v1"],
            &[&format!("127.0.0.1:5000/app@{d}")],
        ));
        assert_eq!(ix.resolve_id(&a).unwrap(), Some(a.clone()));
        assert_eq!(ix.resolve_id(&a[7..]).unwrap(), Some(a.clone()));
        assert_eq!(ix.resolve_id("a1a1").unwrap(), Some(a.clone()));
        // Ambiguous prefix: not an id, and as a name it is unknown.
        assert_eq!(ix.resolve_id("a").unwrap(), None);
        assert_eq!(ix.resolve_id("busybox").unwrap(), Some(a.clone()));
        assert_eq!(
            ix.resolve_id("docker.io/library/busybox:latest").unwrap(),
            Some(a.clone())
        );
        assert_eq!(ix.resolve_id("busybox:1.0").unwrap(), None);
        assert_eq!(
            ix.resolve_id("127.0.0.1:5000/app:v1").unwrap(),
            Some(b.clone())
        );
        assert_eq!(
            ix.resolve_id(&format!("127.0.0.1:5000/app@{d}")).unwrap(),
            Some(b.clone())
        );
        assert_eq!(
            ix.resolve_id(&format!("127.0.0.1:5000/app:v9@{d}"))
                .unwrap(),
            Some(b.clone())
        );
        assert_eq!(
            ix.resolve_id(&format!("sha256:{}", "ff".repeat(32)))
                .unwrap(),
            None
        );
        assert!(ix.resolve_id("Bad Name").is_err());
        ix.remove(&b);
        assert_eq!(ix.resolve_id("127.0.0.1:5000/app:v1").unwrap(), None);
        assert!(ix.digests.is_empty());
    }
}
