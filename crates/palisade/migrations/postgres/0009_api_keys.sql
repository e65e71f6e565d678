-- API keys (PostgreSQL; claims KEY-1 to KEY-5). Only a SHA-256 of each secret is stored; a
-- rotation keeps the previous secret's hash until its overlap window ends.
CREATE TABLE api_keys (
    id                    uuid PRIMARY KEY,
    tenant_id             uuid NOT NULL REFERENCES tenants (id),
    application_id        uuid REFERENCES applications (id) ON DELETE SET NULL,
    name                  text NOT NULL,
    role                  text NOT NULL CHECK (role IN ('admin', 'manager', 'member', 'viewer')),
    -- Space-separated action names narrowing the role; NULL: everything the role allows.
    scopes                text,
    secret_hash           bytea NOT NULL CHECK (length(secret_hash) = 32),
    previous_secret_hash  bytea CHECK (length(previous_secret_hash) = 32),
    previous_expires_at   timestamptz,
    expires_at            timestamptz,
    created_by            uuid NOT NULL REFERENCES users (id),
    created_at            timestamptz NOT NULL,
    rotated_at            timestamptz,
    revoked_at            timestamptz,
    last_used_at          timestamptz
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);
CREATE INDEX api_keys_by_application ON api_keys (tenant_id, application_id);
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = (SELECT palisade_current_tenant()))
    WITH CHECK (tenant_id = (SELECT palisade_current_tenant()));
GRANT SELECT, INSERT, UPDATE ON api_keys TO palisade_runtime;

-- Who acted, when it was a key rather than a person (claim KEY-3: the id, never the secret).
ALTER TABLE audit_events ADD COLUMN actor_key_id uuid;

-- Rate limits (claim WEB-5): one GCRA "theoretical arrival time" per (route, principal), in
-- microseconds since the epoch, shared by every instance. Unlogged: losing it in a crash
-- only forgives some requests, and no write-ahead log is paid per request.
CREATE UNLOGGED TABLE rate_limits (
    bucket  text PRIMARY KEY,
    tat     bigint NOT NULL
);
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limits TO palisade_runtime;

-- A presented key is read before its tenant is known, as a user's memberships are
-- (0008): through a view owned by the schema owner, whose extra policies see only the key
-- whose id the transaction binds in palisade.api_key_id, and that key's tenant row.
CREATE FUNCTION palisade_current_key() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $fn$ SELECT nullif(current_setting('palisade.api_key_id', true), '')::uuid $fn$;
GRANT EXECUTE ON FUNCTION palisade_current_key() TO palisade_runtime;
CREATE POLICY presented_key ON api_keys FOR SELECT TO CURRENT_USER
    USING (id = (SELECT palisade_current_key())
           AND (SELECT palisade_current_tenant()) IS NULL);
CREATE POLICY presented_key_tenant ON tenants FOR SELECT TO CURRENT_USER
    USING ((SELECT palisade_current_tenant()) IS NULL
           AND id IN (SELECT k.tenant_id FROM api_keys k
                      WHERE k.id = (SELECT palisade_current_key())));
CREATE VIEW presented_api_keys WITH (security_barrier) AS
    SELECT k.*, t.name AS tenant_name, t.suspended_at AS tenant_suspended_at
    FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
    WHERE k.id = (SELECT palisade_current_key());
GRANT SELECT ON presented_api_keys TO palisade_runtime;
