//! The breach register's commands and reads: each command is one
//! transaction that writes the breach, its audit event and the notices to
//! the affected tenants together, so no tenant is told about a breach that
//! was not recorded, and no breach is recorded without its notices.

use crate::breaches::model::{
    Audience, Breach, BreachStatus, NotifyAuthority, RenderFormat, Rendered, ReportBreach, UpdateBreach,
    apply_authority_decision, apply_patch, authority_deadline, check_authority_decision, render,
};
use crate::breaches::repo as st;
use crate::db::DbConnection;
use crate::db::pipeline::{Actor, Tx};
use crate::error::{Error, Result};
use crate::inbox::kinds::EnvelopeKind;
use crate::inbox::model::Recipient;
use crate::instructions::repo as instructions;
use crate::rpc::AppState;
use crate::rpc::page::Page;

/// Tenants a breach concerns when none are named: those whose current
/// instructions cover one of its categories.
fn derive_tenants(conn: &mut DbConnection, categories: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for t in instructions::known_tenants(conn)? {
        if let Some(v) = instructions::current(conn, &t)?
            && v.set.rules.iter().any(|r| categories.contains(&r.category))
        {
            out.push(t);
        }
    }
    Ok(out)
}

/// Puts a notice in each tenant's inbox and its audit trail.
fn notify_tenants(tx: &mut Tx<'_>, b: &Breach, tenants: &[String]) -> Result<()> {
    let target = format!("breach/{}", b.id);
    for t in tenants {
        let payload = serde_json::json!({
            "breach_id": b.id,
            "became_aware_at": b.became_aware_at.to_rfc3339(),
            "categories": b.facts.categories,
        });
        tx.envelope(
            &Recipient::Tenant(t.clone()),
            EnvelopeKind::BreachNotice,
            &payload,
        )?;
        tx.audit("breach.notice", &target, Some(t), "")?;
    }
    Ok(())
}

/// Records a breach and notifies every affected tenant (those named, or
/// those whose instructions cover its categories) in one transaction. An
/// awareness time in the future or an unknown category writes nothing.
pub async fn report_breach(state: &AppState, actor: Actor, cmd: ReportBreach) -> Result<Breach> {
    let secrets = state.secrets.clone();
    state
        .command("breach.report", actor, move |tx| {
            let now = tx.now();
            let ReportBreach {
                facts,
                became_aware_at: aware,
                tenant_ids: named,
            } = cmd;
            if aware > now {
                return Err(Error::invalid("became_aware_at", "lies in the future"));
            }
            instructions::check_known_categories(tx.conn(), "categories", &facts.categories)?;
            let mut tenants = if named.is_empty() {
                derive_tenants(tx.conn(), &facts.categories)?
            } else {
                named
            };
            tenants.sort();
            tenants.dedup();
            let b = Breach {
                id: uuid::Uuid::new_v4().to_string(),
                facts,
                became_aware_at: aware,
                authority_deadline: authority_deadline(aware),
                tenant_ids: tenants.clone(),
                status: BreachStatus::Open,
                notified_at: None,
                reference: String::new(),
                not_required_justification: String::new(),
                delay_reasons: String::new(),
                created_at: now,
                updated_at: now,
            };
            st::insert(tx.conn(), &secrets.ring, &b)?;
            let detail = serde_json::json!({ "tenants": tenants.len() }).to_string();
            tx.audit("breach.report", &format!("breach/{}", b.id), None, &detail)?;
            notify_tenants(tx, &b, &tenants)?;
            Ok(b)
        })
        .await
}

