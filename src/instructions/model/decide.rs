//! The decision table: whether a platform service may process a category of
//! a tenant's data for a purpose in a region. Default deny: anything not
//! expressly permitted is denied, and every reason that applies is listed so
//! the caller can fix all of them at once.
//!
//! [`TenantPolicy`] is the compiled, immutable snapshot of one tenant that
//! the hot path reads; building it does the work (parsing, sets) once per
//! write instead of once per check.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::instructions::model::{ANONYMIZED_ANALYTICS, InstructionSet};
use crate::subprocessors::model::{MechanismSet, SubProcessorGrants};

/// Why processing is denied. Values match the wire enum `DenyReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DenyReason {
    /// The tenant has written no instructions.
    NoInstructions = 1,
    /// No rule covers the category.
    CategoryNotCovered = 2,
    /// The rule does not permit the purpose.
    PurposeNotPermitted = 3,
    /// The rule does not permit the region.
    RegionNotPermitted = 4,
    /// The whole category is restricted.
    CategoryRestricted = 5,
    /// The sub-processor is not authorised for this tenant (or scope).
    SubProcessorNotAuthorized = 6,
    /// The data subject asked for restriction.
    SubjectRestricted = 7,
    /// The data subject objected.
    SubjectObjected = 8,
    /// The data subject's data was erased.
    SubjectErased = 9,
    /// The tenant's contract has ended.
    TenantTerminated = 10,
    /// The tenant itself has a confirmed sanctions match.
    SanctionedParty = 11,
    /// The sub-processor or a parent in its chain processes outside the
    /// rule's regions, or relies outside the EEA on a transfer mechanism
    /// the tenant did not permit.
    TransferNotPermitted = 12,
}

impl DenyReason {
    /// Every reason, in wire order.
    pub const ALL: [DenyReason; 12] = [
        Self::NoInstructions,
        Self::CategoryNotCovered,
        Self::PurposeNotPermitted,
        Self::RegionNotPermitted,
        Self::CategoryRestricted,
        Self::SubProcessorNotAuthorized,
        Self::SubjectRestricted,
        Self::SubjectObjected,
        Self::SubjectErased,
        Self::TenantTerminated,
        Self::SanctionedParty,
        Self::TransferNotPermitted,
    ];
}

/// A set of reasons in one machine word, so a decision allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reasons(u16);

impl Reasons {
    /// Adds a reason.
    pub fn add(&mut self, r: DenyReason) {
        self.0 |= 1 << (r as u8);
    }

    /// Whether `r` is in the set.
    pub fn contains(self, r: DenyReason) -> bool {
        self.0 & (1 << (r as u8)) != 0
    }

    /// True when nothing denies.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The reasons in wire order.
    pub fn iter(self) -> impl Iterator<Item = DenyReason> {
        DenyReason::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// The set of the wire values in `values` (unknown ones are ignored),
    /// as the decision log stores them.
    pub fn from_wire(values: &[u8]) -> Self {
        let mut r = Self::default();
        for x in DenyReason::ALL {
            if values.contains(&(x as u8)) {
                r.add(x);
            }
        }
        r
    }
}

/// The answer to one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Empty = ALLOW.
    pub reasons: Reasons,
    /// The instruction version the decision used (0 = none).
    pub instruction_version: u64,
    /// On ALLOW, the days the category's data may be kept (its rule's
    /// retention); 0 on DENY or when it is kept until contract end.
    pub retention_days: u32,
}

impl Decision {
    /// ALLOW when no reason denies.
    pub fn allowed(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// One rule, compiled for lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CompiledRule {
    purposes: Box<[Box<str>]>,
    /// Empty = any region.
    regions: Box<[[u8; 2]]>,
    restricted: bool,
    allow_anonymized_analytics: bool,
    retention_days: u32,
}

/// Immutable snapshot of everything decisions need about one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TenantPolicy {
    /// Instruction version compiled in (0 = no instructions).
    pub version: u64,
    rules: HashMap<Box<str>, CompiledRule>,
    /// The contract ends at this instant, if terminated.
    pub terminated_from: Option<DateTime<Utc>>,
    /// Position in the change log this snapshot reflects; a snapshot never
    /// replaces one that reflects a later change.
    pub change_seq: i64,
    /// Data subjects with a live restriction, objection, consent withdrawal
    /// or erasure, by `subject_ref`; subjects without any are absent.
    subjects: HashMap<Box<str>, Reasons>,
    /// Which sub-processors the tenant has authorised, and from when (set
    /// with [`TenantPolicy::with_sub_processors`]).
    pub sub_processors: SubProcessorGrants,
    /// The tenant has a confirmed sanctions match: nothing is processed
    /// for it until the case history says otherwise.
    pub sanctioned: bool,
    /// The transfer mechanisms the tenant permits outside the EEA (empty:
    /// any).
    permitted_mechanisms: MechanismSet,
}

