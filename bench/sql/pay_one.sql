-- pay_e2e bench, database level: the SQL the pay core issues for ONE completed payment
-- (POST /v1/trades, POST /v1/trades/{no}/pay, the channel's POST .../callback), with the
-- same transaction boundaries: 3 + 5 + 1 transactions. Captured from the application
-- with a SQLAlchemy before_cursor_execute hook and a libpq protocol trace, in the steady
-- state (merchant grant and account ids cached). Setup: bench/sql/pay_setup.sql.
-- Each transaction is preceded by the pool's pre-ping: psycopg sends an empty query
-- (";"), which pgbench cannot send; it is left out (one cheap round trip each).
-- The app sends each journal entry's legs with executemany in one pipelined round trip;
-- here that is one multi-row INSERT. Times are now() where the app sends its clock.
-- Ids: one nextval per payment (fetched with the first statement, no extra round trip);
-- trade, pay order and pay item share id = 8n; entries, legs and the pending posting
-- take id + 1 .. id + 5. Sub-accounts are picked at random as HotPolicy does.
\set ci random(1001, 1008)
\set t1 random(2001, 2016)
\set t2 random(2001, 2016)

-- POST /v1/trades: authenticate (token hash lookup)
BEGIN;
SELECT merchant_id, token_hash, nextval('pay_bench_seq') AS n
FROM merchants WHERE token_hash = md5('pgbench') || md5('pay_one') \gset
COMMIT;
\set id :n * 8
\set e1 :id + 1
\set e2 :id + 2
\set l3 :id + 3
\set l4 :id + 4
\set l5 :id + 5
-- idempotency replay check
BEGIN;
SELECT * FROM trades WHERE merchant_id = 'MPGBENCH' AND out_trade_no = 'pgb-' || :n::text;
COMMIT;
BEGIN;
INSERT INTO trades (id, merchant_id, out_trade_no, trade_type, status, amount, currency,
                    paid_amount, refunded_amount, user_id, payee_user_id, order_type,
                    sub_type, pay_org_no, origin_trade_id, root_trade_id, request_hash,
                    subject, created_at, updated_at)
VALUES (:id, 'MPGBENCH', 'pgb-' || :n::text, 'instant', 'created', 1000, 'CNY', 0, 0,
        'bench-user', NULL, 'goods', 'physical', 'SANDBOX_A', NULL, :id,
        '13f3da4f3869aa9ec675e7afa1bbacefd434c568274db32952fa48582a2f5d35', '', now(), now());
COMMIT;

-- POST /v1/trades/{no}/pay: authenticate, replay check, load trade, replay check under
-- the trade lock, then the pay transaction
BEGIN;
SELECT merchant_id, token_hash FROM merchants WHERE token_hash = md5('pgbench') || md5('pay_one');
COMMIT;
BEGIN;
SELECT * FROM pay_orders WHERE merchant_id = 'MPGBENCH' AND out_pay_no = 'pgb-' || :n::text;
COMMIT;
BEGIN;
SELECT * FROM trades WHERE merchant_id = 'MPGBENCH' AND out_trade_no = 'pgb-' || :n::text;
COMMIT;
BEGIN;
SELECT * FROM pay_orders WHERE merchant_id = 'MPGBENCH' AND out_pay_no = 'pgb-' || :n::text;
COMMIT;
BEGIN;
UPDATE trades SET status = 'paying', updated_at = now() WHERE id = :id AND status = 'created';
INSERT INTO pay_orders (id, trade_id, merchant_id, out_pay_no, pay_type, status, amount,
                        currency, user_id, order_type, sub_type, pay_org_no,
                        origin_pay_order_id, request_hash, error_code, created_at, finished_at)
VALUES (:id, :id, 'MPGBENCH', 'pgb-' || :n::text, 'pay', 'processing', 1000, 'CNY',
        'bench-user', 'goods', 'physical', 'SANDBOX_A', NULL,
        '9133c363d0936303190149e48f3e9600ba532fb24fce1028ce96e93a7326e87d', NULL, now(), NULL);
INSERT INTO pay_items (id, pay_order_id, merchant_id, seq, tool, status, amount,
                       refunded_amount, origin_item_id, pay_org_no, channel_txn_no,
                       settled_amount, created_at, finished_at)
VALUES (:id, :id, 'MPGBENCH', 0, 'channel', 'processing', 1000, 0, NULL, 'SANDBOX_A',
        :id::text, NULL, now(), NULL);
SELECT * FROM pay_orders WHERE id = :id;
SELECT * FROM pay_items WHERE pay_order_id = :id;
COMMIT;

-- POST /v1/channels/SANDBOX_A/callback: settle the item, complete the order
BEGIN;
SELECT * FROM pay_items WHERE pay_org_no = 'SANDBOX_A' AND channel_txn_no = :id::text;
SELECT * FROM pay_orders WHERE id = :id FOR UPDATE;
SELECT * FROM pay_items WHERE id = :id;
UPDATE pay_items SET status = 'success', settled_amount = 1000, finished_at = now()
WHERE id = :id AND status = 'processing';
INSERT INTO journal_entries (id, biz_type, biz_key, currency, merchant_id, order_type,
                             sub_type, pay_org_no, trade_id, memo, created_at)
VALUES (:e1, 'pay_item', :id::text, 'CNY', 'MPGBENCH', 'goods', 'physical', 'SANDBOX_A',
        :id, '', now())
ON CONFLICT DO NOTHING RETURNING id;
INSERT INTO journal_legs (id, entry_id, account_id, amount, currency)
VALUES (:e1, :e1, :ci, 1000, 'CNY'), (:e2, :e1, :t1, -1000, 'CNY');
SELECT status FROM pay_items WHERE pay_order_id = :id;
UPDATE pay_orders SET status = 'success', finished_at = now()
WHERE id = :id AND status = 'processing';
SELECT * FROM trades WHERE id = :id;
INSERT INTO journal_entries (id, biz_type, biz_key, currency, merchant_id, order_type,
                             sub_type, pay_org_no, trade_id, memo, created_at)
VALUES (:e2, 'pay_complete', :id::text, 'CNY', 'MPGBENCH', 'goods', 'physical', 'SANDBOX_A',
        :id, '', now())
ON CONFLICT DO NOTHING RETURNING id;
INSERT INTO journal_legs (id, entry_id, account_id, amount, currency)
VALUES (:l3, :e2, :t2, 1000, 'CNY'), (:l4, :e2, 4000, -990, 'CNY'),
       (:l5, :e2, 3000, -10, 'CNY');
INSERT INTO pending_postings (id, account_id, leg_id, delta, created_at)
VALUES (:e1, 3000, :l5, 10, now());
UPDATE trades SET status = 'paid', paid_amount = 1000, updated_at = now()
WHERE id = :id AND status = 'paying';
-- balance deltas at commit, in account id order; a zero net delta is skipped
UPDATE accounts SET balance = balance + 1000
WHERE id = :ci AND (allow_negative OR balance + 1000 >= 0) RETURNING id;
\if :t1 < :t2
UPDATE accounts SET balance = balance + 1000
WHERE id = :t1 AND (allow_negative OR balance + 1000 >= 0) RETURNING id;
UPDATE accounts SET balance = balance + -1000
WHERE id = :t2 AND (allow_negative OR balance + -1000 >= 0) RETURNING id;
\elif :t1 > :t2
UPDATE accounts SET balance = balance + -1000
WHERE id = :t2 AND (allow_negative OR balance + -1000 >= 0) RETURNING id;
UPDATE accounts SET balance = balance + 1000
WHERE id = :t1 AND (allow_negative OR balance + 1000 >= 0) RETURNING id;
\endif
UPDATE accounts SET balance = balance + 990
WHERE id = 4000 AND (allow_negative OR balance + 990 >= 0) RETURNING id;
COMMIT;
