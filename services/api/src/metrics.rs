//! What the API counts, read by the binary's `/metrics` endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use paved_eventlog::{ExecuteError, Executed};

/// Commands by outcome, since start.
#[derive(Clone, Debug, Default)]
pub struct CommandCounters(Arc<[AtomicU64; 4]>);

/// The outcomes counted, in the order of [`CommandCounters::snapshot`].
pub const OUTCOMES: [&str; 4] = ["applied", "unchanged", "rejected", "failed"];

impl CommandCounters {
    pub fn record(&self, result: &Result<Executed, ExecuteError>) {
        let i = match result {
            Ok(e) if e.events > 0 => 0,
            Ok(_) => 1,
            Err(ExecuteError::Rejected(_)) => 2,
            Err(_) => 3,
        };
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `(outcome, count)` for each of [`OUTCOMES`].
    pub fn snapshot(&self) -> [(&'static str, u64); 4] {
        std::array::from_fn(|i| (OUTCOMES[i], self.0[i].load(Ordering::Relaxed)))
    }
}
