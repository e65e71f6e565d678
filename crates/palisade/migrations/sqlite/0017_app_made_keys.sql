-- Keys the app's backend makes for its customers under a tenant token (SQLite; claim
-- APP-5): made by a service credential, not by a member, so exactly one of the two
-- creators is named. SQLite cannot drop a NOT NULL in place: the table is rebuilt (no
-- table references it; the view that reads it is remade).
DROP VIEW presented_api_keys;
CREATE TABLE api_keys_rebuilt (
    id                        TEXT PRIMARY KEY NOT NULL,
    tenant_id                 TEXT NOT NULL REFERENCES tenants (id),
    application_id            TEXT REFERENCES applications (id) ON DELETE SET NULL,
    name                      TEXT NOT NULL,
    role                      TEXT NOT NULL CHECK (role IN ('admin', 'manager', 'member', 'viewer')),
    scopes                    TEXT,
    secret_hash               BLOB NOT NULL CHECK (length(secret_hash) = 32),
    previous_secret_hash      BLOB CHECK (length(previous_secret_hash) = 32),
    previous_expires_at       TEXT,
    expires_at                TEXT,
    created_by                TEXT REFERENCES users (id),
    created_at                TEXT NOT NULL,
    rotated_at                TEXT,
    revoked_at                TEXT,
    last_used_at              TEXT,
    meta                      TEXT,
    ratelimit_limit           INTEGER,
    ratelimit_window_seconds  INTEGER,
    created_by_service        TEXT REFERENCES service_credentials (id),
    CHECK ((created_by IS NULL) <> (created_by_service IS NULL))
);
INSERT INTO api_keys_rebuilt
    (id, tenant_id, application_id, name, role, scopes, secret_hash, previous_secret_hash,
     previous_expires_at, expires_at, created_by, created_at, rotated_at, revoked_at,
     last_used_at, meta, ratelimit_limit, ratelimit_window_seconds)
SELECT id, tenant_id, application_id, name, role, scopes, secret_hash, previous_secret_hash,
       previous_expires_at, expires_at, created_by, created_at, rotated_at, revoked_at,
       last_used_at, meta, ratelimit_limit, ratelimit_window_seconds
FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_rebuilt RENAME TO api_keys;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);
CREATE INDEX api_keys_by_application ON api_keys (tenant_id, application_id);
CREATE VIEW presented_api_keys AS
    SELECT k.*, t.name AS tenant_name, t.suspended_at AS tenant_suspended_at
    FROM api_keys k JOIN tenants t ON t.id = k.tenant_id;
