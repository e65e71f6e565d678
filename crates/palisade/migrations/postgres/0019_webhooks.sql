-- Webhooks out (PostgreSQL; claims HOOK-1 to HOOK-4). A tenant's endpoints, what each is
-- subscribed to and its signing secrets (sealed by the tenant's data key, like the vault's
-- values), the messages sent (the outbox, written in the change's own transaction) and
-- every delivery attempt: tenant rows under row-level security. The delivery queue holds
-- ids and times only, so every instance's dispatcher claims from it across tenants.
CREATE TABLE webhook_endpoints (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    url              text NOT NULL,
    description      text NOT NULL,
    enabled          boolean NOT NULL,
    -- Why it is disabled: by a member ('manual') or after failing too long ('failing').
    disabled_reason  text CHECK (disabled_reason IN ('manual', 'failing')),
    -- When its current run of failures began (NULL: the last attempt succeeded).
    failing_since_us bigint,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CHECK (enabled = (disabled_reason IS NULL))
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id);

CREATE TABLE webhook_subscriptions (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_type  text NOT NULL,
    PRIMARY KEY (endpoint_id, event_type)
);
CREATE INDEX webhook_subscriptions_by_type ON webhook_subscriptions (tenant_id, event_type);

CREATE TABLE webhook_signing_secrets (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- The tenant's DEK version that sealed it: nonce || ciphertext || tag.
    dek_version integer NOT NULL CHECK (dek_version > 0),
    sealed      bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    -- A replaced secret signs beside its successor until then (the rotation's overlap).
    expires_us  bigint
);
CREATE INDEX webhook_signing_secrets_by_endpoint ON webhook_signing_secrets (endpoint_id);

CREATE TABLE webhook_messages (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    event_type      text NOT NULL,
    -- The body every endpoint receives, exactly as signed.
    body            text NOT NULL,
    -- The app's Idempotency-Key and the SHA-256 of the request it came with.
    idempotency_key text,
    request_sha256  bytea,
    created_at_us   bigint NOT NULL,
    UNIQUE (tenant_id, idempotency_key)
);

-- One row per (message, endpoint): ids and times only.
CREATE TABLE webhook_deliveries (
    message_id      uuid NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id       uuid NOT NULL,
    state           text NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_us bigint NOT NULL,
    -- A dispatcher holds it until then; a crashed one's claim lapses and another retries.
    leased_until_us bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_us) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, state);
GRANT SELECT, INSERT, UPDATE ON webhook_deliveries TO palisade_runtime;

CREATE TABLE webhook_attempts (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    endpoint_id  uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    message_id   uuid NOT NULL,
    attempted_us bigint NOT NULL,
    succeeded    boolean NOT NULL,
    -- The receiver's status; NULL when no answer came (refused, timed out, unreachable).
    status_code  integer,
    latency_ms   integer NOT NULL,
    -- The answer's first KiB, or why there was none.
    response     text NOT NULL
);
CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts (endpoint_id, attempted_us DESC);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['webhook_endpoints', 'webhook_subscriptions',
        'webhook_signing_secrets', 'webhook_messages', 'webhook_attempts'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = (SELECT palisade_current_tenant()))
            WITH CHECK (tenant_id = (SELECT palisade_current_tenant()))', t);
    END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoints, webhook_subscriptions,
    webhook_signing_secrets TO palisade_runtime;
GRANT SELECT, INSERT ON webhook_messages, webhook_attempts TO palisade_runtime;
