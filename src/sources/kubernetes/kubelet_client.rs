//! The HTTP client for kubelets: one kept-alive connection per node, holding no buffer while
//! idle, and a body read straight into the caller's buffer.
//!
//! A thousand kubelets mean a thousand idle connections between windows, and a thousand bodies
//! of 100-400 kB a window. A general-purpose client keeps a read buffer per connection and
//! hands a body over as a stream of small chunks through a channel from the connection's own
//! task: a wake-up and a copy per chunk. Here a scrape is one task that writes its request and
//! reads the answer from the TLS stream (or the socket) into the body's buffer, and an idle
//! connection is the socket and its TLS session alone.
//!
//! Only what a kubelet's `GET` needs is spoken: HTTP/1.1, bodies by `Content-Length`, chunked or
//! up to the end of the connection.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BufMut;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{StatusCode, Uri};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Idle connections are closed after this long (longer than any resolution a user runs).
const IDLE: Duration = Duration::from_secs(90);
/// The most an answer's status line and headers may take.
const MAX_HEAD: usize = 64 << 10;
/// The most headers an answer may have.
const MAX_HEADERS: usize = 64;
/// What a read asks for at least, where the body's length is not known.
const READ_SIZE: usize = 16 << 10;

#[derive(Debug, Error)]
pub enum KubeletClientError {
    #[error("TLS: {0}")]
    Tls(#[source] rustls::Error),
}

/// A GET-only client for kubelets over HTTP or HTTPS.
#[derive(Clone)]
pub struct KubeletClient {
    inner: Arc<Inner>,
}

struct Inner {
    tls: TlsConnector,
    connect_timeout: Duration,
    /// Idle connections by `scheme://authority`, with when each went idle.
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    connections: HashMap<String, Vec<(Stream, Instant)>>,
    swept: Option<Instant>,
}

impl KubeletClient {
    /// Trusts `roots` (DER) besides the platform's, or nothing at all if `insecure`.
    pub fn new(
        roots: &[Vec<u8>],
        insecure: bool,
        connect_timeout: Duration,
    ) -> Result<KubeletClient, KubeletClientError> {
        crate::tls::install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(KubeletClientError::Tls)?
            .dangerous();
        let builder = if insecure {
            builder.with_custom_certificate_verifier(Arc::new(NoVerifier(provider)))
        } else {
            let extra: Vec<CertificateDer<'static>> =
                roots.iter().map(|der| CertificateDer::from(der.clone())).collect();
            let verifier = if extra.is_empty() {
                rustls_platform_verifier::Verifier::new(provider)
            } else {
                rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
            }
            .map_err(KubeletClientError::Tls)?;
            builder.with_custom_certificate_verifier(Arc::new(verifier))
        };
        let mut tls = builder.with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let inner = Inner { tls: TlsConnector::from(Arc::new(tls)), connect_timeout, idle: Mutex::default() };
        Ok(KubeletClient { inner: Arc::new(inner) })
    }

    /// Sends `GET url` with `headers`; the answer's body is read by the caller
    /// ([`Response::read`]), and the connection kept for the next request once it is read whole.
    pub async fn get(&self, url: &str, headers: &[(HeaderName, HeaderValue)]) -> Result<Response, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url}: not an http or https URL")),
        };
        let authority = uri.authority().ok_or_else(|| format!("{url}: no host"))?;
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\n").into_bytes();
        for (name, value) in headers {
            request.extend_from_slice(name.as_str().as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(value.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"\r\n");
        let key = format!("{}://{authority}", if https { "https" } else { "http" });
        // A kept connection the kubelet has closed meanwhile fails before any answer: then the
        // request goes again on a new one, once.
        if let Some(stream) = self.inner.take_idle(&key) {
            match exchange(stream, &request).await {
                Ok((stream, head)) => return Ok(self.response(stream, head, key)),
                Err(Failure::BeforeAnswer(_)) => {}
                Err(Failure::Answer(e)) => return Err(e),
            }
        }
        let stream = self.inner.connect(https, &host, port).await?;
        match exchange(stream, &request).await {
            Ok((stream, head)) => Ok(self.response(stream, head, key)),
            Err(Failure::BeforeAnswer(e) | Failure::Answer(e)) => Err(e),
        }
    }

    fn response(&self, stream: Stream, head: Head, key: String) -> Response {
        Response {
            status: head.status,
            content_length: head.content_length,
            body: Body {
                stream: Some(stream),
                pending: head.rest,
                framing: head.framing,
                keep: head.keep_alive,
                key,
                client: Arc::clone(&self.inner),
            },
        }
    }
}

