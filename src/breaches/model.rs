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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
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
        self.into()
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
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
        return Err(Error::WrongState(format!(
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
                return Err(Error::Unmet {
                    reason: "NOTIFICATION_INCOMPLETE",
                    message: format!("notification incomplete; missing: {}", missing.join(", ")),
                    conditions: missing
                        .iter()
                        .map(|m| crate::error::Unmet {
                            kind: "MISSING_CONTENT",
                            subject: (*m).to_owned(),
                            description: "required before the authority is notified (GDPR Art. 33(3))".into(),
                        })
                        .collect(),
                });
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

/// Most tenants named on one breach.
pub const MAX_TENANTS: usize = 10_000;
/// Longest breach id a request may name.
const MAX_ID: usize = 64;

/// Bounds the tenant list and rejects empty categories, so a command never
/// carries an unbounded or meaningless list into its transaction.
fn check_lists(v: &mut Violations, categories: &[String], tenants: &[String]) {
    v.check(
        tenants.len() > MAX_TENANTS,
        "tenant_ids",
        format!("at most {MAX_TENANTS}"),
    );
    for (i, t) in tenants.iter().enumerate().take(MAX_TENANTS) {
        v.check(
            t.is_empty() || t.len() > 128,
            format!("tenant_ids[{i}]"),
            "1 to 128 characters",
        );
    }
    for (i, c) in categories.iter().enumerate() {
        v.check(c.is_empty(), format!("categories[{i}]"), "is empty");
    }
}

/// A checked `ReportBreach`: the first facts, when the platform became
/// aware, and the tenants named (none: derived from the categories).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportBreach {
    /// The facts known so far (nature is present).
    pub facts: BreachFacts,
    /// When the platform became aware; starts the 72-hour clock.
    pub became_aware_at: DateTime<Utc>,
    /// Tenants named by the reporter, possibly none.
    pub tenant_ids: Vec<String>,
}

impl ReportBreach {
    /// Checks a report: nature required, texts and lists bounded, the
    /// awareness time present. Every violation is reported at once.
    pub fn parse(
        facts: BreachFacts,
        tenant_ids: Vec<String>,
        became_aware_at: Option<DateTime<Utc>>,
    ) -> Result<Self, Error> {
        let mut v = Violations::new();
        v.required_text("nature", &facts.nature, MAX_TEXT);
        facts.validate(&mut v);
        check_lists(&mut v, &facts.categories, &tenant_ids);
        v.check(became_aware_at.is_none(), "became_aware_at", "is required");
        v.finish()?;
        let became_aware_at =
            became_aware_at.ok_or_else(|| Error::invalid("became_aware_at", "is required"))?;
        Ok(Self {
            facts,
            became_aware_at,
            tenant_ids,
        })
    }
}

/// A checked `UpdateBreach`: the facts that arrived (empty or zero fields
/// leave the known value) and tenants to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateBreach {
    /// The breach.
    pub id: String,
    /// The new facts; `systems` is not updatable and ignored.
    pub patch: BreachFacts,
    /// Tenants to add (those already affected are skipped).
    pub add_tenants: Vec<String>,
}

impl UpdateBreach {
    /// Checks an update: id present, texts and lists bounded.
    pub fn parse(id: String, mut patch: BreachFacts, add_tenants: Vec<String>) -> Result<Self, Error> {
        patch.systems = Vec::new();
        let mut v = Violations::new();
        v.required_text("id", &id, MAX_ID);
        patch.validate(&mut v);
        check_lists(&mut v, &patch.categories, &add_tenants);
        v.finish()?;
        Ok(Self {
            id,
            patch,
            add_tenants,
        })
    }
}

/// Applies the facts of `patch` that are given and differ to `facts`,
/// returning the names of the fields that changed (for the audit detail;
/// none: nothing to write).
pub fn apply_patch(facts: &mut BreachFacts, patch: BreachFacts) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut set_text = |name: &'static str, new: String, old: &mut String| {
        if !new.is_empty() && new != *old {
            *old = new;
            changed.push(name);
        }
    };
    set_text("nature", patch.nature, &mut facts.nature);
    set_text(
        "likely_consequences",
        patch.likely_consequences,
        &mut facts.likely_consequences,
    );
    set_text("measures", patch.measures, &mut facts.measures);
    set_text("contact_point", patch.contact_point, &mut facts.contact_point);
    if !patch.categories.is_empty() && patch.categories != facts.categories {
        facts.categories = patch.categories;
        changed.push("categories");
    }
    if patch.approx_subjects != 0 && patch.approx_subjects != facts.approx_subjects {
        facts.approx_subjects = patch.approx_subjects;
        changed.push("approx_subjects");
    }
    if patch.approx_records != 0 && patch.approx_records != facts.approx_records {
        facts.approx_records = patch.approx_records;
        changed.push("approx_records");
    }
    changed
}

