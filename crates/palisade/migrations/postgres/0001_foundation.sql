-- The foundation schema (PostgreSQL). Applied by the schema owner; the service connects as
-- a login role in the group palisade_runtime, which owns nothing and lacks BYPASSRLS.
-- Every table of tenant data has tenant_id, an index led by it, and row-level security
-- (ENABLE + FORCE) bound to the transaction-local setting palisade.tenant_id (claim TEN-3).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'palisade_runtime') THEN
        RAISE EXCEPTION 'role palisade_runtime does not exist; create it first (docs/postgres.md)';
    END IF;
END
$$;

-- The tenant bound to the current transaction, or NULL (which matches no row).
-- Policies call it as (SELECT palisade_current_tenant()) so it is evaluated once per statement.
CREATE FUNCTION palisade_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $fn$ SELECT nullif(current_setting('palisade.tenant_id', true), '')::uuid $fn$;

-- A tenant (organisation): the unit of isolation. Its own row is its tenant data.
CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = (SELECT palisade_current_tenant()))
    WITH CHECK (id = (SELECT palisade_current_tenant()));

-- A person who can sign in. Not tenant data: one user may belong to several tenants
-- through memberships. The email is stored lower-cased and is unique.
CREATE TABLE users (
    id                  uuid PRIMARY KEY,
    email               text NOT NULL UNIQUE,
    -- PHC string (argon2id); never the password.
    password_hash       text NOT NULL,
    email_verified_at   timestamptz,
    -- Tokens issued before this instant are refused (claim ID-7).
    tokens_valid_after  timestamptz NOT NULL,
    created_at          timestamptz NOT NULL
);

-- A user's role in a tenant.
CREATE TABLE memberships (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    user_id     uuid NOT NULL REFERENCES users (id),
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'manager', 'member', 'viewer')),
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id);
ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memberships
    USING (tenant_id = (SELECT palisade_current_tenant()))
    WITH CHECK (tenant_id = (SELECT palisade_current_tenant()));

-- The simple audit trail of the foundation; the hash-chained log replaces it.
CREATE TABLE audit_events (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    occurred_at   timestamptz NOT NULL,
    actor_user_id uuid,
    action        text NOT NULL,
    target_type   text NOT NULL,
    target_id     text NOT NULL,
    outcome       text NOT NULL,
    ip            text,
    user_agent    text,
    request_id    text NOT NULL
);
CREATE INDEX audit_events_by_tenant_time ON audit_events (tenant_id, occurred_at);
ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
    USING (tenant_id = (SELECT palisade_current_tenant()))
    WITH CHECK (tenant_id = (SELECT palisade_current_tenant()));

-- The runtime role reads and writes data, and may only append to the audit trail.
GRANT USAGE ON SCHEMA public TO palisade_runtime;
GRANT EXECUTE ON FUNCTION palisade_current_tenant() TO palisade_runtime;
GRANT SELECT, INSERT, UPDATE ON tenants, users TO palisade_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON memberships TO palisade_runtime;
GRANT SELECT, INSERT ON audit_events TO palisade_runtime;
