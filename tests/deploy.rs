//! The `deploy/` manifests parse as the Kubernetes objects they claim to be and fit together:
//! the Deployment runs as the bound ServiceAccount, its arguments are flags the collector
//! accepts, its probes hit `/healthz` and `/readyz` on the served port, the Service selects it,
//! and the APIService points `metrics.k8s.io` at the Service. (What the ClusterRole grants is
//! checked against a live run in `tests/api.rs`.)

use std::path::{Path, PathBuf};

use clap::Parser;
use heapster::cli::Cli;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde::Deserialize as _;
use serde::de::DeserializeOwned;

fn path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)
}

/// Every document of a manifest file, as `T`; the `kind` must match.
fn documents<T: DeserializeOwned + k8s_openapi::Resource>(file: &str) -> Vec<T> {
    let text = std::fs::read_to_string(path(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document).unwrap_or_else(|e| panic!("{file}: {e}"));
        if value.get("kind").and_then(|k| k.as_str()) != Some(T::KIND) {
            continue;
        }
        assert_eq!(value.get("apiVersion").and_then(|v| v.as_str()), Some(T::API_VERSION), "{file}");
        out.push(serde_yaml::from_value(value).unwrap_or_else(|e| panic!("{file} as {}: {e}", T::KIND)));
    }
    assert!(!out.is_empty(), "no {} in {file}", T::KIND);
    out
}

fn one<T: DeserializeOwned + k8s_openapi::Resource>(file: &str) -> T {
    documents::<T>(file).remove(0)
}

#[test]
fn every_manifest_parses_and_they_fit_together() {
    let account: ServiceAccount = one("serviceaccount.yaml");
    let role: ClusterRole = one("clusterrole.yaml");
    let binding: ClusterRoleBinding = one("clusterrolebinding.yaml");
    let deployment: Deployment = one("deployment.yaml");
    let service: Service = one("service.yaml");
    let apiservice: APIService = one("apiservice.yaml");
    let influx_deployments: Vec<Deployment> = documents("influxdb.yaml");
    let influx_services: Vec<Service> = documents("influxdb.yaml");

    let namespace = account.metadata.namespace.clone().expect("namespace");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(Some(binding.role_ref.name.clone()), role.metadata.name.clone());
    let subject = &binding.subjects.as_ref().expect("subjects")[0];
    assert_eq!(
        (subject.kind.as_str(), Some(&subject.name)),
        ("ServiceAccount", account.metadata.name.as_ref())
    );
    assert_eq!(subject.namespace.as_ref(), Some(&namespace));
    // Read-only: no rule grants a verb that writes.
    for rule in role.rules.iter().flatten() {
        for verb in &rule.verbs {
            assert!(["get", "list", "watch"].contains(&verb.as_str()), "the ClusterRole grants {verb}");
        }
    }

    let spec = deployment.spec.as_ref().expect("spec");
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.service_account_name, account.metadata.name);
    let security = pod.security_context.as_ref().expect("pod security context");
    assert_eq!(security.run_as_non_root, Some(true));
    assert!(security.run_as_user.is_some_and(|u| u != 0));
    let container = &pod.containers[0];
    let resources = container.resources.as_ref().expect("resources");
    assert!(resources.requests.as_ref().is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory")));
    assert!(resources.limits.as_ref().is_some_and(|l| l.contains_key("memory")));

    // The arguments are flags the collector takes, and make a valid run.
    let args = container.args.clone().expect("args");
    let cli = Cli::try_parse_from(std::iter::once("heapster".to_string()).chain(args.iter().cloned()))
        .unwrap_or_else(|e| panic!("deployment args: {e}"));
    let run = cli.collect.to_config().unwrap_or_else(|e| panic!("deployment args: {e}"));
    let api = run.api.expect("the API is served");
    let port = container.ports.as_ref().expect("ports")[0].clone();
    assert_eq!(i32::from(api.listen.port()), port.container_port);
    assert!(api.tls.is_some(), "the aggregation layer needs HTTPS");
    for (probe, path) in [(&container.liveness_probe, "/healthz"), (&container.readiness_probe, "/readyz")] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("an HTTP probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
        assert_eq!(get.port, IntOrString::String(port.name.clone().expect("port name")));
    }
    let tls_mounts: Vec<_> = container.volume_mounts.iter().flatten().map(|m| m.mount_path.clone()).collect();
    let tls = api.tls.expect("tls");
    assert!(tls_mounts.iter().any(|m| tls.cert.starts_with(m)), "{tls_mounts:?}");

    // The Service selects the Deployment's pods, and the APIService points at the Service.
    let labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).expect("pod labels");
    let service_spec = service.spec.as_ref().expect("service spec");
    for (k, v) in service_spec.selector.as_ref().expect("selector") {
        assert_eq!(labels.get(k), Some(v), "the Service's selector {k}={v}");
    }
    assert_eq!(
        service_spec.ports.as_ref().expect("ports")[0].target_port,
        Some(IntOrString::String(port.name.clone().expect("port name")))
    );
    let api_spec = apiservice.spec.as_ref().expect("spec");
    assert_eq!(
        (api_spec.group.as_deref(), api_spec.version.as_deref()),
        (Some("metrics.k8s.io"), Some("v1beta1"))
    );
    assert_eq!(apiservice.metadata.name.as_deref(), Some("v1beta1.metrics.k8s.io"));
    let target = api_spec.service.as_ref().expect("service");
    assert_eq!(target.name.as_deref(), service.metadata.name.as_deref());
    assert_eq!(target.namespace.as_deref(), Some(namespace.as_str()));
    assert_eq!(target.port, Some(service_spec.ports.as_ref().expect("ports")[0].port));

    // The example InfluxDB is where the Deployment's sink writes.
    assert_eq!((influx_deployments.len(), influx_services.len()), (1, 1));
    let influx = influx_services[0].metadata.name.clone().expect("name");
    assert!(args.iter().any(|a| a.starts_with(&format!("--sink=influxdb:http://{influx}."))), "{args:?}");
}
