//! Requests over the size limit are `RESOURCE_EXHAUSTED`, as the README
//! promises: tonic answers a message over its decoding limit with
//! `OUT_OF_RANGE` ("decoded message length too large"), which clients read
//! as a bad range, not as "too big". This layer rewrites that one answer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::Service;
use tonic::codegen::http::{HeaderValue, Request, Response};

/// What tonic's decoder says of a message over its limit.
const TOO_LARGE: &str = "decoded message length too large";

#[derive(Clone, Copy, Debug, Default)]
pub struct RequestLimitLayer {
    /// The limit, in bytes, for the message clients see.
    pub limit: usize,
}

impl<S> tower_layer::Layer<S> for RequestLimitLayer {
    type Service = RequestLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLimit {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RequestLimit<S> {
    inner: S,
    limit: usize,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestLimit<S>
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
        let limit = self.limit;
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let headers = response.headers_mut();
            let too_large = headers.get("grpc-status").is_some_and(|s| s == "11")
                && headers
                    .get("grpc-message")
                    .and_then(|m| m.to_str().ok())
                    .is_some_and(|m| percent_decoded_contains(m, TOO_LARGE));
            if too_large {
                headers.insert("grpc-status", HeaderValue::from_static("8"));
                let message = format!(
                    "the request is larger than the limit of {} MiB",
                    limit / (1024 * 1024)
                );
                if let Ok(v) = HeaderValue::from_str(&message.replace(' ', "%20")) {
                    headers.insert("grpc-message", v);
                }
            }
            Ok(response)
        })
    }
}

/// Does the percent-encoded `grpc-message` contain `needle`?
fn percent_decoded_contains(message: &str, needle: &str) -> bool {
    let mut decoded = Vec::with_capacity(message.len());
    let bytes = message.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&message[i + 1..i + 3], 16)
        {
            decoded.push(b);
            i += 3;
            continue;
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&decoded).contains(needle)
}
