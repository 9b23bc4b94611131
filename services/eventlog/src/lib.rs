//! Paved's event log on NATS JetStream, and the one write path.
//!
//! - [`log`]: the stream (created or verified at start), subjects, the
//!   optimistic append (`Nats-Expected-Last-Subject-Sequence` + `Nats-Msg-Id`)
//!   and the reads the write path needs.
//! - [`codec`]: domain events <-> `paved.v1` protobuf; a commit <-> the bytes
//!   of one message. Strict: what does not decode is an error.
//! - [`execute`]: [`Executor::execute`], load (cached) → decide → append →
//!   retry on conflict / answer duplicates. The API and the side-effect
//!   workers both write through it.
//! - [`quarantine`]: messages an operator set aside, honoured by projections and verify.
//! - [`latency`]: latency histograms with trace exemplars, for `/metrics`.
//! - [`trace`]: W3C trace context from the request, through the log, into projections.
//! - [`readmodel`]: the names the projections and the API share in PostgreSQL.
//! - [`checkpoints`]: the checkpoint store, every statement on the projections' checkpoints.
//! - [`retry`]: the one retry policy (jittered exponential backoff).
//! - [`survey_keys`]: survey pseudonyms and the sealing of survey responses.

pub mod audit;
pub mod checkpoints;
pub mod codec;
pub mod execute;
pub mod latency;
pub mod log;
pub mod quarantine;
pub mod readmodel;
pub mod retry;
pub mod survey_keys;
pub mod trace;

pub use codec::{Commit, DecodeError, StoredCommit};
pub use execute::{CommandMeta, ExecuteError, Executed, Executor};
pub use log::{EventLog, LogConfig, LogError, TraceContext};
pub use survey_keys::SurveyKeys;
