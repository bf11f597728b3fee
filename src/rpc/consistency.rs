//! Read-your-writes across replicas: an RPC whose write changed decisions
//! answers with the response header [`HEADER`], an opaque token naming its
//! place in the decision change log; a check carrying it is answered only
//! by a replica that has applied that change (see
//! [`crate::instructions::snapshots::Decisions::applied`]).
//!
//! The token is `v1` and the change's seq, base64url without padding:
//! opaque to clients, which only pass it back.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::error::{Error, Result};

/// The response header that carries the token.
pub const HEADER: &str = "x-proctor-consistency-token";

const VERSION: &[u8; 2] = b"v1";

/// The token of change-log seq `seq`.
pub fn encode(seq: i64) -> String {
    let mut b = VERSION.to_vec();
    b.extend_from_slice(&seq.to_be_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

/// The seq a token names; anything this service did not issue is
/// INVALID_ARGUMENT on `field`.
pub fn decode(field: &str, token: &str) -> Result<i64> {
    let bad = || Error::invalid(field, "not a consistency token this service issued");
    let b = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    if b.len() != 10 || &b[..2] != VERSION {
        return Err(bad());
    }
    let seq = i64::from_be_bytes(b[2..].try_into().map_err(|_| bad())?);
    if seq <= 0 {
        return Err(bad());
    }
    Ok(seq)
}

/// Adds [`HEADER`] to the response of every RPC whose commands changed
/// decisions.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsistencyLayer;

impl<S> Layer<S> for ConsistencyLayer {
    type Service = Consistency<S>;

    fn layer(&self, inner: S) -> Consistency<S> {
        Consistency { inner }
    }
}

/// The service [`ConsistencyLayer`] wraps.
#[derive(Debug, Clone)]
pub struct Consistency<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Consistency<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let (res, seq) = crate::db::pipeline::with_written(fut).await;
            let mut res = res?;
            if seq > 0
                && let Ok(v) = HeaderValue::from_str(&encode(seq))
            {
                res.headers_mut().insert(HEADER, v);
            }
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_strangers_are_refused() {
        for seq in [1, 42, i64::MAX] {
            assert_eq!(decode("t", &encode(seq)).unwrap(), seq);
        }
        assert!(!encode(7).contains('7'), "opaque");
        for bad in [
            "",
            "abc",
            "djE",
            &encode(0),
            &URL_SAFE_NO_PAD.encode(b"v2\0\0\0\0\0\0\0\x01"),
        ] {
            assert!(matches!(decode("t", bad), Err(Error::Invalid(_))), "{bad:?}");
        }
    }
}
