-- What a tenant admin stores with a customer's key (PostgreSQL; claim APP-5): owner-set
-- metadata, JSON text, and the rate limit key verification applies when the app names
-- none (requests per window).
ALTER TABLE api_keys ADD COLUMN meta text;
ALTER TABLE api_keys ADD COLUMN ratelimit_limit bigint;
ALTER TABLE api_keys ADD COLUMN ratelimit_window_seconds bigint;
-- The view of a presented key lists its columns as they were when it was made: remade
-- with the new ones, as 0009 made it.
DROP VIEW presented_api_keys;
CREATE VIEW presented_api_keys WITH (security_barrier) AS
    SELECT k.*, t.name AS tenant_name, t.suspended_at AS tenant_suspended_at
    FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
    WHERE k.id = (SELECT palisade_current_key());
GRANT SELECT ON presented_api_keys TO palisade_runtime;
