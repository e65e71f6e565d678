-- Erasure (PostgreSQL; claim OPS-5). A person's erasure redacts their address, user agent
-- and email in the audit events that hold them: the row keeps its original hash, so the
-- chain still links, and gains `redaction`, a signature by the checkpoint key over the
-- original hash and the hash of the redacted content (docs/audit.md). The guard now lets
-- exactly that through, and the runtime role may update only the redactable columns of
-- its bound tenant's events. Nothing else ever changes an event.
ALTER TABLE audit_events ADD COLUMN redaction text;

CREATE OR REPLACE FUNCTION palisade_audit_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $fn$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events' AND OLD.seq <= COALESCE(
        (SELECT max(c.seq) FROM audit_checkpoints c
         WHERE c.tenant_id = OLD.tenant_id AND c.kind = 'anchor'), 0) THEN
        RETURN OLD;
    END IF;
    -- Nested: only an event's row has the columns the inner test reads.
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit_events' THEN
        IF NEW.redaction IS NOT NULL
           AND (NEW.tenant_id, NEW.seq, NEW.id, NEW.occurred_at_us, NEW.actor_type,
                NEW.actor_id, NEW.actor_role, NEW.action, NEW.target_type, NEW.outcome,
                NEW.request_id, NEW.changes, NEW.app, NEW.prev_hash, NEW.hash)
               IS NOT DISTINCT FROM
               (OLD.tenant_id, OLD.seq, OLD.id, OLD.occurred_at_us, OLD.actor_type,
                OLD.actor_id, OLD.actor_role, OLD.action, OLD.target_type, OLD.outcome,
                OLD.request_id, OLD.changes, OLD.app, OLD.prev_hash, OLD.hash) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = '42501';
END
$fn$;

CREATE POLICY tenant_redacts ON audit_events FOR UPDATE
    USING (tenant_id = (SELECT palisade_current_tenant()))
    WITH CHECK (tenant_id = (SELECT palisade_current_tenant()));
GRANT UPDATE (ip, user_agent, target_id, redaction) ON audit_events TO palisade_runtime;

-- An erased account keeps its id (events and keys name it) and nothing personal: its
-- email is replaced by one under the reserved `.invalid` domain, its password by no hash.
ALTER TABLE users ADD COLUMN erased_at timestamptz;

-- An erased person's invitations (they hold the email) go with their memberships, and a
-- deleted tenant's keys and relation revision with the tenant (row-level security keeps
-- each delete to the bound tenant).
GRANT DELETE ON invitations, api_keys, relation_revisions TO palisade_runtime;

-- A deleted tenant keeps its row, nameless and suspended, as the tombstone its sessions
-- and chain head point at; everything it held is gone.
ALTER TABLE tenants ADD COLUMN deleted_at timestamptz;

-- The tenant's export lists the sessions acting in it.
CREATE INDEX sessions_by_tenant ON sessions (tenant_id);
