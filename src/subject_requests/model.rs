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
        /// A platform system asked the controller a question that is not
        /// answered yet; proctor's own SLA clock is paused meanwhile.
        AwaitingController = "awaiting_controller",
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
/// | forwarded   | awaiting_controller, completed, rejected, cancelled |
/// | in_progress | awaiting_controller, completed, rejected, cancelled |
/// | awaiting_controller | forwarded, in_progress (answered), completed, rejected, cancelled |
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
        &[
            Status::AwaitingController,
            Status::Completed,
            Status::Rejected,
            Status::Cancelled,
        ],
    ),
    (
        Status::InProgress,
        &[
            Status::AwaitingController,
            Status::Completed,
            Status::Rejected,
            Status::Cancelled,
        ],
    ),
    (
        Status::AwaitingController,
        &[
            Status::Forwarded,
            Status::InProgress,
            Status::Completed,
            Status::Rejected,
            Status::Cancelled,
        ],
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
        matches!(
            self,
            Self::Received | Self::Forwarded | Self::InProgress | Self::AwaitingController
        )
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
        /// The last attempt failed; offered again once its backoff passed.
        Failed = "failed",
        /// Its request was cancelled; completions are refused.
        Cancelled = "cancelled",
        /// It failed on every attempt it was allowed: no longer offered, the
        /// compliance queue was told; its system may still complete it.
        NeedsAttention = "needs_attention",
    }
);

/// How failed tasks are retried: after `retry_initial_seconds` the first
/// time, twice as long after each further failure, until the task has had
/// `max_attempts` attempts. Bounded, so a system that always fails cannot
/// keep a request busy until its legal deadline passes unnoticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskPolicy {
    /// Wait before the first retry, seconds.
    pub retry_initial_seconds: u64,
    /// Attempts (leases) a task gets before it needs attention.
    pub max_attempts: u32,
}

impl Default for TaskPolicy {
    fn default() -> Self {
        Self {
            retry_initial_seconds: 30,
            max_attempts: 5,
        }
    }
}

/// The operator's bounds on subject-request work (flags): how tasks are
/// retried and how large an attached file may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Retries of failed tasks.
    pub tasks: TaskPolicy,
    /// Largest artefact one task may attach, bytes.
    pub max_artifact_bytes: u64,
    /// Longest wait for the next message of an upload: the bound a
    /// streamed upload has instead of the call deadline, which a large
    /// file on a slow link could never meet.
    pub upload_idle: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            tasks: TaskPolicy::default(),
            max_artifact_bytes: 1 << 30,
            upload_idle: std::time::Duration::from_secs(30),
        }
    }
}

/// What a failed attempt leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Offered again from this instant on.
    RetryAt(DateTime<Utc>),
    /// Out of attempts: it needs a person to look at it.
    NeedsAttention,
}

/// Longest wait between two attempts, whatever the doubling says (a day:
/// past that, the request's deadline is what matters).
pub const MAX_RETRY_DELAY_SECONDS: u64 = 86_400;

impl TaskPolicy {
    /// The outcome of the failure of attempt number `attempts` (1 = the
    /// first lease) at `now`: the wait doubles with every attempt, first
    /// `retry_initial_seconds`, capped at [`MAX_RETRY_DELAY_SECONDS`].
    pub fn after_failure(self, attempts: u32, now: DateTime<Utc>) -> AfterFailure {
        if attempts >= self.max_attempts {
            return AfterFailure::NeedsAttention;
        }
        let doublings = attempts.saturating_sub(1).min(32);
        let delay = self
            .retry_initial_seconds
            .saturating_mul(1u64 << doublings)
            .min(MAX_RETRY_DELAY_SECONDS);
        AfterFailure::RetryAt(now + chrono::Duration::seconds(delay as i64))
    }
}

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
    /// Corrected values of a rectification (left out when none, so the
    /// digests of requests without corrections stay what they were).
    #[serde(skip_serializing_if = "<[Correction]>::is_empty")]
    pub corrections: &'a [Correction],
}

