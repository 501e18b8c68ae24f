//! HTTPS for the API: `--tls_cert`/`--tls_key` serve TLS; `--tls_client_ca` requires a client
//! certificate signed by that CA (a client without one fails the handshake); `--allowed_users`
//! then limits the certificates' common names, as Heapster did.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::ApiError;

/// The files behind `--tls_cert`, `--tls_key` and `--tls_client_ca`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files cannot serve: each names the flag and file at fault, and keeps the cause.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Unreadable, or not PEM.
    #[error("{flag}={}: {source}", path.display())]
    Pem {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{flag}={}: no PEM certificate in the file", path.display())]
    NoCertificate { flag: &'static str, path: PathBuf },
    /// A CA certificate rustls does not take.
    #[error("{flag}={}: {source}", path.display())]
    BadCa {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// No client certificate verifier can be built from the CA file.
    #[error("{flag}={}: {source}", path.display())]
    Verifier {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("--tls_cert and --tls_key do not make a pair: {source}")]
    Pair {
        #[source]
        source: rustls::Error,
    },
}

fn pem(flag: &'static str, path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError {
    move |source| TlsError::Pem { flag, path: path.to_path_buf(), source }
}

fn certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem(flag, path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem(flag, path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { flag, path: path.to_path_buf() });
    }
    Ok(certs)
}

/// The server's TLS settings, read and checked at start.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, ApiError> {
    crate::tls::install_crypto_provider();
    let chain = certificates("--tls_cert", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(pem("--tls_key", &files.key))?;
    let builder = ServerConfig::builder();
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates("--tls_client_ca", ca)? {
                roots.add(cert).map_err(|source| TlsError::BadCa {
                    flag: "--tls_client_ca",
                    path: ca.clone(),
                    source,
                })?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|source| TlsError::Verifier { flag: "--tls_client_ca", path: ca.clone(), source })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|source| TlsError::Pair { source })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The subject common name of a DER certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// Whether a client presenting `cn` (none: no certificate) may use the API.
pub fn allowed(cn: Option<&str>, client_ca: bool, allowed_users: &[String]) -> bool {
    if !client_ca {
        return true;
    }
    match cn {
        Some(cn) => allowed_users.is_empty() || allowed_users.iter().any(|u| u == cn),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_name() {
        let mut params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "system:kube-aggregator");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some("system:kube-aggregator"));
        assert_eq!(common_name(b"not a certificate"), None);
    }

    #[test]
    fn allowed_users_limit_common_names_only_with_a_client_ca() {
        let users = vec!["admin".to_string()];
        assert!(allowed(None, false, &users));
        assert!(!allowed(None, true, &users));
        assert!(allowed(Some("admin"), true, &users));
        assert!(!allowed(Some("mallory"), true, &users));
        assert!(allowed(Some("anyone"), true, &[]));
    }

    #[test]
    fn missing_files_name_the_flag() {
        let files =
            TlsFiles { cert: "/nonexistent/c.pem".into(), key: "/nonexistent/k.pem".into(), client_ca: None };
        let err = server_config(&files).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("TLS: --tls_cert=/nonexistent/c.pem: "), "{text}");
        let ApiError::Tls(TlsError::Pem { source, .. }) = &err else { panic!("{err:?}") };
        assert!(matches!(source, rustls::pki_types::pem::Error::Io(_)), "the cause is kept: {source:?}");
    }

    #[test]
    fn a_key_of_another_certificate_is_no_pair() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()]).unwrap().self_signed(&key).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let files = TlsFiles {
            cert: write("c.pem", cert.pem()),
            key: write("k.pem", other.serialize_pem()),
            client_ca: None,
        };
        let err = server_config(&files).unwrap_err();
        assert!(err.to_string().starts_with("TLS: --tls_cert and --tls_key do not make a pair: "), "{err}");
        assert!(matches!(&err, ApiError::Tls(TlsError::Pair { .. })), "{err:?}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
