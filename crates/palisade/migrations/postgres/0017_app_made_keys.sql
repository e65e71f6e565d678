-- Keys the app's backend makes for its customers under a tenant token (PostgreSQL; claim
-- APP-5): made by a service credential, not by a member, so exactly one of the two
-- creators is named.
ALTER TABLE api_keys ALTER COLUMN created_by DROP NOT NULL;
ALTER TABLE api_keys ADD COLUMN created_by_service uuid REFERENCES service_credentials (id);
ALTER TABLE api_keys ADD CONSTRAINT api_keys_one_creator
    CHECK ((created_by IS NULL) <> (created_by_service IS NULL));
-- The view lists the columns it was made with: remade with the new one, as 0016 did.
DROP VIEW presented_api_keys;
CREATE VIEW presented_api_keys WITH (security_barrier) AS
    SELECT k.*, t.name AS tenant_name, t.suspended_at AS tenant_suspended_at
    FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
    WHERE k.id = (SELECT palisade_current_key());
GRANT SELECT ON presented_api_keys TO palisade_runtime;
