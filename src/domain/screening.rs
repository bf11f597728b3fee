//! Screening rules with no I/O: the review threshold and outcome, the case
//! state machine, who is told about a case (a `party_ref` naming a tenant
//! routes the clarification request to that tenant's inbox; any other goes
//! to the compliance queue), and request validation.

use crate::domain::inbox::Recipient;
use crate::error::Error;

/// The default review threshold: at or above it a hit is a possible match.
/// Chosen on folds of the development set (see `docs/BENCHMARKS.md`): the
/// lowest value that keeps negatives alerting under 1.5% while recall stays
/// above 97%.
pub const DEFAULT_REVIEW_THRESHOLD: f64 = 0.8;

/// The platform system whose inbox receives clarification requests for
/// parties that belong to no tenant (the compliance team's queue).
pub const COMPLIANCE_QUEUE: &str = "compliance-queue";

/// Most hits one screening returns.
pub const MAX_LIMIT: u32 = 100;
/// Hits returned when the request leaves `limit` at 0.
pub const DEFAULT_LIMIT: u32 = 10;

/// What a screening concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing at or above the threshold.
    Clear,
    /// At least one hit at or above the threshold.
    PossibleMatch,
    /// The party has a confirmed case.
    ConfirmedMatch,
}

/// The outcome of a screening with best score `best` for a party that has
/// (or has not) a confirmed case.
pub fn outcome(best: Option<f64>, threshold: f64, confirmed: bool) -> Outcome {
    if confirmed {
        Outcome::ConfirmedMatch
    } else if best.is_some_and(|s| s >= threshold) {
        Outcome::PossibleMatch
    } else {
        Outcome::Clear
    }
}

/// A case's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseStatus {
    /// Opened; the clarification request is out.
    Open,
    /// A false positive: the party and these entries do not alert again
    /// until an entry changes.
    Cleared,
    /// A true match: the party is blocked.
    Confirmed,
}

impl CaseStatus {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Cleared => "cleared",
            Self::Confirmed => "confirmed",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Cleared, Self::Confirmed]
            .into_iter()
            .find(|c| c.as_str() == s)
    }

    /// The status `resolution` moves an `Open` case to; a resolved case is
    /// final (FAILED_PRECONDITION), since its history is evidence.
    pub fn resolve(self, to: CaseStatus) -> Result<CaseStatus, Error> {
        match (self, to) {
            (Self::Open, Self::Cleared | Self::Confirmed) => Ok(to),
            (Self::Open, Self::Open) => Err(Error::invalid("resolution", "must be CLEARED or CONFIRMED")),
            (from, _) => Err(Error::FailedPrecondition(format!(
                "case is already {}",
                from.as_str()
            ))),
        }
    }
}

/// The tenant a `party_ref` belongs to: `tenants/{tenant_id}` (the tenant
/// itself) or `tenants/{tenant_id}/...` (one of its customers, contacts,
/// partners). Other forms (`subprocessors/{id}`, free references) belong to
/// the platform.
pub fn party_tenant(party_ref: &str) -> Option<&str> {
    let rest = party_ref.strip_prefix("tenants/")?;
    let t = rest.split('/').next()?;
    (!t.is_empty()).then_some(t)
}

/// Whose inbox a clarification request about `party_ref` goes to.
pub fn clarification_recipient(party_ref: &str) -> Recipient {
    match party_tenant(party_ref) {
        Some(t) => Recipient::Tenant(t.to_owned()),
        None => Recipient::System(COMPLIANCE_QUEUE.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_follows_threshold_and_confirmation() {
        assert_eq!(outcome(None, 0.8, false), Outcome::Clear);
        assert_eq!(outcome(Some(0.79), 0.8, false), Outcome::Clear);
        assert_eq!(outcome(Some(0.8), 0.8, false), Outcome::PossibleMatch);
        assert_eq!(outcome(None, 0.8, true), Outcome::ConfirmedMatch);
    }

    #[test]
    fn cases_resolve_once() {
        assert_eq!(
            CaseStatus::Open.resolve(CaseStatus::Cleared).unwrap(),
            CaseStatus::Cleared
        );
        assert!(matches!(
            CaseStatus::Cleared.resolve(CaseStatus::Confirmed),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(matches!(
            CaseStatus::Open.resolve(CaseStatus::Open),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn party_refs_route_to_their_tenant() {
        assert_eq!(party_tenant("tenants/t1/customers/9"), Some("t1"));
        assert_eq!(party_tenant("tenants/t1"), Some("t1"));
        assert_eq!(party_tenant("tenants/"), None);
        assert_eq!(party_tenant("subprocessors/x"), None);
        assert_eq!(
            clarification_recipient("partners/acme"),
            Recipient::System(COMPLIANCE_QUEUE.into())
        );
        assert_eq!(
            clarification_recipient("tenants/t2/x"),
            Recipient::Tenant("t2".into())
        );
    }
}
