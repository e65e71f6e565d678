-- Relations (claim RBAC-5): what the app says a user is to one of its resources
-- (`workorder:wo_123#assignee@usr_…`). An external member acts only on the resources it has
-- a relation to. Each tenant's relation writes move its revision, which a write answers
-- and a decision accepts as "at least as fresh as".
CREATE TABLE relations (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    resource_type  TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    relation       TEXT NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id),
    created_at     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, resource_type, resource_id, relation, user_id)
);
-- The search's path: a subject's resources of one type, in id order.
CREATE INDEX relations_by_subject ON relations (tenant_id, user_id, resource_type, resource_id);
CREATE TABLE relation_revisions (
    tenant_id  TEXT PRIMARY KEY NOT NULL REFERENCES tenants (id),
    revision   INTEGER NOT NULL
);