impl Inner {
    fn take_idle(&self, key: &str) -> Option<Stream> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = idle.connections.get_mut(key)?;
        let now = Instant::now();
        while let Some((stream, since)) = kept.pop() {
            if now.duration_since(since) < IDLE {
                return Some(stream);
            }
        }
        idle.connections.remove(key);
        None
    }

    fn put_idle(&self, key: String, stream: Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        // Connections to nodes no longer scraped are closed once they have been idle too long.
        if idle.swept.is_none_or(|swept| now.duration_since(swept) > IDLE) {
            idle.connections.retain(|_, kept| {
                kept.retain(|(_, since)| now.duration_since(*since) < IDLE);
                !kept.is_empty()
            });
            idle.swept = Some(now);
        }
        idle.connections.entry(key).or_default().push((stream, now));
    }

    async fn connect(&self, https: bool, host: &str, port: u16) -> Result<Stream, String> {
        let connect = TcpStream::connect((host, port));
        let tcp = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(format!("tcp connect error: {e}")),
            Err(_) => return Err("tcp connect error: timed out".to_string()),
        };
        tcp.set_nodelay(true).map_err(|e| format!("tcp connect error: {e}"))?;
        if !https {
            return Ok(Stream::Plain(tcp));
        }
        let name =
            ServerName::try_from(host.to_string()).map_err(|e| format!("TLS: server name {host}: {e}"))?;
        let tls = self.tls.connect(name, tcp).await.map_err(|e| format!("TLS handshake: {e}"))?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// A connection to a kubelet.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How an answer's body ends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    /// This many bytes still to come.
    Length(u64),
    /// Chunked: in the size line of the next chunk, or this many bytes left of a chunk's data.
    ChunkSize,
    ChunkData(u64),
    /// At the connection's end.
    Close,
    Done,
}

/// After an answer read whole, one read that must find nothing: rustls gives back the record
/// buffer it grew for the body (to 4 kB of its up to 33 kB) only when it reads again, and an idle
/// connection would keep it otherwise (30 MB at 1,000 nodes). Anything found (more bytes, the
/// end, an error) means the connection cannot serve another request.
fn settle(stream: &mut Stream) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    Pin::new(stream).poll_read(&mut cx, &mut buf).is_pending()
}

/// An answer's status line and headers.
struct Head {
    status: StatusCode,
    content_length: Option<u64>,
    framing: Framing,
    keep_alive: bool,
    /// What was read past the headers: the body's first bytes.
    rest: Vec<u8>,
}

enum Failure {
    /// Nothing of an answer came (a kept connection may have been closed by the kubelet).
    BeforeAnswer(String),
    Answer(String),
}

/// Writes the request and reads the answer's head.
async fn exchange(mut stream: Stream, request: &[u8]) -> Result<(Stream, Head), Failure> {
    let sent = async {
        stream.write_all(request).await?;
        stream.flush().await
    };
    sent.await.map_err(|e| Failure::BeforeAnswer(format!("sending the request: {e}")))?;
    let mut buffer = Vec::with_capacity(4 << 10);
    loop {
        if buffer.len() >= MAX_HEAD {
            return Err(Failure::Answer(format!("an answer's headers over {MAX_HEAD} bytes")));
        }
        if buffer.capacity() - buffer.len() < 1024 {
            buffer.reserve(buffer.capacity());
        }
        let read = stream.read_buf(&mut buffer).await;
        match read {
            Ok(0) if buffer.is_empty() => {
                return Err(Failure::BeforeAnswer("connection closed before an answer".into()));
            }
            Ok(0) => return Err(Failure::Answer("connection closed within an answer's headers".into())),
            Ok(_) => {}
            Err(e) if buffer.is_empty() => {
                return Err(Failure::BeforeAnswer(format!("reading the answer: {e}")));
            }
            Err(e) => return Err(Failure::Answer(format!("reading the answer: {e}"))),
        }
        if let Some((head, end)) = parse_head(&buffer).map_err(Failure::Answer)? {
            // What follows the headers is the body's first bytes: kept in place, not copied.
            buffer.drain(..end);
            return Ok((stream, Head { rest: buffer, ..head }));
        }
    }
}

