//! Data-subject requests as pure rules: the kinds, the one status transition
//! table, legal deadlines per regime (computed on the tenant's calendar),
//! identifier normalisation and the keyed hash `subject_ref`, the canonical
//! digest that makes retries idempotent and that receipts sign, which
//! systems a request fans out to, and the framing of export bundles.

use chrono::{DateTime, Datelike, Days, LocalResult, Months, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::validate::Violations;

/// Longest category name.
pub const MAX_CATEGORY_LEN: usize = 64;
/// Most categories one request or system names.
pub const MAX_CATEGORIES: usize = 100;
/// Processor SLA when a tenant has set none, calendar days.
pub const DEFAULT_SLA_DAYS: u32 = 10;
/// Longest processor SLA a tenant may set (longer is pointless: the legal
/// deadline caps it anyway).
pub const MAX_SLA_DAYS: u32 = 90;

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
        )]
        pub enum $name { $($(#[$vm])* #[strum(serialize = $s)] $v),+ }
        impl $name {
            /// Every value, for exhaustive tests and lookups.
            pub const ALL: &'static [$name] = <$name as strum::VariantArray>::VARIANTS;
            /// The stored form.
            pub fn as_str(self) -> &'static str { self.into() }
            /// Parses the stored form.
            pub fn parse(s: &str) -> Option<Self> { s.parse().ok() }
        }
    };
}

str_enum!(
    /// What the person asks for.
    RequestType {
        /// A copy of their data (GDPR art. 15).
        Access = "access",
        /// Their data in a machine-readable form (art. 20).
        Portability = "portability",
        /// Correction (art. 16).
        Rectification = "rectification",
        /// Restriction of processing (art. 18): processing must stop.
        Restriction = "restriction",
        /// Erasure (art. 17).
        Erasure = "erasure",
        /// Objection (art. 21): processing must stop.
        Objection = "objection",
        /// Withdrawal of consent (art. 7(3)).
        WithdrawConsent = "withdraw_consent",
    }
);

impl RequestType {
    /// Whether systems send export data for this kind.
    pub fn exports(self) -> bool {
        matches!(self, Self::Access | Self::Portability)
    }
}

str_enum!(
    /// Where a request is in its life.
    Status {
        /// Submitted by the controller, not yet fanned out.
        Received = "received",
        /// Reached the platform and was handed to the controller.
        Forwarded = "forwarded",
        /// Fulfilment tasks are out with the systems.
        InProgress = "in_progress",
        /// Every task is done.
        Completed = "completed",
        /// Refused (e.g. manifestly unfounded); terminal.
        Rejected = "rejected",
        /// Withdrawn by the controller; terminal.
        Cancelled = "cancelled",
    }
);

str_enum!(
    /// The legal ground on which a controller refuses a request. A
    /// rejection must name one, so the record shows it was not arbitrary.
    RejectionGround {
        /// Manifestly unfounded (GDPR Art. 12(5)(b); CCPA and LGPD alike).
        ManifestlyUnfounded = "manifestly_unfounded",
        /// Excessive, in particular repetitive (GDPR Art. 12(5)(b)).
        Excessive = "excessive",
        /// The requester's identity could not be verified (GDPR Art. 11(2),
        /// 12(6); CCPA "verifiable consumer request").
        IdentityNotVerified = "identity_not_verified",
        /// A statutory exemption applies (GDPR Art. 17(3), 23; CCPA
        /// exceptions such as legal obligations).
        LegalExemption = "legal_exemption",
    }
);

/// The one status transition table: `(from, to allowed)`. Anything not
/// listed (including staying put) is FAILED_PRECONDITION.
///
/// | from        | to                                        |
/// |-------------|-------------------------------------------|
/// | received    | in_progress, completed, rejected, cancelled |
/// | forwarded   | completed, rejected, cancelled            |
/// | in_progress | completed, rejected, cancelled            |
/// | completed   | (terminal)                                |
/// | rejected    | (terminal)                                |
/// | cancelled   | (terminal)                                |
///
/// `received -> completed` happens when no registered system holds any
/// category in scope (nothing to fan out).
pub const TRANSITIONS: &[(Status, &[Status])] = &[
    (
        Status::Received,
        &[
            Status::InProgress,
            Status::Completed,
            Status::Rejected,
            Status::Cancelled,
        ],
    ),
    (
        Status::Forwarded,
        &[Status::Completed, Status::Rejected, Status::Cancelled],
    ),
    (
        Status::InProgress,
        &[Status::Completed, Status::Rejected, Status::Cancelled],
    ),
    (Status::Completed, &[]),
    (Status::Rejected, &[]),
    (Status::Cancelled, &[]),
];

impl Status {
    /// Whether `to` may follow `self`.
    pub fn can_move_to(self, to: Status) -> bool {
        TRANSITIONS
            .iter()
            .find(|(f, _)| *f == self)
            .is_some_and(|(_, tos)| tos.contains(&to))
    }

    /// `Ok(to)` when the table allows the move, else FAILED_PRECONDITION.
    pub fn transition(self, to: Status) -> Result<Status> {
        if self.can_move_to(to) {
            Ok(to)
        } else {
            Err(Error::WrongState(format!(
                "a {} request cannot become {}",
                self.as_str(),
                to.as_str()
            )))
        }
    }

    /// Still owed an answer (counts toward open/overdue).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Received | Self::Forwarded | Self::InProgress)
    }
}

