//! What every mutating RPC starts with: who asks, under which request id,
//! in which trace and correlation.

use paved_domain::validate::Violations;
use paved_domain::{Aggregate, Name};
use paved_eventlog::{CommandMeta, Executed, Executor, TraceContext};
use tonic::{Request, Status};

use crate::auth::Authenticator;
use crate::error;
use crate::metrics::CommandCounters;

/// Longest accepted `request_id`.
pub const MAX_REQUEST_ID: usize = 128;
/// Optional metadata: the correlation id of the user intent (defaults to the request id).
pub const CORRELATION_HEADER: &str = "x-correlation-id";
/// Optional metadata: the id of the command or event that caused this request.
pub const CAUSATION_HEADER: &str = "x-causation-id";
/// Optional metadata: a free-text reason recorded with the commit.
pub const REASON_HEADER: &str = "x-paved-reason";
/// Optional metadata: when the client first sent this request, in Unix
/// milliseconds, the same on every retry (the Rust SDK sets it). A retry
/// too old to be checked against what the entity remembers is refused.
pub const SENT_AT_HEADER: &str = "x-paved-sent-at-ms";

/// Requests that carry a client-chosen idempotency key, and most of them an
/// optional `expected_version` (optimistic concurrency).
pub trait Idempotent {
    fn request_id(&self) -> &str;
    fn expected_version(&self) -> Option<u64> {
        None
    }
}

macro_rules! idempotent {
    ($($t:ty),* $(,)?) => {
        $(impl Idempotent for $t {
            fn request_id(&self) -> &str {
                &self.request_id
            }
        })*
    };
}

macro_rules! versioned {
    ($($t:ty),* $(,)?) => {
        $(impl Idempotent for $t {
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn expected_version(&self) -> Option<u64> {
                self.expected_version
            }
        })*
    };
}

use paved_proto::v1 as pb;
// One aggregate per command: the version of that aggregate.
versioned!(
    pb::CreateTeamRequest,
    pb::UpdateTeamProfileRequest,
    pb::AddTeamMemberRequest,
    pb::RemoveTeamMemberRequest,
    pb::SetTeamParentRequest,
    pb::RetireTeamRequest,
    pb::RetireSystemRequest,
    pb::DeprecateServiceRequest,
    pb::RetireServiceRequest,
    pb::CreateSystemRequest,
    pb::UpdateSystemRequest,
    pb::TransferSystemOwnershipRequest,
    pb::TransferServiceOwnershipRequest,
    pb::RegisterServiceRequest,
    pb::UpdateServiceRequest,
    pb::AddDependencyRequest,
    pb::RemoveDependencyRequest,
    pb::SetSloRequest,
    pb::RemoveSloRequest,
    pb::CreateSurveyRequest,
    pb::CloseSurveyRequest,
    pb::RequestDeploymentRequest,
    pb::RequestRollbackRequest,
    pb::RecordDeploymentRequest,
    pb::RecordChangeRequest,
    pb::OpenIncidentRequest,
    pb::LinkIncidentRequest,
    pb::ResolveIncidentRequest,
);
// Many aggregates (an import), or one whose version the caller cannot see
// (a survey response is anonymous).
idempotent!(pb::ImportBackstageRequest, pb::SubmitResponseRequest);
// A team's tenancy: its version is not the caller's business.
idempotent!(pb::RequestResourceRequest);
// A template's versions and its tasks: versions the caller does not pick.
// A plugin's versions and installations: versions the caller does not pick.
idempotent!(
    pb::PublishPluginRequest,
    pb::DeprecatePluginVersionRequest,
    pb::YankPluginVersionRequest,
    pb::InstallPluginRequest,
    pb::UpgradeInstallationRequest,
    pb::RotatePluginTokenRequest,
    pb::UninstallPluginRequest,
    pb::AcknowledgePluginEventsRequest,
    pb::ReplayDeadLetterRequest,
);
idempotent!(
    pb::PublishTemplateRequest,
    pb::CreateTaskRequest,
    pb::RetryTaskRequest,
    pb::UpgradeServiceRequest,
);

