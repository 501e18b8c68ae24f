//! What the Google Cloud sinks (`gcm`, `gcl`) share: where the APIs are, how the collector
//! authenticates, Google's error format, and one retrying request path.
//!
//! - [`endpoints`]: the sink URI options every Google sink takes, and the environment variables
//!   Google's own libraries honour (`GOOGLE_APPLICATION_CREDENTIALS`, `GCE_METADATA_HOST`,
//!   `CLOUDSDK_API_ENDPOINT_OVERRIDES_MONITORING`, `..._LOGGING`).
//! - [`auth`]: access tokens from the GCE metadata server or a service-account key (a signed JWT
//!   exchanged at the key's `token_uri`), refreshed before they expire.
//! - [`error`]: `{"error": {"code", "message", "status", "details"}}`.
//! - [`connect`]: the start every Google sink makes (credentials, first token, project, zone).
//! - [`client`]: POST with the token, retrying 429/5xx/timeouts with backoff and jitter (honouring
//!   `Retry-After`), refreshing the token once on a 401.

pub mod auth;
pub mod client;
pub mod connect;
pub mod endpoints;
pub mod error;
pub mod json;

pub use auth::{Authenticator, Credentials};
pub use client::ApiClient;
pub use endpoints::GoogleOptions;
pub use error::{ApiError, GoogleError};
