//! The API server's aggregation layer for `metrics.k8s.io`, and an audit of what clients asked.
//!
//! Once a backend is registered ([`super::FixtureServer::register_metrics_api`], as an
//! `APIService` does), `/apis` lists the `metrics.k8s.io` group and every request under
//! `/apis/metrics.k8s.io/` is forwarded to the backend with its query, and the backend's answer
//! (status, `Content-Type`, body) comes back unchanged: `kubectl top` then works against the
//! fixture server as against a cluster running the collector.
//!
//! Every authorized request to the API server and to the kubelets' HTTPS port is recorded as
//! the RBAC request it is ([`ApiRequest`]: API group, resource, verb), the way the API server
//! and the kubelet authorize them, so tests can check a ClusterRole against what was asked.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};

use super::http::{self, Body};
use super::status;

/// One request in RBAC's terms.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiRequest {
    /// On a resource: API group (`""` for core), resource (with `/subresource`), verb.
    Resource { group: String, resource: String, verb: String },
    /// A non-resource URL (`/version`, `/api`, `/apis/...` discovery).
    NonResource { path: String, verb: String },
}

/// The registered backend and the requests seen.
#[derive(Default)]
pub struct Aggregation {
    backend: Mutex<Option<String>>,
    requests: Mutex<BTreeSet<ApiRequest>>,
}

/// The group of a path under `/apis/<group>/<version>/...`, or core under `/api/v1/...`, and the
/// segments after the version; `None` for discovery paths.
fn resource_path(path: &str) -> Option<(String, Vec<&str>)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => Some((String::new(), rest.to_vec())),
        ["apis", group, _version, rest @ ..] if !rest.is_empty() => Some((group.to_string(), rest.to_vec())),
        _ => None,
    }
}

/// The RBAC request a method, path and query make, as the API server's request-info resolver
/// reads them.
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> ApiRequest {
    let params: HashMap<String, String> =
        query.map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let watch = params.get("watch").is_some_and(|w| w == "1" || w.eq_ignore_ascii_case("true"));
    let http_verb = method.as_str().to_ascii_lowercase();
    let Some((group, rest)) = resource_path(path) else {
        return ApiRequest::NonResource { path: path.to_string(), verb: http_verb };
    };
    // namespaces/{ns}/{resource}[/{name}[/{sub}]] names a namespaced resource; namespaces[/{name}]
    // is the namespace itself.
    let rest: Vec<&str> = match rest.as_slice() {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail.to_vec(),
        other => other.to_vec(),
    };
    let (resource, named) = match rest.as_slice() {
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
        [] => (String::new(), false),
    };
    let verb = match (method, named, watch) {
        (&Method::GET | &Method::HEAD, _, true) => "watch",
        (&Method::GET | &Method::HEAD, false, false) => "list",
        (&Method::GET | &Method::HEAD, true, false) => "get",
        (&Method::POST, _, _) => "create",
        (&Method::PUT, _, _) => "update",
        (&Method::PATCH, _, _) => "patch",
        (&Method::DELETE, false, _) => "deletecollection",
        (&Method::DELETE, true, _) => "delete",
        _ => return ApiRequest::NonResource { path: path.to_string(), verb: http_verb },
    };
    ApiRequest::Resource { group, resource, verb: verb.to_string() }
}

impl Aggregation {
    pub fn register(&self, backend: &str) {
        *self.backend.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(backend.trim_end_matches('/').to_string());
    }

    pub fn backend(&self) -> Option<String> {
        self.backend.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn record(&self, request: ApiRequest) {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).insert(request);
    }

    pub fn requests(&self) -> BTreeSet<ApiRequest> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The kubelet's `/stats/summary` is authorized as `get` on `nodes/stats`.
    pub fn record_kubelet_stats(&self) {
        self.record(ApiRequest::Resource {
            group: String::new(),
            resource: "nodes/stats".into(),
            verb: "get".into(),
        });
    }
}

/// Whether `path` belongs to the aggregated group.
pub fn is_metrics_path(path: &str) -> bool {
    path == "/apis/metrics.k8s.io" || path.starts_with("/apis/metrics.k8s.io/")
}

/// The `metrics.k8s.io` entry of `/apis`, when a backend is registered.
pub fn metrics_group() -> serde_json::Value {
    let version = serde_json::json!({"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"});
    serde_json::json!({"name": "metrics.k8s.io", "versions": [version.clone()], "preferredVersion": version})
}

/// Forwards a request for the aggregated group to its backend.
pub async fn proxy(aggregation: &Aggregation, request: Request<Incoming>) -> Response<Body> {
    let Some(backend) = aggregation.backend() else {
        return status::status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    if request.method() != Method::GET {
        return status::status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "only GET is proxied");
    }
    let target = match request.uri().query() {
        Some(q) => format!("{backend}{}?{q}", request.uri().path()),
        None => format!("{backend}{}", request.uri().path()),
    };
    let client = reqwest::Client::new();
    let answer = match client.get(&target).send().await {
        Ok(answer) => answer,
        Err(e) => {
            // As the aggregator answers when the service behind an APIService is down.
            return status::status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!("error trying to reach service: {e}"),
            );
        }
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let json = answer
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/json"));
    match answer.bytes().await {
        Ok(body) if json => http::json(status, body),
        Ok(body) => http::text(status, body),
        Err(e) => status::status(StatusCode::BAD_GATEWAY, "InternalError", &format!("backend body: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(group: &str, resource: &str, verb: &str) -> ApiRequest {
        ApiRequest::Resource { group: group.into(), resource: resource.into(), verb: verb.into() }
    }

    #[test]
    fn requests_classify_as_rbac_reads_them() {
        let get = Method::GET;
        assert_eq!(classify(&get, "/api/v1/nodes", None), resource("", "nodes", "list"));
        assert_eq!(
            classify(&get, "/api/v1/nodes", Some("watch=true&resourceVersion=1")),
            resource("", "nodes", "watch")
        );
        assert_eq!(classify(&get, "/api/v1/nodes/n1", None), resource("", "nodes", "get"));
        assert_eq!(classify(&get, "/api/v1/namespaces/a/pods", None), resource("", "pods", "list"));
        assert_eq!(classify(&get, "/api/v1/namespaces/a/pods/p", None), resource("", "pods", "get"));
        assert_eq!(classify(&get, "/api/v1/namespaces", None), resource("", "namespaces", "list"));
        assert_eq!(classify(&get, "/api/v1/namespaces/a", None), resource("", "namespaces", "get"));
        assert_eq!(classify(&get, "/api/v1/nodes/n1/proxy/stats", None), resource("", "nodes/proxy", "get"));
        assert_eq!(
            classify(&get, "/apis/events.k8s.io/v1/events", Some("watch=1")),
            resource("events.k8s.io", "events", "watch")
        );
        assert_eq!(
            classify(&get, "/version", None),
            ApiRequest::NonResource { path: "/version".into(), verb: "get".into() }
        );
        assert!(matches!(
            classify(&get, "/apis/metrics.k8s.io/v1beta1", None),
            ApiRequest::NonResource { .. }
        ));
    }
}
