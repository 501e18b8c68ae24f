//! The kube-apiserver side: discovery, lists, gets and watches of nodes, pods, namespaces and
//! events (core v1, and `events.k8s.io/v1` converted from them).

use std::collections::HashMap;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::http::{self, Body, is_true};
use super::status::status;
use super::store::{self, Key, View};
use super::{Shared, aggregation, paging, watch};
use heapster::scenario::ApiList;

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Version,
    Api,
    Apis,
    ApiV1,
    /// `/apis/events.k8s.io` and `/apis/events.k8s.io/v1`.
    EventsGroup,
    EventsV1,
    Health,
    List(ApiList, View, Option<String>),
    Get(ApiList, View, Key),
    FixtureState,
    FixtureAdvance,
    FixtureStats,
}

fn route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let key = |ns: &str, name: &str| (ns.to_string(), name.to_string());
    let core = View::Core;
    let v1 = View::EventsV1;
    Some(match segments.as_slice() {
        ["version"] => Route::Version,
        ["api"] => Route::Api,
        ["apis"] => Route::Apis,
        ["api", "v1"] => Route::ApiV1,
        ["apis", "events.k8s.io"] => Route::EventsGroup,
        ["apis", "events.k8s.io", "v1"] => Route::EventsV1,
        ["healthz" | "livez" | "readyz"] => Route::Health,
        ["api", "v1", "nodes"] => Route::List(ApiList::Nodes, core, None),
        ["api", "v1", "nodes", name] => Route::Get(ApiList::Nodes, core, key("", name)),
        ["api", "v1", "pods"] => Route::List(ApiList::Pods, core, None),
        ["api", "v1", "events"] => Route::List(ApiList::Events, core, None),
        ["api", "v1", "namespaces"] => Route::List(ApiList::Namespaces, core, None),
        ["api", "v1", "namespaces", name] => Route::Get(ApiList::Namespaces, core, key("", name)),
        ["api", "v1", "namespaces", ns, "pods"] => Route::List(ApiList::Pods, core, Some(ns.to_string())),
        ["api", "v1", "namespaces", ns, "pods", name] => Route::Get(ApiList::Pods, core, key(ns, name)),
        ["api", "v1", "namespaces", ns, "events"] => Route::List(ApiList::Events, core, Some(ns.to_string())),
        ["api", "v1", "namespaces", ns, "events", name] => Route::Get(ApiList::Events, core, key(ns, name)),
        ["apis", "events.k8s.io", "v1", "events"] => Route::List(ApiList::Events, v1, None),
        ["apis", "events.k8s.io", "v1", "namespaces", ns, "events"] => {
            Route::List(ApiList::Events, v1, Some(ns.to_string()))
        }
        ["apis", "events.k8s.io", "v1", "namespaces", ns, "events", name] => {
            Route::Get(ApiList::Events, v1, key(ns, name))
        }
        ["fixture", "state"] => Route::FixtureState,
        ["fixture", "advance"] => Route::FixtureAdvance,
        ["fixture", "stats"] => Route::FixtureStats,
        _ => return None,
    })
}

fn reason_of(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

pub async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    if !http::authorized(&request, shared.token.as_deref()) {
        shared.count(|s| s.api_unauthorized += 1);
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let uri = request.uri();
    shared.aggregation.record(aggregation::classify(request.method(), uri.path(), uri.query()));
    if aggregation::is_metrics_path(uri.path()) {
        return aggregation::proxy(&shared.aggregation, request).await;
    }
    if uri.path().trim_end_matches('/') == "/apis" && shared.aggregation.backend().is_some() {
        let body = json!({"kind": "APIGroupList", "apiVersion": "v1",
                          "groups": [events_group(), aggregation::metrics_group()]});
        return http::json(StatusCode::OK, body.to_string());
    }
    let query: HashMap<String, String> = request
        .uri()
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let Some(route) = route(request.uri().path()) else {
        return status(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource");
    };
    let method = request.method();
    let allowed = match route {
        Route::FixtureAdvance => method == Method::POST,
        _ => method == Method::GET,
    };
    if !allowed {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("{method} is not supported here"),
        );
    }
    match route {
        Route::Version | Route::Api | Route::Apis | Route::ApiV1 | Route::EventsGroup | Route::EventsV1 => {
            shared.count(|s| s.discovery += 1);
            http::json(StatusCode::OK, discovery(&route, request.uri().authority().map(|a| a.as_str())))
        }
        Route::Health => http::text(StatusCode::OK, "ok"),
        Route::FixtureState => {
            let state = shared.state();
            let body = json!({"window": state.clock.window(), "windows": state.clock.windows()});
            http::json(StatusCode::OK, body.to_string())
        }
        Route::FixtureStats => {
            // Benchmarks read how many nodes were scraped over a stretch of windows.
            let stats = shared.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let total: u64 = stats.summaries.values().sum();
            let body = json!({"summaries": total, "nodes": stats.summaries.len()});
            http::json(StatusCode::OK, body.to_string())
        }
        Route::FixtureAdvance => {
            let advanced = shared.advance();
            let state = shared.state();
            let body = json!({"window": state.clock.window(), "windows": state.clock.windows(), "advanced": advanced});
            http::json(StatusCode::OK, body.to_string())
        }
        Route::List(list, view, ns) if is_true(query.get("watch")) => {
            watch::watch(shared, list, view, ns, &query)
        }
        Route::List(list, view, ns) => {
            shared.count(|s| s.lists += 1);
            if let Some(response) = list_fault(&shared) {
                return response;
            }
            let limit = match paging::limit(&query) {
                Ok(limit) => limit,
                Err(message) => return status(StatusCode::BAD_REQUEST, "BadRequest", &message),
            };
            let of = (list, view, ns);
            if let Some(token) = query.get("continue").filter(|c| !c.is_empty()) {
                shared.count(|s| s.list_pages += 1);
                return match shared.pager.next(token, &of, limit) {
                    Ok(body) => http::json(StatusCode::OK, body),
                    Err(e) => {
                        let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::BAD_REQUEST);
                        status(code, e.reason(), &e.message())
                    }
                };
            }
            let Some(limit) = limit else {
                let body = shared.state().store.list_body(list, view, of.2.as_deref());
                return http::json(StatusCode::OK, body);
            };
            let (rv, items) = {
                let state = shared.state();
                (state.store.rv(), state.store.list_items(list, view, of.2.as_deref()))
            };
            let head = (store::item_kind(list), view.api_version());
            http::json(StatusCode::OK, shared.pager.first(of, rv, head, items, limit))
        }
        Route::Get(list, view, key) => {
            shared.count(|s| s.gets += 1);
            if let Some(response) = list_fault(&shared) {
                return response;
            }
            match shared.state().store.get(list, view, &key) {
                Some(object) => http::json(StatusCode::OK, object.to_string()),
                None => {
                    let resource = format!("{}s", store::item_kind(list).to_ascii_lowercase());
                    status(StatusCode::NOT_FOUND, "NotFound", &format!("{resource} \"{}\" not found", key.1))
                }
            }
        }
    }
}

