//! Generates the `paved.v1` Rust types and tonic services with the vendored
//! protoc, plus a file descriptor set for gRPC server reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "paved/v1/types.proto",
    "paved/v1/events.proto",
    "paved/v1/catalog.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let include = protoc_bin_vendored::include_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let protos: Vec<PathBuf> = PROTOS.iter().map(PathBuf::from).collect();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("paved_descriptor.bin"))
        .compile_with_config(config, &protos, &[PathBuf::from("."), include])?;
    Ok(())
}
