-- The operator console's sessions (docs/console.md#sessions), so that one can be ended on the
-- server: a logout, or `payouts console sign-out`, revokes its row, and a copy of its cookie
-- taken before is refused from then on. The cookie carries a random token; only its SHA-256 is
-- kept here, so a read of this table (a backup) signs nobody in.
CREATE TABLE console_sessions (
    token_sha256    bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
    operator        text NOT NULL,
    -- Where the login came from, as the audit trail's `source` of that login.
    client_address  text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- created_at + console.session_max_age_seconds, on the database's clock as every check is.
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    CHECK (expires_at > created_at)
);
-- `payouts console sign-out` revokes an operator's open sessions.
CREATE INDEX console_sessions_open_by_operator ON console_sessions (operator)
    WHERE revoked_at IS NULL;
-- Each login deletes the rows a day past their expiry, revoked or not.
CREATE INDEX console_sessions_by_expires_at ON console_sessions (expires_at);
