//! The one retry policy of the server side: jittered exponential backoff
//! (backon's), stopping early when the shutdown token fires.
//!
//! Every loop that waits for PostgreSQL, NATS or an outside system to come
//! back (a projection's lease and sessions, the checkpoint listener, the
//! effect workers) waits through a [`Backoff`], so how Paved backs off is
//! decided here.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// A retry schedule whose steps are `min`, then doubling up to `max`; each
/// wait is between half its step and its step, at random (so replicas that
/// failed together do not come back together), so no wait is longer than
/// `max`. It never runs out; [`Backoff::reset`] after a success.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        // backon adds up to as much again of jitter to each of its delays:
        // its steps are half of ours.
        let builder = ExponentialBuilder::new()
            .with_min_delay(min / 2)
            .with_max_delay(max.max(min) / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self {
            builder,
            delays: builder.build(),
            max: max.max(min),
        }
    }

    /// The schedule of waits for a worker's connection to the database or
    /// NATS: 100 ms up to 10 s.
    pub fn reconnect() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(10))
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max)
    }

    /// Back to the shortest wait (after a success).
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }

    /// Sleeps the next wait; `false` when `shutdown` fired first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_cap_with_jitter_and_reset_to_the_start() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        // Each wait is between half its step and its step.
        let steps = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (w, s) in waits.iter().zip(steps) {
            let s = Duration::from_millis(s);
            assert!(*w >= s / 2 && *w <= s, "{w:?} for a step of {s:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_wait_ends_at_once_on_shutdown() {
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(!b.wait(&stop).await);
    }
}