/// One corrected value of a rectification request (GDPR Art. 16): in
/// category `category`, field `field` should read `value`. Personal data:
/// sealed with the request's identifiers and dropped with them on close.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Correction {
    /// The taxonomy category the field belongs to.
    pub category: String,
    /// The field, as the tenant's systems name it (e.g. `postal_address`).
    pub field: String,
    /// The corrected value.
    pub value: String,
}

/// Most corrections one request carries.
pub const MAX_CORRECTIONS: usize = 100;
/// Longest corrected field name.
pub const MAX_CORRECTION_FIELD_LEN: usize = 128;
/// Longest corrected value.
pub const MAX_CORRECTION_VALUE_LEN: usize = 4000;

/// Checks the corrections of a request of type `ty` (`None` when the type
/// itself is missing): only a rectification carries any; each names a
/// category (a well-formed key; whether the taxonomy knows it is checked
/// against the database) and a field, and its value is bounded. Every bad
/// entry is reported as `corrections[i].category` / `.field` / `.value`.
pub fn parse_corrections(ty: Option<RequestType>, raw: &[Correction], v: &mut Violations) -> Vec<Correction> {
    if raw.is_empty() {
        return Vec::new();
    }
    if ty.is_some_and(|t| t != RequestType::Rectification) {
        v.add("corrections", "only a rectification request carries corrections");
        return Vec::new();
    }
    v.check(
        raw.len() > MAX_CORRECTIONS,
        "corrections",
        format!("at most {MAX_CORRECTIONS} corrections"),
    );
    raw.iter()
        .enumerate()
        .map(|(i, c)| {
            let cats = parse_categories(
                std::slice::from_ref(&c.category),
                &format!("corrections[{i}].category"),
                &mut Violations::new(),
            );
            v.check(
                cats.is_empty() || c.category.trim().is_empty(),
                format!("corrections[{i}].category"),
                "must be a category key",
            );
            v.required_text(
                &format!("corrections[{i}].field"),
                &c.field,
                MAX_CORRECTION_FIELD_LEN,
            );
            v.max_len(
                &format!("corrections[{i}].value"),
                &c.value,
                MAX_CORRECTION_VALUE_LEN,
            );
            Correction {
                category: c.category.trim().to_owned(),
                field: c.field.trim().to_owned(),
                value: c.value.clone(),
            }
        })
        .collect()
}

/// The corrections a task whose scope is `task_categories` acts on: those
/// in its categories, so a system learns no corrected value it does not
/// hold.
pub fn corrections_for(corrections: &[Correction], task_categories: &[String]) -> Vec<Correction> {
    corrections
        .iter()
        .filter(|c| task_categories.contains(&c.category))
        .cloned()
        .collect()
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

/// Whether a reader in `role` sees a request's identifiers: only the
/// controller, who answers the person; compliance and every other reader
/// see the request without them.
pub fn sees_identifiers(role: crate::auth::Role) -> bool {
    role == crate::auth::Role::Tenant
}

/// The system a platform caller `sub` pulls tasks for: its own, whether
/// `requested` is empty or names it; naming another system is refused.
pub fn own_system<'a>(sub: &'a str, requested: &str) -> std::result::Result<&'a str, &'static str> {
    if requested.is_empty() || requested == sub {
        Ok(sub)
    } else {
        Err("a platform system pulls only its own tasks")
    }
}

/// Longest question a system asks the controller, or answer it gets.
pub const MAX_QUESTION_CHARS: usize = 4000;

/// Whether platform system `asker` may ask the controller about a request:
/// the system that forwarded it, or one holding one of its tasks. Anyone
/// else learns nothing about the request (NOT_FOUND).
pub fn may_ask(asker: &str, forwarded_by: Option<&str>, task_systems: &[String]) -> bool {
    forwarded_by == Some(asker) || task_systems.iter().any(|s| s == asker)
}

