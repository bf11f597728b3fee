//! The rules of requests from public authorities (EU SCC 2021/914, Clause
//! 15): what a recorded request must hold, when its controllers may be told
//! (never while notice is prohibited), what a response may disclose (no
//! more than was requested), who may see a request, and the Clause 15.1(c)
//! transparency figures.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::instructions::model::valid_region;
use crate::subprocessors::model::ExportFormat;
use crate::validate::Violations;

/// Longest free text (legal basis, note, challenge outcome).
pub const MAX_TEXT: usize = 10_000;
/// Longest authority name or reference.
pub const MAX_NAME: usize = 500;
/// Most tenants one request may name.
pub const MAX_TENANTS: usize = 10_000;
/// Most categories one request may name.
pub const MAX_CATEGORIES: usize = 100;
/// Most subject references one request may carry.
pub const MAX_SUBJECT_REFS: usize = 1_000;
/// Longest tenant id or subject reference.
const MAX_REF: usize = 256;
/// Longest request id a call may name.
const MAX_ID: usize = 64;

/// Where a request stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Recorded; the response to the authority is not yet recorded.
    Open,
    /// The response is recorded (once: a second one is refused).
    Responded,
}

impl RequestStatus {
    /// Stored and exported form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// How the platform answered the authority.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Everything requested was disclosed.
    Disclosed,
    /// Part of what was requested was disclosed (the minimum permissible).
    PartiallyDisclosed,
    /// The request was challenged and nothing disclosed while it stands.
    Challenged,
    /// The request was refused.
    Refused,
}

impl Outcome {
    /// Stored and exported form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// The recorded response to the authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorityResponse {
    /// How the platform answered.
    pub outcome: Outcome,
    /// What was disclosed, a subset of the request's categories.
    pub disclosed_categories: Vec<String>,
    /// Whether the request was challenged (Clause 15.2).
    pub challenged: bool,
    /// How the challenge ended or where it stands.
    pub challenge_outcome: String,
    /// Anything else worth keeping.
    pub note: String,
    /// When the response was recorded.
    pub responded_at: DateTime<Utc>,
}

/// A request from a public authority, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorityRequest {
    /// Id (UUID).
    pub id: String,
    /// The requesting authority.
    pub authority: String,
    /// ISO 3166-1 alpha-2 country of the authority.
    pub country: String,
    /// The legal basis the authority invokes.
    pub legal_basis: String,
    /// When the request reached the platform.
    pub received_at: DateTime<Utc>,
    /// Tenants whose data is requested, sorted.
    pub tenant_ids: Vec<String>,
    /// Data categories requested.
    pub categories: Vec<String>,
    /// References to the data subjects named, if any.
    pub subject_refs: Vec<String>,
    /// The authority's reference.
    pub reference: String,
    /// Until when the law prohibits telling the controllers.
    pub notice_prohibited_until: Option<DateTime<Utc>>,
    /// When the controllers were notified; `None` while notice waits.
    pub notified_at: Option<DateTime<Utc>>,
    /// The response, once recorded.
    pub response: Option<AuthorityResponse>,
    /// Recorded at.
    pub created_at: DateTime<Utc>,
    /// Last changed at.
    pub updated_at: DateTime<Utc>,
}

impl AuthorityRequest {
    /// Where it stands.
    pub fn status(&self) -> RequestStatus {
        if self.response.is_some() {
            RequestStatus::Responded
        } else {
            RequestStatus::Open
        }
    }

    /// True while the controllers may not be told: the notice waits, and
    /// the tenants may not even learn that the request exists.
    pub fn gagged(&self) -> bool {
        self.notified_at.is_none()
    }

    /// The free text, as the one document sealed at rest.
    pub fn texts(&self) -> Texts {
        let (challenge_outcome, note) = self
            .response
            .as_ref()
            .map(|r| (r.challenge_outcome.clone(), r.note.clone()))
            .unwrap_or_default();
        Texts {
            legal_basis: self.legal_basis.clone(),
            reference: self.reference.clone(),
            subject_refs: self.subject_refs.clone(),
            challenge_outcome,
            note,
        }
    }
}

