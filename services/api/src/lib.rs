//! Paved's gRPC edge.
//!
//! - [`auth`]: bearer tokens → callers (people's hashed tokens in `api_tokens`,
//!   plugins' in `plugin_tokens`).
//! - [`access`]: which RPC needs which scope; the layer that enforces it.
//! - [`request`]: what every mutating RPC starts with (auth, request id, trace).
//! - [`error`]: the one mapping from internal errors to `tonic::Status`.
//! - [`freshness`]: read-your-writes (`min_sequence`) over the projections' checkpoints.
//! - [`metrics`]: command counters for the `/metrics` endpoint.
//! - [`surveys`]: `paved.v1.SurveyService` (anonymous responses, k-anonymous results).
//! - [`events`]: `paved.v1.EventLogService` (filtered reads, live tail).
//! - [`delivery`]: `paved.v1.DeliveryService` and `paved.v1.MetricsService` (DORA).
//! - [`webhooks`]: GitHub and Argo CD notification webhooks (HTTP).
//! - [`provisioning`]: `paved.v1.ProvisioningService` (requests, approvals, plans).
//! - [`templates`]: `paved.v1.TemplateService` (template versions, tasks, time to first deploy).
//! - [`plugins`]: `paved.v1.PluginService` (marketplace, installations, a plugin's cursor).
//! - [`catalog`]: `paved.v1.CatalogService` (commands, queries, Backstage import/export).

pub mod access;
pub mod auth;
pub mod catalog;
pub mod delivery;
pub mod error;
pub mod events;
pub mod freshness;
pub mod metrics;
pub mod plugins;
pub mod provisioning;
pub mod request;
pub mod surveys;
pub mod templates;
pub mod webhooks;

pub use auth::Authenticator;
pub use catalog::CatalogApi;
pub use delivery::{DeliveryApi, MetricsApi};
pub use events::EventLogApi;
pub use freshness::Freshness;
pub use metrics::CommandCounters;
pub use plugins::PluginApi;
pub use provisioning::ProvisioningApi;
pub use surveys::SurveyApi;
pub use templates::TemplateApi;
