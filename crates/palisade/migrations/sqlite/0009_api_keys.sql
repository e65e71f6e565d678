-- API keys (SQLite; claims KEY-1 to KEY-5). Only a SHA-256 of each secret is stored; a
-- rotation keeps the previous secret's hash until its overlap window ends. Rate limits live
-- in the server's memory on SQLite (one server per database file).
CREATE TABLE api_keys (
    id                    TEXT PRIMARY KEY NOT NULL,
    tenant_id             TEXT NOT NULL REFERENCES tenants (id),
    application_id        TEXT REFERENCES applications (id) ON DELETE SET NULL,
    name                  TEXT NOT NULL,
    role                  TEXT NOT NULL CHECK (role IN ('admin', 'manager', 'member', 'viewer')),
    scopes                TEXT,
    secret_hash           BLOB NOT NULL CHECK (length(secret_hash) = 32),
    previous_secret_hash  BLOB CHECK (length(previous_secret_hash) = 32),
    previous_expires_at   TEXT,
    expires_at            TEXT,
    created_by            TEXT NOT NULL REFERENCES users (id),
    created_at            TEXT NOT NULL,
    rotated_at            TEXT,
    revoked_at            TEXT,
    last_used_at          TEXT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);
CREATE INDEX api_keys_by_application ON api_keys (tenant_id, application_id);

ALTER TABLE audit_events ADD COLUMN actor_key_id TEXT;

-- The same view as on PostgreSQL (where it is the only way to read a key before its tenant
-- is known), so one query serves both backends.
CREATE VIEW presented_api_keys AS
    SELECT k.*, t.name AS tenant_name, t.suspended_at AS tenant_suspended_at
    FROM api_keys k JOIN tenants t ON t.id = k.tenant_id;