/// proctor's SLA deadline once a pause that began at `paused_at` ends at
/// `now`: moved by the time spent waiting for the controller (its answer
/// is not the processor's delay), yet never past the legal deadline, which
/// never pauses.
pub fn resumed_sla(
    sla_due: DateTime<Utc>,
    paused_at: DateTime<Utc>,
    now: DateTime<Utc>,
    legal_due: DateTime<Utc>,
) -> DateTime<Utc> {
    let paused = (now - paused_at).max(chrono::Duration::zero());
    (sla_due + paused).min(legal_due).max(sla_due.min(legal_due))
}

/// Format name at the top of every deletion certificate.
pub const CERTIFICATE_FORMAT: &str = "proctor.deletion_certificate.v1";

/// RFC 3339 with microseconds and `Z`, as every certificate time is written.
pub fn rfc3339_us(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// One system's part of a contract-end erasure, as the certificate states it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SystemDeletion {
    /// The platform system.
    pub system: String,
    /// When it completed its task (RFC 3339).
    pub completed_at: String,
    /// Records it erased.
    pub records_affected: i64,
    /// It held nothing for the tenant.
    pub no_data_held: bool,
}

/// One sub-processor's confirmation, as the certificate states it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubProcessorDeletion {
    /// Registry id.
    pub sub_processor_id: String,
    /// When it says it deleted the data (RFC 3339).
    pub confirmed_at: String,
    /// Its document or ticket reference.
    pub reference: String,
}

/// The deletion certificate a terminated tenant gets once its contract-end
/// erasure has completed (GDPR Art. 28(3)(g)): the document whose UTF-8
/// bytes the receipt key signs, so the controller can prove offline that
/// its data is gone, where, and what was withheld under a legal hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeletionCertificate {
    /// [`CERTIFICATE_FORMAT`].
    pub format: &'static str,
    /// The controller.
    pub tenant_id: String,
    /// When its contract ended (RFC 3339), when known.
    pub contract_ended_at: Option<String>,
    /// The contract-end erasure request.
    pub erasure_request_id: String,
    /// When proctor opened it (RFC 3339).
    pub erasure_opened_at: String,
    /// When its last task completed (RFC 3339).
    pub erasure_completed_at: String,
    /// Every system's completion, by system name.
    pub systems: Vec<SystemDeletion>,
    /// Every sub-processor's confirmation, by id.
    pub sub_processors: Vec<SubProcessorDeletion>,
    /// Categories kept under a legal hold (none unless a hold applies).
    pub withheld_categories: Vec<String>,
    /// When this certificate was issued (RFC 3339).
    pub issued_at: String,
}

impl DeletionCertificate {
    /// The document as signed: compact JSON, systems and sub-processors in
    /// name order so two certificates of one state read the same.
    pub fn document(mut self) -> String {
        self.systems.sort_by(|a, b| a.system.cmp(&b.system));
        self.sub_processors
            .sort_by(|a, b| a.sub_processor_id.cmp(&b.sub_processor_id));
        self.withheld_categories.sort();
        serde_json::to_string(&self).expect("a certificate serialises")
    }
}

/// A certificate exists only for a completed contract-end erasure; before,
/// FAILED_PRECONDITION saying what is missing.
pub fn certificate_ready(erasure: Option<Status>) -> Result<()> {
    match erasure {
        None => Err(Error::WrongState(
            "no contract-end erasure was opened for this tenant (its contract has not ended, or its grace period runs)"
                .into(),
        )),
        Some(Status::Completed) => Ok(()),
        Some(s) => Err(Error::WrongState(format!(
            "the contract-end erasure is {}; the certificate is issued once it has completed",
            s.as_str()
        ))),
    }
}

