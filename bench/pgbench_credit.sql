-- One payout credited per transaction, as a worker without batching does it: claim the
-- transaction id, credit the wallet, write both ledger sides, mark the payout credited.
-- :users wallets receive the credits (set with -D users=N); the accounts exist beforehand.
\set user random(1, :users)
\set amount random(1, 500)
BEGIN;
INSERT INTO payouts (provider_instance, transaction_id, event_id, protocol, user_id, amount,
                     currency, signature, create_account, status, outcome, answer_code,
                     raw_request, received_at)
VALUES ('pgbench', gen_random_uuid()::text, gen_random_uuid(), 'offerwall_md5',
        'pg-' || :user, :amount, 'COIN', gen_random_uuid()::text, true, 'held',
        'held_unknown_account', '200', '{}', now())
ON CONFLICT DO NOTHING
RETURNING payout_id \gset
UPDATE accounts SET balance = balance + :amount
WHERE kind = 'wallet' AND owner = 'pg-' || :user AND currency = 'COIN'
RETURNING account_id AS wallet_id, balance \gset
INSERT INTO ledger_entries (payout_id, account_id, amount)
VALUES (:payout_id, :wallet_id, :amount),
       (:payout_id, (SELECT account_id FROM accounts WHERE kind = 'funding' AND owner = 'pgbench'
                     AND currency = 'COIN'), -(:amount::numeric));
UPDATE payouts SET status = 'credited', outcome = 'credited', balance_after = :balance,
                   credited_at = now()
WHERE payout_id = :payout_id;
END;
