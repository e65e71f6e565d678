-- Applications (SQLite): a tenant's groupings of machine access. An Agent identity acts
-- through API keys scoped to one application (claim RBAC-4); the keys come with their issue.
CREATE TABLE applications (
    id          TEXT PRIMARY KEY NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX applications_by_tenant ON applications (tenant_id);
