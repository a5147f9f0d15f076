//! The node's registry credentials, containers-auth.json(5): the file
//! `podman login` / `skopeo login` write, and Docker's `config.json` shape.
//! CRI-O reads it for pulls whose request carries no credentials; peapod
//! does the same.
//!
//! `{"auths": {"<key>": {"auth": "<base64 user:password>"}}}`, where a key
//! is a registry (`quay.io`, `localhost:5000`), or a registry and a
//! namespace or repository (`quay.io/team`). Docker's legacy keys carry a
//! scheme and a path (`https://index.docker.io/v1/`): only their host
//! counts. A lookup tries the repository, then each namespace above it,
//! then the registry. Entries without `auth` (those of credential helpers)
//! give no credentials; `credHelpers` is not read.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::credentials::decode_auth;
use super::{Credentials, RegistryError};

/// Where the file is when `images.auth_file` does not say.
pub const DEFAULT_AUTH_FILE: &str = "/etc/containers/auth.json";
/// The environment variable podman, skopeo and CRI-O honour.
pub const AUTH_FILE_ENV: &str = "REGISTRY_AUTH_FILE";

/// The auth file to read: `configured` (`images.auth_file`) when set, else
/// `$REGISTRY_AUTH_FILE` when set, else [`DEFAULT_AUTH_FILE`].
pub fn auth_file_path(configured: &Path, env: Option<&OsStr>) -> PathBuf {
    if !configured.as_os_str().is_empty() {
        return configured.to_path_buf();
    }
    match env {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_AUTH_FILE),
    }
}

/// The credentials of one auth file, by normalised key.
#[derive(Debug, Default)]
pub struct AuthFile {
    entries: HashMap<String, Credentials>,
}

#[derive(Deserialize)]
struct FileJson {
    #[serde(default)]
    auths: HashMap<String, EntryJson>,
}

#[derive(Deserialize)]
struct EntryJson {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identitytoken: String,
}

impl AuthFile {
    /// Reads `path`; `None` when there is no such file.
    pub fn load(path: &Path) -> Result<Option<AuthFile>, RegistryError> {
        match std::fs::read(path) {
            Ok(bytes) => AuthFile::parse(&bytes, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(malformed(path, "", format!("cannot read: {e}"))),
        }
    }

    /// Every entry is checked, so a broken one is found when the file is
    /// written, not when some pull first needs it.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<AuthFile, RegistryError> {
        let file: FileJson = serde_json::from_slice(bytes)
            .map_err(|e| malformed(path, "", format!("not an auth file: {e}")))?;
        let mut entries = HashMap::new();
        for (key, entry) in file.auths {
            let credentials = if !entry.identitytoken.is_empty() {
                Credentials::IdentityToken(entry.identitytoken)
            } else if !entry.auth.trim().is_empty() {
                decode_auth(&entry.auth)
                    .map_err(|m| malformed(path, &format!("auths.{key:?}.auth"), m))?
            } else {
                continue;
            };
            let normalised = normalise_key(&key);
            if normalised.is_empty() {
                return Err(malformed(
                    path,
                    &format!("auths.{key:?}"),
                    "names no registry".into(),
                ));
            }
            entries.insert(normalised, credentials);
        }
        Ok(AuthFile { entries })
    }

    /// The credentials for `repository` on registry `host` (`host[:port]`
    /// as image names write it): the most specific key wins.
    pub fn lookup(&self, host: &str, repository: &str) -> Option<&Credentials> {
        let host = canonical_host(host);
        let mut key = format!("{host}/{repository}");
        loop {
            if let Some(c) = self.entries.get(&key) {
                return Some(c);
            }
            match key.rfind('/') {
                Some(i) => key.truncate(i),
                None => return None,
            }
        }
    }

    /// How many keys have credentials.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `quay.io/team/` →
/// `quay.io/team`; Docker Hub's other names → `docker.io`.
fn normalise_key(key: &str) -> String {
    let key = key.trim();
    let (rest, had_scheme) = match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(rest) => (rest, true),
        None => (key, false),
    };
    // A key with a scheme is a URL: its path is the API's, not a namespace.
    let rest = if had_scheme {
        rest.split('/').next().unwrap_or_default()
    } else {
        rest.trim_end_matches('/')
    };
    match rest.split_once('/') {
        Some((host, path)) => format!("{}/{path}", canonical_host(host)),
        None => canonical_host(rest),
    }
}

fn canonical_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => host,
    }
}

