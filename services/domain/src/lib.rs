//! Paved's pure domain: what the platform's commands may do, decided without I/O.
//!
//! - [`aggregate`]: the [`Aggregate`] trait (`decide` / `evolve`), the decision
//!   [`Context`] and the [`References`] a command may look at.
//! - [`name`]: [`Name`], the DNS-label ids of catalog entities (invariant 8).
//! - [`principal`]: who issues a command and what their role allows.
//! - [`rejection`]: why a command was refused ([`Rejection`], [`FieldViolation`]).
//! - [`validate`]: the field rules shared by every command (text, URLs, labels).
//! - [`catalog`]: the service catalog: [`catalog::Team`], [`catalog::System`],
//!   [`catalog::Service`], with their commands and events.
//! - [`surveys`]: developer surveys (NPS) with anonymous, pseudonymous responses.
//! - [`delivery`]: deployments, changes and incidents; [`dora`]: the DORA
//!   figures computed from them, with the performance levels.
//! - [`provisioning`]: a team's namespaces and databases, requested, planned,
//!   approved and applied through the GitOps repository; the pure renderer.
//! - [`templates`]: golden-path templates (Backstage v1beta3): checked, their
//!   skeletons rendered, their published versions and their runs (tasks).
//! - [`plugins`]: the plugin marketplace (versions, installations, cursors);
//!   [`scope`]: the scopes that say which RPCs a token may call.
//! - [`ops`]: operations on the log itself (quarantining a message that cannot be applied).
//! - [`event`]: [`Event`], the union of every aggregate's events, as stored.
//!
//! Nothing here is async, reads a clock or draws a random number: time, ids
//! and the principal come in through the command and the [`Context`].

pub mod aggregate;
pub mod catalog;
pub mod delivery;
pub mod dora;
pub mod event;
pub mod name;
pub mod ops;
pub mod plugins;
pub mod principal;
pub mod provisioning;
pub mod rejection;
pub mod scope;
pub mod surveys;
pub mod templates;
pub mod validate;

#[cfg(test)]
mod scenario;

pub use aggregate::{Aggregate, AggregateKind, AggregateRef, Context, References};
pub use event::Event;
pub use name::Name;
pub use principal::{Principal, Role};
pub use rejection::{FieldViolation, Precondition, Rejection};
pub use scope::Scope;
