use std::path::PathBuf;
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc is built from source so that a fresh machine needs none installed.
    std::env::set_var("PROTOC", protobuf_src::protoc());
    println!("cargo:rerun-if-changed=proto/api.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .generate_default_stubs(true)
        .compile_protos(&["proto/api.proto"], &["proto"])?;

    build_pause()?;
    Ok(())
}

/// Compiles src/pause/main.rs on its own: a `no_std` static executable that
/// needs `panic=abort`, which must not apply to the daemon's own crates.
/// `peapod-monitor` embeds the result.
fn build_pause() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=src/pause/main.rs");
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
            "src/pause/main.rs",
            "-o",
        ])
        .arg(&out)
        .status()?;
    if !status.success() {
        return Err(format!("building src/pause/main.rs failed: {status}").into());
    }
    Ok(())
}