/// The head of an answer from its first bytes and where it ends (its `rest` left empty),
/// `None` while incomplete.
fn parse_head(bytes: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let end = match response.parse(bytes) {
        Ok(httparse::Status::Complete(end)) => end,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    let status = response
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| "not an HTTP answer: no status".to_string())?;
    let mut content_length = None;
    let mut chunked = false;
    let mut close = response.version != Some(1);
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let length = value.parse::<u64>().map_err(|_| format!("a bad Content-Length: {value:?}"))?;
            if content_length.is_some_and(|l| l != length) {
                return Err("conflicting Content-Length headers".into());
            }
            content_length = Some(length);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked =
                value.rsplit(',').next().is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                close = true;
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            close |= value.split(',').any(|token| token.trim().eq_ignore_ascii_case("close"));
        }
    }
    let no_body =
        status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        Framing::Done
    } else if chunked {
        // A length beside chunked encoding is ignored, as RFC 9112 says.
        content_length = None;
        Framing::ChunkSize
    } else {
        match content_length {
            Some(0) => Framing::Done,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    if status.is_informational() {
        return Err(format!("an unexpected {status} answer"));
    }
    Ok(Some((Head { status, content_length, framing, keep_alive: !close, rest: Vec::new() }, end)))
}

/// A kubelet's answer, its body still to read.
pub struct Response {
    pub status: StatusCode,
    /// The declared `Content-Length`.
    pub content_length: Option<u64>,
    body: Body,
}

impl Response {
    /// Appends the body to `out`, at most `cap` bytes past what `out` held: `Ok(true)` once it
    /// is read whole, `Ok(false)` if more was left past the cap (and not read).
    pub async fn read(&mut self, out: &mut Vec<u8>, cap: usize) -> Result<bool, String> {
        self.body.read(out, out.len() + cap).await.map_err(|e| e.to_string())
    }
}

/// The body of an answer, read straight from the connection into the caller's buffer; the
/// connection goes back to the pool once the body has been read whole.
struct Body {
    stream: Option<Stream>,
    /// Bytes read and not consumed yet (after the headers, or around a chunk size line).
    pending: Vec<u8>,
    framing: Framing,
    keep: bool,
    key: String,
    client: Arc<Inner>,
}

impl Body {
    /// Reads into `out` up to `limit` bytes of it in all; `Ok(true)` at the body's end.
    async fn read(&mut self, out: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
        loop {
            match self.framing {
                Framing::Done => {
                    self.finish();
                    return Ok(true);
                }
                Framing::Length(left) | Framing::ChunkData(left) => {
                    if out.len() >= limit {
                        return Ok(false);
                    }
                    let want = left.min((limit - out.len()) as u64) as usize;
                    let got = self.data(out, want).await?;
                    if got == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed within the body",
                        ));
                    }
                    let left = left - got as u64;
                    self.framing = match self.framing {
                        Framing::Length(_) if left == 0 => Framing::Done,
                        Framing::Length(_) => Framing::Length(left),
                        _ if left == 0 => {
                            self.line().await?;
                            Framing::ChunkSize
                        }
                        _ => Framing::ChunkData(left),
                    };
                }
                Framing::ChunkSize => {
                    let line = self.line().await?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size, 16).map_err(|_| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("a bad chunk size {size:?}"))
                    })?;
                    if size == 0 {
                        // Trailers, up to an empty line.
                        while !self.line().await?.is_empty() {}
                        self.framing = Framing::Done;
                    } else {
                        self.framing = Framing::ChunkData(size);
                    }
                }
                Framing::Close => {
                    if out.len() >= limit {
                        return Ok(false);
                    }
                    if self.data(out, limit - out.len()).await? == 0 {
                        self.keep = false;
                        self.framing = Framing::Done;
                    }
                }
            }
        }
    }

    /// Up to `want` (> 0) body bytes into `out`: from what is pending, else from the
    /// connection, straight into `out`'s spare room. 0 at the connection's end.
    async fn data(&mut self, out: &mut Vec<u8>, want: usize) -> io::Result<usize> {
        if !self.pending.is_empty() {
            let n = want.min(self.pending.len());
            out.extend_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Ok(n);
        }
        let Some(stream) = self.stream.as_mut() else { return Ok(0) };
        if out.capacity() - out.len() < want.min(READ_SIZE) {
            // Grow by doubling as a Vec does, but never past what is wanted.
            let target = (out.capacity() * 2).max(out.len() + want.min(READ_SIZE)).min(out.len() + want);
            out.reserve_exact(target - out.len());
        }
        let room = (out.capacity() - out.len()).min(want);
        let mut limited = (&mut *out).limit(room);
        stream.read_buf(&mut limited).await
    }

    /// The next CRLF-ended line (without it), for chunk sizes and trailers.
    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.pending[..end]).into_owned();
                self.pending.drain(..end + 2);
                return Ok(line);
            }
            if self.pending.len() > 4 << 10 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "a chunk size line over 4 kB"));
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed within the body",
                ));
            };
            self.pending.reserve(256);
            if stream.read_buf(&mut self.pending).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed within the body",
                ));
            }
        }
    }

    /// The body is read whole: the connection goes back to the pool if it can serve another.
    fn finish(&mut self) {
        if let Some(mut stream) = self.stream.take()
            && self.keep
            && self.pending.is_empty()
            && settle(&mut stream)
        {
            self.client.put_idle(std::mem::take(&mut self.key), stream);
        }
        self.pending = Vec::new();
    }
}

