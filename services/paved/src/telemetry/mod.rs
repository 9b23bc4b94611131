//! Structured logs (pretty or JSON, each line inside a span carrying its
//! `trace_id` and `span_id`) and OpenTelemetry traces.
//!
//! The tracing-opentelemetry layer is installed (unless `OTEL_SDK_DISABLED`
//! is `true`), so spans have W3C ids and a commit records its producer span
//! whether or not anything is exported: what the log stores does not
//! depend on export being on.
//! Export (OTLP/gRPC) follows the OpenTelemetry specification's variables:
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (plus `_HEADERS`, `_TIMEOUT`), `OTEL_TRACES_EXPORTER=none`,
//! `OTEL_SDK_DISABLED`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default: parent-based,
//! always on, so a caller's "not sampled" is honoured) and `OTEL_BSP_*`.

mod export;
mod grpc;
mod logs;

pub use export::{ExportStats, export_stats};
pub use grpc::GrpcTraceLayer;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// How telemetry is set up.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub format: LogFormat,
    /// Where spans are exported over OTLP/gRPC. `None`: the standard
    /// `OTEL_*` variables decide (nothing is exported without an endpoint).
    pub otlp_endpoint: Option<String>,
    /// No spans at all, as `OTEL_SDK_DISABLED=true` also says.
    pub sdk_disabled: bool,
}

/// Flushes and stops the trace exporter when dropped.
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// Exports every finished span now (tests, and before a planned exit).
    pub fn flush(&self) -> Result<(), String> {
        self.provider.force_flush().map_err(|e| e.to_string())
    }

    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.exporting
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        match self.provider.shutdown() {
            Ok(()) => {}
            Err(e) if self.exporting => {
                eprintln!("warning: the last spans could not be exported at shutdown: {e}");
            }
            Err(_) => {}
        }
    }
}

/// A variable of the environment, unset when empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `OTEL_SDK_DISABLED=true`: no spans at all (the specification's "disable
/// the SDK"); commits then keep the caller's checked trace context.
fn sdk_disabled() -> bool {
    var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The OTLP endpoint, as the specification orders the variables.
fn endpoint(explicit: Option<String>) -> Option<String> {
    if sdk_disabled() {
        return None;
    }
    if var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")) {
        return None;
    }
    explicit
        .or_else(|| var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

/// The resource: what the detectors find (`OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`), the service named `paved` unless they name
/// it, and the version.
fn resource() -> opentelemetry_sdk::Resource {
    let detected = opentelemetry_sdk::Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|v| !v.as_str().starts_with("unknown_service"));
    let builder = opentelemetry_sdk::Resource::builder().with_attribute(
        opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    );
    if named {
        builder.build()
    } else {
        builder.with_service_name("paved").build()
    }
}

/// Links a batch span may carry: one per message of the largest batch.
const MAX_LINKS: u32 = 1024;

fn provider(endpoint: Option<&str>) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder()
        .with_resource(resource())
        .with_max_links_per_span(MAX_LINKS);
    let Some(endpoint) = endpoint else {
        return builder.build();
    };
    use opentelemetry_otlp::WithExportConfig as _;
    match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
    {
        Ok(exporter) => builder
            .with_batch_exporter(export::Counting::new(exporter, endpoint))
            .build(),
        Err(e) => {
            eprintln!("warning: the OTLP exporter to {endpoint} did not start: {e}");
            builder.build()
        }
    }
}

/// Installs the global subscriber with the format `format`; exports spans
/// when the `OTEL_*` variables say so. See [`init_with`].
pub fn init(format: LogFormat) -> Telemetry {
    init_with(Options {
        format,
        ..Options::default()
    })
}

/// Installs the global subscriber. Logs follow `RUST_LOG` (default
/// `info`); spans of level INFO and above are traced whatever `RUST_LOG`
/// says (quieter logs must not lose traces). Safe to call twice (the second
/// call installs nothing).
pub fn init_with(options: Options) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let disabled = options.sdk_disabled || sdk_disabled();
    let endpoint = endpoint(options.otlp_endpoint).filter(|_| !disabled);
    let provider = provider(endpoint.as_deref());
    let otel = (!disabled).then(|| {
        // What costs on every poll of an instrumented future, and is not
        // used: the active OpenTelemetry context (Paved reads a span's
        // context from the span), busy/idle times, thread and code attributes.
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("paved"))
            .with_context_activation(false)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = logs::layer(options.format, ansi, std::io::stderr).with_filter(filter);
    let result = tracing_subscriber::registry()
        .with(otel)
        .with(fmt)
        .try_init();
    if result.is_err() {
        tracing::debug!("a tracing subscriber was already installed");
    }
    Telemetry {
        provider,
        exporting: endpoint.is_some(),
    }
}