/// Every free-text field of a request, sealed at rest as one JSON
/// document: any of them may name people (a suspect, an officer).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Texts {
    /// See [`AuthorityRequest::legal_basis`].
    pub legal_basis: String,
    /// See [`AuthorityRequest::reference`].
    pub reference: String,
    /// See [`AuthorityRequest::subject_refs`].
    pub subject_refs: Vec<String>,
    /// See [`AuthorityResponse::challenge_outcome`].
    pub challenge_outcome: String,
    /// See [`AuthorityResponse::note`].
    pub note: String,
}

/// Checks a list of short identifiers: each 1 to [`MAX_REF`] characters,
/// at most `max` of them.
fn check_refs(v: &mut Violations, field: &str, list: &[String], max: usize) {
    v.check(list.len() > max, field, format!("at most {max}"));
    for (i, t) in list.iter().enumerate().take(max) {
        v.check(
            t.trim().is_empty() || t.len() > MAX_REF,
            format!("{field}[{i}]"),
            format!("1 to {MAX_REF} characters"),
        );
    }
}

/// `list` without repeats, first occurrences in their order.
fn distinct(list: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for x in list {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// A checked `RecordAuthorityRequest`. Its times are judged against the
/// command's clock by [`RecordRequest::into_request`]; the tenants and
/// categories against the database by the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRequest {
    /// See [`AuthorityRequest::authority`].
    pub authority: String,
    /// See [`AuthorityRequest::country`].
    pub country: String,
    /// See [`AuthorityRequest::legal_basis`].
    pub legal_basis: String,
    /// See [`AuthorityRequest::received_at`].
    pub received_at: DateTime<Utc>,
    /// As given, so a violation found later names the position the
    /// caller sent (repeats are dropped when the request is recorded).
    pub tenant_ids: Vec<String>,
    /// As given (see `tenant_ids`).
    pub categories: Vec<String>,
    /// As given (see `tenant_ids`).
    pub subject_refs: Vec<String>,
    /// See [`AuthorityRequest::reference`].
    pub reference: String,
    /// See [`AuthorityRequest::notice_prohibited_until`].
    pub notice_prohibited_until: Option<DateTime<Utc>>,
}

impl RecordRequest {
    /// Checks everything that needs neither the clock nor the database,
    /// reporting every violation at once.
    #[allow(clippy::too_many_arguments)]
    pub fn parse(
        authority: String,
        country: String,
        legal_basis: String,
        received_at: Option<DateTime<Utc>>,
        tenant_ids: Vec<String>,
        categories: Vec<String>,
        subject_refs: Vec<String>,
        reference: String,
        notice_prohibited_until: Option<DateTime<Utc>>,
    ) -> Result<Self, Error> {
        let mut v = Violations::new();
        v.required_text("authority", &authority, MAX_NAME);
        v.check(
            !valid_region(&country),
            "country",
            "must be an ISO 3166-1 alpha-2 code",
        );
        v.required_text("legal_basis", &legal_basis, MAX_TEXT);
        v.check(received_at.is_none(), "received_at", "is required");
        v.check(tenant_ids.is_empty(), "tenant_ids", "name at least one tenant");
        check_refs(&mut v, "tenant_ids", &tenant_ids, MAX_TENANTS);
        v.check(categories.is_empty(), "categories", "name at least one category");
        v.check(
            categories.len() > MAX_CATEGORIES,
            "categories",
            format!("at most {MAX_CATEGORIES}"),
        );
        for (i, c) in categories.iter().enumerate().take(MAX_CATEGORIES) {
            v.check(c.is_empty(), format!("categories[{i}]"), "is empty");
        }
        check_refs(&mut v, "subject_refs", &subject_refs, MAX_SUBJECT_REFS);
        v.max_len("reference", &reference, MAX_NAME);
        v.finish()?;
        let received_at = received_at.ok_or_else(|| Error::invalid("received_at", "is required"))?;
        Ok(Self {
            authority: authority.trim().to_owned(),
            country,
            legal_basis,
            received_at,
            tenant_ids,
            categories,
            subject_refs,
            reference,
            notice_prohibited_until,
        })
    }

    /// The request as recorded at `now` under `id`: refused when it was
    /// received in the future or its notice prohibition has already
    /// ended; notified at once unless notice is prohibited.
    pub fn into_request(self, id: String, now: DateTime<Utc>) -> Result<AuthorityRequest, Error> {
        let mut v = Violations::new();
        v.check(self.received_at > now, "received_at", "lies in the future");
        v.check(
            self.notice_prohibited_until.is_some_and(|u| u <= now),
            "notice_prohibited_until",
            "must lie in the future (leave it unset when notice is not prohibited)",
        );
        v.finish()?;
        let mut tenant_ids = distinct(self.tenant_ids);
        tenant_ids.sort();
        let mut subject_refs = distinct(self.subject_refs);
        subject_refs.sort();
        Ok(AuthorityRequest {
            id,
            authority: self.authority,
            country: self.country,
            legal_basis: self.legal_basis,
            received_at: self.received_at,
            tenant_ids,
            categories: distinct(self.categories),
            subject_refs,
            reference: self.reference,
            notified_at: self.notice_prohibited_until.is_none().then_some(now),
            notice_prohibited_until: self.notice_prohibited_until,
            response: None,
            created_at: now,
            updated_at: now,
        })
    }
}

/// A checked `RecordAuthorityResponse`, still to be judged against its
/// request by [`RecordResponse::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordResponse {
    /// The request answered.
    pub id: String,
    /// How the platform answered.
    pub outcome: Outcome,
    /// What was disclosed.
    pub disclosed_categories: Vec<String>,
    /// Whether the request was challenged.
    pub challenged: bool,
    /// How the challenge ended.
    pub challenge_outcome: String,
    /// Anything else worth keeping.
    pub note: String,
}

