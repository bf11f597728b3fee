//! The Connect protocol's own rules, apart from any message: which requests
//! are Connect ones, its error codes and their HTTP statuses, and the
//! five-byte envelopes that frame stream messages (the same framing gRPC
//! uses, with different flags).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderMap;

/// Unary calls: the body is one JSON message.
pub const UNARY_JSON: &str = "application/json";
/// Stream calls: the body is a sequence of enveloped JSON messages.
pub const STREAM_JSON: &str = "application/connect+json";
/// Envelope flag of the last message of a stream response (end of stream).
pub const FLAG_END_STREAM: u8 = 0x02;
/// Envelope flag of a compressed message, which proctor does not accept.
pub const FLAG_COMPRESSED: u8 = 0x01;

/// How a request asks to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/json`: one message each way, errors as HTTP statuses.
    Unary,
    /// `application/connect+json`: enveloped messages, the outcome in the
    /// end-of-stream message.
    Stream,
}

/// The Connect framing of a request, or `None` for anything else (gRPC,
/// which goes on to tonic unchanged). Parameters such as `; charset=utf-8`
/// are allowed.
pub fn framing(headers: &HeaderMap) -> Option<Framing> {
    let ct = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case(UNARY_JSON) {
        Some(Framing::Unary)
    } else if media.eq_ignore_ascii_case(STREAM_JSON) {
        Some(Framing::Stream)
    } else {
        None
    }
}

/// The Connect name of a gRPC status code (`invalid_argument`, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "ok",
        C::Cancelled => "canceled",
        C::Unknown => "unknown",
        C::InvalidArgument => "invalid_argument",
        C::DeadlineExceeded => "deadline_exceeded",
        C::NotFound => "not_found",
        C::AlreadyExists => "already_exists",
        C::PermissionDenied => "permission_denied",
        C::ResourceExhausted => "resource_exhausted",
        C::FailedPrecondition => "failed_precondition",
        C::Aborted => "aborted",
        C::OutOfRange => "out_of_range",
        C::Unimplemented => "unimplemented",
        C::Internal => "internal",
        C::Unavailable => "unavailable",
        C::DataLoss => "data_loss",
        C::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status a unary Connect error carries, per the protocol's table
/// (as amended by its RFC 003: no 408s, which proxies would retry).
pub fn http_status(code: tonic::Code) -> http::StatusCode {
    use http::StatusCode as H;
    use tonic::Code as C;
    match code {
        C::Ok => H::OK,
        C::Cancelled => H::from_u16(499).unwrap_or(H::BAD_REQUEST),
        C::InvalidArgument | C::FailedPrecondition | C::OutOfRange => H::BAD_REQUEST,
        C::DeadlineExceeded => H::GATEWAY_TIMEOUT,
        C::NotFound => H::NOT_FOUND,
        C::AlreadyExists | C::Aborted => H::CONFLICT,
        C::PermissionDenied => H::FORBIDDEN,
        C::ResourceExhausted => H::TOO_MANY_REQUESTS,
        C::Unimplemented => H::NOT_IMPLEMENTED,
        C::Unavailable => H::SERVICE_UNAVAILABLE,
        C::Unauthenticated => H::UNAUTHORIZED,
        C::Unknown | C::Internal | C::DataLoss => H::INTERNAL_SERVER_ERROR,
    }
}

/// One message framed as an envelope: flags, big-endian length, payload.
pub fn envelope(flags: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(flags);
    b.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    b.put_slice(payload);
    b.freeze()
}

/// Why a framed body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The body ended inside an envelope.
    Truncated,
    /// A message larger than the server accepts.
    TooLarge {
        /// Its declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => f.write_str("the body ends inside a message envelope"),
            Self::TooLarge { len, max } => write!(f, "a message of {len} bytes exceeds the limit of {max}"),
        }
    }
}

/// Collects envelopes from a body that arrives in arbitrary pieces, as both
/// the gRPC responses proctor reads and Connect stream requests do.
#[derive(Debug)]
pub struct Deframer {
    buf: BytesMut,
    max: usize,
}

impl Deframer {
    /// A reader refusing messages over `max` bytes before buffering them.
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Adds the next piece of the body.
    pub fn push(&mut self, piece: &[u8]) {
        self.buf.extend_from_slice(piece);
    }

