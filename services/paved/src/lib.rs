//! The `paved` binary's library: everything `main` does, callable from tests.
//!
//! - [`settings`]: flags and `PAVED_*` environment variables.
//! - [`telemetry`]: structured logs (pretty or JSON) and OpenTelemetry export.
//! - [`db`]: creating the database, the pool, the migrations.
//! - [`connections`]: how many connections each listener takes, and for how long.
//! - [`metrics`]: the Prometheus `/metrics` endpoint.
//! - [`operations`]: operator actions on the log (quarantining a message).
//! - [`reflection`]: gRPC server reflection, v1 and v1alpha.
//! - [`registrar`]: the catalog import, given to the template runner for `catalog:register`.
//! - [`request_limit`]: requests over the size limit answered `RESOURCE_EXHAUSTED`.
//! - [`secrets`]: where the survey secret comes from (never generated outside dev mode).
//! - [`startup`]: [`Application`]: `build(settings)` → `port()` →
//!   `run_until_stopped(shutdown)`; the API and the workers in one process or apart.
//! - [`bench`]: `paved bench`, the benchmark with its raw references.
//! - [`demo`]: `paved demo techflow`, the seed's before/after reproduced.
//! - [`cli`]: the command line: `serve`, `api`, `worker`, `migrate`,
//!   `replay`, `token`, and the client verbs (`catalog`, `team`).

pub mod bench;
pub mod cli;
pub mod connections;
pub mod db;
pub mod demo;
pub mod metrics;
pub mod operations;
pub mod reflection;
pub mod registrar;
pub mod request_limit;
pub mod secrets;
pub mod settings;
pub mod startup;
pub mod telemetry;

pub use settings::Settings;
pub use startup::{Application, Roles};
