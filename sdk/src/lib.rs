//! The Rust client for Paved's gRPC API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), paved_sdk::Error> {
//! use paved_sdk::{Client, pb};
//! let client = Client::connect("http://127.0.0.1:50051", "pvd_…").await?;
//! let done = client
//!     .create_team(pb::CreateTeamRequest { name: "payments".into(), ..Default::default() })
//!     .await?;
//! // Read your write: wait until the catalog has applied that commit.
//! let team = client.at(done.sequence).get_team("payments").await?;
//! # Ok(()) }
//! ```
//!
//! Every mutating call gets a fresh request id (a UUIDv7) unless the request
//! already carries one; `UNAVAILABLE` and `ABORTED` answers are retried with
//! jittered exponential backoff *with the same request id*, so a retry never
//! applies twice. Reads are retried on `UNAVAILABLE`.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tonic::codegen::InterceptedService;
use tonic::codegen::tokio_stream::StreamExt as _;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

pub use paved_proto::v1 as pb;
use pb::catalog_service_client::CatalogServiceClient;
use pb::delivery_service_client::DeliveryServiceClient;
use pb::event_log_service_client::EventLogServiceClient;
use pb::metrics_service_client::MetricsServiceClient;
use pb::plugin_service_client::PluginServiceClient;
use pb::provisioning_service_client::ProvisioningServiceClient;
use pb::survey_service_client::SurveyServiceClient;
use pb::template_service_client::TemplateServiceClient;

/// `google.rpc.ErrorInfo` reason of an `ABORTED` for a stale `expected_version`.
pub const VERSION_MISMATCH: &str = "VERSION_MISMATCH";

/// Largest message the client accepts or sends (imports, exports).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// A failed call: the server's status, or a connection problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server's message (the code is [`Error::code`]). Not a `source`:
    /// tonic's own rendering of the status would only repeat the message.
    #[error("{}", .0.message())]
    Status(Status),
    /// The deepest cause only: tonic's chain repeats itself ("transport
    /// error: transport error: tcp connect error: …").
    #[error("cannot connect: {}", root_cause(.0))]
    Connect(tonic::transport::Error),
    #[error("invalid token: must be ASCII")]
    BadToken,
}

