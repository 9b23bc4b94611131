//! Every log line emitted inside a span carries the span's `trace_id` and
//! `span_id`, in the pretty format (`… trace_id=… span_id=…`) and in JSON
//! (`"trace_id":"…","span_id":"…"`), so a log line leads to its trace.

use std::fmt;

use opentelemetry::trace::TraceContextExt as _;
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::format::{Format, Full, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub enum WithTraceIds {
    Pretty(Format<Full>),
    Json(Format<Json>),
}

impl WithTraceIds {
    pub fn pretty(ansi: bool) -> Self {
        Self::Pretty(Format::default().with_ansi(ansi))
    }

    pub fn json() -> Self {
        Self::Json(
            Format::default()
                .json()
                .flatten_event(true)
                .with_current_span(true),
        )
    }
}

/// The log layer in `format`, writing to `writer`.
pub fn layer<S, W>(
    format: super::LogFormat,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer as _;
    match format {
        super::LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .event_format(WithTraceIds::pretty(ansi))
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        super::LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(WithTraceIds::json())
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .with_writer(writer)
            .boxed(),
    }
}

/// The ids of the current span, if it is traced.
fn ids() -> Option<(String, String)> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

impl<S, N> FormatEvent<S, N> for WithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ids = ids();
        let mut line = String::new();
        match self {
            Self::Pretty(f) => f.format_event(ctx, Writer::new(&mut line), event)?,
            Self::Json(f) => f.format_event(ctx, Writer::new(&mut line), event)?,
        }
        let Some((trace_id, span_id)) = ids else {
            return writer.write_str(&line);
        };
        let body = line.strip_suffix('\n').unwrap_or(&line);
        match self {
            Self::Json(_) if body.ends_with('}') => writeln!(
                writer,
                "{},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}",
                &body[..body.len() - 1]
            ),
            _ => writeln!(writer, "{body} trace_id={trace_id} span_id={span_id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn traced_and_not() {
        tracing::info!("outside");
        let span = tracing::info_span!("work");
        let _entered = span.enter();
        let sc = span.context().span().span_context().clone();
        tracing::info!(want_trace = %sc.trace_id(), want_span = %sc.span_id(), "inside");
    }

    /// The formatter runs as the process's global subscriber, as in `paved`
    /// (inside a scoped one, tracing hides the current span from it), so
    /// both formats are checked in one test, through two layers.
    #[test]
    fn a_line_inside_a_span_names_its_trace_and_span() {
        let (json, pretty) = (Lines::default(), Lines::default());
        let (j, p) = (json.clone(), pretty.clone());
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(layer(super::super::LogFormat::Json, false, move || {
                j.clone()
            }))
            .with(layer(super::super::LogFormat::Pretty, false, move || {
                p.clone()
            }))
            .init();
        traced_and_not();
        let text = |l: &Lines| String::from_utf8(l.0.lock().unwrap().clone()).unwrap();

        let out = text(&json);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].get("trace_id").is_none(), "{out}");
        let inside = &lines[1];
        assert_eq!(inside["message"], "inside");
        assert_eq!(inside["trace_id"], inside["want_trace"], "{out}");
        assert_eq!(inside["span_id"], inside["want_span"], "{out}");
        assert_eq!(inside["trace_id"].as_str().unwrap().len(), 32);

        let out = text(&pretty);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(!lines[0].contains("trace_id="), "{out}");
        let inside = lines[1];
        let field = |name: &str| {
            inside
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in {inside}"))
                .to_owned()
        };
        assert_eq!(field("trace_id="), field("want_trace="));
        assert_eq!(field("span_id="), field("want_span="));
    }
}
