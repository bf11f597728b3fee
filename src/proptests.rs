//! Property tests over the parsers and validators that see raw request
//! input: whatever arrives, they never panic, and every rejection is an
//! INVALID_ARGUMENT naming a field. The normalisers are also idempotent, so
//! a value stored once normalised compares equal when it arrives again.
//! End-to-end, `tests/e2e/fuzz.rs` sends random well-formed requests to
//! every RPC.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;

use crate::breaches::model::BreachStatus;
use crate::error::Error;
use crate::inbox::model::{PullSpec, Recipient};
use crate::rpc::bucket::{KeyedLimiter, RateLimit};
use crate::rpc::page::Page;
use crate::subject_requests::model as sr;
use crate::subject_requests::model::Regime;
use crate::validate::Violations;

fn is_field_violation(e: &Error) -> bool {
    matches!(e, Error::Invalid(v) if !v.is_empty() && v.iter().all(|f| !f.field.is_empty() && !f.description.is_empty()))
}

/// Dates a request can carry (a protobuf timestamp within chrono's range,
/// bounded to what a person could plausibly send: years 1..=9999).
fn date() -> impl Strategy<Value = NaiveDate> {
    (1i32..=9999, 1u32..=12, 1u32..=31).prop_map(|(y, m, d)| {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::from_ymd_opt(y, m, 1).unwrap())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn page_tokens(size in any::<u32>(), token in ".{0,64}") {
        match Page::parse(size, &token) {
            Ok(p) => {
                prop_assert!(p.size >= 1 && p.size <= 1000);
                prop_assert!(p.after >= 0);
            }
            Err(e) => prop_assert!(is_field_violation(&e), "{e:?}"),
        }
    }

    #[test]
    fn page_tokens_round_trip(key in 0i64..i64::MAX) {
        let p = Page { size: 1, after: 0 };
        let token = p.next_token(1, Some(key));
        prop_assert_eq!(Page::parse(1, &token).unwrap().after, key);
    }

    #[test]
    fn pull_specs(max in any::<u32>(), lease in any::<u32>()) {
        if let Err(e) = PullSpec::parse(max, lease) {
            prop_assert!(is_field_violation(&e), "{e:?}");
        }
    }

    #[test]
    fn stored_forms_never_panic(s in "\\PC{0,40}") {
        let _ = Recipient::parse(&s);
        let _ = BreachStatus::parse(&s);
        let _ = sr::parse_tz(&s);
    }

    #[test]
    fn normalisers_are_total_and_idempotent(s in "\\PC{0,80}") {
        for f in [sr::normalize_email, sr::normalize_phone, sr::normalize_external_id] {
            if let Some(n) = f(&s) {
                prop_assert_eq!(f(&n), Some(n.clone()), "not idempotent on {:?}", s);
            }
        }
    }

    #[test]
    fn emails_and_phones_shaped_like_the_real_thing(
        local in "[A-Za-z0-9._%+-]{1,20}",
        domain in "[A-Za-z0-9-]{1,20}\\.[A-Za-z]{2,6}",
        digits in "[1-9][0-9]{7,14}",
    ) {
        let email = format!("  {local}@{domain} ");
        // Every generated address is well-formed, so each case must
        // normalise: a None here is a failure, not a skipped case.
        let n = sr::normalize_email(&email);
        prop_assert!(n.is_some(), "{email:?} is a valid address");
        let n = n.unwrap_or_default();
        prop_assert_eq!(n.clone(), n.to_lowercase());
        prop_assert!(!n.contains(' '));
        prop_assert_eq!(sr::normalize_email(&n), Some(n.clone()), "not idempotent");
        let phone = format!("+{digits}");
        prop_assert!(sr::normalize_phone(&phone).is_some(), "{phone} is E.164");
    }

    #[test]
    fn subjects(
        email in "\\PC{0,40}", phone in "\\PC{0,40}", name in "\\PC{0,300}", ext in "\\PC{0,300}",
    ) {
        let mut v = Violations::new();
        let _ = sr::Subject::parse(&email, &phone, &name, &ext, "subject", &mut v);
        if let Err(e) = v.finish() {
            prop_assert!(is_field_violation(&e), "{e:?}");
        }
    }

    #[test]
    fn categories(raw in proptest::collection::vec("\\PC{0,70}", 0..40)) {
        let mut v = Violations::new();
        let parsed = sr::parse_categories(&raw, "categories", &mut v);
        match v.finish() {
            Ok(()) => prop_assert!(parsed.len() <= raw.len()),
            Err(e) => prop_assert!(is_field_violation(&e), "{e:?}"),
        }
    }

    #[test]
    fn export_chunks(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = sr::array_inner(&data);
        if let Err(e) = sr::export_chunk_inner(&data) {
            prop_assert!(is_field_violation(&e), "{e:?}");
        }
    }

    #[test]
    fn deadlines_are_after_receipt(received in date(), months in 0u32..10_000, extended in any::<bool>()) {
        for regime in [Regime::Gdpr, Regime::Ccpa, Regime::Lgpd] {
            let due = sr::due_date(regime, received, extended);
            prop_assert!(due > received, "{regime:?} {received} -> {due}");
        }
        prop_assert!(sr::add_months(received, months) >= received);
    }

    #[test]
    fn due_instants_in_any_zone(received in date(), zone in 0usize..8, extended in any::<bool>()) {
        let zones = ["UTC", "Europe/Berlin", "America/Los_Angeles", "Asia/Kolkata",
                     "Pacific/Kiritimati", "Pacific/Pago_Pago", "America/Sao_Paulo", "Australia/Lord_Howe"];
        let tz = sr::parse_tz(zones[zone]).unwrap();
        let at = Utc.from_utc_datetime(&received.and_hms_opt(12, 0, 0).unwrap());
        for regime in [Regime::Gdpr, Regime::Ccpa, Regime::Lgpd] {
            let due = sr::due_at(regime, at, tz, extended);
            prop_assert!(due > at);
            prop_assert!(due - at < Duration::days(200));
        }
    }

    #[test]
    fn rate_buckets_never_grant_more_than_burst_plus_refill(
        rate in 0.1f64..1000.0, burst in 1.0f64..100.0,
        steps in proptest::collection::vec(0i64..2_000_000, 1..200),
    ) {
        let clock = crate::clock::ManualClock::new(chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(20_000));
        let l = KeyedLimiter::new(RateLimit::new(rate, burst).unwrap(), clock.clone());
        let (mut now, mut granted) = (0i64, 0u64);
        for s in steps {
            now += s;
            clock.advance(chrono::Duration::microseconds(s));
            match l.check(&()) {
                Ok(()) => granted += 1,
                Err(wait) => prop_assert!(wait.as_secs_f64() <= 1.0 / rate + 1e-6),
            }
        }
        let allowed = burst + rate * now as f64 / 1e6;
        prop_assert!(granted as f64 <= allowed + 1e-6, "granted {granted} > {allowed}");
    }
}
