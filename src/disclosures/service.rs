//! The commands and reads of requests from public authorities. Each
//! command is one transaction that writes the request, its audit events
//! and the notices to its tenants together: no controller is told of a
//! request that was not recorded, no request is recorded (or released from
//! its notice prohibition) without its notices, and a notice goes out
//! exactly once however many replicas release it.

use std::sync::Arc;

use crate::db::Store;
use crate::db::pipeline::{Actor, Tx};
use crate::disclosures::model::{
    Audience, AuthorityRequest, Period, RecordRequest, RecordResponse, Rendered, Report, check_lift,
    notice_payload, render_export, report,
};
use crate::disclosures::repo::{self as st, Filter};
use crate::error::{Error, Result};
use crate::inbox::kinds::EnvelopeKind;
use crate::inbox::model::Recipient;
use crate::instructions::repo as instructions;
use crate::rpc::AppState;
use crate::rpc::page::Page;
use crate::secrets::SubjectSecrets;
use crate::subprocessors::model::ExportFormat;
use crate::validate::Violations;

/// Requests read per query when a report or export walks them all.
const WALK_PAGE: i64 = 1_000;

fn target(r: &AuthorityRequest) -> String {
    format!("authority_request/{}", r.id)
}

/// Puts `event`'s notice in every tenant's inbox and its audit trail.
fn notify_tenants(tx: &mut Tx<'_>, r: &AuthorityRequest, event: &str) -> Result<()> {
    let payload = notice_payload(r, event);
    for t in &r.tenant_ids {
        tx.envelope(
            &Recipient::Tenant(t.clone()),
            EnvelopeKind::AuthorityRequestNotice,
            &payload,
        )?;
        let detail = serde_json::json!({ "event": event }).to_string();
        tx.audit("authority_request.notice", &target(r), Some(t), &detail)?;
    }
    Ok(())
}

/// Refuses tenants no instructions or contract know, naming each by its
/// position in the request: a request for data proctor does not process
/// for anyone is a typing error, not a request to record.
fn check_known_tenants(conn: &mut crate::db::DbConnection, tenants: &[String]) -> Result<()> {
    let known = instructions::known_tenants(conn)?;
    let mut v = Violations::new();
    for (i, t) in tenants.iter().enumerate() {
        v.check(
            known.binary_search(t).is_err(),
            format!("tenant_ids[{i}]"),
            "unknown tenant",
        );
    }
    v.finish()
}

/// Records a request and, unless notice is prohibited, notifies every
/// tenant it names, in one transaction (Clause 15.1(a)). Unknown tenants
/// or categories, a request received in the future or a prohibition
/// already over write nothing.
pub async fn record_request(state: &AppState, actor: Actor, cmd: RecordRequest) -> Result<AuthorityRequest> {
    let secrets = state.secrets.clone();
    state
        .command("authority_request.record", actor, move |tx| {
            instructions::check_known_categories(tx.conn(), "categories", &cmd.categories)?;
            check_known_tenants(tx.conn(), &cmd.tenant_ids)?;
            let r = cmd.into_request(uuid::Uuid::new_v4().to_string(), tx.now())?;
            st::insert(tx.conn(), &secrets.ring, &r)?;
            let detail = serde_json::json!({
                "tenants": r.tenant_ids.len(),
                "categories": r.categories,
                "notice_prohibited": r.gagged(),
            })
            .to_string();
            tx.audit("authority_request.record", &target(&r), None, &detail)?;
            if !r.gagged() {
                notify_tenants(tx, &r, "recorded")?;
            }
            Ok(r)
        })
        .await
}

/// Records the response given to the authority: no more disclosed than
/// was requested (Clause 15.2), once per request. Tenants already told of
/// the request are told of the response too; a gagged request's notice
/// carries it when released. A response to no recorded request is
/// INVALID_ARGUMENT on `id`.
pub async fn record_response(
    state: &AppState,
    actor: Actor,
    cmd: RecordResponse,
) -> Result<AuthorityRequest> {
    let secrets = state.secrets.clone();
    state
        .command("authority_request.respond", actor, move |tx| {
            let Some(mut r) = st::find(tx.conn(), &secrets.ring, &cmd.id)? else {
                return Err(Error::invalid(
                    "id",
                    "no authority request with this id was recorded",
                ));
            };
            cmd.apply(&mut r, tx.now())?;
            if !st::save_response(tx.conn(), &secrets.ring, &r)? {
                return Err(Error::WrongState(format!(
                    "authority request {} already has its response",
                    r.id
                )));
            }
            let resp = r.response.as_ref();
            let detail = serde_json::json!({
                "outcome": resp.map(|x| x.outcome.as_str()),
                "disclosed_categories": resp.map(|x| &x.disclosed_categories),
                "challenged": resp.is_some_and(|x| x.challenged),
            })
            .to_string();
            tx.audit("authority_request.respond", &target(&r), None, &detail)?;
            if !r.gagged() {
                notify_tenants(tx, &r, "responded")?;
            }
            Ok(r)
        })
        .await
}

