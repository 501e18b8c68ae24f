//! `cadvisor:external?...` and `cadvisor:coreos?...` into a typed config.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, UriOptions};

/// Heapster's defaults.
pub const DEFAULT_HOSTS_FILE: &str = "/var/run/heapster/hosts";
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_FLEET_ENDPOINT: &str = "http://127.0.0.1:4001";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where hosts come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// Heapster's JSON hosts file, re-read when it changes; `standalone` scrapes localhost only.
    External { hosts_file: PathBuf, standalone: bool },
    /// Fleet: its registry in etcd's v2 keys API, or its own HTTP API (`/fleet/v1/machines`).
    Coreos { endpoints: Vec<url::Url>, api: FleetApi },
}

/// Which of fleet's two faces an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetApi {
    /// etcd's keys API first; an endpoint that is not etcd is asked fleet's API.
    Auto,
    Etcd,
    Fleet,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CadvisorConfig {
    pub discovery: Discovery,
    /// cAdvisor's port, the same on every host.
    pub port: u16,
    /// Per-host scrape timeout (also bounded by the window).
    pub timeout: Duration,
}

const EXTERNAL_OPTIONS: &[&str] = &["hostsFile", "cadvisorPort", "standalone", "timeout"];
const COREOS_OPTIONS: &[&str] = &["fleetEndpoint", "fleetApi", "cadvisorPort", "timeout"];

impl CadvisorConfig {
    pub fn from_uri(uri: &str) -> Result<CadvisorConfig, ConfigError> {
        let rest = uri.strip_prefix("cadvisor:").unwrap_or(uri);
        let (kind, query) = match rest.split_once('?') {
            Some((k, q)) => (k, Some(q)),
            None => (rest, None),
        };
        // `fleetEndpoint` may repeat; every other option keeps its first value.
        let mut endpoints = Vec::new();
        let mut others = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if k == "fleetEndpoint" {
                endpoints.push(v.into_owned());
            } else {
                others.append_pair(&k, &v);
            }
        }
        let others = others.finish();
        let mut opts = UriOptions::parse("--source", uri, Some(&others));
        let error = |reason: String| ConfigError::new("--source", uri, reason);
        let port = opts.u64_or("cadvisorPort", u64::from(DEFAULT_PORT))?;
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| error(format!("option cadvisorPort={port}: expected a port number (1-65535)")))?;
        let timeout = opts.duration_or("timeout", DEFAULT_TIMEOUT)?;
        let discovery = match kind {
            "external" | "" => {
                if !endpoints.is_empty() {
                    return Err(error("option fleetEndpoint belongs to cadvisor:coreos".into()));
                }
                let hosts_file = PathBuf::from(opts.string_or("hostsFile", DEFAULT_HOSTS_FILE));
                let standalone = opts.bool_or("standalone", false)?;
                opts.finish("cadvisor:external source", EXTERNAL_OPTIONS)?;
                Discovery::External { hosts_file, standalone }
            }
            "coreos" => {
                if endpoints.is_empty() {
                    endpoints.push(DEFAULT_FLEET_ENDPOINT.to_string());
                }
                let endpoints = endpoints
                    .iter()
                    .map(|e| {
                        url::Url::parse(e)
                            .ok()
                            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                            .ok_or_else(|| {
                                error(format!(
                                    "option fleetEndpoint={e:?}: expected an http:// or https:// URL"
                                ))
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let api = match opts.string_or("fleetApi", "auto").as_str() {
                    "auto" => FleetApi::Auto,
                    "etcd" => FleetApi::Etcd,
                    "fleet" => FleetApi::Fleet,
                    other => {
                        return Err(error(format!(
                            "option fleetApi={other:?}: expected auto, etcd or fleet"
                        )));
                    }
                };
                opts.finish("cadvisor:coreos source", COREOS_OPTIONS)?;
                Discovery::Coreos { endpoints, api }
            }
            other => {
                return Err(error(format!("unknown cAdvisor source {other:?}; expected external or coreos")));
            }
        };
        Ok(CadvisorConfig { discovery, port, timeout })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_defaults_are_heapsters() {
        let c = CadvisorConfig::from_uri("cadvisor:external").unwrap();
        assert_eq!(
            c.discovery,
            Discovery::External { hosts_file: PathBuf::from(DEFAULT_HOSTS_FILE), standalone: false }
        );
        assert_eq!(c.port, 8080);
        let c =
            CadvisorConfig::from_uri("cadvisor:external?hostsFile=/tmp/h&cadvisorPort=4194&standalone=true")
                .unwrap();
        assert_eq!(
            c.discovery,
            Discovery::External { hosts_file: PathBuf::from("/tmp/h"), standalone: true }
        );
        assert_eq!(c.port, 4194);
    }

    #[test]
    fn coreos_takes_several_endpoints() {
        let c = CadvisorConfig::from_uri("cadvisor:coreos").unwrap();
        let Discovery::Coreos { endpoints, api } = c.discovery else { panic!("coreos") };
        assert_eq!(endpoints[0].as_str(), "http://127.0.0.1:4001/");
        assert_eq!(api, FleetApi::Auto);
        let c = CadvisorConfig::from_uri(
            "cadvisor:coreos?fleetEndpoint=http://10.0.0.1:2379&fleetEndpoint=http://10.0.0.2:2379&fleetApi=etcd",
        )
        .unwrap();
        let Discovery::Coreos { endpoints, api } = c.discovery else { panic!("coreos") };
        assert_eq!(endpoints.len(), 2);
        assert_eq!(api, FleetApi::Etcd);
    }

    #[test]
    fn bad_options_are_named() {
        for (uri, needle) in [
            ("cadvisor:external?cadvisorPort=0", "cadvisorPort=0"),
            ("cadvisor:external?cadvisorPort=70000", "cadvisorPort=70000"),
            ("cadvisor:external?bogus=1", "\"bogus\""),
            ("cadvisor:coreos?fleetEndpoint=nope", "fleetEndpoint=\"nope\""),
            ("cadvisor:coreos?fleetApi=zk", "fleetApi=\"zk\""),
            ("cadvisor:mesos", "\"mesos\""),
            ("cadvisor:external?fleetEndpoint=http://a", "belongs to cadvisor:coreos"),
        ] {
            let err = CadvisorConfig::from_uri(uri).unwrap_err().to_string();
            assert!(err.contains(needle), "{uri}: {err}");
        }
    }
}
