//! Paged lists, as a kube-apiserver pages them: `limit` items a page and an opaque `continue`
//! token for the rest, every page from the snapshot the first one was cut from (etcd serves
//! later pages at the first page's revision). Snapshots are kept for a few lists at a time; a
//! token whose snapshot is gone is `410 Expired`, as a compacted revision is, and the client must
//! list again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;

use super::store::ListSnapshot;

/// Lists paged at once; more than a handful of concurrent paged lists is not a test's shape.
const KEPT: usize = 16;

#[derive(Debug, PartialEq)]
pub enum PageError {
    /// The token does not decode: 400, as the apiserver answers a malformed one.
    Malformed,
    /// The snapshot is gone: 410 Expired.
    Expired,
}

/// The snapshots of lists being paged.
#[derive(Default)]
pub struct Pages {
    next_id: Mutex<u64>,
    kept: Mutex<VecDeque<(u64, Arc<ListSnapshot>)>>,
}

impl Pages {
    /// The first page of `snapshot` (all of it when `limit` is 0 or covers it).
    pub fn first(&self, snapshot: ListSnapshot, limit: usize) -> Bytes {
        if limit == 0 || snapshot.items.len() <= limit {
            return snapshot.body(0..snapshot.items.len(), None);
        }
        let snapshot = Arc::new(snapshot);
        let id = {
            let mut next = self.next_id.lock().unwrap_or_else(PoisonError::into_inner);
            *next += 1;
            *next
        };
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back((id, Arc::clone(&snapshot)));
        drop(kept);
        page(&snapshot, id, 0, limit)
    }

    /// The page a `continue` token points to, `limit` items long (the rest when 0).
    pub fn next(&self, token: &str, limit: usize) -> Result<Bytes, PageError> {
        let (id, offset) = decode(token).ok_or(PageError::Malformed)?;
        let snapshot = {
            let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
            kept.iter().find(|(i, _)| *i == id).map(|(_, s)| Arc::clone(s)).ok_or(PageError::Expired)?
        };
        let limit = if limit == 0 { snapshot.items.len() } else { limit };
        let body = page(&snapshot, id, offset, limit);
        if offset + limit >= snapshot.items.len() {
            // The last page was served: the snapshot is no longer needed.
            self.kept.lock().unwrap_or_else(PoisonError::into_inner).retain(|(i, _)| *i != id);
        }
        Ok(body)
    }
}

fn page(snapshot: &ListSnapshot, id: u64, offset: usize, limit: usize) -> Bytes {
    let end = offset.saturating_add(limit).min(snapshot.items.len());
    let remaining = snapshot.items.len() - end;
    let token = (remaining > 0).then(|| encode(id, end));
    snapshot.body(offset..end, token.as_deref().map(|t| (t, remaining)))
}

fn encode(id: u64, offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{id}:{offset}"))
}

fn decode(token: &str) -> Option<(u64, usize)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let (id, offset) = text.split_once(':')?;
    Some((id.parse().ok()?, offset.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(n: usize) -> ListSnapshot {
        let items = (0..n).map(|i| Bytes::from(format!(r#"{{"i":{i}}}"#))).collect();
        ListSnapshot::for_test("Pod", 7, items)
    }

    fn items_and_token(body: &Bytes) -> (Vec<u64>, Option<String>, Option<u64>) {
        let value: serde_json::Value = serde_json::from_slice(body).unwrap();
        let items = value["items"].as_array().unwrap().iter().map(|i| i["i"].as_u64().unwrap()).collect();
        assert_eq!(value["metadata"]["resourceVersion"], "7");
        let token = value["metadata"]["continue"].as_str().map(str::to_string);
        (items, token, value["metadata"]["remainingItemCount"].as_u64())
    }

    #[test]
    fn pages_cover_the_snapshot_once_in_order() {
        let pages = Pages::default();
        let (mut seen, mut token, remaining) = items_and_token(&pages.first(snapshot(7), 3));
        assert_eq!(remaining, Some(4));
        while let Some(t) = token {
            let (items, next, _) = items_and_token(&pages.next(&t, 3).unwrap());
            seen.extend(items);
            token = next;
        }
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        assert!(pages.kept.lock().unwrap().is_empty(), "the finished list's snapshot is dropped");
    }

    #[test]
    fn a_short_list_or_no_limit_is_one_page() {
        let pages = Pages::default();
        assert_eq!(items_and_token(&pages.first(snapshot(3), 3)), (vec![0, 1, 2], None, None));
        assert_eq!(items_and_token(&pages.first(snapshot(3), 0)).1, None);
    }

    #[test]
    fn evicted_and_malformed_tokens_are_refused() {
        let pages = Pages::default();
        let (_, first, _) = items_and_token(&pages.first(snapshot(4), 1));
        for _ in 0..KEPT {
            pages.first(snapshot(4), 1);
        }
        assert_eq!(pages.next(&first.unwrap(), 1), Err(PageError::Expired));
        assert_eq!(pages.next("not base64!", 1), Err(PageError::Malformed));
        assert_eq!(pages.next(&URL_SAFE_NO_PAD.encode("x:1"), 1), Err(PageError::Malformed));
    }
}
