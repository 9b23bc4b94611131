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
