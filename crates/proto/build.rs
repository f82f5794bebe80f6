//! Compiles `proto/switchboard/v1` with the vendored protoc into OUT_DIR.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let protos: Vec<PathBuf> = ["audit", "connection", "deployment", "resolver", "workspace"]
        .iter()
        .map(|name| root.join(format!("switchboard/v1/{name}.proto")))
        .collect();
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    // SAFETY of intent: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe_set_protoc()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("switchboard_descriptor.bin"))
        .client_mod_attribute(".", r#"#[cfg(feature = "grpc-client")]"#)
        .server_mod_attribute(".", r#"#[cfg(feature = "grpc-server")]"#)
        .compile_protos(&protos, &[root])?;
    Ok(())
}

fn unsafe_set_protoc() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Only place the environment is written; the build script has no other threads.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("PROTOC", protoc);
    }
    Ok(())
}
