//! Latency histograms whose buckets carry exemplars: the trace id of a
//! sampled span that landed there, so a dashboard can jump from a spike on
//! `/metrics` (OpenMetrics exposition) to the trace that made it.
//!
//! One histogram per concern, process-wide: [`RPC_SERVER`] (every gRPC call
//! the API handles: commands and reads), [`PROJECTION_APPLY`] (one batch of
//! a projection, applied and checkpointed) and [`ARGOCD_CLIENT`] (each call
//! the deployer makes to Argo CD). The binary registers them on `/metrics`.

use std::sync::LazyLock;
use std::time::Duration;

use opentelemetry::trace::TraceContextExt;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tracing_opentelemetry::OpenTelemetrySpanExt;

type Labels = Vec<(&'static str, String)>;
type Histogram = HistogramWithExemplars<Labels>;

/// Buckets from 0.25 ms to about 16 s, doubling: local calls take well
/// under a millisecond, a projection batch or an Argo CD call seconds.
fn buckets() -> Histogram {
    HistogramWithExemplars::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_25, 2.0, 17,
    ))
}

/// One latency histogram, by its labels.
#[derive(Debug)]
pub struct Latency {
    name: &'static str,
    help: &'static str,
    family: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Latency {
    fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            family: Family::new_with_constructor(buckets),
        }
    }

    /// Records `elapsed` under `labels`; the exemplar is `span`'s trace
    /// when it is sampled (an unsampled trace cannot be opened).
    pub fn observe(
        &self,
        labels: &[(&'static str, &str)],
        elapsed: Duration,
        span: &tracing::Span,
    ) {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.family
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64(), exemplar(span), None);
    }

    /// Adds this histogram to a registry (what `/metrics` encodes).
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            self.name,
            self.help,
            prometheus_client::registry::Unit::Seconds,
            self.family.clone(),
        );
    }
}

/// `trace_id` of `span` when it is sampled.
fn exemplar(span: &tracing::Span) -> Option<Labels> {
    let cx = span.context();
    let s = cx.span();
    let s = s.span_context();
    (s.is_valid() && s.is_sampled()).then(|| vec![("trace_id", s.trace_id().to_string())])
}

/// Every gRPC call the API handled, by `rpc_service`, `rpc_method` and
/// `rpc_grpc_status_code`.
pub static RPC_SERVER: LazyLock<Latency> = LazyLock::new(|| {
    Latency::new(
        "rpc_server_duration",
        "Time to handle a gRPC call (commands and reads), by method and status code",
    )
});

/// Each projection batch, from the first message in hand to its checkpoint committed.
pub static PROJECTION_APPLY: LazyLock<Latency> = LazyLock::new(|| {
    Latency::new(
        "projection_apply_duration",
        "Time to apply one batch of a projection and commit its checkpoint",
    )
});

/// Each HTTP call the deployer made to Argo CD, by method, route and status.
pub static ARGOCD_CLIENT: LazyLock<Latency> = LazyLock::new(|| {
    Latency::new(
        "argocd_client_duration",
        "Time of one HTTP call to Argo CD, by method, route and status code (0: no answer)",
    )
});

/// Every histogram, for the metrics endpoint.
pub fn register_all(registry: &mut Registry) {
    for l in [&*RPC_SERVER, &*PROJECTION_APPLY, &*ARGOCD_CLIENT] {
        l.register(registry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_exposed_in_seconds_with_its_labels() {
        let l = Latency::new("test_duration", "A test");
        l.observe(
            &[("projection", "catalog")],
            Duration::from_millis(3),
            &tracing::Span::none(),
        );
        let mut registry = Registry::with_prefix("paved");
        l.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("# TYPE paved_test_duration_seconds histogram"),
            "{out}"
        );
        assert!(
            out.contains("paved_test_duration_seconds_count{projection=\"catalog\"} 1"),
            "{out}"
        );
        // No span, no exemplar.
        assert!(!out.contains("trace_id"), "{out}");
    }
}
