//! The OTLP exporter, counted: spans exported and batches that failed go to
//! `/metrics`, and a failure is logged at most once a minute (a collector
//! that is down must not flood the logs it would have received).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

static EXPORTED: AtomicU64 = AtomicU64::new(0);
static FAILED_BATCHES: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// How often an export failure is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What the exporter did since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans the collector accepted.
    pub exported_spans: u64,
    /// Export calls that failed.
    pub failed_batches: u64,
    /// Spans in those calls (lost).
    pub dropped_spans: u64,
}

pub fn export_stats() -> ExportStats {
    ExportStats {
        exported_spans: EXPORTED.load(Ordering::Relaxed),
        failed_batches: FAILED_BATCHES.load(Ordering::Relaxed),
        dropped_spans: DROPPED.load(Ordering::Relaxed),
    }
}

#[derive(Debug)]
pub struct Counting<E> {
    inner: E,
    endpoint: String,
    last_logged: Mutex<Option<Instant>>,
}

impl<E> Counting<E> {
    pub fn new(inner: E, endpoint: &str) -> Self {
        Self {
            inner,
            endpoint: endpoint.to_owned(),
            last_logged: Mutex::new(None),
        }
    }

    fn failed(&self, spans: u64, error: &dyn std::fmt::Display) {
        FAILED_BATCHES.fetch_add(1, Ordering::Relaxed);
        DROPPED.fetch_add(spans, Ordering::Relaxed);
        let mut last = self.last_logged.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            *last = Some(Instant::now());
            let s = export_stats();
            tracing::warn!(
                endpoint = %self.endpoint,
                error = %error,
                failed_batches = s.failed_batches,
                dropped_spans = s.dropped_spans,
                "spans could not be exported (logged once a minute; see paved_trace_export_failures_total)"
            );
        }
    }
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                EXPORTED.fetch_add(spans, Ordering::Relaxed);
            }
            Err(e) => self.failed(spans, e),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}
