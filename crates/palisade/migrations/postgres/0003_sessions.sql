-- Identity and sessions (PostgreSQL): signing keys, sessions and their refresh tokens,
-- failed sign-ins, email tokens, TOTP factors, recovery codes, and events that have no
-- tenant. Users' own data (sessions, factors, tokens) is not tenant data: it is reached by
-- a secret's hash or a verified token's ids, so it carries no tenant policy. What a user
-- may see across tenants (their own memberships) is bound by a second setting,
-- palisade.user_id, set per transaction from a verified credential.

ALTER TABLE tenants ADD COLUMN require_mfa boolean NOT NULL DEFAULT false;

CREATE FUNCTION palisade_current_user() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $fn$ SELECT nullif(current_setting('palisade.user_id', true), '')::uuid $fn$;
GRANT EXECUTE ON FUNCTION palisade_current_user() TO palisade_runtime;

-- A user sees their own memberships in every tenant, and those tenants' rows.
-- Only in a transaction bound to a user and to no tenant.
CREATE POLICY own_memberships ON memberships FOR SELECT
    USING (user_id = (SELECT palisade_current_user())
           AND (SELECT palisade_current_tenant()) IS NULL);
CREATE POLICY member_tenants ON tenants FOR SELECT
    USING ((SELECT palisade_current_tenant()) IS NULL
           AND id IN (SELECT m.tenant_id FROM memberships m
                      WHERE m.user_id = (SELECT palisade_current_user())));

CREATE TABLE signing_keys (
    kid                 text PRIMARY KEY,
    algorithm           text NOT NULL CHECK (algorithm = 'EdDSA'),
    public_key          bytea NOT NULL,
    sealed_private_key  bytea NOT NULL,
    created_at          timestamptz NOT NULL,
    retired_at          timestamptz
);

CREATE TABLE sessions (
    id                   uuid PRIMARY KEY,
    user_id              uuid NOT NULL REFERENCES users (id),
    tenant_id            uuid NOT NULL REFERENCES tenants (id),
    created_at           timestamptz NOT NULL,
    last_refreshed_at    timestamptz NOT NULL,
    absolute_expires_at  timestamptz NOT NULL,
    tenant_since         timestamptz NOT NULL,
    -- Signed in with a second factor; a tenant that requires MFA refuses sessions without.
    mfa                  boolean NOT NULL DEFAULT false,
    revoked_at           timestamptz,
    revoked_reason       text,
    ip                   text,
    user_agent           text
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Bumped in the same transaction as every change that narrows what a session may do
-- (revocation, password change, tenant switch, MFA policy): servers cache principals
-- tagged with it, so a change is seen on the next request.
CREATE TABLE auth_epoch (
    id     bigint PRIMARY KEY CHECK (id = 1),
    epoch  bigint NOT NULL
);
INSERT INTO auth_epoch (id, epoch) VALUES (1, 0);

CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES sessions (id),
    issued_at   timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE login_failures (
    scope         bytea NOT NULL,
    attempt       bytea NOT NULL,
    failed_at_ms  bigint NOT NULL
);
CREATE INDEX login_failures_by_attempt ON login_failures (attempt);
CREATE INDEX login_failures_by_scope ON login_failures (scope, failed_at_ms);
CREATE INDEX login_failures_by_time ON login_failures (failed_at_ms);

CREATE TABLE email_tokens (
    token_hash  bytea PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id),
    purpose     text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX email_tokens_by_user ON email_tokens (user_id);

CREATE TABLE totp_factors (
    user_id         uuid PRIMARY KEY REFERENCES users (id),
    sealed_secret   bytea NOT NULL,
    confirmed_at    timestamptz,
    last_used_step  bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL
);

CREATE TABLE recovery_codes (
    user_id    uuid NOT NULL REFERENCES users (id),
    code_hash  bytea NOT NULL,
    used_at    timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE security_events (
    id           uuid PRIMARY KEY,
    occurred_at  timestamptz NOT NULL,
    action       text NOT NULL,
    target_type  text NOT NULL,
    target_id    text NOT NULL,
    outcome      text NOT NULL,
    ip           text,
    user_agent   text,
    request_id   text NOT NULL
);
CREATE INDEX security_events_by_time ON security_events (occurred_at);

GRANT SELECT, UPDATE ON auth_epoch TO palisade_runtime;
GRANT SELECT, INSERT, UPDATE ON signing_keys, sessions, refresh_tokens, email_tokens,
    totp_factors, recovery_codes TO palisade_runtime;
GRANT DELETE ON totp_factors, recovery_codes, login_failures TO palisade_runtime;
GRANT SELECT, INSERT ON login_failures, security_events TO palisade_runtime;
