//! The JSON documents of an image: Docker schema 2 and OCI manifests, manifest
//! lists / indexes, and the image configuration. Only the fields peapod uses
//! are read; unknown fields are ignored, as registries add their own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what} {digest} is not valid JSON: {source}")]
    Json {
        what: &'static str,
        digest: String,
        source: serde_json::Error,
    },
    #[error("manifest {digest} has media type {media_type:?}, which peapod does not pull (Docker schema 1 and unknown types are refused)")]
    Unsupported { digest: String, media_type: String },
    #[error("index {digest} has no manifest for {platform} (it lists: {available})")]
    NoPlatform {
        digest: String,
        platform: String,
        available: String,
    },
    #[error("image config {digest}: {message}")]
    Config { digest: String, message: String },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Platform {
    /// The platform this daemon runs containers for.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "aarch64" => ("arm64", "v8"),
            "arm" => ("arm", "v7"),
            "x86" => ("386", ""),
            "powerpc64" => ("ppc64le", ""),
            "s390x" => ("s390x", ""),
            "riscv64" => ("riscv64", ""),
            other => (other, ""),
        };
        Platform {
            architecture: architecture.to_string(),
            os: "linux".to_string(),
            variant: variant.to_string(),
        }
    }

    /// Whether an index entry's platform can run here. An entry without a
    /// variant matches any; arm64's implicit variant is v8.
    pub fn accepts(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        let normal = |v: &str, arch: &str| -> String {
            if arch == "arm64" && v.is_empty() {
                "v8".to_string()
            } else {
                v.to_string()
            }
        };
        other.variant.is_empty()
            || normal(&other.variant, &other.architecture)
                == normal(&self.variant, &self.architecture)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// A parsed manifest document.
#[derive(Debug)]
pub enum Document {
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index {
        manifests: Vec<Descriptor>,
    },
}

/// Parses a manifest or index. `media_type` is what the registry said; the
/// body's own `mediaType`, or its shape, decides when that is generic.
pub fn parse(bytes: &[u8], media_type: &str, digest: &str) -> Result<Document, ManifestError> {
    let raw: RawManifest = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
        what: "manifest",
        digest: digest.to_string(),
        source,
    })?;
    let declared = if raw.media_type.is_empty() {
        media_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    } else {
        raw.media_type.clone()
    };
    let unsupported = || ManifestError::Unsupported {
        digest: digest.to_string(),
        media_type: declared.clone(),
    };
    if declared.starts_with(DOCKER_SCHEMA1) {
        return Err(unsupported());
    }
    let is_index = match declared.as_str() {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        // Generic types (application/json, empty): go by shape.
        _ if raw.manifests.is_some() => true,
        _ if raw.config.is_some() => false,
        _ => return Err(unsupported()),
    };
    if is_index {
        Ok(Document::Index {
            manifests: raw.manifests.unwrap_or_default(),
        })
    } else {
        Ok(Document::Image {
            config: raw.config.ok_or_else(|| ManifestError::Json {
                what: "manifest",
                digest: digest.to_string(),
                source: serde::de::Error::missing_field("config"),
            })?,
            layers: raw.layers.unwrap_or_default(),
        })
    }
}

