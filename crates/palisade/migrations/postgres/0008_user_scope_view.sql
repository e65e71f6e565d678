-- A user's own memberships (PostgreSQL), read through a view instead of a second policy on
-- the runtime role. Permissive policies combine with OR, and an OR of the tenant policy and
-- the user policy made every tenant-bound read of memberships and tenants pay for both:
-- 37% on a 50-row member list (docs/benchmarks.md). Now the runtime role meets exactly one
-- policy per table, the tenant's; the user policies apply only to the schema owner, which
-- owns the view, so the view (run with its owner's rights) sees the rows of the user bound
-- by palisade.user_id and, with no tenant bound, nothing else.
DROP POLICY own_memberships ON memberships;
DROP POLICY member_tenants ON tenants;
CREATE POLICY own_memberships ON memberships FOR SELECT TO CURRENT_USER
    USING (user_id = (SELECT palisade_current_user())
           AND (SELECT palisade_current_tenant()) IS NULL);
CREATE POLICY member_tenants ON tenants FOR SELECT TO CURRENT_USER
    USING ((SELECT palisade_current_tenant()) IS NULL
           AND id IN (SELECT m.tenant_id FROM memberships m
                      WHERE m.user_id = (SELECT palisade_current_user())));

CREATE VIEW user_memberships WITH (security_barrier) AS
    SELECT m.user_id, m.tenant_id, t.name AS tenant_name, m.role, t.require_mfa,
           t.suspended_at, m.created_at
    FROM memberships m JOIN tenants t ON t.id = m.tenant_id
    WHERE m.user_id = (SELECT palisade_current_user());
GRANT SELECT ON user_memberships TO palisade_runtime;
