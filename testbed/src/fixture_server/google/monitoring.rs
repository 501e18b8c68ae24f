//! Cloud Monitoring v3: `metricDescriptors` create/get and `timeSeries.create`, with the
//! documented rules: at most 200 series a request, exactly one point per series, no series twice
//! in a request, points in order (a point's end after the series' last one), `CUMULATIVE` with a
//! start before the end and `GAUGE` with none or the same, metric kind, value type and labels as
//! the series' descriptor says (at most 30 labels), a known monitored resource with exactly its
//! labels. Series that break a rule are refused one by one and the others written; the 400 says
//! how many in a `CreateTimeSeriesSummary`.

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::{Shared, StoredSeries, check_project, check_resource, google_error, label_pairs, shape_error};
use crate::fixture_server::http::{self, Body};

pub const MAX_SERIES_PER_REQUEST: usize = 200;
pub const MAX_LABELS_PER_DESCRIPTOR: usize = 30;
const CUSTOM_PREFIX: &str = "custom.googleapis.com/";

pub fn handle(shared: &Shared, method: &Method, path: &str, body: &Bytes) -> Response<Body> {
    let rest = path.trim_start_matches("/v3/projects/");
    let (project, rest) = rest.split_once('/').unwrap_or((rest, ""));
    match (method, rest) {
        (&Method::POST, "timeSeries") => {
            if let Some(denied) = check_project(shared, project, "monitoring.timeSeries.create") {
                return denied;
            }
            create_time_series(shared, body)
        }
        (&Method::POST, "metricDescriptors") => {
            if let Some(denied) = check_project(shared, project, "monitoring.metricDescriptors.create") {
                return denied;
            }
            create_descriptor(shared, body)
        }
        (&Method::GET, rest) if rest.starts_with("metricDescriptors/") => {
            let ty = rest.trim_start_matches("metricDescriptors/");
            let ty = percent_decode(ty);
            match shared.state().descriptors.get(&ty) {
                Some(d) => http::json(StatusCode::OK, d.to_string()),
                None => google_error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    &format!("Could not find descriptor for metric '{ty}'."),
                    Vec::new(),
                ),
            }
        }
        _ => google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("{method} {path} not found"),
            Vec::new(),
        ),
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn valid_label_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= 100
}

fn create_descriptor(shared: &Shared, body: &Bytes) -> Response<Body> {
    let descriptor: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return shape_error(shared, vec![format!("Invalid JSON payload received. {e}")]),
    };
    let mut errors = shared.monitoring.check("MetricDescriptor", &descriptor);
    let ty = descriptor["type"].as_str().unwrap_or_default().to_string();
    if !ty.starts_with(CUSTOM_PREFIX) || ty.len() == CUSTOM_PREFIX.len() {
        errors.push(format!("Metric type {ty:?} must start with {CUSTOM_PREFIX}"));
    }
    for field in ["metricKind", "valueType"] {
        if descriptor[field].as_str().is_none_or(|v| v.ends_with("_UNSPECIFIED")) {
            errors.push(format!("{field} is required"));
        }
    }
    let labels = descriptor["labels"].as_array().cloned().unwrap_or_default();
    if labels.len() > MAX_LABELS_PER_DESCRIPTOR {
        errors.push(format!(
            "{} labels; a metric descriptor has at most {MAX_LABELS_PER_DESCRIPTOR}",
            labels.len()
        ));
    }
    for label in &labels {
        let key = label["key"].as_str().unwrap_or_default();
        if !valid_label_key(key) {
            errors.push(format!("label key {key:?} must match [a-z][a-zA-Z0-9_]*"));
        }
    }
    if !errors.is_empty() {
        return shape_error(shared, errors);
    }
    let mut stored = descriptor.clone();
    stored["name"] = json!(format!("projects/{}/metricDescriptors/{ty}", shared.project));
    let mut state = shared.state();
    state.stats.descriptors_created += 1;
    state.descriptors.insert(ty, stored.clone());
    http::json(StatusCode::OK, stored.to_string())
}