impl From<tonic::transport::Error> for Error {
    fn from(e: tonic::transport::Error) -> Self {
        Error::Connect(e)
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

impl From<Status> for Error {
    fn from(s: Status) -> Self {
        Error::Status(s)
    }
}

impl Error {
    /// The gRPC status code (`Unavailable` for connection problems).
    pub fn code(&self) -> Code {
        match self {
            Error::Status(s) => s.code(),
            Error::Connect(_) => Code::Unavailable,
            Error::BadToken => Code::Unauthenticated,
        }
    }

    /// For an `ABORTED` because `expected_version` was stale: the entity's
    /// version now. Read it again, re-apply the change, and send it with the
    /// new version (and a new request id: the old one is bound to the old body).
    pub fn current_version(&self) -> Option<u64> {
        use tonic_types::StatusExt;
        let Error::Status(s) = self else { return None };
        let info = s.get_details_error_info()?;
        if info.reason != VERSION_MISMATCH {
            return None;
        }
        info.metadata.get("current_version")?.parse().ok()
    }

    /// Worth sending again unchanged: the service was unavailable, or lost a
    /// race it may win next time (not a stale `expected_version`: that one
    /// stays stale).
    fn retryable(&self, codes: &[Code]) -> bool {
        codes.contains(&self.code()) && self.current_version().is_none()
    }

    /// `(field, description)` of every field violation of an `INVALID_ARGUMENT`.
    pub fn field_violations(&self) -> Vec<(String, String)> {
        use tonic_types::StatusExt;
        match self {
            Error::Status(s) => s
                .get_details_bad_request()
                .map(|b| {
                    b.field_violations
                        .into_iter()
                        .map(|v| (v.field, v.description))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerToken(MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Transport = InterceptedService<Channel, BearerToken>;

/// How calls are retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(2),
            max_retries: 6,
        }
    }
}

impl RetryPolicy {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
    }
}

/// A server stream of event records (`ReadEvents`, `Subscribe`): each
/// message's record, in order.
#[derive(Debug)]
pub struct Records<T>(tonic::Streaming<T>);

/// A response message that carries one [`pb::EventRecord`].
pub trait CarriesRecord {
    fn into_record(self) -> Option<pb::EventRecord>;
}

impl CarriesRecord for pb::ReadEventsResponse {
    fn into_record(self) -> Option<pb::EventRecord> {
        self.record
    }
}

impl CarriesRecord for pb::SubscribeResponse {
    fn into_record(self) -> Option<pb::EventRecord> {
        self.record
    }
}

impl<T: CarriesRecord> Records<T> {
    /// The next record; `None` when the stream ended.
    pub async fn message(&mut self) -> Result<Option<pb::EventRecord>, Status> {
        loop {
            match self.0.message().await? {
                None => return Ok(None),
                Some(m) => {
                    if let Some(record) = m.into_record() {
                        return Ok(Some(record));
                    }
                }
            }
        }
    }
}

/// A connection to Paved. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    catalog: CatalogServiceClient<Transport>,
    surveys: SurveyServiceClient<Transport>,
    events: EventLogServiceClient<Transport>,
    delivery: DeliveryServiceClient<Transport>,
    metrics: MetricsServiceClient<Transport>,
    provisioning: ProvisioningServiceClient<Transport>,
    templates: TemplateServiceClient<Transport>,
    plugins: PluginServiceClient<Transport>,
    retry: RetryPolicy,
}

impl Client {
    /// Connects to `url` (e.g. `http://127.0.0.1:50051`) with a bearer token.
    pub async fn connect(url: impl Into<String>, token: &str) -> Result<Self, Error> {
        let channel = Endpoint::from_shared(url.into())?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await?;
        Self::with_channel(channel, token)
    }

    /// A client over an existing channel (lazy channels, custom TLS, …).
    pub fn with_channel(channel: Channel, token: &str) -> Result<Self, Error> {
        let value: MetadataValue<_> = format!("Bearer {token}")
            .parse()
            .map_err(|_| Error::BadToken)?;
        let token = BearerToken(value);
        let catalog = CatalogServiceClient::with_interceptor(channel.clone(), token.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let surveys = SurveyServiceClient::with_interceptor(channel.clone(), token.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let delivery = DeliveryServiceClient::with_interceptor(channel.clone(), token.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let metrics = MetricsServiceClient::with_interceptor(channel.clone(), token.clone());
        let provisioning =
            ProvisioningServiceClient::with_interceptor(channel.clone(), token.clone())
                .max_decoding_message_size(MAX_MESSAGE_SIZE);
        let templates = TemplateServiceClient::with_interceptor(channel.clone(), token.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let plugins = PluginServiceClient::with_interceptor(channel.clone(), token.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE);
        let events = EventLogServiceClient::with_interceptor(channel, token)
            .max_decoding_message_size(MAX_MESSAGE_SIZE);
        Ok(Self {
            catalog,
            surveys,
            events,
            delivery,
            metrics,
            provisioning,
            templates,
            plugins,
            retry: RetryPolicy::default(),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The generated client, for anything this wrapper does not cover.
    pub fn catalog(&self) -> CatalogServiceClient<Transport> {
        self.catalog.clone()
    }

    /// Events of a range of the log, oldest first (a server stream).
    pub async fn read_events(
        &self,
        request: pb::ReadEventsRequest,
    ) -> Result<Records<pb::ReadEventsResponse>, Error> {
        self.call_on(&self.events, request, READ_RETRY, |mut c, r| async move {
            c.read_events(r).await
        })
        .await
        .map(Records)
    }

    /// New events from `from_sequence` on (0: from now), until dropped. To
    /// resume after a disconnect, subscribe again from the last sequence + 1.
    pub async fn subscribe(
        &self,
        request: pb::SubscribeRequest,
    ) -> Result<Records<pb::SubscribeResponse>, Error> {
        self.call_on(&self.events, request, READ_RETRY, |mut c, r| async move {
            c.subscribe(r).await
        })
        .await
        .map(Records)
    }

    /// The generated delivery client.
    pub fn delivery(&self) -> DeliveryServiceClient<Transport> {
        self.delivery.clone()
    }

    /// The generated provisioning client.
    pub fn provisioning(&self) -> ProvisioningServiceClient<Transport> {
        self.provisioning.clone()
    }

    /// The generated template client.
    pub fn templates(&self) -> TemplateServiceClient<Transport> {
        self.templates.clone()
    }

    /// The generated plugin client (marketplace reads, installations).
    pub fn plugins(&self) -> PluginServiceClient<Transport> {
        self.plugins.clone()
    }

    /// With a plugin token: the installation's events from after its
    /// cursor, then live, until dropped. At-least-once: what was not
    /// acknowledged comes again on the next subscription.
    pub async fn subscribe_plugin_events(
        &self,
        omit_json: bool,
    ) -> Result<tonic::Streaming<pb::SubscribePluginEventsResponse>, Error> {
        let request = pb::SubscribePluginEventsRequest { omit_json };
        self.call_on(&self.plugins, request, READ_RETRY, |mut c, r| async move {
            c.subscribe_plugin_events(r).await
        })
        .await
    }

    /// With a plugin token: everything up to `sequence` is processed (the
    /// cursor moves there; never back). Safe to repeat.
    pub async fn acknowledge_plugin_events(
        &self,
        sequence: u64,
    ) -> Result<pb::AcknowledgePluginEventsResponse, Error> {
        // The request id is Paved's default, `ack-<installation>-<sequence>`
        // (the same on every retry).
        let request = pb::AcknowledgePluginEventsRequest {
            request_id: String::new(),
            sequence,
        };
        self.call_on(
            &self.plugins,
            request,
            COMMAND_RETRY,
            |mut c, r| async move { c.acknowledge_plugin_events(r).await },
        )
        .await
    }

    /// The generated survey client.
    pub fn surveys(&self) -> SurveyServiceClient<Transport> {
        self.surveys.clone()
    }

    /// Reads that wait until the read model has applied `min_sequence`
    /// (e.g. the `sequence` a command returned).
    pub fn at(&self, min_sequence: u64) -> Reader<'_> {
        Reader {
            client: self,
            min_sequence,
        }
    }

    /// A new request id (UUIDv7: unique and time-ordered).
    pub fn new_request_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    async fn call<Req, Res, F, Fut>(
        &self,
        request: Req,
        retry_on: &[Code],
        f: F,
    ) -> Result<Res, Error>
    where
        Req: Clone,
        F: Fn(CatalogServiceClient<Transport>, Req) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Res>, Status>>,
    {
        self.call_on(&self.catalog, request, retry_on, f).await
    }

    /// Calls `f` on `client`, retrying the codes in `retry_on` with the same request.
    async fn call_on<C, Req, Res, F, Fut>(
        &self,
        client: &C,
        request: Req,
        retry_on: &[Code],
        f: F,
    ) -> Result<Res, Error>
    where
        C: Clone,
        Req: Clone,
        F: Fn(C, Req) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Res>, Status>>,
    {
        let attempt = || async {
            f(client.clone(), request.clone())
                .await
                .map(tonic::Response::into_inner)
                .map_err(Error::Status)
        };
        attempt
            .retry(self.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(|e: &Error| e.retryable(retry_on))
            .await
    }
}

/// Metadata telling the server when a command was first sent (Unix
/// milliseconds), the same on every retry: a retry sent so long ago that the
/// server cannot tell whether it was applied is refused (`FAILED_PRECONDITION`,
/// `REQUEST_TOO_OLD`) instead of being applied twice.
pub const SENT_AT_HEADER: &str = "x-paved-sent-at-ms";

fn sent_at_now() -> MetadataValue<tonic::metadata::Ascii> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    // Digits are always a valid header value.
    MetadataValue::try_from(ms.to_string()).expect("digits")
}

/// Retried for commands: the request id makes a retry safe.
const COMMAND_RETRY: &[Code] = &[Code::Unavailable, Code::Aborted];
/// Retried for reads.
const READ_RETRY: &[Code] = &[Code::Unavailable];

macro_rules! commands {
    ($field:ident: $($(#[$doc:meta])* $method:ident($req:ident) -> $res:ident;)*) => {
        impl Client {
            $(
                $(#[$doc])*
                ///
                /// Fills in `request_id` when empty; retries with the same id
                /// (and the time of the first attempt, see [`SENT_AT_HEADER`]).
                pub async fn $method(&self, mut request: pb::$req) -> Result<pb::$res, Error> {
                    if request.request_id.is_empty() {
                        request.request_id = Self::new_request_id();
                    }
                    let sent_at = sent_at_now();
                    self.call_on(&self.$field, request, COMMAND_RETRY, |mut c, r| {
                        let sent_at = sent_at.clone();
                        async move {
                            let mut r = tonic::Request::new(r);
                            r.metadata_mut().insert(SENT_AT_HEADER, sent_at);
                            c.$method(r).await
                        }
                    })
                    .await
                }
            )*
        }
    };
}

commands! {
    delivery:
    /// Deploys a revision through Argo CD; the response's `id` names the deployment.
    request_deployment(RequestDeploymentRequest) -> RequestDeploymentResponse;
    /// Rolls a deployment back to the revision deployed before it.
    request_rollback(RequestRollbackRequest) -> RequestRollbackResponse;
    /// Records a deployment made elsewhere, with its real times.
    record_deployment(RecordDeploymentRequest) -> RecordDeploymentResponse;
    record_change(RecordChangeRequest) -> RecordChangeResponse;
    open_incident(OpenIncidentRequest) -> OpenIncidentResponse;
    link_incident(LinkIncidentRequest) -> LinkIncidentResponse;
    resolve_incident(ResolveIncidentRequest) -> ResolveIncidentResponse;
}

commands! {
    provisioning:
    /// Asks for a namespace, database or cache to be created, changed or
    /// decommissioned; the response's `id` names the request (`<team>/<number>`).
    request_resource(RequestResourceRequest) -> RequestResourceResponse;
    /// Approves a planned request.
    approve_request(ApproveRequestRequest) -> ApproveRequestResponse;
    /// Rejects (or, as its requester, withdraws) a request not yet approved.
    reject_request(RejectRequestRequest) -> RejectRequestResponse;
}

commands! {
    templates:
    /// Publishes a template with its files as its next version.
    publish_template(PublishTemplateRequest) -> PublishTemplateResponse;
    /// Runs a template for a team (a task); `dry_run` renders and appends nothing.
    create_task(CreateTaskRequest) -> CreateTaskResponse;
    /// Runs a failed task again from its failed step.
    retry_task(RetryTaskRequest) -> RetryTaskResponse;
    /// Proposes a service's upgrade to a newer version of its template.
    upgrade_service(UpgradeServiceRequest) -> UpgradeServiceResponse;
}

commands! {
    plugins:
    /// Publishes a version of a plugin's manifest to the marketplace.
    publish_plugin(PublishPluginRequest) -> PublishPluginResponse;
    deprecate_plugin_version(DeprecatePluginVersionRequest) -> DeprecatePluginVersionResponse;
    /// No new installation or upgrade may pin the version.
    yank_plugin_version(YankPluginVersionRequest) -> YankPluginVersionResponse;
    /// Installs a version (admins); the answer holds the token, once.
    install_plugin(InstallPluginRequest) -> InstallPluginResponse;
    upgrade_installation(UpgradeInstallationRequest) -> UpgradeInstallationResponse;
    /// A new token; the earlier ones work for the overlap.
    rotate_plugin_token(RotatePluginTokenRequest) -> RotatePluginTokenResponse;
    /// Every token of the installation stops.
    uninstall_plugin(UninstallPluginRequest) -> UninstallPluginResponse;
    /// Sends a webhook plugin's dead letter again (admins).
    replay_dead_letter(ReplayDeadLetterRequest) -> ReplayDeadLetterResponse;
}

commands! {
    surveys:
    /// Creates a survey (admins).
    create_survey(CreateSurveyRequest) -> CreateSurveyResponse;
    close_survey(CloseSurveyRequest) -> CloseSurveyResponse;
    /// Answers (or changes the answer to) a survey, anonymously.
    submit_response(SubmitResponseRequest) -> SubmitResponseResponse;
}

commands! {
    catalog:
    /// Creates a team (admins).
    create_team(CreateTeamRequest) -> CreateTeamResponse;
    update_team_profile(UpdateTeamProfileRequest) -> UpdateTeamProfileResponse;
    add_team_member(AddTeamMemberRequest) -> AddTeamMemberResponse;
    remove_team_member(RemoveTeamMemberRequest) -> RemoveTeamMemberResponse;
    set_team_parent(SetTeamParentRequest) -> SetTeamParentResponse;
    retire_team(RetireTeamRequest) -> RetireTeamResponse;
    create_system(CreateSystemRequest) -> CreateSystemResponse;
    update_system(UpdateSystemRequest) -> UpdateSystemResponse;
    transfer_system_ownership(TransferSystemOwnershipRequest) -> TransferSystemOwnershipResponse;
    retire_system(RetireSystemRequest) -> RetireSystemResponse;
    /// Registers a service.
    register_service(RegisterServiceRequest) -> RegisterServiceResponse;
    update_service(UpdateServiceRequest) -> UpdateServiceResponse;
    transfer_service_ownership(TransferServiceOwnershipRequest) -> TransferServiceOwnershipResponse;
    deprecate_service(DeprecateServiceRequest) -> DeprecateServiceResponse;
    retire_service(RetireServiceRequest) -> RetireServiceResponse;
    add_dependency(AddDependencyRequest) -> AddDependencyResponse;
    remove_dependency(RemoveDependencyRequest) -> RemoveDependencyResponse;
    set_slo(SetSloRequest) -> SetSloResponse;
    remove_slo(RemoveSloRequest) -> RemoveSloResponse;
    /// Imports Backstage descriptor YAML (multi-document).
    import_backstage(ImportBackstageRequest) -> ImportBackstageResponse;
}

/// Bytes of YAML per message of a streamed import.
pub const IMPORT_CHUNK: usize = 1024 * 1024;

impl Client {
    /// Imports Backstage YAML of any size (up to 256 MiB) as one import,
    /// sent in [`IMPORT_CHUNK`]s; `sent` is told the bytes sent so far.
    /// Fills in `request_id` when empty and retries with the same id, as
    /// every command.
    pub async fn import_backstage_stream(
        &self,
        request_id: &str,
        yaml: &str,
        dry_run: bool,
        sent: Option<std::sync::Arc<dyn Fn(u64) + Send + Sync>>,
    ) -> Result<pb::ImportBackstageStreamResponse, Error> {
        let id = if request_id.is_empty() {
            Self::new_request_id()
        } else {
            request_id.to_owned()
        };
        let chunks: std::sync::Arc<Vec<Vec<u8>>> = std::sync::Arc::new(
            yaml.as_bytes()
                .chunks(IMPORT_CHUNK)
                .map(<[u8]>::to_vec)
                .collect(),
        );
        let sent_at = sent_at_now();
        self.call_on(&self.catalog, (), COMMAND_RETRY, |mut c, ()| {
            let (chunks, sent, id, sent_at) =
                (chunks.clone(), sent.clone(), id.clone(), sent_at.clone());
            async move {
                let mut total = 0u64;
                let messages: Vec<pb::ImportBackstageStreamRequest> = (0..chunks.len().max(1))
                    .map(|i| pb::ImportBackstageStreamRequest {
                        request_id: if i == 0 { id.clone() } else { String::new() },
                        dry_run,
                        yaml_chunk: chunks.get(i).cloned().unwrap_or_default(),
                    })
                    .collect();
                let stream = tonic::codegen::tokio_stream::iter(messages).map(move |m| {
                    total += m.yaml_chunk.len() as u64;
                    if let Some(f) = &sent {
                        f(total);
                    }
                    m
                });
                let mut r = tonic::Request::new(stream);
                r.metadata_mut().insert(SENT_AT_HEADER, sent_at);
                c.import_backstage_stream(r).await
            }
        })
        .await
    }
}

/// An answer that lacks what its RPC always carries (a server bug).
fn missing(rpc: &str) -> Error {
    Error::from(Status::internal(format!(
        "{rpc} answered without its message"
    )))
}

/// Queries at a minimum sequence; see [`Client::at`].
pub struct Reader<'a> {
    client: &'a Client,
    min_sequence: u64,
}

impl Reader<'_> {
    pub async fn get_team(&self, name: &str) -> Result<pb::Team, Error> {
        let r = pb::GetTeamRequest {
            name: name.to_owned(),
            min_sequence: self.min_sequence,
        };
        self.client
            .call(r, READ_RETRY, |mut c, r| async move { c.get_team(r).await })
            .await?
            .team
            .ok_or_else(|| missing("GetTeam"))
    }

    pub async fn get_system(&self, name: &str) -> Result<pb::System, Error> {
        let r = pb::GetSystemRequest {
            name: name.to_owned(),
            min_sequence: self.min_sequence,
        };
        self.client
            .call(
                r,
                READ_RETRY,
                |mut c, r| async move { c.get_system(r).await },
            )
            .await?
            .system
            .ok_or_else(|| missing("GetSystem"))
    }

    pub async fn get_service(&self, name: &str) -> Result<pb::Service, Error> {
        let r = pb::GetServiceRequest {
            name: name.to_owned(),
            min_sequence: self.min_sequence,
        };
        self.client
            .call(
                r,
                READ_RETRY,
                |mut c, r| async move { c.get_service(r).await },
            )
            .await?
            .service
            .ok_or_else(|| missing("GetService"))
    }

    pub async fn list_teams(
        &self,
        mut r: pb::ListTeamsRequest,
    ) -> Result<pb::ListTeamsResponse, Error> {
        r.min_sequence = self.min_sequence;
        self.client
            .call(
                r,
                READ_RETRY,
                |mut c, r| async move { c.list_teams(r).await },
            )
            .await
    }

    pub async fn list_systems(
        &self,
        mut r: pb::ListSystemsRequest,
    ) -> Result<pb::ListSystemsResponse, Error> {
        r.min_sequence = self.min_sequence;
        self.client
            .call(
                r,
                READ_RETRY,
                |mut c, r| async move { c.list_systems(r).await },
            )
            .await
    }

    pub async fn list_services(
        &self,
        mut r: pb::ListServicesRequest,
    ) -> Result<pb::ListServicesResponse, Error> {
        r.min_sequence = self.min_sequence;
        self.client
            .call(
                r,
                READ_RETRY,
                |mut c, r| async move { c.list_services(r).await },
            )
            .await
    }

    /// Every service matching the filters, following pages.
    pub async fn list_all_services(
        &self,
        r: pb::ListServicesRequest,
    ) -> Result<Vec<pb::Service>, Error> {
        let mut out = Vec::new();
        let mut page = r;
        loop {
            let res = self.list_services(page.clone()).await?;
            out.extend(res.services);
            if res.next_page_token.is_empty() {
                return Ok(out);
            }
            page.page_token = res.next_page_token;
        }
    }

    pub async fn dependency_graph(
        &self,
        mut r: pb::GetDependencyGraphRequest,
    ) -> Result<pb::DependencyGraph, Error> {
        r.min_sequence = self.min_sequence;
        self.client
            .call(r, READ_RETRY, |mut c, r| async move {
                c.get_dependency_graph(r).await
            })
            .await?
            .graph
            .ok_or_else(|| missing("GetDependencyGraph"))
    }

    pub async fn catalog_health(&self, team: &str) -> Result<pb::CatalogHealth, Error> {
        let r = pb::GetCatalogHealthRequest {
            team: team.to_owned(),
            min_sequence: self.min_sequence,
        };
        self.client
            .call(r, READ_RETRY, |mut c, r| async move {
                c.get_catalog_health(r).await
            })
            .await?
            .health
            .ok_or_else(|| missing("GetCatalogHealth"))
    }

    pub async fn get_survey(&self, id: &str) -> Result<pb::Survey, Error> {
        let r = pb::GetSurveyRequest {
            id: id.to_owned(),
            min_sequence: self.min_sequence,
        };
        self.client
            .call_on(&self.client.surveys, r, READ_RETRY, |mut c, r| async move {
                c.get_survey(r).await
            })
            .await?
            .survey
            .ok_or_else(|| Error::from(Status::internal("GetSurvey answered no survey")))
    }

    pub async fn list_surveys(&self, open_only: bool) -> Result<Vec<pb::Survey>, Error> {
        let r = pb::ListSurveysRequest {
            min_sequence: self.min_sequence,
            open_only,
        };
        self.client
            .call_on(&self.client.surveys, r, READ_RETRY, |mut c, r| async move {
                c.list_surveys(r).await
            })
            .await
            .map(|r| r.surveys)
    }

    /// Open surveys the caller has not answered yet (including micro-surveys offered to them).
    pub async fn my_surveys(&self) -> Result<Vec<pb::Survey>, Error> {
        let r = pb::ListMySurveysRequest {
            min_sequence: self.min_sequence,
        };
        self.client
            .call_on(&self.client.surveys, r, READ_RETRY, |mut c, r| async move {
                c.list_my_surveys(r).await
            })
            .await
            .map(|r| r.surveys)
    }

    pub async fn get_deployment(&self, id: &str) -> Result<pb::Deployment, Error> {
        let r = pb::GetDeploymentRequest {
            id: id.to_owned(),
            min_sequence: self.min_sequence,
        };
        self.client
            .call_on(
                &self.client.delivery,
                r,
                READ_RETRY,
                |mut c, r| async move { c.get_deployment(r).await },
            )
            .await?
            .deployment
            .ok_or_else(|| Error::from(Status::internal("GetDeployment answered no deployment")))
    }

    pub async fn list_deployments(
        &self,
        mut r: pb::ListDeploymentsRequest,
    ) -> Result<Vec<pb::Deployment>, Error> {
        r.min_sequence = self.min_sequence;
        self.client
            .call_on(
                &self.client.delivery,
                r,
                READ_RETRY,
                |mut c, r| async move { c.list_deployments(r).await },
            )
            .await
            .map(|r| r.deployments)
    }

    /// DORA figures (`team` or `service` set, or neither for the organisation).
    pub async fn dora(&self, mut r: pb::GetDoraRequest) -> Result<pb::DoraReport, Error> {
        r.min_sequence = self.min_sequence;
        self.client
            .call_on(&self.client.metrics, r, READ_RETRY, |mut c, r| async move {
                c.get_dora(r).await
            })
            .await?
            .report
            .ok_or_else(|| Error::from(Status::internal("GetDora answered no report")))
    }

    /// A template (version 0: the latest), with its document and files.
    pub async fn template(&self, name: &str, version: u64) -> Result<pb::TemplateInfo, Error> {
        let r = pb::GetTemplateRequest {
            name: name.to_owned(),
            version,
            min_sequence: self.min_sequence,
        };
        self.client
            .call_on(
                &self.client.templates,
                r,
                READ_RETRY,
                |mut c, r| async move { c.get_template(r).await },
            )
            .await?
            .template
            .ok_or_else(|| Error::Status(Status::internal("the answer has no template")))
    }

    /// The latest version of every template.
    pub async fn templates(&self) -> Result<Vec<pb::TemplateInfo>, Error> {
        let r = pb::ListTemplatesRequest {
            min_sequence: self.min_sequence,
        };
        self.client
            .call_on(
                &self.client.templates,
                r,
                READ_RETRY,
                |mut c, r| async move { c.list_templates(r).await },
            )
            .await
            .map(|r| r.templates)
    }

    /// A task with its steps.
    pub async fn task(&self, id: &str) -> Result<pb::TemplateTask, Error> {
        let r = pb::GetTaskRequest {
            id: id.to_owned(),
            min_sequence: self.min_sequence,
        };
        self.client
            .call_on(
                &self.client.templates,
                r,
                READ_RETRY,
                |mut c, r| async move { c.get_task(r).await },
            )
            .await?
            .task
            .ok_or_else(|| Error::Status(Status::internal("the answer has no task")))
    }

    /// One page of tasks, newest first.
    pub async fn tasks(&self, mut r: pb::ListTasksRequest) -> Result<pb::ListTasksResponse, Error> {
        r.min_sequence = self.min_sequence;
        self.client
            .call_on(
                &self.client.templates,
                r,
                READ_RETRY,
                |mut c, r| async move { c.list_tasks(r).await },
            )
            .await
    }

    /// Services behind their template's latest version (of `team`, or all).
    pub async fn outdated_services(&self, team: &str) -> Result<Vec<pb::OutdatedService>, Error> {
        let r = pb::ListOutdatedServicesRequest {
            team: team.to_owned(),
            min_sequence: self.min_sequence,
        };
        self.client
            .call_on(
                &self.client.templates,
                r,
                READ_RETRY,
                |mut c, r| async move { c.list_outdated_services(r).await },
            )
            .await
            .map(|r| r.services)
    }

    /// Tasks and time to first deploy per template (and team).
    pub async fn template_stats(
        &self,
        template: &str,
        team: &str,
    ) -> Result<Vec<pb::TemplateStats>, Error> {
        let r = pb::GetTemplateStatsRequest {
            template: template.to_owned(),
            team: team.to_owned(),
            min_sequence: self.min_sequence,
        };
        self.client
            .call_on(
                &self.client.templates,
                r,
                READ_RETRY,
                |mut c, r| async move { c.get_template_stats(r).await },
            )
            .await
            .map(|r| r.stats)
    }

    /// A provisioning request (`<team>/<number>`), with its plan.
    pub async fn provision_request(&self, id: &str) -> Result<pb::ProvisionRequest, Error> {
        let r = pb::GetRequestRequest {
            id: id.to_owned(),
            min_sequence: self.min_sequence,
        };
        self.client
            .call_on(
                &self.client.provisioning,
                r,
                READ_RETRY,
                |mut c, r| async move { c.get_request(r).await },
            )
            .await?
            .request
            .ok_or_else(|| Error::from(Status::internal("GetRequest answered no request")))
    }

    /// One page of provisioning requests, newest first.
    pub async fn provision_requests(
        &self,
        mut r: pb::ListRequestsRequest,
    ) -> Result<pb::ListRequestsResponse, Error> {
        r.min_sequence = self.min_sequence;
        self.client
            .call_on(
                &self.client.provisioning,
                r,
                READ_RETRY,
                |mut c, r| async move { c.list_requests(r).await },
            )
            .await
    }

    /// The provisioned resources of a team (or every team's).
    pub async fn provisioned_resources(
        &self,
        team: &str,
    ) -> Result<Vec<pb::ProvisionedResource>, Error> {
        let r = pb::ListResourcesRequest {
            team: team.to_owned(),
            min_sequence: self.min_sequence,
        };
        self.client
            .call_on(
                &self.client.provisioning,
                r,
                READ_RETRY,
                |mut c, r| async move { c.list_resources(r).await },
            )
            .await
            .map(|r| r.resources)
    }

    pub async fn survey_results(&self, id: &str) -> Result<pb::SurveyResults, Error> {
        let r = pb::GetSurveyResultsRequest {
            id: id.to_owned(),
            min_sequence: self.min_sequence,
        };
        self.client
            .call_on(&self.client.surveys, r, READ_RETRY, |mut c, r| async move {
                c.get_survey_results(r).await
            })
            .await?
            .results
            .ok_or_else(|| Error::from(Status::internal("GetSurveyResults answered no results")))
    }

    pub async fn survey_trend(&self, include_triggered: bool) -> Result<pb::SurveyTrend, Error> {
        let r = pb::GetSurveyTrendRequest {
            min_sequence: self.min_sequence,
            include_triggered,
        };
        self.client
            .call_on(&self.client.surveys, r, READ_RETRY, |mut c, r| async move {
                c.get_survey_trend(r).await
            })
            .await?
            .trend
            .ok_or_else(|| Error::from(Status::internal("GetSurveyTrend answered no trend")))
    }

    pub async fn export_backstage(
        &self,
        include_retired: bool,
    ) -> Result<pb::ExportBackstageResponse, Error> {
        let r = pb::ExportBackstageRequest {
            min_sequence: self.min_sequence,
            include_retired,
        };
        self.client
            .call(r, READ_RETRY, |mut c, r| async move {
                c.export_backstage(r).await
            })
            .await
    }

    /// The catalog as Backstage YAML, in chunks of whole documents (any
    /// size: see [`Client::import_backstage_stream`] for the way back).
    pub async fn export_backstage_stream(
        &self,
        include_retired: bool,
    ) -> Result<tonic::Streaming<pb::ExportBackstageStreamResponse>, Error> {
        let r = pb::ExportBackstageStreamRequest {
            min_sequence: self.min_sequence,
            include_retired,
        };
        self.client
            .call(r, READ_RETRY, |mut c, r| async move {
                c.export_backstage_stream(r).await
            })
            .await
    }

    /// An entity of a kind without RPCs of its own (`api:ops/ArtistLookup`),
    /// with its relations both ways.
    pub async fn get_entity(&self, entity_ref: &str) -> Result<pb::Entity, Error> {
        let r = pb::GetEntityRequest {
            r#ref: entity_ref.to_owned(),
            min_sequence: self.min_sequence,
        };
        self.client
            .call(
                r,
                READ_RETRY,
                |mut c, r| async move { c.get_entity(r).await },
            )
            .await?
            .entity
            .ok_or_else(|| missing("GetEntity"))
    }

    pub async fn list_entities(
        &self,
        mut r: pb::ListEntitiesRequest,
    ) -> Result<pb::ListEntitiesResponse, Error> {
        r.min_sequence = self.min_sequence;
        self.client
            .call(
                r,
                READ_RETRY,
                |mut c, r| async move { c.list_entities(r).await },
            )
            .await
    }
}

impl Client {
    pub async fn get_team(&self, name: &str) -> Result<pb::Team, Error> {
        self.at(0).get_team(name).await
    }
    pub async fn get_system(&self, name: &str) -> Result<pb::System, Error> {
        self.at(0).get_system(name).await
    }
    pub async fn get_service(&self, name: &str) -> Result<pb::Service, Error> {
        self.at(0).get_service(name).await
    }
    pub async fn get_deployment(&self, id: &str) -> Result<pb::Deployment, Error> {
        self.at(0).get_deployment(id).await
    }
    pub async fn dora(&self, r: pb::GetDoraRequest) -> Result<pb::DoraReport, Error> {
        self.at(0).dora(r).await
    }

    /// The last webhook deliveries the API took, newest first (admins).
    pub async fn webhook_deliveries(
        &self,
        r: pb::ListWebhookDeliveriesRequest,
    ) -> Result<Vec<pb::WebhookDelivery>, Error> {
        self.call_on(&self.delivery, r, READ_RETRY, |mut c, r| async move {
            c.list_webhook_deliveries(r).await
        })
        .await
        .map(|r| r.deliveries)
    }
}
