//! The breach register's rules: the 72-hour authority deadline, what a
//! notification to the authority must contain (GDPR Art. 33(3)), when it is
//! late, and the document handed to the authority.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::error::Error;
use crate::validate::Violations;

/// Hours from awareness to the authority deadline.
pub const AUTHORITY_HOURS: i64 = 72;
/// An open breach this close to its deadline counts as "near".
pub const NEAR_DEADLINE: Duration = Duration::hours(12);
/// Longest free text.
pub const MAX_TEXT: usize = 10_000;

/// Where a breach stands with the supervisory authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreachStatus {
    /// Not yet notified, nor decided unnecessary.
    Open,
    /// The authority was notified.
    AuthorityNotified,
    /// Recorded as unlikely to result in a risk, with a justification.
    NotificationNotRequired,
}

impl BreachStatus {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::AuthorityNotified => "authority_notified",
            Self::NotificationNotRequired => "notification_not_required",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::AuthorityNotified, Self::NotificationNotRequired]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// What is known of a breach; facts arrive in phases.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BreachFacts {
    /// What happened.
    pub nature: String,
    /// Data categories concerned.
    pub categories: Vec<String>,
    /// Approximate number of data subjects concerned.
    pub approx_subjects: u64,
    /// Approximate number of records concerned.
    pub approx_records: u64,
    /// Likely consequences.
    pub likely_consequences: String,
    /// Measures taken or proposed.
    pub measures: String,
    /// Contact point for more information (the DPO, usually).
    pub contact_point: String,
    /// Platform systems involved.
    pub systems: Vec<String>,
}

/// A registered breach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Breach {
    /// Id (UUID).
    pub id: String,
    /// The facts as known now.
    #[serde(flatten)]
    pub facts: BreachFacts,
    /// When the platform became aware.
    pub became_aware_at: DateTime<Utc>,
    /// `became_aware_at + 72 h`.
    pub authority_deadline: DateTime<Utc>,
    /// Affected tenants (each got a notice in its inbox).
    pub tenant_ids: Vec<String>,
    /// Where it stands.
    pub status: BreachStatus,
    /// When the authority was notified.
    pub notified_at: Option<DateTime<Utc>>,
    /// The authority's reference.
    pub reference: String,
    /// Why notification was not required.
    pub not_required_justification: String,
    /// Why notification came after the deadline.
    pub delay_reasons: String,
    /// Recorded at.
    pub created_at: DateTime<Utc>,
    /// Last changed at.
    pub updated_at: DateTime<Utc>,
}

/// The deadline for notifying the authority.
pub fn authority_deadline(became_aware_at: DateTime<Utc>) -> DateTime<Utc> {
    became_aware_at + Duration::hours(AUTHORITY_HOURS)
}

impl Breach {
    /// Open and past its deadline.
    pub fn overdue(&self, now: DateTime<Utc>) -> bool {
        self.status == BreachStatus::Open && now > self.authority_deadline
    }

    /// Open and past its deadline or within [`NEAR_DEADLINE`] of it.
    pub fn near_or_past_deadline(&self, now: DateTime<Utc>) -> bool {
        self.status == BreachStatus::Open && now + NEAR_DEADLINE >= self.authority_deadline
    }
}

impl BreachFacts {
    /// The contents Art. 33(3) requires that are still missing, by field.
    pub fn missing_for_notification(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.nature.trim().is_empty() {
            m.push("nature");
        }
        if self.categories.is_empty() {
            m.push("categories");
        }
        if self.approx_subjects == 0 {
            m.push("approx_subjects");
        }
        if self.approx_records == 0 {
            m.push("approx_records");
        }
        if self.likely_consequences.trim().is_empty() {
            m.push("likely_consequences");
        }
        if self.measures.trim().is_empty() {
            m.push("measures");
        }
        if self.contact_point.trim().is_empty() {
            m.push("contact_point");
        }
        m
    }

