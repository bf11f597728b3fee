//! Who an envelope is for, and the bounds of a lease. An inbox belongs to a
//! tenant or to a platform system; the caller's token decides which, so no
//! request field can point at someone else's inbox.

use std::fmt;

use crate::error::Error;

/// Envelopes handed out by one `Pull` when the request leaves `max` at 0.
pub const DEFAULT_PULL_MAX: u32 = 10;
/// Most envelopes one `Pull` hands out.
pub const MAX_PULL_MAX: u32 = 500;
/// Lease used when the request leaves `lease_seconds` at 0.
pub const DEFAULT_LEASE_SECONDS: u32 = 30;
/// Longest lease: a crashed consumer holds envelopes at most this long.
pub const MAX_LEASE_SECONDS: u32 = 3600;

/// The owner of an inbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Recipient {
    /// A customer tenant (the controller).
    Tenant(String),
    /// An internal platform system, named by its token's `sub`.
    System(String),
}

impl Recipient {
    /// Parses the stored form (`tenant:ID` or `system:NAME`).
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(t) = s.strip_prefix("tenant:") {
            Some(Self::Tenant(t.to_owned()))
        } else {
            s.strip_prefix("system:").map(|n| Self::System(n.to_owned()))
        }
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tenant(t) => write!(f, "tenant:{t}"),
            Self::System(s) => write!(f, "system:{s}"),
        }
    }
}

/// Longest answer `Reply` takes, in characters.
pub const MAX_REPLY_CHARS: usize = 10_000;

/// What a reply to an envelope answers: only envelopes that ask a question
/// take one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyTarget {
    /// A screening case's clarification request.
    ScreeningCase(String),
}

/// What a reply to an envelope of `kind` with `payload` answers; an
/// envelope that asks nothing is FAILED_PRECONDITION.
pub fn reply_target(kind: &str, payload: &str) -> Result<ReplyTarget, Error> {
    if kind != crate::screening::cases::CLARIFICATION_KIND {
        return Err(Error::FailedPrecondition(format!(
            "a {kind} envelope takes no reply"
        )));
    }
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("case_id")?.as_str().map(str::to_owned))
        .map(ReplyTarget::ScreeningCase)
        .ok_or_else(|| Error::Internal("clarification envelope without case_id".into()))
}

/// A validated `Pull`: how many envelopes, for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullSpec {
    /// Envelopes to lease at most.
    pub max: u32,
    /// Lease length in seconds.
    pub lease_seconds: u32,
}

impl PullSpec {
    /// Applies defaults and rejects out-of-range values by field.
    pub fn parse(max: u32, lease_seconds: u32) -> Result<Self, Error> {
        let mut v = crate::validate::Violations::new();
        v.check(
            max > MAX_PULL_MAX,
            "max",
            format!("must be at most {MAX_PULL_MAX}"),
        );
        v.check(
            lease_seconds > MAX_LEASE_SECONDS,
            "lease_seconds",
            format!("must be at most {MAX_LEASE_SECONDS}"),
        );
        v.finish()?;
        Ok(Self {
            max: if max == 0 { DEFAULT_PULL_MAX } else { max },
            lease_seconds: if lease_seconds == 0 {
                DEFAULT_LEASE_SECONDS
            } else {
                lease_seconds
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_questions_take_replies() {
        assert_eq!(
            reply_target("screening.clarification", r#"{"id":"c1","case_id":"c1"}"#).unwrap(),
            ReplyTarget::ScreeningCase("c1".into())
        );
        assert!(matches!(
            reply_target("breach.notice", r#"{"id":"b"}"#),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(matches!(
            reply_target("screening.clarification", "{}"),
            Err(Error::Internal(_))
        ));
    }

    #[test]
    fn recipient_round_trip() {
        for r in [Recipient::Tenant("t-1".into()), Recipient::System("crm".into())] {
            assert_eq!(Recipient::parse(&r.to_string()), Some(r));
        }
        assert_eq!(Recipient::parse("nobody"), None);
    }

    #[test]
    fn pull_defaults_and_limits() {
        assert_eq!(
            PullSpec::parse(0, 0).unwrap(),
            PullSpec {
                max: DEFAULT_PULL_MAX,
                lease_seconds: DEFAULT_LEASE_SECONDS
            }
        );
        match PullSpec::parse(501, 3601) {
            Err(Error::InvalidArgument(v)) => assert_eq!(v.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
