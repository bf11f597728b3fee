//! Who an envelope is for, and the bounds of a lease. An inbox belongs to a
//! tenant or to a platform system; the caller's token decides which, so no
//! request field can point at someone else's inbox.

use std::fmt;

use crate::auth::Role;
use crate::error::Error;
use crate::validate::Violations;

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
    /// A platform system's question to a subject request's controller.
    SubjectRequestQuestion(String),
}

/// What a reply to an envelope of `kind` with `payload` answers; an
/// envelope that asks nothing is FAILED_PRECONDITION.
pub fn reply_target(kind: &str, payload: &str) -> Result<ReplyTarget, Error> {
    use crate::inbox::kinds::EnvelopeKind;
    let kind = EnvelopeKind::parse(kind)
        .filter(|k| k.takes_reply())
        .ok_or_else(|| Error::WrongState(format!("a {kind} envelope takes no reply")))?;
    let (field, target): (&str, fn(String) -> ReplyTarget) = match kind {
        EnvelopeKind::SubjectRequestQuestion => ("question_id", ReplyTarget::SubjectRequestQuestion),
        _ => ("case_id", ReplyTarget::ScreeningCase),
    };
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get(field)?.as_str().map(str::to_owned))
        .map(target)
        .ok_or_else(|| Error::Unexpected(format!("{kind} envelope without {field}")))
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

/// Most ids one `Ack` takes.
pub const MAX_ACK_IDS: usize = 1000;
/// Longest envelope id a request may name.
const MAX_ENVELOPE_ID: usize = 64;

/// The inbox a caller reads: a tenant's own, or a platform system's (named
/// by its token's subject). Other roles have none: PERMISSION_DENIED.
pub fn inbox_of(role: Role, sub: &str, tenant_id: Option<&str>) -> Result<Recipient, Error> {
    match (role, tenant_id) {
        (Role::Tenant, Some(t)) => Ok(Recipient::Tenant(t.to_owned())),
        (Role::Platform, _) => Ok(Recipient::System(sub.to_owned())),
        _ => Err(Error::Forbidden(
            "only tenants and platform systems have inboxes".into(),
        )),
    }
}

impl Recipient {
    /// The tenant an inbox belongs to, for its audit events (None: a
    /// platform system's).
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::Tenant(t) => Some(t),
            Self::System(_) => None,
        }
    }
}

/// A checked `Ack`: 1 to [`MAX_ACK_IDS`] envelope ids, each well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckIds(Vec<String>);

impl AckIds {
    /// Checks the ids of an `Ack`, naming each bad one.
    pub fn parse(ids: Vec<String>) -> Result<Self, Error> {
        let mut v = Violations::new();
        v.check(ids.is_empty(), "ids", "at least one id is required");
        v.check(
            ids.len() > MAX_ACK_IDS,
            "ids",
            format!("at most {MAX_ACK_IDS} ids per call"),
        );
        for (i, id) in ids.iter().enumerate() {
            v.check(
                id.is_empty() || id.len() > MAX_ENVELOPE_ID,
                format!("ids[{i}]"),
                "is not an envelope id",
            );
        }
        v.finish()?;
        Ok(Self(ids))
    }

    /// The ids, in request order.
    pub fn ids(&self) -> &[String] {
        &self.0
    }
}

/// A checked `Reply`: the envelope answered and the answer, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The envelope that asked.
    pub id: String,
    /// The answer, without surrounding whitespace.
    pub text: String,
}

impl Reply {
    /// Checks a reply: an envelope id and a non-blank, bounded answer.
    pub fn parse(id: String, text: String) -> Result<Self, Error> {
        let mut v = Violations::new();
        v.required_text("id", &id, MAX_ENVELOPE_ID);
        v.required_text("text", &text, MAX_REPLY_CHARS);
        v.finish()?;
        Ok(Self {
            id,
            text: text.trim().to_owned(),
        })
    }
}

/// A checked `Subscribe` start: the cursor to read after.
pub fn parse_after_cursor(after_cursor: u64) -> Result<i64, Error> {
    i64::try_from(after_cursor).map_err(|_| Error::invalid("after_cursor", "is out of range"))
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
            Err(Error::WrongState(_))
        ));
        assert!(matches!(
            reply_target("screening.clarification", "{}"),
            Err(Error::Unexpected(_))
        ));
        assert_eq!(
            reply_target("subject_request.question", r#"{"id":"q1","question_id":"q1"}"#).unwrap(),
            ReplyTarget::SubjectRequestQuestion("q1".into())
        );
        assert!(matches!(
            reply_target("subject_request.answer", r#"{"question_id":"q1"}"#),
            Err(Error::WrongState(_))
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
            Err(Error::Invalid(v)) => assert_eq!(v.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    fn fields(e: Error) -> Vec<String> {
        match e {
            Error::Invalid(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("not INVALID_ARGUMENT: {other}"),
        }
    }

    #[test]
    fn only_tenants_and_systems_have_inboxes() {
        assert_eq!(
            inbox_of(Role::Tenant, "alice", Some("t1")).unwrap(),
            Recipient::Tenant("t1".into())
        );
        assert_eq!(
            inbox_of(Role::Platform, "crm", Some("t1")).unwrap(),
            Recipient::System("crm".into())
        );
        for (role, tenant) in [
            (Role::Tenant, None),
            (Role::Compliance, None),
            (Role::Sre, Some("t1")),
        ] {
            assert!(matches!(inbox_of(role, "x", tenant), Err(Error::Forbidden(_))));
        }
        assert_eq!(Recipient::Tenant("t1".into()).tenant(), Some("t1"));
        assert_eq!(Recipient::System("crm".into()).tenant(), None);
    }

    #[test]
    fn ack_takes_one_to_a_thousand_well_formed_ids() {
        assert_eq!(fields(AckIds::parse(vec![]).unwrap_err()), ["ids"]);
        let too_many = vec!["e".to_owned(); MAX_ACK_IDS + 1];
        assert_eq!(fields(AckIds::parse(too_many).unwrap_err()), ["ids"]);
        assert_eq!(
            fields(AckIds::parse(vec!["e1".into(), String::new(), "x".repeat(65)]).unwrap_err()),
            ["ids[1]", "ids[2]"]
        );
        assert_eq!(AckIds::parse(vec!["e1".into()]).unwrap().ids(), ["e1"]);
    }

    #[test]
    fn reply_needs_id_and_text_and_is_trimmed() {
        assert_eq!(
            fields(Reply::parse(String::new(), "  ".into()).unwrap_err()),
            ["id", "text"]
        );
        assert_eq!(
            fields(Reply::parse("e1".into(), "a".repeat(MAX_REPLY_CHARS + 1)).unwrap_err()),
            ["text"]
        );
        assert_eq!(Reply::parse("e1".into(), " yes \n".into()).unwrap().text, "yes");
    }

    #[test]
    fn after_cursor_must_fit() {
        assert_eq!(parse_after_cursor(7).unwrap(), 7);
        assert_eq!(
            fields(parse_after_cursor(u64::MAX).unwrap_err()),
            ["after_cursor"]
        );
    }
}
