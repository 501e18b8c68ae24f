//! Whether the API server answers, logged once per change for the whole process: the node,
//! pod, namespace and event watches all fail together when it is down, and one line naming
//! the server says so (each watch's own failure is at debug level).

use std::sync::{Mutex, OnceLock, PoisonError};

static URL: OnceLock<String> = OnceLock::new();
/// The cause last logged (the error's innermost part), while failing.
static FAILING: Mutex<Option<String>> = Mutex::new(None);

/// The API server's URL, named in the log lines.
pub fn set_url(url: &str) {
    let _ = URL.set(url.trim_end_matches('/').to_string());
}

fn url() -> &'static str {
    URL.get().map_or("(unknown)", String::as_str)
}

/// The innermost cause of an error chain (`a: b: connection refused` -> `connection refused`):
/// what the watches' different messages for one outage have in common.
fn cause(message: &str) -> &str {
    message.rsplit(": ").next().unwrap_or(message).trim()
}

/// A request to the API server failed with `message`; logs it if the cause changed.
pub fn failed(message: &str) {
    let mut failing = FAILING.lock().unwrap_or_else(PoisonError::into_inner);
    let cause = cause(message);
    if failing.as_deref() != Some(cause) {
        tracing::warn!("API server {} unreachable or failing: {message}; retrying with backoff", url());
        *failing = Some(cause.to_string());
    }
}

/// A request to the API server succeeded; logs the recovery once.
pub fn answered() {
    let mut failing = FAILING.lock().unwrap_or_else(PoisonError::into_inner);
    if failing.take().is_some() {
        tracing::info!("API server {} answers again", url());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_outage_is_one_cause() {
        let a = "failed to perform initial object list: ServiceError: client error (Connect): tcp connect error: Connection refused (os error 111)";
        let b = "ServiceError: client error (Connect): tcp connect error: Connection refused (os error 111)";
        assert_eq!(cause(a), cause(b));
        assert_ne!(cause(a), cause("ApiError: Unauthorized"));
    }
}
