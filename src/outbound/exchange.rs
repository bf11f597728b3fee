//! One HTTP/1.1 request on an open connection and its answer, the body
//! read up to a cap: an answer larger than the caller can use is never
//! held in memory, and a body that ends before its `Content-Length` is
//! told apart from one that was too large.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;

use crate::outbound::connect::Io;

/// What the server answered.
#[derive(Debug)]
pub struct Answer {
    /// The status line's code.
    pub status: http::StatusCode,
    /// The headers (validators, `Location`, `Content-Length`).
    pub headers: http::HeaderMap,
    /// The body, or why it could not be had whole.
    pub body: Result<Bytes, BodyError>,
}

impl Answer {
    /// A header's value, when it is present and text.
    pub fn header(&self, name: http::header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why an answer's body is not there whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// It is (or says it is) larger than the cap; at most the cap was read.
    TooLarge {
        /// The cap, bytes.
        limit: usize,
    },
    /// The connection failed or ended before the body did (truncated).
    Broken(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { limit } => write!(f, "too large: over {limit} bytes"),
            Self::Broken(why) => write!(f, "truncated or broken off: {why}"),
        }
    }
}

/// Sends `req` on `io` and reads the answer, at most `max_body` bytes of
/// its body. The connection is driven here, not spawned, so it ends with
/// the call (a caller's timeout closes it).
pub async fn exchange(
    io: Box<dyn Io>,
    req: http::Request<Full<Bytes>>,
    max_body: usize,
) -> Result<Answer, String> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let exchange = async move {
        let resp = sender.send_request(req).await.map_err(|e| format!("HTTP: {e}"))?;
        let (parts, body) = resp.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = if declared.is_some_and(|n| n > max_body as u64) {
            Err(BodyError::TooLarge { limit: max_body })
        } else {
            match Limited::new(body, max_body).collect().await {
                Ok(b) => Ok(b.to_bytes()),
                Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                    Err(BodyError::TooLarge { limit: max_body })
                }
                Err(e) => Err(BodyError::Broken(e.to_string())),
            }
        };
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    let mut exchange = std::pin::pin!(exchange);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = &mut exchange => r,
        r = &mut conn => match r {
            Ok(()) => exchange.await,
            // A connection that fails after the answer's head leaves the
            // body broken: the answer says so rather than losing its status.
            Err(e) => exchange.await.map_err(|_| format!("HTTP: {e}")),
        },
    }
}
