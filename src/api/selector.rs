//! Kubernetes label selectors (`labelSelector=`): `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
//! `k notin (a,b)`, `k` and `!k`, comma-separated and all required, as the API server reads them.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {why}")]
pub struct SelectorError {
    pub selector: String,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed selector; the empty one matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

fn valid_key(key: &str) -> bool {
    // A qualified name with an optional DNS prefix: letters, digits, `-_./`, alphanumeric ends.
    let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
    !name.is_empty()
        && name.len() <= 63
        && key.len() <= 253 + 64
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn valid_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// Splits on commas outside parentheses.
fn split_top(text: &str) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return None;
        }
    }
    (depth == 0).then(|| {
        parts.push(&text[start..]);
        parts
    })
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let fail = |why: &str| SelectorError { selector: text.to_string(), why: why.to_string() };
        if text.trim().is_empty() {
            return Ok(Selector::default());
        }
        let parts = split_top(text).ok_or_else(|| fail("unbalanced parentheses"))?;
        let mut requirements = Vec::with_capacity(parts.len());
        for part in parts {
            let part = part.trim();
            let check_key = |key: &str| -> Result<String, SelectorError> {
                let key = key.trim();
                if valid_key(key) {
                    Ok(key.to_string())
                } else {
                    Err(fail(&format!("invalid label key {key:?}")))
                }
            };
            let check_value = |value: &str| -> Result<String, SelectorError> {
                let value = value.trim();
                if valid_value(value) {
                    Ok(value.to_string())
                } else {
                    Err(fail(&format!("invalid label value {value:?}")))
                }
            };
            let set = |rest: &str| -> Result<Vec<String>, SelectorError> {
                let inner = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| fail("expected a parenthesised set of values after in/notin"))?;
                inner.split(',').map(check_value).collect()
            };
            let requirement = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(check_key(key)?)
            } else if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(check_key(key)?, check_value(value)?)
            } else if let Some((key, value)) = part.split_once("==") {
                Requirement::Equals(check_key(key)?, check_value(value)?)
            } else if let Some((key, value)) = part.split_once('=') {
                Requirement::Equals(check_key(key)?, check_value(value)?)
            } else if let Some((key, rest)) = part.split_once(" notin ") {
                Requirement::NotIn(check_key(key)?, set(rest)?)
            } else if let Some((key, rest)) = part.split_once(" in ") {
                Requirement::In(check_key(key)?, set(rest)?)
            } else if part.is_empty() {
                return Err(fail("empty requirement"));
            } else {
                Requirement::Exists(check_key(part)?)
            };
            requirements.push(requirement);
        }
        Ok(Selector(requirements))
    }

    /// Whether it matches everything (no requirement).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<&str, &str>) -> bool {
        let get = |k: &String| labels.get(k.as_str()).copied();
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.iter().any(|x| x == v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<'a>(pairs: &[(&'a str, &'a str)]) -> BTreeMap<&'a str, &'a str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn every_operator_matches_as_the_api_server_does() {
        let web = labels(&[("app", "web"), ("tier", "front"), ("app.kubernetes.io/part-of", "shop")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=db", false),
            ("app in (web, db)", true),
            ("app notin (web,db)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("missing!=x", true),
            ("app=web,tier=back", false),
            ("app=web, app.kubernetes.io/part-of=shop", true),
        ];
        for (text, expected) in cases {
            let selector = Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(selector.matches(&web), expected, "{text}");
        }
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        for text in ["app=(", "app in web", "=web", "app=we b", "a,,b", "app in (a", "-app=x", "app=x)"] {
            let err = Selector::parse(text).expect_err(text);
            assert!(err.to_string().contains("invalid label selector"), "{err}");
        }
    }
}
