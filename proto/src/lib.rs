//! Paved's protobuf contract (`paved.v1`).
//!
//! - [`v1`]: the generated messages and tonic services. `Commit` and `Event`
//!   are the stored form of the log; the `*Service` modules are the gRPC API.
//!   Every message has serde impls following the proto3 JSON mapping.
//! - [`wkt`]: the well-known types (Timestamp, FieldMask, …).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, served by gRPC reflection.

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("paved.v1");
    include!(concat!(env!("OUT_DIR"), "/paved.v1.serde.rs"));
}

mod timestamp;

/// Well-known types (`google.protobuf.*`) with proto3 JSON support; the
/// Timestamp is Paved's own (see [`timestamp`]).
pub mod wkt {
    pub use crate::timestamp::Timestamp;
    pub use pbjson_types::{
        Any, BoolValue, BytesValue, DoubleValue, Duration, Empty, FieldMask, FloatValue,
        Int32Value, Int64Value, ListValue, NullValue, StringValue, Struct, UInt32Value,
        UInt64Value, Value,
    };
}

/// Encoded `FileDescriptorSet` of every `paved.v1` file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("paved_descriptor");

/// The JSON shape every hand-built rendering shares with the proto3 JSON
/// mapping: camelCase keys, timestamps as RFC 3339 in UTC with a `Z`, and
/// 64-bit integers as strings (JavaScript numbers cannot hold them).
pub mod json {
    /// `#[serde(serialize_with = "paved_proto::json::u64_string")]`.
    pub fn u64_string<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }
}

/// What a command's answer says of it, for the responses that are
/// `{sequence, events}` (plus, for some, the id of what they made): the
/// API builds them, clients print them. One list of those responses, here.
pub mod answer {
    use crate::v1 as pb;

    /// A command's answer: where it landed in the log and what it named.
    pub trait CommandAnswer {
        /// (sequence, events appended).
        fn recorded(&self) -> (u64, u32);
        /// The id it names (a deployment, a provisioning request), if any.
        fn id(&self) -> &str {
            ""
        }
    }

    /// An answer that is nothing but `{sequence, events}`.
    pub trait Recorded: CommandAnswer {
        fn recorded_at(sequence: u64, events: u32) -> Self;
    }

    macro_rules! answers {
        (with id: $($t:ty),* $(,)?) => {
            $(impl CommandAnswer for $t {
                fn recorded(&self) -> (u64, u32) {
                    (self.sequence, self.events)
                }
                fn id(&self) -> &str {
                    &self.id
                }
            })*
        };
        ($($t:ty),* $(,)?) => {
            $(impl CommandAnswer for $t {
                fn recorded(&self) -> (u64, u32) {
                    (self.sequence, self.events)
                }
            }
            impl Recorded for $t {
                fn recorded_at(sequence: u64, events: u32) -> Self {
                    Self { sequence, events }
                }
            })*
        };
    }

    answers!(
        pb::CreateTeamResponse,
        pb::UpdateTeamProfileResponse,
        pb::AddTeamMemberResponse,
        pb::RemoveTeamMemberResponse,
        pb::SetTeamParentResponse,
        pb::RetireTeamResponse,
        pb::CreateSystemResponse,
        pb::UpdateSystemResponse,
        pb::TransferSystemOwnershipResponse,
        pb::RetireSystemResponse,
        pb::RegisterServiceResponse,
        pb::UpdateServiceResponse,
        pb::TransferServiceOwnershipResponse,
        pb::DeprecateServiceResponse,
        pb::RetireServiceResponse,
        pb::AddDependencyResponse,
        pb::RemoveDependencyResponse,
        pb::SetSloResponse,
        pb::RemoveSloResponse,
        pb::CreateSurveyResponse,
        pb::CloseSurveyResponse,
        pb::SubmitResponseResponse,
        pb::PublishPluginResponse,
        pb::DeprecatePluginVersionResponse,
        pb::YankPluginVersionResponse,
        pb::UninstallPluginResponse,
        pb::ReplayDeadLetterResponse,
    );
    answers!(with id:
        pb::RequestDeploymentResponse,
        pb::RequestRollbackResponse,
        pb::RecordChangeResponse,
        pb::OpenIncidentResponse,
        pb::LinkIncidentResponse,
        pb::ResolveIncidentResponse,
        pb::RequestResourceResponse,
        pb::ApproveRequestResponse,
        pb::RejectRequestResponse,
    );
}
