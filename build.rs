fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc is built from source so that a fresh machine needs none installed.
    std::env::set_var("PROTOC", protobuf_src::protoc());
    println!("cargo:rerun-if-changed=proto/api.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .generate_default_stubs(true)
        .compile_protos(&["proto/api.proto"], &["proto"])?;
    Ok(())
}
