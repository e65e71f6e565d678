-- Counts a session's tenant switches; an access token carries the count it was issued
-- under, so a token from before a switch never comes back after switching back, however
-- quickly (claim TEN-1). (The PostgreSQL migration of this number also grants the
-- application row lock; SQLite has no roles.)
ALTER TABLE sessions ADD COLUMN tenant_switches INTEGER NOT NULL DEFAULT 0;
