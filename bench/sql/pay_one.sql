-- pay_e2e bench, database level: the SQL the pay core issues for ONE completed payment
-- (POST /v1/trades, POST /v1/trades/{no}/pay, the channel's POST .../callback), with the
-- same transaction boundaries. Captured from the application with a SQLAlchemy
-- before_cursor_execute hook, in the steady state (merchant token and account ids
-- cached). tests/integration/test_pay_sql.py checks that every step here has as many
-- statements and transactions as the application issues. Setup: bench/sql/pay_setup.sql.
-- Plain lookups run in autocommit (no BEGIN/COMMIT), as Database.reading() does. Times
-- are now() where the app sends its clock.
-- Ids: one nextval per payment (fetched with the trade insert, no extra round trip);
-- trade, pay order and pay item share id = 8n; entries, legs and the pending posting
-- take id + 1 .. id + 6. Sub-accounts are picked at random as HotPolicy does.
\set ci random(1001, 1008)
\set t1 random(2001, 2016)
\set t2 random(2001, 2016)

-- step: create (POST /v1/trades: insert first, look up only on a conflict; one
-- statement, so autocommit)
INSERT INTO trades (id, merchant_id, out_trade_no, trade_type, status, amount, currency,
                    paid_amount, refunded_amount, user_id, payee_user_id, order_type,
                    sub_type, pay_org_no, origin_trade_id, root_trade_id, request_hash,
                    subject, created_at, updated_at)
SELECT 8 * n, 'MPGBENCH', 'pgb-' || n::text, 'instant', 'created', 1000, 'CNY', 0, 0,
       'bench-user', NULL, 'goods', 'physical', 'SANDBOX_A', NULL, 8 * n,
       '13f3da4f3869aa9ec675e7afa1bbacefd434c568274db32952fa48582a2f5d35', '', now(), now()
FROM (SELECT nextval('pay_bench_seq') AS n) AS s
RETURNING id / 8 AS n \gset
\set id :n * 8
\set e1 :id + 1
\set e2 :id + 2
\set l1 :id + 3
\set l2 :id + 4
\set l3 :id + 5
\set l4 :id + 6
\set l5 :id + 7

-- step: pay (POST /v1/trades/{no}/pay: replay check, load the trade, then the pay
-- transaction under the trade lock)
SELECT * FROM pay_orders WHERE merchant_id = 'MPGBENCH' AND out_pay_no = 'pgb-' || :n::text;
SELECT * FROM trades WHERE merchant_id = 'MPGBENCH' AND out_trade_no = 'pgb-' || :n::text;
BEGIN;
UPDATE trades SET status = 'paying', updated_at = now() WHERE id = :id AND status = 'created';
INSERT INTO pay_orders (id, trade_id, merchant_id, out_pay_no, pay_type, status, amount,
                        currency, user_id, order_type, sub_type, pay_org_no, request_hash,
                        created_at)
VALUES (:id, :id, 'MPGBENCH', 'pgb-' || :n::text, 'pay', 'processing', 1000, 'CNY',
        'bench-user', 'goods', 'physical', 'SANDBOX_A',
        '9133c363d0936303190149e48f3e9600ba532fb24fce1028ce96e93a7326e87d', now());
INSERT INTO pay_items (id, pay_order_id, merchant_id, seq, tool, status, amount,
                       refunded_amount, pay_org_no, channel_txn_no, created_at,
                       query_attempts, manual)
VALUES (:id, :id, 'MPGBENCH', 0, 'channel', 'processing', 1000, 0, 'SANDBOX_A',
        :id::text, now(), 0, false);
COMMIT;

-- step: callback (POST /v1/channels/SANDBOX_A/callback: settle the item, complete the
-- order and the trade, post both entries, change the balances at commit)
BEGIN;
SELECT * FROM pay_orders WHERE id = (SELECT pay_order_id FROM pay_items
  WHERE pay_org_no = 'SANDBOX_A' AND channel_txn_no = :id::text) FOR UPDATE;
SELECT * FROM pay_items WHERE pay_org_no = 'SANDBOX_A' AND channel_txn_no = :id::text;
UPDATE pay_items SET status = 'success', settled_amount = 1000, finished_at = now()
WHERE id = :id AND status = 'processing';
WITH e AS (INSERT INTO journal_entries (id, biz_type, biz_key, currency, merchant_id,
             order_type, sub_type, pay_org_no, trade_id, memo, created_at)
           VALUES (:e1, 'pay_item', :id::text, 'CNY', 'MPGBENCH', 'goods', 'physical',
                   'SANDBOX_A', :id, '', now())
           ON CONFLICT (biz_type, biz_key) DO NOTHING RETURNING id),
     l AS (INSERT INTO journal_legs (id, entry_id, account_id, amount, currency)
           SELECT x.id, e.id, x.account_id, x.amount, 'CNY' FROM e,
                  unnest(ARRAY[:l1, :l2]::bigint[], ARRAY[:ci, :t1]::bigint[],
                         ARRAY[1000, -1000]::bigint[]) AS x(id, account_id, amount)),
     p AS (INSERT INTO pending_postings (id, account_id, leg_id, delta, created_at)
           SELECT x.id, x.account_id, x.leg_id, x.delta, now() FROM e,
                  unnest('{}'::bigint[], '{}'::bigint[], '{}'::bigint[], '{}'::bigint[])
                  AS x(id, account_id, leg_id, delta))
SELECT id FROM e;
UPDATE pay_orders SET status = 'success', finished_at = now()
WHERE id = :id AND status = 'processing'
  AND NOT EXISTS (SELECT * FROM pay_items WHERE pay_order_id = :id AND status != 'success');
UPDATE trades SET status = 'paid', paid_amount = 1000, updated_at = now()
WHERE id = :id AND status = 'paying'
RETURNING trade_type, user_id, payee_user_id,
  (SELECT fee_bps FROM merchants WHERE merchants.merchant_id = trades.merchant_id),
  (SELECT notify_url FROM merchants WHERE merchants.merchant_id = trades.merchant_id);
WITH e AS (INSERT INTO journal_entries (id, biz_type, biz_key, currency, merchant_id,
             order_type, sub_type, pay_org_no, trade_id, memo, created_at)
           VALUES (:e2, 'pay_complete', :id::text, 'CNY', 'MPGBENCH', 'goods', 'physical',
                   'SANDBOX_A', :id, '', now())
           ON CONFLICT (biz_type, biz_key) DO NOTHING RETURNING id),
     l AS (INSERT INTO journal_legs (id, entry_id, account_id, amount, currency)
           SELECT x.id, e.id, x.account_id, x.amount, 'CNY' FROM e,
                  unnest(ARRAY[:l3, :l4, :l5]::bigint[], ARRAY[:t2, 4000, 3000]::bigint[],
                         ARRAY[1000, -990, -10]::bigint[]) AS x(id, account_id, amount)),
     p AS (INSERT INTO pending_postings (id, account_id, leg_id, delta, created_at)
           SELECT x.id, x.account_id, x.leg_id, x.delta, now() FROM e,
                  unnest(ARRAY[:e2]::bigint[], ARRAY[3000]::bigint[], ARRAY[:l5]::bigint[],
                         ARRAY[10]::bigint[]) AS x(id, account_id, leg_id, delta))
SELECT id FROM e;
WITH v AS (SELECT * FROM unnest(ARRAY[:ci, :t1, :t2, 4000]::bigint[],
                                ARRAY[1000, 1000, -1000, 990]::bigint[]) AS v(id, delta)),
     locked AS (SELECT a.id FROM accounts a JOIN v ON v.id = a.id
                ORDER BY a.id FOR NO KEY UPDATE OF a)
UPDATE accounts a SET balance = a.balance + v.delta FROM v, locked l
WHERE a.id = v.id AND l.id = a.id AND (a.allow_negative OR a.balance + v.delta >= 0)
RETURNING a.id;
COMMIT;
