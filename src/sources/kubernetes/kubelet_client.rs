//! The HTTP client for kubelets: one kept-alive connection per node, each with small buffers.
//!
//! A thousand kubelets mean a thousand idle connections between windows. A general-purpose
//! client lets each connection's read buffer grow to the largest body it saw (a summary is
//! 100-200 kB) and keeps it while idle: 150 MB for nothing at 1,000 nodes. Here every
//! connection reads into a fixed 8 kB buffer (half a TLS record), which costs no more syscalls:
//! TLS reads the socket a record at a time into its own buffer, and this buffer takes the
//! decrypted record from it in two copies rather than one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use thiserror::Error;

/// What each connection reads into, and keeps while idle: half a TLS record's worth.
const READ_BUFFER: usize = 8 << 10;
/// Idle connections are closed after this long (longer than any resolution a user runs).
const IDLE: Duration = Duration::from_secs(90);

#[derive(Debug, Error)]
pub enum KubeletClientError {
    #[error("TLS: {0}")]
    Tls(#[source] rustls::Error),
}

/// A GET-only client for kubelets over HTTP or HTTPS.
#[derive(Clone)]
pub struct KubeletClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
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
        let tls = builder.with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE)
            .http1_read_buf_exact_size(READ_BUFFER)
            .build(https);
        Ok(KubeletClient { client })
    }

    /// Sends `GET url` with `headers`; the answer's body is read by the caller.
    pub async fn get(
        &self,
        url: &str,
        headers: &[(hyper::header::HeaderName, hyper::header::HeaderValue)],
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let mut request = hyper::Request::get(url);
        for (name, value) in headers {
            request = request.header(name, value.clone());
        }
        let request = request.body(Empty::new()).map_err(|e| crate::errors::error_chain(&e))?;
        self.client.request(request).await.map_err(|e| crate::errors::error_chain(&e))
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
