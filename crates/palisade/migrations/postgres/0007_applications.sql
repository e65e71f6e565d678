-- Applications (PostgreSQL): a tenant's groupings of machine access. An Agent identity acts
-- through API keys scoped to one application (claim RBAC-4); the keys come with their issue.
CREATE TABLE applications (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX applications_by_tenant ON applications (tenant_id);
ALTER TABLE applications ENABLE ROW LEVEL SECURITY;
ALTER TABLE applications FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON applications
    USING (tenant_id = (SELECT palisade_current_tenant()))
    WITH CHECK (tenant_id = (SELECT palisade_current_tenant()));
GRANT SELECT, INSERT, DELETE ON applications TO palisade_runtime;
