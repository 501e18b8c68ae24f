//! Lists in pages, as the apiserver answers `limit` and `continue`.
//!
//! A list with `limit=N` (N > 0) answers the first N items of a snapshot taken then, with a
//! `continue` token and `remainingItemCount` while more remain; a `continue` token answers the
//! next items of that same snapshot whatever changed since, as the apiserver serves every page
//! at the revision of the first. The last [`KEPT`] snapshots are kept; a token for an older one
//! is 410 `Expired`, as for a compacted revision, and the client lists again from the start.
//! Without `limit` (or with 0) a list is one page, as from the apiserver.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde_json::json;

use super::store::View;
use heapster::scenario::ApiList;

/// Snapshots kept for `continue` tokens: a few listers at a time, each a few lists behind.
const KEPT: usize = 64;

/// What a list was of: the same path must carry its `continue` token.
pub type ListOf = (ApiList, View, Option<String>);

/// Why a page was refused, as the apiserver's `Status`.
#[derive(Debug, PartialEq, Eq)]
pub enum PageError {
    /// 400: not a token this server issued, or one for another list.
    Invalid(String),
    /// 410: the snapshot the token reads is gone.
    Expired,
}

impl PageError {
    pub fn code(&self) -> u16 {
        match self {
            PageError::Invalid(_) => 400,
            PageError::Expired => 410,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            PageError::Invalid(_) => "BadRequest",
            PageError::Expired => "Expired",
        }
    }

    pub fn message(&self) -> String {
        match self {
            PageError::Invalid(why) => format!("continue key is not valid: {why}"),
            PageError::Expired => "The provided continue parameter is too old to display a consistent list \
                                   result. You can start a new list without the continue parameter."
                .to_string(),
        }
    }
}

struct Snapshot {
    id: u64,
    of: ListOf,
    rv: u64,
    kind: &'static str,
    api_version: &'static str,
    items: Arc<[Bytes]>,
}

/// The snapshots behind the `continue` tokens handed out.
#[derive(Default)]
pub struct Pager {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    snapshots: VecDeque<Snapshot>,
}

/// `limit` from a list's query: `None` for one page; an error for a value that is not a count.
pub fn limit(query: &HashMap<String, String>) -> Result<Option<usize>, String> {
    match query.get("limit").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
            Ok(_) => Ok(None),
            Err(_) => Err(format!("limit: invalid value {text:?}: expected an integer")),
        },
    }
}

impl Pager {
    /// The first page of `items` (the whole list at `rv`).
    pub fn first(
        &self,
        of: ListOf,
        rv: u64,
        (kind, api_version): (&'static str, &'static str),
        items: Vec<Bytes>,
        limit: usize,
    ) -> Bytes {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let id = inner.next_id;
        inner.next_id += 1;
        let snapshot = Snapshot { id, of, rv, kind, api_version, items: items.into() };
        let page = snapshot.page(0, limit);
        if page.1.is_some() {
            if inner.snapshots.len() == KEPT {
                inner.snapshots.pop_front();
            }
            inner.snapshots.push_back(snapshot);
        }
        page.0
    }

    /// The page a `continue` token asks for, on the list `of`.
    pub fn next(&self, token: &str, of: &ListOf, limit: Option<usize>) -> Result<Bytes, PageError> {
        let (id, start) = decode(token)?;
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = match inner.snapshots.iter().find(|s| s.id == id) {
            Some(snapshot) => snapshot,
            None if id < inner.next_id => return Err(PageError::Expired),
            None => return Err(PageError::Invalid("no list was started with it".into())),
        };
        if &snapshot.of != of {
            return Err(PageError::Invalid("it continues a list of another path".into()));
        }
        if start > snapshot.items.len() {
            return Err(PageError::Invalid("it points past the list".into()));
        }
        Ok(snapshot.page(start, limit.unwrap_or(usize::MAX)).0)
    }
}

impl Snapshot {
    /// The body of items `start..start + limit`, and the token for the rest if any remain.
    fn page(&self, start: usize, limit: usize) -> (Bytes, Option<String>) {
        let end = start.saturating_add(limit).min(self.items.len());
        let remaining = self.items.len() - end;
        let token = (remaining > 0).then(|| encode(self.id, self.rv, end));
        let mut metadata = json!({"resourceVersion": self.rv.to_string()});
        if let Some(token) = &token {
            metadata["continue"] = json!(token);
            metadata["remainingItemCount"] = json!(remaining);
        }
        let mut body =
            Vec::with_capacity(self.items[start..end].iter().map(|i| i.len() + 1).sum::<usize>() + 256);
        body.extend_from_slice(
            format!(
                r#"{{"kind":"{}List","apiVersion":"{}","metadata":{metadata},"items":["#,
                self.kind, self.api_version
            )
            .as_bytes(),
        );
        for (n, item) in self.items[start..end].iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(item);
        }
        body.extend_from_slice(b"]}");
        (Bytes::from(body), token)
    }
}

/// As the apiserver's: base64 of `{"v":"meta.k8s.io/v1","rv":..,"start":..}`; here `start`
/// names the snapshot and the offset in it.
fn encode(id: u64, rv: u64, offset: usize) -> String {
    let key = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{id}/{offset}")});
    URL_SAFE_NO_PAD.encode(key.to_string())
}

