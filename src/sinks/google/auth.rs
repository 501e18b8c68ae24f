//! Access tokens as Google Cloud hands them out: from the GCE metadata server
//! (`Metadata-Flavor: Google`), or by signing a JWT with a service-account key and exchanging
//! it at the key's `token_uri` (RFC 7523, RS256). A token is reused until a minute before it
//! expires; a 401 from an API drops it so the next request fetches a new one.
//!
//! Written here over reqwest and ring (both already in the build) rather than taken from
//! `gcp_auth`, which fixes the metadata host to `metadata.google.internal` (so it cannot be
//! pointed at a loopback emulation, nor honour `GCE_METADATA_HOST`) and brings its own hyper
//! client stack, or `google-cloud-auth`, which brings Google's whole client runtime.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::{debug, info};

use super::error::{ApiError, GoogleError};
use crate::errors::error_chain;

/// Tokens are refreshed this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Tries of a token or metadata request that failed on the way (5xx, 429, no connection).
const FETCH_ATTEMPTS: u32 = 3;
/// How long a signed assertion is valid (Google's maximum).
const ASSERTION_LIFETIME_S: u64 = 3600;

/// A service-account key file, as the Cloud console downloads it.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    private_key_id: String,
    private_key: String,
    client_email: String,
    #[serde(default = "default_token_uri")]
    token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".to_string()
}

/// A loaded service-account key.
pub struct ServiceAccount {
    path: PathBuf,
    email: String,
    key_id: String,
    key: RsaKeyPair,
    token_uri: String,
    project_id: Option<String>,
}

impl ServiceAccount {
    /// Reads and checks a key file; the error says what is wrong with which file.
    pub fn load(path: &Path) -> Result<ServiceAccount, GoogleError> {
        let bad = |reason: String| GoogleError::KeyFile { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| {
            bad(format!("not a service-account key (JSON with private_key and client_email): {e}"))
        })?;
        if !file.kind.is_empty() && file.kind != "service_account" {
            return Err(bad(format!("type is {:?}; expected \"service_account\"", file.kind)));
        }
        let der = pem_body(&file.private_key)
            .ok_or_else(|| bad("private_key is not a PEM \"PRIVATE KEY\" block".into()))?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| bad(format!("private_key is not a usable RSA key in PKCS#8: {e}")))?;
        Ok(ServiceAccount {
            path: path.to_path_buf(),
            email: file.client_email,
            key_id: file.private_key_id,
            key,
            token_uri: file.token_uri,
            project_id: file.project_id.filter(|p| !p.is_empty()),
        })
    }

    /// A signed JWT asking for `scope`, valid from `now` (seconds since the epoch).
    pub fn assertion(&self, scope: &str, now: u64) -> Result<String, GoogleError> {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.key_id});
        let claims = serde_json::json!({
            "iss": self.email,
            "scope": scope,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
        });
        let mut jwt = URL_SAFE_NO_PAD.encode(header.to_string());
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), jwt.as_bytes(), &mut signature).map_err(
            |_| GoogleError::KeyFile {
                path: self.path.display().to_string(),
                reason: "signing failed".into(),
            },
        )?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt)
    }
}

/// The DER bytes of the first PEM block.
pub fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN ")?;
    let after = &pem[start..];
    let body_start = after.find('\n')? + 1;
    let body_end = after.find("-----END ")?;
    let body: String = after.get(body_start..body_end)?.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(body).ok()
}

/// Where tokens come from.
pub enum Credentials {
    Metadata { host: String },
    ServiceAccount(Box<ServiceAccount>),
}

impl Credentials {
    /// A key file if one is given, else the metadata server.
    pub fn from_options(key_file: Option<&Path>, metadata_host: &str) -> Result<Credentials, GoogleError> {
        match key_file {
            Some(path) => Ok(Credentials::ServiceAccount(Box::new(ServiceAccount::load(path)?))),
            None => Ok(Credentials::Metadata { host: metadata_host.to_string() }),
        }
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: u64,
}

struct Token {
    value: SecretString,
    refresh_at: Instant,
}

/// Hands out access tokens, fetching a new one when the current one is about to expire.
pub struct Authenticator {
    http: reqwest::Client,
    credentials: Credentials,
    scope: String,
    current: tokio::sync::Mutex<Option<Token>>,
}

impl Authenticator {
    pub fn new(http: reqwest::Client, credentials: Credentials, scope: &str) -> Authenticator {
        Authenticator { http, credentials, scope: scope.to_string(), current: tokio::sync::Mutex::new(None) }
    }

    /// A token valid for at least a minute more.
    pub async fn token(&self) -> Result<SecretString, GoogleError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        let mut attempt = 0;
        let answer = loop {
            attempt += 1;
            match self.fetch().await {
                Ok(answer) => break answer,
                Err((e, true)) if attempt < FETCH_ATTEMPTS => {
                    debug!(error = %e, attempt, "token request failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err((e, _)) => return Err(e),
            }
        };
        let lifetime = Duration::from_secs(answer.expires_in.max(1));
        let refresh_at = Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN.min(lifetime / 2));
        let value = SecretString::from(answer.access_token);
        debug!(expires_in = answer.expires_in, "Google access token fetched");
        *current = Some(Token { value: value.clone(), refresh_at });
        Ok(value)
    }

