-- The app's own events in the audit chain (SQLite; claim APP-4), and the tenant tokens its
-- background work acts with (APP-8).

-- What only an app's event carries (the service that wrote it, every target, its
-- metadata), as the exact JSON text the chain hashes; absent on Palisade's own events.
ALTER TABLE audit_events ADD COLUMN app TEXT;

-- An Idempotency-Key the app sent with an event write, kept 24 hours: the same key and
-- body answer the same events, another body is refused.
CREATE TABLE app_event_keys (
    service_id   TEXT NOT NULL,
    key          TEXT NOT NULL,
    body_hash    BLOB NOT NULL CHECK (length(body_hash) = 32),
    answer       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (service_id, key)
);
CREATE INDEX app_event_keys_by_age ON app_event_keys (created_at);

-- Five-minute credentials for one tenant, obtained with a service credential. Only a
-- SHA-256 of each is stored.
CREATE TABLE tenant_tokens (
    id           TEXT PRIMARY KEY NOT NULL,
    service_id   TEXT NOT NULL REFERENCES service_credentials (id),
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    secret_hash  BLOB NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    issued_at    TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX tenant_tokens_by_expiry ON tenant_tokens (tenant_id, expires_at);
