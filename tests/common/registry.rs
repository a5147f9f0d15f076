//! Registries for image tests: Debian's docker-registry started by
//! `hack/registry.sh`, with the test images from `hack/build-test-images.sh`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Registry {
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// `name:tag` → the digest the registry serves for it.
    pub digests: HashMap<String, String>,
    /// `USER:PASS` when started with htpasswd auth.
    pub creds: Option<String>,
    dir: PathBuf,
    owned: bool,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require_tools() {
    for (tool, package) in [
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("busybox", "busybox-static"),
        ("zstd", "zstd"),
        ("python3", "python3"),
    ] {
        assert!(
            super::which(tool),
            "{tool} not found: install the Debian package {package} (hack/install-deps.sh)"
        );
    }
}

impl Registry {
    /// Starts a registry (with htpasswd auth when `creds` is `USER:PASS`)
    /// and pushes `images` (names from build-test-images.sh; all when empty).
    pub fn start(creds: Option<&str>, images: &[&str]) -> Registry {
        require_tools();
        let dir = tempfile::Builder::new()
            .prefix("peapod-registry-")
            .tempdir()
            .unwrap()
            .keep();
        let mut cmd = Command::new(repo_root().join("hack/registry.sh"));
        cmd.arg("start").arg(dir.join("registry"));
        if let Some(c) = creds {
            cmd.args(["--htpasswd", c]);
        }
        let out = cmd.output().expect("run hack/registry.sh");
        assert!(
            out.status.success(),
            "hack/registry.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let addr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut reg = Registry {
            addr,
            digests: HashMap::new(),
            creds: creds.map(str::to_string),
            dir,
            owned: true,
        };
        let mut build = Command::new(repo_root().join("hack/build-test-images.sh"));
        build.arg(&reg.addr).args(images).env("TMPDIR", &reg.dir);
        if let Some(c) = creds {
            build.env("REGISTRY_CREDS", c);
        }
        let out = build.output().expect("run hack/build-test-images.sh");
        assert!(
            out.status.success(),
            "hack/build-test-images.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((name, digest)) = line.split_once(' ') {
                let short = name.strip_prefix(&format!("{}/", reg.addr)).unwrap_or(name);
                reg.digests
                    .insert(short.to_string(), digest.trim().to_string());
            }
        }
        reg
    }

    /// One registry with every test image, shared by the tests of a test
    /// binary and stopped when the binary exits.
    pub fn shared() -> &'static Registry {
        static SHARED: OnceLock<Registry> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mut r = Registry::start(None, &[]);
            r.owned = false;
            let _ = STOP_DIR.set(r.dir.clone());
            // SAFETY: registering a plain extern "C" function.
            unsafe { libc::atexit(stop_shared) };
            r
        })
    }

    /// `ADDR/name`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    pub fn digest(&self, name_tag: &str) -> &str {
        self.digests
            .get(name_tag)
            .unwrap_or_else(|| panic!("no digest for {name_tag}: {:?}", self.digests))
    }

    /// Copies `from` (`name:tag`) to `to` (`repo/path:tag`) inside the
    /// registry.
    pub fn copy(&self, from: &str, to: &str) {
        let mut args = vec![
            "copy".to_string(),
            "--src-tls-verify=false".into(),
            "--dest-tls-verify=false".into(),
            "--all".into(),
            "--preserve-digests".into(),
        ];
        if let Some(c) = &self.creds {
            args.push(format!("--src-creds={c}"));
            args.push(format!("--dest-creds={c}"));
        }
        args.push(format!("docker://{}/{from}", self.addr));
        args.push(format!("docker://{}/{to}", self.addr));
        let out = Command::new("skopeo")
            .args(&args)
            .env("TMPDIR", &self.dir)
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// GETs a registry API path (`/v2/...`) directly, bypassing peapod.
    pub fn get(&self, path: &str, accept: &str) -> Vec<u8> {
        let mut args = vec!["-sSf".to_string(), "-H".into(), format!("Accept: {accept}")];
        if let Some(c) = &self.creds {
            args.push("-u".into());
            args.push(c.clone());
        }
        args.push(format!("http://{}{path}", self.addr));
        let out = Command::new("curl").args(&args).output().expect("run curl");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

static STOP_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(dir) = STOP_DIR.get() {
        stop(dir);
    }
}

fn stop(dir: &Path) {
    let _ = Command::new(repo_root().join("hack/registry.sh"))
        .arg("stop")
        .arg(dir.join("registry"))
        .output();
    let _ = std::fs::remove_dir_all(dir);
}

impl Drop for Registry {
    fn drop(&mut self) {
        if self.owned {
            stop(&self.dir);
        }
    }
}
