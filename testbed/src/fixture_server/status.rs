//! The apiserver's `Status` answers: the body of every error it sends, as JSON and as a response.

use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::http::{self, Body};

/// A `Status` object, the body of every apiserver error.
pub fn status_value(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// An error response with a `Status` body.
pub fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    http::json(code, status_value(code.as_u16(), reason, message).to_string())
}