/// A checked `NotifyAuthority`: how the authority question is closed, with
/// the time of a notification still to be checked against the command's
/// clock (see [`NotifyAuthority::decision`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyAuthority {
    /// The breach.
    pub id: String,
    /// True: notification not required (with a justification).
    pub not_required: bool,
    /// Why notification is not required.
    pub justification: String,
    /// The authority's reference.
    pub reference: String,
    /// Reasons for a late notification.
    pub delay_reasons: String,
    /// When the authority was notified (None: now).
    pub notified_at: Option<DateTime<Utc>>,
}

impl NotifyAuthority {
    /// Checks the request's bounds: id present, texts bounded.
    pub fn parse(
        id: String,
        not_required: bool,
        justification: String,
        reference: String,
        delay_reasons: String,
        notified_at: Option<DateTime<Utc>>,
    ) -> Result<Self, Error> {
        let mut v = Violations::new();
        v.required_text("id", &id, MAX_ID);
        v.max_len("reference", &reference, 500);
        v.max_len("justification", &justification, MAX_TEXT);
        v.max_len("delay_reasons", &delay_reasons, MAX_TEXT);
        v.finish()?;
        Ok(Self {
            id,
            not_required,
            justification,
            reference,
            delay_reasons,
            notified_at,
        })
    }

    /// The decision at `now`: a notification defaults to now and may not lie
    /// in the future.
    pub fn decision(self, now: DateTime<Utc>) -> Result<AuthorityDecision, Error> {
        if self.not_required {
            return Ok(AuthorityDecision::NotRequired {
                justification: self.justification,
            });
        }
        let at = self.notified_at.unwrap_or(now);
        if at > now {
            return Err(Error::invalid("notified_at", "lies in the future"));
        }
        Ok(AuthorityDecision::Notified {
            at,
            reference: self.reference,
            delay_reasons: self.delay_reasons,
        })
    }
}

/// Records a checked decision on the breach and names its audit action
/// (a late notification has its own, so an auditor finds it).
pub fn apply_authority_decision(b: &mut Breach, d: AuthorityDecision) -> &'static str {
    match d {
        AuthorityDecision::NotRequired { justification } => {
            b.status = BreachStatus::NotificationNotRequired;
            b.not_required_justification = justification;
            "breach.notification_not_required"
        }
        AuthorityDecision::Notified {
            at,
            reference,
            delay_reasons,
        } => {
            b.status = BreachStatus::AuthorityNotified;
            b.notified_at = Some(at);
            b.reference = reference;
            b.delay_reasons = delay_reasons;
            if at > b.authority_deadline {
                "breach.authority_notified_late"
            } else {
                "breach.authority_notified"
            }
        }
    }
}

/// A checked breach id for `GetBreach`.
pub fn parse_id(id: String) -> Result<String, Error> {
    if id.is_empty() || id.len() > MAX_ID {
        return Err(Error::invalid("id", "is required"));
    }
    Ok(id)
}

/// Who reads a breach, which decides how much of it they see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Compliance (and the writers): everything.
    Full,
    /// `sre`: deadlines and status, no free text and no tenants.
    Redacted,
    /// A tenant: everything about the breach, but of the affected tenants
    /// only itself; the others are other controllers' business.
    Tenant(String),
}

impl Audience {
    /// True when the reader may know the breach exists: a tenant only the
    /// breaches that concern it.
    pub fn may_see(&self, b: &Breach) -> bool {
        match self {
            Audience::Tenant(t) => b.tenant_ids.contains(t),
            _ => true,
        }
    }

    /// The tenant a listing is limited to.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Audience::Tenant(t) => Some(t),
            _ => None,
        }
    }
}

/// The form of the notification document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderFormat {
    /// Markdown for people (the default).
    Markdown,
    /// JSON for tools.
    Json,
}

impl RenderFormat {
    /// Parses the request's `format` (empty: Markdown).
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "" | "markdown" => Ok(Self::Markdown),
            "json" => Ok(Self::Json),
            _ => Err(Error::invalid("format", "must be \"markdown\" or \"json\"")),
        }
    }
}

