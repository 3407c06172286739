//! A request body must arrive within `http.body_timeout_secs` of its
//! headers, in all: a client trickling a byte every few seconds is cut off
//! with 408 and the connection closed, instead of holding a handler (and
//! its buffer) for as long as it likes. Bodies that are already complete
//! (no body, or fully buffered) pay nothing.
//!
//! And an answer given before the body was read to its end (a refusal by
//! the guard, a role check, a cap) says `Connection: close`: the server
//! drops the connection with the unread rest on it, and a client that
//! reused it for its next request would get a broken answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};

use crate::problem::ApiError;
use crate::state::AppState;

pub async fn body_deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    use http_body::Body as _;
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let secs = state.config.http.body_timeout_secs;
    let read = Arc::new(AtomicU8::new(READING));
    let (parts, body) = req.into_parts();
    let body = Body::new(Deadline {
        inner: body,
        sleep: Box::pin(tokio::time::sleep(Duration::from_secs(secs))),
        read: read.clone(),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    let read = read.load(Ordering::Acquire);
    let mut response = if read == EXPIRED {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            format!("the request body did not arrive within {secs} s (http.body_timeout_secs)"),
        )
        .into_response()
    } else {
        response
    };
    if read != FINISHED {
        // The rest of the body is still on its way: this connection is done.
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// How far a body was read: still reading, to its end, or cut at the deadline.
const READING: u8 = 0;
const FINISHED: u8 = 1;
const EXPIRED: u8 = 2;

struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    read: Arc<AtomicU8>,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if frame.is_none() || this.inner.is_end_stream() {
                this.read.store(FINISHED, Ordering::Release);
            }
            return Poll::Ready(frame);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.read.store(EXPIRED, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new("request body timed out"))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