impl RecordResponse {
    /// Checks what needs no request: id and outcome present, texts bounded,
    /// an outcome consistent with what it says was disclosed and challenged.
    pub fn parse(
        id: String,
        outcome: Option<Outcome>,
        disclosed_categories: Vec<String>,
        challenged: bool,
        challenge_outcome: String,
        note: String,
    ) -> Result<Self, Error> {
        let mut v = Violations::new();
        v.required_text("id", &id, MAX_ID);
        v.check(
            outcome.is_none(),
            "outcome",
            "is required (disclosed, partially disclosed, challenged or refused)",
        );
        v.check(
            disclosed_categories.len() > MAX_CATEGORIES,
            "disclosed_categories",
            format!("at most {MAX_CATEGORIES}"),
        );
        v.max_len("challenge_outcome", &challenge_outcome, MAX_TEXT);
        v.max_len("note", &note, MAX_TEXT);
        v.check(
            !challenged && !challenge_outcome.is_empty(),
            "challenge_outcome",
            "only a challenged request has a challenge outcome",
        );
        match outcome {
            Some(Outcome::Disclosed | Outcome::PartiallyDisclosed) => v.check(
                disclosed_categories.is_empty(),
                "disclosed_categories",
                "a disclosure names what was disclosed",
            ),
            Some(Outcome::Challenged | Outcome::Refused) => v.check(
                !disclosed_categories.is_empty(),
                "disclosed_categories",
                "nothing is disclosed on a challenged or refused request",
            ),
            None => {}
        }
        v.check(
            outcome == Some(Outcome::Challenged) && !challenged,
            "challenged",
            "a challenged outcome means the request was challenged",
        );
        v.finish()?;
        let outcome = outcome.ok_or_else(|| Error::invalid("outcome", "is required"))?;
        Ok(Self {
            id,
            outcome,
            disclosed_categories,
            challenged,
            challenge_outcome,
            note,
        })
    }

    /// Records the response on `r` at `now`: refused when one is already
    /// recorded (FAILED_PRECONDITION), when more categories are disclosed
    /// than were requested, or when a partial disclosure names every
    /// requested category (INVALID_ARGUMENT naming the field).
    pub fn apply(self, r: &mut AuthorityRequest, now: DateTime<Utc>) -> Result<(), Error> {
        if r.response.is_some() {
            return Err(Error::WrongState(format!(
                "authority request {} already has its response",
                r.id
            )));
        }
        let mut v = Violations::new();
        for (i, c) in self.disclosed_categories.iter().enumerate() {
            v.check(
                !r.categories.contains(c),
                format!("disclosed_categories[{i}]"),
                format!("{c:?} was not requested: disclose no more than the request asks for"),
            );
        }
        let all = r.categories.iter().all(|c| self.disclosed_categories.contains(c));
        v.check(
            self.outcome == Outcome::PartiallyDisclosed && all,
            "disclosed_categories",
            "a partial disclosure discloses less than was requested",
        );
        v.check(
            self.outcome == Outcome::Disclosed && !all,
            "outcome",
            "part of the request was not disclosed: the outcome is a partial disclosure",
        );
        v.finish()?;
        r.response = Some(AuthorityResponse {
            outcome: self.outcome,
            disclosed_categories: distinct(self.disclosed_categories),
            challenged: self.challenged,
            challenge_outcome: self.challenge_outcome,
            note: self.note,
            responded_at: now,
        });
        r.updated_at = now;
        Ok(())
    }
}

