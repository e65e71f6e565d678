-- Invitations (SQLite): random single-use tokens stored as SHA-256, bound to an email,
-- expiring, granting at most the inviter's role (claim RBAC-6). Tenant data.
CREATE TABLE invitations (
    id           TEXT PRIMARY KEY NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    email        TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'manager', 'member', 'viewer')),
    token_hash   BLOB NOT NULL UNIQUE,
    invited_by   TEXT NOT NULL REFERENCES users (id),
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    accepted_at  TEXT,
    revoked_at   TEXT
);
CREATE INDEX invitations_by_tenant ON invitations (tenant_id, created_at);
