-- A user's own memberships across tenants (SQLite): the same view as on PostgreSQL, where
-- it is the only way the runtime role reads them, so one query serves both backends.
CREATE VIEW user_memberships AS
    SELECT m.user_id, m.tenant_id, t.name AS tenant_name, m.role, t.require_mfa,
           t.suspended_at, m.created_at
    FROM memberships m JOIN tenants t ON t.id = m.tenant_id;