/// The first index entry this host can run.
pub fn select_platform<'a>(
    manifests: &'a [Descriptor],
    host: &Platform,
    index_digest: &str,
) -> Result<&'a Descriptor, ManifestError> {
    manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| host.accepts(p)))
        .ok_or_else(|| ManifestError::NoPlatform {
            digest: index_digest.to_string(),
            platform: host.to_string(),
            available: manifests
                .iter()
                .map(|d| {
                    d.platform
                        .as_ref()
                        .map_or("(no platform)".to_string(), |p| p.to_string())
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// What containers take from the image configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub stop_signal: String,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<RawRunConfig>,
    rootfs: Option<RawRootfs>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawRunConfig {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    stop_signal: Option<String>,
    #[serde(default)]
    volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
struct RawRootfs {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// The parts of an image configuration peapod keeps.
#[derive(Debug, Clone)]
pub struct ImageConfig {
    pub platform: Platform,
    pub run: RunConfig,
    pub diff_ids: Vec<String>,
}

pub fn parse_config(bytes: &[u8], digest: &str) -> Result<ImageConfig, ManifestError> {
    let raw: RawConfig = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
        what: "image config",
        digest: digest.to_string(),
        source,
    })?;
    let bad = |message: String| ManifestError::Config {
        digest: digest.to_string(),
        message,
    };
    let rootfs = raw
        .rootfs
        .ok_or_else(|| bad("it has no rootfs".to_string()))?;
    if rootfs.kind != "layers" {
        return Err(bad(format!(
            "rootfs.type is {:?}, not \"layers\"",
            rootfs.kind
        )));
    }
    for d in &rootfs.diff_ids {
        super::reference::validate_digest(d).map_err(|m| bad(format!("rootfs.diff_ids: {m}")))?;
    }
    let c = raw.config.unwrap_or_default();
    Ok(ImageConfig {
        platform: Platform {
            architecture: raw.architecture,
            os: raw.os,
            variant: String::new(),
        },
        run: RunConfig {
            user: c.user.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            stop_signal: c.stop_signal.unwrap_or_default(),
            volumes: c.volumes.unwrap_or_default().into_keys().collect(),
            labels: c.labels.unwrap_or_default(),
        },
        diff_ids: rootfs.diff_ids,
    })
}

/// Chain ids of a layer stack (OCI image spec): the first is the first diff
/// id, each next one is sha256 of "<previous chain id> <diff id>".
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The user an image runs as, the way kubelet wants it for `runAsNonRoot`:
/// a numeric user gives `uid`, a name gives `username`, the group part is
/// ignored. An empty `USER` gives neither.
pub fn image_user(user: &str) -> (Option<i64>, String) {
    let name = user.split(':').next().unwrap_or("");
    if name.is_empty() {
        return (None, String::new());
    }
    match name.parse::<i64>() {
        Ok(uid) if uid >= 0 => (Some(uid), String::new()),
        _ => (None, name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        assert_eq!(image_user(""), (None, String::new()));
        assert_eq!(image_user("1002"), (Some(1002), String::new()));
        assert_eq!(image_user("1003:1004"), (Some(1003), String::new()));
        assert_eq!(image_user("www-data"), (None, "www-data".to_string()));
        assert_eq!(image_user("www-data:1004"), (None, "www-data".to_string()));
        assert_eq!(image_user("0"), (Some(0), String::new()));
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256_digest(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn platform_matching() {
        let host = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: "v8".into(),
        };
        let p = |a: &str, v: &str| Platform {
            architecture: a.into(),
            os: "linux".into(),
            variant: v.into(),
        };
        assert!(host.accepts(&p("arm64", "")));
        assert!(host.accepts(&p("arm64", "v8")));
        assert!(!host.accepts(&p("arm64", "v9")));
        assert!(!host.accepts(&p("amd64", "")));
        let amd = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: String::new(),
        };
        assert!(amd.accepts(&p("amd64", "")));
        // A variant the host does not claim may need CPU features it lacks.
        assert!(!amd.accepts(&p("amd64", "v3")));
        let descs = vec![
            Descriptor {
                media_type: OCI_MANIFEST.into(),
                digest: "sha256:1".into(),
                size: 1,
                platform: Some(p("arm64", "v8")),
            },
            Descriptor {
                media_type: OCI_MANIFEST.into(),
                digest: "sha256:2".into(),
                size: 1,
                platform: Some(p("amd64", "")),
            },
        ];
        assert_eq!(
            select_platform(&descs, &amd, "x").unwrap().digest,
            "sha256:2"
        );
        let s390 = p("s390x", "");
        let e = select_platform(&descs, &s390, "sha256:idx").unwrap_err();
        assert!(e.to_string().contains("linux/arm64/v8, linux/amd64"), "{e}");
    }

    #[test]
    fn documents_by_type_and_shape() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:c","size":3},"layers":[{"digest":"sha256:l","size":5}]}"#;
        match parse(m, "application/json", "d").unwrap() {
            Document::Image { config, layers } => {
                assert_eq!(config.digest, "sha256:c");
                assert_eq!(layers[0].size, 5);
            }
            other => panic!("{other:?}"),
        }
        let i = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(matches!(parse(i, "", "d").unwrap(), Document::Index { .. }));
        let s1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(parse(
            s1,
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "d"
        )
        .is_err());
    }

    #[test]
    fn config_fields() {
        let c = br#"{"architecture":"amd64","os":"linux","config":{"User":"app","Env":["A=1"],"Entrypoint":["/bin/sh"],"Cmd":["-c","x"],"WorkingDir":"/work","StopSignal":"SIGINT","Volumes":{"/data":{}},"Labels":{"k":"v"}},"rootfs":{"type":"layers","diff_ids":["sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]}}"#;
        let cfg = parse_config(c, "sha256:x").unwrap();
        assert_eq!(cfg.run.user, "app");
        assert_eq!(cfg.run.volumes, vec!["/data".to_string()]);
        assert_eq!(cfg.run.stop_signal, "SIGINT");
        assert_eq!(cfg.diff_ids.len(), 1);
        let bad = br#"{"rootfs":{"type":"layers","diff_ids":["md5:1"]}}"#;
        assert!(parse_config(bad, "sha256:x").is_err());
        let null = br#"{"config":null,"rootfs":{"type":"layers","diff_ids":[]}}"#;
        assert_eq!(parse_config(null, "d").unwrap().run, RunConfig::default());
    }
}