str_enum!(
    /// Where a fulfilment task is.
    TaskStatus {
        /// Waiting for its system to pull it.
        Pending = "pending",
        /// Handed to its system until the lease ends.
        Leased = "leased",
        /// Completed by its system.
        Done = "done",
        /// The last attempt failed; offered again on the next pull.
        Failed = "failed",
        /// Its request was cancelled; completions are refused.
        Cancelled = "cancelled",
    }
);

impl TaskStatus {
    /// No further work or completion accepted.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Cancelled)
    }
}

str_enum!(
    /// Which rulebook sets the deadline.
    Regime {
        /// EU/UK GDPR: one month, extendable by two.
        Gdpr = "gdpr",
        /// California: 45 days, extendable by 45.
        Ccpa = "ccpa",
        /// Brazil: 15 days, no extension.
        Lgpd = "lgpd",
    }
);

str_enum!(
    /// How a request came to exist.
    Origin {
        /// A platform service forwarded it to the controller.
        Forwarded = "forwarded",
        /// The controller submitted it.
        Submitted = "submitted",
        /// The service created it at contract end (erasure of everything).
        ContractEnd = "contract_end",
    }
);

/// How far in the past a request's `received_at` may lie: a request older
/// than this would be overdue from birth under every regime, so it is a
/// typo or a wrong clock rather than a real receipt date.
pub const MAX_RECEIVED_AGE_DAYS: i64 = 400;

/// Prefix of the idempotency keys proctor uses for its own requests;
/// callers may not use it, so a caller's key never shadows proctor's.
pub const RESERVED_KEY_PREFIX: &str = "proctor:";

/// The idempotency key of a tenant's contract-end erasure (one per tenant).
pub const CONTRACT_END_KEY: &str = "proctor:contract-end";

/// Longest idempotency key a caller may send.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// Checks a caller's idempotency key: required, bounded, and outside
/// proctor's reserved name space (so it never shadows proctor's own keys).
pub fn check_idempotency_key(key: &str, field: &str, v: &mut Violations) {
    v.required_text(field, key, MAX_IDEMPOTENCY_KEY_LEN);
    v.check(
        key.to_ascii_lowercase().starts_with(RESERVED_KEY_PREFIX),
        field,
        format!("keys starting {RESERVED_KEY_PREFIX:?} are reserved for proctor"),
    );
}

/// `date` plus `months` calendar months; a day the target month lacks
/// becomes its last day (31 January + 1 month = 28 or 29 February).
pub fn add_months(date: NaiveDate, months: u32) -> NaiveDate {
    // chrono's checked_add_months clamps to the month's last day already.
    date.checked_add_months(Months::new(months))
        .unwrap_or(NaiveDate::MAX)
}

