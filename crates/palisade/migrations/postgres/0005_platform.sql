-- Platform operations (PostgreSQL): a suspended tenant's sessions stop working at once.
-- Cross-tenant commands (`palisade admin …`) connect as a login role with BYPASSRLS in the
-- group palisade_platform, a credential of the deployment's environment that the server
-- itself never holds (claim TEN-6). The group gets only what those commands need.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'palisade_platform') THEN
        RAISE EXCEPTION 'role palisade_platform does not exist; create it first (docs/postgres.md)';
    END IF;
END
$$;

ALTER TABLE tenants ADD COLUMN suspended_at timestamptz;

GRANT USAGE ON SCHEMA public TO palisade_platform;
GRANT SELECT ON tenants, memberships TO palisade_platform;
-- Never the password hashes.
GRANT SELECT (id, email, email_verified_at) ON users TO palisade_platform;
GRANT UPDATE (suspended_at) ON tenants TO palisade_platform;
GRANT SELECT, UPDATE ON auth_epoch TO palisade_platform;
GRANT INSERT ON security_events TO palisade_platform;
