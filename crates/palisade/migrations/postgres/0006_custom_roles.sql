-- Custom roles (PostgreSQL): a tenant's own named sets of actions (claim RBAC-3). A member
-- with a custom role may do exactly its actions; their built-in role still ranks them.
CREATE TABLE custom_roles (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    name        text NOT NULL,
    -- Action names separated by spaces, all from the action table.
    actions     text NOT NULL,
    created_at  timestamptz NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX custom_roles_by_tenant ON custom_roles (tenant_id);
ALTER TABLE custom_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE custom_roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON custom_roles
    USING (tenant_id = (SELECT palisade_current_tenant()))
    WITH CHECK (tenant_id = (SELECT palisade_current_tenant()));
GRANT SELECT, INSERT, DELETE ON custom_roles TO palisade_runtime;
ALTER TABLE memberships ADD COLUMN custom_role_id uuid REFERENCES custom_roles (id);
