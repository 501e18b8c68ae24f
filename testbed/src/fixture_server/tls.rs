//! A throwaway CA, serving certificates signed by it, and the kubeconfig that trusts it.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;

use super::FixtureError;

fn tls_error(what: &str, e: impl std::fmt::Display) -> FixtureError {
    FixtureError::Tls(format!("{what}: {e}"))
}

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
    /// One key for every serving certificate: generating keys is the slow part.
    leaf_key: KeyPair,
}

impl Ca {
    pub fn new() -> Result<Ca, FixtureError> {
        let key = KeyPair::generate().map_err(|e| tls_error("CA key", e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("heapster fixture CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).map_err(|e| tls_error("CA certificate", e))?;
        let leaf_key = KeyPair::generate().map_err(|e| tls_error("serving key", e))?;
        Ok(Ca { pem: cert.pem(), der: cert.der().clone(), issuer: Issuer::new(params, key), leaf_key })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A rustls server config presenting a certificate for these names (IPs or DNS names),
    /// speaking HTTP/1.1 only.
    pub fn server_config(&self, subject: &str, names: &[String]) -> Result<Arc<ServerConfig>, FixtureError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(subject);
        params.subject_alt_names = names
            .iter()
            .filter_map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Some(SanType::IpAddress(ip)),
                // Node names that are not DNS names are left out rather than failing the start.
                Err(_) => n.clone().try_into().ok().map(SanType::DnsName),
            })
            .collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(|e| tls_error(&format!("certificate for {subject}"), e))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("TLS versions", e))?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone(), self.der.clone()], key)
            .map_err(|e| tls_error(&format!("certificate for {subject}"), e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Where the client-side files were written.
#[derive(Debug, Clone)]
pub struct ClientFiles {
    pub ca_cert: PathBuf,
    pub kubeconfig: PathBuf,
}

/// Writes `ca.crt` and `kubeconfig` (JSON, which is YAML too) into `dir`. The kubeconfig holds
/// the token, so it is readable by its owner only.
pub fn write_client_files(
    dir: &Path,
    ca_pem: &str,
    server: &str,
    token: Option<&str>,
) -> Result<ClientFiles, FixtureError> {
    let write_error = |path: &Path, source| FixtureError::Write { path: path.to_path_buf(), source };
    fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    let ca_cert = dir.join("ca.crt");
    fs::write(&ca_cert, ca_pem).map_err(|e| write_error(&ca_cert, e))?;

    let user = match token {
        Some(token) => json!({"token": token}),
        None => json!({}),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fixture", "cluster": {
            "server": server,
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca_pem),
        }}],
        "users": [{"name": "fixture", "user": user}],
        "contexts": [{"name": "fixture", "context": {"cluster": "fixture", "user": "fixture"}}],
        "current-context": "fixture",
        "preferences": {},
    });
    let kubeconfig = dir.join("kubeconfig");
    let mut bytes = serde_json::to_vec_pretty(&config).map_err(|e| write_error(&kubeconfig, e.into()))?;
    bytes.push(b'\n');
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&kubeconfig).map_err(|e| write_error(&kubeconfig, e))?;
    file.write_all(&bytes).map_err(|e| write_error(&kubeconfig, e))?;
    Ok(ClientFiles { ca_cert, kubeconfig })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_kubeconfig_that_kube_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::new().unwrap();
        let files =
            write_client_files(tmp.path(), ca.pem(), "https://127.0.0.1:6443", Some("s3cret")).unwrap();
        assert_eq!(fs::read_to_string(&files.ca_cert).unwrap(), ca.pem());
        let config = kube::config::Kubeconfig::read_from(&files.kubeconfig).unwrap();
        assert_eq!(config.current_context.as_deref(), Some("fixture"));
        let cluster = config.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        let ca_data = cluster.certificate_authority_data.as_deref().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(ca_data).unwrap();
        assert_eq!(decoded, ca.pem().as_bytes());
        let user = config.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.token.is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&files.kubeconfig).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "kubeconfig mode {mode:o}");
        }
    }

    #[test]
    fn builds_server_configs_for_ips_and_names() {
        heapster::tls::install_crypto_provider();
        let ca = Ca::new().unwrap();
        let config =
            ca.server_config("apiserver", &["127.0.0.1".into(), "localhost".into(), "bad name!".into()]);
        assert_eq!(config.unwrap().alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
