-- Webhooks out (SQLite; claims HOOK-1 to HOOK-4): a tenant's endpoints, their
-- subscriptions and signing secrets (sealed by the tenant's data key), the messages sent
-- (the outbox, written in the change's own transaction), the delivery queue and every
-- attempt. Times the dispatcher compares are microseconds since the epoch.
CREATE TABLE webhook_endpoints (
    id               TEXT PRIMARY KEY NOT NULL,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    url              TEXT NOT NULL,
    description      TEXT NOT NULL,
    enabled          INTEGER NOT NULL,
    disabled_reason  TEXT CHECK (disabled_reason IN ('manual', 'failing')),
    failing_since_us INTEGER,
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    CHECK (enabled = (disabled_reason IS NULL))
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id);

CREATE TABLE webhook_subscriptions (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_type  TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, event_type)
);
CREATE INDEX webhook_subscriptions_by_type ON webhook_subscriptions (tenant_id, event_type);

CREATE TABLE webhook_signing_secrets (
    id          TEXT PRIMARY KEY NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    dek_version INTEGER NOT NULL CHECK (dek_version > 0),
    sealed      BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    expires_us  INTEGER
);
CREATE INDEX webhook_signing_secrets_by_endpoint ON webhook_signing_secrets (endpoint_id);

CREATE TABLE webhook_messages (
    id              TEXT PRIMARY KEY NOT NULL,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    event_type      TEXT NOT NULL,
    body            TEXT NOT NULL,
    idempotency_key TEXT,
    request_sha256  BLOB,
    created_at_us   INTEGER NOT NULL,
    UNIQUE (tenant_id, idempotency_key)
);

CREATE TABLE webhook_deliveries (
    message_id      TEXT NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id       TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    leased_until_us INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_us) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, state);

CREATE TABLE webhook_attempts (
    id           TEXT PRIMARY KEY NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    endpoint_id  TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    message_id   TEXT NOT NULL,
    attempted_us INTEGER NOT NULL,
    succeeded    INTEGER NOT NULL,
    status_code  INTEGER,
    latency_ms   INTEGER NOT NULL,
    response     TEXT NOT NULL
);
CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts (endpoint_id, attempted_us DESC);
