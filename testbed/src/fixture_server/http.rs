//! HTTP/1.1 plumbing shared by the apiserver and the kubelets: bodies, accept loops, auth.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub type Body = BoxBody<Bytes, io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

pub fn response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    response(status, "application/json", body)
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    response(status, "text/plain; charset=utf-8", body)
}

/// Whether the request carries `Authorization: Bearer <token>` (always, when there is none).
/// A boolean query parameter as the apiserver reads one: `1` or `true` (any case).
pub fn is_true(value: Option<&String>) -> bool {
    value.is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

pub fn authorized<B>(request: &Request<B>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    given.is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A streamed body fed by a channel: a chunk per message; an `Err` cuts the connection without
/// the final chunk; a closed channel ends the body cleanly.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl ChannelBody {
    pub fn channel(capacity: usize) -> (mpsc::Sender<Result<Bytes, io::Error>>, Body) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, ChannelBody { rx }.boxed())
    }
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx.poll_recv(cx).map(|item| item.map(|r| r.map(Frame::data)))
    }
}

/// A body that sends a prefix of a longer one and then fails, so the connection closes short of
/// the declared `Content-Length`. The failure waits a moment so the prefix leaves the write
/// buffer first: hyper drops unflushed bytes when a body fails.
struct TruncatedBody {
    prefix: Option<Bytes>,
    full_len: u64,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl HttpBody for TruncatedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        let pause =
            self.pause.get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(100))));
        match pause.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "truncated by fault"))))
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.full_len)
    }
}

/// A response declaring `body`'s full length but carrying only its first `keep` bytes.
pub fn truncated(status: StatusCode, content_type: &'static str, body: Bytes, keep: usize) -> Response<Body> {
    let full_len = body.len() as u64;
    let prefix = body.slice(..keep.min(body.len()));
    let mut response = Response::new(TruncatedBody { prefix: Some(prefix), full_len, pause: None }.boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(full_len));
    response
}

/// Serves HTTP/1.1 (over TLS if given) on `listener` until the returned task is aborted, which
/// also aborts its connections.
pub fn serve<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
) -> tokio::task::JoinHandle<()>
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: back off rather than spin.
                    tracing::debug!("fixture server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let tls = tls.clone();
            let handler = handler.clone();
            connections.spawn(async move {
                let service = service_fn(move |request| {
                    let response = handler(request);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let result = match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => {
                            http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
                        }
                        Err(e) => {
                            tracing::debug!("fixture server: TLS handshake failed: {e}");
                            return;
                        }
                    },
                    None => http1::Builder::new().serve_connection(TokioIo::new(stream), service).await,
                };
                if let Err(e) = result {
                    tracing::debug!("fixture server: connection ended: {e}");
                }
            });
        }
    })
}
