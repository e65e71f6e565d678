-- Relations (PostgreSQL; claim RBAC-5): what the app says a user is to one of its resources
-- (`workorder:wo_123#assignee@usr_…`). An external member acts only on the resources it has
-- a relation to. Each tenant's relation writes move its revision, which a write answers
-- and a decision accepts as "at least as fresh as".
CREATE TABLE relations (
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    resource_type  text NOT NULL,
    -- Byte order, as on SQLite: the search pages by id.
    resource_id    text COLLATE "C" NOT NULL,
    relation       text NOT NULL,
    user_id        uuid NOT NULL REFERENCES users (id),
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, resource_type, resource_id, relation, user_id)
);
-- The search's path: a subject's resources of one type, in id order.
CREATE INDEX relations_by_subject ON relations (tenant_id, user_id, resource_type, resource_id);
ALTER TABLE relations ENABLE ROW LEVEL SECURITY;
ALTER TABLE relations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON relations
    USING (tenant_id = (SELECT palisade_current_tenant()))
    WITH CHECK (tenant_id = (SELECT palisade_current_tenant()));
GRANT SELECT, INSERT, DELETE ON relations TO palisade_runtime;

CREATE TABLE relation_revisions (
    tenant_id  uuid PRIMARY KEY REFERENCES tenants (id),
    revision   bigint NOT NULL
);
ALTER TABLE relation_revisions ENABLE ROW LEVEL SECURITY;
ALTER TABLE relation_revisions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON relation_revisions
    USING (tenant_id = (SELECT palisade_current_tenant()))
    WITH CHECK (tenant_id = (SELECT palisade_current_tenant()));
GRANT SELECT, INSERT, UPDATE ON relation_revisions TO palisade_runtime;
