//! Screening rules with no I/O: the review threshold and outcome, the case
//! state machine, who is told about a case (a `party_ref` naming a tenant
//! routes the clarification request to that tenant's inbox; any other goes
//! to the compliance queue), and request validation.

use crate::auth::Role;
use crate::error::Error;
use crate::inbox::model::Recipient;

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

impl Outcome {
    /// The stored form (`clear`, `possible_match`, `confirmed_match`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clear => "clear",
            Self::PossibleMatch => "possible_match",
            Self::ConfirmedMatch => "confirmed_match",
        }
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum CaseStatus {
    /// Opened; the clarification request is out.
    Open,
    /// The party's side answered the clarification request; the compliance
    /// team decides next.
    Answered,
    /// A false positive: the party and these entries do not alert again
    /// until an entry changes.
    Cleared,
    /// A true match: the party is blocked.
    Confirmed,
}

impl CaseStatus {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    /// True until the case is cleared or confirmed.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Open | Self::Answered)
    }

    /// The status `resolution` moves a pending case to (an answer is not
    /// required: compliance may decide on the list data alone); a resolved
    /// case is final (FAILED_PRECONDITION), since its history is evidence.
    pub fn resolve(self, to: CaseStatus) -> Result<CaseStatus, Error> {
        match (self, to) {
            (Self::Open | Self::Answered, Self::Cleared | Self::Confirmed) => Ok(to),
            (_, Self::Open | Self::Answered) => {
                Err(Error::invalid("resolution", "must be CLEARED or CONFIRMED"))
            }
            (from, _) => Err(Error::WrongState(format!("case is already {}", from.as_str()))),
        }
    }

    /// The status an answer to the clarification request moves the case
    /// to; further answers (more documents) are welcome until it is
    /// resolved, never after.
    pub fn answer(self) -> Result<CaseStatus, Error> {
        if self.is_pending() {
            Ok(Self::Answered)
        } else {
            Err(Error::WrongState(format!(
                "case is already {}; it takes no more answers",
                self.as_str()
            )))
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

/// What a `party_ref` names, for what a confirmed match blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartyOf<'a> {
    /// `tenants/{id}`: the tenant itself; a confirmed match makes
    /// `CheckProcessing` deny for it.
    Tenant(&'a str),
    /// `tenants/{id}/...`: one of the tenant's own parties.
    TenantParty(&'a str),
    /// `subprocessors/{id}`: a sub-processor's legal name; a confirmed
    /// match makes it BLOCKED, a clear screening lets it become ACTIVE.
    SubProcessor(&'a str),
    /// Any other reference: a platform party.
    Platform,
}

/// Classifies `party_ref`.
pub fn party_of(party_ref: &str) -> PartyOf<'_> {
    if let Some(id) = party_ref
        .strip_prefix(SUB_PROCESSOR_PREFIX)
        .filter(|id| !id.is_empty() && !id.contains('/'))
    {
        return PartyOf::SubProcessor(id);
    }
    match party_tenant(party_ref) {
        Some(t) if party_ref.len() == "tenants/".len() + t.len() => PartyOf::Tenant(t),
        Some(t) => PartyOf::TenantParty(t),
        None => PartyOf::Platform,
    }
}

/// Whether a `Screen` caller may record a screening under `party_ref`.
/// Two kinds of reference belong to an owner other than the caller, and a
/// screening recorded under them changes what later list versions re-screen
/// and what a confirmed match blocks: `subprocessors/...` belongs to the
/// sub-processor registry (a sub-processor is screened from its registered
/// legal name, never from a caller's), and `tenants/{id}` (the tenant
/// itself) to compliance. A tenant's own parties (`tenants/{id}/...`) and
/// free references stay open to every caller of `Screen`.
pub fn may_record_under(party_ref: &str, role: Role) -> Result<(), Error> {
    if party_ref.starts_with(SUB_PROCESSOR_PREFIX) {
        return Err(Error::Forbidden(
            "party_ref subprocessors/... belongs to the sub-processor registry: a sub-processor is screened from its registered legal name".into(),
        ));
    }
    if matches!(party_of(party_ref), PartyOf::Tenant(_)) && role != Role::Compliance {
        return Err(Error::Forbidden(
            "party_ref tenants/{id} (the tenant itself) is screened by compliance only".into(),
        ));
    }
    Ok(())
}

const SUB_PROCESSOR_PREFIX: &str = "subprocessors/";

/// The `party_ref` a sub-processor's legal name is screened under.
pub fn sub_processor_ref(id: &str) -> String {
    format!("{SUB_PROCESSOR_PREFIX}{id}")
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
    fn owned_references_are_refused_to_other_callers() {
        assert!(may_record_under("subprocessors/x", Role::Platform).is_err());
        assert!(may_record_under("subprocessors/x", Role::Compliance).is_err());
        assert!(may_record_under("subprocessors/", Role::Platform).is_err());
        assert!(may_record_under("tenants/acme", Role::Platform).is_err());
        assert!(may_record_under("tenants/acme", Role::Compliance).is_ok());
        assert!(may_record_under("tenants/acme/customer/7", Role::Platform).is_ok());
        assert!(may_record_under("crm/7", Role::Platform).is_ok());
        assert!(may_record_under("", Role::Platform).is_ok());
    }

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
            Err(Error::WrongState(_))
        ));
        assert!(matches!(
            CaseStatus::Open.resolve(CaseStatus::Open),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn answers_are_taken_until_resolution() {
        assert_eq!(CaseStatus::Open.answer().unwrap(), CaseStatus::Answered);
        assert_eq!(CaseStatus::Answered.answer().unwrap(), CaseStatus::Answered);
        assert!(matches!(CaseStatus::Cleared.answer(), Err(Error::WrongState(_))));
        assert_eq!(
            CaseStatus::Answered.resolve(CaseStatus::Confirmed).unwrap(),
            CaseStatus::Confirmed
        );
        assert!(matches!(
            CaseStatus::Answered.resolve(CaseStatus::Answered),
            Err(Error::Invalid(_))
        ));
        for s in ["open", "answered", "cleared", "confirmed"] {
            assert_eq!(CaseStatus::parse(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn party_refs_say_what_a_match_blocks() {
        assert_eq!(party_of("tenants/t1"), PartyOf::Tenant("t1"));
        assert_eq!(party_of("tenants/t1/customers/9"), PartyOf::TenantParty("t1"));
        assert_eq!(party_of(&sub_processor_ref("abc")), PartyOf::SubProcessor("abc"));
        assert_eq!(party_of("subprocessors/"), PartyOf::Platform);
        assert_eq!(party_of("subprocessors/a/b"), PartyOf::Platform);
        assert_eq!(party_of("partners/acme"), PartyOf::Platform);
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

    #[test]
    fn case_statuses_keep_their_stored_forms() {
        use strum::VariantArray;
        let all: Vec<&str> = CaseStatus::VARIANTS.iter().map(|c| c.as_str()).collect();
        assert_eq!(all, ["open", "answered", "cleared", "confirmed"]);
        for c in CaseStatus::VARIANTS {
            assert_eq!(CaseStatus::parse(c.as_str()), Some(*c));
        }
        assert_eq!(CaseStatus::parse("Open"), None);
    }
}
