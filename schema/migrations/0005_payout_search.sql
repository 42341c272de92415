-- The console's payout search and user page (docs/console.md): the filters that would
-- otherwise read the whole payouts table. A transaction id has its indexes already (0001, 0003).

-- A user's payouts, newest first: the user page and the search by user id.
CREATE INDEX payouts_by_user ON payouts (user_id, payout_id);

-- A range of received_at. Rows are appended in about the order they are received, so a BRIN
-- index finds a range's blocks for a few pages of index, at almost no cost to each insert,
-- where a B-tree would add another insert per payout on the crediting path.
CREATE INDEX payouts_by_received_at ON payouts USING brin (received_at);