/// The calendar date a deadline falls on, counted from the date of receipt.
pub fn due_date(regime: Regime, received: NaiveDate, extended: bool) -> NaiveDate {
    match (regime, extended) {
        (Regime::Gdpr, false) => add_months(received, 1),
        (Regime::Gdpr, true) => add_months(received, 3),
        (Regime::Ccpa, false) => received + Days::new(45),
        (Regime::Ccpa, true) => received + Days::new(90),
        (Regime::Lgpd, _) => received + Days::new(15),
    }
}

/// Whether a regime allows one extension.
pub fn extendable(regime: Regime) -> bool {
    !matches!(regime, Regime::Lgpd)
}

/// The last second of `date` on the tenant's calendar, as an instant (a
/// period ends when its last day does). A day whose end falls in a
/// daylight-saving gap ends at the first instant after the gap.
pub fn end_of_day(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let t = NaiveTime::from_hms_opt(23, 59, 59).expect("valid time");
    let local = date.and_time(t);
    match tz.from_local_datetime(&local) {
        LocalResult::Single(d) => d.with_timezone(&Utc),
        LocalResult::Ambiguous(_, later) => later.with_timezone(&Utc),
        LocalResult::None => tz
            .from_local_datetime(&(local + chrono::Duration::hours(1)))
            .earliest()
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&local)),
    }
}

/// The legal deadline of a request received at `received_at`, on `tz`'s
/// calendar.
pub fn due_at(regime: Regime, received_at: DateTime<Utc>, tz: Tz, extended: bool) -> DateTime<Utc> {
    let day = received_at.with_timezone(&tz).date_naive();
    end_of_day(due_date(regime, day, extended), tz)
}

/// The processor's own SLA: `sla_days` calendar days after receipt, never
/// later than the legal deadline.
pub fn sla_due_at(
    received_at: DateTime<Utc>,
    tz: Tz,
    sla_days: u32,
    legal_due: DateTime<Utc>,
) -> DateTime<Utc> {
    let day = received_at.with_timezone(&tz).date_naive() + Days::new(u64::from(sla_days));
    end_of_day(day, tz).min(legal_due)
}

/// Checks an extension request and returns the new deadline: once, with a
/// reason, before the original deadline, under a regime that allows it.
pub fn extend(
    regime: Regime,
    status: Status,
    already_extended: bool,
    received_at: DateTime<Utc>,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<DateTime<Utc>> {
    if !status.is_open() {
        return Err(Error::WrongState(format!(
            "a {} request cannot be extended",
            status.as_str()
        )));
    }
    if !extendable(regime) {
        return Err(Error::WrongState(format!(
            "{} deadlines cannot be extended",
            regime.as_str()
        )));
    }
    if already_extended {
        return Err(Error::WrongState("the deadline was already extended once".into()));
    }
    if now > due {
        return Err(Error::WrongState(
            "the original deadline has passed; an extension must come before it".into(),
        ));
    }
    Ok(due_at(regime, received_at, tz, true))
}

/// Parses an IANA time-zone name.
pub fn parse_tz(name: &str) -> Option<Tz> {
    name.parse::<Tz>().ok()
}

/// Which kind of identifier a `subject_ref` was computed from (part of the
/// hashed input, so an email and an external id that happen to be equal
/// strings differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// Lower-cased email address.
    Email,
    /// E.164 phone number.
    Phone,
    /// The tenant's own id for the person.
    ExternalId,
}

impl IdKind {
    fn tag(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::ExternalId => "external_id",
        }
    }
}

/// Lower-cased, trimmed email, or `None` when it is not an address.
pub fn normalize_email(s: &str) -> Option<String> {
    let e = s.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && e.len() <= 254
        && !e.chars().any(char::is_whitespace);
    ok.then_some(e)
}

