-- The app's own events in the audit chain (PostgreSQL; claim APP-4), and the tenant tokens
-- its background work acts with (APP-8).

-- What only an app's event carries (the service that wrote it, every target, its
-- metadata), as the exact JSON text the chain hashes; absent on Palisade's own events.
ALTER TABLE audit_events ADD COLUMN app text;

-- An Idempotency-Key the app sent with an event write, kept 24 hours: the same key and
-- body answer the same events, another body is refused. Deployment-wide, like the service
-- credential that owns it: the answer names event ids and hashes, never their content.
CREATE TABLE app_event_keys (
    service_id   uuid NOT NULL REFERENCES service_credentials (id),
    key          text NOT NULL,
    body_hash    bytea NOT NULL CHECK (length(body_hash) = 32),
    answer       text NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (service_id, key)
);
CREATE INDEX app_event_keys_by_age ON app_event_keys (created_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON app_event_keys TO palisade_runtime;

-- Five-minute credentials for one tenant, obtained with a service credential. Only a
-- SHA-256 of each is stored. Tenant data under row-level security like the keys: issued
-- and pruned in the tenant's scope; a presented token is read before its tenant is known
-- by the id the transaction binds in palisade.tenant_token_id, as a presented key is.
CREATE TABLE tenant_tokens (
    id           uuid PRIMARY KEY,
    service_id   uuid NOT NULL REFERENCES service_credentials (id),
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    secret_hash  bytea NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    issued_at    timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX tenant_tokens_by_expiry ON tenant_tokens (tenant_id, expires_at);
CREATE FUNCTION palisade_current_tenant_token() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $fn$ SELECT nullif(current_setting('palisade.tenant_token_id', true), '')::uuid $fn$;
GRANT EXECUTE ON FUNCTION palisade_current_tenant_token() TO palisade_runtime;
ALTER TABLE tenant_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_tokens
    USING (tenant_id = (SELECT palisade_current_tenant()))
    WITH CHECK (tenant_id = (SELECT palisade_current_tenant()));
CREATE POLICY presented_token ON tenant_tokens FOR SELECT
    USING (id = (SELECT palisade_current_tenant_token())
           AND (SELECT palisade_current_tenant()) IS NULL);
GRANT SELECT, INSERT, DELETE ON tenant_tokens TO palisade_runtime;
