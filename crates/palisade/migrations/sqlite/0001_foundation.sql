-- The foundation schema (SQLite). Ids are UUIDs in their hyphenated text form; times are
-- RFC 3339 text in UTC. Every table of tenant data carries tenant_id and an index led by it.

-- A tenant (organisation): the unit of isolation. Its own row is its tenant data.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- A person who can sign in. Not tenant data: one user may belong to several tenants
-- through memberships. The email is stored lower-cased and is unique.
CREATE TABLE users (
    id                  TEXT PRIMARY KEY NOT NULL,
    email               TEXT NOT NULL UNIQUE,
    -- PHC string (argon2id); never the password.
    password_hash       TEXT NOT NULL,
    email_verified_at   TEXT,
    -- Tokens issued before this instant are refused (claim ID-7).
    tokens_valid_after  TEXT NOT NULL,
    created_at          TEXT NOT NULL
);

-- A user's role in a tenant.
CREATE TABLE memberships (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    user_id     TEXT NOT NULL REFERENCES users (id),
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'manager', 'member', 'viewer')),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id);

-- The simple audit trail of the foundation; the hash-chained log replaces it.
CREATE TABLE audit_events (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    occurred_at   TEXT NOT NULL,
    actor_user_id TEXT,
    action        TEXT NOT NULL,
    target_type   TEXT NOT NULL,
    target_id     TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    ip            TEXT,
    user_agent    TEXT,
    request_id    TEXT NOT NULL
);
CREATE INDEX audit_events_by_tenant_time ON audit_events (tenant_id, occurred_at);

-- Append-only from the first day: no path may rewrite history.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
