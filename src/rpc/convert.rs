//! Wire <-> domain conversions shared by every service.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::error::Error;

/// A domain instant on the wire.
pub fn ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// An optional wire timestamp, rejected by `field` when out of range.
pub fn from_ts(t: Option<&Timestamp>, field: &str) -> Result<Option<DateTime<Utc>>, Error> {
    match t {
        None => Ok(None),
        Some(t) => DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(u32::MAX))
            .map(Some)
            .ok_or_else(|| Error::invalid(field, "is not a valid timestamp")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let now = DateTime::from_timestamp(1_700_000_000, 123_000).unwrap();
        assert_eq!(from_ts(Some(&ts(now)), "t").unwrap(), Some(now));
        assert_eq!(from_ts(None, "t").unwrap(), None);
        let bad = Timestamp {
            seconds: i64::MAX,
            nanos: -1,
        };
        assert!(from_ts(Some(&bad), "t").is_err());
    }
}
