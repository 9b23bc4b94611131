//! Paved's workers: everything that reads the log after the API wrote it.
//!
//! - [`runtime`]: the projection runtime ([`ProjectionWorker`]: durable
//!   consumer, batch + checkpoint in one transaction, ack after commit, stop
//!   on an undecodable message) and [`runtime::rebuild`] (shadow rebuild and swap).
//! - [`effects`]: workers acting on the outside world (the Argo CD deployer).
//! - [`lease`]: one active worker per job (advisory lock, checked before acting).
//! - [`checkpoint`]: signed Merkle checkpoints of the log (tamper evidence).
//! - [`projections`]: the read models: [`projections::CatalogProjection`].
//! - [`registry`]: the one list of read models and effect workers.

pub mod checkpoint;
pub mod effects;
pub mod lease;
pub mod projections;
pub mod registry;
pub mod runtime;

pub use runtime::{
    Health, Outcome, Projection, ProjectionError, ProjectionStatus, ProjectionWorker,
};
