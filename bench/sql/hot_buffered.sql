-- hot_account bench, database level, scenario "buffered": every client credits one
-- platform-transit account whose HotPolicy rule is ("buffered", 0). Ledger.post writes
-- both legs at once but queues the hot side's balance change in pending_postings
-- instead of updating the row; summary posting (summarize_pending) folds it in later.
-- Only the payer's balance row is updated in the transaction.
-- Ids: one nextval per posting; the sequence steps by 4, so entry = n, legs = n+1, n+2,
-- pending posting = n+3.
\set payer :payer0 + :client_id
BEGIN;
-- 1. the entry (idempotent insert; RETURNING tells Ledger.post whether it is new)
INSERT INTO journal_entries (id, biz_type, biz_key, currency, merchant_id, order_type,
                             sub_type, pay_org_no, trade_id, memo, created_at)
SELECT n, 'bench', 'pg-' || n, 'CNY', 'bench', 'bench', 'bench', 'bench', NULL, '', now()
FROM nextval('bench_ids') AS n
ON CONFLICT DO NOTHING RETURNING id AS entry \gset
-- 2. the two legs (psycopg pipelines the executemany: two INSERTs, one round trip)
INSERT INTO journal_legs (id, entry_id, account_id, amount, currency)
VALUES (:entry + 1, :entry, :payer, :amount, 'CNY') \;
INSERT INTO journal_legs (id, entry_id, account_id, amount, currency)
VALUES (:entry + 2, :entry, :buf_hot, -:amount, 'CNY');
-- 3. the hot side's delta goes to the queue, pointing at its leg
INSERT INTO pending_postings (id, account_id, leg_id, delta, created_at)
VALUES (:entry + 3, :buf_hot, :entry + 2, :target_delta, now());
-- 4. before commit: the conditional balance UPDATE of the payer only
UPDATE accounts SET balance = balance + :payer_delta
WHERE id = :payer AND (allow_negative OR balance + :payer_delta >= 0)
RETURNING id AS updated \gset
COMMIT;
