-- The vault (PostgreSQL; claims SEC-1, SEC-3). Each tenant's data key (DEK) is stored only
-- wrapped by a key-encryption key (KEK) held outside the database, with the KEK's version;
-- each secret's versions are sealed by its tenant's DEK, bound to tenant, secret and
-- version. Nothing here opens without the KEK.
CREATE TABLE tenant_data_keys (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    -- A tenant's DEKs by version; new values are sealed by the newest.
    version      integer NOT NULL CHECK (version > 0),
    kek_version  integer NOT NULL CHECK (kek_version > 0),
    -- NULL once destroyed (crypto-shredding): what it sealed opens no more.
    wrapped      bytea,
    created_at   timestamptz NOT NULL,
    destroyed_at timestamptz,
    PRIMARY KEY (tenant_id, version),
    CHECK ((wrapped IS NULL) = (destroyed_at IS NOT NULL))
);
-- The re-wrap after a KEK rotation finds what an old KEK still wraps.
CREATE INDEX tenant_data_keys_by_kek ON tenant_data_keys (kek_version);
ALTER TABLE tenant_data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_data_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_data_keys
    USING (tenant_id = (SELECT palisade_current_tenant()))
    WITH CHECK (tenant_id = (SELECT palisade_current_tenant()));
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_data_keys TO palisade_runtime;

CREATE TABLE secrets (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    name         text NOT NULL,
    description  text NOT NULL,
    -- The version reads and reveals use unless they name another.
    version      integer NOT NULL CHECK (version > 0),
    expires_at   timestamptz,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    UNIQUE (tenant_id, name)
);
ALTER TABLE secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON secrets
    USING (tenant_id = (SELECT palisade_current_tenant()))
    WITH CHECK (tenant_id = (SELECT palisade_current_tenant()));
GRANT SELECT, INSERT, UPDATE, DELETE ON secrets TO palisade_runtime;

CREATE TABLE secret_versions (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    secret_id   uuid NOT NULL REFERENCES secrets (id),
    version     integer NOT NULL CHECK (version > 0),
    -- The tenant's DEK version that sealed it: nonce || ciphertext || tag.
    dek_version integer NOT NULL CHECK (dek_version > 0),
    sealed      bytea NOT NULL,
    -- The value's last four characters, kept only for values of 16 or more.
    hint        text,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (secret_id, version)
);
ALTER TABLE secret_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE secret_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON secret_versions
    USING (tenant_id = (SELECT palisade_current_tenant()))
    WITH CHECK (tenant_id = (SELECT palisade_current_tenant()));
GRANT SELECT, INSERT, DELETE ON secret_versions TO palisade_runtime;

-- Crypto-shredding is the operator's (`palisade admin tenants destroy-keys`): it clears a
-- tenant's wrapped keys, and nothing else of the vault.
GRANT SELECT, UPDATE (wrapped, destroyed_at) ON tenant_data_keys TO palisade_platform;

-- Palisade's own data key (not a tenant's): it seals the signing keys and TOTP secrets the
-- master key file sealed before. Deployment-wide, like the signing keys.
CREATE TABLE platform_data_keys (
    version      integer PRIMARY KEY CHECK (version > 0),
    kek_version  integer NOT NULL CHECK (kek_version > 0),
    wrapped      bytea NOT NULL,
    created_at   timestamptz NOT NULL
);
GRANT SELECT, INSERT, UPDATE ON platform_data_keys TO palisade_runtime;

-- The re-wrap after a KEK rotation (SEC-2) finds, across tenants, which live data keys an
-- older KEK still wraps: through this owner-owned view, which shows the keys' tenants and
-- versions only, never their wrapped bytes. Each re-wrap then runs bound to its tenant.
CREATE POLICY vault_data_keys ON tenant_data_keys FOR SELECT TO CURRENT_USER
    USING ((SELECT palisade_current_tenant()) IS NULL);
CREATE VIEW vault_data_keys WITH (security_barrier) AS
    SELECT tenant_id, version, kek_version FROM tenant_data_keys WHERE wrapped IS NOT NULL
    UNION ALL
    SELECT NULL::uuid, version, kek_version FROM platform_data_keys;
GRANT SELECT ON vault_data_keys TO palisade_runtime;
