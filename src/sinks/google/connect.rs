//! The start every Google sink makes: credentials, a first token, the project and location.

use std::sync::Arc;

use url::Url;

use super::auth::{Authenticator, Credentials};
use super::client::{ApiClient, http_client};
use super::endpoints::GoogleOptions;
use super::error::GoogleError;

/// An authenticated client and what the sink's resources are labelled with.
pub struct Connection {
    pub client: ApiClient,
    pub project: String,
    pub location: String,
}

/// Reads the credentials, fetches a first token and finds the project (and the zone, else
/// `global`): a sink that cannot authenticate fails here, at start, naming what to fix.
pub async fn connect(
    options: &GoogleOptions,
    scope: &str,
    api: &'static str,
) -> Result<Connection, GoogleError> {
    let http = http_client(options)?;
    let credentials = Credentials::from_options(options.credentials.as_deref(), &options.metadata_host)?;
    let auth = Arc::new(Authenticator::new(http.clone(), credentials, scope));
    auth.token().await?;
    let project = match &options.project {
        Some(p) => p.clone(),
        None => auth.project().await?,
    };
    let location = match &options.location {
        Some(l) => l.clone(),
        None => auth.zone().await.unwrap_or_else(|| "global".to_string()),
    };
    let client = ApiClient::new(http, auth, api, options.attempts, options.backoff);
    Ok(Connection { client, project, location })
}

/// `path` under the API endpoint.
pub fn endpoint_url(options: &GoogleOptions, path: &str) -> Result<Url, GoogleError> {
    options.endpoint.join(path).map_err(|source| GoogleError::Url {
        base: options.endpoint.to_string(),
        path: path.to_string(),
        source,
    })
}
