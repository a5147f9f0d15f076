//! The pod network: the CNI config the daemon would load, and whether
//! every plugin it runs is installed.

use std::path::{Path, PathBuf};

use super::Finding;
use crate::config::CniConfig;
use crate::sandbox::network::CniNetwork;

const ID: &str = "cni";

pub(super) fn network(cni: &CniConfig) -> Finding {
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
        Ok(None) => Finding::warn(
            ID,
            format!("no network config in {}", cni.conf_dir.display()),
            format!(
                "write a .conflist into {} (pods get no network until one is there)",
                cni.conf_dir.display()
            ),
        ),
        Ok(Some(net)) => judge_plugins(&net),
    }
}

fn judge_plugins(net: &CniNetwork) -> Finding {
    let dirs = join_dirs(net.bin_dirs());
    let found = format!(
        "{} (network {:?}, plugins {})",
        net.source().display(),
        net.name(),
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

    fn config(dir: &Path) -> CniConfig {
        CniConfig {
            conf_dir: dir.join("net.d"),
            bin_dirs: vec![dir.join("bin")],
            ..CniConfig::default()
        }
    }

    #[test]
    fn no_config_is_a_warning_naming_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let f = network(&config(d.path()));
        assert_eq!(f.level, Level::Warn);
        assert_eq!(
            f.found,
            format!("no network config in {}", d.path().join("net.d").display())
        );
    }

    #[test]
    fn missing_plugins_fail_and_are_named() {
        let d = tempfile::tempdir().unwrap();
        let c = config(d.path());
        std::fs::create_dir_all(&c.conf_dir).unwrap();
        std::fs::create_dir_all(&c.bin_dirs[0]).unwrap();
        std::fs::write(
            c.conf_dir.join("10-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge","ipam":{"type":"host-local"}}]}"#,
        )
        .unwrap();
        std::fs::write(c.bin_dirs[0].join("bridge"), "").unwrap();
        let f = network(&c);
        assert_eq!(f.level, Level::Fail, "{f:?}");
        assert!(f.found.contains("host-local not found"), "{f:?}");
        assert!(f.fix.unwrap().contains("host-local"));

        std::fs::write(c.bin_dirs[0].join("host-local"), "").unwrap();
        let f = network(&c);
        assert_eq!(f.level, Level::Ok, "{f:?}");
        assert!(f.found.contains("10-a.conflist"), "{f:?}");
    }
}