fn create_time_series(shared: &Shared, body: &Bytes) -> Response<Body> {
    shared.state().stats.time_series_requests += 1;
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return shape_error(shared, vec![format!("Invalid JSON payload received. {e}")]),
    };
    let errors = shared.monitoring.check("CreateTimeSeriesRequest", &request);
    if !errors.is_empty() {
        return shape_error(shared, errors);
    }
    let Some(series) = request["timeSeries"].as_array() else {
        return shape_error(shared, vec!["Request was missing field timeSeries.".into()]);
    };
    if series.is_empty() {
        return shape_error(shared, vec!["Request was missing field timeSeries.".into()]);
    }
    if series.len() > MAX_SERIES_PER_REQUEST {
        return shape_error(
            shared,
            vec![format!(
                "Field timeSeries had an invalid value: A maximum of {MAX_SERIES_PER_REQUEST} TimeSeries can be written in a single request."
            )],
        );
    }
    let mut state = shared.state();
    state.stats.max_series_per_request = state.stats.max_series_per_request.max(series.len());
    let reject = state.faults.reject_label_value.clone();
    let mut seen = std::collections::HashSet::new();
    let mut failures: Vec<(usize, String, u16)> = Vec::new();
    for (i, ts) in series.iter().enumerate() {
        let metric_type = ts["metric"]["type"].as_str().unwrap_or_default().to_string();
        let metric_labels = label_pairs(&ts["metric"]["labels"]);
        let resource_type = ts["resource"]["type"].as_str().unwrap_or_default().to_string();
        let resource_labels = label_pairs(&ts["resource"]["labels"]);
        let key =
            (metric_type.clone(), metric_labels.clone(), resource_type.clone(), resource_labels.clone());
        let descriptors = &state.descriptors;
        let stored_series = &state.series;
        let problem = (|| -> Option<(String, u16)> {
            if let Some(problem) = check_resource(shared, &ts["resource"]) {
                return Some((problem, 3));
            }
            let Some(descriptor) = descriptors.get(&metric_type) else {
                return Some((format!("Could not find descriptor for metric '{metric_type}'."), 5));
            };
            let declared: Vec<&str> = descriptor["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["key"].as_str())
                .collect();
            for (label, value) in &metric_labels {
                if !declared.contains(&label.as_str()) {
                    return Some((format!("Unrecognized metric label \"{label}\" for {metric_type}"), 3));
                }
                if value.len() > 1024 {
                    return Some((format!("metric label {label} longer than 1024 bytes"), 3));
                }
            }
            let kind = descriptor["metricKind"].as_str().unwrap_or_default();
            let value_type = descriptor["valueType"].as_str().unwrap_or_default();
            for (field, expected) in [("metricKind", kind), ("valueType", value_type)] {
                if let Some(given) = ts[field].as_str()
                    && given != expected
                {
                    return Some((
                        format!("{field} {given} of the series is not the descriptor's {expected}"),
                        3,
                    ));
                }
            }
            let points = ts["points"].as_array().map_or(0, Vec::len);
            if points != 1 {
                return Some((format!("Expected exactly one point per time series, got {points}"), 3));
            }
            let point = &ts["points"][0];
            let value_field = match value_type {
                "INT64" => "int64Value",
                "DOUBLE" => "doubleValue",
                "BOOL" => "boolValue",
                "STRING" => "stringValue",
                _ => "distributionValue",
            };
            let fields = point["value"].as_object().map_or(0, |m| m.len());
            if point["value"].get(value_field).is_none() || fields != 1 {
                return Some((
                    format!("The value of the point must be {value_field} for value type {value_type}"),
                    3,
                ));
            }
            let time =
                |f: &str| point["interval"][f].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok());
            let Some(end) = time("endTime") else {
                return Some(("The point's interval.endTime is required".into(), 3));
            };
            match (kind, time("startTime")) {
                ("CUMULATIVE", Some(start)) if start < end => {}
                ("CUMULATIVE", _) => {
                    return Some((
                        "The start time must be before the end time for the CUMULATIVE metric".into(),
                        3,
                    ));
                }
                ("GAUGE", Some(start)) if start != end => {
                    return Some(("The start time must equal the end time for the GAUGE metric".into(), 3));
                }
                _ => {}
            }
            if !seen.insert(key.clone()) {
                return Some((
                    "Field timeSeries had an invalid value: Duplicate TimeSeries encountered. Only one point can be written per TimeSeries per request.".into(),
                    3,
                ));
            }
            if let Some(stored) = stored_series.get(&key)
                && stored.last_end.is_some_and(|last| end <= last)
            {
                return Some((
                    "Points must be written in order. One or more of the points specified had an older start time than the most recent point.".into(),
                    3,
                ));
            }
            None
        })();
        if let Some((message, code)) = problem {
            state.stats.series_invalid += 1;
            if state.stats.shape_errors.len() < 50 {
                state.stats.shape_errors.push(format!("timeSeries[{i}]: {message}"));
            }
            failures.push((i, message, code));
            continue;
        }
        let injected = reject
            .as_ref()
            .is_some_and(|r| metric_labels.iter().chain(&resource_labels).any(|(_, v)| v == r));
        if injected {
            state.stats.series_refused += 1;
            failures.push((i, format!("Series refused (fault injected for label value {reject:?})"), 3));
            continue;
        }
        let point = ts["points"][0].clone();
        let end = point["interval"]["endTime"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok());
        let (kind, value_type) =
            state.descriptors.get(&metric_type).map_or((String::new(), String::new()), |d| {
                (
                    d["metricKind"].as_str().unwrap_or_default().to_string(),
                    d["valueType"].as_str().unwrap_or_default().to_string(),
                )
            });
        let stored = state.series.entry(key).or_insert_with(|| StoredSeries {
            metric_type,
            metric_labels: metric_labels.into_iter().collect::<BTreeMap<_, _>>(),
            resource_type,
            resource_labels: resource_labels.into_iter().collect::<BTreeMap<_, _>>(),
            metric_kind: kind,
            value_type,
            points: Vec::new(),
            last_end: None,
        });
        stored.points.push(point);
        stored.last_end = end;
        state.stats.series_written += 1;
    }
    drop(state);
    if failures.is_empty() {
        return http::json(StatusCode::OK, "{}");
    }
    if failures.iter().any(|(_, m, _)| !m.contains("fault injected")) {
        tracing::warn!(failures = ?failures.iter().take(3).collect::<Vec<_>>(), "Google emulation: series refused");
    }
    let (first_index, first_message, _) = &failures[0];
    let mut by_code: BTreeMap<u16, u64> = BTreeMap::new();
    for (_, _, code) in &failures {
        *by_code.entry(*code).or_default() += 1;
    }
    let errors: Vec<Value> =
        by_code.iter().map(|(code, count)| json!({"status": {"code": code}, "pointCount": count})).collect();
    google_error(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        &format!("One or more TimeSeries could not be written: {first_message}: timeSeries[{first_index}]"),
        vec![json!({
            "@type": "type.googleapis.com/google.monitoring.v3.CreateTimeSeriesSummary",
            "totalPointCount": series.len(),
            "successPointCount": series.len() - failures.len(),
            "errors": errors,
        })],
    )
}
