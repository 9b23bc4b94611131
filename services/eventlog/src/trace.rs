//! W3C trace context across the log: the producer span of a commit is what
//! its stored `traceparent`/`tracestate` (in the commit and the message
//! headers) name; a projection or an effect worker continues from there.
//!
//! Works through the global OpenTelemetry propagator (the binary sets W3C
//! TraceContext) and the tracing-opentelemetry layer. Without that layer
//! (a library user, most tests) a context is passed through unchanged.
//!
//! What a client sends is checked before anything of it is kept: the log
//! can never be edited, so a malformed or oversized context is dropped, not
//! stored.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::log::{TRACEPARENT, TRACESTATE, TraceContext};

/// Longest `tracestate` kept (the W3C limit a vendor may rely on).
pub const MAX_TRACESTATE: usize = 512;
/// Most `tracestate` list members (W3C).
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Is `s` a W3C `traceparent` Paved keeps? `00-<32 hex>-<16 hex>-<2 hex>`
/// (lowercase, ids not all zero); a later version may append `-…` fields,
/// version `ff` is invalid.
pub fn valid_traceparent(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b[r].iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    let zero = |r: std::ops::Range<usize>| b[r].iter().all(|c| *c == b'0');
    if b.len() < 55 || b.len() > 256 || !s.is_ascii() {
        return false;
    }
    let version_ok = hex(0..2) && &s[..2] != "ff";
    let shape = b[2] == b'-' && b[35] == b'-' && b[52] == b'-';
    let tail_ok = if &s[..2] == "00" {
        b.len() == 55
    } else {
        b.len() == 55 || b[55] == b'-'
    };
    version_ok
        && shape
        && tail_ok
        && hex(3..35)
        && !zero(3..35)
        && hex(36..52)
        && !zero(36..52)
        && hex(53..55)
}

/// Is `s` a `tracestate` Paved keeps: at most [`MAX_TRACESTATE`] bytes of
/// at most 32 `key=value` members, printable ASCII without `,` or `=` in a
/// value?
pub fn valid_tracestate(s: &str) -> bool {
    if s.len() > MAX_TRACESTATE || !s.bytes().all(|c| (0x20..0x7f).contains(&c)) {
        return false;
    }
    let members: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect();
    members.len() <= MAX_TRACESTATE_MEMBERS
        && members.iter().all(|m| {
            m.split_once('=').is_some_and(|(k, v)| {
                !k.is_empty() && !v.is_empty() && !v.contains('=') && !k.contains(' ')
            })
        })
}

/// The client's trace context if it is well-formed: an invalid
/// `traceparent` drops both (the request starts a trace of its own), an
/// invalid `tracestate` only itself.
pub fn validated(incoming: TraceContext) -> TraceContext {
    if !valid_traceparent(&incoming.traceparent) {
        if !incoming.traceparent.is_empty() {
            tracing::debug!("an invalid traceparent was ignored");
        }
        return TraceContext::default();
    }
    let tracestate = if valid_tracestate(&incoming.tracestate) {
        incoming.tracestate
    } else {
        String::new()
    };
    TraceContext {
        traceparent: incoming.traceparent,
        tracestate,
    }
}

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

/// The remote span a stored or incoming context names (`None`: none, or
/// not well-formed).
pub fn span_context(trace: &TraceContext) -> Option<SpanContext> {
    if !valid_traceparent(&trace.traceparent) {
        return None;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Fields(trace)));
    let span = cx.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// Makes `span` — created, not yet entered — a child of the remote span
/// `trace` names. Nothing happens without a context or without the layer.
pub fn set_remote_parent(span: &tracing::Span, trace: &TraceContext) {
    let Some(remote) = span_context(trace) else {
        return;
    };
    let parent = opentelemetry::Context::new().with_remote_span_context(remote);
    if let Err(e) = span.set_parent(parent) {
        tracing::debug!(error = %e, "cannot continue the trace");
    }
}

/// Links `span` (not yet entered) to the span `trace` names, if any.
pub fn add_link(span: &tracing::Span, trace: &TraceContext) {
    if let Some(remote) = span_context(trace) {
        span.add_link(remote);
    }
}

/// Links `span` (not yet entered) to `other`.
pub fn link_spans(span: &tracing::Span, other: &tracing::Span) {
    let cx = other.context();
    let target = cx.span().span_context().clone();
    if target.is_valid() {
        span.add_link(target);
    }
}

/// The W3C context of `span`, or `fallback` when there is none (no
/// OpenTelemetry layer): what is stored with a commit it produces.
pub fn context_of(span: &tracing::Span, fallback: &TraceContext) -> TraceContext {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return fallback.clone();
    }
    let mut map = Map(HashMap::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut map));
    TraceContext {
        traceparent: map.0.remove(TRACEPARENT).unwrap_or_default(),
        tracestate: map.0.remove(TRACESTATE).unwrap_or_default(),
    }
}

/// The trace context of the current span, or `fallback`.
pub fn current_or(fallback: TraceContext) -> TraceContext {
    context_of(&tracing::Span::current(), &fallback)
}

/// Is the span `trace` names sampled (its `traceparent` flags say so)?
pub fn sampled(trace: &TraceContext) -> bool {
    span_context(trace).is_some_and(|s| s.is_sampled())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn only_well_formed_traceparents_are_kept() {
        assert!(valid_traceparent(OK));
        assert!(valid_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"
        ));
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert!(!valid_traceparent(bad), "{bad}");
        }
        let long = format!("01-{}-{}-01-{}", &OK[3..35], &OK[36..52], "x".repeat(300));
        assert!(!valid_traceparent(&long));
    }

    #[test]
    fn a_bad_tracestate_is_dropped_alone_and_a_bad_traceparent_drops_both() {
        let keep = validated(TraceContext {
            traceparent: OK.into(),
            tracestate: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".into(),
        });
        assert_eq!(keep.tracestate, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
        let state = validated(TraceContext {
            traceparent: OK.into(),
            tracestate: "x".repeat(MAX_TRACESTATE + 1),
        });
        assert_eq!(
            (state.traceparent.as_str(), state.tracestate.as_str()),
            (OK, "")
        );
        let many = (0..40)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(!valid_tracestate(&many));
        assert!(!valid_tracestate("a=b\nc=d"));
        let none = validated(TraceContext {
            traceparent: "00-zz".into(),
            tracestate: "rojo=1".into(),
        });
        assert_eq!(none, TraceContext::default());
    }
}
