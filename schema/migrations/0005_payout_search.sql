-- The console's payout search and user page (docs/console.md): newest received first, and the
-- filters that would otherwise read the whole payouts table. A transaction id has its indexes
-- already (0001, 0003); an instance, a status or an outcome alone is a filter on the first.
-- Built in the migration's transaction, each blocks new payouts while it runs: on a large table,
-- build them first with CREATE INDEX CONCURRENTLY under these names (docs/operations.md,
-- "Upgrading"), and the migration finds them there.

-- The newest payouts, and a range of received_at, in the order shown, paged by keyset.
CREATE INDEX IF NOT EXISTS payouts_by_received_at ON payouts (received_at, payout_id);

-- A user's payouts, newest first: the user page and the search by user id.
CREATE INDEX IF NOT EXISTS payouts_by_user ON payouts (user_id, received_at, payout_id);