/// A rendered notification document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Its media type.
    pub content_type: &'static str,
    /// Its text (Markdown or JSON).
    pub data: String,
}

/// The notification document for `b` at `now`, in `format`.
pub fn render(b: &Breach, format: RenderFormat, now: DateTime<Utc>) -> Result<Rendered, Error> {
    Ok(match format {
        RenderFormat::Json => {
            let doc = serde_json::json!({
                "breach": b,
                "missing_for_notification": b.facts.missing_for_notification(),
                "overdue": b.overdue(now),
            });
            Rendered {
                content_type: "application/json",
                data: serde_json::to_string_pretty(&doc).map_err(|e| Error::Unexpected(e.to_string()))?,
            }
        }
        RenderFormat::Markdown => Rendered {
            content_type: "text/markdown; charset=utf-8",
            data: render_markdown(b, now),
        },
    })
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
        let Err(Error::Unmet {
            message: m,
            conditions,
            ..
        }) = check_authority_decision(&b, &d)
        else {
            panic!()
        };
        assert_eq!(conditions.len(), 7);
        assert_eq!(conditions[0].subject, "categories");
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
            Err(Error::Unmet { message: m, .. }) if m.ends_with("delay_reasons")
        ));
        assert!(check_authority_decision(&b, &d("forensics took 4 days")).is_ok());
    }

    #[test]
    fn not_required_needs_justification_and_closed_breaches_stay_closed() {
        let mut b = breach();
        let d = AuthorityDecision::NotRequired {
            justification: " ".into(),
        };
        assert!(matches!(check_authority_decision(&b, &d), Err(Error::Invalid(_))));
        b.status = BreachStatus::AuthorityNotified;
        let ok = AuthorityDecision::NotRequired {
            justification: "encrypted".into(),
        };
        assert!(matches!(
            check_authority_decision(&b, &ok),
            Err(Error::WrongState(_))
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

    fn fields(e: Error) -> Vec<String> {
        match e {
            Error::Invalid(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("not INVALID_ARGUMENT: {other}"),
        }
    }

    #[test]
    fn report_reports_every_violation_at_once() {
        let f = BreachFacts {
            categories: vec![String::new()],
            ..Default::default()
        };
        let e = ReportBreach::parse(f, vec![String::new(), "t".repeat(129)], None).unwrap_err();
        assert_eq!(
            fields(e),
            [
                "nature",
                "tenant_ids[0]",
                "tenant_ids[1]",
                "categories[0]",
                "became_aware_at"
            ]
        );
        let too_many = vec!["t".to_owned(); MAX_TENANTS + 1];
        let f = breach().facts;
        let e = ReportBreach::parse(f.clone(), too_many, Some(breach().became_aware_at)).unwrap_err();
        assert_eq!(fields(e), ["tenant_ids"]);
        let ok = ReportBreach::parse(f, vec!["t1".into()], Some(breach().became_aware_at)).unwrap();
        assert_eq!(ok.became_aware_at, breach().became_aware_at);
        assert_eq!(ok.tenant_ids, ["t1"]);
    }

    #[test]
    fn update_needs_an_id_and_drops_systems() {
        let patch = BreachFacts {
            systems: vec!["crm".into()],
            ..Default::default()
        };
        assert_eq!(
            fields(UpdateBreach::parse(String::new(), patch.clone(), vec![]).unwrap_err()),
            ["id"]
        );
        assert_eq!(
            fields(UpdateBreach::parse("x".repeat(65), patch.clone(), vec![]).unwrap_err()),
            ["id"]
        );
        let ok = UpdateBreach::parse("b1".into(), patch, vec!["t2".into()]).unwrap();
        assert!(ok.patch.systems.is_empty());
        assert_eq!(ok.add_tenants, ["t2"]);
    }

    #[test]
    fn patch_changes_only_given_differing_facts() {
        let mut f = breach().facts;
        let same = BreachFacts {
            nature: f.nature.clone(),
            ..Default::default()
        };
        assert!(apply_patch(&mut f, same).is_empty());
        let patch = BreachFacts {
            measures: "Keys rotated".into(),
            categories: vec!["recording".into()],
            approx_records: 7,
            ..Default::default()
        };
        assert_eq!(
            apply_patch(&mut f, patch),
            ["measures", "categories", "approx_records"]
        );
        assert_eq!(f.nature, "Misconfigured bucket");
        assert_eq!(f.measures, "Keys rotated");
        assert_eq!(f.approx_records, 7);
        assert_eq!(f.approx_subjects, 0);
    }

    #[test]
    fn notify_defaults_to_now_and_refuses_the_future() {
        let now = breach().became_aware_at;
        let parse = |not_required, at| {
            NotifyAuthority::parse(
                "b1".into(),
                not_required,
                "why".into(),
                "REF".into(),
                String::new(),
                at,
            )
        };
        assert_eq!(
            fields(
                NotifyAuthority::parse(
                    String::new(),
                    false,
                    String::new(),
                    "r".repeat(501),
                    String::new(),
                    None
                )
                .unwrap_err()
            ),
            ["id", "reference"]
        );
        assert!(matches!(
            parse(false, None).unwrap().decision(now).unwrap(),
            AuthorityDecision::Notified { at, .. } if at == now
        ));
        let later = Some(now + Duration::seconds(1));
        assert_eq!(
            fields(parse(false, later).unwrap().decision(now).unwrap_err()),
            ["notified_at"]
        );
        assert_eq!(
            parse(true, later).unwrap().decision(now).unwrap(),
            AuthorityDecision::NotRequired {
                justification: "why".into()
            }
        );
    }

    #[test]
    fn late_notification_has_its_own_action() {
        let mut b = breach();
        let at = b.authority_deadline + Duration::seconds(1);
        let d = AuthorityDecision::Notified {
            at,
            reference: "REF".into(),
            delay_reasons: "holiday".into(),
        };
        assert_eq!(
            apply_authority_decision(&mut b, d),
            "breach.authority_notified_late"
        );
        assert_eq!(
            (b.status, b.notified_at),
            (BreachStatus::AuthorityNotified, Some(at))
        );
        let mut b = breach();
        let d = AuthorityDecision::NotRequired {
            justification: "encrypted".into(),
        };
        assert_eq!(
            apply_authority_decision(&mut b, d),
            "breach.notification_not_required"
        );
        assert_eq!(b.not_required_justification, "encrypted");
    }

    #[test]
    fn tenants_see_only_their_breaches() {
        let mut b = breach();
        b.tenant_ids = vec!["t1".into()];
        assert!(Audience::Tenant("t1".into()).may_see(&b));
        assert!(!Audience::Tenant("t2".into()).may_see(&b));
        assert!(!Audience::Tenant(String::new()).may_see(&b));
        assert!(Audience::Redacted.may_see(&b) && Audience::Full.may_see(&b));
        assert_eq!(Audience::Tenant("t1".into()).tenant(), Some("t1"));
        assert_eq!(Audience::Full.tenant(), None);
    }

    #[test]
    fn render_formats_and_ids_parse() {
        assert_eq!(RenderFormat::parse("").unwrap(), RenderFormat::Markdown);
        assert_eq!(RenderFormat::parse("markdown").unwrap(), RenderFormat::Markdown);
        assert_eq!(RenderFormat::parse("json").unwrap(), RenderFormat::Json);
        assert_eq!(fields(RenderFormat::parse("pdf").unwrap_err()), ["format"]);
        assert_eq!(fields(parse_id(String::new()).unwrap_err()), ["id"]);
        assert_eq!(parse_id("b1".into()).unwrap(), "b1");
        let b = breach();
        let doc = render(&b, RenderFormat::Json, b.became_aware_at).unwrap();
        assert_eq!(doc.content_type, "application/json");
        let v: serde_json::Value = serde_json::from_str(&doc.data).unwrap();
        assert_eq!(v["breach"]["id"], "b1");
        assert_eq!(v["overdue"], false);
        let md = render(&b, RenderFormat::Markdown, b.became_aware_at).unwrap();
        assert_eq!(md.content_type, "text/markdown; charset=utf-8");
    }

    #[test]
    fn breach_statuses_keep_their_stored_forms() {
        use strum::VariantArray;
        let all: Vec<&str> = BreachStatus::VARIANTS.iter().map(|b| b.as_str()).collect();
        assert_eq!(all, ["open", "authority_notified", "notification_not_required"]);
        for b in BreachStatus::VARIANTS {
            assert_eq!(BreachStatus::parse(b.as_str()), Some(*b));
            let wire = serde_json::to_value(b).unwrap();
            assert_eq!(wire, b.as_str(), "serde and the stored form agree");
        }
    }
}
