//! What the API counts, read by the binary's `/metrics` endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use paved_eventlog::{ExecuteError, Executed};

/// Commands by outcome, since start.
#[derive(Clone, Debug, Default)]
pub struct CommandCounters(Arc<[AtomicU64; 5]>);

/// The outcomes counted, in the order of [`CommandCounters::snapshot`]:
/// `replayed` is a retried request id answered with its original result.
pub const OUTCOMES: [&str; 5] = ["applied", "unchanged", "rejected", "failed", "replayed"];

impl CommandCounters {
    pub fn record(&self, result: &Result<Executed, ExecuteError>) {
        let i = match result {
            Ok(e) if e.replayed => 4,
            Ok(e) if e.events > 0 => 0,
            Ok(_) => 1,
            Err(ExecuteError::Rejected(_)) => 2,
            Err(_) => 3,
        };
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `(outcome, count)` for each of [`OUTCOMES`].
    pub fn snapshot(&self) -> [(&'static str, u64); 5] {
        std::array::from_fn(|i| (OUTCOMES[i], self.0[i].load(Ordering::Relaxed)))
    }
}
