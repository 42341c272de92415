-- Core pipeline: accounts, the exactly-once payout record, the double-entry ledger, conflicts.
-- Money is NUMERIC without a fixed scale so every amount is kept exactly as the provider sent it.

CREATE TABLE accounts (
    account_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'wallet': a user's balance in one currency. 'funding': a provider instance's source account.
    kind        text NOT NULL CHECK (kind IN ('wallet', 'funding')),
    owner       text NOT NULL,
    currency    text NOT NULL,
    -- Maintained for wallets. Funding accounts are only ever appended to in the ledger (every
    -- credit touches them, so a running balance there would serialize all workers on one row);
    -- their balance is the sum of their ledger entries (view account_balances).
    balance     numeric NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, owner, currency),
    CHECK (kind = 'wallet' OR balance = 0)
);

-- The exactly-once record: one row per (provider instance, transaction id), forever.
CREATE TABLE payouts (
    payout_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider_instance  text NOT NULL,
    transaction_id     text NOT NULL,
    event_id           uuid NOT NULL,
    protocol           text NOT NULL,
    user_id            text NOT NULL,
    amount             numeric NOT NULL CHECK (amount > 0),
    currency           text NOT NULL,
    signature          text NOT NULL,
    create_account     boolean NOT NULL,
    status             text NOT NULL CHECK (status IN ('credited', 'held')),
    outcome            text NOT NULL,
    answer_code        text NOT NULL,
    balance_after      numeric,
    attributes         jsonb NOT NULL DEFAULT '{}',
    raw_request        jsonb NOT NULL,
    received_at        timestamptz NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    credited_at        timestamptz,
    duplicate_deliveries integer NOT NULL DEFAULT 0,
    UNIQUE (provider_instance, transaction_id),
    -- One signature, one transaction: see docs/security.md (field-boundary shifts).
    UNIQUE (provider_instance, signature),
    CHECK ((status = 'credited') = (credited_at IS NOT NULL))
);
CREATE INDEX payouts_held_by_user ON payouts (user_id, currency) WHERE status = 'held';

CREATE TABLE ledger_entries (
    entry_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payout_id   bigint NOT NULL REFERENCES payouts,
    account_id  bigint NOT NULL REFERENCES accounts,
    -- Positive credits the account, negative debits it; each payout's entries sum to zero.
    amount      numeric NOT NULL CHECK (amount <> 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_by_payout ON ledger_entries (payout_id);
CREATE INDEX ledger_entries_by_account ON ledger_entries (account_id);

-- Deliveries that were refused without touching money: a transaction id reused with other
-- fields, or a signature already carried by another transaction.
CREATE TABLE payout_conflicts (
    conflict_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider_instance  text NOT NULL,
    transaction_id     text NOT NULL,
    event_id           uuid NOT NULL UNIQUE,
    outcome            text NOT NULL CHECK (outcome IN ('conflict', 'signature_reused')),
    user_id            text NOT NULL,
    amount             numeric NOT NULL,
    currency           text NOT NULL,
    signature          text NOT NULL,
    raw_request        jsonb NOT NULL,
    received_at        timestamptz NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payout_conflicts_by_transaction ON payout_conflicts (provider_instance, transaction_id);

CREATE VIEW account_balances AS
SELECT a.account_id, a.kind, a.owner, a.currency,
       CASE WHEN a.kind = 'wallet' THEN a.balance
            ELSE coalesce((SELECT sum(e.amount) FROM ledger_entries e
                           WHERE e.account_id = a.account_id), 0)
       END AS balance,
       a.created_at
FROM accounts a;
