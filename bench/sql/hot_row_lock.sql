-- hot_account bench, database level, scenario "row_lock": every client credits one
-- account the naive way, as row_lock_poster in bench/hot_account.py does: lock the hot
-- row first (SELECT ... FOR UPDATE, before the legs' foreign-key checks take FOR KEY
-- SHARE on it), insert the entry and legs, update the payer, then write the hot row's
-- new balance computed from the value read under the lock.
-- Ids: one nextval per posting; the sequence steps by 4, so entry = n, legs = n+1, n+2.
\set payer :payer0 + :client_id
BEGIN;
SELECT balance AS hot_balance FROM accounts WHERE id = :rowlock_hot FOR UPDATE \gset
-- the naive path inserts the entry without ON CONFLICT; RETURNING only hands the id to
-- the script (the Python client makes the id itself)
INSERT INTO journal_entries (id, biz_type, biz_key, currency, merchant_id, order_type,
                             sub_type, pay_org_no, memo, created_at)
SELECT n, 'bench', 'pg-' || n, 'CNY', 'bench', 'bench', 'bench', 'bench', '', now()
FROM nextval('bench_ids') AS n
RETURNING id AS entry \gset
INSERT INTO journal_legs (id, entry_id, account_id, amount, currency)
VALUES (:entry + 1, :entry, :payer, :amount, 'CNY') \;
INSERT INTO journal_legs (id, entry_id, account_id, amount, currency)
VALUES (:entry + 2, :entry, :rowlock_hot, -:amount, 'CNY');
UPDATE accounts SET balance = balance + :payer_delta
WHERE id = :payer AND (allow_negative OR balance + :payer_delta >= 0)
RETURNING id AS updated \gset
UPDATE accounts SET balance = :hot_balance + :target_delta WHERE id = :rowlock_hot;
COMMIT;
