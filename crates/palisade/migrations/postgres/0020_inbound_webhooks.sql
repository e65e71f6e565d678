-- Webhooks in (PostgreSQL; claim HOOK-5). Every verified inbound event, once per source
-- and the sender's event id, with the message that handed it on to the source's tenant:
-- a replay finds its row and is acknowledged without a second message.
CREATE TABLE webhook_inbound_events (
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    source         text NOT NULL,
    event_id       text NOT NULL,
    message_id     uuid NOT NULL,
    received_at_us bigint NOT NULL,
    PRIMARY KEY (tenant_id, source, event_id)
);
ALTER TABLE webhook_inbound_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_inbound_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_inbound_events
    USING (tenant_id = (SELECT palisade_current_tenant()))
    WITH CHECK (tenant_id = (SELECT palisade_current_tenant()));
GRANT SELECT, INSERT ON webhook_inbound_events TO palisade_runtime;
