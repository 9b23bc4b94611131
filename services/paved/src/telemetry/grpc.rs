//! The SERVER span of every gRPC call, in OpenTelemetry's RPC conventions:
//! named `paved.v1.CatalogService/RegisterService`, kind SERVER, with
//! `rpc.system`, `rpc.service`, `rpc.method` and `rpc.grpc.status_code`; it
//! continues the caller's `traceparent`/`tracestate` (checked first, and
//! honouring its sampled flag) or starts a trace. The span's status is
//! ERROR only for server faults (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
//! INTERNAL, UNAVAILABLE, DATA_LOSS), never for a client's mistake.
//! Health checks are not traced (probes every few seconds). Each call's
//! time goes to `paved_rpc_server_duration_seconds`, its trace the exemplar.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use paved_eventlog::TraceContext;
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response};
use tracing::Instrument;

#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcTraceLayer;

impl<S> tower_layer::Layer<S> for GrpcTraceLayer {
    type Service = GrpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTrace { inner }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcTrace<S> {
    inner: S,
}

/// gRPC codes that are the server's fault (OpenTelemetry RPC conventions).
fn server_fault(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

fn header<B>(request: &Request<B>, name: &str) -> String {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcTrace<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let path = request.uri().path().trim_start_matches('/').to_owned();
        if path.starts_with("grpc.health.") {
            return Box::pin(self.inner.call(request));
        }
        let (service, method) = path.split_once('/').unwrap_or((path.as_str(), ""));
        let span = tracing::info_span!(
            parent: None,
            "rpc",
            otel.name = %path,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let incoming = paved_eventlog::trace::validated(TraceContext {
            traceparent: header(&request, "traceparent"),
            tracestate: header(&request, "tracestate"),
        });
        // Before the span starts: a started span's parent cannot change.
        paved_eventlog::trace::set_remote_parent(&span, &incoming);
        let (service, method) = (service.to_owned(), method.to_owned());
        let started = std::time::Instant::now();
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let result = future.await;
                // A call that failed at once has its status in the headers;
                // otherwise it comes in the trailers, OK for every unary
                // call that got this far. No response at all: UNKNOWN.
                let code = result.as_ref().map_or(2, |response| {
                    response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .unwrap_or(0)
                });
                let span = tracing::Span::current();
                span.record("rpc.grpc.status_code", code);
                if server_fault(code) {
                    span.record("otel.status_code", "ERROR");
                }
                paved_eventlog::latency::RPC_SERVER.observe(
                    &[
                        ("rpc_service", &service),
                        ("rpc_method", &method),
                        ("rpc_grpc_status_code", &code.to_string()),
                    ],
                    started.elapsed(),
                    &span,
                );
                result
            }
            .instrument(span),
        )
    }
}
