-- Deleting an application and creating a key for it both take the application's row lock
-- first (a no-op UPDATE of its name), so no key is created for an application being
-- deleted and none outlives it (claim RBAC-4).
GRANT UPDATE (name) ON applications TO palisade_runtime;

-- Counts a session's tenant switches; an access token carries the count it was issued
-- under, so a token from before a switch never comes back after switching back, however
-- quickly (claim TEN-1).
ALTER TABLE sessions ADD COLUMN tenant_switches BIGINT NOT NULL DEFAULT 0;