/// E.164 (`+` then 8 to 15 digits, no leading zero), accepting the usual
/// separators and a `00` international prefix; `None` for anything without
/// a country code, since guessing one would hash the wrong number.
pub fn normalize_phone(s: &str) -> Option<String> {
    let t = s.trim();
    let rest = if let Some(r) = t.strip_prefix('+') {
        r
    } else {
        t.strip_prefix("00")?
    };
    let mut digits = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' | '/' => {}
            _ => return None,
        }
    }
    let ok = (8..=15).contains(&digits.len()) && !digits.starts_with('0');
    ok.then(|| format!("+{digits}"))
}

/// Trimmed external id (case kept: it is the tenant's key), or `None` when
/// blank or overlong.
pub fn normalize_external_id(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty() && t.chars().count() <= 256).then(|| t.to_owned())
}

/// The keyed hash platform services send instead of an identifier:
/// hex HMAC-SHA256 under the server's secret over the tenant, the kind and
/// the normalised identifier. Per tenant, so one person's refs at two
/// tenants cannot be linked.
pub fn subject_ref(key: &[u8], tenant_id: &str, kind: IdKind, normalized: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in ["proctor.subject_ref.v1", tenant_id, kind.tag(), normalized] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

/// A person's identifiers, normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subject {
    /// Lower-cased email.
    pub email: Option<String>,
    /// E.164 phone.
    pub phone: Option<String>,
    /// Display name (not hashed: names are not unique).
    pub name: Option<String>,
    /// The tenant's id for the person.
    pub external_id: Option<String>,
}

impl Subject {
    /// Normalises what arrived on the wire; every bad field is reported under
    /// `prefix`, and at least one of email, phone or external id is required.
    pub fn parse(
        email: &str,
        phone: &str,
        name: &str,
        external_id: &str,
        prefix: &str,
        v: &mut Violations,
    ) -> Self {
        let mut s = Subject::default();
        if !email.trim().is_empty() {
            s.email = normalize_email(email);
            v.check(
                s.email.is_none(),
                format!("{prefix}.email"),
                "is not an email address",
            );
        }
        if !phone.trim().is_empty() {
            s.phone = normalize_phone(phone);
            v.check(
                s.phone.is_none(),
                format!("{prefix}.phone"),
                "must be an international number (E.164, e.g. +4930123456)",
            );
        }
        if !external_id.trim().is_empty() {
            s.external_id = normalize_external_id(external_id);
            v.check(
                s.external_id.is_none(),
                format!("{prefix}.external_id"),
                "must be at most 256 characters",
            );
        }
        if !name.trim().is_empty() {
            v.max_len(&format!("{prefix}.name"), name, 256);
            s.name = Some(name.trim().to_owned());
        }
        v.check(
            email.trim().is_empty() && phone.trim().is_empty() && external_id.trim().is_empty(),
            prefix,
            "needs an email, a phone or an external_id",
        );
        s
    }

    /// The keyed hashes of every identifier the subject has, in a fixed order
    /// (external id, email, phone); the first is the request's primary ref.
    pub fn refs(&self, key: &[u8], tenant_id: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(x) = &self.external_id {
            out.push(subject_ref(key, tenant_id, IdKind::ExternalId, x));
        }
        if let Some(x) = &self.email {
            out.push(subject_ref(key, tenant_id, IdKind::Email, x));
        }
        if let Some(x) = &self.phone {
            out.push(subject_ref(key, tenant_id, IdKind::Phone, x));
        }
        out
    }
}

/// What must be identical for a retry to be "the same request".
#[derive(Debug, Clone, serde::Serialize)]
pub struct CanonicalBody<'a> {
    /// Tenant (controller).
    pub tenant_id: &'a str,
    /// How it arrived.
    pub origin: &'a str,
    /// Request kind.
    pub request_type: &'a str,
    /// Regime.
    pub regime: &'a str,
    /// Normalised identifiers.
    pub subject: &'a Subject,
    /// Sorted, deduplicated categories.
    pub categories: &'a [String],
    /// Receipt time as given (micros), if given.
    pub received_at_us: Option<i64>,
    /// Channel (forwarded requests).
    pub channel: &'a str,
    /// Message (forwarded requests).
    pub message: &'a str,
}

