-- hot_account bench, database level, scenario "sub_accounts": every client credits one
-- platform-transit account whose HotPolicy rule is ("sub_accounts", N). Ledger.post
-- picks one of the N sub-account rows at random (ResolvedAccount.pick): the credit leg
-- and the balance UPDATE both go to that row (ids :sub_lo .. :sub_hi).
-- Ids: one nextval per posting; the sequence steps by 4, so entry = n, legs = n+1, n+2.
\set payer :payer0 + :client_id
\set target random(:sub_lo, :sub_hi)
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
VALUES (:entry + 2, :entry, :target, -:amount, 'CNY');
-- 3. before commit: the conditional balance UPDATEs, in account id order (payer ids are
--    below every target id); a row count of 0 would be InsufficientBalance
UPDATE accounts SET balance = balance + :payer_delta
WHERE id = :payer AND (allow_negative OR balance + :payer_delta >= 0)
RETURNING id AS updated \gset
UPDATE accounts SET balance = balance + :target_delta
WHERE id = :target AND (allow_negative OR balance + :target_delta >= 0)
RETURNING id AS updated \gset
COMMIT;
