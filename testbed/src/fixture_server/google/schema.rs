//! Request bodies checked against Google's own API descriptions (the discovery documents in
//! `fixtures/google/`): every member must be a field of its schema, of the declared type
//! (`int64` as a decimal string or an integer, `google-datetime` as RFC 3339), and enums must
//! hold one of their values. Messages follow the wording of Google's JSON parser.

use serde_json::{Map, Value};

pub struct Discovery {
    schemas: Map<String, Value>,
}

impl Discovery {
    pub fn parse(text: &str) -> Result<Discovery, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("discovery document: {e}"))?;
        match doc.get("schemas") {
            Some(Value::Object(schemas)) => Ok(Discovery { schemas: schemas.clone() }),
            _ => Err("discovery document without schemas".into()),
        }
    }

    pub fn monitoring() -> Discovery {
        Self::parse(include_str!("../../../../fixtures/google/monitoring-v3-discovery.json"))
            .unwrap_or(Discovery { schemas: Map::new() })
    }

    pub fn logging() -> Discovery {
        Self::parse(include_str!("../../../../fixtures/google/logging-v2-discovery.json"))
            .unwrap_or(Discovery { schemas: Map::new() })
    }

    pub fn has(&self, schema: &str) -> bool {
        self.schemas.contains_key(schema)
    }

    /// Every way `value` departs from schema `name`; empty when it conforms.
    pub fn check(&self, name: &str, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check_ref(name, value, &mut Vec::new(), &mut errors);
        errors
    }

    fn check_ref<'a>(
        &self,
        name: &str,
        value: &'a Value,
        path: &mut Vec<Segment<'a>>,
        errors: &mut Vec<String>,
    ) {
        let Some(schema) = self.schemas.get(name) else {
            errors.push(format!("schema {name} unknown"));
            return;
        };
        self.check_spec(schema, value, path, errors);
    }

    fn check_spec<'a>(
        &self,
        spec: &Value,
        value: &'a Value,
        path: &mut Vec<Segment<'a>>,
        errors: &mut Vec<String>,
    ) {
        if errors.len() >= 20 {
            return;
        }
        if let Some(Value::String(name)) = spec.get("$ref") {
            return self.check_ref(name, value, path, errors);
        }
        let ty = spec.get("type").and_then(Value::as_str).unwrap_or("any");
        let format = spec.get("format").and_then(Value::as_str).unwrap_or("");
        match ty {
            "any" => {}
            "object" => {
                let Value::Object(members) = value else {
                    errors.push(format!("Invalid value{}: {value}: expected an object", at(path)));
                    return;
                };
                let properties = spec.get("properties").and_then(Value::as_object);
                let additional = spec.get("additionalProperties");
                for (key, member) in members {
                    let spec = match (properties.and_then(|p| p.get(key)), additional) {
                        (Some(field), _) => field,
                        (None, Some(extra)) => extra,
                        (None, None) => {
                            errors.push(format!(
                                "Invalid JSON payload received. Unknown name \"{key}\"{}: Cannot find field.",
                                at(path)
                            ));
                            continue;
                        }
                    };
                    path.push(Segment::Key(key));
                    self.check_spec(spec, member, path, errors);
                    path.pop();
                }
            }
            "array" => {
                let Value::Array(items) = value else {
                    errors.push(format!("Invalid value{}: {value}: expected a list", at(path)));
                    return;
                };
                let item_spec = spec.get("items").unwrap_or(&Value::Null);
                for (i, item) in items.iter().enumerate() {
                    path.push(Segment::Index(i));
                    self.check_spec(item_spec, item, path, errors);
                    path.pop();
                }
            }
            "string" => {
                let ok = match (format, value) {
                    ("int64" | "uint64", Value::String(s)) => s.parse::<i128>().is_ok(),
                    ("int64" | "uint64", Value::Number(n)) => n.is_i64() || n.is_u64(),
                    ("google-datetime", Value::String(s)) => s.parse::<jiff::Timestamp>().is_ok(),
                    ("byte", Value::String(_)) => true,
                    (_, Value::String(s)) => match spec.get("enum").and_then(Value::as_array) {
                        Some(values) => values.iter().any(|v| v.as_str() == Some(s)),
                        None => true,
                    },
                    _ => false,
                };
                if !ok {
                    let expected =
                        if format.is_empty() { "TYPE_STRING".to_string() } else { format.to_uppercase() };
                    errors.push(format!("Invalid value{} ({expected}), {value}", at(path)));
                }
            }
            "integer" => {
                let ok = match value {
                    Value::Number(n) => n.is_i64() || n.is_u64(),
                    Value::String(s) => s.parse::<i64>().is_ok(),
                    _ => false,
                };
                if !ok {
                    errors.push(format!("Invalid value{} (TYPE_INT32), {value}", at(path)));
                }
            }
            "number" => {
                if !(value.is_number() || matches!(value.as_str(), Some("NaN" | "Infinity" | "-Infinity"))) {
                    errors.push(format!("Invalid value{} (TYPE_DOUBLE), {value}", at(path)));
                }
            }
            "boolean" => {
                if !value.is_boolean() {
                    errors.push(format!("Invalid value{} (TYPE_BOOL), {value}", at(path)));
                }
            }
            other => errors.push(format!("schema type {other}{} not understood", at(path))),
        }
    }
}

/// A step of the path to a member: `timeSeries[0].points`.
pub enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// ` at 'path'` for an error message (only an error needs the path as text).
fn at(path: &[Segment<'_>]) -> String {
    if path.is_empty() { String::new() } else { format!(" at '{}'", render(path)) }
}

fn render(path: &[Segment<'_>]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) if out.is_empty() => out.push_str(key),
            Segment::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn checks_fields_types_and_enums_from_the_discovery_documents() {
        let monitoring = Discovery::monitoring();
        assert!(monitoring.has("TimeSeries") && monitoring.has("CreateTimeSeriesRequest"));
        let good = json!({"timeSeries": [{
            "metric": {"type": "custom.googleapis.com/x", "labels": {"a": "b"}},
            "resource": {"type": "k8s_node", "labels": {"node_name": "n"}},
            "metricKind": "GAUGE", "valueType": "INT64",
            "points": [{"interval": {"endTime": "2026-11-01T10:00:00Z"}, "value": {"int64Value": "5"}}]
        }]});
        assert_eq!(monitoring.check("CreateTimeSeriesRequest", &good), Vec::<String>::new());
        let mut bad = good.clone();
        bad["timeSeries"][0]["metricKind"] = json!("SOMETIMES");
        bad["timeSeries"][0]["points"][0]["value"]["int64Value"] = json!("five");
        bad["timeSeries"][0]["points"][0]["interval"]["endTime"] = json!("yesterday");
        bad["timeSeries"][0]["color"] = json!("red");
        let errors = monitoring.check("CreateTimeSeriesRequest", &bad);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("Unknown name \"color\" at 'timeSeries[0]'")), "{errors:?}");

        let logging = Discovery::logging();
        let entry = json!({"entries": [{"insertId": "u", "jsonPayload": {"any": [1, {"x": null}]},
            "severity": "LOUD", "timestamp": "2026-11-01T10:00:00.123Z"}], "partialSuccess": "yes"});
        let errors = logging.check("WriteLogEntriesRequest", &entry);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }
}
