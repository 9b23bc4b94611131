//! The end-to-end tests of `e2e`, against a current NATS server (≥ 2.12,
//! `sync_interval: always`, as production runs): one of each test process's
//! own (see `private::current_nats_url`). NATS >= 2.12 checks the expected
//! sequence before the message id, caps a stream at 1,000 consumers, and
//! more: what production meets, the machine's 2.9 does not.

/// Against a current NATS.
pub const CURRENT_NATS: bool = true;

#[path = "../e2e/argocd.rs"]
mod argocd;
#[path = "../e2e/argocd_standin.rs"]
mod argocd_standin;
#[path = "../e2e/audit.rs"]
mod audit;
#[path = "../e2e/auth.rs"]
mod auth;
#[path = "../e2e/backstage.rs"]
mod backstage;
#[path = "../e2e/bad_input.rs"]
mod bad_input;
#[path = "../e2e/catalog.rs"]
mod catalog;
#[path = "../e2e/conventions.rs"]
mod conventions;
#[path = "../e2e/delivery.rs"]
mod delivery;
#[path = "../e2e/eventlog.rs"]
mod eventlog;
#[path = "../e2e/events.rs"]
mod events;
#[path = "../e2e/faults.rs"]
mod faults;
#[path = "../e2e/helpers.rs"]
mod helpers;
#[path = "../e2e/partitions.rs"]
mod partitions;
#[path = "../e2e/plugin_webhooks.rs"]
mod plugin_webhooks;
#[path = "../e2e/plugins.rs"]
mod plugins;
#[path = "../e2e/private.rs"]
mod private;
#[path = "../e2e/projection.rs"]
mod projection;
#[path = "../e2e/provisioning.rs"]
mod provisioning;
#[path = "../e2e/python_plugin.rs"]
mod python_plugin;
#[path = "../e2e/surveys.rs"]
mod surveys;
#[path = "../e2e/telemetry.rs"]
mod telemetry;
#[path = "../e2e/templates.rs"]
mod templates;
#[path = "../e2e/webhooks.rs"]
mod webhooks;
