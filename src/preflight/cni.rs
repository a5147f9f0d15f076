//! The pod network: the CNI config the daemon would load, and whether
//! every plugin it runs is installed.

use std::path::{Path, PathBuf};

use super::Finding;
use crate::config::Config;
use crate::sandbox::network::CniNetwork;

const ID: &str = "cni";

pub(super) fn network(config: &Config) -> Finding {
    let cni = &config.cni;
    // Loading reads the files only; the cache dir is not touched.
    match CniNetwork::load(&cni.conf_dir, &cni.bin_dirs, Path::new("/nonexistent")) {
        Err(e) => Finding::fail(
            ID,
            e.to_string(),
            format!(
                "make {} a readable directory, or set cni.conf_dir",
                cni.conf_dir.display()
            ),
        ),
        Ok(None) if cni.default_network => judge_plugins(&CniNetwork::default_network(config)),
        Ok(None) => Finding::warn(
            ID,
            format!(
                "no network config in {}, and cni.default_network = false",
                cni.conf_dir.display()
            ),
            format!(
                "write a .conflist into {}, or set cni.default_network = true (pods get no network until then)",
                cni.conf_dir.display()
            ),
        ),
        Ok(Some(net)) => judge_plugins(&net),
    }
}

fn judge_plugins(net: &CniNetwork) -> Finding {
    let dirs = join_dirs(net.bin_dirs());
    let found = format!(
        "pods join {} (plugins {})",
        net.describe(),
        net.plugin_binaries().join(", ")
    );
    let missing = net.missing_plugins();
    if missing.is_empty() {
        return Finding::ok(ID, format!("{found}, all found in {dirs}"));
    }
    Finding::fail(
        ID,
        format!("{found}: {} not found in {dirs}", missing.join(", ")),
        format!(
            "install the CNI plugins {} into one of {dirs} (Debian: containernetworking-plugins), or set cni.bin_dirs",
            missing.join(", ")
        ),
    )
}

fn join_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Level;

    fn config(dir: &Path) -> Config {
        let mut c = Config::default();
        c.cni.conf_dir = dir.join("net.d");
        c.cni.bin_dirs = vec![dir.join("bin")];
        c
    }

    #[test]
    fn no_config_means_the_default_network_or_a_warning() {
        let d = tempfile::tempdir().unwrap();
        let mut c = config(d.path());
        let f = network(&c);
        // The default network, whose plugins are not in the empty bin dir.
        assert_eq!(f.level, Level::Fail, "{f:?}");
        assert!(f.found.contains("peapod-default"), "{f:?}");
        assert!(
            f.found
                .contains("bridge, host-local, portmap, loopback not found"),
            "{f:?}"
        );
        c.cni.default_network = false;
        let f = network(&c);
        assert_eq!(f.level, Level::Warn);
        assert_eq!(
            f.found,
            format!(
                "no network config in {}, and cni.default_network = false",
                d.path().join("net.d").display()
            )
        );
    }

    #[test]
    fn missing_plugins_fail_and_are_named() {
        let d = tempfile::tempdir().unwrap();
        let c = config(d.path());
        std::fs::create_dir_all(&c.cni.conf_dir).unwrap();
        std::fs::create_dir_all(&c.cni.bin_dirs[0]).unwrap();
        std::fs::write(
            c.cni.conf_dir.join("10-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge","ipam":{"type":"host-local"}}]}"#,
        )
        .unwrap();
        std::fs::write(c.cni.bin_dirs[0].join("bridge"), "").unwrap();
        let f = network(&c);
        assert_eq!(f.level, Level::Fail, "{f:?}");
        assert!(f.found.contains("host-local not found"), "{f:?}");
        assert!(f.fix.unwrap().contains("host-local"));

        std::fs::write(c.cni.bin_dirs[0].join("host-local"), "").unwrap();
        let f = network(&c);
        assert_eq!(f.level, Level::Ok, "{f:?}");
        assert!(f.found.contains("10-a.conflist"), "{f:?}");
    }
}
