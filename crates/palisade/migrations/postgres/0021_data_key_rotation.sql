-- A tenant's data key rotates (claim SEC-2): new values are sealed by its newest key, and a
-- sweep seals older values again under it, then deletes the keys nothing uses any more.
-- The sweep finds a key's values by tenant and key version, and rewrites them in place.
CREATE INDEX secret_versions_by_data_key ON secret_versions (tenant_id, dek_version);
CREATE INDEX webhook_signing_secrets_by_data_key
    ON webhook_signing_secrets (tenant_id, dek_version);
GRANT UPDATE (sealed, dek_version) ON secret_versions TO palisade_runtime;
