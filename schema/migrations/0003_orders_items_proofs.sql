-- Game-platform and wallet protocols: zero-amount payouts, item grants, the game's pending
-- orders that payouts must match, and the images operators attach as proof of a payout.

-- A lost bet is settled with no winnings, and items bought in a wallet credit no money: both are
-- payouts of amount 0, recorded exactly once like any other.
ALTER TABLE payouts DROP CONSTRAINT payouts_amount_check;
ALTER TABLE payouts ADD CONSTRAINT payouts_amount_check CHECK (amount >= 0);
ALTER TABLE payouts
    ADD COLUMN items     jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(items) = 'array'),
    -- What the user paid for the items, in the payout's currency: recorded, never credited.
    ADD COLUMN price     numeric CHECK (price >= 0),
    ADD COLUMN order_id  text;

ALTER TABLE payout_conflicts DROP CONSTRAINT payout_conflicts_outcome_check;
ALTER TABLE payout_conflicts ADD CONSTRAINT payout_conflicts_outcome_check
    CHECK (outcome IN ('conflict', 'signature_reused', 'order_not_found', 'order_mismatch'));
ALTER TABLE payout_conflicts
    ADD COLUMN items     jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN price     numeric,
    ADD COLUMN order_id  text;

-- Orders the game registered before the provider's callback; a payout consumes one, once.
-- A column left NULL is not part of the order (what a protocol's orders hold: docs/orders.md).
CREATE TABLE pending_orders (
    provider_instance  text NOT NULL,
    order_id           text NOT NULL,
    user_id            text NOT NULL,
    items              jsonb CHECK (jsonb_typeof(items) = 'array'),
    amount             numeric CHECK (amount >= 0),
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'consumed', 'cancelled')),
    registered_at      timestamptz NOT NULL DEFAULT now(),
    consumed_by        bigint REFERENCES payouts,
    closed_at          timestamptz,
    PRIMARY KEY (provider_instance, order_id),
    CHECK ((status = 'consumed') = (consumed_by IS NOT NULL)),
    CHECK ((status = 'pending') = (closed_at IS NULL))
);

-- The inventory ledger: one row per item granted by a payout; a user's inventory is the sum.
CREATE TABLE inventory_entries (
    entry_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payout_id   bigint NOT NULL REFERENCES payouts,
    user_id     text NOT NULL,
    item_id     text NOT NULL,
    quantity    integer NOT NULL CHECK (quantity <> 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inventory_entries_by_user ON inventory_entries (user_id, item_id);
CREATE INDEX inventory_entries_by_payout ON inventory_entries (payout_id);

CREATE VIEW inventories AS
SELECT user_id, item_id, sum(quantity) AS quantity
FROM inventory_entries
GROUP BY user_id, item_id;

-- Images an operator attached to a payout (`payouts payout attach-proof`), served by the Payout
-- Proof API after the receipt rendered from the ledger.
CREATE TABLE proof_images (
    image_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payout_id    bigint NOT NULL REFERENCES payouts,
    media_type   text NOT NULL CHECK (media_type IN ('image/png', 'image/jpeg', 'image/webp')),
    data         bytea NOT NULL,
    sha256       text NOT NULL,
    attached_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (payout_id, sha256)
);

-- The Payout Proof API looks a transaction up by id across a partner's instances.
CREATE INDEX payouts_by_transaction ON payouts (transaction_id);
