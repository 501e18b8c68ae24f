//! What runs in a synthetic cluster: namespaces and the workloads placed in them, shaped after
//! what real clusters run (add-ons in `kube-system`, multi-container pods with sidecars,
//! stateful sets with data volumes).

/// Namespaces in the order a cluster gains them; `kube-system` always exists.
pub const NAMESPACES: [&str; 8] =
    ["kube-system", "default", "monitoring", "web", "payments", "search", "batch", "logging"];

/// The name of the `index`-th namespace of a cluster.
pub fn namespace_name(index: usize) -> String {
    NAMESPACES.get(index).map_or_else(|| format!("team-{index:02}"), |n| (*n).to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Controller {
    Deployment,
    StatefulSet,
}

pub struct Template {
    /// Namespace name; `None` for the generic workloads of `team-NN` namespaces.
    pub ns: Option<&'static str>,
    pub name: &'static str,
    pub controller: Controller,
    /// (container name, image).
    pub containers: &'static [(&'static str, &'static str)],
    pub config_map: Option<&'static str>,
    pub empty_dir: Option<(&'static str, &'static str)>,
    pub service_account: &'static str,
    pub port: Option<u16>,
}

const fn deploy(
    ns: &'static str,
    name: &'static str,
    containers: &'static [(&'static str, &'static str)],
) -> Template {
    Template {
        ns: Some(ns),
        name,
        controller: Controller::Deployment,
        containers,
        config_map: None,
        empty_dir: None,
        service_account: "default",
        port: None,
    }
}

const fn stateful(
    ns: &'static str,
    name: &'static str,
    containers: &'static [(&'static str, &'static str)],
) -> Template {
    Template { controller: Controller::StatefulSet, ..deploy(ns, name, containers) }
}

pub static TEMPLATES: &[Template] = &[
    Template {
        config_map: Some("kube-dns-config"),
        service_account: "kube-dns",
        port: Some(10053),
        ..deploy(
            "kube-system",
            "kube-dns",
            &[
                ("kubedns", "gke.gcr.io/k8s-dns-kube-dns:1.23.0-gke.9"),
                ("dnsmasq", "gke.gcr.io/k8s-dns-dnsmasq-nanny:1.23.0-gke.9"),
                ("sidecar", "gke.gcr.io/k8s-dns-sidecar:1.23.0-gke.9"),
            ],
        )
    },
    Template {
        config_map: Some("metrics-server-config"),
        empty_dir: Some(("tmp-dir", "/tmp")),
        service_account: "metrics-server",
        port: Some(10250),
        ..deploy(
            "kube-system",
            "metrics-server-v1.33.0",
            &[
                ("metrics-server", "gke.gcr.io/metrics-server:v0.7.2-gke.15"),
                ("metrics-server-nanny", "gke.gcr.io/addon-resizer:1.8.23-gke.3"),
            ],
        )
    },
    Template {
        service_account: "event-exporter-sa",
        ..deploy(
            "kube-system",
            "event-exporter-gke",
            &[
                ("event-exporter", "gke.gcr.io/event-exporter:v0.4.0-gke.21"),
                ("prometheus-to-sd-exporter", "gke.gcr.io/prometheus-to-sd:v0.11.12-gke.11"),
            ],
        )
    },
    Template { port: Some(8080), ..deploy("default", "demo-app", &[("demo-app", "hkaj/demo-app:1.4.2")]) },
    Template {
        config_map: Some("nginx-conf"),
        port: Some(80),
        ..deploy("default", "nginx", &[("nginx", "nginx:1.27.2")])
    },
    Template {
        config_map: Some("prometheus-config"),
        empty_dir: Some(("prometheus-db", "/prometheus")),
        service_account: "prometheus",
        port: Some(9090),
        ..stateful(
            "monitoring",
            "prometheus",
            &[
                ("prometheus", "quay.io/prometheus/prometheus:v3.0.1"),
                ("config-reloader", "quay.io/prometheus-operator/prometheus-config-reloader:v0.78.2"),
            ],
        )
    },
    Template {
        config_map: Some("grafana-datasources"),
        empty_dir: Some(("storage", "/var/lib/grafana")),
        service_account: "grafana",
        port: Some(3000),
        ..deploy("monitoring", "grafana", &[("grafana", "grafana/grafana:11.3.1")])
    },
    Template {
        service_account: "kube-state-metrics",
        port: Some(8080),
        ..deploy(
            "monitoring",
            "kube-state-metrics",
            &[("kube-state-metrics", "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.14.0")],
        )
    },
    Template {
        config_map: Some("frontend-config"),
        empty_dir: Some(("cache", "/var/cache/nginx")),
        port: Some(80),
        ..deploy("web", "frontend", &[("nginx", "nginx:1.27.2"), ("php-fpm", "php:8.3.14-fpm-alpine")])
    },
    Template {
        config_map: Some("envoy-config"),
        port: Some(8080),
        ..deploy(
            "web",
            "api",
            &[
                ("api", "us-docker.pkg.dev/prod-project/apps/api:3.8.0"),
                ("envoy", "envoyproxy/envoy:v1.32.1"),
            ],
        )
    },
    Template {
        empty_dir: Some(("data", "/data")),
        port: Some(6379),
        ..stateful(
            "web",
            "redis",
            &[("redis", "redis:7.4.1"), ("redis-exporter", "oliver006/redis_exporter:v1.66.0")],
        )
    },
    Template {
        port: Some(8443),
        ..deploy(
            "payments",
            "checkout",
            &[
                ("checkout", "us-docker.pkg.dev/prod-project/apps/checkout:2.14.1"),
                ("istio-proxy", "docker.io/istio/proxyv2:1.24.1"),
            ],
        )
    },
    Template {
        config_map: Some("ledger-config"),
        ..deploy("payments", "ledger", &[("ledger", "us-docker.pkg.dev/prod-project/apps/ledger:1.9.3")])
    },
    Template {
        empty_dir: Some(("data", "/usr/share/elasticsearch/data")),
        port: Some(9200),
        ..stateful(
            "search",
            "elasticsearch",
            &[("elasticsearch", "docker.elastic.co/elasticsearch/elasticsearch:8.16.1")],
        )
    },
    Template {
        ..deploy("search", "indexer", &[("indexer", "us-docker.pkg.dev/prod-project/apps/indexer:0.22.7")])
    },
    Template {
        empty_dir: Some(("scratch", "/scratch")),
        ..deploy(
            "batch",
            "worker",
            &[
                ("worker", "us-docker.pkg.dev/prod-project/apps/worker:5.1.0"),
                ("cloud-sql-proxy", "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1"),
            ],
        )
    },
    Template {
        config_map: Some("loki-config"),
        empty_dir: Some(("storage", "/var/loki")),
        port: Some(3100),
        ..stateful("logging", "loki", &[("loki", "grafana/loki:3.3.0")])
    },
    Template {
        ns: None,
        port: Some(8080),
        ..deploy("", "backend", &[("backend", "us-docker.pkg.dev/prod-project/apps/backend:1.2.0")])
    },
    Template {
        ns: None,
        config_map: Some("jobs-config"),
        ..deploy(
            "",
            "jobs",
            &[
                ("jobs", "us-docker.pkg.dev/prod-project/apps/jobs:1.2.0"),
                ("istio-proxy", "docker.io/istio/proxyv2:1.24.1"),
            ],
        )
    },
];

/// The per-node daemon set and the static kube-proxy pod every node runs.
pub const FLUENTD: &[(&str, &str)] = &[
    ("fluentd", "gke.gcr.io/fluent-bit-gke-exporter:v0.28.0-gke.5"),
    ("prometheus-to-sd-exporter", "gke.gcr.io/prometheus-to-sd:v0.11.12-gke.11"),
];
pub const KUBE_PROXY_IMAGE: &str = "gke.gcr.io/kube-proxy-amd64:v1.33.5-gke.1080000";
pub const PAUSE_IMAGE: &str = "gke.gcr.io/pause:3.10";

/// Which templates a cluster with `namespaces` namespaces runs, as (template, namespace index).
pub fn workloads(namespaces: usize) -> Vec<(&'static Template, usize)> {
    let mut out = Vec::new();
    for (ns_index, ns) in NAMESPACES.iter().enumerate().take(namespaces) {
        out.extend(TEMPLATES.iter().filter(|t| t.ns == Some(*ns)).map(|t| (t, ns_index)));
    }
    for ns_index in NAMESPACES.len()..namespaces {
        out.extend(TEMPLATES.iter().filter(|t| t.ns.is_none()).map(|t| (t, ns_index)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_namespace_gets_workloads() {
        for n in 1..=12 {
            let w = workloads(n);
            for ns in 0..n {
                assert!(w.iter().any(|(_, i)| *i == ns), "namespace {ns} of {n} has no workload");
            }
        }
        assert_eq!(namespace_name(9), "team-09");
        assert_eq!(namespace_name(3), "web");
    }
}
