DROP SEQUENCE webhook_deliveries_seq;
DROP TABLE webhook_deliveries;
DROP TABLE webhooks;
