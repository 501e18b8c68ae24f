//! Oversized kubelet answers: a summary followed by whitespace, endless (chunked) or up to a
//! declared `Content-Length`. Whitespace after the object keeps the JSON valid had it ended,
//! so only a reader that counts bytes stops it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use super::http::Body;

/// One chunk of filler; the same static bytes every time, so serving costs no memory.
static SPACES: [u8; 64 << 10] = [b' '; 64 << 10];

struct FillerBody {
    head: Option<Bytes>,
    /// Filler bytes still to send; `None`: without end.
    remaining: Option<u64>,
    /// The length declared in `Content-Length`, if any.
    declared: Option<u64>,
}

impl HttpBody for FillerBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        let chunk = match self.remaining {
            Some(0) => return Poll::Ready(None),
            Some(n) => {
                let len = n.min(SPACES.len() as u64);
                self.remaining = Some(n - len);
                len as usize
            }
            None => SPACES.len(),
        };
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&SPACES[..chunk])))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        self.declared.map_or_else(SizeHint::new, SizeHint::with_exact)
    }
}

/// 200 with `summary`, then whitespace: to `declared` bytes in all (declared as
/// `Content-Length`), or without end in chunked encoding when `declared` is `None`.
pub fn oversized(summary: Bytes, declared: Option<u64>) -> Response<Body> {
    let (head, remaining) = match declared {
        Some(total) => {
            let head = summary.slice(..summary.len().min(usize::try_from(total).unwrap_or(usize::MAX)));
            let rest = total - head.len() as u64;
            (head, Some(rest))
        }
        None => (summary, None),
    };
    let body = FillerBody { head: Some(head), remaining, declared };
    let mut response = Response::new(body.boxed());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(total) = declared {
        response.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(total));
    }
    response
}
