-- Erasure (SQLite; claim OPS-5). A person's erasure redacts their address, user agent and
-- email in the audit events that hold them: the row keeps its original hash, so the chain
-- still links, and gains `redaction`, a signature by the checkpoint key over the original
-- hash and the hash of the redacted content (docs/audit.md). The guard now lets exactly
-- that through: an update that sets a redaction and leaves every other field but the
-- redactable ones (ip, user_agent, target_id) as it was. Nothing else ever changes an event.
ALTER TABLE audit_events ADD COLUMN redaction TEXT;
DROP TRIGGER audit_events_no_update;
CREATE TRIGGER audit_events_redact_only BEFORE UPDATE ON audit_events
WHEN NEW.redaction IS NULL
  OR NEW.tenant_id IS NOT OLD.tenant_id OR NEW.seq IS NOT OLD.seq OR NEW.id IS NOT OLD.id
  OR NEW.occurred_at_us IS NOT OLD.occurred_at_us OR NEW.actor_type IS NOT OLD.actor_type
  OR NEW.actor_id IS NOT OLD.actor_id OR NEW.actor_role IS NOT OLD.actor_role
  OR NEW.action IS NOT OLD.action OR NEW.target_type IS NOT OLD.target_type
  OR NEW.outcome IS NOT OLD.outcome OR NEW.request_id IS NOT OLD.request_id
  OR NEW.changes IS NOT OLD.changes OR NEW.app IS NOT OLD.app
  OR NEW.prev_hash IS NOT OLD.prev_hash OR NEW.hash IS NOT OLD.hash
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- An erased account keeps its id (events and keys name it) and nothing personal: its
-- email is replaced by one under the reserved `.invalid` domain, its password by no hash.
ALTER TABLE users ADD COLUMN erased_at TEXT;

-- A deleted tenant keeps its row, nameless and suspended, as the tombstone its sessions
-- and chain head point at; everything it held is gone.
ALTER TABLE tenants ADD COLUMN deleted_at TEXT;

-- The tenant's export lists the sessions acting in it.
CREATE INDEX sessions_by_tenant ON sessions (tenant_id);
