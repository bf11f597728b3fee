//! `WebhookService`: a tenant manages its own webhook and reads and
//! redelivers its own deliveries; compliance any tenant's. Thin handlers:
//! scope, parse, service, convert.

use tonic::{Request, Response, Status};

use crate::auth::Role;
use crate::db::pipeline::Actor;
use crate::error::Error;
use crate::outbound::policy::UrlPolicy;
use crate::proto::v1 as pb;
use crate::proto::v1::webhook_service_server::WebhookService;
use crate::rpc::convert::ts;
use crate::rpc::page::Page;
use crate::rpc::{AppState, Scope};
use crate::webhooks::model::{DeliveryStatus, RetryPolicy, Secret, SetWebhook};
use crate::webhooks::repo::{Delivery, Webhook};
use crate::webhooks::service;

/// The webhook service.
#[derive(Debug, Clone)]
pub struct Webhooks {
    state: AppState,
    policy: UrlPolicy,
    retry: RetryPolicy,
}

impl Webhooks {
    /// A service over `state` that accepts URLs `policy` allows and gives
    /// redeliveries `retry`'s maximum age.
    pub fn new(state: AppState, policy: UrlPolicy, retry: RetryPolicy) -> Self {
        Self { state, policy, retry }
    }
}

/// The tenant a caller is confined to: its own for a tenant token, none
/// (any tenant) for the others the policy table lets through.
fn own_tenant(scope: &Scope) -> Option<String> {
    (scope.caller.role == Role::Tenant).then(|| scope.tenant.clone().unwrap_or_default())
}

fn webhook_to_pb(w: Webhook, secret: Option<Secret>) -> pb::Webhook {
    pb::Webhook {
        id: w.id,
        tenant_id: w.tenant_id,
        url: w.url,
        description: w.description,
        secret: secret.map(|s| s.expose()).unwrap_or_default(),
        created_at: Some(ts(w.created_at)),
        updated_at: Some(ts(w.updated_at)),
        previous_secret_expires_at: w.previous_secret_until.map(ts),
    }
}

fn status_to_pb(s: DeliveryStatus) -> pb::WebhookDeliveryStatus {
    match s {
        DeliveryStatus::Pending => pb::WebhookDeliveryStatus::Pending,
        DeliveryStatus::Delivered => pb::WebhookDeliveryStatus::Delivered,
        DeliveryStatus::Failed => pb::WebhookDeliveryStatus::Failed,
    }
}

fn status_from_pb(v: i32) -> Result<Option<DeliveryStatus>, Error> {
    match pb::WebhookDeliveryStatus::try_from(v) {
        Ok(pb::WebhookDeliveryStatus::Unspecified) => Ok(None),
        Ok(pb::WebhookDeliveryStatus::Pending) => Ok(Some(DeliveryStatus::Pending)),
        Ok(pb::WebhookDeliveryStatus::Delivered) => Ok(Some(DeliveryStatus::Delivered)),
        Ok(pb::WebhookDeliveryStatus::Failed) => Ok(Some(DeliveryStatus::Failed)),
        Err(_) => Err(Error::invalid("status", "is not a delivery status")),
    }
}

fn delivery_to_pb(d: Delivery) -> pb::WebhookDelivery {
    pb::WebhookDelivery {
        id: d.id,
        envelope_id: d.envelope_id,
        status: status_to_pb(d.status) as i32,
        attempts: u32::try_from(d.attempts).unwrap_or(0),
        last_status_code: d.last_status_code.unwrap_or(0),
        last_error: d.last_error,
        next_attempt_at: d.next_attempt_at.map(ts),
        delivered_at: d.delivered_at.map(ts),
        kind: d.kind,
        created_at: Some(ts(d.created_at)),
    }
}

#[tonic::async_trait]
impl WebhookService for Webhooks {
    async fn set_webhook(
        &self,
        req: Request<pb::SetWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        let (caller, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let r = req.into_inner();
        let cmd = SetWebhook::parse(&r.url, &r.description, self.policy)?;
        let (w, secret) = service::set_webhook(&self.state, Actor::of(&caller), tenant, cmd).await?;
        Ok(Response::new(webhook_to_pb(w, secret)))
    }

    async fn get_webhook(
        &self,
        req: Request<pb::GetWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        let (_, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let w = service::get_webhook(&self.state.store, tenant).await?;
        Ok(Response::new(webhook_to_pb(w, None)))
    }

    async fn delete_webhook(
        &self,
        req: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::DeleteWebhookResponse>, Status> {
        let (caller, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        service::delete_webhook(&self.state, Actor::of(&caller), tenant).await?;
        Ok(Response::new(pb::DeleteWebhookResponse {}))
    }

    async fn rotate_webhook_secret(
        &self,
        req: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        let (caller, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let (w, secret) = service::rotate_secret(&self.state, Actor::of(&caller), tenant).await?;
        Ok(Response::new(webhook_to_pb(w, Some(secret))))
    }

    async fn list_webhook_deliveries(
        &self,
        req: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        let (_, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let r = req.into_inner();
        let status = status_from_pb(r.status)?;
        let page = Page::parse(r.page_size, &r.page_token)?;
        let (found, last) = service::list_deliveries(&self.state.store, tenant, status, &page).await?;
        Ok(Response::new(pb::ListWebhookDeliveriesResponse {
            next_page_token: page.next_token(found.len(), last),
            deliveries: found.into_iter().map(delivery_to_pb).collect(),
        }))
    }

    async fn redeliver_webhook(
        &self,
        req: Request<pb::RedeliverWebhookRequest>,
    ) -> Result<Response<pb::WebhookDelivery>, Status> {
        let scope = self.state.scope(&req, "").await?;
        let id = req.into_inner().delivery_id.trim().to_owned();
        if id.is_empty() {
            return Err(Error::invalid("delivery_id", "is required").into());
        }
        let d = service::redeliver(
            &self.state,
            Actor::of(&scope.caller),
            own_tenant(&scope),
            id,
            self.retry,
        )
        .await?;
        Ok(Response::new(delivery_to_pb(d)))
    }
}
