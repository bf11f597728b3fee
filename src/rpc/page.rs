//! Paging of list RPCs: a bounded page size and an opaque token that resumes
//! after the last row returned (keyset paging, stable under inserts).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::Error;

/// Page size used when the request leaves it 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page served, whatever the request asks.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A parsed page request: how many rows, after which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Rows to return.
    pub size: i64,
    /// Resume strictly after this key (a sequence number); 0 = from the start.
    pub after: i64,
}

impl Page {
    /// Parses `page_size` and `page_token` as they arrive on the wire.
    pub fn parse(page_size: u32, page_token: &str) -> Result<Self, Error> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        } as i64;
        let after = if page_token.is_empty() {
            0
        } else {
            decode_token(page_token)
                .ok_or_else(|| Error::invalid("page_token", "is not a token this service issued"))?
        };
        Ok(Self { size, after })
    }

    /// The token for the next page, empty when `returned` rows filled less
    /// than a page (there is nothing more).
    pub fn next_token(&self, returned: usize, last_key: Option<i64>) -> String {
        match last_key {
            Some(k) if returned as i64 >= self.size => encode_token(k),
            _ => String::new(),
        }
    }
}

fn encode_token(key: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("k:{key}"))
}

fn decode_token(token: &str) -> Option<i64> {
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    let s = std::str::from_utf8(&raw).ok()?;
    s.strip_prefix("k:")?.parse().ok().filter(|k| *k >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(Page::parse(0, "").unwrap().size, 100);
        assert_eq!(Page::parse(5000, "").unwrap().size, 1000);
        assert_eq!(Page::parse(7, "").unwrap().after, 0);
    }

    #[test]
    fn token_round_trip() {
        let p = Page::parse(2, "").unwrap();
        let t = p.next_token(2, Some(42));
        assert_eq!(Page::parse(2, &t).unwrap().after, 42);
        assert_eq!(p.next_token(1, Some(42)), "");
    }

    #[test]
    fn foreign_token_rejected() {
        assert!(matches!(Page::parse(1, "not-a-token"), Err(Error::Invalid(_))));
        assert!(Page::parse(1, &URL_SAFE_NO_PAD.encode("k:-3")).is_err());
    }
}
