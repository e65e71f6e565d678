-- Service credentials (PostgreSQL; claim APP-2): the app's backend calls the integration
-- endpoints with one. Deployment-wide, not tenant data: the operator's CLI (the platform
-- role) creates and revokes them; the server only reads them. Only a SHA-256 of each
-- credential is stored.
CREATE TABLE service_credentials (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    secret_hash  bytea NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
GRANT SELECT ON service_credentials TO palisade_runtime;
GRANT SELECT, INSERT ON service_credentials TO palisade_platform;
GRANT UPDATE (revoked_at) ON service_credentials TO palisade_platform;
