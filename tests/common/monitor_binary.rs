//! Which peapod the tests run: this version, found beside the test's own
//! `peapod` binary (`peapod-monitor` is the binary of another workspace
//! package, which `cargo test` of this package alone does not build), or
//! the previous version that `hack/build-previous.sh` builds.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn monitor_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_peapod")).with_file_name("peapod-monitor");
    assert!(
        path.is_file(),
        "{} is missing: build the whole workspace first (`cargo build`, \
         or `cargo build --release` for a release test run)",
        path.display()
    );
    path
}

/// A daemon and its monitor.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub daemon: PathBuf,
    pub monitor: PathBuf,
}

impl Binaries {
    /// This version's.
    pub fn current() -> Binaries {
        Binaries {
            daemon: PathBuf::from(env!("CARGO_BIN_EXE_peapod")),
            monitor: monitor_binary(),
        }
    }

    /// The previous version's (`hack/previous-version`), which this one
    /// takes over from.
    pub fn previous() -> Binaries {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/previous/bin");
        let b = Binaries {
            daemon: dir.join("peapod"),
            monitor: dir.join("peapod-monitor"),
        };
        assert!(
            b.daemon.is_file() && b.monitor.is_file(),
            "the previous version of peapod is not built in {}: run hack/build-previous.sh \
             (hack/test.sh does)",
            dir.display()
        );
        b
    }
}
