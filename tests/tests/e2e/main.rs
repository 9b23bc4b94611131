//! End-to-end tests: the real `paved` (API + workers) on port 0 against the
//! machine's NATS JetStream (2.9) and PostgreSQL, driven through the SDK.
//! Every test has its own stream, subject prefix and database, so they run
//! in parallel. `e2e_current` runs the same tests against a current NATS.

/// Against the machine's NATS 2.9.
pub const CURRENT_NATS: bool = false;

mod argocd;
mod argocd_standin;
mod audit;
mod auth;
mod backstage;
mod backstage_provider;
mod bad_input;
mod catalog;
mod conventions;
mod delivery;
mod eventlog;
mod events;
mod faults;
mod helpers;
mod partitions;
mod plugin_webhooks;
mod plugins;
mod private;
mod projection;
mod provisioning;
mod python_plugin;
mod surveys;
mod telemetry;
mod templates;
mod webhooks;
