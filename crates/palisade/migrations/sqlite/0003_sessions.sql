-- Identity and sessions (SQLite): signing keys, sessions and their refresh tokens, failed
-- sign-ins, email tokens, TOTP factors, recovery codes, and events that have no tenant.

-- A tenant may require every member to use MFA (claim ID-12).
ALTER TABLE tenants ADD COLUMN require_mfa INTEGER NOT NULL DEFAULT 0 CHECK (require_mfa IN (0, 1));

-- Access-token signing keys (claim ID-8). The private key is sealed with the master key,
-- which lives outside the database. A retired key stays published until its tokens expire.
CREATE TABLE signing_keys (
    kid                 TEXT PRIMARY KEY NOT NULL,
    algorithm           TEXT NOT NULL CHECK (algorithm = 'EdDSA'),
    public_key          BLOB NOT NULL,
    sealed_private_key  BLOB NOT NULL,
    created_at          TEXT NOT NULL,
    retired_at          TEXT
);

-- A sign-in: one refresh-token family, acting in one tenant at a time. A user's data, not
-- a tenant's: it is found by a refresh token's hash or the id inside a verified token.
CREATE TABLE sessions (
    id                   TEXT PRIMARY KEY NOT NULL,
    user_id              TEXT NOT NULL REFERENCES users (id),
    tenant_id            TEXT NOT NULL REFERENCES tenants (id),
    created_at           TEXT NOT NULL,
    last_refreshed_at    TEXT NOT NULL,
    absolute_expires_at  TEXT NOT NULL,
    -- When the session began acting in its current tenant: tokens issued earlier are refused.
    tenant_since         TEXT NOT NULL,
    -- Signed in with a second factor; a tenant that requires MFA refuses sessions without.
    mfa                  INTEGER NOT NULL DEFAULT 0,
    revoked_at           TEXT,
    revoked_reason       TEXT,
    ip                   TEXT,
    user_agent           TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Bumped in the same transaction as every change that narrows what a session may do
-- (revocation, password change, tenant switch, MFA policy): servers cache principals
-- tagged with it, so a change is seen on the next request.
CREATE TABLE auth_epoch (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    epoch  INTEGER NOT NULL
);
INSERT INTO auth_epoch (id, epoch) VALUES (1, 0);

-- Refresh tokens, by SHA-256 only. A used token stays, so presenting it again is detected
-- as reuse (claim ID-4).
CREATE TABLE refresh_tokens (
    token_hash  BLOB PRIMARY KEY NOT NULL,
    session_id  TEXT NOT NULL REFERENCES sessions (id),
    issued_at   TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

-- Failed sign-ins (claim ID-9). `scope` is a SHA-256 of (email, IP) or of the IP alone, so
-- the table holds no addresses; times are Unix milliseconds so windows compare as numbers.
-- A row is written before the password is checked (so parallel guesses count at once) and
-- removed if the attempt succeeds; `attempt` ties the two scope rows of one attempt.
CREATE TABLE login_failures (
    scope         BLOB NOT NULL,
    attempt       BLOB NOT NULL,
    failed_at_ms  INTEGER NOT NULL
);
CREATE INDEX login_failures_by_attempt ON login_failures (attempt);
CREATE INDEX login_failures_by_scope ON login_failures (scope, failed_at_ms);
CREATE INDEX login_failures_by_time ON login_failures (failed_at_ms);

-- Email verification and password reset tokens, by SHA-256 only, single use (claim ID-11).
CREATE TABLE email_tokens (
    token_hash  BLOB PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id),
    purpose     TEXT NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX email_tokens_by_user ON email_tokens (user_id);

-- TOTP (claim ID-12). The secret is sealed with the master key; `last_used_step` refuses a
-- code replayed within its window.
CREATE TABLE totp_factors (
    user_id         TEXT PRIMARY KEY NOT NULL REFERENCES users (id),
    sealed_secret   BLOB NOT NULL,
    confirmed_at    TEXT,
    last_used_step  INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL
);

CREATE TABLE recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id),
    code_hash  BLOB NOT NULL,
    used_at    TEXT,
    PRIMARY KEY (user_id, code_hash)
);

-- Security events that belong to no tenant (a failed sign-in for an unknown email, a
-- lock-out): the platform stream. Append-only like the tenant audit trail.
CREATE TABLE security_events (
    id           TEXT PRIMARY KEY NOT NULL,
    occurred_at  TEXT NOT NULL,
    action       TEXT NOT NULL,
    target_type  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    request_id   TEXT NOT NULL
);
CREATE INDEX security_events_by_time ON security_events (occurred_at);
CREATE TRIGGER security_events_no_update BEFORE UPDATE ON security_events
BEGIN SELECT RAISE(ABORT, 'security events are append-only'); END;
CREATE TRIGGER security_events_no_delete BEFORE DELETE ON security_events
BEGIN SELECT RAISE(ABORT, 'security events are append-only'); END;
