//! Where the tests find `peapod-monitor`: beside `peapod`, where the daemon
//! looks for it. It is the binary of another workspace package, which
//! `cargo test` of this package alone does not build.

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