/// 1..=128 characters of `[A-Za-z0-9._:/-]`.
pub fn check_request_id(v: &mut Violations, id: &str) {
    if id.is_empty() {
        v.push(
            "request_id",
            "is required (an idempotency key chosen by the client, e.g. a UUID)",
        );
    } else if id.len() > MAX_REQUEST_ID
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
    {
        v.push(
            "request_id",
            format!("must be 1..={MAX_REQUEST_ID} characters of [A-Za-z0-9._:/-]"),
        );
    }
}

fn header(request: &Request<impl Sized>, name: &str) -> String {
    request
        .metadata()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Authenticates a writer and builds the command meta. Returns the message
/// and a `Violations` already holding any request-id problem, so the caller
/// adds its own and reports all of them together.
pub async fn begin<T: Idempotent>(
    auth: &Authenticator,
    request: Request<T>,
) -> Result<(CommandMeta, T, Violations), Status> {
    let principal = auth.authenticate_writer(&request).await?;
    begin_as(principal, request)
}

/// [`begin`] for a command any authenticated caller may try (the domain
/// decides who): a plugin acknowledging its own events, say.
pub async fn begin_any<T: Idempotent>(
    auth: &Authenticator,
    request: Request<T>,
) -> Result<(CommandMeta, T, Violations), Status> {
    let principal = auth.authenticate(&request).await?;
    begin_as(principal, request)
}

fn begin_as<T: Idempotent>(
    principal: paved_domain::Principal,
    request: Request<T>,
) -> Result<(CommandMeta, T, Violations), Status> {
    let mut meta = meta_of(&request, principal);
    let message = request.into_inner();
    let mut v = Violations::new();
    check_request_id(&mut v, message.request_id());
    meta.command_id = message.request_id().to_owned();
    meta.correlation_id = if meta.correlation_id.is_empty() {
        meta.command_id.clone()
    } else {
        meta.correlation_id
    };
    meta.expected_version = message.expected_version();
    Ok((meta, message, v))
}

/// [`begin`] for a client stream: authenticates the writer from the
/// headers; the request id comes with the stream's first message, so the
/// meta's `command_id` (and a correlation id the headers did not give) is
/// left for the caller to fill in.
pub async fn begin_stream<T>(
    auth: &Authenticator,
    request: Request<T>,
) -> Result<(CommandMeta, T), Status> {
    let principal = auth.authenticate_writer(&request).await?;
    let meta = meta_of(&request, principal);
    Ok((meta, request.into_inner()))
}

/// The command meta the request's headers give (not its id).
fn meta_of<T>(request: &Request<T>, principal: paved_domain::Principal) -> CommandMeta {
    // The server span already continues the caller's trace (see the
    // binary's gRPC layer); the commit will name its producer span. This is
    // the fallback stored when no OpenTelemetry layer runs: the caller's
    // own context, if it is well-formed.
    let trace = paved_eventlog::trace::validated(TraceContext {
        traceparent: header(request, "traceparent"),
        tracestate: header(request, "tracestate"),
    });
    let mut meta = CommandMeta::new(String::new(), principal);
    meta.correlation_id = header(request, CORRELATION_HEADER);
    meta.causation_id = header(request, CAUSATION_HEADER);
    meta.reason = header(request, REASON_HEADER);
    meta.sent_at = header(request, SENT_AT_HEADER)
        .parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis);
    meta.trace = trace;
    meta
}

/// The answer of an RPC whose answer is just `{sequence, events}`.
pub fn recorded<R: paved_proto::answer::Recorded>(done: Executed) -> R {
    R::recorded_at(done.sequence, done.events)
}

/// Reports the violations collected from a request, or executes its
/// command (counting the outcome): how every command RPC ends.
pub async fn execute<A: Aggregate>(
    executor: &Executor,
    counters: &CommandCounters,
    v: Violations,
    id: Option<Name>,
    command: Option<A::Command>,
    meta: &CommandMeta,
) -> Result<Executed, Status> {
    let (Some(id), Some(command), true) = (id, command, v.is_empty()) else {
        return Err(error::invalid(v.into_vec()));
    };
    let result = executor.execute::<A>(&id, &command, meta).await;
    counters.record(&result);
    result.map_err(error::execute)
}
