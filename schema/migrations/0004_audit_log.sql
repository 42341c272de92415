-- Who did what to the records, from where, and how it ended: written by the operator console
-- (logins, logouts, refusals, actions) and by the `payouts` commands that change records
-- (`account create`, `order register` and `order cancel` so far). Rows are only ever inserted.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    -- The operator's name (for a login, the name typed; '-' for a request made without a
    -- session), or the OS user who ran a command.
    actor       text NOT NULL,
    actor_kind  text NOT NULL CHECK (actor_kind IN ('console', 'cli')),
    action      text NOT NULL,
    target      text,
    -- The client address (console), or the host a command ran on (its OS user is the actor).
    source      text NOT NULL,
    result      text NOT NULL CHECK (result IN ('ok', 'refused', 'failed')),
    detail      jsonb NOT NULL DEFAULT '{}'
);
-- The Audit page lists newest first (by id) and filters by actor and time.
CREATE INDEX audit_log_by_actor ON audit_log (actor, id);
CREATE INDEX audit_log_by_at ON audit_log (at);
