//! One TLS crypto backend for the whole process: rustls with ring, as kube uses.

use std::sync::Once;

/// Installs ring as rustls' process-wide provider; reqwest (built without a provider) needs it
/// before its first client. Safe to call any number of times.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
