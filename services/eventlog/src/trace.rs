//! W3C trace context across the log: the request's trace goes into the
//! commit and the message headers; a projection's span continues it.
//!
//! Works through the global OpenTelemetry propagator, which the binary sets
//! to W3C TraceContext. Without it (or without an OpenTelemetry layer) the
//! incoming `traceparent` is passed through unchanged.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::log::{TRACEPARENT, TRACESTATE, TraceContext};

struct Fields<'a>(&'a TraceContext);

impl Extractor for Fields<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT if !self.0.traceparent.is_empty() => Some(&self.0.traceparent),
            TRACESTATE if !self.0.tracestate.is_empty() => Some(&self.0.tracestate),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

struct Map(HashMap<String, String>);

impl Injector for Map {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// Makes `span` a child of the trace in `trace` (if any).
pub fn continue_trace(span: &tracing::Span, trace: &TraceContext) {
    if trace.traceparent.is_empty() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Fields(trace)));
    if !parent.span().span_context().is_valid() {
        return;
    }
    if let Err(e) = span.set_parent(parent) {
        tracing::debug!(error = %e, "cannot continue the incoming trace");
    }
}

/// The trace context of the current span, or `fallback` when there is none
/// (no OpenTelemetry layer installed).
pub fn current_or(fallback: TraceContext) -> TraceContext {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return fallback;
    }
    let mut map = Map(HashMap::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut map));
    TraceContext {
        traceparent: map.0.remove(TRACEPARENT).unwrap_or(fallback.traceparent),
        tracestate: map.0.remove(TRACESTATE).unwrap_or(fallback.tracestate),
    }
}
