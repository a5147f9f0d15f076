use std::path::PathBuf;
use std::process::Command;

/// Compiles pause/main.rs on its own: a `no_std` static executable that
/// needs `panic=abort`, which must not apply to the monitor itself.
/// `peapod-monitor` embeds the result.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=pause/main.rs");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("peapod-pause");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let target = std::env::var("TARGET")?;
    let status = Command::new(rustc)
        .args([
            "--edition=2021",
            "--crate-type=bin",
            "--crate-name=peapod_pause",
            "-Cpanic=abort",
            "-Copt-level=s",
            "-Cdebuginfo=0",
            "-Cstrip=symbols",
            "-Clink-arg=-static",
            "-Clink-arg=-no-pie",
            "--target",
            &target,
            "pause/main.rs",
            "-o",
        ])
        .arg(&out)
        .status()?;
    if !status.success() {
        return Err(format!("building pause/main.rs failed: {status}").into());
    }
    Ok(())
}