/// The request's digest: hex HMAC-SHA256 (under the identifier hash key, so
/// it reveals nothing about the identifiers) of the canonical JSON body.
/// Retries compare it; receipts sign it.
pub fn body_digest(key: &[u8], body: &CanonicalBody<'_>) -> String {
    let json = serde_json::to_vec(body).expect("serialisable body");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"proctor.request_digest.v1\0");
    mac.update(&json);
    hex::encode(mac.finalize().into_bytes())
}

/// The exact bytes a receipt's Ed25519 signature covers:
/// `proctor.receipt.v1\n{tenant_id}\n{digest}\n{issued_at RFC 3339, micros, Z}`.
pub fn receipt_message(tenant_id: &str, digest: &str, issued_at: DateTime<Utc>) -> Vec<u8> {
    format!(
        "proctor.receipt.v1\n{tenant_id}\n{digest}\n{}",
        issued_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
    .into_bytes()
}

/// Validates category names (lower-case letters, digits, `_`, `-`, `.`),
/// sorted and deduplicated.
pub fn parse_categories(raw: &[String], field: &str, v: &mut Violations) -> Vec<String> {
    v.check(
        raw.len() > MAX_CATEGORIES,
        field,
        format!("at most {MAX_CATEGORIES} categories"),
    );
    let mut out = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let ok = !c.is_empty()
            && c.len() <= MAX_CATEGORY_LEN
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "_-.".contains(ch));
        if ok {
            out.push(c.clone());
        } else {
            v.add(
                format!("{field}[{i}]"),
                format!("must be 1-{MAX_CATEGORY_LEN} of a-z, 0-9, _ - ."),
            );
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The categories a system must act on for a request: the overlap of what
/// it holds with the request's scope (everything it holds when the request
/// names none), or `None` when it holds nothing in scope.
pub fn task_scope(system_categories: &[String], request_categories: &[String]) -> Option<Vec<String>> {
    let scope: Vec<String> = if request_categories.is_empty() {
        system_categories.to_vec()
    } else {
        system_categories
            .iter()
            .filter(|c| request_categories.contains(c))
            .cloned()
            .collect()
    };
    (!scope.is_empty()).then_some(scope)
}

/// Per-subject decision flags that `CheckProcessing` reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubjectFlags {
    /// An open or completed restriction.
    pub restricted: bool,
    /// An open or completed objection.
    pub objected: bool,
    /// An open or completed erasure.
    pub erased: bool,
    /// An open or completed consent withdrawal (deny consent-based
    /// processing; the decision engine may treat it as an objection).
    pub consent_withdrawn: bool,
}

impl SubjectFlags {
    /// Adds the effect of one live (open or completed) request.
    pub fn add(&mut self, t: RequestType) {
        match t {
            RequestType::Restriction => self.restricted = true,
            RequestType::Objection => self.objected = true,
            RequestType::Erasure => self.erased = true,
            RequestType::WithdrawConsent => self.consent_withdrawn = true,
            RequestType::Access | RequestType::Portability | RequestType::Rectification => {}
        }
    }

    /// Whether any flag is set.
    pub fn any(&self) -> bool {
        self.restricted || self.objected || self.erased || self.consent_withdrawn
    }
}

/// Whether a request of this status still sets its subject's flags: open or
/// completed ones do; cancelled or rejected ones no longer do.
pub fn status_sets_flags(s: Status) -> bool {
    s.is_open() || s == Status::Completed
}

/// Checks one export chunk: a JSON array of records. Returns the bytes
/// between its brackets (trimmed), which the bundle splices in unchanged so
/// it never has to hold a whole bundle.
pub fn export_chunk_inner(data: &[u8]) -> Result<&[u8]> {
    let v: serde_json::Value = serde_json::from_slice(data)
        .map_err(|_| Error::invalid("export_data", "must be a JSON array of records"))?;
    if !v.is_array() {
        return Err(Error::invalid("export_data", "must be a JSON array of records"));
    }
    Ok(array_inner(data))
}

/// The trimmed inside of a JSON array already known to be valid. Total on
/// any bytes (missing brackets are left alone) so a stored chunk that is not
/// what it should be can never panic a download.
pub fn array_inner(data: &[u8]) -> &[u8] {
    let t = data.trim_ascii();
    let t = t.strip_prefix(b"[").unwrap_or(t);
    let t = t.strip_suffix(b"]").unwrap_or(t);
    t.trim_ascii()
}

/// Day of month, for readable assertions elsewhere.
pub fn day_of(d: DateTime<Utc>, tz: Tz) -> (i32, u32, u32) {
    let l = d.with_timezone(&tz);
    (l.year(), l.month(), l.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }
    fn utc(y: i32, m: u32, day: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, day, h, 0, 0).unwrap()
    }

    #[test]
    fn gdpr_month_clamps_to_month_end() {
        assert_eq!(due_date(Regime::Gdpr, d(2026, 1, 31), false), d(2026, 2, 28));
        assert_eq!(due_date(Regime::Gdpr, d(2028, 1, 31), false), d(2028, 2, 29));
        assert_eq!(due_date(Regime::Gdpr, d(2026, 3, 31), false), d(2026, 4, 30));
        assert_eq!(due_date(Regime::Gdpr, d(2026, 12, 15), false), d(2027, 1, 15));
        assert_eq!(due_date(Regime::Gdpr, d(2026, 2, 28), false), d(2026, 3, 28));
        // Extended: three months from receipt, clamped again.
        assert_eq!(due_date(Regime::Gdpr, d(2026, 1, 31), true), d(2026, 4, 30));
        assert_eq!(due_date(Regime::Gdpr, d(2027, 11, 30), true), d(2028, 2, 29));
    }

    #[test]
    fn ccpa_and_lgpd_count_days() {
        assert_eq!(due_date(Regime::Ccpa, d(2026, 1, 31), false), d(2026, 3, 17));
        assert_eq!(due_date(Regime::Ccpa, d(2026, 1, 31), true), d(2026, 5, 1));
        assert_eq!(due_date(Regime::Lgpd, d(2026, 2, 20), false), d(2026, 3, 7));
        assert_eq!(due_date(Regime::Lgpd, d(2026, 2, 20), true), d(2026, 3, 7));
    }

    #[test]
    fn deadline_follows_the_tenant_calendar() {
        // 23:30 UTC on 31 Jan is already 1 Feb in Berlin: due 1 Mar there.
        let r = Utc.with_ymd_and_hms(2026, 1, 31, 23, 30, 0).unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            day_of(due_at(Regime::Gdpr, r, chrono_tz::UTC, false), chrono_tz::UTC),
            (2026, 2, 28)
        );
        let due = due_at(Regime::Gdpr, r, berlin, false);
        assert_eq!(day_of(due, berlin), (2026, 3, 1));
        assert_eq!(due, Utc.with_ymd_and_hms(2026, 3, 1, 22, 59, 59).unwrap());
        // End of day in UTC.
        assert_eq!(
            due_at(Regime::Lgpd, utc(2026, 3, 2, 9), chrono_tz::UTC, false),
            Utc.with_ymd_and_hms(2026, 3, 17, 23, 59, 59).unwrap()
        );
    }

    #[test]
    fn sla_never_exceeds_legal_deadline() {
        let r = utc(2026, 3, 2, 9);
        let legal = due_at(Regime::Lgpd, r, chrono_tz::UTC, false);
        assert_eq!(
            sla_due_at(r, chrono_tz::UTC, 10, legal),
            Utc.with_ymd_and_hms(2026, 3, 12, 23, 59, 59).unwrap()
        );
        assert_eq!(sla_due_at(r, chrono_tz::UTC, 30, legal), legal);
    }

    #[test]
    fn extension_rules() {
        let r = utc(2026, 1, 31, 9);
        let tz = chrono_tz::UTC;
        let due = due_at(Regime::Gdpr, r, tz, false);
        let ok = extend(Regime::Gdpr, Status::InProgress, false, r, due, r, tz).unwrap();
        assert_eq!(day_of(ok, tz), (2026, 4, 30));
        let after = due + chrono::Duration::seconds(1);
        for (regime, status, ext, now) in [
            (Regime::Gdpr, Status::InProgress, true, r),
            (Regime::Gdpr, Status::InProgress, false, after),
            (Regime::Lgpd, Status::InProgress, false, r),
            (Regime::Gdpr, Status::Completed, false, r),
            (Regime::Gdpr, Status::Cancelled, false, r),
        ] {
            assert!(matches!(
                extend(regime, status, ext, r, due, now, tz),
                Err(Error::WrongState(_))
            ));
        }
        let ccpa = extend(Regime::Ccpa, Status::Received, false, r, due, r, tz).unwrap();
        assert_eq!(day_of(ccpa, tz), (2026, 5, 1));
    }

    #[test]
    fn rejection_grounds_round_trip() {
        for g in RejectionGround::ALL {
            assert_eq!(RejectionGround::parse(g.as_str()), Some(*g));
        }
        assert_eq!(RejectionGround::parse("because"), None);
    }

    #[test]
    fn transition_table_is_exhaustive() {
        // Every pair: allowed exactly when listed; terminal states go nowhere.
        let allowed: &[(Status, Status)] = &[
            (Status::Received, Status::InProgress),
            (Status::Received, Status::Completed),
            (Status::Received, Status::Rejected),
            (Status::Received, Status::Cancelled),
            (Status::Forwarded, Status::Completed),
            (Status::Forwarded, Status::Rejected),
            (Status::Forwarded, Status::Cancelled),
            (Status::InProgress, Status::Completed),
            (Status::InProgress, Status::Rejected),
            (Status::InProgress, Status::Cancelled),
        ];
        let mut n = 0;
        for &from in Status::ALL {
            for &to in Status::ALL {
                n += 1;
                let want = allowed.contains(&(from, to));
                match from.transition(to) {
                    Ok(s) => {
                        assert!(want, "{from:?} -> {to:?} must be refused");
                        assert_eq!(s, to);
                    }
                    Err(Error::WrongState(_)) => assert!(!want, "{from:?} -> {to:?}"),
                    Err(e) => panic!("wrong error {e:?}"),
                }
            }
        }
        assert_eq!(n, 36);
        assert_eq!(TRANSITIONS.len(), Status::ALL.len(), "one row per status");
    }

    #[test]
    fn identifiers_normalise() {
        assert_eq!(
            normalize_email("  Ada@Example.COM "),
            Some("ada@example.com".into())
        );
        assert_eq!(normalize_email("nope"), None);
        assert_eq!(normalize_email("a@b"), None);
        assert_eq!(normalize_phone("+49 (30) 123-456"), Some("+4930123456".into()));
        assert_eq!(normalize_phone("0049 30 123456"), Some("+4930123456".into()));
        assert_eq!(normalize_phone("030 123456"), None);
        assert_eq!(normalize_phone("+0123456789"), None);
        assert_eq!(normalize_phone("+1 555 abc"), None);
        assert_eq!(normalize_external_id("  c-17 "), Some("c-17".into()));
        assert_eq!(normalize_external_id("  "), None);
    }

    #[test]
    fn subject_ref_is_keyed_per_tenant_and_kind() {
        let k = b"0123456789abcdef0123456789abcdef";
        let a = subject_ref(k, "t1", IdKind::Email, "ada@example.com");
        assert_eq!(a.len(), 64);
        assert_eq!(a, subject_ref(k, "t1", IdKind::Email, "ada@example.com"));
        assert_ne!(a, subject_ref(k, "t2", IdKind::Email, "ada@example.com"));
        assert_ne!(a, subject_ref(k, "t1", IdKind::ExternalId, "ada@example.com"));
        assert_ne!(
            a,
            subject_ref(
                b"another key another key another!",
                "t1",
                IdKind::Email,
                "ada@example.com"
            )
        );
        // Length-prefixed parts: no ambiguity from moving a separator.
        assert_ne!(
            subject_ref(k, "t1e", IdKind::Email, "x"),
            subject_ref(k, "t1", IdKind::Email, "ex")
        );
    }

    #[test]
    fn subject_parse_reports_every_field() {
        let mut v = Violations::new();
        let s = Subject::parse("bad", "123", "", "", "subject", &mut v);
        assert_eq!(s.email, None);
        match v.finish() {
            Err(Error::Invalid(f)) => {
                let fields: Vec<_> = f.iter().map(|x| x.field.as_str()).collect();
                assert_eq!(fields, ["subject.email", "subject.phone"]);
            }
            other => panic!("{other:?}"),
        }
        let mut v = Violations::new();
        Subject::parse("", "", "Ada", "", "subject", &mut v);
        assert!(!v.is_empty(), "a name alone identifies nobody");
    }

    #[test]
    fn digest_changes_with_the_body() {
        let k = b"k";
        let s = Subject {
            email: Some("a@b.c".into()),
            ..Default::default()
        };
        let cats = vec!["recordings".to_owned()];
        let body = CanonicalBody {
            tenant_id: "t1",
            origin: "submitted",
            request_type: "erasure",
            regime: "gdpr",
            subject: &s,
            categories: &cats,
            received_at_us: None,
            channel: "",
            message: "",
        };
        let d1 = body_digest(k, &body);
        assert_eq!(d1, body_digest(k, &body));
        let d2 = body_digest(
            k,
            &CanonicalBody {
                request_type: "access",
                ..body.clone()
            },
        );
        assert_ne!(d1, d2);
    }

    #[test]
    fn categories_sorted_and_checked() {
        let mut v = Violations::new();
        let c = parse_categories(&["b".into(), "a".into(), "b".into()], "categories", &mut v);
        assert_eq!(c, ["a", "b"]);
        assert!(v.is_empty());
        parse_categories(&["Bad Name".into()], "categories", &mut v);
        assert!(!v.is_empty());
    }

    #[test]
    fn fan_out_scope() {
        let sys = vec!["contacts".to_owned(), "recordings".to_owned()];
        assert_eq!(task_scope(&sys, &[]), Some(sys.clone()));
        assert_eq!(
            task_scope(&sys, &["recordings".into()]),
            Some(vec!["recordings".into()])
        );
        assert_eq!(task_scope(&sys, &["chats".into()]), None);
    }

    #[test]
    fn flags_follow_request_kinds() {
        let mut f = SubjectFlags::default();
        f.add(RequestType::Access);
        assert!(!f.any());
        f.add(RequestType::Restriction);
        f.add(RequestType::Erasure);
        assert!(f.restricted && f.erased && !f.objected && !f.consent_withdrawn);
        assert!(status_sets_flags(Status::Completed));
        assert!(!status_sets_flags(Status::Cancelled));
    }

    #[test]
    fn export_chunks_are_json_arrays() {
        assert_eq!(
            export_chunk_inner(b" [ {\"a\":1}, 2 ] ").unwrap(),
            b"{\"a\":1}, 2"
        );
        assert_eq!(export_chunk_inner(b"[]").unwrap(), b"");
        assert!(export_chunk_inner(b"{\"a\":1}").is_err());
        assert!(export_chunk_inner(b"[1,").is_err());
    }

    #[test]
    fn receipt_message_is_stable() {
        let m = receipt_message("t1", "abc", Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap());
        assert_eq!(
            String::from_utf8(m).unwrap(),
            "proctor.receipt.v1\nt1\nabc\n2026-03-02T09:00:00.000000Z"
        );
    }
}