/// The `Status` a `list_error` fault of the current window forces, if any.
fn list_fault(shared: &Shared) -> Option<Response<Body>> {
    let window = shared.state().clock.window();
    let code = shared.faults.api(window).list_error?;
    shared.count(|s| s.api_faults += 1);
    let status_code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some(status(status_code, reason_of(code), &format!("fault injected by the scenario in window {window}")))
}

fn discovery(route: &Route, authority: Option<&str>) -> String {
    let body = match route {
        Route::Version => json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "fixture",
            "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
            "compiler": "gc", "platform": "linux/amd64",
        }),
        Route::Api => json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": authority.unwrap_or("")}],
        }),
        Route::Apis => json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [events_group()]}),
        Route::EventsGroup => {
            let mut group = events_group();
            group["kind"] = json!("APIGroup");
            group["apiVersion"] = json!("v1");
            group
        }
        Route::EventsV1 => json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": "events.k8s.io/v1", "resources": [resource("events", "Event", true)]}),
        _ => json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            resource("events", "Event", true),
            resource("namespaces", "Namespace", false),
            resource("nodes", "Node", false),
            resource("pods", "Pod", true),
        ]}),
    };
    body.to_string()
}

fn resource(name: &str, kind: &str, namespaced: bool) -> serde_json::Value {
    json!({"name": name, "singularName": kind.to_ascii_lowercase(), "namespaced": namespaced,
           "kind": kind, "verbs": ["get", "list", "watch"]})
}

fn events_group() -> serde_json::Value {
    let version = json!({"groupVersion": "events.k8s.io/v1", "version": "v1"});
    json!({"name": "events.k8s.io", "versions": [version.clone()], "preferredVersion": version})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_the_served_paths() {
        let core = View::Core;
        assert_eq!(route("/api/v1/nodes"), Some(Route::List(ApiList::Nodes, core, None)));
        assert_eq!(route("/api/v1/nodes/"), Some(Route::List(ApiList::Nodes, core, None)));
        assert_eq!(
            route("/api/v1/namespaces/kube-system/pods"),
            Some(Route::List(ApiList::Pods, core, Some("kube-system".into())))
        );
        assert_eq!(
            route("/api/v1/namespaces/a/pods/p"),
            Some(Route::Get(ApiList::Pods, core, ("a".into(), "p".into())))
        );
        assert_eq!(
            route("/api/v1/namespaces/a"),
            Some(Route::Get(ApiList::Namespaces, core, (String::new(), "a".into())))
        );
        assert_eq!(route("/api/v1/events"), Some(Route::List(ApiList::Events, core, None)));
        assert_eq!(
            route("/api/v1/namespaces/default/events/e.1"),
            Some(Route::Get(ApiList::Events, core, ("default".into(), "e.1".into())))
        );
        assert_eq!(
            route("/apis/events.k8s.io/v1/namespaces/a/events"),
            Some(Route::List(ApiList::Events, View::EventsV1, Some("a".into())))
        );
        assert_eq!(route("/apis/events.k8s.io/v1"), Some(Route::EventsV1));
        assert_eq!(route("/version"), Some(Route::Version));
        assert_eq!(route("/api/v1/services"), None);
        assert_eq!(route("/apis/apps/v1/deployments"), None);
    }
}
