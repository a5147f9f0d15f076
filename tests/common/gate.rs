//! A CNI plugin that holds ADD until the test opens the gate: it makes a
//! RunPodSandbox as slow as the test wants, deterministically.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub struct Gate {
    pub bin_dir: PathBuf,
    pub dir: PathBuf,
}

impl Gate {
    /// Installs the `gate` plugin into `<base>/gate-bin`.
    pub fn install(base: &Path) -> Gate {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            std::process::Command::new("jq")
                .arg("--version")
                .output()
                .is_ok(),
            "jq not found: install it (hack/install-deps.sh)"
        );
        let bin_dir = base.join("gate-bin");
        let dir = base.join("gate");
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let script = format!(
            r#"#!/bin/sh
# ADD: note that it started, wait for the gate, pass the previous result on.
input=$(cat)
if [ "$CNI_COMMAND" = ADD ]; then
  touch {dir}/started
  # Give up after about a minute, so a failed test leaves no plugin behind.
  n=0
  while [ ! -e {dir}/open ]; do
    n=$((n + 1)); [ $n -gt 3000 ] && exit 1
    sleep 0.02
  done
  printf '%s' "$input" | jq -c '.prevResult'
fi
exit 0
"#,
            dir = dir.display()
        );
        let plugin = bin_dir.join("gate");
        std::fs::write(&plugin, script).unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        // `fail`: ADD fails the way a broken plugin does; DEL succeeds.
        let fail = bin_dir.join("fail");
        std::fs::write(
            &fail,
            "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then\n  echo '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"injected failure\"}'\n  exit 1\nfi\nexit 0\n",
        )
        .unwrap();
        std::fs::set_permissions(&fail, std::fs::Permissions::from_mode(0o755)).unwrap();
        Gate { bin_dir, dir }
    }

    /// The bin-dir list for the daemon: the gate first, then the real plugins.
    pub fn bin_dirs(&self) -> String {
        format!("{}:{}", self.bin_dir.display(), super::CNI_BIN_DIR)
    }

    /// Adds the gate as the last plugin of the daemon's test network.
    pub fn add_to_network(conf_dir: &Path) {
        Self::append_plugin(conf_dir, "gate");
    }

    /// Appends a plugin of `kind` to the daemon's test network.
    pub fn append_plugin(conf_dir: &Path, kind: &str) {
        let path = conf_dir.join("10-test.conflist");
        let mut conf: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        conf["plugins"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({ "type": kind }));
        std::fs::write(&path, serde_json::to_vec_pretty(&conf).unwrap()).unwrap();
    }

    pub fn started(&self) -> bool {
        self.dir.join("started").exists()
    }

    pub fn open(&self) {
        std::fs::write(self.dir.join("open"), b"").unwrap();
    }

    pub fn close(&self) {
        let _ = std::fs::remove_file(self.dir.join("open"));
        let _ = std::fs::remove_file(self.dir.join("started"));
    }
}

impl Drop for Gate {
    /// Lets a plugin still waiting (a test that failed) finish at once.
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("open"), b"");
    }
}