/// Adds the facts that arrived and the newly affected tenants (who get
/// their notice in the same transaction). An update that changes nothing
/// writes nothing, not even an audit event.
pub async fn update_breach(state: &AppState, actor: Actor, cmd: UpdateBreach) -> Result<Breach> {
    let secrets = state.secrets.clone();
    state
        .command("breach.update", actor, move |tx| {
            let UpdateBreach {
                id,
                patch,
                add_tenants,
            } = cmd;
            let mut b = st::get(tx.conn(), &secrets.ring, &id)?;
            instructions::check_known_categories(tx.conn(), "categories", &patch.categories)?;
            let mut changed = apply_patch(&mut b.facts, patch);
            let added = st::add_tenants(tx.conn(), &b.id, &add_tenants)?;
            if !added.is_empty() {
                changed.push("tenant_ids");
                b.tenant_ids.extend(added.iter().cloned());
                b.tenant_ids.sort();
            }
            if changed.is_empty() {
                return Ok(b);
            }
            b.updated_at = tx.now();
            st::save(tx.conn(), &secrets.ring, &b)?;
            let detail = serde_json::json!({ "changed": changed }).to_string();
            tx.audit("breach.update", &format!("breach/{}", b.id), None, &detail)?;
            notify_tenants(tx, &b, &added)?;
            Ok(b)
        })
        .await
}

/// Closes the authority question: notified (on time or late, each its own
/// audit action) or not required. Refused until the notification's
/// required contents are complete, and only once per breach.
pub async fn notify_authority(state: &AppState, actor: Actor, cmd: NotifyAuthority) -> Result<Breach> {
    let secrets = state.secrets.clone();
    state
        .command("breach.notify_authority", actor, move |tx| {
            let now = tx.now();
            let mut b = st::get(tx.conn(), &secrets.ring, &cmd.id)?;
            let decision = cmd.decision(now)?;
            check_authority_decision(&b, &decision)?;
            let action = apply_authority_decision(&mut b, decision);
            b.updated_at = now;
            st::save(tx.conn(), &secrets.ring, &b)?;
            tx.audit(action, &format!("breach/{}", b.id), None, "")?;
            Ok(b)
        })
        .await
}

/// Loads a breach `audience` may see: a tenant sees only the breaches that
/// concern it; the others are NOT_FOUND, so existence does not leak.
pub async fn get_breach(state: &AppState, audience: &Audience, id: String) -> Result<Breach> {
    let secrets = state.secrets.clone();
    let b = state
        .store
        .read("breach.get", move |c, _| st::get(c, &secrets.ring, &id))
        .await?;
    if !audience.may_see(&b) {
        return Err(Error::not_found("breach", b.id.clone()));
    }
    Ok(b)
}

/// One page of breaches `audience` may see, with how many open breaches
/// (of those) are near or past their deadline.
#[derive(Debug)]
pub struct BreachPage {
    /// The breaches of this page.
    pub breaches: Vec<Breach>,
    /// The page's last key, for the next page token.
    pub last: Option<i64>,
    /// Open breaches near or past their deadline.
    pub near_or_past_deadline: u64,
}

/// Lists the breaches `audience` may see, optionally only the overdue ones,
/// in one read so the count matches the page's moment.
pub async fn list_breaches(
    state: &AppState,
    audience: &Audience,
    page: &Page,
    overdue_only: bool,
) -> Result<BreachPage> {
    let tenant = audience.tenant().map(str::to_owned);
    let (after, size) = (page.after, page.size);
    let secrets = state.secrets.clone();
    state
        .store
        .read("breach.list", move |c, clock| {
            let now = clock.now();
            let (breaches, last) = st::list(
                c,
                &secrets.ring,
                tenant.as_deref(),
                overdue_only.then_some(now),
                after,
                size,
            )?;
            let near_or_past_deadline = st::count_near_or_past(c, tenant.as_deref(), now)?;
            Ok(BreachPage {
                breaches,
                last,
                near_or_past_deadline,
            })
        })
        .await
}

/// The notification document of a breach `audience` may see, as of now.
pub async fn render_notification(
    state: &AppState,
    audience: &Audience,
    id: String,
    format: RenderFormat,
) -> Result<Rendered> {
    let b = get_breach(state, audience, id).await?;
    render(&b, format, state.store.clock().now())
}