fn decode(token: &str) -> Result<(u64, usize), PageError> {
    let invalid = |why: &str| PageError::Invalid(why.to_string());
    let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).map_err(|_| invalid("not base64"))?;
    let key: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| invalid("not JSON"))?;
    if key["v"] != "meta.k8s.io/v1" {
        return Err(invalid("unknown version"));
    }
    let start = key["start"].as_str().ok_or_else(|| invalid("no start"))?;
    let (id, offset) = start.split_once('/').ok_or_else(|| invalid("bad start"))?;
    Ok((id.parse().map_err(|_| invalid("bad start"))?, offset.parse().map_err(|_| invalid("bad start"))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(format!(r#"{{"metadata":{{"name":"p{i}"}}}}"#))).collect()
    }

    fn names(body: &Bytes) -> (Vec<String>, serde_json::Value) {
        let value: serde_json::Value = serde_json::from_slice(body).unwrap();
        let names = value["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        (names, value["metadata"].clone())
    }

    const POD: (&str, &str) = ("Pod", "v1");

    #[test]
    fn pages_walk_one_snapshot_to_its_end() {
        let pager = Pager::default();
        let of: ListOf = (ApiList::Pods, View::Core, None);
        let (first, meta) = names(&pager.first(of.clone(), 42, POD, items(5), 2));
        assert_eq!(first, ["p0", "p1"]);
        assert_eq!(meta["resourceVersion"], "42");
        assert_eq!(meta["remainingItemCount"], 3);
        let token = meta["continue"].as_str().unwrap().to_string();
        let (second, meta) = names(&pager.next(&token, &of, Some(2)).unwrap());
        assert_eq!(second, ["p2", "p3"]);
        assert_eq!(meta["resourceVersion"], "42");
        let (rest, meta) = names(&pager.next(meta["continue"].as_str().unwrap(), &of, None).unwrap());
        assert_eq!(rest, ["p4"]);
        assert!(meta.get("continue").is_none() && meta.get("remainingItemCount").is_none());
        // A token may be used again (a retried request), and only on its own list.
        assert_eq!(names(&pager.next(&token, &of, Some(2)).unwrap()).0, ["p2", "p3"]);
        let nodes: ListOf = (ApiList::Nodes, View::Core, None);
        assert_eq!(pager.next(&token, &nodes, Some(2)).unwrap_err().code(), 400);
        assert_eq!(pager.next("garbage!", &of, None).unwrap_err().code(), 400);
        // A list that fits one page keeps no snapshot and hands out no token.
        let (all, meta) = names(&pager.first(of.clone(), 43, POD, items(2), 2));
        assert_eq!(all.len(), 2);
        assert!(meta.get("continue").is_none());
    }

    #[test]
    fn an_old_token_is_expired() {
        let pager = Pager::default();
        let of: ListOf = (ApiList::Pods, View::Core, Some("default".into()));
        let (_, meta) = names(&pager.first(of.clone(), 1, POD, items(3), 1));
        let old = meta["continue"].as_str().unwrap().to_string();
        for rv in 0..KEPT as u64 {
            pager.first(of.clone(), rv + 2, POD, items(3), 1);
        }
        let err = pager.next(&old, &of, Some(1)).unwrap_err();
        assert_eq!((err.code(), err.reason()), (410, "Expired"));
        assert!(err.message().contains("too old"));
    }

    /// Over real HTTP: the pages of one list stay at its first page's version while the
    /// cluster changes, and a new list sees the change.
    #[tokio::test]
    async fn pages_over_http_hold_their_snapshot_across_a_window_change() {
        let f = crate::fixture_server::tests::start().await;
        let first = f.get_json("/api/v1/pods?limit=2").await;
        let page_names = |v: &serde_json::Value| -> Vec<String> {
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().into())
                .collect()
        };
        assert_eq!(page_names(&first), ["p1", "p2"]);
        assert_eq!(first["metadata"]["remainingItemCount"], 1);
        let token = first["metadata"]["continue"].as_str().unwrap().to_string();
        // Window 2 relabels p1 and deletes p2.
        f.server.advance();
        f.server.advance();
        let rest = f.get_json(&format!("/api/v1/pods?limit=2&continue={token}")).await;
        assert_eq!(page_names(&rest), ["p3"]);
        assert_eq!(rest["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"]);
        assert!(rest["metadata"].get("continue").is_none());
        let fresh = f.get_json("/api/v1/pods?limit=2").await;
        assert_eq!(page_names(&fresh), ["p1", "p3"]);
        assert_eq!(fresh["items"][0]["metadata"]["labels"]["app"], "b");
        assert!(fresh["metadata"].get("continue").is_none());
        // A token on another path is refused, as the apiserver refuses it.
        let response = f.api(&format!("/api/v1/nodes?limit=2&continue={token}")).send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
        assert_eq!(f.server.stats().list_pages, 2);
    }

    #[test]
    fn limits() {
        let q = |v: &str| HashMap::from([("limit".to_string(), v.to_string())]);
        assert_eq!(limit(&HashMap::new()), Ok(None));
        assert_eq!(limit(&q("500")), Ok(Some(500)));
        assert_eq!(limit(&q("0")), Ok(None));
        assert!(limit(&q("ten")).unwrap_err().contains("ten"));
    }
}