/// A checked request id.
pub fn parse_id(id: String) -> Result<String, Error> {
    if id.is_empty() || id.len() > MAX_ID {
        return Err(Error::invalid("id", "is required"));
    }
    Ok(id)
}

/// Checks that `r`'s notice may be released now by `LiftNoticeProhibition`:
/// only a request whose notice still waits (FAILED_PRECONDITION otherwise,
/// so a second lift cannot send the notices twice).
pub fn check_lift(r: &AuthorityRequest) -> Result<(), Error> {
    if !r.gagged() {
        return Err(Error::WrongState(format!(
            "the notice of authority request {} was already delivered",
            r.id
        )));
    }
    Ok(())
}

/// What a notice tells a controller (Clause 15.1(a)): which request, which
/// authority, which data, where the response stands. The free text (legal
/// basis, reference) stays sealed in the request: the tenant reads it with
/// `GetAuthorityRequest`, so no envelope carries it in the clear.
pub fn notice_payload(r: &AuthorityRequest, event: &str) -> serde_json::Value {
    serde_json::json!({
        "event": event,
        "authority_request_id": r.id,
        "authority": r.authority,
        "country": r.country,
        "received_at": r.received_at.to_rfc3339(),
        "categories": r.categories,
        "status": r.status().as_str(),
        "outcome": r.response.as_ref().map(|x| x.outcome.as_str()),
    })
}

/// Who reads requests, which decides which they may know exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// The compliance team: every request, gagged or not.
    Compliance,
    /// A tenant: the requests naming it whose notice was delivered.
    Tenant(String),
}

impl Audience {
    /// True when the reader may know the request exists: a tenant never
    /// learns of another tenant's request, nor of one still gagged.
    pub fn may_see(&self, r: &AuthorityRequest) -> bool {
        match self {
            Audience::Compliance => true,
            Audience::Tenant(t) => !r.gagged() && r.tenant_ids.contains(t),
        }
    }

    /// `r` as this reader sees it: a tenant sees itself among the tenants
    /// concerned, not the other controllers, nor the subjects' references
    /// (those may belong to other controllers).
    pub fn view(&self, mut r: AuthorityRequest) -> AuthorityRequest {
        if let Audience::Tenant(t) = self {
            r.tenant_ids.retain(|x| x == t);
            r.subject_refs.clear();
        }
        r
    }
}

/// The period of a transparency report: received at or after `from` and
/// before `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Inclusive start; `None`: since the first request.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive end.
    pub to: DateTime<Utc>,
}

impl Period {
    /// `to` defaults to `now`; a period ending before it starts is
    /// INVALID_ARGUMENT on `to`.
    pub fn parse(
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Self, Error> {
        let to = to.unwrap_or(now);
        if from.is_some_and(|f| f > to) {
            return Err(Error::invalid("to", "lies before from"));
        }
        Ok(Self { from, to })
    }

    /// True when `r` was received in the period.
    pub fn contains(&self, r: &AuthorityRequest) -> bool {
        self.from.is_none_or(|f| r.received_at >= f) && r.received_at < self.to
    }
}

/// One figure of the report: requests of one authority, country, category,
/// outcome (`None`: not answered yet) and challenge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReportRow {
    /// The authority.
    pub authority: String,
    /// Its country.
    pub country: String,
    /// One requested category.
    pub category: String,
    /// The outcome, or `None` while unanswered.
    pub outcome: Option<Outcome>,
    /// Whether the request was challenged.
    pub challenged: bool,
    /// How many requests.
    pub count: u64,
}

/// The Clause 15.1(c) figures of a period.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Requests in the period.
    pub total: u64,
    /// Counts, ordered by authority, country, category, outcome, challenge.
    pub rows: Vec<ReportRow>,
}

