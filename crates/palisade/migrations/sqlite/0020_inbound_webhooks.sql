-- Webhooks in (SQLite; claim HOOK-5). Every verified inbound event, once per source and the
-- sender's event id, with the message that handed it on to the source's tenant: a replay
-- finds its row and is acknowledged without a second message.
CREATE TABLE webhook_inbound_events (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    source         TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    received_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, source, event_id)
);
