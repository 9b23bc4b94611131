//! What came in through the webhooks, for operators: one log line per
//! delivery, `paved_webhook_deliveries_total{source, outcome}` and
//! `paved_webhook_changes_skipped_total{source, reason}` on `/metrics`, and
//! the last deliveries this process took (`paved webhooks recent`), so
//! "ignored: no service has repository X" is found in a minute.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// Deliveries kept for `paved webhooks recent`, per process.
pub const RECENT: usize = 200;

/// How a delivery ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Something was recorded (or had been, for a redelivery).
    Recorded,
    /// Taken, and nothing in it is for Paved (a reason says why).
    Ignored,
    /// Malformed or refused (a reason says why).
    Refused,
    /// Signature or token missing or wrong: not read.
    BadSignature,
    /// Paved could not take it now (the sender may retry).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recorded => "recorded",
            Self::Ignored => "ignored",
            Self::Refused => "refused",
            Self::BadSignature => "bad_signature",
            Self::Failed => "failed",
        }
    }
}

/// A change of a delivery left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub sha: String,
    /// A category for the metric (`other_service`, `invalid`, …).
    pub kind: String,
    pub reason: String,
}

/// One delivery, as it ended.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub received_at: DateTime<Utc>,
    /// `github`, `argocd`, `incidents`.
    pub source: &'static str,
    /// The sender's event name (`push`, `pull_request`, `on-deployed`, …).
    pub event: String,
    /// The sender's delivery id (`X-GitHub-Delivery`), when it sends one.
    pub id: String,
    pub outcome: Outcome,
    pub reason: String,
    pub http_status: u16,
    /// Events appended now (0 for a redelivery).
    pub recorded: u32,
    pub skipped: Vec<Skipped>,
}

#[derive(Default)]
struct Inner {
    recent: VecDeque<Delivery>,
    outcomes: BTreeMap<(&'static str, Outcome), u64>,
    skipped: BTreeMap<(&'static str, String), u64>,
}

/// The deliveries this process took; cheap to clone.
#[derive(Clone, Default)]
pub struct DeliveryLog {
    inner: Arc<Mutex<Inner>>,
}

impl DeliveryLog {
    /// Counts and keeps `d`, and writes its log line.
    pub fn note(&self, d: Delivery) {
        let skipped: Vec<String> = d
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.sha, s.reason))
            .collect();
        let line = |msg: &str| match d.outcome {
            Outcome::Recorded | Outcome::Ignored => tracing::info!(
                source = d.source, event = %d.event, delivery = %d.id,
                outcome = d.outcome.as_str(), reason = %d.reason, status = d.http_status,
                recorded = d.recorded, skipped = ?skipped, "{msg}"
            ),
            _ => tracing::warn!(
                source = d.source, event = %d.event, delivery = %d.id,
                outcome = d.outcome.as_str(), reason = %d.reason, status = d.http_status,
                "{msg}"
            ),
        };
        line("webhook delivery");
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner.outcomes.entry((d.source, d.outcome)).or_default() += 1;
        for s in &d.skipped {
            *inner.skipped.entry((d.source, s.kind.clone())).or_default() += 1;
        }
        if inner.recent.len() == RECENT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(d);
    }

    /// The last `limit` deliveries, newest first, of `source` (empty: all).
    pub fn recent(&self, source: &str, limit: usize) -> Vec<Delivery> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .recent
            .iter()
            .rev()
            .filter(|d| source.is_empty() || d.source == source)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Deliveries by `(source, outcome)` since start.
    pub fn outcomes(&self) -> Vec<(&'static str, &'static str, u64)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .outcomes
            .iter()
            .map(|((s, o), n)| (*s, o.as_str(), *n))
            .collect()
    }

    /// Changes skipped by `(source, reason)` since start.
    pub fn skipped(&self) -> Vec<(&'static str, String, u64)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .skipped
            .iter()
            .map(|((s, k), n)| (*s, k.clone(), *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(source: &'static str, outcome: Outcome) -> Delivery {
        Delivery {
            received_at: Utc::now(),
            source,
            event: "push".into(),
            id: String::new(),
            outcome,
            reason: String::new(),
            http_status: 200,
            recorded: 0,
            skipped: Vec::new(),
        }
    }

    #[test]
    fn the_last_deliveries_are_kept_newest_first_and_all_are_counted() {
        let log = DeliveryLog::default();
        for i in 0..RECENT + 5 {
            let mut d = delivery("github", Outcome::Recorded);
            d.id = i.to_string();
            log.note(d);
        }
        log.note(delivery("argocd", Outcome::BadSignature));
        let recent = log.recent("github", 3);
        let ids: Vec<&str> = recent.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                (RECENT + 4).to_string(),
                (RECENT + 3).to_string(),
                (RECENT + 2).to_string()
            ]
        );
        assert_eq!(log.recent("", usize::MAX).len(), RECENT);
        assert_eq!(
            log.outcomes(),
            [
                ("argocd", "bad_signature", 1),
                ("github", "recorded", RECENT as u64 + 5)
            ]
        );
    }
}