/// Counts the requests of `requests` that `audience` may see and that were
/// received in `period`; a request counts once in each of its categories.
pub fn report<'a>(
    requests: impl IntoIterator<Item = &'a AuthorityRequest>,
    audience: &Audience,
    period: &Period,
) -> Report {
    type Key = (String, String, String, Option<Outcome>, bool);
    let mut counts: BTreeMap<Key, u64> = BTreeMap::new();
    let mut total = 0;
    for r in requests {
        if !audience.may_see(r) || !period.contains(r) {
            continue;
        }
        total += 1;
        let outcome = r.response.as_ref().map(|x| x.outcome);
        let challenged = r.response.as_ref().is_some_and(|x| x.challenged);
        for c in &r.categories {
            let key = (
                r.authority.clone(),
                r.country.clone(),
                c.clone(),
                outcome,
                challenged,
            );
            *counts.entry(key).or_default() += 1;
        }
    }
    Report {
        total,
        rows: counts
            .into_iter()
            .map(
                |((authority, country, category, outcome, challenged), count)| ReportRow {
                    authority,
                    country,
                    category,
                    outcome,
                    challenged,
                    count,
                },
            )
            .collect(),
    }
}

/// A rendered export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Its media type.
    pub content_type: &'static str,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// One CSV line of the export: every field of a request, lists joined
/// with `;`, times RFC 3339, empty where there is nothing.
#[derive(Debug, Serialize)]
struct ExportRow<'a> {
    id: &'a str,
    authority: &'a str,
    country: &'a str,
    legal_basis: &'a str,
    received_at: String,
    tenant_ids: String,
    categories: String,
    subject_refs: String,
    reference: &'a str,
    status: &'static str,
    notice_prohibited_until: String,
    notified_at: String,
    outcome: &'static str,
    disclosed_categories: String,
    challenged: bool,
    challenge_outcome: &'a str,
    note: &'a str,
    responded_at: String,
}

/// The export's CSV header, written even when there is no request.
const CSV_HEADER: [&str; 18] = [
    "id",
    "authority",
    "country",
    "legal_basis",
    "received_at",
    "tenant_ids",
    "categories",
    "subject_refs",
    "reference",
    "status",
    "notice_prohibited_until",
    "notified_at",
    "outcome",
    "disclosed_categories",
    "challenged",
    "challenge_outcome",
    "note",
    "responded_at",
];

fn export_row(r: &AuthorityRequest) -> ExportRow<'_> {
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let resp = r.response.as_ref();
    ExportRow {
        id: &r.id,
        authority: &r.authority,
        country: &r.country,
        legal_basis: &r.legal_basis,
        received_at: r.received_at.to_rfc3339(),
        tenant_ids: r.tenant_ids.join(";"),
        categories: r.categories.join(";"),
        subject_refs: r.subject_refs.join(";"),
        reference: &r.reference,
        status: r.status().as_str(),
        notice_prohibited_until: time(r.notice_prohibited_until),
        notified_at: time(r.notified_at),
        outcome: resp.map(|x| x.outcome.as_str()).unwrap_or(""),
        disclosed_categories: resp.map(|x| x.disclosed_categories.join(";")).unwrap_or_default(),
        challenged: resp.is_some_and(|x| x.challenged),
        challenge_outcome: resp.map(|x| x.challenge_outcome.as_str()).unwrap_or(""),
        note: resp.map(|x| x.note.as_str()).unwrap_or(""),
        responded_at: time(resp.map(|x| x.responded_at)),
    }
}

