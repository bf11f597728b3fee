-- Push delivery (docs/webhooks.md): a tenant's one webhook, and one
-- delivery row per envelope pushed to it. The secrets are sealed with the
-- identifier key ring (bound to the webhook), never stored in the clear.
-- `next_cursor` is the last envelope cursor of the tenant's inbox the
-- delivery job has turned into deliveries; the lease columns let one
-- replica at a time work a webhook.

CREATE TABLE webhooks (
    id                        TEXT PRIMARY KEY,
    tenant_id                 TEXT NOT NULL UNIQUE,
    url                       TEXT NOT NULL,
    description               TEXT NOT NULL DEFAULT '',
    secret_key_id             TEXT NOT NULL,
    secret_sealed             TEXT NOT NULL,
    previous_secret_key_id    TEXT,
    previous_secret_sealed    TEXT,
    previous_secret_until_us  BIGINT,
    next_cursor               BIGINT NOT NULL,
    lease_owner               TEXT,
    lease_until_us            BIGINT,
    created_at_us             BIGINT NOT NULL,
    updated_at_us             BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    seq                     BIGINT PRIMARY KEY,
    id                      TEXT NOT NULL UNIQUE,
    webhook_id              TEXT NOT NULL,
    tenant_id               TEXT NOT NULL,
    envelope_id             TEXT NOT NULL,
    envelope_cursor         BIGINT NOT NULL,
    kind                    TEXT NOT NULL,
    status                  TEXT NOT NULL,
    attempts                INTEGER NOT NULL DEFAULT 0,
    last_status_code        INTEGER,
    last_error              TEXT NOT NULL DEFAULT '',
    next_attempt_at_us      BIGINT,
    expires_at_us           BIGINT NOT NULL,
    delivered_at_us         BIGINT,
    created_at_us           BIGINT NOT NULL,
    updated_at_us           BIGINT NOT NULL,
    UNIQUE (webhook_id, envelope_id)
);
-- What the delivery job looks for: a webhook's due deliveries, in cursor order.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, envelope_cursor)
  WHERE status = 'pending';
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, envelope_cursor);
CREATE SEQUENCE webhook_deliveries_seq;
