//! Generates the `paved.v1` Rust types and tonic services with the vendored
//! protoc, plus a file descriptor set for gRPC server reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "paved/v1/types.proto",
    "paved/v1/events.proto",
    "paved/v1/catalog.proto",
    "paved/v1/surveys.proto",
    "paved/v1/eventlog.proto",
    "paved/v1/delivery.proto",
    "paved/v1/provisioning.proto",
    "paved/v1/templates.proto",
    "paved/v1/plugins.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let include = protoc_bin_vendored::include_path()?;
    let descriptor_path = out_dir.join("paved_descriptor.bin");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let protos: Vec<PathBuf> = PROTOS.iter().map(PathBuf::from).collect();
    tonic_prost_build::configure()
        // Sorted maps: a commit's bytes are canonical (the same events encode the same way).
        .btree_map(".")
        // Well-known types with proto3 JSON support.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf.Timestamp", "crate::wkt::Timestamp")
        .extern_path(".google.protobuf", "::pbjson_types")
        .file_descriptor_set_path(&descriptor_path)
        .compile_with_config(config, &protos, &[PathBuf::from("."), include])?;
    // serde impls following the proto3 JSON mapping, for JSON renderings.
    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .btree_map(["."])
        // Zero values too: a consumer must tell NPS 0 from a missing field.
        .emit_fields()
        .build(&[".paved"])?;
    Ok(())
}
