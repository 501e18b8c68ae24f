//! Query options of a source or sink URI.

use std::collections::BTreeMap;

/// Option names whose values are secrets.
const SECRET_OPTIONS: &[&str] = &["pw", "password", "token", "bearer_token", "secret", "key"];

/// Masks secrets in a URI: query options named like passwords or tokens, and the password of a
/// `user:password@host` authority.
pub fn redact(uri: &str) -> String {
    let (head, query) = match uri.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (uri, None),
    };
    let mut out = redact_userinfo(head);
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if SECRET_OPTIONS.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}=***")
                }
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

fn redact_userinfo(head: &str) -> String {
    // `scheme:http://user:pw@host/...`: mask what sits between the last ':' and '@' of the authority.
    if let Some(start) = head.find("://") {
        let authority_start = start + 3;
        let rest = &head[authority_start..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &head[..authority_start],
                    &userinfo[..colon],
                    &head[authority_start + at..]
                );
            }
        }
    }
    head.to_string()
}

/// The options of one URI, consumed one by one so that leftovers can be reported as unknown.
#[derive(Debug)]
pub struct UriOptions {
    flag: &'static str,
    uri: String,
    opts: BTreeMap<String, String>,
}

impl UriOptions {
    /// Parses `a=1&b=2` (percent-decoded). A repeated option keeps its first value, as Heapster did.
    pub fn parse(flag: &'static str, uri: &str, query: Option<&str>) -> UriOptions {
        let mut opts = BTreeMap::new();
        if let Some(q) = query {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                opts.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
        }
        UriOptions { flag, uri: uri.to_string(), opts }
    }

    fn error(&self, reason: String) -> super::ConfigError {
        super::ConfigError::new(self.flag, &self.uri, reason)
    }

    pub fn string(&mut self, name: &str) -> Option<String> {
        self.opts.remove(name)
    }

    pub fn string_or(&mut self, name: &str, default: &str) -> String {
        self.string(name).unwrap_or_else(|| default.to_string())
    }

    /// `true`/`false` (also `1`/`0`, `t`/`f`, any case, like Go's `strconv.ParseBool`).
    pub fn bool_or(&mut self, name: &str, default: bool) -> Result<bool, super::ConfigError> {
        match self.opts.remove(name) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "t" | "true" => Ok(true),
                "0" | "f" | "false" => Ok(false),
                _ => Err(self.error(format!("option {name}={v:?}: expected true or false"))),
            },
        }
    }

    pub fn u64_or(&mut self, name: &str, default: u64) -> Result<u64, super::ConfigError> {
        match self.opts.remove(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| self.error(format!("option {name}={v:?}: expected a non-negative integer"))),
        }
    }

    /// A duration like `10s`, `5m`, `1h30m`.
    pub fn duration_or(
        &mut self,
        name: &str,
        default: std::time::Duration,
    ) -> Result<std::time::Duration, super::ConfigError> {
        match self.opts.remove(name) {
            None => Ok(default),
            Some(v) => humantime::parse_duration(&v).map_err(|e| {
                self.error(format!("option {name}={v:?}: expected a duration like 10s or 5m ({e})"))
            }),
        }
    }

    /// Fails on options nobody consumed, listing the ones `kind` accepts.
    pub fn finish(self, kind: &str, accepted: &[&str]) -> Result<(), super::ConfigError> {
        match self.opts.keys().next() {
            None => Ok(()),
            Some(unknown) => Err(self.error(format!(
                "unknown option {unknown:?} for {kind}; expected one of: {}",
                accepted.join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_and_tokens() {
        assert_eq!(
            redact("influxdb:http://h:8086?db=k8s&pw=hunter2&user=root"),
            "influxdb:http://h:8086?db=k8s&pw=***&user=root"
        );
        assert_eq!(
            redact("influxdb:http://root:hunter2@h:8086/x?db=a"),
            "influxdb:http://root:***@h:8086/x?db=a"
        );
        assert_eq!(redact("log"), "log");
        assert!(!redact("x:https://a?token=abc&Password=p").contains("abc"));
        assert!(!redact("x:https://a?token=abc&Password=p").contains("=p"));
    }

    #[test]
    fn consumes_typed_options_and_reports_leftovers() {
        let mut o = UriOptions::parse(
            "--sink",
            "influxdb:x?db=a&withfields=TRUE&n=3&bogus=1&pw=s",
            Some("db=a&withfields=TRUE&n=3&bogus=1&pw=s"),
        );
        assert_eq!(o.string_or("db", "k8s"), "a");
        assert!(o.bool_or("withfields", false).unwrap());
        assert!(!o.bool_or("secure", false).unwrap());
        assert_eq!(o.u64_or("n", 1).unwrap(), 3);
        assert_eq!(o.string("pw").as_deref(), Some("s"));
        let err = o.finish("influxdb sink", &["db", "withfields"]).unwrap_err();
        assert_eq!(err.flag, "--sink");
        assert!(err.reason.contains("\"bogus\""), "{err}");
        assert!(!err.to_string().contains("pw=s"), "{err}");
    }

    #[test]
    fn rejects_bad_values_naming_the_option() {
        let mut o = UriOptions::parse("--source", "x", Some("insecure=maybe&kubeletPort=-1&t=soon"));
        let e = o.bool_or("insecure", false).unwrap_err();
        assert!(e.reason.contains("insecure=\"maybe\": expected true or false"), "{e}");
        assert!(o.u64_or("kubeletPort", 10255).unwrap_err().reason.contains("kubeletPort"));
        assert!(
            o.duration_or("t", std::time::Duration::from_secs(1)).unwrap_err().reason.contains("t=\"soon\"")
        );
    }
}