/// Longest artefact file name.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Longest artefact media type.
pub const MAX_CONTENT_TYPE_LEN: usize = 128;
/// Media type of an artefact that names none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Checks an artefact's file name: one path segment (it becomes
/// `files/<system>/<file_name>` in the ZIP, so a name must never climb out
/// of its folder or hide control characters), at most 255 characters.
pub fn check_file_name(name: &str, v: &mut Violations) {
    v.required_text("file_name", name, MAX_FILE_NAME_LEN);
    v.check(
        name.contains(['/', '\\']) || name == "." || name == ".." || name.chars().any(char::is_control),
        "file_name",
        "must be a plain file name (no path separators, no control characters, not . or ..)",
    );
}

/// A name as one safe ZIP path segment: path separators and control
/// characters become `_` (system names are checked at registration, but
/// only for spaces).
pub fn zip_segment(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => "_".into(),
        _ => s,
    }
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
    fn failed_tasks_back_off_then_need_attention() {
        let now = utc(2026, 3, 2, 9);
        let p = TaskPolicy::default();
        let wait = |a| match p.after_failure(a, now) {
            AfterFailure::RetryAt(at) => (at - now).num_seconds(),
            AfterFailure::NeedsAttention => -1,
        };
        assert_eq!([wait(1), wait(2), wait(3), wait(4)], [30, 60, 120, 240]);
        assert_eq!(p.after_failure(5, now), AfterFailure::NeedsAttention);
        assert_eq!(p.after_failure(9, now), AfterFailure::NeedsAttention);
        // Doubling never overflows and never waits more than a day.
        let long = TaskPolicy {
            retry_initial_seconds: u64::MAX / 2,
            max_attempts: u32::MAX,
        };
        assert_eq!(
            long.after_failure(200, now),
            AfterFailure::RetryAt(now + chrono::Duration::seconds(MAX_RETRY_DELAY_SECONDS as i64))
        );
        let once = TaskPolicy {
            retry_initial_seconds: 1,
            max_attempts: 1,
        };
        assert_eq!(once.after_failure(1, now), AfterFailure::NeedsAttention);
    }

    #[test]
    fn who_may_ask_the_controller() {
        let tasks = vec!["crm".to_owned(), "dialer".to_owned()];
        assert!(may_ask("mail", Some("mail"), &[]));
        assert!(may_ask("crm", Some("mail"), &tasks));
        assert!(!may_ask("billing", Some("mail"), &tasks));
        assert!(!may_ask("billing", None, &[]));
    }

    #[test]
    fn the_sla_pauses_but_not_past_the_legal_deadline() {
        let sla = utc(2026, 3, 12, 23);
        let legal = utc(2026, 4, 2, 23);
        let asked = utc(2026, 3, 5, 9);
        assert_eq!(
            resumed_sla(sla, asked, utc(2026, 3, 7, 9), legal),
            utc(2026, 3, 14, 23),
            "two days waiting move the SLA by two days"
        );
        assert_eq!(resumed_sla(sla, asked, utc(2026, 5, 1, 9), legal), legal);
        // A clock that went backwards never moves it earlier.
        assert_eq!(resumed_sla(sla, asked, utc(2026, 3, 1, 9), legal), sla);
    }

    #[test]
    fn certificates_only_after_completion_and_in_a_stable_order() {
        assert!(matches!(certificate_ready(None), Err(Error::WrongState(_))));
        assert!(matches!(
            certificate_ready(Some(Status::InProgress)),
            Err(Error::WrongState(_))
        ));
        assert!(certificate_ready(Some(Status::Completed)).is_ok());
        let sys = |n: &str| SystemDeletion {
            system: n.into(),
            completed_at: "2026-03-02T09:00:00.000000Z".into(),
            records_affected: 1,
            no_data_held: false,
        };
        let cert = |systems| DeletionCertificate {
            format: CERTIFICATE_FORMAT,
            tenant_id: "t1".into(),
            contract_ended_at: None,
            erasure_request_id: "r".into(),
            erasure_opened_at: "a".into(),
            erasure_completed_at: "b".into(),
            systems,
            sub_processors: Vec::new(),
            withheld_categories: Vec::new(),
            issued_at: "c".into(),
        };
        let a = cert(vec![sys("dialer"), sys("crm")]).document();
        assert_eq!(a, cert(vec![sys("crm"), sys("dialer")]).document());
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["format"], CERTIFICATE_FORMAT);
        assert_eq!(v["systems"][0]["system"], "crm");
        assert_eq!(v["withheld_categories"], serde_json::json!([]));
    }

    #[test]
    fn artefact_names_stay_in_their_folder() {
        for bad in ["", "../etc/passwd", "a/b", "a\\b", "..", ".", "a\u{0}b"] {
            let mut v = Violations::new();
            check_file_name(bad, &mut v);
            assert!(!v.is_empty(), "{bad:?} must be refused");
        }
        let mut v = Violations::new();
        check_file_name("call 2026-03-02.wav", &mut v);
        assert!(v.is_empty());
        assert_eq!(zip_segment("crm/eu"), "crm_eu");
        assert_eq!(zip_segment(".."), "_");
        assert_eq!(zip_segment("dialer"), "dialer");
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
            (Status::Forwarded, Status::AwaitingController),
            (Status::InProgress, Status::AwaitingController),
            (Status::AwaitingController, Status::Forwarded),
            (Status::AwaitingController, Status::InProgress),
            (Status::AwaitingController, Status::Completed),
            (Status::AwaitingController, Status::Rejected),
            (Status::AwaitingController, Status::Cancelled),
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
        assert_eq!(n, 49);
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
            corrections: &[],
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
    fn corrections_only_for_rectification() {
        let fix = |cat: &str, field: &str| Correction {
            category: cat.into(),
            field: field.into(),
            value: "12 Marylebone Rd".into(),
        };
        let mut v = Violations::new();
        let ok = parse_corrections(
            Some(RequestType::Rectification),
            &[fix("contact", " postal_address ")],
            &mut v,
        );
        assert!(v.is_empty());
        assert_eq!(ok[0].field, "postal_address");
        let mut v = Violations::new();
        parse_corrections(Some(RequestType::Erasure), &[fix("contact", "x")], &mut v);
        match v.finish() {
            Err(Error::Invalid(f)) => assert_eq!(f[0].field, "corrections"),
            other => panic!("{other:?}"),
        }
        let mut v = Violations::new();
        parse_corrections(
            Some(RequestType::Rectification),
            &[fix("Bad Cat", "x"), fix("contact", "")],
            &mut v,
        );
        match v.finish() {
            Err(Error::Invalid(f)) => {
                let fields: Vec<_> = f.iter().map(|x| x.field.as_str()).collect();
                assert_eq!(fields, ["corrections[0].category", "corrections[1].field"]);
            }
            other => panic!("{other:?}"),
        }
        let all = [fix("contact", "a"), fix("recording", "b")];
        assert_eq!(corrections_for(&all, &["contact".into()]), [fix("contact", "a")]);
        // A digest without corrections is what it was before they existed.
        let s = Subject::default();
        let body = CanonicalBody {
            tenant_id: "t",
            origin: "submitted",
            request_type: "rectification",
            regime: "gdpr",
            subject: &s,
            categories: &[],
            received_at_us: None,
            channel: "",
            message: "",
            corrections: &[],
        };
        assert!(!serde_json::to_string(&body).unwrap().contains("corrections"));
        let with = CanonicalBody {
            corrections: &all,
            ..body.clone()
        };
        assert_ne!(body_digest(b"k", &body), body_digest(b"k", &with));
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

    #[test]
    fn only_the_controller_sees_identifiers() {
        use crate::auth::Role;
        assert!(sees_identifiers(Role::Tenant));
        for r in [Role::Compliance, Role::Platform, Role::Sre] {
            assert!(!sees_identifiers(r));
        }
    }

    #[test]
    fn a_system_pulls_only_its_own_tasks() {
        assert_eq!(own_system("crm", ""), Ok("crm"));
        assert_eq!(own_system("crm", "crm"), Ok("crm"));
        assert!(own_system("crm", "billing").is_err());
    }
}