fn malformed(path: &Path, key: &str, message: String) -> RegistryError {
    RegistryError::NodeFile {
        path: path.to_path_buf(),
        key: key.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::image::registry::test_support::basic;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn parse(json: &str) -> Result<AuthFile, RegistryError> {
        AuthFile::parse(json.as_bytes(), Path::new("/etc/containers/auth.json"))
    }

    #[test]
    fn keys_are_normalised_and_the_most_specific_wins() {
        let file = parse(&format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "quay.io": {{"auth": "{}"}},
                "quay.io/team/": {{"auth": "{}"}},
                "quay.io/team/app": {{"auth": "{}"}},
                "http://LOCALHOST:5000/v2/": {{"auth": "{}"}},
                "helper.example": {{}},
                "token.example": {{"identitytoken": "refresh"}}
            }}, "credHelpers": {{"helper.example": "secretservice"}} }}"#,
            b64("hub:1"),
            b64("quay:2"),
            b64("team:3"),
            b64("app:4"),
            b64("local:5"),
        ))
        .unwrap();
        let user = |host: &str, repo: &str| match file.lookup(host, repo) {
            Some(Credentials::Basic { username, .. }) => Some(username.clone()),
            Some(Credentials::IdentityToken(t)) => Some(format!("token {t}")),
            Some(other) => panic!("{other:?}"),
            None => None,
        };
        assert_eq!(user("docker.io", "library/busybox").as_deref(), Some("hub"));
        assert_eq!(user("registry-1.docker.io", "x/y").as_deref(), Some("hub"));
        assert_eq!(user("quay.io", "other/app").as_deref(), Some("quay"));
        assert_eq!(user("quay.io", "team/lib").as_deref(), Some("team"));
        assert_eq!(user("quay.io", "team/app").as_deref(), Some("app"));
        assert_eq!(user("quay.io", "team/app2").as_deref(), Some("team"));
        // A namespace is matched by whole components.
        assert_eq!(user("quay.io", "teamx/app").as_deref(), Some("quay"));
        assert_eq!(user("localhost:5000", "busybox").as_deref(), Some("local"));
        assert_eq!(user("localhost:5001", "busybox"), None);
        assert_eq!(user("helper.example", "a/b"), None);
        assert_eq!(user("token.example", "a").as_deref(), Some("token refresh"));
        assert_eq!(file.lookup("quay.io", "a"), Some(&basic("quay", "2")));
    }

    #[test]
    fn malformed_files_name_the_file_and_key() {
        for (json, key) in [
            ("{not json", ""),
            (r#"{"auths": []}"#, ""),
            (
                r#"{"auths": {"quay.io": {"auth": "%%%"}}}"#,
                "auths.\"quay.io\".auth",
            ),
            (
                &format!(
                    r#"{{"auths": {{"quay.io": {{"auth": "{}"}}}}}}"#,
                    b64("nocolon")
                ),
                "auths.\"quay.io\".auth",
            ),
            (
                &format!(
                    r#"{{"auths": {{"https://": {{"auth": "{}"}}}}}}"#,
                    b64("a:b")
                ),
                "auths.\"https://\"",
            ),
        ] {
            let err = parse(json).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("/etc/containers/auth.json"), "{msg}");
            assert!(msg.contains(key), "{json}: {msg}");
            assert!(matches!(err, RegistryError::NodeFile { .. }), "{err:?}");
        }
        // Empty, and without auths: no credentials, no error.
        assert!(parse("{}").unwrap().is_empty());
    }

    #[test]
    fn missing_file_is_no_credentials() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AuthFile::load(&dir.path().join("auth.json"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn path_precedence_key_then_env_then_default() {
        let env = Some(OsStr::new("/run/creds.json"));
        assert_eq!(
            auth_file_path(Path::new("/etc/peapod/auth.json"), env),
            PathBuf::from("/etc/peapod/auth.json")
        );
        assert_eq!(
            auth_file_path(Path::new(""), env),
            PathBuf::from("/run/creds.json")
        );
        assert_eq!(
            auth_file_path(Path::new(""), Some(OsStr::new(""))),
            PathBuf::from(DEFAULT_AUTH_FILE)
        );
        assert_eq!(
            auth_file_path(Path::new(""), None),
            PathBuf::from(DEFAULT_AUTH_FILE)
        );
    }

    /// A pull without credentials gets the file's for each place it pulls
    /// from; a pull with credentials keeps its own.
    #[tokio::test]
    async fn open_uses_the_file_for_anonymous_pulls_only() {
        use crate::image::registry::test_support::*;
        use crate::image::registry::{ImageName, RegistryClient, MEDIA_TYPE_OCI_MANIFEST};

        let good = format!("Basic {}", b64("alice:s3cret"));
        let server = Server::start(move |req: &Req| {
            if req.header("authorization") == Some(good.as_str()) {
                reply(200, MANIFEST).header("Content-Type", MEDIA_TYPE_OCI_MANIFEST)
            } else {
                reply(401, "").header("WWW-Authenticate", r#"Basic realm="test""#)
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
                server.host(),
                b64("alice:s3cret")
            ),
        )
        .unwrap();
        let mut s = settings();
        s.auth_file = Some(path.clone());
        let client = RegistryClient::new(s).unwrap();
        let host = server.host();
        let name = ImageName {
            domain: &host,
            path: "busybox",
            tag: Some("latest"),
            digest: None,
        };
        let repo = client.open(&name, Credentials::Anonymous).unwrap();
        repo.manifest("latest").await.unwrap();
        let repo = client.open(&name, basic("alice", "wrong")).unwrap();
        assert!(repo.manifest("latest").await.unwrap_err().is_unauthorized());

        // Read again by the next open: gone, no credentials.
        std::fs::remove_file(&path).unwrap();
        let repo = client.open(&name, Credentials::Anonymous).unwrap();
        assert!(repo.manifest("latest").await.unwrap_err().is_unauthorized());
    }
}
