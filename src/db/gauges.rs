//! The numbers SRE dashboards watch, read in one transaction: one cheap
//! aggregate query each, over indexed columns, with no tenant or personal
//! detail in the result. The sampler ([`crate::telemetry::gauges`]) calls
//! [`sample`] on an interval, never per RPC.

use chrono::{DateTime, Utc};
use diesel::dsl::min;
use diesel::prelude::*;

use crate::db::schema::{envelopes as e, screening_cases as sc};
use crate::db::{DbConnection, from_us};
use crate::error::Result;
use crate::inbox::model::Recipient;
use crate::screening::cases::CaseStatus;

/// Case states that still await a compliance decision.
const PENDING: [CaseStatus; 2] = [CaseStatus::Open, CaseStatus::Answered];

/// One reading of the backlog and deadline gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Unacknowledged envelopes in tenants' inboxes.
    pub inbox_unacked_tenant: u64,
    /// Unacknowledged envelopes in platform systems' inboxes.
    pub inbox_unacked_system: u64,
    /// Age of the oldest unacknowledged envelope, seconds (0 when none).
    pub inbox_oldest_unacked_seconds: f64,
    /// Subject requests not yet completed, rejected or cancelled.
    pub subject_requests_open: u64,
    /// Open subject requests past their legal deadline.
    pub subject_requests_overdue: u64,
    /// Fan-out tasks platform systems have not completed.
    pub subject_tasks_unfinished: u64,
    /// Fan-out tasks that failed every attempt and wait for a person.
    pub subject_tasks_needing_attention: u64,
    /// Open breaches past the 72-hour authority deadline.
    pub breaches_past_deadline: u64,
    /// Open breaches within 12 hours of the deadline, not yet past it.
    pub breaches_near_deadline: u64,
    /// Screening cases awaiting a decision (open or answered).
    pub screening_cases_open: u64,
    /// Age of the oldest audit event still waiting for its leaf in the
    /// Merkle tree, seconds (0 when none): the sequencing delay.
    pub audit_unsequenced_oldest_seconds: f64,
}

/// Unacknowledged envelopes for recipients of the kind `empty` is (the
/// stored form of an empty name is the kind's prefix, e.g. `tenant:`).
fn unacked_of_kind(conn: &mut DbConnection, empty: Recipient) -> Result<u64> {
    let n: i64 = e::table
        .filter(e::acked_at_us.is_null())
        .filter(e::recipient.like(format!("{empty}%")))
        .count()
        .get_result(conn)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Reads every gauge as of `now`.
pub fn sample(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<Sample> {
    let oldest: Option<i64> = e::table
        .filter(e::acked_at_us.is_null())
        .select(min(e::created_at_us))
        .first(conn)?;
    let (open, overdue, tasks) = crate::subject_requests::repo::counts(conn, now, None)?;
    let past = crate::breaches::repo::count_past(conn, now)?;
    let near_or_past = crate::breaches::repo::count_near_or_past(conn, None, now)?;
    let cases: i64 = sc::table
        .filter(sc::status.eq_any(PENDING.map(CaseStatus::as_str)))
        .count()
        .get_result(conn)?;
    Ok(Sample {
        inbox_unacked_tenant: unacked_of_kind(conn, Recipient::Tenant(String::new()))?,
        inbox_unacked_system: unacked_of_kind(conn, Recipient::System(String::new()))?,
        inbox_oldest_unacked_seconds: oldest
            .map(|us| ((now - from_us(us)).num_milliseconds().max(0)) as f64 / 1000.0)
            .unwrap_or(0.0),
        subject_requests_open: open,
        subject_requests_overdue: overdue,
        subject_tasks_unfinished: tasks,
        subject_tasks_needing_attention: crate::subject_requests::repo::count_needing_attention(conn)?,
        breaches_past_deadline: past,
        breaches_near_deadline: near_or_past.saturating_sub(past),
        screening_cases_open: u64::try_from(cases).unwrap_or(0),
        audit_unsequenced_oldest_seconds: crate::audit::repo::oldest_unsequenced(conn)?
            .map(|at| ((now - at).num_milliseconds().max(0)) as f64 / 1000.0)
            .unwrap_or(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_cases_are_the_ones_awaiting_a_decision() {
        for s in [
            CaseStatus::Open,
            CaseStatus::Answered,
            CaseStatus::Cleared,
            CaseStatus::Confirmed,
        ] {
            assert_eq!(PENDING.contains(&s), s.is_pending(), "{}", s.as_str());
        }
    }
}
