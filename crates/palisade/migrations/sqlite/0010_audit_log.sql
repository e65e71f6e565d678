-- The audit log (SQLite; claims AUD-1 to AUD-6): one hash chain per tenant and one for the
-- platform (the nil id), append-only, with signed checkpoints. It replaces the
-- foundation's two trails, which stay, renamed and no longer written, for what they hold.
ALTER TABLE audit_events RENAME TO legacy_audit_events;
ALTER TABLE security_events RENAME TO legacy_security_events;
DROP TRIGGER audit_events_no_update;
DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER legacy_audit_events_no_update BEFORE UPDATE ON legacy_audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER legacy_audit_events_no_delete BEFORE DELETE ON legacy_audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

-- The tenant whose chain an event is in; the nil id is the platform stream. Every field
-- the chain covers is stored exactly as hashed (docs/audit.md). A rowid table: rows land
-- in insertion order and only the small index entries spread across tenants.
CREATE TABLE audit_events (
    tenant_id       TEXT NOT NULL,
    seq             INTEGER NOT NULL CHECK (seq > 0),
    id              TEXT NOT NULL,
    occurred_at_us  INTEGER NOT NULL,
    actor_type      TEXT NOT NULL,
    actor_id        TEXT NOT NULL,
    actor_role      TEXT NOT NULL,
    action          TEXT NOT NULL,
    target_type     TEXT NOT NULL,
    target_id       TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    ip              TEXT,
    user_agent      TEXT,
    request_id      TEXT NOT NULL,
    changes         TEXT NOT NULL,
    prev_hash       BLOB NOT NULL CHECK (length(prev_hash) = 32),
    hash            BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (tenant_id, seq)
);
-- Ids are UUIDv7, made once per event; nothing looks an event up by id, so no index
-- (each one costs every append).
CREATE INDEX audit_events_by_time ON audit_events (tenant_id, occurred_at_us);
CREATE INDEX audit_events_by_actor ON audit_events (tenant_id, actor_id, seq);

CREATE TABLE audit_heads (
    tenant_id         TEXT PRIMARY KEY NOT NULL,
    seq               INTEGER NOT NULL,
    hash              BLOB NOT NULL CHECK (length(hash) = 32),
    checkpointed_seq  INTEGER NOT NULL DEFAULT 0,
    checkpointed_at_us INTEGER NOT NULL DEFAULT 0,
    retention_days    INTEGER CHECK (retention_days BETWEEN 1 AND 36500)
);

CREATE TABLE audit_checkpoints (
    tenant_id     TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('checkpoint', 'anchor')),
    hash          BLOB NOT NULL CHECK (length(hash) = 32),
    signed_at_us  INTEGER NOT NULL,
    key_id        TEXT NOT NULL,
    signature     BLOB NOT NULL,
    PRIMARY KEY (tenant_id, seq, kind)
);

-- Append-only (AUD-2): no update ever; a delete only of events at or below their chain's
-- latest anchor, which is what retention leaves.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_events_prune_only BEFORE DELETE ON audit_events
WHEN OLD.seq > COALESCE((SELECT max(c.seq) FROM audit_checkpoints c
                         WHERE c.tenant_id = OLD.tenant_id AND c.kind = 'anchor'), 0)
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

