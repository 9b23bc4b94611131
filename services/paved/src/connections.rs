//! Limits on the connections each listener takes: how many at once, how
//! long one may sit idle, how long one may live. A connection over the cap
//! is closed as soon as it is accepted (the file handles stay free for the
//! ones being served); an idle or too old one is closed by the server.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// A connection with no byte read or written for this long is closed.
    pub idle: Duration,
    /// A connection is closed this long after it was accepted (`None`: never).
    pub lifetime: Option<Duration>,
}

impl Limits {
    /// The gRPC API: long-lived streams (`Subscribe`) stay (HTTP/2 keepalive
    /// pings keep them from idling), a half-open or silent peer goes.
    pub const GRPC: Limits = Limits {
        max_connections: 4096,
        idle: Duration::from_secs(300),
        lifetime: None,
    };
    /// Webhooks: senders deliver and go.
    pub const WEBHOOKS: Limits = Limits {
        max_connections: 512,
        idle: Duration::from_secs(30),
        lifetime: Some(Duration::from_secs(300)),
    };
    /// `/metrics`: a scraper or two.
    pub const METRICS: Limits = Limits {
        max_connections: 64,
        idle: Duration::from_secs(15),
        lifetime: Some(Duration::from_secs(120)),
    };
}

/// A TCP listener that keeps to its [`Limits`].
pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    limits: Limits,
    name: &'static str,
    refused: u64,
}

impl LimitedListener {
    pub fn new(inner: TcpListener, limits: Limits, name: &'static str) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            name,
            refused: 0,
        }
    }

    /// The next connection within the cap; connections over it are closed.
    pub async fn next(&mut self) -> (Guarded, std::net::SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file handles, say: wait a little, as axum does.
                    tracing::warn!(listener = self.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let _ = stream.set_nodelay(true);
                    return (Guarded::new(stream, permit, self.limits), addr);
                }
                Err(_) => {
                    self.refused += 1;
                    if self.refused.is_power_of_two() {
                        tracing::warn!(
                            listener = self.name,
                            max = self.limits.max_connections,
                            refused = self.refused,
                            "connection limit reached; closing new connections"
                        );
                    }
                    drop(stream);
                }
            }
        }
    }

    /// The accepted connections as a stream, for tonic's `serve_with_incoming`.
    pub fn incoming(self) -> impl futures::Stream<Item = io::Result<Guarded>> {
        futures::stream::unfold(self, |mut l| async move {
            let (conn, _) = l.next().await;
            Some((Ok(conn), l))
        })
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Guarded;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.next().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection: holds its place under the cap until dropped, and
/// fails its reads and writes once idle or too old (the server then closes it).
pub struct Guarded {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    end_of_life: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, limits: Limits) -> Self {
        Self {
            stream,
            _permit: permit,
            idle: limits.idle,
            idle_timer: Box::pin(tokio::time::sleep(limits.idle)),
            end_of_life: limits.lifetime.map(|l| Box::pin(tokio::time::sleep(l))),
        }
    }

    /// `Err` once a timer ran out (registering the task to be woken when one does).
    fn expired(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.idle_timer.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle"));
        }
        if let Some(end) = self.end_of_life.as_mut()
            && end.as_mut().poll(cx).is_ready()
        {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection too old",
            ));
        }
        Ok(())
    }

    fn active(&mut self) {
        let deadline = Instant::now() + self.idle;
        self.idle_timer.as_mut().reset(deadline);
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.expired(cx) {
                Err(e) => Poll::Ready(Err(e)),
                Ok(()) => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        let written = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.active();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Guarded {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}