/// The whole record for a supervisory authority (Clause 15.1(d)): every
/// request with everything recorded, in `format`, as of `now`.
pub fn render_export(
    requests: &[AuthorityRequest],
    format: ExportFormat,
    now: DateTime<Utc>,
) -> Result<Rendered, Error> {
    let unexpected = |e: &dyn std::fmt::Display| Error::Unexpected(format!("export: {e}"));
    match format {
        ExportFormat::Json => {
            let doc = serde_json::json!({
                "generated_at": now.to_rfc3339(),
                "authority_requests": requests,
            });
            Ok(Rendered {
                content_type: "application/json",
                data: serde_json::to_vec_pretty(&doc).map_err(|e| unexpected(&e))?,
            })
        }
        ExportFormat::Csv => {
            let mut w = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .has_headers(false)
                .from_writer(Vec::new());
            w.write_record(CSV_HEADER).map_err(|e| unexpected(&e))?;
            for r in requests {
                w.serialize(export_row(r)).map_err(|e| unexpected(&e))?;
            }
            Ok(Rendered {
                content_type: "text/csv; charset=utf-8",
                data: w.into_inner().map_err(|e| unexpected(&e))?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
    }

    fn fields(e: Error) -> Vec<String> {
        match e {
            Error::Invalid(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("not INVALID_ARGUMENT: {other}"),
        }
    }

    fn record(until: Option<DateTime<Utc>>) -> Result<RecordRequest, Error> {
        RecordRequest::parse(
            "Bundeskriminalamt".into(),
            "DE".into(),
            "StPO § 100a".into(),
            Some(now() - Duration::hours(1)),
            vec!["globex".into(), "acme".into(), "acme".into()],
            vec!["recording".into(), "contact".into(), "recording".into()],
            vec!["subj-2".into(), "subj-1".into()],
            "BKA-2026-4711".into(),
            until,
        )
    }

    fn request(until: Option<DateTime<Utc>>) -> AuthorityRequest {
        record(until).unwrap().into_request("r1".into(), now()).unwrap()
    }

    fn respond(
        outcome: Outcome,
        disclosed: &[&str],
        challenged: bool,
        challenge_outcome: &str,
    ) -> Result<RecordResponse, Error> {
        RecordResponse::parse(
            "r1".into(),
            Some(outcome),
            disclosed.iter().map(|s| s.to_string()).collect(),
            challenged,
            challenge_outcome.into(),
            String::new(),
        )
    }

    #[test]
    fn a_request_is_normalised_and_notified_at_once_when_not_prohibited() {
        let r = request(None);
        assert_eq!(r.tenant_ids, ["acme", "globex"]);
        assert_eq!(r.categories, ["recording", "contact"]);
        assert_eq!(r.subject_refs, ["subj-1", "subj-2"]);
        assert_eq!(r.notified_at, Some(now()));
        assert!(!r.gagged());
        assert_eq!(r.status(), RequestStatus::Open);
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let e = RecordRequest::parse(
            " ".into(),
            "Germany".into(),
            String::new(),
            None,
            vec![],
            vec![String::new()],
            vec!["x".repeat(257)],
            "r".repeat(501),
            None,
        )
        .unwrap_err();
        assert_eq!(
            fields(e),
            [
                "authority",
                "country",
                "legal_basis",
                "received_at",
                "tenant_ids",
                "categories[0]",
                "subject_refs[0]",
                "reference"
            ]
        );
        let e = RecordRequest::parse(
            "BKA".into(),
            "DE".into(),
            "basis".into(),
            Some(now()),
            vec![String::new()],
            vec![],
            vec![],
            String::new(),
            None,
        )
        .unwrap_err();
        assert_eq!(fields(e), ["tenant_ids[0]", "categories"]);
    }

    #[test]
    fn times_are_judged_against_the_clock() {
        let mut future = record(None).unwrap();
        future.received_at = now() + Duration::seconds(1);
        assert_eq!(
            fields(future.into_request("r1".into(), now()).unwrap_err()),
            ["received_at"]
        );
        for past in [now(), now() - Duration::days(1)] {
            let e = record(Some(past))
                .unwrap()
                .into_request("r1".into(), now())
                .unwrap_err();
            assert_eq!(fields(e), ["notice_prohibited_until"]);
        }
        let gagged = request(Some(now() + Duration::days(30)));
        assert!(gagged.gagged());
        assert_eq!(gagged.notified_at, None);
        assert!(check_lift(&gagged).is_ok());
        assert!(matches!(check_lift(&request(None)), Err(Error::WrongState(_))));
    }

    #[test]
    fn a_response_discloses_no_more_than_was_requested() {
        let mut r = request(None);
        let more = respond(
            Outcome::PartiallyDisclosed,
            &["recording", "transcript"],
            false,
            "",
        )
        .unwrap();
        assert_eq!(
            fields(more.apply(&mut r, now()).unwrap_err()),
            ["disclosed_categories[1]"]
        );
        assert!(r.response.is_none(), "a refused response changes nothing");
        let all = respond(Outcome::PartiallyDisclosed, &["recording", "contact"], false, "").unwrap();
        assert_eq!(
            fields(all.apply(&mut r, now()).unwrap_err()),
            ["disclosed_categories"]
        );
        let part = respond(Outcome::Disclosed, &["recording"], false, "").unwrap();
        assert_eq!(fields(part.apply(&mut r, now()).unwrap_err()), ["outcome"]);
        let ok = respond(Outcome::PartiallyDisclosed, &["recording"], false, "").unwrap();
        ok.clone().apply(&mut r, now()).unwrap();
        assert_eq!(r.status(), RequestStatus::Responded);
        assert!(matches!(ok.apply(&mut r, now()), Err(Error::WrongState(_))));
    }

    #[test]
    fn the_outcome_agrees_with_what_was_disclosed_and_challenged() {
        assert_eq!(
            fields(respond(Outcome::Disclosed, &[], false, "").unwrap_err()),
            ["disclosed_categories"]
        );
        assert_eq!(
            fields(respond(Outcome::Refused, &["recording"], false, "").unwrap_err()),
            ["disclosed_categories"]
        );
        assert_eq!(
            fields(respond(Outcome::Challenged, &[], false, "").unwrap_err()),
            ["challenged"]
        );
        assert_eq!(
            fields(respond(Outcome::Refused, &[], false, "court agreed").unwrap_err()),
            ["challenge_outcome"]
        );
        let e = RecordResponse::parse(String::new(), None, vec![], false, String::new(), String::new())
            .unwrap_err();
        assert_eq!(fields(e), ["id", "outcome"]);
        assert!(respond(Outcome::Challenged, &[], true, "pending before the court").is_ok());
        assert!(respond(Outcome::Disclosed, &["recording"], true, "challenge dismissed").is_ok());
    }

    #[test]
    fn tenants_see_their_own_delivered_requests_only() {
        let r = request(None);
        let acme = Audience::Tenant("acme".into());
        assert!(acme.may_see(&r));
        assert!(!Audience::Tenant("initech".into()).may_see(&r));
        let v = acme.view(r.clone());
        assert_eq!(v.tenant_ids, ["acme"]);
        assert!(v.subject_refs.is_empty());
        assert_eq!(Audience::Compliance.view(r.clone()), r);
        let gagged = request(Some(now() + Duration::days(1)));
        assert!(!acme.may_see(&gagged));
        assert!(Audience::Compliance.may_see(&gagged));
    }

    #[test]
    fn the_report_counts_by_authority_country_category_outcome_and_challenge() {
        let mut a = request(None);
        respond(Outcome::Challenged, &[], true, "quashed")
            .unwrap()
            .apply(&mut a, now())
            .unwrap();
        let b = request(None);
        let mut c = request(None);
        c.authority = "FBI".into();
        c.country = "US".into();
        c.categories = vec!["contact".into()];
        c.tenant_ids = vec!["globex".into()];
        let gagged = request(Some(now() + Duration::days(1)));
        let all = [a, b, c, gagged];
        let period = Period::parse(None, None, now() + Duration::seconds(1)).unwrap();
        let platform = report(&all, &Audience::Compliance, &period);
        assert_eq!(platform.total, 4);
        let row = |auth: &str, cat: &str, o: Option<Outcome>, ch: bool, n: u64| ReportRow {
            authority: auth.into(),
            country: if auth == "FBI" { "US" } else { "DE" }.into(),
            category: cat.into(),
            outcome: o,
            challenged: ch,
            count: n,
        };
        assert_eq!(
            platform.rows,
            [
                row("Bundeskriminalamt", "contact", None, false, 2),
                row("Bundeskriminalamt", "contact", Some(Outcome::Challenged), true, 1),
                row("Bundeskriminalamt", "recording", None, false, 2),
                row(
                    "Bundeskriminalamt",
                    "recording",
                    Some(Outcome::Challenged),
                    true,
                    1
                ),
                row("FBI", "contact", None, false, 1),
            ]
        );
        let acme = report(&all, &Audience::Tenant("acme".into()), &period);
        assert_eq!(
            acme.total, 2,
            "not the FBI's, which names globex only, nor the gagged one"
        );
        let early = Period::parse(None, Some(now() - Duration::hours(2)), now()).unwrap();
        assert_eq!(report(&all, &Audience::Compliance, &early), Report::default());
        let e = Period::parse(Some(now()), Some(now() - Duration::seconds(1)), now()).unwrap_err();
        assert_eq!(fields(e), ["to"]);
    }

    #[test]
    fn exports_parse_back_with_every_request() {
        let mut a = request(None);
        a.legal_basis = "Art. 1, \"quoted\"; and, commas\nnew line".into();
        respond(Outcome::PartiallyDisclosed, &["recording"], false, "")
            .unwrap()
            .apply(&mut a, now())
            .unwrap();
        let b = request(Some(now() + Duration::days(3)));
        let json = render_export(&[a.clone(), b.clone()], ExportFormat::Json, now()).unwrap();
        assert_eq!(json.content_type, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&json.data).unwrap();
        assert_eq!(v["authority_requests"][0]["legal_basis"], a.legal_basis);
        assert_eq!(
            v["authority_requests"][0]["response"]["outcome"],
            "partially_disclosed"
        );
        assert_eq!(v["authority_requests"][1]["notified_at"], serde_json::Value::Null);
        let csv = render_export(&[a.clone(), b], ExportFormat::Csv, now()).unwrap();
        let mut rd = csv::Reader::from_reader(csv.data.as_slice());
        assert_eq!(rd.headers().unwrap().iter().collect::<Vec<_>>(), CSV_HEADER);
        let recs: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(&recs[0][3], a.legal_basis);
        assert_eq!(&recs[0][7], "subj-1;subj-2");
        assert_eq!(&recs[0][12], "partially_disclosed");
        assert_eq!(&recs[1][11], "", "not notified yet");
        let empty = render_export(&[], ExportFormat::Csv, now()).unwrap();
        assert_eq!(
            String::from_utf8(empty.data).unwrap().lines().count(),
            1,
            "a header even with nothing to export"
        );
    }

    #[test]
    fn stored_forms_are_pinned() {
        use strum::VariantArray;
        let all: Vec<&str> = Outcome::VARIANTS.iter().map(|o| o.as_str()).collect();
        assert_eq!(all, ["disclosed", "partially_disclosed", "challenged", "refused"]);
        for o in Outcome::VARIANTS {
            assert_eq!(Outcome::parse(o.as_str()), Some(*o));
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        let s: Vec<&str> = RequestStatus::VARIANTS.iter().map(|s| s.as_str()).collect();
        assert_eq!(s, ["open", "responded"]);
        assert_eq!(fields(parse_id(String::new()).unwrap_err()), ["id"]);
    }

    fn is_field_violation(e: &Error) -> bool {
        matches!(e, Error::Invalid(v) if !v.is_empty() && v.iter().all(|f| !f.field.is_empty()))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Whatever a request carries, parsing and recording it never panic,
        /// and every refusal names a field.
        #[test]
        fn any_request_is_recorded_or_refused_with_a_field(
            texts in proptest::collection::vec("\\PC{0,40}", 4),
            lists in proptest::collection::vec(proptest::collection::vec("\\PC{0,12}", 0..4), 3),
            received in proptest::option::of(-100_000i64..100_000),
            until in proptest::option::of(-100_000i64..100_000),
        ) {
            let at = |m: i64| now() + Duration::minutes(m);
            let parsed = RecordRequest::parse(
                texts[0].clone(),
                texts[1].clone(),
                texts[2].clone(),
                received.map(at),
                lists[0].clone(),
                lists[1].clone(),
                lists[2].clone(),
                texts[3].clone(),
                until.map(at),
            );
            match parsed.and_then(|r| r.into_request("r1".into(), now())) {
                Ok(r) => {
                    proptest::prop_assert!(r.received_at <= now());
                    proptest::prop_assert_eq!(r.gagged(), r.notice_prohibited_until.is_some());
                }
                Err(e) => proptest::prop_assert!(is_field_violation(&e), "{e:?}"),
            }
        }

        /// Whatever a response carries, it is recorded within what was
        /// requested, or refused (a field named, or the request's state).
        #[test]
        fn any_response_stays_within_the_request(
            outcome in 0usize..5,
            disclosed in proptest::collection::vec("(recording|contact|transcript|)", 0..4),
            challenged in proptest::prelude::any::<bool>(),
            challenge_outcome in "\\PC{0,8}",
        ) {
            let outcome = <Outcome as strum::VariantArray>::VARIANTS.get(outcome).copied();
            let mut r = request(None);
            let res = RecordResponse::parse("r1".into(), outcome, disclosed, challenged, challenge_outcome, String::new())
                .and_then(|c| c.apply(&mut r, now()));
            match res {
                Ok(()) => {
                    let resp = r.response.as_ref().unwrap();
                    proptest::prop_assert!(resp.disclosed_categories.iter().all(|c| r.categories.contains(c)));
                }
                Err(e) => proptest::prop_assert!(is_field_violation(&e), "{e:?}"),
            }
        }
    }
}
