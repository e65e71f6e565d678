-- The vault (SQLite; claims SEC-1, SEC-3). Each tenant's data key (DEK) is stored only
-- wrapped by a key-encryption key (KEK) held outside the database, with the KEK's version;
-- each secret's versions are sealed by its tenant's DEK, bound to tenant, secret and
-- version. Nothing here opens without the KEK.
CREATE TABLE tenant_data_keys (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    version      INTEGER NOT NULL CHECK (version > 0),
    kek_version  INTEGER NOT NULL CHECK (kek_version > 0),
    wrapped      BLOB,
    created_at   TEXT NOT NULL,
    destroyed_at TEXT,
    PRIMARY KEY (tenant_id, version),
    CHECK ((wrapped IS NULL) = (destroyed_at IS NOT NULL))
);
CREATE INDEX tenant_data_keys_by_kek ON tenant_data_keys (kek_version);

CREATE TABLE secrets (
    id           TEXT PRIMARY KEY NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    version      INTEGER NOT NULL CHECK (version > 0),
    expires_at   TEXT,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE secret_versions (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    secret_id   TEXT NOT NULL REFERENCES secrets (id),
    version     INTEGER NOT NULL CHECK (version > 0),
    dek_version INTEGER NOT NULL CHECK (dek_version > 0),
    sealed      BLOB NOT NULL,
    hint        TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (secret_id, version)
);

-- The same view as on PostgreSQL, where it is the re-wrap's only way to see keys across
-- tenants (tenants and versions, never the wrapped bytes).
CREATE TABLE platform_data_keys (
    version      INTEGER PRIMARY KEY NOT NULL CHECK (version > 0),
    kek_version  INTEGER NOT NULL CHECK (kek_version > 0),
    wrapped      BLOB NOT NULL,
    created_at   TEXT NOT NULL
);

CREATE VIEW vault_data_keys AS
    SELECT tenant_id, version, kek_version FROM tenant_data_keys WHERE wrapped IS NOT NULL
    UNION ALL
    SELECT NULL, version, kek_version FROM platform_data_keys;
