-- The audit log (PostgreSQL; claims AUD-1 to AUD-6): one hash chain per tenant and one for
-- the platform (the nil id), append-only, with signed checkpoints. It replaces the
-- foundation's two trails, which stay, renamed and no longer written, for what they hold.
ALTER TABLE audit_events RENAME TO legacy_audit_events;
ALTER TABLE legacy_audit_events RENAME CONSTRAINT audit_events_pkey TO legacy_audit_events_pkey;
ALTER INDEX audit_events_by_tenant_time RENAME TO legacy_audit_events_by_tenant_time;
ALTER TABLE security_events RENAME TO legacy_security_events;
ALTER TABLE legacy_security_events
    RENAME CONSTRAINT security_events_pkey TO legacy_security_events_pkey;
ALTER INDEX security_events_by_time RENAME TO legacy_security_events_by_time;
REVOKE INSERT ON legacy_audit_events, legacy_security_events FROM palisade_runtime;
REVOKE INSERT ON legacy_security_events FROM palisade_platform;

-- The tenant whose chain an event is in; the nil id is the platform stream. Every field
-- the chain covers is stored exactly as hashed (times as microseconds, `changes` as the
-- JSON text), so verification recomputes the same bytes (docs/audit.md).
CREATE TABLE audit_events (
    tenant_id       uuid NOT NULL,
    seq             bigint NOT NULL CHECK (seq > 0),
    id              uuid NOT NULL,
    occurred_at_us  bigint NOT NULL,
    actor_type      text NOT NULL,
    actor_id        text NOT NULL,
    actor_role      text NOT NULL,
    action          text NOT NULL,
    target_type     text NOT NULL,
    target_id       text NOT NULL,
    outcome         text NOT NULL,
    ip              text,
    user_agent      text,
    request_id      text NOT NULL,
    changes         text NOT NULL,
    prev_hash       bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash            bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (tenant_id, seq)
);
-- Ids are UUIDv7, made once per event; nothing looks an event up by id, so no index
-- (each one costs every append).
CREATE INDEX audit_events_by_time ON audit_events (tenant_id, occurred_at_us);
CREATE INDEX audit_events_by_actor ON audit_events (tenant_id, actor_id, seq);
ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
-- One policy per command: a tenant reads its own chain; it may append to its own or to
-- the platform stream (a sign-in failure of an unknown email has no tenant).
CREATE POLICY tenant_reads ON audit_events FOR SELECT
    USING (tenant_id = (SELECT palisade_current_tenant()));
CREATE POLICY tenant_appends ON audit_events FOR INSERT
    WITH CHECK (tenant_id = (SELECT palisade_current_tenant())
                OR tenant_id = '00000000-0000-0000-0000-000000000000');
-- Retention prunes through palisade_audit_prune, which runs as the owner.
CREATE POLICY retention_prunes ON audit_events FOR DELETE TO CURRENT_USER USING (true);

-- The last event of each chain: where the next append links, when it was last signed,
-- and how long it keeps history. No event content, so no row-level security: the
-- checkpoint and retention work of every instance reads all chains.
CREATE TABLE audit_heads (
    tenant_id         uuid PRIMARY KEY,
    seq               bigint NOT NULL,
    hash              bytea NOT NULL CHECK (length(hash) = 32),
    checkpointed_seq  bigint NOT NULL DEFAULT 0,
    checkpointed_at_us bigint NOT NULL DEFAULT 0,
    -- Days of history the chain keeps (AUD-5); NULL keeps everything.
    retention_days    integer CHECK (retention_days BETWEEN 1 AND 36500)
);

-- Signed (tenant, seq, hash) statements; an anchor marks where a pruned chain restarts.
CREATE TABLE audit_checkpoints (
    tenant_id     uuid NOT NULL,
    seq           bigint NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('checkpoint', 'anchor')),
    hash          bytea NOT NULL CHECK (length(hash) = 32),
    signed_at_us  bigint NOT NULL,
    key_id        text NOT NULL,
    signature     bytea NOT NULL,
    PRIMARY KEY (tenant_id, seq, kind)
);

-- Append-only, even for the owner (AUD-2): no update ever; a delete only of events at or
-- below their chain's latest anchor, which is what retention leaves.
CREATE FUNCTION palisade_audit_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $fn$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events' AND OLD.seq <= COALESCE(
        (SELECT max(c.seq) FROM audit_checkpoints c
         WHERE c.tenant_id = OLD.tenant_id AND c.kind = 'anchor'), 0) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = '42501';
END
$fn$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION palisade_audit_guard();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION palisade_audit_guard();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION palisade_audit_guard();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION palisade_audit_guard();

-- Retention (AUD-5): deletes the bound tenant's events up to an anchor already written.
CREATE FUNCTION palisade_audit_prune(p_tenant uuid, p_through bigint) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $fn$
DECLARE
    pruned bigint;
BEGIN
    IF p_tenant IS DISTINCT FROM palisade_current_tenant() THEN
        RAISE EXCEPTION 'prune only the bound tenant''s log' USING ERRCODE = '42501';
    END IF;
    DELETE FROM audit_events WHERE tenant_id = p_tenant AND seq <= p_through;
    GET DIAGNOSTICS pruned = ROW_COUNT;
    RETURN pruned;
END
$fn$;
REVOKE ALL ON FUNCTION palisade_audit_prune(uuid, bigint) FROM PUBLIC;

-- The runtime role appends and reads; it can neither update nor delete an event.
GRANT SELECT, INSERT ON audit_events, audit_checkpoints TO palisade_runtime;
GRANT SELECT, INSERT, UPDATE ON audit_heads TO palisade_runtime;
GRANT EXECUTE ON FUNCTION palisade_audit_prune(uuid, bigint) TO palisade_runtime;
-- Platform commands append to the platform stream and verify every chain.
GRANT SELECT, INSERT ON audit_events, audit_checkpoints TO palisade_platform;
GRANT SELECT, INSERT, UPDATE ON audit_heads TO palisade_platform;
