//! Cloud Logging v2 `entries:write`, with its documented rules: requests up to 10 MB, each entry
//! under 256 KB, a `logName` (`projects/P/logs/ID`, ID URL-encoded) and a monitored resource,
//! on the entry or the request, one payload at most. With `partialSuccess` the valid entries
//! are written and the others listed in `WriteLogEntriesPartialErrors`; without it one bad
//! entry refuses the request. An entry with an (insertId, timestamp) already stored in its log
//! is not stored again, as Logging deduplicates.

use bytes::Bytes;
use hyper::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::{Shared, check_resource, google_error, shape_error};
use crate::fixture_server::http::Body;

pub const MAX_REQUEST_BYTES: usize = 10 << 20;
pub const MAX_ENTRY_BYTES: usize = 256 << 10;

pub fn handle(shared: &Shared, method: &Method, path: &str, body: &Bytes) -> Response<Body> {
    if (method, path) != (&Method::POST, "/v2/entries:write") {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("{method} {path} not found"),
            Vec::new(),
        );
    }
    shared.state().stats.write_requests += 1;
    if body.len() > MAX_REQUEST_BYTES {
        return shape_error(
            shared,
            vec![format!("Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes.")],
        );
    }
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return shape_error(shared, vec![format!("Invalid JSON payload received. {e}")]),
    };
    let errors = shared.logging.check("WriteLogEntriesRequest", &request);
    if !errors.is_empty() {
        return shape_error(shared, errors);
    }
    let entries = request["entries"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        return shape_error(shared, vec!["entries: at least one entry is required".into()]);
    }
    let partial = request["partialSuccess"].as_bool().unwrap_or(false);
    let reject_prefix = shared.state().faults.reject_insert_id_prefix.clone();

    // Shape of each entry: a refusal for the whole request (these are the sink's mistakes).
    let mut shape = Vec::new();
    let mut resolved = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let mut entry = entry.clone();
        let Some(members) = entry.as_object_mut() else { continue };
        if members.get("logName").is_none()
            && let Some(name) = request.get("logName")
        {
            members.insert("logName".into(), name.clone());
        }
        if members.get("resource").is_none()
            && let Some(resource) = request.get("resource")
        {
            members.insert("resource".into(), resource.clone());
        }
        if let Some(problem) = check_entry(shared, members) {
            shape.push(format!("entries[{i}]: {problem}"));
        }
        resolved.push(entry);
    }
    if !shape.is_empty() {
        return shape_error(shared, shape);
    }

    // Entries refused by an injected fault: per entry, as the API reports bad entries.
    let mut refused = Map::new();
    for (i, entry) in resolved.iter().enumerate() {
        if let Some(prefix) = &reject_prefix
            && entry["insertId"].as_str().is_some_and(|id| id.starts_with(prefix.as_str()))
        {
            refused.insert(
                i.to_string(),
                json!({"code": 3, "message": format!("Log entry with insertId {} refused (fault injected)", entry["insertId"])}),
            );
        }
    }
    let mut state = shared.state();
    if !refused.is_empty() && !partial {
        state.stats.entries_refused += resolved.len() as u64;
        drop(state);
        return google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "Log entry refused", Vec::new());
    }
    for (i, entry) in resolved.into_iter().enumerate() {
        if refused.contains_key(&i.to_string()) {
            state.stats.entries_refused += 1;
            continue;
        }
        let key = (
            entry["logName"].as_str().unwrap_or_default().to_string(),
            entry["insertId"].as_str().unwrap_or_default().to_string(),
            entry["timestamp"].as_str().unwrap_or_default().to_string(),
        );
        if !key.1.is_empty() && !state.entry_keys.insert(key) {
            state.stats.duplicate_entries += 1;
            continue;
        }
        state.stats.entries_written += 1;
        state.entries.push(entry);
    }
    drop(state);
    if refused.is_empty() {
        return super::http::json(StatusCode::OK, "{}");
    }
    let count = refused.len();
    google_error(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        &format!("Log entry with {count} errors"),
        vec![
            json!({"@type": "type.googleapis.com/google.logging.v2.WriteLogEntriesPartialErrors", "logEntryErrors": refused}),
        ],
    )
}

fn check_entry(shared: &Shared, entry: &Map<String, Value>) -> Option<String> {
    let size = serde_json::to_vec(entry).map_or(0, |b| b.len());
    if size > MAX_ENTRY_BYTES {
        return Some(format!(
            "Log entry with size {size} bytes exceeds maximum size of {MAX_ENTRY_BYTES} bytes"
        ));
    }
    let Some(log_name) = entry.get("logName").and_then(Value::as_str) else {
        return Some("logName is required (on the entry or the request)".into());
    };
    let parts: Vec<&str> = log_name.split('/').collect();
    let valid_id = |id: &str| {
        !id.is_empty()
            && id.len() <= 512
            && id.chars().all(|c| c.is_ascii_alphanumeric() || "._-%".contains(c))
    };
    match parts[..] {
        ["projects", project, "logs", id] if valid_id(id) => {
            if project != shared.project {
                return Some(format!(
                    "logName {log_name:?}: project {project} is not the project written to"
                ));
            }
        }
        _ => {
            return Some(format!(
                "logName {log_name:?} is not projects/[PROJECT_ID]/logs/[LOG_ID] with LOG_ID URL-encoded"
            ));
        }
    }
    let Some(resource) = entry.get("resource") else {
        return Some("resource is required (on the entry or the request)".into());
    };
    if let Some(problem) = check_resource(shared, resource) {
        return Some(problem);
    }
    let payloads =
        ["jsonPayload", "textPayload", "protoPayload"].iter().filter(|p| entry.contains_key(**p)).count();
    if payloads > 1 {
        return Some("at most one of jsonPayload, textPayload, protoPayload".into());
    }
    None
}
