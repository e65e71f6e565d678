-- Webhooks' history is kept for `webhooks.retention_days` (PostgreSQL): upkeep removes
-- attempts, finished messages (their deliveries go by the foreign key's cascade) and
-- inbound receipts older than that, tenant by tenant under row-level security. The runtime
-- role may now delete those rows of the tenant it binds, and nothing else new.
CREATE INDEX webhook_messages_by_age ON webhook_messages (tenant_id, created_at_us);
CREATE INDEX webhook_attempts_by_age ON webhook_attempts (tenant_id, attempted_us);
CREATE INDEX webhook_inbound_events_by_age ON webhook_inbound_events (tenant_id, received_at_us);
GRANT DELETE ON webhook_messages, webhook_attempts, webhook_inbound_events TO palisade_runtime;
