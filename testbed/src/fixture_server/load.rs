//! Reading a window's API lists from the scenario, pointed at the loopback kubelets.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::FixtureError;
use super::store::object_key;
use heapster::scenario::{ApiList, Scenario};

#[derive(Deserialize)]
struct ListFile {
    /// `null` is an empty list, as Go encodes a nil slice.
    #[serde(default)]
    items: Option<Vec<Value>>,
}

/// Where the kubelets listen, for rewriting node addresses.
#[derive(Clone, Debug, Default)]
pub struct KubeletAddrs {
    pub addrs: BTreeMap<String, Ipv4Addr>,
    pub https_port: u16,
}

/// The items of `list` in force in `window` (none if no window up to it has the file); every
/// item must be an object with a name.
pub fn load_list(
    scenario: &Scenario,
    window: usize,
    list: ApiList,
    kubelets: &KubeletAddrs,
) -> Result<Vec<Value>, FixtureError> {
    let Some(file) = scenario.api_file(window, list) else {
        return Ok(Vec::new());
    };
    let mut items = read_items(&file)?;
    if list == ApiList::Nodes {
        for item in &mut items {
            rewrite_node(item, kubelets);
        }
    }
    Ok(items)
}

fn read_items(file: &Path) -> Result<Vec<Value>, FixtureError> {
    let bad = |what: String| FixtureError::BadFile { file: file.to_path_buf(), what };
    let bytes = fs::read(file).map_err(|e| bad(e.to_string()))?;
    let list: ListFile = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a list: {e}")))?;
    let items = list.items.unwrap_or_default();
    if let Some(index) = items.iter().position(|item| object_key(item).is_none()) {
        return Err(bad(format!("item {index} is not an object with metadata.name")));
    }
    Ok(items)
}

/// Every node named in any window's node list: each gets a kubelet.
pub fn all_node_names(scenario: &Scenario) -> Result<BTreeSet<String>, FixtureError> {
    let mut names = BTreeSet::new();
    for window in 0..scenario.windows.len() {
        if window == 0 || scenario.api_changed(window, ApiList::Nodes) {
            let none = KubeletAddrs::default();
            for item in load_list(scenario, window, ApiList::Nodes, &none)? {
                names.extend(object_key(&item).map(|(_, name)| name));
            }
        }
    }
    Ok(names)
}

/// Checks every list file of every window parses, so that a bad file fails the start.
pub fn check_lists(scenario: &Scenario) -> Result<(), FixtureError> {
    for window in 0..scenario.windows.len() {
        for list in ApiList::WITH_EVENTS {
            if scenario.api_changed(window, list) {
                load_list(scenario, window, list, &KubeletAddrs::default())?;
            }
        }
    }
    Ok(())
}

/// Points a node's IP addresses at its loopback kubelet, so that a collector reaches the fixture
/// and never the recorded cluster, and its daemon endpoint at the kubelets' HTTPS port.
fn rewrite_node(node: &mut Value, kubelets: &KubeletAddrs) {
    let Some((_, name)) = object_key(node) else {
        return;
    };
    let Some(addr) = kubelets.addrs.get(&name) else {
        return;
    };
    if let Some(addresses) = node.pointer_mut("/status/addresses").and_then(Value::as_array_mut) {
        for address in addresses {
            let kind = address.get("type").and_then(Value::as_str);
            if matches!(kind, Some("InternalIP" | "ExternalIP")) {
                address["address"] = Value::from(addr.to_string());
            }
        }
    }
    if let Some(port) = node.pointer_mut("/status/daemonEndpoints/kubeletEndpoint/Port") {
        *port = Value::from(kubelets.https_port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rewrites_ip_addresses_and_the_kubelet_port() {
        let mut node = json!({
            "metadata": {"name": "n1"},
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": "10.0.0.5"},
                    {"type": "ExternalIP", "address": "34.1.2.3"},
                    {"type": "Hostname", "address": "n1.example"},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            },
        });
        let kubelets = KubeletAddrs {
            addrs: BTreeMap::from([("n1".to_string(), Ipv4Addr::new(127, 0, 0, 2))]),
            https_port: 4321,
        };
        rewrite_node(&mut node, &kubelets);
        assert_eq!(node["status"]["addresses"][0]["address"], "127.0.0.2");
        assert_eq!(node["status"]["addresses"][1]["address"], "127.0.0.2");
        assert_eq!(node["status"]["addresses"][2]["address"], "n1.example");
        assert_eq!(node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"], 4321);
    }

    #[test]
    fn rejects_lists_with_nameless_items() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("pods.json");
        fs::write(&file, br#"{"items": [{"metadata": {"name": "a"}}, {"metadata": {}}]}"#).unwrap();
        let err = read_items(&file).unwrap_err().to_string();
        assert!(err.contains("item 1"), "{err}");
        fs::write(&file, br#"{"items": null}"#).unwrap();
        assert!(read_items(&file).unwrap().is_empty());
        fs::write(&file, b"[1]").unwrap();
        assert!(read_items(&file).unwrap_err().to_string().contains("not a list"));
    }
}