/// `insecure=true`: any certificate is accepted, as Heapster's `insecure` does; signatures are
/// still checked, so the session is at least with the holder of the key it was shown.
#[derive(Debug)]
struct NoVerifier(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    /// A kubelet on loopback that answers each request on a connection with the next of
    /// `answers` (raw bytes), closing the connection after those marked so; counts connections.
    async fn kubelet(answers: Vec<(Vec<u8>, bool)>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/stats/summary", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            'connections: loop {
                let (socket, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let mut socket = BufReader::new(socket);
                loop {
                    // The request: lines up to an empty one.
                    let mut request = String::new();
                    loop {
                        let mut line = String::new();
                        if socket.read_line(&mut line).await.unwrap() == 0 {
                            continue 'connections;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        request.push_str(&line);
                    }
                    assert!(request.starts_with("GET /stats/summary HTTP/1.1\r\n"), "{request}");
                    assert!(request.contains("\r\nx-test: yes\r\n"), "{request}");
                    let Some((answer, close)) = answers.next() else { return };
                    socket.get_mut().write_all(&answer).await.unwrap();
                    if close {
                        continue 'connections;
                    }
                }
            }
        });
        (url, accepted)
    }

    fn client() -> KubeletClient {
        KubeletClient::new(&[], true, Duration::from_secs(5)).unwrap()
    }

    async fn get(
        client: &KubeletClient,
        url: &str,
        cap: usize,
    ) -> Result<(StatusCode, Vec<u8>, bool), String> {
        let headers = [(HeaderName::from_static("x-test"), HeaderValue::from_static("yes"))];
        let mut response = client.get(url, &headers).await?;
        let mut body = Vec::new();
        let whole = response.read(&mut body, cap).await?;
        Ok((response.status, body, whole))
    }

    #[tokio::test]
    async fn one_kept_connection_serves_bodies_of_every_framing() {
        let answers = vec![
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(), false),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0A\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\n"
                    .to_vec(),
                false,
            ),
            (b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope".to_vec(), false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(), false),
        ];
        let (url, accepted) = kubelet(answers).await;
        let client = client();
        assert_eq!(get(&client, &url, 100).await.unwrap(), (StatusCode::OK, b"hello".to_vec(), true));
        assert_eq!(get(&client, &url, 100).await.unwrap(), (StatusCode::OK, b"abc0123456789".to_vec(), true));
        assert_eq!(get(&client, &url, 100).await.unwrap(), (StatusCode::NOT_FOUND, b"nope".to_vec(), true));
        assert_eq!(get(&client, &url, 100).await.unwrap(), (StatusCode::OK, Vec::new(), true));
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection kept for all four");
    }

    #[tokio::test]
    async fn a_closed_connection_is_replaced_and_bodies_to_the_end_are_read() {
        let answers = vec![
            // Kept alive by its headers, then closed by the kubelet.
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab".to_vec(), true),
            // No length: the body ends with the connection.
            (b"HTTP/1.1 200 OK\r\n\r\nto the end".to_vec(), true),
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\ncd".to_vec(), true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nef".to_vec(), false),
        ];
        let (url, accepted) = kubelet(answers).await;
        let client = client();
        assert_eq!(get(&client, &url, 100).await.unwrap().1, b"ab");
        assert_eq!(get(&client, &url, 100).await.unwrap().1, b"to the end");
        assert_eq!(get(&client, &url, 100).await.unwrap().1, b"cd");
        assert_eq!(get(&client, &url, 100).await.unwrap().1, b"ef");
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_body_past_the_cap_is_cut_there_and_bad_answers_are_named() {
        let mut endless = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..100 {
            endless.extend_from_slice(b"4\r\nxxxx\r\n");
        }
        let answers = vec![
            (endless, true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nshort".to_vec(), true),
            (b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(), true),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(), true),
        ];
        let (url, _) = kubelet(answers).await;
        let client = client();
        let (_, body, whole) = get(&client, &url, 10).await.unwrap();
        assert_eq!((body.as_slice(), whole), (&b"xxxxxxxxxx"[..], false));
        let short = get(&client, &url, 100).await.unwrap_err();
        assert!(short.contains("closed within the body"), "{short}");
        let garbage = get(&client, &url, 100).await.unwrap_err();
        assert!(garbage.contains("not an HTTP answer"), "{garbage}");
        let bad_chunk = get(&client, &url, 100).await.unwrap_err();
        assert!(bad_chunk.contains("chunk size"), "{bad_chunk}");
        let refused = get(&client, "http://127.0.0.1:1/stats/summary", 100).await.err().unwrap();
        assert!(refused.contains("tcp connect error"), "{refused}");
    }
}