impl TenantPolicy {
    /// Compiles the current instruction set (if any) and contract state.
    pub fn compile(
        version: u64,
        set: Option<&InstructionSet>,
        terminated_from: Option<DateTime<Utc>>,
        change_seq: i64,
    ) -> Self {
        let rules = set
            .map(|s| {
                s.rules
                    .iter()
                    .map(|r| {
                        let regions = r
                            .regions
                            .iter()
                            .filter_map(|c| <[u8; 2]>::try_from(c.as_bytes()).ok())
                            .collect();
                        (
                            r.category.as_str().into(),
                            CompiledRule {
                                purposes: r.purposes.iter().map(|p| p.as_str().into()).collect(),
                                regions,
                                restricted: r.restricted,
                                allow_anonymized_analytics: r.allow_anonymized_analytics,
                                retention_days: r.retention_days,
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let permitted_mechanisms = set
            .map(|s| MechanismSet::of(&s.permitted_transfer_mechanisms))
            .unwrap_or_default();
        Self {
            permitted_mechanisms,
            version: if set.is_some() { version } else { 0 },
            rules,
            terminated_from,
            change_seq,
            subjects: HashMap::new(),
            sub_processors: SubProcessorGrants::default(),
            sanctioned: false,
        }
    }

    /// Adds the subject-level flags: `(subject_ref, restricted, objected,
    /// erased)`; a withdrawn consent counts as an objection.
    pub fn with_subjects<'a>(mut self, flags: impl IntoIterator<Item = (&'a str, bool, bool, bool)>) -> Self {
        for (sref, restricted, objected, erased) in flags {
            let mut r = Reasons::default();
            if restricted {
                r.add(DenyReason::SubjectRestricted);
            }
            if objected {
                r.add(DenyReason::SubjectObjected);
            }
            if erased {
                r.add(DenyReason::SubjectErased);
            }
            if !r.is_empty() {
                self.subjects.insert(sref.into(), r);
            }
        }
        self
    }

    /// Marks the tenant as a confirmed sanctioned party.
    pub fn with_sanctioned(mut self, sanctioned: bool) -> Self {
        self.sanctioned = sanctioned;
        self
    }

    /// Adds the tenant's compiled sub-processor authorisations.
    pub fn with_sub_processors(mut self, grants: SubProcessorGrants) -> Self {
        self.sub_processors = grants;
        self
    }
}

/// What a platform service is about to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check<'a> {
    /// Data category key.
    pub category: &'a str,
    /// Purpose key.
    pub purpose: &'a str,
    /// ISO 3166-1 alpha-2 region, or empty when not region-bound.
    pub region: &'a str,
    /// The sub-processor involved, or empty.
    pub sub_processor_id: &'a str,
    /// Keyed hash of the data subject, or empty.
    pub subject_ref: &'a str,
}

/// Decides one check against a tenant's snapshot (`None`: nothing known of
/// the tenant). Pure and allocation-free: this is the hot path.
pub fn decide(policy: Option<&TenantPolicy>, check: &Check<'_>, now: DateTime<Utc>) -> Decision {
    let mut reasons = Reasons::default();
    let Some(p) = policy else {
        reasons.add(DenyReason::NoInstructions);
        if !check.sub_processor_id.is_empty() {
            reasons.add(DenyReason::SubProcessorNotAuthorized);
        }
        return Decision {
            reasons,
            instruction_version: 0,
            retention_days: 0,
        };
    };
    if p.terminated_from.is_some_and(|t| t <= now) {
        reasons.add(DenyReason::TenantTerminated);
    }
    if p.sanctioned {
        reasons.add(DenyReason::SanctionedParty);
    }
    if !check.subject_ref.is_empty()
        && let Some(s) = p.subjects.get(check.subject_ref)
    {
        reasons.0 |= s.0;
    }
    // The rule's regions, for the transfer check (none: no rule applies).
    let mut regions: Option<&[[u8; 2]]> = None;
    let mut retention_days = 0;
    if p.version == 0 {
        reasons.add(DenyReason::NoInstructions);
    } else {
        match p.rules.get(check.category) {
            None => reasons.add(DenyReason::CategoryNotCovered),
            Some(rule) => {
                regions = Some(&rule.regions);
                retention_days = rule.retention_days;
                if rule.restricted {
                    reasons.add(DenyReason::CategoryRestricted);
                }
                let purpose_ok = if check.purpose == ANONYMIZED_ANALYTICS {
                    rule.allow_anonymized_analytics
                } else {
                    rule.purposes.iter().any(|x| &**x == check.purpose)
                };
                if !purpose_ok {
                    reasons.add(DenyReason::PurposeNotPermitted);
                }
                if !rule.regions.is_empty() && !rule.regions.iter().any(|r| r == check.region.as_bytes()) {
                    reasons.add(DenyReason::RegionNotPermitted);
                }
            }
        }
    }
    // Empty: no sub-processor involved; an unknown id is not authorised.
    // Where the sub-processor and its chain process must meet the rule's
    // regions and the tenant's permitted transfer mechanisms, whatever
    // region the caller names (asked only when a rule applies).
    if !check.sub_processor_id.is_empty() {
        let v = p.sub_processors.verdict(
            check.sub_processor_id,
            check.category,
            check.purpose,
            now,
            regions.map(|r| (r, p.permitted_mechanisms)),
        );
        if !v.authorized {
            reasons.add(DenyReason::SubProcessorNotAuthorized);
        }
        if !v.transfer_permitted {
            reasons.add(DenyReason::TransferNotPermitted);
        }
    }
    Decision {
        retention_days: if reasons.is_empty() { retention_days } else { 0 },
        reasons,
        instruction_version: p.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instructions::model::CategoryRule;
    use DenyReason::*;
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
    }

    fn policy(rules: Vec<CategoryRule>, terminated: Option<DateTime<Utc>>) -> TenantPolicy {
        TenantPolicy::compile(
            3,
            Some(&InstructionSet {
                rules,
                termination_grace_days: 30,
                ..Default::default()
            }),
            terminated,
            0,
        )
    }

    fn rule(cat: &str) -> CategoryRule {
        CategoryRule {
            category: cat.into(),
            retention_days: 0,
            purposes: vec!["service_delivery".into(), "support".into()],
            regions: vec!["DE".into(), "FR".into()],
            restricted: false,
            allow_anonymized_analytics: false,
        }
    }

    fn check<'a>(category: &'a str, purpose: &'a str, region: &'a str) -> Check<'a> {
        Check {
            category,
            purpose,
            region,
            sub_processor_id: "",
            subject_ref: "",
        }
    }

    fn reasons(d: Decision) -> Vec<DenyReason> {
        d.reasons.iter().collect()
    }

    #[test]
    fn permitted_processing_is_allowed_with_its_version() {
        let p = policy(vec![rule("contact")], None);
        let d = decide(Some(&p), &check("contact", "support", "DE"), now());
        assert!(d.allowed());
        assert_eq!(d.instruction_version, 3);
        let mut kept = rule("contact");
        kept.retention_days = 90;
        let p = policy(vec![kept], None);
        assert_eq!(
            decide(Some(&p), &check("contact", "support", "DE"), now()).retention_days,
            90
        );
        assert_eq!(
            decide(Some(&p), &check("contact", "billing", "DE"), now()).retention_days,
            0,
            "none on DENY"
        );
    }

    #[test]
    fn unknown_tenant_and_empty_policy_deny_no_instructions() {
        assert_eq!(
            reasons(decide(None, &check("contact", "support", "DE"), now())),
            [NoInstructions]
        );
        let p = TenantPolicy::compile(0, None, None, 0);
        let d = decide(Some(&p), &check("contact", "support", "DE"), now());
        assert_eq!(reasons(d), [NoInstructions]);
        assert_eq!(d.instruction_version, 0);
    }

    #[test]
    fn each_reason_alone() {
        let mut restricted = rule("recording");
        restricted.restricted = true;
        let mut anywhere = rule("transcript");
        anywhere.regions.clear();
        let p = policy(vec![rule("contact"), restricted, anywhere], None);
        let cases = [
            (check("agent", "support", "DE"), vec![CategoryNotCovered]),
            (check("contact", "billing", "DE"), vec![PurposeNotPermitted]),
            (check("contact", "support", "US"), vec![RegionNotPermitted]),
            (check("contact", "support", ""), vec![RegionNotPermitted]),
            (check("recording", "support", "FR"), vec![CategoryRestricted]),
            (check("transcript", "support", "BR"), vec![]),
            (check("transcript", "support", ""), vec![]),
        ];
        for (c, want) in cases {
            assert_eq!(reasons(decide(Some(&p), &c, now())), want, "{c:?}");
        }
    }

    #[test]
    fn every_applicable_reason_is_listed() {
        let mut r = rule("recording");
        r.restricted = true;
        let p = policy(vec![r], Some(now() - Duration::days(1)));
        assert_eq!(
            reasons(decide(Some(&p), &check("recording", "billing", "US"), now())),
            [
                PurposeNotPermitted,
                RegionNotPermitted,
                CategoryRestricted,
                TenantTerminated
            ]
        );
        assert_eq!(
            reasons(decide(Some(&p), &check("agent", "billing", "US"), now())),
            [CategoryNotCovered, TenantTerminated]
        );
    }

    #[test]
    fn a_sanctioned_tenant_is_denied_whatever_its_rules_say() {
        let p = policy(vec![rule("contact")], None).with_sanctioned(true);
        let c = check("contact", "support", "DE");
        assert_eq!(reasons(decide(Some(&p), &c, now())), [SanctionedParty]);
        let bare = TenantPolicy::compile(0, None, None, 0).with_sanctioned(true);
        assert_eq!(
            reasons(decide(Some(&bare), &c, now())),
            [NoInstructions, SanctionedParty]
        );
        assert!(decide(Some(&policy(vec![rule("contact")], None)), &c, now()).allowed());
    }

    #[test]
    fn termination_counts_from_its_effective_instant() {
        let at = now() + Duration::hours(1);
        let p = policy(vec![rule("contact")], Some(at));
        let c = check("contact", "support", "DE");
        assert!(decide(Some(&p), &c, now()).allowed());
        assert_eq!(reasons(decide(Some(&p), &c, at)), [TenantTerminated]);
        // A terminated tenant without instructions gets both reasons.
        let bare = TenantPolicy::compile(0, None, Some(now()), 0);
        assert_eq!(
            reasons(decide(Some(&bare), &c, now())),
            [NoInstructions, TenantTerminated]
        );
    }

    #[test]
    fn anonymized_analytics_needs_the_flag_whatever_the_purposes() {
        let mut listed = rule("contact");
        listed.purposes.push(ANONYMIZED_ANALYTICS.into());
        let mut flagged = rule("transcript");
        flagged.allow_anonymized_analytics = true;
        let p = policy(vec![listed, flagged], None);
        assert_eq!(
            reasons(decide(
                Some(&p),
                &check("contact", ANONYMIZED_ANALYTICS, "DE"),
                now()
            )),
            [PurposeNotPermitted]
        );
        assert!(decide(Some(&p), &check("transcript", ANONYMIZED_ANALYTICS, "DE"), now()).allowed());
    }

    #[test]
    fn subject_flags_deny_only_that_subject() {
        let p = policy(vec![rule("contact")], None).with_subjects([
            ("ref-r", true, false, false),
            ("ref-oe", false, true, true),
            ("ref-none", false, false, false),
        ]);
        let mut c = check("contact", "support", "DE");
        assert!(decide(Some(&p), &c, now()).allowed());
        c.subject_ref = "ref-r";
        assert_eq!(reasons(decide(Some(&p), &c, now())), [SubjectRestricted]);
        c.subject_ref = "ref-oe";
        assert_eq!(
            reasons(decide(Some(&p), &c, now())),
            [SubjectObjected, SubjectErased]
        );
        c.subject_ref = "ref-none";
        assert!(decide(Some(&p), &c, now()).allowed());
        c.category = "agent";
        c.subject_ref = "ref-r";
        assert_eq!(
            reasons(decide(Some(&p), &c, now())),
            [CategoryNotCovered, SubjectRestricted]
        );
    }

    /// A tenant in general mode with `sp` (chain: its parent first) added
    /// on 1 May and `sp`'s chain as given.
    fn grants(sps: Vec<crate::subprocessors::model::SubProcessor>) -> SubProcessorGrants {
        use crate::subprocessors::model::{AuthorizationMode, ChangeKind, Notice, Registry, TenantAnswers};
        let may = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
        let notices = sps
            .iter()
            .enumerate()
            .map(|(i, s)| Notice {
                id: format!("n{i}"),
                seq: i as i64,
                sub_processor_id: s.id.clone(),
                kind: ChangeKind::Add,
                scope: s.scope.clone(),
                effective_at: may,
                objection_deadline: may - Duration::days(1),
                created_at: may - Duration::days(30),
            })
            .collect();
        Registry {
            sub_processors: sps,
            notices,
        }
        .grants(&TenantAnswers {
            modes: vec![(may - Duration::days(60), AuthorizationMode::General)],
            answers: Default::default(),
        })
    }

    fn sub_processor(
        id: &str,
        parent: Option<&str>,
        locations: &[&str],
        mechanism: crate::subprocessors::model::TransferMechanism,
    ) -> crate::subprocessors::model::SubProcessor {
        crate::subprocessors::model::SubProcessor {
            id: id.into(),
            legal_name: id.into(),
            country: locations[0].into(),
            processing_locations: locations.iter().map(|l| l.to_string()).collect(),
            services: "transcription".into(),
            scope: crate::subprocessors::model::Scope {
                categories: vec!["contact".into()],
                purposes: vec!["support".into()],
            },
            transfer_mechanism: mechanism,
            parent_id: parent.map(Into::into),
            dpa_signed_at: None,
            nda_signed_at: None,
            created_at: now() - Duration::days(90),
            screening: crate::subprocessors::model::Screening::Clear,
            screened_at: None,
        }
    }

    #[test]
    fn a_sub_processor_chain_outside_the_rules_regions_is_a_transfer_not_permitted() {
        use crate::subprocessors::model::TransferMechanism::{Bcr, Eea, Scc};
        let g = grants(vec![
            sub_processor("us-parent", None, &["DE", "US"], Scc),
            sub_processor("de-child", Some("us-parent"), &["DE"], Eea),
            sub_processor("fr", None, &["FR"], Eea),
        ]);
        let mut anywhere = rule("transcript");
        anywhere.regions.clear();
        anywhere.category = "contact_anywhere".into();
        let p = policy(vec![rule("contact"), anywhere.clone()], None).with_sub_processors(g.clone());
        let mut c = check("contact", "support", "DE");
        c.sub_processor_id = "fr";
        assert!(decide(Some(&p), &c, now()).allowed());
        // The child itself stays in DE; its parent processes in the US.
        c.sub_processor_id = "de-child";
        assert_eq!(reasons(decide(Some(&p), &c, now())), [TransferNotPermitted]);
        c.sub_processor_id = "us-parent";
        assert_eq!(reasons(decide(Some(&p), &c, now())), [TransferNotPermitted]);
        // No sub-processor named: only the caller's region counts.
        c.sub_processor_id = "";
        assert!(decide(Some(&p), &c, now()).allowed());

        // A rule without regions: only the mechanisms count.
        let mut any_region = anywhere.clone();
        any_region.category = "contact".into();
        let set = |mechanisms| InstructionSet {
            rules: vec![any_region.clone()],
            termination_grace_days: 0,
            permitted_transfer_mechanisms: mechanisms,
        };
        let open = TenantPolicy::compile(2, Some(&set(vec![])), None, 0).with_sub_processors(g.clone());
        let scc = TenantPolicy::compile(2, Some(&set(vec![Scc])), None, 0).with_sub_processors(g.clone());
        let bcr = TenantPolicy::compile(2, Some(&set(vec![Bcr])), None, 0).with_sub_processors(g.clone());
        let mut c = check("contact", "support", "BR");
        c.sub_processor_id = "de-child";
        assert!(decide(Some(&open), &c, now()).allowed());
        assert!(decide(Some(&scc), &c, now()).allowed());
        assert_eq!(reasons(decide(Some(&bcr), &c, now())), [TransferNotPermitted]);
        // Inside the EEA nothing is a transfer, whatever is permitted.
        c.sub_processor_id = "fr";
        assert!(decide(Some(&bcr), &c, now()).allowed());
        // An unknown sub-processor is refused as not authorised, not as a
        // transfer.
        c.sub_processor_id = "nobody";
        assert_eq!(
            reasons(decide(Some(&bcr), &c, now())),
            [SubProcessorNotAuthorized]
        );
    }

    #[test]
    fn reasons_set_round_trips() {
        let mut r = Reasons::default();
        for x in DenyReason::ALL {
            r.add(x);
        }
        assert_eq!(r.iter().collect::<Vec<_>>(), DenyReason::ALL);
        assert!(!r.is_empty());
        let wire: Vec<u8> = r.iter().map(|x| x as u8).collect();
        assert_eq!(Reasons::from_wire(&wire), r);
    }
}
