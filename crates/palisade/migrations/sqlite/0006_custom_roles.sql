-- Custom roles (SQLite): a tenant's own named sets of actions (claim RBAC-3). A member with
-- a custom role may do exactly its actions; their built-in role still ranks them.
CREATE TABLE custom_roles (
    id          TEXT PRIMARY KEY NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    -- Action names separated by spaces, all from the action table.
    actions     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX custom_roles_by_tenant ON custom_roles (tenant_id);
ALTER TABLE memberships ADD COLUMN custom_role_id TEXT REFERENCES custom_roles (id);
