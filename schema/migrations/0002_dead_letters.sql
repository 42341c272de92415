-- The long-lived record of dead-lettered messages, kept after the queue was replayed or purged.
-- Written by the worker when it dead-letters (if the database answers) and by `payouts dlq`
-- before it removes anything from the queue.
CREATE TABLE dead_letters (
    dead_letter_id        text PRIMARY KEY,
    message_id            text,
    provider_instance     text,
    transaction_id        text,
    kind                  text NOT NULL,
    error                 text NOT NULL,
    attempts              integer NOT NULL,
    first_failure_at      timestamptz,
    last_failure_at       timestamptz,
    worker                text,
    original_exchange     text,
    original_routing_key  text,
    headers               jsonb NOT NULL,
    body                  bytea NOT NULL,
    status                text NOT NULL DEFAULT 'dead_lettered'
                          CHECK (status IN ('dead_lettered', 'replayed', 'purged')),
    recorded_at           timestamptz NOT NULL DEFAULT now(),
    replayed_at           timestamptz,
    purged_at             timestamptz
);
CREATE INDEX dead_letters_by_transaction ON dead_letters (provider_instance, transaction_id);
CREATE INDEX dead_letters_by_status ON dead_letters (status, recorded_at);
