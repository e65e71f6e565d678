-- Webhooks' history is kept for `webhooks.retention_days` (SQLite): upkeep removes attempts,
-- finished messages (with their deliveries) and inbound receipts older than that, tenant by
-- tenant, by these indexes.
CREATE INDEX webhook_messages_by_age ON webhook_messages (tenant_id, created_at_us);
CREATE INDEX webhook_attempts_by_age ON webhook_attempts (tenant_id, attempted_us);
CREATE INDEX webhook_inbound_events_by_age ON webhook_inbound_events (tenant_id, received_at_us);