    /// The next complete envelope, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Bytes)>, FrameError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let flags = self.buf.get_u8();
        self.buf.advance(4);
        Ok(Some((flags, self.buf.split_to(len).freeze())))
    }

    /// Whether the body may end here: nothing left half-read.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated)
        }
    }
}

/// `Connect-Timeout-Ms` as the `grpc-timeout` header value the inner gRPC
/// call understands; `None` when absent or not a number of up to 10 digits,
/// as the protocol limits it.
pub fn grpc_timeout(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("connect-timeout-ms")?.to_str().ok()?;
    (!v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit())).then(|| {
        // grpc-timeout allows at most 8 digits: larger values in seconds.
        let ms: u64 = v.parse().unwrap_or(u64::MAX);
        if ms < 100_000_000 {
            format!("{ms}m")
        } else {
            format!("{}S", (ms / 1000).min(99_999_999))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, v.parse().unwrap());
        h
    }

    #[test]
    fn framing_follows_the_media_type_and_leaves_grpc_alone() {
        assert_eq!(framing(&ct("application/json")), Some(Framing::Unary));
        assert_eq!(
            framing(&ct("application/json; charset=utf-8")),
            Some(Framing::Unary)
        );
        assert_eq!(framing(&ct("Application/Connect+JSON")), Some(Framing::Stream));
        assert_eq!(framing(&ct("application/grpc")), None);
        assert_eq!(framing(&ct("application/grpc+proto")), None);
        assert_eq!(framing(&HeaderMap::new()), None);
    }

    #[test]
    fn every_code_has_the_protocols_name_and_status() {
        use tonic::Code as C;
        let table = [
            (C::Cancelled, "canceled", 499),
            (C::Unknown, "unknown", 500),
            (C::InvalidArgument, "invalid_argument", 400),
            (C::DeadlineExceeded, "deadline_exceeded", 504),
            (C::NotFound, "not_found", 404),
            (C::AlreadyExists, "already_exists", 409),
            (C::PermissionDenied, "permission_denied", 403),
            (C::ResourceExhausted, "resource_exhausted", 429),
            (C::FailedPrecondition, "failed_precondition", 400),
            (C::Aborted, "aborted", 409),
            (C::OutOfRange, "out_of_range", 400),
            (C::Unimplemented, "unimplemented", 501),
            (C::Internal, "internal", 500),
            (C::Unavailable, "unavailable", 503),
            (C::DataLoss, "data_loss", 500),
            (C::Unauthenticated, "unauthenticated", 401),
        ];
        for (code, name, status) in table {
            assert_eq!(code_name(code), name);
            assert_eq!(http_status(code).as_u16(), status, "{name}");
        }
    }

    #[test]
    fn envelopes_round_trip_across_arbitrary_pieces() {
        let mut body = envelope(0, b"{\"a\":1}").to_vec();
        body.extend_from_slice(&envelope(FLAG_END_STREAM, b"{}"));
        let mut d = Deframer::new(1024);
        let mut got = Vec::new();
        for b in &body {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        d.finish().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (0, Bytes::from_static(b"{\"a\":1}")));
        assert_eq!(got[1].0, FLAG_END_STREAM);
    }

    #[test]
    fn a_message_over_the_limit_is_refused_before_it_is_buffered() {
        let mut d = Deframer::new(4);
        d.push(&[0, 0, 0, 1, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge { len: 256, max: 4 }));
    }

    #[test]
    fn a_body_ending_inside_an_envelope_is_truncated() {
        let mut d = Deframer::new(64);
        d.push(&envelope(0, b"abcdef")[..7]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Truncated));
    }

    #[test]
    fn timeouts_become_grpc_timeouts() {
        let mut h = HeaderMap::new();
        assert_eq!(grpc_timeout(&h), None);
        h.insert("connect-timeout-ms", "2500".parse().unwrap());
        assert_eq!(grpc_timeout(&h).as_deref(), Some("2500m"));
        h.insert("connect-timeout-ms", "9999999999".parse().unwrap());
        assert_eq!(grpc_timeout(&h).as_deref(), Some("9999999S"));
        h.insert("connect-timeout-ms", "-1".parse().unwrap());
        assert_eq!(grpc_timeout(&h), None);
    }
}
