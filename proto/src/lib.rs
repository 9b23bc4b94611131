//! Paved's protobuf contract (`paved.v1`).
//!
//! - [`v1`]: the generated messages and tonic services. `Commit` and `Event`
//!   are the stored form of the log; the `*Service` modules are the gRPC API.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, served by gRPC reflection.

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("paved.v1");
}

/// Encoded `FileDescriptorSet` of every `paved.v1` file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("paved_descriptor");