    /// Bounds every text field.
    pub fn validate(&self, v: &mut Violations) {
        for (f, val) in [
            ("nature", &self.nature),
            ("likely_consequences", &self.likely_consequences),
            ("measures", &self.measures),
            ("contact_point", &self.contact_point),
        ] {
            v.max_len(f, val, MAX_TEXT);
        }
        v.check(self.categories.len() > 100, "categories", "at most 100");
        v.check(self.systems.len() > 100, "systems", "at most 100");
    }
}

/// How the compliance team closes the authority question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorityDecision {
    /// Notified at `at`, with the authority's reference.
    Notified {
        /// When.
        at: DateTime<Utc>,
        /// The authority's reference.
        reference: String,
        /// Reasons for a late notification.
        delay_reasons: String,
    },
    /// Unlikely to result in a risk; the justification is recorded.
    NotRequired {
        /// Why.
        justification: String,
    },
}

/// Checks a `NotifyAuthority` against the breach: refused (with the list of
/// what is missing) until the required contents are complete; a late
/// notification needs its reasons; "not required" needs a justification.
pub fn check_authority_decision(b: &Breach, d: &AuthorityDecision) -> Result<(), Error> {
    if b.status != BreachStatus::Open {
        return Err(Error::FailedPrecondition(format!(
            "breach {} is already {}",
            b.id,
            b.status.as_str()
        )));
    }
    match d {
        AuthorityDecision::NotRequired { justification } => {
            if justification.trim().is_empty() {
                return Err(Error::invalid(
                    "justification",
                    "a decision that notification is not required must be justified",
                ));
            }
        }
        AuthorityDecision::Notified {
            at,
            reference,
            delay_reasons,
        } => {
            let mut missing = b.facts.missing_for_notification();
            if reference.trim().is_empty() {
                missing.push("reference");
            }
            if *at > b.authority_deadline && delay_reasons.trim().is_empty() {
                missing.push("delay_reasons");
            }
            if !missing.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "notification incomplete; missing: {}",
                    missing.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// The notification document, in Markdown, for the compliance team to send.
pub fn render_markdown(b: &Breach, now: DateTime<Utc>) -> String {
    let opt = |s: &str| {
        if s.trim().is_empty() {
            "_not yet known_".to_owned()
        } else {
            s.to_owned()
        }
    };
    let n = |x: u64| {
        if x == 0 {
            "_not yet known_".to_owned()
        } else {
            format!("approximately {x}")
        }
    };
    let mut out = format!(
        "# Personal data breach notification\n\n\
         - Breach id: `{}`\n- Became aware: {}\n- Authority deadline (72 h): {}\n- Status: {}\n",
        b.id,
        b.became_aware_at.to_rfc3339(),
        b.authority_deadline.to_rfc3339(),
        b.status.as_str(),
    );
    if let Some(at) = b.notified_at {
        out += &format!(
            "- Notified: {} (reference {})\n",
            at.to_rfc3339(),
            opt(&b.reference)
        );
    }
    if b.overdue(now) {
        out += "- **The deadline has passed without notification.**\n";
    }
    out += &format!(
        "\n## Nature of the breach\n\n{}\n\n\
         ## Categories and approximate numbers\n\n- Data categories: {}\n- Data subjects: {}\n- Records: {}\n\n\
         ## Likely consequences\n\n{}\n\n## Measures taken or proposed\n\n{}\n\n## Contact point\n\n{}\n",
        opt(&b.facts.nature),
        if b.facts.categories.is_empty() {
            "_not yet known_".to_owned()
        } else {
            b.facts.categories.join(", ")
        },
        n(b.facts.approx_subjects),
        n(b.facts.approx_records),
        opt(&b.facts.likely_consequences),
        opt(&b.facts.measures),
        opt(&b.facts.contact_point),
    );
    if !b.delay_reasons.is_empty() {
        out += &format!("\n## Reasons for the delay\n\n{}\n", b.delay_reasons);
    }
    if !b.not_required_justification.is_empty() {
        out += &format!(
            "\n## Why notification is not required\n\n{}\n",
            b.not_required_justification
        );
    }
    let missing = b.facts.missing_for_notification();
    if !missing.is_empty() {
        out += &format!("\n## Still missing\n\n{}\n", missing.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn breach() -> Breach {
        let aware = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
        Breach {
            id: "b1".into(),
            facts: BreachFacts {
                nature: "Misconfigured bucket".into(),
                ..Default::default()
            },
            became_aware_at: aware,
            authority_deadline: authority_deadline(aware),
            tenant_ids: vec![],
            status: BreachStatus::Open,
            notified_at: None,
            reference: String::new(),
            not_required_justification: String::new(),
            delay_reasons: String::new(),
            created_at: aware,
            updated_at: aware,
        }
    }

    fn complete(b: &mut Breach) {
        b.facts.categories = vec!["recording".into()];
        b.facts.approx_subjects = 1200;
        b.facts.approx_records = 5000;
        b.facts.likely_consequences = "Exposure of call audio".into();
        b.facts.measures = "Bucket closed, keys rotated".into();
        b.facts.contact_point = "dpo@platform.example".into();
    }

    #[test]
    fn deadline_is_72_hours_after_awareness() {
        let b = breach();
        assert_eq!(b.authority_deadline - b.became_aware_at, Duration::hours(72));
        assert!(!b.overdue(b.authority_deadline));
        assert!(b.overdue(b.authority_deadline + Duration::seconds(1)));
        assert!(!b.near_or_past_deadline(b.became_aware_at));
        assert!(b.near_or_past_deadline(b.authority_deadline - Duration::hours(12)));
    }

    #[test]
    fn notification_lists_every_missing_item() {
        let b = breach();
        let d = AuthorityDecision::Notified {
            at: b.became_aware_at,
            reference: String::new(),
            delay_reasons: String::new(),
        };
        let Err(Error::FailedPrecondition(m)) = check_authority_decision(&b, &d) else {
            panic!()
        };
        assert_eq!(
            m,
            "notification incomplete; missing: categories, approx_subjects, approx_records, \
             likely_consequences, measures, contact_point, reference"
        );
    }

    #[test]
    fn late_notification_needs_reasons() {
        let mut b = breach();
        complete(&mut b);
        let late = b.authority_deadline + Duration::hours(1);
        let d = |r: &str| AuthorityDecision::Notified {
            at: late,
            reference: "DPA-1".into(),
            delay_reasons: r.into(),
        };
        assert!(matches!(
            check_authority_decision(&b, &d("")),
            Err(Error::FailedPrecondition(m)) if m.ends_with("delay_reasons")
        ));
        assert!(check_authority_decision(&b, &d("forensics took 4 days")).is_ok());
    }

    #[test]
    fn not_required_needs_justification_and_closed_breaches_stay_closed() {
        let mut b = breach();
        let d = AuthorityDecision::NotRequired {
            justification: " ".into(),
        };
        assert!(matches!(
            check_authority_decision(&b, &d),
            Err(Error::InvalidArgument(_))
        ));
        b.status = BreachStatus::AuthorityNotified;
        let ok = AuthorityDecision::NotRequired {
            justification: "encrypted".into(),
        };
        assert!(matches!(
            check_authority_decision(&b, &ok),
            Err(Error::FailedPrecondition(_))
        ));
    }

    #[test]
    fn document_has_every_required_heading() {
        let mut b = breach();
        complete(&mut b);
        let md = render_markdown(&b, b.became_aware_at);
        for h in [
            "Nature of the breach",
            "Categories and approximate numbers",
            "Likely consequences",
            "Measures taken",
            "Contact point",
        ] {
            assert!(md.contains(h), "{h}");
        }
        assert!(md.contains("approximately 1200"));
        assert!(!md.contains("Still missing"));
        assert!(render_markdown(&breach(), b.became_aware_at).contains("Still missing"));
    }
}