/// Marks `r` notified at the command's time and sends its notices, unless
/// another command did first (then nothing is written): exactly once.
fn release(tx: &mut Tx<'_>, r: &mut AuthorityRequest, action: &str) -> Result<bool> {
    let now = tx.now();
    if !st::mark_notified(tx.conn(), &r.id, now)? {
        return Ok(false);
    }
    r.notified_at = Some(now);
    r.updated_at = now;
    tx.audit(action, &target(r), None, "")?;
    notify_tenants(tx, r, "recorded")?;
    Ok(true)
}

/// The prohibition was lifted (a waiver obtained, Clause 15.1(b)): the
/// notices go out now. A request whose notice was already delivered is
/// FAILED_PRECONDITION.
pub async fn lift_notice_prohibition(state: &AppState, actor: Actor, id: String) -> Result<AuthorityRequest> {
    let secrets = state.secrets.clone();
    state
        .command("authority_request.lift_prohibition", actor, move |tx| {
            let mut r = st::get(tx.conn(), &secrets.ring, &id)?;
            check_lift(&r)?;
            if !release(tx, &mut r, "authority_request.prohibition_lifted")? {
                return Err(Error::WrongState(format!(
                    "the notice of authority request {id} was already delivered"
                )));
            }
            Ok(r)
        })
        .await
}

/// Delivers the notices of request `id` whose prohibition has ended by the
/// command's time, in a transaction of its own (the job's round). True
/// when this call delivered them; false when they were delivered already.
pub async fn release_expired_notice(store: &Store, secrets: Arc<SubjectSecrets>, id: String) -> Result<bool> {
    let done = store
        .command("authority_request.release_notice", Actor::service(), move |tx| {
            let mut r = st::get(tx.conn(), &secrets.ring, &id)?;
            if !r.gagged() || r.notice_prohibited_until.is_none_or(|u| u > tx.now()) {
                return Ok(false);
            }
            release(tx, &mut r, "authority_request.prohibition_expired")
        })
        .await?;
    Ok(done.value)
}

/// Ids of the requests whose notice waits past its prohibition's end.
pub async fn notices_due(store: &Store) -> Result<Vec<String>> {
    store
        .read("authority_request.notices_due", |c, clock| {
            st::notices_due(c, clock.now(), WALK_PAGE)
        })
        .await
}

/// A request `audience` may see; the others are NOT_FOUND, so a tenant
/// learns neither of other tenants' requests nor of gagged ones.
pub async fn get_request(state: &AppState, audience: &Audience, id: String) -> Result<AuthorityRequest> {
    let secrets = state.secrets.clone();
    let r = state
        .store
        .read("authority_request.get", move |c, _| {
            st::get(c, &secrets.ring, &id)
        })
        .await?;
    if !audience.may_see(&r) {
        return Err(Error::not_found("authority request", r.id.clone()));
    }
    Ok(audience.view(r))
}

fn filter_for(audience: &Audience, tenant: Option<String>) -> Filter {
    match audience {
        Audience::Tenant(t) => Filter {
            tenant: Some(t.clone()),
            delivered_only: true,
            ..Filter::default()
        },
        Audience::Compliance => Filter {
            tenant,
            ..Filter::default()
        },
    }
}

/// One page of the requests `audience` may see (of `tenant`, or of every
/// tenant for compliance), and the page's last key.
pub async fn list_requests(
    state: &AppState,
    audience: &Audience,
    tenant: Option<String>,
    page: &Page,
) -> Result<(Vec<AuthorityRequest>, Option<i64>)> {
    let filter = filter_for(audience, tenant);
    let (after, size) = (page.after, page.size);
    let secrets = state.secrets.clone();
    let (found, last) = state
        .store
        .read("authority_request.list", move |c, _| {
            st::list(c, &secrets.ring, &filter, after, size)
        })
        .await?;
    Ok((found.into_iter().map(|r| audience.view(r)).collect(), last))
}

/// Every request `filter` selects, walked in pages within one read.
fn walk(
    c: &mut crate::db::DbConnection,
    ring: &crate::secrets::KeyRing,
    filter: &Filter,
) -> Result<Vec<AuthorityRequest>> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let (page, last) = st::list(c, ring, filter, after, WALK_PAGE)?;
        all.extend(page);
        match last {
            Some(l) if l > after => after = l,
            _ => return Ok(all),
        }
    }
}

/// The Clause 15.1(c) figures of the requests `audience` may see, received
/// between `from` and `to` (`to` unset: now), of `tenant` or of the whole
/// platform (compliance only).
pub async fn transparency_report(
    state: &AppState,
    audience: &Audience,
    tenant: Option<String>,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Report> {
    let period = Period::parse(from, to, state.store.clock().now())?;
    let filter = Filter {
        received_from: period.from,
        received_before: Some(period.to),
        ..filter_for(audience, tenant)
    };
    let secrets = state.secrets.clone();
    let all = state
        .store
        .read("authority_request.report", move |c, _| {
            walk(c, &secrets.ring, &filter)
        })
        .await?;
    Ok(report(&all, audience, &period))
}

/// Every request with everything recorded about it, for a supervisory
/// authority (Clause 15.1(d)); the compliance team's alone.
pub async fn export_requests(state: &AppState, format: ExportFormat) -> Result<Rendered> {
    let secrets = state.secrets.clone();
    let all = state
        .store
        .read("authority_request.export", move |c, _| {
            walk(c, &secrets.ring, &Filter::default())
        })
        .await?;
    render_export(&all, format, state.store.clock().now())
}
