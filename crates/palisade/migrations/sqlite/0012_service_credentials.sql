-- Service credentials (SQLite; claim APP-2): the app's backend calls the integration
-- endpoints with one. Created, listed and revoked by the operator's CLI only; only a
-- SHA-256 of each credential is stored.
CREATE TABLE service_credentials (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    secret_hash  BLOB NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