    /// Forgets `stale` (refused with a 401) so the next [`Authenticator::token`] fetches anew.
    pub async fn invalidate(&self, stale: &SecretString) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|t| t.value.expose_secret() == stale.expose_secret()) {
            *current = None;
        }
    }

    /// The project: the key file's, else the metadata server's.
    pub async fn project(&self) -> Result<String, GoogleError> {
        match &self.credentials {
            Credentials::ServiceAccount(account) => {
                account.project_id.clone().ok_or_else(|| GoogleError::KeyFile {
                    path: account.path.display().to_string(),
                    reason: "has no project_id; give the project with project=".into(),
                })
            }
            Credentials::Metadata { host } => {
                self.metadata_text(host, "project/project-id").await.map_err(|(e, _)| e)
            }
        }
    }

    /// The zone the VM runs in, from the metadata server (`None` with a key file).
    pub async fn zone(&self) -> Option<String> {
        let Credentials::Metadata { host } = &self.credentials else { return None };
        let zone = self.metadata_text(host, "instance/zone").await.ok()?;
        zone.rsplit('/').next().map(str::to_string)
    }

    /// One token request; the flag says whether trying again may help.
    async fn fetch(&self) -> Result<TokenAnswer, (GoogleError, bool)> {
        match &self.credentials {
            Credentials::Metadata { host } => {
                let path = format!("instance/service-accounts/default/token?scopes={}", self.scope);
                let body = self.metadata_text(host, &path).await?;
                serde_json::from_str(&body).map_err(|e| {
                    let reason = format!("the token answer is not a token: {e}");
                    (GoogleError::Metadata { host: host.clone(), reason }, false)
                })
            }
            Credentials::ServiceAccount(account) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let assertion = account.assertion(&self.scope, now).map_err(|e| (e, false))?;
                let form = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
                    .append_pair("assertion", &assertion)
                    .finish();
                let refused = |reason: String| GoogleError::Token { url: account.token_uri.clone(), reason };
                let response = self
                    .http
                    .post(&account.token_uri)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form)
                    .send()
                    .await
                    .map_err(|e| (refused(format!("cannot reach it: {}", error_chain(&e))), true))?;
                let status = response.status();
                let body = response.text().await.map_err(|e| (refused(error_chain(&e)), true))?;
                if !status.is_success() {
                    let transient = status.is_server_error() || status.as_u16() == 429;
                    return Err((refused(oauth_message(status.as_u16(), &body)), transient));
                }
                let answer: TokenAnswer = serde_json::from_str(&body)
                    .map_err(|e| (refused(format!("the answer is not a token: {e}")), false))?;
                info!(account = %account.email, "Google access token fetched with the service-account key");
                Ok(answer)
            }
        }
    }

    async fn metadata_text(&self, host: &str, path: &str) -> Result<String, (GoogleError, bool)> {
        let failed = |reason: String| GoogleError::Metadata { host: host.to_string(), reason };
        let url = format!("http://{host}/computeMetadata/v1/{path}");
        let response = self
            .http
            .get(&url)
            .header("Metadata-Flavor", "Google")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| (failed(format!("cannot reach it: {}", error_chain(&e))), true))?;
        let status = response.status();
        let flavor =
            response.headers().get("Metadata-Flavor").and_then(|v| v.to_str().ok()) == Some("Google");
        let body = response.text().await.map_err(|e| (failed(error_chain(&e)), true))?;
        if !status.is_success() {
            let path = path.split('?').next().unwrap_or(path);
            let transient = status.is_server_error() || status.as_u16() == 429;
            let message = ApiError::from_body(status.as_u16(), &body).message;
            return Err((failed(format!("{path}: {} {message}", status.as_u16())), transient));
        }
        if !flavor {
            return Err((
                failed("the answer lacks Metadata-Flavor: Google; not a metadata server".into()),
                false,
            ));
        }
        Ok(body.trim().to_string())
    }
}

/// An OAuth error answer: `{"error": "invalid_grant", "error_description": "..."}`.
fn oauth_message(status: u16, body: &str) -> String {
    #[derive(Deserialize)]
    struct OAuthError {
        error: String,
        #[serde(default)]
        error_description: String,
    }
    match serde_json::from_str::<OAuthError>(body) {
        Ok(e) if e.error_description.is_empty() => format!("{status} {}", e.error),
        Ok(e) => format!("{status} {}: {}", e.error, e.error_description),
        Err(_) => format!("{status}: {}", ApiError::from_body(status, body).message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(dir: &Path, pem: &str) -> PathBuf {
        let path = dir.join("key.json");
        let key = serde_json::json!({
            "type": "service_account", "project_id": "p", "private_key_id": "k1",
            "private_key": pem, "client_email": "c@p.iam.gserviceaccount.com",
            "token_uri": "http://127.0.0.1:1/token",
        });
        std::fs::write(&path, key.to_string()).unwrap();
        path
    }

    #[test]
    fn signs_an_assertion_the_public_key_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let pem = include_str!("../../../fixtures/google/issued-key.pem");
        let account = ServiceAccount::load(&key_file(dir.path(), pem)).unwrap();
        let jwt = account.assertion("s", 1_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], "http://127.0.0.1:1/token");
        assert_eq!(claims["exp"], 1_000 + ASSERTION_LIFETIME_S);
        let key = RsaKeyPair::from_pkcs8(&pem_body(pem).unwrap()).unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            key.public().as_ref().to_vec(),
        );
        let signed = &jwt[..jwt.rfind('.').unwrap()];
        assert!(public.verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).is_ok());
    }

    #[test]
    fn a_bad_key_file_names_the_file_and_the_fault() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path(), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        let err = ServiceAccount::load(&path).err().unwrap().to_string();
        assert!(err.contains("key.json") && err.contains("not a usable RSA key"), "{err}");
        let err = ServiceAccount::load(&dir.path().join("missing.json")).err().unwrap().to_string();
        assert!(err.contains("missing.json") && err.contains("cannot read"), "{err}");
    }
}
